//! The embedded store against the conformance suite, plus what only it promises: revisions
//! from 0, persistence across reopen, bounded history, and lagging watchers.

use futures::StreamExt;
use store::conformance::{self, next_event, next_events};
use store::{EmbeddedOptions, EmbeddedStore, EventKind, Store, StoreError};

fn temp_store() -> (tempfile::TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).expect("open embedded store");
    (dir, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_conformance_suite() {
    let (_dir, store) = temp_store();
    conformance::run_all(&store).await;
}

#[tokio::test]
async fn a_new_store_is_at_revision_zero_and_the_first_write_gets_one() {
    let (_dir, store) = temp_store();
    assert_eq!(store.revision().await.unwrap(), 0);
    let (listed, revision) = store.list("").await.unwrap();
    assert!(listed.is_empty());
    assert_eq!(revision, 0);
    assert_eq!(store.create("/a", b"1".to_vec()).await.unwrap(), 1);
}

#[tokio::test]
async fn data_revisions_and_history_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    {
        let store = EmbeddedStore::open(&path).unwrap();
        store.create("/a", b"1".to_vec()).await.unwrap();
        store.create("/b", b"2".to_vec()).await.unwrap();
        store.update("/a", b"3".to_vec(), 1).await.unwrap();
        store.delete("/b", None).await.unwrap();
    }
    let store = EmbeddedStore::open(&path).unwrap();
    assert_eq!(store.revision().await.unwrap(), 4);
    let (listed, revision) = store.list("/").await.unwrap();
    assert_eq!(revision, 4);
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].key.as_str(), listed[0].value.as_slice()), ("/a", &b"3"[..]));
    assert_eq!((listed[0].create_revision, listed[0].mod_revision), (1, 3));
    let mut watch = store.watch("/", 0).await.unwrap();
    let kinds: Vec<_> = next_events(&mut watch, 4, "history after reopen").await.iter().map(|e| (e.kind, e.revision())).collect();
    assert_eq!(kinds, [(EventKind::Put, 1), (EventKind::Put, 2), (EventKind::Put, 3), (EventKind::Delete, 4)]);
    assert_eq!(store.create("/c", Vec::new()).await.unwrap(), 5);
    assert_eq!(next_event(&mut watch, "live after reopen").await.revision(), 5);
}

#[tokio::test]
async fn opening_a_file_held_by_another_store_names_the_file() {
    let (dir, _store) = temp_store();
    let path = dir.path().join("store.redb");
    let error = EmbeddedStore::open(&path).err().expect("second open of the same file must fail");
    assert!(error.to_string().contains(&path.display().to_string()), "error names the file: {error}");
}

#[tokio::test]
async fn history_is_bounded_by_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let options = EmbeddedOptions { retained_revisions: 5, ..EmbeddedOptions::default() };
    let store = EmbeddedStore::open_with(&path, options.clone()).unwrap();
    for i in 0..20 {
        store.create(&format!("/k/{i:02}"), Vec::new()).await.unwrap();
    }
    // Revisions 16..=20 are kept: a watch may start after 15.
    match store.watch("/k/", 14).await {
        Err(StoreError::Compacted { requested: 14, oldest: 15 }) => {}
        Err(other) => panic!("expected Compacted {{ 14, 15 }}, got {other}"),
        Ok(_) => panic!("expected Compacted, got a stream"),
    }
    let mut watch = store.watch("/k/", 15).await.unwrap();
    let revisions: Vec<_> = next_events(&mut watch, 5, "kept history").await.iter().map(|e| e.revision()).collect();
    assert_eq!(revisions, [16, 17, 18, 19, 20]);
    drop((watch, store));

    // A smaller retention applies as soon as the file is opened again.
    let store = EmbeddedStore::open_with(&path, EmbeddedOptions { retained_revisions: 2, ..options }).unwrap();
    assert!(matches!(store.watch("/k/", 17).await, Err(StoreError::Compacted { oldest: 18, .. })));
    assert_eq!(store.list("/k/").await.unwrap().0.len(), 20, "compaction keeps every key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_falls_behind_the_broadcast_still_sees_every_change_once() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions { watch_buffer: 2, ..EmbeddedOptions::default() };
    let store = EmbeddedStore::open_with(&dir.path().join("store.redb"), options).unwrap();
    let mut slow = store.watch("/lag/", 0).await.unwrap();
    let mut expected = Vec::new();
    for i in 0..50 {
        expected.push(store.create(&format!("/lag/{i}"), vec![i as u8]).await.unwrap());
        store.create(&format!("/other/{i}"), Vec::new()).await.unwrap();
    }
    let seen: Vec<_> = next_events(&mut slow, 50, "lagging watcher").await.iter().map(|e| e.revision()).collect();
    assert_eq!(seen, expected);
    let last = store.create("/lag/last", Vec::new()).await.unwrap();
    assert_eq!(next_event(&mut slow, "after catching up").await.revision(), last);
}

#[tokio::test]
async fn a_watch_ends_when_its_store_is_dropped() {
    let (_dir, store) = temp_store();
    let mut watch = store.watch("/", 0).await.unwrap();
    drop(store);
    assert!(watch.next().await.is_none());
}

#[tokio::test]
async fn invalid_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions { retained_revisions: 0, ..EmbeddedOptions::default() };
    let error = EmbeddedStore::open_with(&dir.path().join("s.redb"), options).err().expect("refused");
    assert!(error.to_string().contains("retained_revisions"), "{error}");
}
