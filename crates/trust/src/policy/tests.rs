use image::normalize_reference;

use super::*;
use crate::cosign::PrivateKey;
use crate::sbom::{Kind, Package};
use crate::scan::Finding;
use crate::severity::Severity;

fn policy(kind: &str, spec: serde_json::Value) -> ImagePolicy {
    serde_json::from_value(
        serde_json::json!({"apiVersion": "flotilla.dev/v1alpha1", "kind": kind, "metadata": {"name": "p", "namespace": "team"}, "spec": spec}),
    )
    .unwrap()
}

#[test]
fn globs_keep_single_stars_within_a_segment() {
    assert!(glob_match("docker.io/library/*", "docker.io/library/busybox"));
    assert!(!glob_match("docker.io/library/*", "docker.io/library/a/b"));
    assert!(glob_match("docker.io/**", "docker.io/library/a/b"));
    assert!(glob_match("**", "anything/at/all"));
    assert!(glob_match("127.0.0.1:*", "127.0.0.1:5000"));
    assert!(glob_match("reg?.lan/app", "reg1.lan/app"));
    assert!(!glob_match("reg?.lan/app", "reg12.lan/app"));
    assert!(glob_match("a/**/z", "a/b/c/z"));
    assert!(glob_match("a/**z", "a/z"));
    assert!(!glob_match("a/*", "b/a/x"));
    assert!(!glob_match("", "x"));
    assert!(glob_match("", ""));
}

#[test]
fn scope_and_location_rules() {
    let cluster =
        compile(&policy("ClusterImagePolicy", serde_json::json!({"images": ["127.0.0.1:*/**"], "allowedRepositories": ["127.0.0.1:*/apps/*"]}))).unwrap();
    let app = normalize_reference("127.0.0.1:5000/apps/web:1").unwrap();
    let tool = normalize_reference("127.0.0.1:5000/tools/x:1").unwrap();
    let hub = normalize_reference("busybox").unwrap();
    assert!(cluster.governs("any", &app) && cluster.governs("any", &tool) && !cluster.governs("any", &hub));
    assert_eq!(cluster.check_location(&app), None);
    let v = cluster.check_location(&tool).unwrap();
    assert_eq!(v.rule, "allowedRepositories");
    assert_eq!(v.to_string(), "ClusterImagePolicy p rule allowedRepositories: repository 127.0.0.1:5000/tools/x is not allowed (allowed: 127.0.0.1:*/apps/*); to fix: use an image from an allowed repository, or add it to spec.allowedRepositories");

    let namespaced = compile(&policy("ImagePolicy", serde_json::json!({"mode": "warn", "allowedRegistries": ["registry.lan"]}))).unwrap();
    assert_eq!(namespaced.mode, Mode::Warn);
    assert!(namespaced.governs("team", &hub) && !namespaced.governs("other", &hub));
    assert_eq!(namespaced.check_location(&hub).unwrap().rule, "allowedRegistries");
}

#[test]
fn keys_are_parsed_and_bad_ones_named() {
    let key = PrivateKey::generate().public_key();
    let ok = compile(&policy("ClusterImagePolicy", serde_json::json!({"signatures": {"keys": [{"name": "release", "publicKey": key.to_pem()}]}}))).unwrap();
    assert_eq!(ok.keys, vec![("release".to_string(), key)]);
    let bad = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
    let err = compile(&policy("ClusterImagePolicy", serde_json::json!({"signatures": {"keys": [{"publicKey": bad}]}}))).unwrap_err();
    assert!(err.starts_with("spec.signatures.keys[0].publicKey: not an ECDSA P-256"), "{err}");
    let v = ok.signature_violation("r/x@sha256:1", "r/x@sha256:1 has no signature");
    assert!(v.to_string().contains("sign r/x@sha256:1 with the private key of one of [release]"), "{v}");
}

fn finding(id: &str, level: Level, aliases: &[&str]) -> Finding {
    Finding {
        advisory: id.to_string(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        severity: Severity { level, score: None, source: String::new() },
        fixed: None,
        summary: String::new(),
        package: Package {
            kind: Kind::Deb,
            name: "wget".into(),
            version: "1.21".into(),
            ecosystem: "Debian:12".into(),
            source: None,
            purl: String::new(),
            location: String::new(),
        },
    }
}

#[test]
fn vulnerability_gate_honours_the_limit_and_unexpired_exceptions() {
    let now: DateTime<Utc> = "2026-11-23T00:00:00Z".parse().unwrap();
    let gate = compile(&policy(
        "ClusterImagePolicy",
        serde_json::json!({"vulnerabilities": {"maxSeverity": "MEDIUM", "exceptions": [
            {"id": "CVE-1", "expires": "2027-01-01T00:00:00Z"},
            {"id": "CVE-2", "expires": "2026-01-01T00:00:00Z"},
            {"id": "GHSA-3"},
        ]}}),
    ))
    .unwrap();
    let report = |findings| ScanReport { packages: 1, unknown_ecosystem: 0, findings, undecided: Vec::new() };
    assert_eq!(gate.check_vulnerabilities(&report(vec![finding("DSA-1", Level::Medium, &[])]), now), None);
    assert_eq!(gate.check_vulnerabilities(&report(vec![finding("DSA-2", Level::High, &["CVE-1"])]), now), None, "excepted through its alias");
    assert_eq!(gate.check_vulnerabilities(&report(vec![finding("GHSA-3", Level::Critical, &[])]), now), None, "no expiry");
    let v = gate.check_vulnerabilities(&report(vec![finding("CVE-2", Level::High, &[])]), now).expect("the exception expired");
    assert_eq!(v.message, "1 finding(s) above maxSeverity MEDIUM: HIGH CVE-2 in wget 1.21");
    let none = compile(&policy("ClusterImagePolicy", serde_json::json!({"vulnerabilities": {"maxSeverity": "NONE"}}))).unwrap();
    assert!(none.check_vulnerabilities(&report(vec![finding("X", Level::Unknown, &[])]), now).is_some());
    let no_gate = compile(&policy("ClusterImagePolicy", serde_json::json!({}))).unwrap();
    assert_eq!(no_gate.check_vulnerabilities(&report(vec![finding("X", Level::Critical, &[])]), now), None);
}
