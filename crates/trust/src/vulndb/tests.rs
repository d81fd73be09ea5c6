use std::path::PathBuf;

use chrono::TimeZone as _;

use super::*;

fn samples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/osv")
}

fn when(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, 12, 0, 0).unwrap()
}

#[test]
fn imports_a_directory_and_finds_entries_by_package() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("osv.db");
    let report = import(&path, &[samples()], when(1)).unwrap();
    assert_eq!((report.files, report.updated), (37, 37));
    assert_eq!(report.meta.advisories, 37);
    let db = VulnDb::open(&path).unwrap();
    assert_eq!(db.meta(), &report.meta);
    let dpkg = db.lookup("Debian:9", "dpkg").unwrap();
    assert_eq!(dpkg.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["DLA-3022-1"]);
    let urllib3: Vec<String> = db.lookup("PyPI", "URLLib3").unwrap().into_iter().map(|e| e.id).collect();
    assert!(urllib3.contains(&"PYSEC-2020-148".to_string()) && urllib3.contains(&"GHSA-34jh-p97f-mpxf".to_string()), "{urllib3:?}");
    assert!(db.lookup("Debian:9", "dpk").unwrap().is_empty());
    assert!(db.lookup("Debian:12", "zzz").unwrap().is_empty());
    assert_eq!(db.entries().unwrap().len() as u64, db.meta().entries);
}

#[test]
fn a_newer_advisory_replaces_an_older_and_an_older_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("osv.db");
    let advisory = |modified: &str, fixed: &str| {
        format!(
            r#"{{"id": "X-1", "modified": "{modified}", "affected": [{{"package": {{"ecosystem": "npm", "name": "left-pad"}}, "ranges": [{{"type": "SEMVER", "events": [{{"introduced": "0"}}, {{"fixed": "{fixed}"}}]}}]}}]}}"#
        )
    };
    let file = dir.path().join("x.json");
    std::fs::write(&file, advisory("2024-02-01T00:00:00Z", "1.2.0")).unwrap();
    import(&path, std::slice::from_ref(&file), when(1)).unwrap();
    std::fs::write(&file, advisory("2024-01-01T00:00:00Z", "1.1.0")).unwrap();
    let report = import(&path, std::slice::from_ref(&file), when(2)).unwrap();
    assert_eq!((report.updated, report.unchanged), (0, 1));
    assert_eq!(VulnDb::open(&path).unwrap().lookup("npm", "left-pad").unwrap()[0].fixed_after("1.0.0"), Some("1.2.0"));
    std::fs::write(&file, advisory("2024-03-01T00:00:00Z", "1.3.0")).unwrap();
    import(&path, std::slice::from_ref(&file), when(3)).unwrap();
    let db = VulnDb::open(&path).unwrap();
    let entries = db.lookup("npm", "left-pad").unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].fixed_after("1.0.0"), Some("1.3.0"));
    assert_eq!(db.meta().built_at, when(3));
}

#[test]
fn a_bad_advisory_names_file_and_field_and_leaves_the_database_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("osv.db");
    import(&path, &[samples()], when(1)).unwrap();
    let before = std::fs::read(&path).unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"id": "BAD-1", "modified": "2024-01-01T00:00:00Z", "affected": [{"package": {"ecosystem": "npm", "name": "x"}, "ranges": [{"type": "SEMVER"}]}]}"#,
    )
    .unwrap();
    let err = import(&path, &[samples(), bad.clone()], when(2)).unwrap_err().to_string();
    assert!(err.contains("bad.json") && err.contains("affected[0].ranges[0].events") && err.contains("nothing was imported"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_corrupt_or_missing_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("osv.db");
    let missing = VulnDb::open(&path).err().unwrap().to_string();
    assert!(missing.contains("flotilla vulndb import"), "{missing}");
    import(&path, &[samples()], when(1)).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8 + 5 * 8] = 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let err = VulnDb::open(&path).err().unwrap().to_string();
    assert!(err.contains("unreadable"), "{err}");
    std::fs::write(&path, b"FLOTVDB1").unwrap();
    assert!(VulnDb::open(&path).err().unwrap().to_string().contains("header"));
}

#[test]
fn staleness_is_measured_from_the_build_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("osv.db");
    import(&path, &[samples()], when(1)).unwrap();
    let db = VulnDb::open(&path).unwrap();
    assert_eq!(db.stale(when(5), chrono::Duration::days(7)), None);
    assert_eq!(db.stale(when(20), chrono::Duration::days(7)), Some(chrono::Duration::days(19)));
}

#[test]
fn an_advisory_updated_to_name_no_package_drops_its_entries_and_a_corrupt_database_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("osv.db");
    let file = dir.path().join("x.json");
    std::fs::write(
        &file,
        r#"{"id": "X-1", "modified": "2024-01-01T00:00:00Z", "affected": [{"package": {"ecosystem": "npm", "name": "a"}, "versions": ["1.0.0"]}]}"#,
    )
    .unwrap();
    import(&path, std::slice::from_ref(&file), when(1)).unwrap();
    assert_eq!(VulnDb::open(&path).unwrap().lookup("npm", "a").unwrap().len(), 1);
    std::fs::write(&file, r#"{"id": "X-1", "modified": "2024-02-01T00:00:00Z", "affected": []}"#).unwrap();
    assert_eq!(import(&path, std::slice::from_ref(&file), when(2)).unwrap().updated, 1);
    assert!(VulnDb::open(&path).unwrap().lookup("npm", "a").unwrap().is_empty());
    std::fs::write(&path, b"FLOTVDB1 and garbage").unwrap();
    let report = import(&path, &[samples()], when(3)).unwrap();
    assert_eq!(report.meta.advisories, 37);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
}
