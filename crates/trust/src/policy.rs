//! Image policies compiled for evaluation: globs matched, keys parsed, severities ordered, and
//! each refusal worded with the policy, the rule and the fix.

use std::fmt;

use api::imagepolicy::ImagePolicy;
use chrono::{DateTime, Utc};
use image::Reference;

use crate::cosign::PublicKey;
use crate::scan::ScanReport;
use crate::severity::Level;

/// What happens when a policy's rule fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    /// Record an Event only.
    Audit,
    /// Admit, with a warning in the response and an Event.
    Warn,
    /// Refuse.
    Enforce,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Audit => "audit",
            Mode::Warn => "warn",
            Mode::Enforce => "enforce",
        })
    }
}

/// A policy ready to evaluate.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// `ClusterImagePolicy/name` or `ImagePolicy/namespace/name`, for messages.
    pub name: String,
    /// The namespace an `ImagePolicy` governs; `None` for cluster policies.
    pub namespace: Option<String>,
    /// What a failure does.
    pub mode: Mode,
    images: Vec<String>,
    registries: Vec<String>,
    repositories: Vec<String>,
    /// Trusted keys (name, key); empty when no signature is required.
    pub keys: Vec<(String, PublicKey)>,
    /// The vulnerability gate, when the policy has one.
    pub max_severity: Option<SeverityLimit>,
    exceptions: Vec<(String, Option<DateTime<Utc>>)>,
}

/// The most severe finding a vulnerability gate lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeverityLimit {
    /// `NONE`: every finding is refused.
    Nothing,
    /// Findings above this level are refused.
    Max(Level),
}

impl SeverityLimit {
    fn refuses(self, level: Level) -> bool {
        match self {
            SeverityLimit::Nothing => true,
            SeverityLimit::Max(max) => level > max,
        }
    }
}

impl fmt::Display for SeverityLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeverityLimit::Nothing => f.write_str("NONE"),
            SeverityLimit::Max(level) => level.fmt(f),
        }
    }
}

/// A rule an image failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The policy.
    pub policy: String,
    /// Its mode.
    pub mode: Mode,
    /// The rule: `allowedRegistries`, `allowedRepositories`, `signatures` or `vulnerabilities`.
    pub rule: &'static str,
    /// What failed.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} rule {}: {}; to fix: {}", self.policy, self.rule, self.message, self.fix)
    }
}

/// Compiles a stored policy. Errors name the field (`spec.signatures.keys[0].publicKey: ...`).
pub fn compile(policy: &ImagePolicy) -> Result<Compiled, String> {
    let namespace = (policy.kind == "ImagePolicy").then(|| policy.metadata.namespace.clone().unwrap_or_default());
    let name = match &namespace {
        Some(ns) => format!("ImagePolicy {ns}/{}", policy.metadata.name.as_deref().unwrap_or("")),
        None => format!("ClusterImagePolicy {}", policy.metadata.name.as_deref().unwrap_or("")),
    };
    let spec = &policy.spec;
    let mode = match spec.mode.as_deref() {
        None | Some("enforce") => Mode::Enforce,
        Some("warn") => Mode::Warn,
        Some("audit") => Mode::Audit,
        Some(other) => return Err(format!("spec.mode: unsupported value {other:?}")),
    };
    let mut keys = Vec::new();
    for (i, key) in spec.signatures.iter().flat_map(|s| &s.keys).enumerate() {
        let field = format!("spec.signatures.keys[{i}].publicKey");
        let parsed = PublicKey::from_pem(&key.public_key, &field).map_err(|e| e.to_string())?;
        let label = if key.name.is_empty() { parsed.id() } else { key.name.clone() };
        keys.push((label, parsed));
    }
    let max_severity = match &spec.vulnerabilities {
        None => None,
        Some(v) if v.max_severity.eq_ignore_ascii_case("NONE") => Some(SeverityLimit::Nothing),
        Some(v) => Some(SeverityLimit::Max(v.max_severity.parse::<Level>().map_err(|e| format!("spec.vulnerabilities.maxSeverity: {e}"))?)),
    };
    let mut exceptions = Vec::new();
    for (i, e) in spec.vulnerabilities.iter().flat_map(|v| &v.exceptions).enumerate() {
        let expires = match &e.expires {
            None => None,
            Some(t) => Some(t.parse::<DateTime<Utc>>().map_err(|err| format!("spec.vulnerabilities.exceptions[{i}].expires: {err}"))?),
        };
        exceptions.push((e.id.clone(), expires));
    }
    Ok(Compiled {
        name,
        namespace,
        mode,
        images: spec.images.clone(),
        registries: spec.allowed_registries.clone(),
        repositories: spec.allowed_repositories.clone(),
        keys,
        max_severity,
        exceptions,
    })
}

