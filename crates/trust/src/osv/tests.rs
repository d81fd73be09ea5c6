use super::*;

fn sample(id: &str) -> Vec<Entry> {
    let path = format!("{}/tests/data/osv/{id}.json", env!("CARGO_MANIFEST_DIR"));
    parse(&std::fs::read(&path).unwrap()).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn for_package<'a>(entries: &'a [Entry], ecosystem: &str, name: &str) -> Vec<&'a Entry> {
    entries.iter().filter(|e| e.ecosystem == ecosystem && e.name == name).collect()
}

fn affects(entries: &[Entry], ecosystem: &str, name: &str, version: &str) -> bool {
    let matching = for_package(entries, ecosystem, name);
    assert!(!matching.is_empty(), "no entry for {ecosystem}/{name}");
    let answers: Vec<Option<bool>> = matching.iter().map(|e| e.affects(version)).collect();
    if answers.contains(&Some(true)) {
        return true;
    }
    assert!(!answers.contains(&None), "{ecosystem}/{name} {version}: undecidable");
    false
}

#[test]
fn every_sample_advisory_parses() {
    let dir = format!("{}/tests/data/osv", env!("CARGO_MANIFEST_DIR"));
    let mut count = 0;
    for file in std::fs::read_dir(dir).unwrap() {
        let path = file.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let entries = parse(&std::fs::read(&path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!entries.is_empty(), "{} has no affected packages", path.display());
        count += 1;
    }
    assert_eq!(count, 37);
}

#[test]
fn debian_ranges_use_dpkg_ordering() {
    let dla = sample("DLA-3022-1");
    assert!(affects(&dla, "Debian:9", "dpkg", "1.18.25"));
    assert!(affects(&dla, "Debian:9", "dpkg", "1.18.26~rc1"), "a tilde sorts before the fixed version");
    assert!(!affects(&dla, "Debian:9", "dpkg", "1.18.26"));
    assert_eq!(dla[0].fixed_after("1.18.24"), Some("1.18.26"));
    let tz = sample("DLA-3051-1");
    assert!(affects(&tz, "Debian:9", "tzdata", "2021a-0+deb9u3"));
    assert!(!affects(&tz, "Debian:9", "tzdata", "2021a-0+deb9u4"));
}

#[test]
fn an_introduced_only_range_affects_every_later_version() {
    let wget = sample("CVE-2024-10524");
    assert!(affects(&wget, "Debian:12", "wget", "1.21.3-1+deb12u1"));
    assert!(affects(&wget, "Debian:12", "wget", "9.9-1"), "no fix yet");
    let rsa = sample("RUSTSEC-2023-0071");
    assert!(affects(&rsa, "crates.io", "rsa", "0.9.6"));
    assert_eq!(rsa[0].fixed_after("0.9.6"), None);
}

#[test]
fn several_ranges_in_one_entry_each_count() {
    let time = sample("RUSTSEC-2020-0071");
    assert!(affects(&time, "crates.io", "time", "0.1.45"));
    assert!(!affects(&time, "crates.io", "time", "0.2.1"));
    assert!(affects(&time, "crates.io", "time", "0.2.22"));
    assert!(!affects(&time, "crates.io", "time", "0.2.23"));
    assert!(!affects(&time, "crates.io", "time", "0.3.0"));
}

#[test]
fn last_affected_includes_that_version_only() {
    let log4j = sample("GHSA-3pxv-7cmr-fjr4");
    // Maven ordering is not implemented: the explicit version list decides.
    assert!(affects(&log4j, "Maven", "org.apache.logging.log4j:log4j-core", "3.0.0-beta3"));
    let entry = Entry {
        ranges: vec![Range { events: vec![Event::Introduced("1.0.0".into()), Event::LastAffected("1.2.0".into())] }],
        versions: Vec::new(),
        ecosystem: "npm".into(),
        ..log4j[0].clone()
    };
    assert_eq!(entry.affects("1.2.0"), Some(true));
    assert_eq!(entry.affects("1.2.1"), Some(false));
    assert_eq!(entry.affects("0.9.0"), Some(false));
}

#[test]
fn alpine_and_python_and_npm_ranges() {
    let musl = sample("ALPINE-CVE-2025-26519");
    assert!(affects(&musl, "Alpine:v3.18", "musl", "1.2.4-r2"));
    assert!(!affects(&musl, "Alpine:v3.18", "musl", "1.2.4-r3"));
    assert!(affects(&musl, "Alpine:v3.19", "musl", "1.2.4_git20230717-r4"));
    let requests = sample("PYSEC-2023-74");
    assert!(affects(&requests, "PyPI", "requests", "2.28.1"));
    assert!(!affects(&requests, "PyPI", "requests", "2.31.0"));
    let semver = sample("GHSA-c2qf-rxjj-qqgw");
    assert!(affects(&semver, "npm", "semver", "7.5.1"));
    assert!(!affects(&semver, "npm", "semver", "7.5.2"));
    assert!(affects(&semver, "npm", "semver", "5.7.1"));
}

#[test]
fn withdrawn_advisories_never_match() {
    let git2 = sample("RUSTSEC-2023-0002");
    assert!(git2.iter().all(|e| e.withdrawn));
    assert!(!affects(&git2, "crates.io", "git2", "0.15.0"));
}

#[test]
fn severity_comes_from_cvss3_or_the_database_rating() {
    let semver = sample("GHSA-c2qf-rxjj-qqgw");
    assert_eq!(semver[0].severity.level, Level::Medium);
    assert_eq!(semver[0].severity.score, Some(5.3));
    // CVSS v4 only: GitHub's own rating.
    assert_eq!(sample("GHSA-3pxv-7cmr-fjr4")[0].severity.level, Level::Medium);
    assert_eq!(sample("ALPINE-CVE-2023-46850")[0].severity.level, Level::Critical);
    assert_eq!(sample("DLA-3008-1")[0].severity.level, Level::Unknown);
}

#[test]
fn pypi_names_are_normalised() {
    assert_eq!(normalize_name("PyPI", "Flask_Cors"), "flask-cors");
    assert_eq!(normalize_name("PyPI", "zope..interface"), "zope-interface");
    assert_eq!(normalize_name("npm", "Foo_Bar"), "Foo_Bar");
    assert!(sample("GHSA-3f63-hfp8-52jq").iter().all(|e| e.name == "pillow"));
}

#[test]
fn bad_records_name_the_field() {
    let cases: [(&str, &str); 7] = [
        ("[]", "id"),
        (r#"{"id": "X-1"}"#, "modified"),
        (r#"{"id": "X-1", "modified": "2024-01-01T00:00:00Z", "affected": [{}]}"#, "affected[0].package"),
        (r#"{"id": "X-1", "modified": "2024-01-01T00:00:00Z", "affected": [{"package": {"ecosystem": "npm"}}]}"#, "affected[0].package.name"),
        (
            r#"{"id": "X-1", "modified": "m", "affected": [{"package": {"ecosystem": "npm", "name": "a"}, "ranges": [{"type": "SEMVER", "events": [{"introduced": "0", "fixed": "1"}]}]}]}"#,
            "affected[0].ranges[0].events[0]",
        ),
        (
            r#"{"id": "X-1", "modified": "m", "affected": [{"package": {"ecosystem": "npm", "name": "a"}, "ranges": [{"type": "SEMVER", "events": [{"fixed": "1"}]}]}]}"#,
            "affected[0].ranges[0].events",
        ),
        (
            r#"{"id": "X-1", "modified": "m", "affected": [{"package": {"ecosystem": "npm", "name": "a"}, "ranges": [{"type": "RPM", "events": []}]}]}"#,
            "affected[0].ranges[0].type",
        ),
    ];
    for (doc, field) in cases {
        let err = parse(doc.as_bytes()).expect_err(doc);
        assert_eq!(err.field, field, "{doc}: {err}");
    }
}

#[test]
fn a_range_with_a_version_that_does_not_parse_is_undecided_not_a_panic() {
    let mut events = Vec::new();
    for i in 0..30 {
        events.push(if i % 3 == 0 { Event::Fixed("bad version".into()) } else { Event::Introduced(format!("{}.0.0", i % 5)) });
    }
    let entry = Entry { ranges: vec![Range { events }], versions: Vec::new(), ..sample("GHSA-c2qf-rxjj-qqgw")[0].clone() };
    assert_eq!(entry.affects("1.0.0"), None);
}
