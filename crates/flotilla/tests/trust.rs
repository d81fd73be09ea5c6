//! Image inventories and vulnerability scans through the binary, on a multi-layer image built
//! by umoci (with a whiteout and an opaque directory) and the committed sample of real OSV
//! advisories.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{repo_root, FLOTILLA};
use serde_json::Value;

fn umoci(args: &[&str]) {
    let out = Command::new("umoci").args(args).output().expect("umoci is installed (scripts/deps.sh)");
    assert!(out.status.success(), "umoci {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

fn flotilla(data: &Path, args: &[&str]) -> Output {
    Command::new(FLOTILLA).args(args).arg("--data-dir").arg(data).output().unwrap()
}

fn ok(data: &Path, args: &[&str]) -> String {
    let out = flotilla(data, args);
    assert!(out.status.success(), "flotilla {args:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn trust_data() -> PathBuf {
    repo_root().join("crates/trust/tests/data")
}

/// Four layers: a Debian 12 base (a real dpkg database), language artefacts, a whiteout
/// deleting an old lock file, and an opaque directory replacing the Python packages.
fn build_image(dir: &Path) -> PathBuf {
    let layout = dir.join("layout");
    let image = format!("{}:12", layout.display());
    umoci(&["init", "--layout", layout.to_str().unwrap()]);
    umoci(&["new", "--image", &image]);
    let base = dir.join("base");
    write(&base, "etc/os-release", &fs::read(trust_data().join("debian12/os-release")).unwrap());
    write(&base, "var/lib/dpkg/status", &fs::read(trust_data().join("debian12/status")).unwrap());
    umoci(&["insert", "--image", &image, base.to_str().unwrap(), "/"]);
    let apps = dir.join("apps");
    write(&apps, "srv/old/package-lock.json", br#"{"lockfileVersion": 1, "dependencies": {"lodash": {"version": "4.17.20"}}}"#);
    write(
        &apps,
        "srv/app/package-lock.json",
        br#"{"lockfileVersion": 3, "packages": {"node_modules/semver": {"version": "7.5.1"}, "node_modules/ws": {"version": "8.17.1"}}}"#,
    );
    write(&apps, "usr/lib/python3/dist-packages/requests-2.28.1.dist-info/METADATA", b"Name: requests\nVersion: 2.28.1\n");
    umoci(&["insert", "--image", &image, apps.to_str().unwrap(), "/"]);
    umoci(&["insert", "--image", &image, "--whiteout", "/srv/old"]);
    let python = dir.join("python");
    write(&python, "requests-2.31.0.dist-info/METADATA", b"Name: requests\nVersion: 2.31.0\n");
    umoci(&["insert", "--image", &image, "--opaque", python.to_str().unwrap(), "/usr/lib/python3/dist-packages"]);
    layout
}

#[test]
fn sbom_and_scan_of_a_multi_layer_debian_image() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let layout = build_image(dir.path());
    ok(&data, &["image", "import", layout.to_str().unwrap(), "--name", "trust/debian:12"]);

    let table = ok(&data, &["image", "sbom", "trust/debian:12", "--format", "table"]);
    for expected in ["wget", "1.21.3-1+deb12u1", "semver", "7.5.1", "2.31.0", "/srv/app/package-lock.json"] {
        assert!(table.contains(expected), "{expected} missing from\n{table}");
    }
    assert!(!table.contains("lodash"), "the whited-out lock file is listed:\n{table}");
    assert!(!table.contains("2.28.1"), "the Python package under the opaque directory is listed:\n{table}");
    let cdx: Value = serde_json::from_str(&ok(&data, &["image", "sbom", "trust/debian:12"])).unwrap();
    let components = cdx["components"].as_array().unwrap();
    // 18 Debian packages, semver, ws, requests, and the operating system.
    assert_eq!(components.len(), 22, "{cdx:#}");
    assert!(components.iter().any(|c| c["purl"] == "pkg:deb/debian/bash@5.2.15-2%2Bb8?arch=amd64&distro=debian-12"), "{cdx:#}");
    let spdx: Value = serde_json::from_str(&ok(&data, &["image", "sbom", "trust/debian:12", "--format", "spdx"])).unwrap();
    assert_eq!(spdx["packages"].as_array().unwrap().len(), 22);

    let imported = ok(&data, &["vulndb", "import", trust_data().join("osv").to_str().unwrap()]);
    assert!(imported.contains("37 advisories added"), "{imported}");
    let out = flotilla(&data, &["image", "scan", "trust/debian:12", "-o", "json", "--max-age-days", "0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning: the vulnerability database was built"), "no staleness warning");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let found: BTreeSet<(String, String)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["package"]["name"].as_str().unwrap().to_string(), f["advisory"].as_str().unwrap().to_string()))
        .collect();
    let expected: BTreeSet<(String, String)> = [("wget", "CVE-2024-10524"), ("semver", "GHSA-c2qf-rxjj-qqgw"), ("requests", "GHSA-9wx4-h78v-vm56")]
        .into_iter()
        .map(|(a, b)| (a.into(), b.into()))
        .collect();
    assert_eq!(found, expected, "{report:#}");

    let fresh = flotilla(&data, &["image", "scan", "trust/debian:12"]);
    assert!(!String::from_utf8_lossy(&fresh.stderr).contains("warning"), "a fresh database is not stale");
    let text = String::from_utf8_lossy(&fresh.stdout);
    assert!(text.contains("GHSA-c2qf-rxjj-qqgw") && text.contains("7.5.2"), "{text}");
    assert!(text.contains("vulnerabilities: 2 MEDIUM, 1 UNKNOWN"), "{text}");
    assert_eq!(flotilla(&data, &["image", "scan", "trust/debian:12", "--fail-on", "HIGH"]).status.code(), Some(0));
    let failed = flotilla(&data, &["image", "scan", "trust/debian:12", "--fail-on", "medium"]);
    assert_eq!(failed.status.code(), Some(3), "{}", String::from_utf8_lossy(&failed.stderr));
}

#[test]
fn a_bad_advisory_is_named_and_the_database_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ok(&data, &["vulndb", "import", trust_data().join("osv").to_str().unwrap()]);
    let before = ok(&data, &["vulndb", "info"]);
    assert!(before.contains("advisories:      37") && before.contains("Debian:12"), "{before}");
    let bad = dir.path().join("bad.json");
    fs::write(&bad, r#"{"id": "BAD-1", "modified": "2026-01-01T00:00:00Z", "affected": [{"package": {"ecosystem": "npm", "name": "x"}, "ranges": [{"type": "SEMVER", "events": [{"fixed": "1.0.0"}]}]}]}"#).unwrap();
    let out = flotilla(&data, &["vulndb", "import", trust_data().join("osv").to_str().unwrap(), bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("bad.json") && err.contains("BAD-1") && err.contains("affected[0].ranges[0].events") && err.contains("nothing was imported"), "{err}");
    assert_eq!(ok(&data, &["vulndb", "info"]), before);
    let missing = flotilla(&dir.path().join("empty"), &["image", "scan", "nothing"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("flotilla vulndb import"), "{}", String::from_utf8_lossy(&missing.stderr));
}

/// The vulnerability gate at admission: the server pulls the image it is asked to admit, scans it
/// against its database, and refuses findings above the policy's limit unless an unexpired
/// exception names them.
#[test]
fn admission_refuses_images_with_findings_above_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let layout = build_image(dir.path());
    let registry = image::testing::Registry::start();
    let reference = registry.push(&layout, "12", "debian", "12");
    let mut cluster = common::Cluster::up("vulngate");
    ok(cluster.data_dir(), &["vulndb", "import", trust_data().join("osv").to_str().unwrap()]);
    let policy = |exceptions: &str| {
        format!(
            "apiVersion: flotilla.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata:\n  name: low-only\nspec:\n  images: [\"127.0.0.1:*/**\"]\n  vulnerabilities:\n    maxSeverity: LOW\n    exceptions:\n{exceptions}"
        )
    };
    let pod = format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: debian\nspec:\n  containers:\n  - name: main\n    image: {reference}\n");

    cluster.apply(&policy("    - id: GHSA-9wx4-h78v-vm56\n      expires: \"2001-01-01T00:00:00Z\"\n"));
    let (admitted, _, err) = cluster.try_apply(&pod);
    assert!(!admitted, "an image with MEDIUM findings was admitted");
    for part in [
        "ClusterImagePolicy low-only rule vulnerabilities",
        "2 finding(s) above maxSeverity LOW",
        "GHSA-c2qf-rxjj-qqgw in semver 7.5.1",
        "GHSA-9wx4-h78v-vm56",
        "to fix: rebuild the image",
    ] {
        assert!(err.contains(part), "{part:?} missing from: {err}");
    }
    assert!(!err.contains("CVE-2024-10524"), "an UNKNOWN finding is not above LOW: {err}");
    assert!(cluster.try_run(&["get", "pod", "debian"]).is_err());

    cluster.apply(&policy("    - id: GHSA-9wx4-h78v-vm56\n      expires: \"2099-01-01T00:00:00Z\"\n    - id: CVE-2022-25883\n"));
    let admitted = cluster.apply(&pod);
    assert!(admitted.contains("debian"), "{admitted}");
    let image = cluster.get("pod", "debian")["spec"]["containers"][0]["image"].as_str().unwrap().to_string();
    assert!(image.starts_with(&format!("{reference}@sha256:")), "{image}");

    // Running workloads are rescanned when the database changes: with the exceptions gone and
    // the advisories re-imported, the running pod is reported by an Event and the metric.
    let strict = "apiVersion: flotilla.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata:\n  name: low-only\nspec:\n  images: [\"127.0.0.1:*/**\"]\n  vulnerabilities:\n    maxSeverity: LOW\n";
    cluster.apply(strict);
    ok(cluster.data_dir(), &["vulndb", "import", trust_data().join("osv").to_str().unwrap()]);
    let message = common::wait_for(std::time::Duration::from_secs(30), "a VulnerabilitiesFound Event", || {
        let events: Value = serde_json::from_str(&cluster.run_ok(&["get", "events", "-o", "json"])).unwrap();
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["reason"] == "VulnerabilitiesFound" && e["involvedObject"]["name"] == "debian")
            .map(|e| e["message"].as_str().unwrap_or("").to_string())
    });
    assert!(message.contains("GHSA-c2qf-rxjj-qqgw") && message.contains("after a vulnerability database update"), "{message}");
    let metrics = cluster.metrics();
    assert!(metrics.contains("flotilla_image_vulnerable_pods 1"), "{metrics}");
    cluster.delete_everything();
    cluster.assert_host_clean();
}
