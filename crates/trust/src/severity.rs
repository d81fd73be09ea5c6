//! How bad a vulnerability is: a level (the scale policies cap) and, where the advisory gives a
//! CVSS v3 vector, the base score computed from it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A severity level, ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    /// The advisory gives no severity this scanner can read.
    #[default]
    Unknown,
    /// CVSS 0.1–3.9.
    Low,
    /// CVSS 4.0–6.9 (GitHub's MODERATE).
    Medium,
    /// CVSS 7.0–8.9.
    High,
    /// CVSS 9.0–10.0.
    Critical,
}

impl Level {
    /// The level of a CVSS base score.
    pub fn of_score(score: f64) -> Level {
        match score {
            s if s >= 9.0 => Level::Critical,
            s if s >= 7.0 => Level::High,
            s if s >= 4.0 => Level::Medium,
            s if s > 0.0 => Level::Low,
            _ => Level::Unknown,
        }
    }

    /// Every level, least severe first.
    pub const ALL: [Level; 5] = [Level::Unknown, Level::Low, Level::Medium, Level::High, Level::Critical];
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Unknown => "UNKNOWN",
            Level::Low => "LOW",
            Level::Medium => "MEDIUM",
            Level::High => "HIGH",
            Level::Critical => "CRITICAL",
        })
    }
}

impl FromStr for Level {
    type Err = String;

    /// Reads the names advisories use: CVSS ratings and GitHub's `MODERATE`, any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "UNKNOWN" | "NONE" => Ok(Level::Unknown),
            "LOW" | "NEGLIGIBLE" => Ok(Level::Low),
            "MEDIUM" | "MODERATE" => Ok(Level::Medium),
            "HIGH" | "IMPORTANT" => Ok(Level::High),
            "CRITICAL" => Ok(Level::Critical),
            _ => Err(format!("unknown severity {s:?} (one of UNKNOWN, LOW, MEDIUM, HIGH, CRITICAL)")),
        }
    }
}

/// An advisory's severity as recorded in the database.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Severity {
    /// The level.
    pub level: Level,
    /// The CVSS base score, when computed from a vector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// The vector or rating the level came from.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
}

/// The CVSS v3.0/v3.1 base score of a vector (`CVSS:3.1/AV:N/AC:L/...`); `None` when the
/// vector is not a complete v3 base vector.
pub fn cvss3_base_score(vector: &str) -> Option<f64> {
    let mut parts = vector.split('/');
    if !matches!(parts.next()?, "CVSS:3.0" | "CVSS:3.1") {
        return None;
    }
    let metric = |name: &str| -> Option<char> { vector.split('/').find_map(|p| p.strip_prefix(name)?.strip_prefix(':')?.chars().next()) };
    let changed = match metric("S")? {
        'U' => false,
        'C' => true,
        _ => return None,
    };
    let av = match metric("AV")? {
        'N' => 0.85,
        'A' => 0.62,
        'L' => 0.55,
        'P' => 0.2,
        _ => return None,
    };
    let ac = match metric("AC")? {
        'L' => 0.77,
        'H' => 0.44,
        _ => return None,
    };
    let pr = match (metric("PR")?, changed) {
        ('N', _) => 0.85,
        ('L', false) => 0.62,
        ('L', true) => 0.68,
        ('H', false) => 0.27,
        ('H', true) => 0.5,
        _ => return None,
    };
    let ui = match metric("UI")? {
        'N' => 0.85,
        'R' => 0.62,
        _ => return None,
    };
    let mut cia = [0.0; 3];
    for (slot, name) in cia.iter_mut().zip(["C", "I", "A"]) {
        *slot = match metric(name)? {
            'H' => 0.56,
            'L' => 0.22,
            'N' => 0.0,
            _ => return None,
        };
    }
    let iss = 1.0 - (1.0 - cia[0]) * (1.0 - cia[1]) * (1.0 - cia[2]);
    let impact = if changed { 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02f64).powi(15) } else { 6.42 * iss };
    if impact <= 0.0 {
        return Some(0.0);
    }
    let exploitability = 8.22 * av * ac * pr * ui;
    let raw = if changed { 1.08 * (impact + exploitability) } else { impact + exploitability };
    Some(round_up(raw.min(10.0)))
}

/// CVSS v3.1's Roundup: the smallest one-decimal number not below `x`, immune to float noise.
fn round_up(x: f64) -> f64 {
    let scaled = (x * 100_000.0).round() as i64;
    if scaled % 10_000 == 0 {
        scaled as f64 / 100_000.0
    } else {
        ((scaled / 10_000) + 1) as f64 / 10.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cvss3_scores_match_the_specification_examples() {
        // Scores published with these vectors by NVD.
        for (vector, score) in [
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", 7.5),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
            ("CVSS:3.1/AV:L/AC:H/PR:L/UI:N/S:U/C:H/I:N/A:N", 4.7),
            ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", 5.9),
            ("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
            ("CVSS:3.1/AV:L/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", 6.2),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
        ] {
            assert_eq!(cvss3_base_score(vector), Some(score), "{vector}");
        }
        assert_eq!(cvss3_base_score("CVSS:3.1/AV:N/AC:L"), None);
        assert_eq!(cvss3_base_score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:N/SC:N/SI:L/SA:N"), None);
    }

    #[test]
    fn levels_read_advisory_spellings_and_order_by_severity() {
        assert_eq!("moderate".parse::<Level>(), Ok(Level::Medium));
        assert!("severe".parse::<Level>().unwrap_err().contains("severe"));
        assert!(Level::Critical > Level::High && Level::Low > Level::Unknown);
        assert_eq!(Level::of_score(7.0), Level::High);
    }
}
