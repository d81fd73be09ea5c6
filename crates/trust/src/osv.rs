//! OSV advisories (https://ossf.github.io/osv-schema/): parsed from untrusted JSON into the
//! entries the vulnerability database stores, one per affected package, with every rejection
//! naming the field at fault.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::severity::{cvss3_base_score, Level, Severity};
use crate::version::Scheme;

/// Why an advisory was refused.
#[derive(Debug, thiserror::Error)]
#[error("advisory {id}: {field}: {reason}")]
pub struct OsvError {
    /// The advisory's id, or `?` before it is known.
    pub id: String,
    /// The JSON path of the offending field (`affected[1].ranges[0].events[2]`).
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

/// One affected package of one advisory: the unit the database indexes and matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The advisory id (`DLA-3022-1`, `GHSA-...`).
    pub id: String,
    /// Other ids of the same vulnerability (aliases and upstream ids).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// A one-line summary.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub summary: String,
    /// When the advisory was last modified (RFC 3339).
    pub modified: String,
    /// Whether the advisory was withdrawn; withdrawn entries never match.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub withdrawn: bool,
    /// How severe.
    pub severity: Severity,
    /// The package's ecosystem as the advisory names it (`Debian:12`, `PyPI`).
    pub ecosystem: String,
    /// The package name, normalised for its ecosystem.
    pub name: String,
    /// Version ranges; an entry matches a version inside any of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<Range>,
    /// Versions listed as affected outright.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<String>,
}

/// A range of affected versions: events in version order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Range {
    /// Versions from an `introduced` up to (not including) the next `fixed`, or through the
    /// next `last_affected`.
    pub events: Vec<Event>,
}

/// A point on a range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// Affected from this version (`0`: from the first).
    Introduced(String),
    /// Not affected from this version on.
    Fixed(String),
    /// Affected through this version, not after.
    LastAffected(String),
}

impl Entry {
    /// Whether `version` is affected. `None` when the ranges cannot be evaluated (the
    /// ecosystem's ordering is unknown or a version does not parse) and no listed version matches.
    pub fn affects(&self, version: &str) -> Option<bool> {
        if self.withdrawn {
            return Some(false);
        }
        if self.versions.iter().any(|v| v == version) {
            return Some(true);
        }
        if self.ranges.is_empty() {
            return Some(false);
        }
        let scheme = Scheme::for_ecosystem(&self.ecosystem)?;
        let mut unknown = false;
        for range in &self.ranges {
            match range_affects(scheme, &range.events, version) {
                Some(true) => return Some(true),
                Some(false) => {}
                None => unknown = true,
            }
        }
        (!unknown).then_some(false)
    }

    /// The lowest fixed version above `version`, to tell the user what to upgrade to.
    pub fn fixed_after(&self, version: &str) -> Option<&str> {
        let scheme = Scheme::for_ecosystem(&self.ecosystem)?;
        self.ranges
            .iter()
            .flat_map(|r| &r.events)
            .filter_map(|e| match e {
                Event::Fixed(v) if scheme.compare(v, version) == Some(std::cmp::Ordering::Greater) => Some(v.as_str()),
                _ => None,
            })
            .min_by(|a, b| scheme.compare(a, b).unwrap_or(std::cmp::Ordering::Equal))
    }
}

/// OSV's evaluation: walk the events in version order, switching in at `introduced` and out
/// at `fixed` (or just after `last_affected`).
fn event_version(e: &Event) -> &str {
    match e {
        Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) => v,
    }
}

fn range_affects(scheme: Scheme, events: &[Event], version: &str) -> Option<bool> {
    use std::cmp::Ordering::*;
    // Every version must parse before sorting: a comparator that gives up part way is not a
    // total order, and sorting by one is undefined.
    let key = event_version;
    if events.iter().map(key).any(|v| v != "0" && scheme.compare(v, v).is_none()) {
        return None;
    }
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by(|a, b| match (key(a) == "0", key(b) == "0") {
        (true, true) => Equal,
        (true, false) => Less,
        (false, true) => Greater,
        _ => scheme.compare(key(a), key(b)).unwrap_or(Equal),
    });
    let mut affected = false;
    for event in sorted {
        match event {
            Event::Introduced(v) => {
                if v == "0" || scheme.compare(version, v)? != Less {
                    affected = true;
                }
            }
            Event::Fixed(v) => {
                if scheme.compare(version, v)? != Less {
                    affected = false;
                }
            }
            Event::LastAffected(v) => {
                if scheme.compare(version, v)? == Greater {
                    affected = false;
                }
            }
        }
    }
    Some(affected)
}

