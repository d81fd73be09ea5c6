use std::fs;
use std::path::Path;

use super::*;

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

fn find<'a>(sbom: &'a Sbom, kind: Kind, name: &str) -> &'a Package {
    sbom.packages.iter().find(|p| p.kind == kind && p.name == name).unwrap_or_else(|| panic!("no {kind:?} package {name}"))
}

/// A Debian root holding this machine's own dpkg database and os-release: real data.
#[test]
fn lists_the_debian_packages_of_a_real_dpkg_database() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "var/lib/dpkg/status", &fs::read("/var/lib/dpkg/status").unwrap());
    write(tmp.path(), "usr/lib/os-release", &fs::read("/usr/lib/os-release").unwrap());
    fs::create_dir_all(tmp.path().join("etc")).unwrap();
    std::os::unix::fs::symlink("../usr/lib/os-release", tmp.path().join("etc/os-release")).unwrap();
    let sbom = catalog(&Rootfs::from_dir(tmp.path())).unwrap();
    let os = sbom.os.as_ref().expect("os-release read through its symlink");
    assert_eq!(os.id, "debian");
    let status = String::from_utf8_lossy(&fs::read("/var/lib/dpkg/status").unwrap()).into_owned();
    let installed = status.split("\n\n").filter(|p| p.lines().any(|l| l.starts_with("Status:") && l.ends_with(" installed"))).count();
    assert_eq!(sbom.packages.iter().filter(|p| p.kind == Kind::Deb).count(), installed);
    let dpkg = find(&sbom, Kind::Deb, "dpkg");
    assert_eq!(dpkg.ecosystem, os.ecosystem().unwrap());
    assert!(dpkg.purl.starts_with("pkg:deb/debian/dpkg@") && dpkg.purl.contains("distro=debian-"), "{}", dpkg.purl);
    assert_eq!(dpkg.location, "/var/lib/dpkg/status");
}

#[test]
fn source_packages_come_from_the_source_field() {
    let status = "Package: libssl3\nStatus: install ok installed\nArchitecture: amd64\nSource: openssl\nVersion: 3.0.11-1~deb12u2\n\n\
Package: libfoo1\nStatus: install ok installed\nSource: foo (1.2-3)\nVersion: 1.2-3+b1\n\n\
Package: removed\nStatus: deinstall ok config-files\nVersion: 1.0\n";
    let os = OsRelease { id: "debian".into(), version_id: "12".into(), pretty_name: String::new() };
    let found = dpkg::parse(status, "/var/lib/dpkg/status", "Debian:12", Some(&os));
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].advisory_key(), ("openssl", "3.0.11-1~deb12u2"));
    assert_eq!(found[1].advisory_key(), ("foo", "1.2-3"));
    assert_eq!(found[0].purl, "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&distro=debian-12");
}

#[test]
fn lists_alpine_packages_by_origin() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "etc/os-release", b"NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.18.4\nPRETTY_NAME=\"Alpine Linux v3.18\"\n");
    write(
        tmp.path(),
        "lib/apk/db/installed",
        b"C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\no:musl\nL:MIT\n\nC:Q1def=\nP:libcrypto3\nV:3.1.4-r0\nA:x86_64\no:openssl\n\n",
    );
    let sbom = catalog(&Rootfs::from_dir(tmp.path())).unwrap();
    assert_eq!(sbom.os.as_ref().unwrap().ecosystem().as_deref(), Some("Alpine:v3.18"));
    let musl = find(&sbom, Kind::Apk, "musl");
    assert_eq!((musl.ecosystem.as_str(), musl.advisory_key()), ("Alpine:v3.18", ("musl", "1.2.4-r2")));
    assert_eq!(musl.purl, "pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64&distro=3.18.4");
    assert_eq!(find(&sbom, Kind::Apk, "libcrypto3").advisory_key(), ("openssl", "3.1.4-r0"));
}

