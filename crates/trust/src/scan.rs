//! Matching an inventory against the vulnerability database: each package is looked up under
//! its ecosystem and (source) name, and every advisory whose ranges hold its version is a finding.

use std::collections::HashMap;

use serde::Serialize;

use crate::osv::Entry;
use crate::sbom::{Package, Sbom};
use crate::severity::{Level, Severity};
use crate::vulndb::{VulnDb, VulnDbError};

/// One vulnerable package.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The advisory id.
    pub advisory: String,
    /// Other ids of the vulnerability (CVE ids, upstream advisories).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// How severe.
    pub severity: Severity,
    /// The lowest version that fixes it, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
    /// The advisory's summary.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub summary: String,
    /// The package.
    pub package: Package,
}

/// What a scan found.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct ScanReport {
    /// Packages scanned.
    pub packages: usize,
    /// Packages with no ecosystem to look them up in (an unrecognised OS).
    pub unknown_ecosystem: usize,
    /// Vulnerable packages, most severe first.
    pub findings: Vec<Finding>,
    /// Advisories that name a package but whose ranges could not be evaluated for its
    /// version (an ordering not implemented, a version that does not parse): `(advisory, purl)`.
    pub undecided: Vec<(String, String)>,
}

impl ScanReport {
    /// The most severe finding's level, if any.
    pub fn worst(&self) -> Option<Level> {
        self.findings.iter().map(|f| f.severity.level).max()
    }
}

/// Scans an inventory.
pub fn scan(sbom: &Sbom, db: &VulnDb) -> Result<ScanReport, VulnDbError> {
    let mut report = ScanReport { packages: sbom.packages.len(), ..ScanReport::default() };
    let mut cache: HashMap<(&str, &str), Vec<Entry>> = HashMap::new();
    for package in &sbom.packages {
        if package.ecosystem.is_empty() {
            report.unknown_ecosystem += 1;
            continue;
        }
        let (name, version) = package.advisory_key();
        let key = (package.ecosystem.as_str(), name);
        let entries = match cache.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(db.lookup(key.0, key.1)?),
        };
        let mut seen = Vec::new();
        for entry in entries.iter() {
            if seen.contains(&&entry.id) {
                continue;
            }
            match entry.affects(version) {
                Some(true) => {
                    seen.push(&entry.id);
                    report.findings.push(Finding {
                        advisory: entry.id.clone(),
                        aliases: entry.aliases.clone(),
                        severity: entry.severity.clone(),
                        fixed: entry.fixed_after(version).map(str::to_string),
                        summary: entry.summary.clone(),
                        package: package.clone(),
                    });
                }
                Some(false) => {}
                None => report.undecided.push((entry.id.clone(), package.purl.clone())),
            }
        }
    }
    report
        .findings
        .sort_by(|a, b| b.severity.level.cmp(&a.severity.level).then_with(|| a.package.name.cmp(&b.package.name)).then_with(|| a.advisory.cmp(&b.advisory)));
    Ok(report)
}

#[cfg(test)]
mod tests;
