//! Debian version ordering (deb-version(7)): `[epoch:]upstream[-revision]`, where `~` sorts
//! before everything, even the end of the string, and letters sort before other symbols.

use std::cmp::Ordering;

use super::compare_digits;

/// Compares two Debian versions; `None` when either is malformed.
pub(super) fn compare(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (parse(a)?, parse(b)?);
    Some(compare_digits(a.epoch, b.epoch).then_with(|| compare_part(a.upstream, b.upstream)).then_with(|| compare_part(a.revision, b.revision)))
}

struct Version<'a> {
    epoch: &'a str,
    upstream: &'a str,
    revision: &'a str,
}

fn parse(raw: &str) -> Option<Version<'_>> {
    let raw = raw.trim();
    let (epoch, rest) = match raw.split_once(':') {
        Some((epoch, rest)) if !epoch.is_empty() && epoch.bytes().all(|c| c.is_ascii_digit()) => (epoch, rest),
        Some(_) => return None,
        None => ("0", raw),
    };
    let (upstream, revision) = match rest.rsplit_once('-') {
        Some((upstream, revision)) => (upstream, revision),
        None => (rest, ""),
    };
    let allowed = |c: u8| c.is_ascii_alphanumeric() || b".+~-:".contains(&c);
    if upstream.is_empty() || !upstream.bytes().all(allowed) || !revision.bytes().all(|c| allowed(c) && c != b'-' && c != b':') {
        return None;
    }
    Some(Version { epoch, upstream, revision })
}

/// The weight of one non-digit character; `None` is the end of the string.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`: alternating runs of non-digits (compared by [`order`]) and digits
/// (compared as numbers).
fn compare_part(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let (x, y) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if x != y {
                return x.cmp(&y);
            }
            i += 1;
            j += 1;
        }
        let start_a = i;
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        let start_b = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let ord = compare_digits(digits(&a[start_a..i]), digits(&b[start_b..j]));
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

fn digits(s: &[u8]) -> &str {
    std::str::from_utf8(s).unwrap_or("")
}
