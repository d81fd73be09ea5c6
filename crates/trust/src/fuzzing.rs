//! Fuzz bodies for the parsers in this crate that read untrusted input (advisories, the package
//! databases inside images, and signature payloads and bundles from registries), shared by the cargo-fuzz targets in `fuzz/` and the corpus
//! tests in `tests/fuzz_corpus.rs` so CI runs them on stable.
//!
//! Each body panics only when it finds a bug: bad input must come back as an error or be skipped.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;

use crate::osv::{self, Entry, Event};
use crate::rootfs::Rootfs;
use crate::sbom::{self, Subject};
use crate::version::Scheme;

/// Parses `data` as an OSV advisory. What parses must survive the database's encoding, and
/// evaluating it (and comparing its versions) must not panic; comparisons must be antisymmetric.
pub fn osv(data: &[u8]) {
    let Ok(entries) = osv::parse(data) else {
        return;
    };
    for entry in &entries {
        let encoded = serde_json::to_vec(entry).expect("entries encode");
        let decoded: Entry = serde_json::from_slice(&encoded).expect("encoded entries decode");
        assert_eq!(&decoded, entry);
        let versions: Vec<&str> = entry
            .ranges
            .iter()
            .flat_map(|r| &r.events)
            .map(|e| match e {
                Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) => v.as_str(),
            })
            .chain(entry.versions.iter().map(String::as_str))
            .chain(["0", "1.0.0", "1:2.3-4~deb12u1", "2.0.0rc1"])
            .collect();
        for v in &versions {
            let _ = entry.affects(v);
            let _ = entry.fixed_after(v);
        }
        if let Some(scheme) = Scheme::for_ecosystem(&entry.ecosystem) {
            for a in versions.iter().take(16) {
                for b in versions.iter().take(16) {
                    assert_eq!(scheme.compare(a, b), scheme.compare(b, a).map(|o| o.reverse()), "{scheme:?}: {a} vs {b}");
                }
            }
        }
    }
}

/// Writes `data` as every package database and artefact the inventory reads (os-release, dpkg
/// status, apk installed, Cargo.lock, package-lock.json, package.json, Python METADATA, an
/// executable) and takes the inventory. It must not fail or panic, and each package it lists has
/// a name, a version and a purl, and appears in both SBOM formats.
pub fn inventory(data: &[u8]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    for rel in [
        "etc/os-release",
        "var/lib/dpkg/status",
        "var/lib/dpkg/status.d/pkg",
        "lib/apk/db/installed",
        "app/Cargo.lock",
        "app/package-lock.json",
        "app/node_modules/pkg/package.json",
        "usr/lib/python3/site-packages/pkg-1.0.dist-info/METADATA",
        "usr/lib/python3/site-packages/pkg.egg-info",
        "usr/bin/prog",
    ] {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
        fs::write(&path, data).expect("write");
    }
    fs::set_permissions(root.join("usr/bin/prog"), fs::Permissions::from_mode(0o755)).expect("chmod");
    let inventory = sbom::catalog(&Rootfs::from_dir(root)).expect("reading files this body wrote");
    for p in &inventory.packages {
        assert!(!p.name.is_empty() && !p.version.is_empty() && p.purl.starts_with("pkg:"), "{p:?}");
    }
    let subject = Subject { name: "fuzz".into(), digest: "sha256:0".into() };
    let cdx = sbom::to_cyclonedx(&inventory, &subject, chrono::Utc::now());
    let spdx = sbom::to_spdx(&inventory, &subject, chrono::Utc::now());
    let os = usize::from(inventory.os.is_some());
    assert_eq!(cdx["components"].as_array().map(Vec::len), Some(inventory.packages.len() + os));
    assert_eq!(spdx["packages"].as_array().map(Vec::len), Some(inventory.packages.len() + 1));
}

const FUZZ_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE33BU5xbhUpwMOZ2TByPrmO0iy8Fp
4nyn8ArHnXLUwwvmNKYS+NRI37tV+7hi7BPI9y00PwIW5f9S1leY+GLJVg==
-----END PUBLIC KEY-----
";

/// Reads `data` as what a registry serves for signatures: a simple-signing payload, a Sigstore
/// bundle (checked with a fixed key), and a base64 signature. A payload that parses must come back
/// with the same claims from cosign's encoding of it.
pub fn signature(data: &[u8]) {
    if let Ok(claims) = crate::cosign::Claims::from_payload(data) {
        let again = crate::cosign::Claims::from_payload(&claims.to_payload()).expect("encoded payloads parse");
        assert_eq!(again, claims);
    }
    let key = crate::cosign::PublicKey::from_pem(FUZZ_KEY, "fuzz key").expect("the fuzz key parses");
    assert!(crate::cosign::verify_bundle(data, &key).is_err(), "nothing the fuzzer makes is signed by the fuzz key");
    assert!(key.verify_base64(b"payload", std::str::from_utf8(data).unwrap_or("")).is_err());
}