/// One advisory: its id and version, and its entries (none when it names no package an image
/// can hold, e.g. only GIT ranges).
#[derive(Debug, Clone, PartialEq)]
pub struct Advisory {
    /// The id.
    pub id: String,
    /// When it was last modified (RFC 3339).
    pub modified: String,
    /// One entry per affected package.
    pub entries: Vec<Entry>,
}

/// Parses one OSV record into its entries.
pub fn parse(bytes: &[u8]) -> Result<Vec<Entry>, OsvError> {
    parse_advisory(bytes).map(|a| a.entries)
}

/// Parses one OSV record.
pub fn parse_advisory(bytes: &[u8]) -> Result<Advisory, OsvError> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| OsvError { id: "?".into(), field: "(document)".into(), reason: format!("not JSON: {e}") })?;
    let id = match doc.get("id") {
        Some(Value::String(id)) if !id.trim().is_empty() => id.clone(),
        _ => return Err(OsvError { id: "?".into(), field: "id".into(), reason: "required, a non-empty string".into() }),
    };
    let err = |field: &str, reason: &str| OsvError { id: id.clone(), field: field.to_string(), reason: reason.to_string() };
    let text = |field: &str| -> Result<String, OsvError> {
        match doc.get(field) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(err(field, "must be a string")),
        }
    };
    let modified = text("modified")?;
    if modified.is_empty() {
        return Err(err("modified", "required (RFC 3339 time)"));
    }
    let withdrawn = !text("withdrawn")?.is_empty();
    let summary = text("summary")?;
    let mut aliases = strings(&doc, "aliases", "aliases").map_err(|(f, r)| err(&f, &r))?;
    aliases.extend(strings(&doc, "upstream", "upstream").map_err(|(f, r)| err(&f, &r))?);
    let top_severity = severity(&doc, "").map_err(|(f, r)| err(&f, &r))?;
    let affected = match doc.get("affected") {
        None | Some(Value::Null) => return Ok(Advisory { id, modified, entries: Vec::new() }),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(err("affected", "must be an array")),
    };
    let mut out = Vec::with_capacity(affected.len());
    for (i, item) in affected.iter().enumerate() {
        let at = format!("affected[{i}]");
        // An entry without a package names a source repository by commit (GIT ranges only);
        // an image holds versions, not commits, so there is nothing to match it against.
        let Some(package) = item.get("package") else {
            if item.get("ranges").and_then(Value::as_array).is_some_and(|r| r.iter().all(|r| r.get("type").and_then(Value::as_str) == Some("GIT"))) {
                continue;
            }
            return Err(err(&format!("{at}.package"), "required unless every range is a GIT range"));
        };
        let field_str = |v: &Value, field: &str| -> Result<String, OsvError> {
            match v.get(field) {
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
                _ => Err(err(&format!("{at}.package.{field}"), "required, a non-empty string")),
            }
        };
        let ecosystem = field_str(package, "ecosystem")?;
        let name = normalize_name(&ecosystem, &field_str(package, "name")?);
        if ecosystem.contains('\0') || name.contains('\0') {
            return Err(err(&format!("{at}.package"), "names may not contain NUL"));
        }
        let mut ranges = Vec::new();
        if let Some(raw) = item.get("ranges") {
            let raw = raw.as_array().ok_or_else(|| err(&format!("{at}.ranges"), "must be an array"))?;
            for (r, range) in raw.iter().enumerate() {
                if let Some(range) = parse_range(range, &format!("{at}.ranges[{r}]")).map_err(|(f, reason)| err(&f, &reason))? {
                    ranges.push(range);
                }
            }
        }
        let versions = strings(item, "versions", &format!("{at}.versions")).map_err(|(f, r)| err(&f, &r))?;
        let own = severity(item, &format!("{at}.")).map_err(|(f, r)| err(&f, &r))?;
        let severity = if own.level > top_severity.level { own } else { top_severity.clone() };
        out.push(Entry {
            id: id.clone(),
            aliases: aliases.clone(),
            summary: summary.clone(),
            modified: modified.clone(),
            withdrawn,
            severity,
            ecosystem,
            name,
            ranges,
            versions,
        });
    }
    Ok(Advisory { id, modified, entries: out })
}

