//! `ImagePolicy` (namespaced) and `ClusterImagePolicy` (`flotilla.dev/v1alpha1`): which images
//! may run, signed by whom, with how severe a known vulnerability.
//!
//! ```yaml
//! apiVersion: flotilla.dev/v1alpha1
//! kind: ClusterImagePolicy
//! metadata: {name: release-images}
//! spec:
//!   mode: enforce                       # enforce (default) | warn | audit
//!   images: ["registry.lan/**"]         # which images this policy governs (default: all)
//!   allowedRegistries: ["registry.lan"]
//!   allowedRepositories: ["registry.lan/apps/*"]
//!   signatures:
//!     keys:
//!     - name: release
//!       publicKey: |
//!         -----BEGIN PUBLIC KEY-----
//!         ...
//!   vulnerabilities:
//!     maxSeverity: HIGH                 # findings above this are refused
//!     exceptions:
//!     - id: CVE-2024-10524
//!       expires: "2027-01-01T00:00:00Z"
//!       reason: not reachable from the service
//! ```
//!
//! Globs match the normalized `registry/repository` (`busybox` is
//! `docker.io/library/busybox`): `*` and `?` stay within one path segment, `**` crosses them.

use serde::{Deserialize, Serialize};

use crate::field::{FieldError, FieldErrors};
use crate::validation;
use crate::ObjectMeta;

/// API group and version of the image policy kinds.
pub const API_VERSION: &str = "flotilla.dev/v1alpha1";

/// An image policy; the same shape serves the namespaced and the cluster-scoped kind.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImagePolicy {
    /// `flotilla.dev/v1alpha1`.
    #[serde(default)]
    pub api_version: String,
    /// `ImagePolicy` or `ClusterImagePolicy`.
    #[serde(default)]
    pub kind: String,
    /// Name (and namespace, for `ImagePolicy`).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The rules.
    #[serde(default)]
    pub spec: ImagePolicySpec,
}

/// What a policy requires of the images it governs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImagePolicySpec {
    /// `enforce` (refuse), `warn` (admit with a warning and an Event) or `audit` (admit, record
    /// an Event). Default `enforce`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Globs of the images this policy governs; empty means every image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// Globs of registry hosts (`host[:port]`) images may come from; empty allows any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_registries: Vec<String>,
    /// Globs of `registry/repository` images may come from; empty allows any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_repositories: Vec<String>,
    /// Signatures required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signatures: Option<SignatureRule>,
    /// The vulnerability gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vulnerabilities: Option<VulnerabilityRule>,
}

/// A signature by one of `keys` is required.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignatureRule {
    /// Trusted public keys; any one suffices.
    pub keys: Vec<TrustedKey>,
}

/// A trusted signing key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrustedKey {
    /// A name for messages.
    #[serde(default)]
    pub name: String,
    /// The ECDSA P-256 public key, PKIX PEM (cosign.pub).
    pub public_key: String,
}

/// Refuse images with known vulnerabilities more severe than `max_severity`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VulnerabilityRule {
    /// `NONE` (refuse any finding), `LOW`, `MEDIUM`, `HIGH` or `CRITICAL`; findings above it are
    /// refused.
    pub max_severity: String,
    /// Advisories accepted anyway, until they expire.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exceptions: Vec<Exception>,
}

/// An accepted advisory.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Exception {
    /// Advisory id or alias (`CVE-2024-10524`, `GHSA-…`).
    pub id: String,
    /// RFC 3339 time after which the exception no longer applies; never when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// Why it is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Enforcement modes.
pub const MODES: [&str; 3] = ["enforce", "warn", "audit"];
/// Accepted `maxSeverity` values, least severe first.
pub const SEVERITIES: [&str; 5] = ["NONE", "LOW", "MEDIUM", "HIGH", "CRITICAL"];

