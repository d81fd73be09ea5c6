//! The embedded store with volatile key prefixes: the conformance suite with every key in
//! memory and with volatile and durable keys mixed, no file writes for volatile keys, listings
//! consistent across both kinds, and what reopening keeps and drops.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use store::conformance::{self, next_event, next_events, unique_root};
use store::{EmbeddedOptions, EmbeddedStore, KeyValue, Revision, Store, StoreError};

const LEASES: &str = "/registry/leases/";

fn options(prefixes: &[&str]) -> EmbeddedOptions {
    let volatile_prefixes = prefixes.iter().map(|p| p.to_string()).collect();
    EmbeddedOptions { volatile_prefixes, ..EmbeddedOptions::default() }
}

fn open(path: &Path, prefixes: &[&str]) -> EmbeddedStore {
    EmbeddedStore::open_with(path, options(prefixes)).expect("open embedded store")
}

/// Everything about the file a write could change.
fn file_state(path: &Path) -> (u64, SystemTime, Vec<u8>) {
    let metadata = std::fs::metadata(path).expect("file metadata");
    (metadata.len(), metadata.modified().expect("mtime"), std::fs::read(path).expect("read the file"))
}

fn assert_compacted(outcome: Result<store::WatchStream, StoreError>, what: &str) {
    match outcome {
        Err(StoreError::Compacted { .. }) => {}
        Err(other) => panic!("{what}: expected Compacted, got {other}"),
        Ok(_) => panic!("{what}: expected Compacted, got a stream"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_conformance_suite_with_every_key_volatile() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store.redb"), &["/"]);
    conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_conformance_suite_with_volatile_and_durable_keys_mixed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let root = unique_root();
    let volatile: Vec<String> =
        ["revisions/", "create/", "list/a/", "list/ab", "watch/a", "watch/c", "watch-sibling/", "concurrent/w1/", "compaction/k2", "compaction/k4"]
            .iter()
            .map(|suffix| format!("{root}/{suffix}"))
            .collect();
    let prefixes: Vec<&str> = volatile.iter().map(String::as_str).collect();
    let store = open(&path, &prefixes);
    conformance::run_all_under(&store, &root).await;

    // Both kinds were exercised: reopening keeps exactly the keys outside the volatile prefixes.
    let (before, _) = store.list(&format!("{root}/")).await.unwrap();
    drop(store);
    let store = open(&path, &prefixes);
    let (after, _) = store.list(&format!("{root}/")).await.unwrap();
    let durable: Vec<KeyValue> = before.iter().filter(|kv| !volatile.iter().any(|p| kv.key.starts_with(p))).cloned().collect();
    assert!(!durable.is_empty() && durable.len() < before.len(), "the run wrote keys of both kinds");
    assert_eq!(after, durable);
}

#[tokio::test]
async fn volatile_writes_leave_the_file_untouched_while_revisions_advance() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let store = open(&path, &[LEASES]);
    let node = "/registry/nodes/n1";
    let lease = format!("{LEASES}n1");
    assert_eq!(store.create(node, b"node".to_vec()).await.unwrap(), 1);
    // The first volatile write reserves revisions with one commit; the next ones need none.
    let mut revision = store.create(&lease, b"0".to_vec()).await.unwrap();
    assert_eq!(revision, 2);
    let before = file_state(&path);

    for beat in 1..=2_000u32 {
        revision = store.update(&lease, beat.to_string().into_bytes(), revision).await.unwrap();
    }
    assert_eq!((revision, store.revision().await.unwrap()), (2_002, 2_002));
    assert!(file_state(&path) == before, "2,000 lease renewals changed the file");

    let (listed, listed_at) = store.list("/registry/").await.unwrap();
    let keys: Vec<(&str, Revision)> = listed.iter().map(|kv| (kv.key.as_str(), kv.mod_revision)).collect();
    assert_eq!(keys, [(lease.as_str(), 2_002), (node, 1)]);
    assert_eq!(listed_at, 2_002);

    // The check does see a write: a durable one changes the file.
    assert_eq!(store.update(node, b"node2".to_vec(), 1).await.unwrap(), 2_003);
    assert!(file_state(&path) != before, "a durable write must reach the file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_drops_volatile_keys_keeps_durable_ones_and_counts_past_every_revision_handed_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let node = "/registry/nodes/n1";
    let lease = format!("{LEASES}n1");
    let (highest, node_kv) = {
        let store = open(&path, &[LEASES]);
        let mut node_revision = store.create(node, b"0".to_vec()).await.unwrap();
        let mut lease_revision = store.create(&lease, b"0".to_vec()).await.unwrap();
        // More renewals than one reservation holds, with durable writes among them.
        for beat in 1..=12_000u32 {
            let value = beat.to_string().into_bytes();
            lease_revision = store.update(&lease, value.clone(), lease_revision).await.unwrap();
            if beat % 1_000 == 0 {
                node_revision = store.update(node, value, node_revision).await.unwrap();
            }
        }
        assert_eq!(store.revision().await.unwrap(), 12_014);
        (lease_revision.max(node_revision), store.get(node).await.unwrap().unwrap())
    };

    let store = open(&path, &[LEASES]);
    let current = store.revision().await.unwrap();
    assert!(current > highest, "revision after reopening {current} must pass every one handed out ({highest})");
    assert_eq!(store.get(&lease).await.unwrap(), None, "volatile keys are gone");
    assert_eq!(store.list(LEASES).await.unwrap(), (Vec::new(), current));
    assert_eq!(store.get(node).await.unwrap(), Some(node_kv), "durable keys remain as written");

    // History from before the restart lacks the lost changes: resuming there must relist.
    assert_compacted(store.watch("/registry/", highest).await, "watch from before the restart");
    let mut watch = store.watch("/registry/", current).await.unwrap();
    let recreated = store.create(&lease, b"again".to_vec()).await.unwrap();
    assert_eq!(recreated, current + 1);
    assert_eq!(next_event(&mut watch, "after reopening").await.revision(), recreated);
}

#[tokio::test]
async fn keys_stored_under_a_prefix_that_became_volatile_are_dropped_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    {
        let store = open(&path, &[]);
        store.create(&format!("{LEASES}old"), Vec::new()).await.unwrap();
        store.create("/registry/pods/p", Vec::new()).await.unwrap();
    }
    let store = open(&path, &[LEASES]);
    assert_eq!(store.get(&format!("{LEASES}old")).await.unwrap(), None);
    let (listed, revision) = store.list("/registry/").await.unwrap();
    assert_eq!(listed.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>(), ["/registry/pods/p"]);
    assert_eq!(revision, 3, "the drop takes a revision of its own");
    assert_compacted(store.watch("/registry/", 2).await, "watch from before the drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_replay_both_kinds_in_revision_order_within_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions { retained_revisions: 8, watch_buffer: 2, ..options(&["/v/"]) };
    let store = EmbeddedStore::open_with(&dir.path().join("store.redb"), options).unwrap();
    let mut written = Vec::new();
    for i in 0..12 {
        let key = if i % 2 == 0 { format!("/v/{i}") } else { format!("/d/{i}") };
        written.push((key.clone(), store.create(&key, Vec::new()).await.unwrap()));
    }
    // Revisions 5..=12 are kept, volatile and durable alike.
    assert_compacted(store.watch("/", 3).await, "watch past the retention");
    let mut watch = store.watch("/", 4).await.unwrap();
    let replayed: Vec<(String, Revision)> =
        next_events(&mut watch, 8, "retained history").await.into_iter().map(|event| (event.kv.key, event.kv.mod_revision)).collect();
    assert_eq!(replayed, written[4..]);

    store.compact(10).await.unwrap();
    assert_compacted(store.watch("/", 8).await, "watch before the compaction");
    let mut watch = store.watch("/v/", 9).await.unwrap();
    let event = next_event(&mut watch, "after compaction").await;
    assert_eq!((event.kv.key.as_str(), event.revision()), ("/v/10", 11), "the only change under /v/ after 9");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_under_concurrent_writes_show_both_kinds_as_of_their_revision() {
    const WRITES: u32 = 300;
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store.redb"), &["/v/"]);
    let writer = |key: &'static str| {
        let store = &store;
        async move {
            let mut log = Vec::new();
            let mut revision = store.create(key, b"0".to_vec()).await.unwrap();
            log.push((revision, key, 0));
            for i in 1..=WRITES {
                revision = store.update(key, i.to_string().into_bytes(), revision).await.unwrap();
                log.push((revision, key, i));
            }
            log
        }
    };
    let lister = async {
        let mut listings = Vec::new();
        for _ in 0..200 {
            listings.push(store.list("/").await.unwrap());
            tokio::task::yield_now().await;
        }
        listings
    };
    let (durable, volatile, listings) = futures::join!(writer("/d/key"), writer("/v/key"), lister);

    let mut log: Vec<(Revision, &str, u32)> = durable.into_iter().chain(volatile).collect();
    log.sort();
    for (listed, at) in listings {
        let mut state = BTreeMap::new();
        for (_, key, value) in log.iter().take_while(|(revision, ..)| *revision <= at) {
            state.insert(*key, value.to_string());
        }
        let seen: BTreeMap<&str, String> = listed.iter().map(|kv| (kv.key.as_str(), String::from_utf8_lossy(&kv.value).into_owned())).collect();
        assert_eq!(seen, state, "listing at revision {at}");
    }
}

#[tokio::test]
async fn an_empty_volatile_prefix_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let error = EmbeddedStore::open_with(&dir.path().join("s.redb"), options(&["/a/", ""])).err().expect("refused");
    assert!(error.to_string().contains("volatile_prefixes"), "{error}");
}
