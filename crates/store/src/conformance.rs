//! The behaviour every [`Store`] backend must show, as checks that panic on the first
//! difference. Each backend's integration tests run [`run_all`] against a real instance.
//!
//! The checks count revisions exactly, so nothing else may write to the store while they run.
//! Each run works under a fresh key root, so a store can be checked more than once.

mod watch;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub use self::watch::{compaction, concurrent_watchers, next_event, next_events, watch_future_revision, watch_replay_and_live};
use crate::{KeyValue, Revision, Store, StoreError};

/// Runs every check, each under its own keys below a root unique to this run. Compaction runs
/// last: it discards the history of the whole store.
pub async fn run_all(store: &dyn Store) {
    run_all_under(store, &unique_root()).await;
}

/// Runs every check under `root`, which no earlier run may have used: `{root}/revisions`,
/// `{root}/create`, `{root}/update`, `{root}/delete`, `{root}/list`, `{root}/watch` (and the
/// sibling `{root}/watch-sibling`), `{root}/future`, `{root}/concurrent` and
/// `{root}/compaction`. For a store configured per key, such as one with some keys in memory.
pub async fn run_all_under(store: &dyn Store, root: &str) {
    revisions(store, &format!("{root}/revisions")).await;
    create_conflict(store, &format!("{root}/create")).await;
    update_conflict(store, &format!("{root}/update")).await;
    delete_conflict(store, &format!("{root}/delete")).await;
    list_prefix(store, &format!("{root}/list")).await;
    watch_replay_and_live(store, &format!("{root}/watch")).await;
    watch_future_revision(store, &format!("{root}/future")).await;
    concurrent_watchers(store, &format!("{root}/concurrent")).await;
    compaction(store, &format!("{root}/compaction")).await;
}

/// A key root no earlier run in this process (or, by its timestamp, before it) used.
pub fn unique_root() -> String {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("/conformance-{nanos}-{}", RUNS.fetch_add(1, Ordering::Relaxed))
}

/// Panics with `what` and the error when `result` failed.
pub(crate) fn ok<T>(what: &str, result: Result<T, StoreError>) -> T {
    result.unwrap_or_else(|error| panic!("{what}: unexpected error: {error}"))
}

/// The key-value a write at `mod_revision` left.
pub(crate) fn kv(key: &str, value: &[u8], create_revision: Revision, mod_revision: Revision) -> KeyValue {
    KeyValue { key: key.to_owned(), value: value.to_vec(), create_revision, mod_revision }
}

async fn current(store: &dyn Store) -> Revision {
    ok("read the revision", store.revision().await)
}

async fn assert_revision(store: &dyn Store, expected: Revision, after: &str) {
    assert_eq!(current(store).await, expected, "store revision after {after}");
}

/// Every write advances the revision by exactly one; the key-value records its create and mod
/// revisions; a delete returns what it removed and a re-create starts a new life.
pub async fn revisions(store: &dyn Store, root: &str) {
    let key = format!("{root}/a");
    let start = current(store).await;
    assert!(start >= 0, "revision starts non-negative, got {start}");

    let created = ok("create", store.create(&key, b"v1".to_vec()).await);
    assert_eq!(created, start + 1, "first write after revision {start}");
    assert_eq!(ok("get", store.get(&key).await), Some(kv(&key, b"v1", created, created)));
    assert_revision(store, created, "create").await;

    let updated = ok("update", store.update(&key, b"v2".to_vec(), created).await);
    assert_eq!(updated, created + 1, "update revision");
    assert_eq!(ok("get", store.get(&key).await), Some(kv(&key, b"v2", created, updated)));

    let (deleted, removed) = ok("delete", store.delete(&key, Some(updated)).await);
    assert_eq!(deleted, updated + 1, "delete revision");
    assert_eq!(removed, kv(&key, b"v2", created, updated), "delete returns the removed key-value");
    assert_eq!(ok("get after delete", store.get(&key).await), None);
    assert_revision(store, deleted, "delete").await;

    let recreated = ok("create again", store.create(&key, b"v3".to_vec()).await);
    assert_eq!(recreated, deleted + 1);
    assert_eq!(ok("get", store.get(&key).await), Some(kv(&key, b"v3", recreated, recreated)));
    assert_eq!(ok("get missing", store.get(&format!("{root}/missing")).await), None);
}

