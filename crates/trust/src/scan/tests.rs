use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use super::*;
use crate::rootfs::Rootfs;
use crate::sbom::catalog;

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

fn database(dir: &Path) -> VulnDb {
    let path = dir.join("osv.db");
    crate::vulndb::import(&path, &[Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/osv")], chrono::Utc::now()).unwrap();
    VulnDb::open(&path).unwrap()
}

/// A Debian 12 root with a small dpkg database and language artefacts, against the real
/// advisory sample: exactly the vulnerable packages are found, with the version that fixes each.
#[test]
fn finds_exactly_the_vulnerable_packages() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    write(&root, "etc/os-release", b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n");
    write(
        &root,
        "var/lib/dpkg/status",
        b"Package: wget\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.21.3-1+deb12u1\n\n\
Package: dpkg\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.18.25\n\n\
Package: libssl3\nStatus: install ok installed\nArchitecture: amd64\nSource: openssl\nVersion: 3.0.11-1~deb12u2\n\n",
    );
    write(
        &root,
        "srv/package-lock.json",
        br#"{"lockfileVersion": 3, "packages": {"node_modules/semver": {"version": "7.5.1"}, "node_modules/ws": {"version": "8.17.1"}, "node_modules/minimist": {"version": "1.2.5"}, "node_modules/lodash": {"version": "4.17.21"}}}"#,
    );
    write(&root, "usr/lib/python3/dist-packages/requests-2.31.0.dist-info/METADATA", b"Name: requests\nVersion: 2.31.0\n");
    write(&root, "app/Cargo.lock", b"[[package]]\nname = \"h2\"\nversion = \"0.3.20\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\n[[package]]\nname = \"regex\"\nversion = \"1.5.5\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n");
    let sbom = catalog(&Rootfs::from_dir(&root)).unwrap();
    let report = scan(&sbom, &database(tmp.path())).unwrap();
    let found: BTreeSet<(String, String, Option<String>)> =
        report.findings.iter().map(|f| (f.package.name.clone(), f.advisory.clone(), f.fixed.clone())).collect();
    let expected: BTreeSet<(String, String, Option<String>)> = [
        ("wget", "CVE-2024-10524", None),
        ("semver", "GHSA-c2qf-rxjj-qqgw", Some("7.5.2")),
        ("minimist", "GHSA-xvch-5gv4-984h", Some("1.2.6")),
        ("requests", "GHSA-9wx4-h78v-vm56", Some("2.32.2")),
        ("h2", "RUSTSEC-2024-0003", Some("0.3.24")),
    ]
    .into_iter()
    .map(|(p, a, f)| (p.to_string(), a.to_string(), f.map(str::to_string)))
    .collect();
    // dpkg 1.18.25 is affected in Debian 9 (DLA-3022-1), not in this Debian 12 image.
    assert_eq!(found, expected);
    assert_eq!(report.packages, sbom.packages.len());
    assert!(report.undecided.is_empty(), "{:?}", report.undecided);
    let severities: Vec<Level> = report.findings.iter().map(|f| f.severity.level).collect();
    assert!(severities.windows(2).all(|w| w[0] >= w[1]), "most severe first: {severities:?}");
    assert_eq!(report.worst(), Some(Level::Critical), "minimist's prototype pollution is 9.8");
}

#[test]
fn an_unknown_os_is_counted_not_matched() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    write(&root, "etc/os-release", b"ID=plan9\nVERSION_ID=4\n");
    write(&root, "var/lib/dpkg/status", b"Package: wget\nStatus: install ok installed\nVersion: 1.21.3-1\n\n");
    let report = scan(&catalog(&Rootfs::from_dir(&root)).unwrap(), &database(tmp.path())).unwrap();
    assert_eq!((report.packages, report.unknown_ecosystem, report.findings.len()), (1, 1, 0));
}