/// Checks the structure of a policy: modes, globs, severities, expiry times and that keys are
/// PEM public keys. (Whether a key is a valid P-256 point is checked where keys are parsed.)
pub fn validate(policy: &ImagePolicy, namespaced: bool) -> Result<(), FieldErrors> {
    let mut errors = FieldErrors::default();
    validation::metadata(&policy.metadata, false, &mut errors);
    if namespaced && policy.metadata.namespace.as_deref().unwrap_or("").is_empty() {
        errors.push(FieldError::required("metadata.namespace", "an ImagePolicy lives in a namespace"));
    }
    let spec = &policy.spec;
    if let Some(mode) = &spec.mode {
        if !MODES.contains(&mode.as_str()) {
            errors.push(FieldError::not_supported("spec.mode", mode, &MODES));
        }
    }
    for (field, globs) in
        [("spec.images", &spec.images), ("spec.allowedRegistries", &spec.allowed_registries), ("spec.allowedRepositories", &spec.allowed_repositories)]
    {
        for (i, glob) in globs.iter().enumerate() {
            if glob.trim().is_empty() || glob.chars().any(char::is_whitespace) {
                errors.push(FieldError::invalid(format!("{field}[{i}]"), glob, "must be a non-empty glob without spaces"));
            }
        }
    }
    if let Some(sig) = &spec.signatures {
        if sig.keys.is_empty() {
            errors.push(FieldError::required("spec.signatures.keys", "at least one public key"));
        }
        for (i, key) in sig.keys.iter().enumerate() {
            let pem = key.public_key.trim();
            if !pem.starts_with("-----BEGIN PUBLIC KEY-----") || !pem.ends_with("-----END PUBLIC KEY-----") {
                errors.push(FieldError::invalid(format!("spec.signatures.keys[{i}].publicKey"), "<pem>", "must be a PEM \"PUBLIC KEY\" block (cosign.pub)"));
            }
        }
    }
    if let Some(vuln) = &spec.vulnerabilities {
        if !SEVERITIES.contains(&vuln.max_severity.to_ascii_uppercase().as_str()) {
            errors.push(FieldError::not_supported("spec.vulnerabilities.maxSeverity", &vuln.max_severity, &SEVERITIES));
        }
        for (i, e) in vuln.exceptions.iter().enumerate() {
            if e.id.trim().is_empty() {
                errors.push(FieldError::required(format!("spec.vulnerabilities.exceptions[{i}].id"), "the advisory id"));
            }
            if let Some(expires) = &e.expires {
                if expires.parse::<jiff::Timestamp>().is_err() {
                    errors.push(FieldError::invalid(format!("spec.vulnerabilities.exceptions[{i}].expires"), expires, "must be an RFC 3339 time"));
                }
            }
        }
    }
    errors.into_result()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(spec: serde_json::Value) -> ImagePolicy {
        serde_json::from_value(serde_json::json!({"apiVersion": API_VERSION, "kind": "ClusterImagePolicy", "metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    #[test]
    fn every_bad_field_is_named() {
        let p = policy(serde_json::json!({
            "mode": "block",
            "allowedRegistries": [""],
            "signatures": {"keys": [{"name": "k", "publicKey": "ssh-ed25519 AAAA"}]},
            "vulnerabilities": {"maxSeverity": "SEVERE", "exceptions": [{"id": "", "expires": "tomorrow"}]},
        }));
        let errors = validate(&p, false).unwrap_err().to_string();
        for field in [
            "spec.mode",
            "spec.allowedRegistries[0]",
            "spec.signatures.keys[0].publicKey",
            "spec.vulnerabilities.maxSeverity",
            "spec.vulnerabilities.exceptions[0].id",
            "spec.vulnerabilities.exceptions[0].expires",
        ] {
            assert!(errors.contains(field), "{field} missing from {errors}");
        }
        let ok = policy(serde_json::json!({"mode": "warn", "images": ["**"], "vulnerabilities": {"maxSeverity": "high"}}));
        validate(&ok, false).unwrap();
        assert!(validate(&ok, true).unwrap_err().to_string().contains("metadata.namespace"));
    }
}