/// Compiles stored policy objects (as listed from the API), skipping with a warning any that do
/// not decode or compile: admission validated them, so only a stale or foreign writer gets here.
pub fn compile_stored(items: Vec<serde_json::Value>) -> Vec<Compiled> {
    items
        .into_iter()
        .filter_map(|item| match serde_json::from_value::<ImagePolicy>(item).map_err(|e| e.to_string()).and_then(|p| compile(&p)) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "skipping an image policy that does not compile");
                None
            }
        })
        .collect()
}

impl Compiled {
    /// Whether this policy governs `reference` in `namespace`.
    pub fn governs(&self, namespace: &str, reference: &Reference) -> bool {
        let repository = reference.repository_name();
        self.namespace.as_deref().is_none_or(|ns| ns == namespace) && (self.images.is_empty() || self.images.iter().any(|g| glob_match(g, &repository)))
    }

    /// Checks where the image comes from.
    pub fn check_location(&self, reference: &Reference) -> Option<Violation> {
        if !self.registries.is_empty() && !self.registries.iter().any(|g| glob_match(g, &reference.registry)) {
            return Some(self.violation(
                "allowedRegistries",
                format!("registry {} is not allowed (allowed: {})", reference.registry, self.registries.join(", ")),
                "use an image from an allowed registry, or add its registry to spec.allowedRegistries".to_string(),
            ));
        }
        let repository = reference.repository_name();
        if !self.repositories.is_empty() && !self.repositories.iter().any(|g| glob_match(g, &repository)) {
            return Some(self.violation(
                "allowedRepositories",
                format!("repository {repository} is not allowed (allowed: {})", self.repositories.join(", ")),
                "use an image from an allowed repository, or add it to spec.allowedRepositories".to_string(),
            ));
        }
        None
    }

    /// The refusal for a signature check that failed with `reason`.
    pub fn signature_violation(&self, image: &str, reason: &str) -> Violation {
        let names: Vec<&str> = self.keys.iter().map(|(n, _)| n.as_str()).collect();
        self.violation(
            "signatures",
            reason.to_string(),
            format!("sign {image} with the private key of one of [{}] (`flotilla image sign --key cosign.key {image}`)", names.join(", ")),
        )
    }

    /// Checks a scan report against the vulnerability gate at time `now`.
    pub fn check_vulnerabilities(&self, report: &ScanReport, now: DateTime<Utc>) -> Option<Violation> {
        let max = self.max_severity?;
        let excepted = |id: &str, aliases: &[String]| {
            self.exceptions.iter().any(|(e, expires)| (e == id || aliases.iter().any(|a| a == e)) && expires.is_none_or(|t| t > now))
        };
        let over: Vec<String> = report
            .findings
            .iter()
            .filter(|f| max.refuses(f.severity.level) && !excepted(&f.advisory, &f.aliases))
            .map(|f| format!("{} {} in {} {}", f.severity.level, f.advisory, f.package.name, f.package.version))
            .collect();
        if over.is_empty() {
            return None;
        }
        let shown: Vec<&str> = over.iter().take(5).map(String::as_str).collect();
        let more = if over.len() > 5 { format!(" and {} more", over.len() - 5) } else { String::new() };
        Some(self.violation(
            "vulnerabilities",
            format!("{} finding(s) above maxSeverity {max}: {}{more}", over.len(), shown.join(", ")),
            "rebuild the image with the fixed versions, or add an exception with an expiry to spec.vulnerabilities.exceptions".to_string(),
        ))
    }

    fn violation(&self, rule: &'static str, message: String, fix: String) -> Violation {
        Violation { policy: self.name.clone(), mode: self.mode, rule, message, fix }
    }
}

/// Matches `text` against `glob`: `*` and `?` do not cross `/`, `**` does.
pub fn glob_match(glob: &str, text: &str) -> bool {
    let (g, t) = (glob.as_bytes(), text.as_bytes());
    // Positions in the glob reachable after consuming a prefix of the text (an NFA walk).
    let mut states = vec![false; g.len() + 1];
    states[0] = true;
    close(g, &mut states);
    for &c in t {
        let mut next = vec![false; g.len() + 1];
        for i in 0..g.len() {
            if !states[i] {
                continue;
            }
            match g[i] {
                b'*' if g.get(i + 1) == Some(&b'*') => next[i] = true,
                b'*' if c != b'/' => next[i] = true,
                b'?' if c != b'/' => next[i + 1] = true,
                lit if lit == c => next[i + 1] = true,
                _ => {}
            }
        }
        close(g, &mut next);
        states = next;
    }
    states[g.len()]
}

/// Adds the positions reachable without consuming text: past a `*` or `**` (matching nothing).
fn close(g: &[u8], states: &mut [bool]) {
    for i in 0..g.len() {
        if states[i] && g[i] == b'*' {
            let skip = if g.get(i + 1) == Some(&b'*') { 2 } else { 1 };
            states[i + skip] = true;
        }
    }
}

#[cfg(test)]
mod tests;
