use super::*;

fn store() -> (tempfile::TempDir, BlobStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(&dir.path().join("blobs"), &dir.path().join("tmp")).unwrap();
    (dir, store)
}

#[test]
fn stores_and_reads_back_verified_content() {
    let (_dir, store) = store();
    let desc = store.put_bytes("x", b"hello").unwrap();
    assert_eq!(desc.digest, Digest::of(b"hello"));
    assert!(store.contains(&desc));
    assert_eq!(store.read_verified(&desc, 100).unwrap(), b"hello");
    assert_eq!(store.list().unwrap(), vec![desc.digest.clone()]);
    assert!(matches!(store.read_verified(&desc, 2), Err(BlobError::TooLarge { .. })));
}

#[test]
fn refuses_content_that_does_not_match_its_descriptor() {
    let (dir, store) = store();
    let wrong_digest = Descriptor::new("x", Digest::of(b"other"), 5);
    let err = store.put_reader(&wrong_digest, &b"hello"[..]).unwrap_err();
    assert!(err.to_string().contains(wrong_digest.digest.as_str()), "{err}");
    assert!(!store.contains(&wrong_digest));

    let too_long = Descriptor::new("x", Digest::of(b"hell"), 4);
    assert!(matches!(store.put_reader(&too_long, &b"hello"[..]), Err(BlobError::Corrupt { .. })));
    let too_short = Descriptor::new("x", Digest::of(b"hello"), 6);
    assert!(matches!(store.put_reader(&too_short, &b"hello"[..]), Err(BlobError::Corrupt { .. })));
    assert!(store.list().unwrap().is_empty());
    assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0, "temp files are cleaned up");
}

#[test]
fn detects_corruption_on_disk_when_read() {
    let (_dir, store) = store();
    let desc = store.put_bytes("x", b"hello").unwrap();
    std::fs::write(store.path(&desc.digest), b"jello").unwrap();
    let err = store.read_verified(&desc, 100).unwrap_err();
    assert!(matches!(&err, BlobError::Corrupt { digest, .. } if *digest == desc.digest), "{err}");
    std::fs::write(store.path(&desc.digest), b"hello world").unwrap();
    assert!(matches!(store.read_verified(&desc, 100), Err(BlobError::Corrupt { .. })));
    store.remove(&desc.digest).unwrap();
    assert!(matches!(store.read_verified(&desc, 100), Err(BlobError::Missing { .. })));
}
