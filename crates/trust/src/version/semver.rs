//! Semantic Versioning 2.0 ordering, read leniently the way registries write versions: an
//! optional `v`, missing minor or patch as zero; build metadata does not take part.

use std::cmp::Ordering;

use super::compare_digits;

/// Compares two semantic versions; `None` when either is not one.
pub(super) fn compare(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (parse(a)?, parse(b)?);
    for (x, y) in a.core.iter().zip(&b.core) {
        let ord = compare_digits(x, y);
        if ord != Ordering::Equal {
            return Some(ord);
        }
    }
    Some(match (a.pre, b.pre) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => compare_prerelease(x, y),
    })
}

struct Version<'a> {
    core: [&'a str; 3],
    pre: Option<&'a str>,
}

fn parse(raw: &str) -> Option<Version<'_>> {
    let raw = raw.trim();
    let raw = raw.strip_prefix('v').unwrap_or(raw);
    let raw = raw.split_once('+').map_or(raw, |(v, _build)| v);
    let (core_text, pre) = match raw.split_once('-') {
        Some((core, pre)) if !pre.is_empty() => (core, Some(pre)),
        Some(_) => return None,
        None => (raw, None),
    };
    let mut core = ["0"; 3];
    let mut parts = core_text.split('.');
    for slot in &mut core {
        match parts.next() {
            Some(p) if !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()) => *slot = p,
            Some(_) => return None,
            None => break,
        }
    }
    if core_text.is_empty() || parts.next().is_some() {
        return None;
    }
    if let Some(pre) = pre {
        if pre.split('.').any(|id| id.is_empty() || !id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')) {
            return None;
        }
    }
    Some(Version { core, pre })
}

/// Identifiers compared left to right: numeric ones as numbers and below alphanumeric ones;
/// a shorter list that is a prefix of the other sorts first.
fn compare_prerelease(a: &str, b: &str) -> Ordering {
    let mut a = a.split('.');
    let mut b = b.split('.');
    loop {
        let ord = match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let numeric = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
                match (numeric(x), numeric(y)) {
                    (true, true) => compare_digits(x, y),
                    (true, false) => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    (false, false) => x.cmp(y),
                }
            }
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
}
