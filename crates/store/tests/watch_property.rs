//! Property: under random creates, updates and deletes (some of them refused), watchers that
//! disconnect and resume from the last revision they saw receive every change under their
//! prefix exactly once, in revision order, as a model of the store predicts. Runs against the
//! embedded store (with a tiny broadcast buffer, so watchers lag), the embedded store with some
//! keys volatile, and a real etcd.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use store::conformance::{next_event, next_events, unique_root};
use store::testing::EtcdServer;
use store::{EmbeddedOptions, EmbeddedStore, EtcdStore, EventKind, KeyValue, Revision, Store, StoreError, WatchEvent, WatchStream};

/// Key names under the case root; the last one lies outside the watched prefix.
const KEYS: [&str; 4] = ["/w/a", "/w/b", "/w/c/1", "/wx"];
const WATCHERS: usize = 2;

#[derive(Clone, Debug)]
enum Op {
    Create {
        key: usize,
        value: u8,
    },
    Update {
        key: usize,
        value: u8,
        stale: bool,
    },
    /// `None`: unconditional; `Some(stale)`: expecting the current (or a stale) revision.
    Delete {
        key: usize,
        expect: Option<bool>,
    },
    /// The watcher takes up to `count` of the changes waiting for it.
    Read {
        watcher: usize,
        count: usize,
    },
    /// The watcher drops its stream and watches again from the last revision it saw.
    Reconnect {
        watcher: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS.len();
    prop_oneof![
        3 => (key.clone(), any::<u8>()).prop_map(|(key, value)| Op::Create { key, value }),
        3 => (key.clone(), any::<u8>(), prop::bool::weighted(0.2))
            .prop_map(|(key, value, stale)| Op::Update { key, value, stale }),
        2 => (key, prop::option::of(any::<bool>())).prop_map(|(key, expect)| Op::Delete { key, expect }),
        2 => (0..WATCHERS, 0..6usize).prop_map(|(watcher, count)| Op::Read { watcher, count }),
        1 => (0..WATCHERS).prop_map(|watcher| Op::Reconnect { watcher }),
    ]
}

/// What the store should hold, and every change under the watched prefix so far.
struct Model {
    revision: Revision,
    keys: BTreeMap<String, KeyValue>,
    changes: Vec<WatchEvent>,
}

impl Model {
    /// Applies a change the store reported at `revision`, checking it is the next one.
    fn record(&mut self, revision: Revision, event: WatchEvent, prefix: &str) {
        assert_eq!(revision, self.revision + 1, "each write takes the next revision");
        self.revision = revision;
        match event.kind {
            EventKind::Put => self.keys.insert(event.kv.key.clone(), event.kv.clone()),
            EventKind::Delete => self.keys.remove(&event.kv.key),
        };
        if event.kv.key.starts_with(prefix) {
            self.changes.push(event);
        }
    }
}

struct Watcher {
    stream: WatchStream,
    seen: Vec<WatchEvent>,
    last: Revision,
}

impl Watcher {
    fn waiting(&self, model: &Model) -> usize {
        model.changes.iter().filter(|change| change.revision() > self.last).count()
    }