/// Creating a present key fails with `AlreadyExists` and changes nothing.
pub async fn create_conflict(store: &dyn Store, root: &str) {
    let key = format!("{root}/a");
    let created = ok("create", store.create(&key, b"first".to_vec()).await);
    match store.create(&key, b"second".to_vec()).await {
        Err(StoreError::AlreadyExists { key: reported }) => assert_eq!(reported, key),
        other => panic!("second create of {key}: expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(ok("get", store.get(&key).await), Some(kv(&key, b"first", created, created)));
    assert_revision(store, created, "a refused create").await;
}

/// A compare-and-swap against a stale revision fails with the actual one and changes nothing;
/// updating a missing key fails with `NotFound`, whatever revision is expected.
pub async fn update_conflict(store: &dyn Store, root: &str) {
    let key = format!("{root}/a");
    let created = ok("create", store.create(&key, b"v1".to_vec()).await);
    let updated = ok("update", store.update(&key, b"v2".to_vec(), created).await);
    match store.update(&key, b"v3".to_vec(), created).await {
        Err(StoreError::Conflict { key: reported, expected, actual }) => {
            assert_eq!((reported.as_str(), expected, actual), (key.as_str(), created, updated));
        }
        other => panic!("stale update of {key}: expected Conflict, got {other:?}"),
    }
    assert_eq!(ok("get", store.get(&key).await), Some(kv(&key, b"v2", created, updated)));
    assert_revision(store, updated, "a refused update").await;

    let missing = format!("{root}/missing");
    for expected in [0, created, updated] {
        match store.update(&missing, b"x".to_vec(), expected).await {
            Err(StoreError::NotFound { key: reported }) => assert_eq!(reported, missing),
            other => panic!("update of missing {missing} expecting {expected}: expected NotFound, got {other:?}"),
        }
    }
    assert_eq!(ok("get missing", store.get(&missing).await), None);
    assert_revision(store, updated, "updates of a missing key").await;
}

/// A delete expecting a stale revision fails with the actual one and changes nothing; deleting
/// a missing key fails with `NotFound`.
pub async fn delete_conflict(store: &dyn Store, root: &str) {
    let key = format!("{root}/a");
    let created = ok("create", store.create(&key, b"v1".to_vec()).await);
    let updated = ok("update", store.update(&key, b"v2".to_vec(), created).await);
    match store.delete(&key, Some(created)).await {
        Err(StoreError::Conflict { key: reported, expected, actual }) => {
            assert_eq!((reported.as_str(), expected, actual), (key.as_str(), created, updated));
        }
        other => panic!("stale delete of {key}: expected Conflict, got {other:?}"),
    }
    assert_eq!(ok("get", store.get(&key).await), Some(kv(&key, b"v2", created, updated)));
    assert_revision(store, updated, "a refused delete").await;

    let missing = format!("{root}/missing");
    for expected in [None, Some(0), Some(updated)] {
        match store.delete(&missing, expected).await {
            Err(StoreError::NotFound { key: reported }) => assert_eq!(reported, missing),
            other => panic!("delete of missing {missing} expecting {expected:?}: expected NotFound, got {other:?}"),
        }
    }
    assert_revision(store, updated, "deletes of a missing key").await;

    let (deleted, removed) = ok("unconditional delete", store.delete(&key, None).await);
    assert_eq!((deleted, removed), (updated + 1, kv(&key, b"v2", created, updated)));
}

/// A prefix lists exactly the keys that start with it (`/a/` is not `/a0` or `/ab`), sorted
/// by their bytes, with the revision of the listing.
pub async fn list_prefix(store: &dyn Store, root: &str) {
    let names = ["b", "a/2", "ab", "a", "a/\u{fc}", "a0", "a/1", "a/1/deep"];
    let mut revisions = std::collections::BTreeMap::new();
    for name in names {
        let key = format!("{root}/{name}");
        let revision = ok("create", store.create(&key, name.as_bytes().to_vec()).await);
        revisions.insert(key, revision);
    }
    let expect = |names: &[&str]| -> Vec<KeyValue> {
        let mut expected: Vec<KeyValue> = names
            .iter()
            .map(|name| {
                let key = format!("{root}/{name}");
                let revision = revisions[&key];
                kv(&key, name.as_bytes(), revision, revision)
            })
            .collect();
        expected.sort_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
        expected
    };
    let now = current(store).await;
    let cases: [(&str, Vec<KeyValue>); 5] = [
        ("/a/", expect(&["a/1", "a/1/deep", "a/2", "a/\u{fc}"])),
        ("/a", expect(&["a", "a/1", "a/1/deep", "a/2", "a/\u{fc}", "a0", "ab"])),
        ("/", expect(&names)),
        ("/a/1", expect(&["a/1", "a/1/deep"])),
        ("/zzz", Vec::new()),
    ];
    for (suffix, expected) in cases {
        let prefix = format!("{root}{suffix}");
        let (listed, revision) = ok("list", store.list(&prefix).await);
        assert_eq!(listed, expected, "list {prefix}");
        assert_eq!(revision, now, "revision of list {prefix}");
    }

    let gone = format!("{root}/a/2");
    let (deleted, _) = ok("delete", store.delete(&gone, None).await);
    let (listed, revision) = ok("list", store.list(&format!("{root}/a/")).await);
    assert_eq!(listed, expect(&["a/1", "a/1/deep", "a/\u{fc}"]), "list after deleting {gone}");
    assert_eq!(revision, deleted);

    // A listing longer than a store may read in one go (the embedded store reads short ones on
    // the caller's thread) is complete and in order all the same.
    let many: Vec<String> = (0..100).map(|i| format!("{root}/many/{i:03}")).collect();
    for key in &many {
        ok("create", store.create(key, b"x".to_vec()).await);
    }
    let (listed, _) = ok("list many", store.list(&format!("{root}/many/")).await);
    assert_eq!(listed.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>(), many, "a listing of 100 keys");

    let (everything, _) = ok("list everything", store.list("").await);
    assert!(everything.windows(2).all(|w| w[0].key < w[1].key), "list of every key is sorted");
    assert!(everything.iter().any(|kv| kv.key == format!("{root}/ab")), "list of every key has {root}/ab");
}
