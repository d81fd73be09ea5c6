//! Version ordering per ecosystem: each package manager's own rules, because a vulnerability
//! range is only as right as the comparison that tests it.

mod apk;
mod dpkg;
mod pep440;
mod semver;

use std::cmp::Ordering;

/// A version ordering scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Debian and Ubuntu packages (deb-version(7)).
    Dpkg,
    /// Alpine packages (apk-tools).
    Apk,
    /// Semantic Versioning 2.0 (crates.io, npm, Go modules).
    Semver,
    /// Python packages (PEP 440).
    Pep440,
}

impl Scheme {
    /// The scheme an OSV ecosystem orders its versions by (`Debian:12` → dpkg); `None` for
    /// ecosystems whose ordering is not implemented, whose advisories then match only by
    /// their explicit `versions` lists.
    pub fn for_ecosystem(ecosystem: &str) -> Option<Scheme> {
        let base = ecosystem.split(':').next().unwrap_or(ecosystem);
        match base {
            "Debian" | "Ubuntu" => Some(Scheme::Dpkg),
            "Alpine" | "Wolfi" | "Chainguard" => Some(Scheme::Apk),
            "crates.io" | "npm" | "Go" | "Hex" | "Pub" => Some(Scheme::Semver),
            "PyPI" => Some(Scheme::Pep440),
            _ => None,
        }
    }

    /// Compares two versions; `None` when either is not a version of this scheme.
    pub fn compare(self, a: &str, b: &str) -> Option<Ordering> {
        match self {
            Scheme::Dpkg => dpkg::compare(a, b),
            Scheme::Apk => apk::compare(a, b),
            Scheme::Semver => semver::compare(a, b),
            Scheme::Pep440 => pep440::compare(a, b),
        }
    }
}

/// Compares two runs of ASCII digits as unbounded non-negative integers.
fn compare_digits(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests;