    async fn take(&mut self, count: usize) {
        for event in next_events(&mut self.stream, count, "property watcher").await {
            assert!(event.revision() > self.last, "revision {} after {}", event.revision(), self.last);
            self.last = event.revision();
            self.seen.push(event);
        }
    }
}

async fn apply(store: &dyn Store, model: &mut Model, prefix: &str, key: &str, op: &Op) {
    let existing = model.keys.get(key).cloned();
    match (op, existing) {
        (Op::Create { value, .. }, None) => {
            let revision = store.create(key, vec![*value]).await.expect("create of a missing key");
            let kv = KeyValue { key: key.into(), value: vec![*value], create_revision: revision, mod_revision: revision };
            model.record(revision, WatchEvent { kind: EventKind::Put, kv, prev: None }, prefix);
        }
        (Op::Create { value, .. }, Some(_)) => {
            let refused = store.create(key, vec![*value]).await;
            assert!(matches!(refused, Err(StoreError::AlreadyExists { .. })), "create of a present key: {refused:?}");
        }
        (Op::Update { value, stale, .. }, Some(prev)) => {
            let expected = if *stale { prev.mod_revision - 1 } else { prev.mod_revision };
            let outcome = store.update(key, vec![*value], expected).await;
            if *stale {
                assert!(matches!(outcome, Err(StoreError::Conflict { actual, .. }) if actual == prev.mod_revision), "stale update: {outcome:?}");
            } else {
                let revision = outcome.expect("update at the current revision");
                let kv = KeyValue { value: vec![*value], mod_revision: revision, ..prev.clone() };
                model.record(revision, WatchEvent { kind: EventKind::Put, kv, prev: Some(prev) }, prefix);
            }
        }
        (Op::Update { value, .. }, None) => {
            let refused = store.update(key, vec![*value], model.revision).await;
            assert!(matches!(refused, Err(StoreError::NotFound { .. })), "update of a missing key: {refused:?}");
        }
        (Op::Delete { expect, .. }, Some(prev)) => {
            let expected = expect.map(|stale| if stale { prev.mod_revision - 1 } else { prev.mod_revision });
            let outcome = store.delete(key, expected).await;
            if *expect == Some(true) {
                assert!(matches!(outcome, Err(StoreError::Conflict { .. })), "stale delete: {outcome:?}");
            } else {
                let (revision, removed) = outcome.expect("delete of a present key");
                assert_eq!(removed, prev);
                let kv = KeyValue { mod_revision: revision, ..prev.clone() };
                model.record(revision, WatchEvent { kind: EventKind::Delete, kv, prev: Some(prev) }, prefix);
            }
        }
        (Op::Delete { expect, .. }, None) => {
            let refused = store.delete(key, expect.map(|_| model.revision)).await;
            assert!(matches!(refused, Err(StoreError::NotFound { .. })), "delete of a missing key: {refused:?}");
        }
        (Op::Read { .. } | Op::Reconnect { .. }, _) => unreachable!("not a write"),
    }
}

async fn run_case(store: &dyn Store, root: &str, ops: &[Op]) {
    let prefix = format!("{root}/w/");
    let start = store.revision().await.expect("revision");
    let mut model = Model { revision: start, keys: BTreeMap::new(), changes: Vec::new() };
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let stream = store.watch(&prefix, start).await.expect("watch");
        watchers.push(Watcher { stream, seen: Vec::new(), last: start });
    }
    for op in ops {
        match op {
            Op::Create { key, .. } | Op::Update { key, .. } | Op::Delete { key, .. } => {
                apply(store, &mut model, &prefix, &format!("{root}{}", KEYS[*key]), op).await;
            }
            Op::Read { watcher, count } => {
                let watcher = &mut watchers[*watcher];
                let count = (*count).min(watcher.waiting(&model));
                watcher.take(count).await;
            }
            Op::Reconnect { watcher } => {
                let watcher = &mut watchers[*watcher];
                watcher.stream = store.watch(&prefix, watcher.last).await.expect("watch again");
            }
        }
    }
    // A last change proves no watcher has anything extra queued before it.
    let sentinel = format!("{prefix}sentinel");
    let revision = store.create(&sentinel, Vec::new()).await.expect("create sentinel");
    for (i, watcher) in watchers.iter_mut().enumerate() {
        let waiting = watcher.waiting(&model);
        watcher.take(waiting).await;
        assert_eq!(watcher.seen, model.changes, "watcher {i}: every change once, in order");
        let next = next_event(&mut watcher.stream, "sentinel").await;
        assert_eq!((next.kv.key.as_str(), next.revision()), (sentinel.as_str(), revision), "watcher {i}: nothing extra");
    }
    let (listed, _) = store.list(&format!("{root}/")).await.expect("list");
    let mut expected: Vec<KeyValue> = model.keys.into_values().collect();
    expected.extend(store.get(&sentinel).await.expect("get sentinel"));
    expected.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(listed, expected, "the store holds what the model does");
}

/// Runs `cases` random cases, each on the store `store_for_case` gives for the case's key root.
fn check(cases: u32, store_for_case: impl Fn(&tokio::runtime::Runtime, &str) -> Box<dyn Store>) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let outcome = runner.run(&prop::collection::vec(op(), 1..40), |ops| {
        let root = unique_root();
        let store = store_for_case(&runtime, &root);
        runtime.block_on(run_case(store.as_ref(), &root, &ops));
        runtime.block_on(async move { drop(store) });
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}

/// Embedded stores with a tiny broadcast buffer, one file per case, with `volatile_prefixes` (given
/// the case root) in memory.
fn check_embedded(cases: u32, volatile_prefixes: impl Fn(&str) -> Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    check(cases, |_, root| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let volatile_prefixes = volatile_prefixes(root);
        let options = EmbeddedOptions { watch_buffer: 2, volatile_prefixes, ..EmbeddedOptions::default() };
        Box::new(EmbeddedStore::open_with(&dir.path().join(format!("case-{n}.redb")), options).unwrap())
    });
}

#[test]
fn embedded_watchers_see_every_change_once_in_order() {
    check_embedded(32, |_| Vec::new());
}

/// `/w/a` and the sentinel stay durable; `/w/b`, `/w/c/1` and the unwatched `/wx` are volatile.
#[test]
fn embedded_watchers_see_volatile_and_durable_changes_once_in_order() {
    check_embedded(32, |root| ["/w/b", "/w/c/", "/wx"].iter().map(|key| format!("{root}{key}")).collect());
}

#[test]
fn etcd_watchers_see_every_change_once_in_order() {
    let etcd = EtcdServer::start();
    check(24, |runtime, _| {
        let store = runtime.block_on(EtcdStore::connect(&etcd.endpoints(), "/prop")).expect("connect to etcd");
        Box::new(store)
    });
}