#[test]
fn finds_language_packages_anywhere_in_the_image() {
    let tmp = tempfile::tempdir().unwrap();
    // This repository's own lock file: real registry packages, plus workspace members to skip.
    write(tmp.path(), "src/app/Cargo.lock", &fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock")).unwrap());
    write(
        tmp.path(),
        "srv/web/package-lock.json",
        br#"{"lockfileVersion": 3, "packages": {"": {"name": "web"}, "node_modules/semver": {"version": "7.5.1"}, "node_modules/@babel/core": {"version": "7.22.0"}, "node_modules/a/node_modules/minimist": {"version": "1.2.5"}, "node_modules/local": {"link": true}}}"#,
    );
    write(
        tmp.path(),
        "old/package-lock.json",
        br#"{"lockfileVersion": 1, "dependencies": {"lodash": {"version": "4.17.20", "dependencies": {"ws": {"version": "7.4.5"}}}}}"#,
    );
    write(tmp.path(), "usr/lib/node_modules/axios/package.json", br#"{"name": "axios", "version": "1.5.0"}"#);
    write(tmp.path(), "usr/lib/node_modules/axios/lib/package.json", br#"{"name": "not-a-package", "version": "0.0.0"}"#);
    write(
        tmp.path(),
        "usr/lib/python3/dist-packages/requests-2.28.1.dist-info/METADATA",
        b"Metadata-Version: 2.1\nName: requests\nVersion: 2.28.1\n\nName: not-a-header\n",
    );
    write(tmp.path(), "usr/lib/python3/dist-packages/Flask_Cors-3.0.8.egg-info", b"Metadata-Version: 1.1\nName: Flask-Cors\nVersion: 3.0.8\n");
    write(tmp.path(), "proc/ignored/package-lock.json", br#"{"lockfileVersion": 1, "dependencies": {"evil": {"version": "1.0.0"}}}"#);
    let sbom = catalog(&Rootfs::from_dir(tmp.path())).unwrap();
    assert!(sbom.os.is_none());
    let tokio = find(&sbom, Kind::Cargo, "tokio");
    assert_eq!((tokio.ecosystem.as_str(), tokio.location.as_str()), ("crates.io", "/src/app/Cargo.lock"));
    assert!(sbom.packages.iter().all(|p| p.name != "flotilla" && p.name != "trust"), "workspace members are not registry packages");
    assert_eq!(find(&sbom, Kind::Npm, "semver").version, "7.5.1");
    assert_eq!(find(&sbom, Kind::Npm, "@babel/core").purl, "pkg:npm/%40babel/core@7.22.0");
    assert_eq!(find(&sbom, Kind::Npm, "minimist").version, "1.2.5");
    assert_eq!(find(&sbom, Kind::Npm, "ws").version, "7.4.5");
    assert_eq!(find(&sbom, Kind::Npm, "lodash").location, "/old/package-lock.json");
    assert_eq!(find(&sbom, Kind::Npm, "axios").location, "/usr/lib/node_modules/axios/package.json");
    assert!(sbom.packages.iter().all(|p| p.name != "local" && p.name != "not-a-package" && p.name != "evil"));
    assert_eq!(find(&sbom, Kind::Python, "requests").purl, "pkg:pypi/requests@2.28.1");
    assert_eq!(find(&sbom, Kind::Python, "Flask-Cors").purl, "pkg:pypi/flask-cors@3.0.8");
}

#[test]
fn cyclonedx_and_spdx_documents_list_every_package() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "etc/os-release", b"ID=alpine\nVERSION_ID=3.19.1\n");
    write(tmp.path(), "lib/apk/db/installed", b"P:musl\nV:1.2.4_git20230717-r4\nA:x86_64\no:musl\n\n");
    write(tmp.path(), "a/package-lock.json", br#"{"lockfileVersion": 3, "packages": {"node_modules/ws": {"version": "8.0.0"}}}"#);
    write(tmp.path(), "b/package-lock.json", br#"{"lockfileVersion": 3, "packages": {"node_modules/ws": {"version": "8.0.0"}}}"#);
    let sbom = catalog(&Rootfs::from_dir(tmp.path())).unwrap();
    let subject = Subject { name: "localhost:5000/app:1".into(), digest: "sha256:abc".into() };
    let now = chrono::Utc::now();
    let cdx = to_cyclonedx(&sbom, &subject, now);
    assert_eq!(cdx["bomFormat"], "CycloneDX");
    assert_eq!(cdx["specVersion"], "1.5");
    let components = cdx["components"].as_array().unwrap();
    assert_eq!(components.len(), 1 + sbom.packages.len());
    let refs: std::collections::HashSet<&str> = components.iter().map(|c| c["bom-ref"].as_str().unwrap()).collect();
    assert_eq!(refs.len(), components.len(), "bom-refs are unique even for a package found twice");
    assert!(components.iter().any(|c| c["purl"] == "pkg:apk/alpine/musl@1.2.4_git20230717-r4?arch=x86_64&distro=3.19.1"));
    let spdx = to_spdx(&sbom, &subject, now);
    assert_eq!(spdx["spdxVersion"], "SPDX-2.3");
    let packages = spdx["packages"].as_array().unwrap();
    assert_eq!(packages.len(), 1 + sbom.packages.len());
    assert_eq!(spdx["relationships"].as_array().unwrap().len(), packages.len());
    assert!(packages.iter().any(|p| p["externalRefs"][0]["referenceLocator"] == "pkg:npm/ws@8.0.0"));
}

#[test]
fn distroless_status_d_files_are_listed() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "etc/os-release", b"ID=debian\nVERSION_ID=\"12\"\n");
    write(tmp.path(), "var/lib/dpkg/status.d/libssl3", b"Package: libssl3\nSource: openssl\nVersion: 3.0.11-1~deb12u2\nArchitecture: amd64\n");
    write(tmp.path(), "var/lib/dpkg/status.d/nested/ignored", b"Package: ignored\nVersion: 1\n");
    let sbom = catalog(&Rootfs::from_dir(tmp.path())).unwrap();
    let libssl = find(&sbom, Kind::Deb, "libssl3");
    assert_eq!((libssl.location.as_str(), libssl.advisory_key()), ("/var/lib/dpkg/status.d/libssl3", ("openssl", "3.0.11-1~deb12u2")));
    assert!(sbom.packages.iter().all(|p| p.name != "ignored"));
}