/// Parses a range; GIT ranges (commit hashes) are dropped, since images carry versions.
fn parse_range(range: &Value, at: &str) -> Result<Option<Range>, (String, String)> {
    let kind = range.get("type").and_then(Value::as_str).ok_or_else(|| (format!("{at}.type"), "required: SEMVER, ECOSYSTEM or GIT".to_string()))?;
    match kind {
        "SEMVER" | "ECOSYSTEM" => {}
        "GIT" => return Ok(None),
        other => return Err((format!("{at}.type"), format!("unknown range type {other:?}"))),
    }
    let events = range.get("events").and_then(Value::as_array).ok_or_else(|| (format!("{at}.events"), "required, an array".to_string()))?;
    let mut out = Vec::with_capacity(events.len());
    for (e, event) in events.iter().enumerate() {
        let at = format!("{at}.events[{e}]");
        let object = event.as_object().ok_or_else(|| (at.clone(), "must be an object".to_string()))?;
        let known: Vec<(&String, &Value)> = object.iter().filter(|(k, _)| k.as_str() != "limit").collect();
        let [(key, value)] = known.as_slice() else {
            if object.contains_key("limit") && known.is_empty() {
                continue;
            }
            return Err((at, "must have exactly one of introduced, fixed, last_affected".to_string()));
        };
        let version = value
            .as_str()
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| (format!("{at}.{key}"), "must be a non-empty string".to_string()))?
            .trim()
            .to_string();
        out.push(match key.as_str() {
            "introduced" => Event::Introduced(version),
            "fixed" => Event::Fixed(version),
            "last_affected" => Event::LastAffected(version),
            other => return Err((format!("{at}.{other}"), "unknown event (introduced, fixed, last_affected, limit)".to_string())),
        });
    }
    if !out.iter().any(|e| matches!(e, Event::Introduced(_))) {
        return Err((format!("{at}.events"), "needs an introduced event".to_string()));
    }
    Ok(Some(Range { events: out }))
}

/// An optional array of strings.
fn strings(v: &Value, field: &str, at: &str) -> Result<Vec<String>, (String, String)> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, s)| s.as_str().map(str::to_string).ok_or_else(|| (format!("{at}[{i}]"), "must be a string".to_string())))
            .collect(),
        Some(_) => Err((at.to_string(), "must be an array of strings".to_string())),
    }
}

/// The highest severity `v` states: CVSS v3 vectors are scored; otherwise the rating in
/// `database_specific.severity` or `ecosystem_specific.severity` (GitHub, OSV exporters).
fn severity(v: &Value, at: &str) -> Result<Severity, (String, String)> {
    let mut best = Severity::default();
    let consider = |best: &mut Severity, candidate: Severity| {
        if candidate.level > best.level {
            *best = candidate;
        }
    };
    if let Some(list) = v.get("severity") {
        let list = list.as_array().ok_or_else(|| (format!("{at}severity"), "must be an array".to_string()))?;
        for (i, s) in list.iter().enumerate() {
            let score = s.get("score").and_then(Value::as_str).ok_or_else(|| (format!("{at}severity[{i}].score"), "required, a string".to_string()))?;
            if let Some(value) = cvss3_base_score(score) {
                consider(&mut best, Severity { level: Level::of_score(value), score: Some(value), source: score.to_string() });
            }
        }
    }
    for section in ["database_specific", "ecosystem_specific"] {
        if let Some(rating) = v.get(section).and_then(|s| s.get("severity")).and_then(Value::as_str) {
            if let Ok(level) = rating.parse::<Level>() {
                if best.score.is_none() {
                    consider(&mut best, Severity { level, score: None, source: rating.to_string() });
                }
            }
        }
    }
    Ok(best)
}

/// Names as each ecosystem compares them: PyPI names are case- and separator-insensitive
/// (PEP 503); other ecosystems compare names exactly.
pub fn normalize_name(ecosystem: &str, name: &str) -> String {
    if ecosystem == "PyPI" {
        let mut out = String::with_capacity(name.len());
        let mut last_sep = false;
        for c in name.chars() {
            if matches!(c, '-' | '_' | '.') {
                if !last_sep {
                    out.push('-');
                }
                last_sep = true;
            } else {
                out.push(c.to_ascii_lowercase());
                last_sep = false;
            }
        }
        out
    } else {
        name.to_string()
    }
}

#[cfg(test)]
mod tests;
