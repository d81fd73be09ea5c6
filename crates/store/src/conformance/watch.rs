//! Conformance checks of watch: replay from any retained revision, live changes, previous
//! values, several watchers at once, and compaction.

use std::time::Duration;

use futures::future::join_all;
use futures::StreamExt;

use super::{current, kv, ok};
use crate::{EventKind, KeyValue, Revision, Store, StoreError, WatchEvent, WatchStream};

/// How long a watcher may take to deliver a change that has been written.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The next change from `stream`; panics on an error, the end of the stream, or a timeout.
pub async fn next_event(stream: &mut WatchStream, what: &str) -> WatchEvent {
    match tokio::time::timeout(DELIVERY_TIMEOUT, stream.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(error))) => panic!("{what}: watch failed: {error}"),
        Ok(None) => panic!("{what}: watch ended"),
        Err(_) => panic!("{what}: no change within {DELIVERY_TIMEOUT:?}"),
    }
}

/// The next `count` changes from `stream`.
pub async fn next_events(stream: &mut WatchStream, count: usize, what: &str) -> Vec<WatchEvent> {
    let mut events = Vec::with_capacity(count);
    for _ in 0..count {
        events.push(next_event(stream, what).await);
    }
    events
}

fn put(kv: KeyValue, prev: Option<KeyValue>) -> WatchEvent {
    WatchEvent { kind: EventKind::Put, kv, prev }
}

fn delete(last: KeyValue, revision: Revision) -> WatchEvent {
    WatchEvent { kind: EventKind::Delete, kv: KeyValue { mod_revision: revision, ..last.clone() }, prev: Some(last) }
}

async fn watch(store: &dyn Store, prefix: &str, after: Revision) -> WatchStream {
    ok(&format!("watch {prefix} after {after}"), store.watch(prefix, after).await)
}

/// Watches from revision 0, from before the first change, from the middle of the history and
/// from the current revision each see exactly the changes after their start, in order, with
/// previous values, and then the same live changes; keys outside the prefix never show.
pub async fn watch_replay_and_live(store: &dyn Store, root: &str) {
    let prefix = format!("{root}/");
    let (a, b, c, d) = (format!("{root}/a"), format!("{root}/b"), format!("{root}/c"), format!("{root}/d"));
    let outside = format!("{root}-sibling/a");
    let before = current(store).await;

    let a1 = ok("create a", store.create(&a, b"a1".to_vec()).await);
    let b1 = ok("create b", store.create(&b, b"b1".to_vec()).await);
    let sibling = ok("create outside the prefix", store.create(&outside, b"x".to_vec()).await);
    let a2 = ok("update a", store.update(&a, b"a2".to_vec(), a1).await);
    let (b_gone, _) = ok("delete b", store.delete(&b, None).await);
    let c1 = ok("create c", store.create(&c, b"c1".to_vec()).await);
    let history = vec![
        put(kv(&a, b"a1", a1, a1), None),
        put(kv(&b, b"b1", b1, b1), None),
        put(kv(&a, b"a2", a1, a2), Some(kv(&a, b"a1", a1, a1))),
        delete(kv(&b, b"b1", b1, b1), b_gone),
        put(kv(&c, b"c1", c1, c1), None),
    ];

    let mut from_zero = watch(store, &prefix, 0).await;
    let mut from_before = watch(store, &prefix, before).await;
    let mut from_middle = watch(store, &prefix, b1).await;
    let mut from_sibling = watch(store, &prefix, sibling).await;
    let mut from_now = watch(store, &prefix, c1).await;
    assert_eq!(next_events(&mut from_zero, 5, "watch from 0").await, history);
    assert_eq!(next_events(&mut from_before, 5, "watch from before").await, history);
    assert_eq!(next_events(&mut from_middle, 3, "watch from the middle").await, history[2..]);
    assert_eq!(next_events(&mut from_sibling, 3, "watch from a change outside").await, history[2..]);

    let d1 = ok("create d", store.create(&d, b"d1".to_vec()).await);
    ok("write outside the prefix", store.update(&outside, b"y".to_vec(), sibling).await);
    let (a_gone, _) = ok("delete a", store.delete(&a, Some(a2)).await);
    let live = vec![put(kv(&d, b"d1", d1, d1), None), delete(kv(&a, b"a2", a1, a2), a_gone)];
    for (name, stream) in [
        ("watch from 0", &mut from_zero),
        ("watch from before", &mut from_before),
        ("watch from the middle", &mut from_middle),
        ("watch from a change outside", &mut from_sibling),
        ("watch from now", &mut from_now),
    ] {
        assert_eq!(next_events(stream, 2, name).await, live, "{name}: live changes");
    }
}

/// A watch from a revision the store has not reached fails with `FutureRevision`.
pub async fn watch_future_revision(store: &dyn Store, root: &str) {
    let now = current(store).await;
    match store.watch(&format!("{root}/"), now + 5).await {
        Err(StoreError::FutureRevision { requested, current }) => {
            assert_eq!(requested, now + 5);
            assert!(current >= now, "current revision {current} went back from {now}");
        }
        Err(other) => panic!("watch from the future: expected FutureRevision, got {other}"),
        Ok(_) => panic!("watch from the future: expected FutureRevision, got a stream"),
    }
}

/// Several watchers see the same changes from concurrent writers, each exactly once and in
/// revision order; a watcher joining later from the middle sees the rest of them.
pub async fn concurrent_watchers(store: &dyn Store, root: &str) {
    const WRITERS: usize = 3;
    const KEYS_PER_WRITER: usize = 8;
    const CHANGES: usize = WRITERS * KEYS_PER_WRITER * 2;
    let prefix = format!("{root}/");
    let start = current(store).await;
    let mut watchers = Vec::new();
    for _ in 0..4 {
        watchers.push(watch(store, &prefix, start).await);
    }
    // One more watcher starts while the writes are under way: replay and live changes meet.
    let writing = tokio::sync::Notify::new();
    let writing = &writing;
    let joiner = async {
        writing.notified().await;
        let mut stream = watch(store, &prefix, start).await;
        next_events(&mut stream, CHANGES, "watcher started during the writes").await
    };
    let writers = (0..WRITERS).map(|writer| async move {
        let mut written = Vec::new();
        for i in 0..KEYS_PER_WRITER {
            let key = format!("{root}/w{writer}/{i}");
            let created = ok("create", store.create(&key, b"1".to_vec()).await);
            let updated = ok("update", store.update(&key, b"2".to_vec(), created).await);
            written.push(put(kv(&key, b"1", created, created), None));
            written.push(put(kv(&key, b"2", created, updated), Some(kv(&key, b"1", created, created))));
            if writer == 0 && i == 1 {
                writing.notify_one();
            }
        }
        written
    });
    let readers = watchers.iter_mut().map(|stream| next_events(stream, CHANGES, "concurrent watcher"));
    let (written, mut seen, joined) = futures::join!(join_all(writers), join_all(readers), joiner);
    seen.push(joined);

    let mut expected: Vec<WatchEvent> = written.into_iter().flatten().collect();
    expected.sort_by_key(WatchEvent::revision);
    let revisions: Vec<Revision> = expected.iter().map(WatchEvent::revision).collect();
    let contiguous: Vec<Revision> = (start + 1..=start + CHANGES as Revision).collect();
    assert_eq!(revisions, contiguous, "concurrent writes take consecutive revisions");
    for (i, events) in seen.iter().enumerate() {
        assert_eq!(events, &expected, "watcher {i} sees every change once, in revision order");
    }

    let middle = expected[CHANGES / 2 - 1].revision();
    let mut late = watch(store, &prefix, middle).await;
    assert_eq!(next_events(&mut late, CHANGES / 2, "late watcher").await, expected[CHANGES / 2..]);
}

/// After compaction a watch from before the kept history fails with `Compacted`, one from its
/// start replays it, and watches already running carry on.
pub async fn compaction(store: &dyn Store, root: &str) {
    let prefix = format!("{root}/");
    let mut written = Vec::new();
    for i in 1..=5 {
        let key = format!("{root}/k{i}");
        written.push((key.clone(), ok("create", store.create(&key, b"v".to_vec()).await)));
    }
    let (first, third, last) = (written[0].1, written[2].1, written[4].1);
    let mut running = watch(store, &prefix, last).await;

    ok("compact", store.compact(third).await);
    for too_old in [0, first] {
        match store.watch(&prefix, too_old).await {
            Err(StoreError::Compacted { requested, oldest }) => {
                assert_eq!((requested, oldest), (too_old, third - 1), "compacted watch from {too_old}");
            }
            Err(other) => panic!("watch from {too_old} after compacting to {third}: expected Compacted, got {other}"),
            Ok(_) => panic!("watch from {too_old} after compacting to {third}: expected Compacted, got a stream"),
        }
    }
    let mut kept = watch(store, &prefix, third - 1).await;
    let replayed: Vec<(String, Revision)> =
        next_events(&mut kept, 3, "watch from the compaction").await.into_iter().map(|event| (event.kv.key, event.kv.mod_revision)).collect();
    assert_eq!(replayed, written[2..], "watch from the oldest kept revision");

    ok("compact to an older revision", store.compact(first).await);
    let now = current(store).await;
    match store.compact(now + 10).await {
        Err(StoreError::FutureRevision { requested, .. }) => assert_eq!(requested, now + 10),
        other => panic!("compact to a future revision: expected FutureRevision, got {other:?}"),
    }

    let key = format!("{root}/after");
    let revision = ok("create after compaction", store.create(&key, b"v".to_vec()).await);
    let expected = put(kv(&key, b"v", revision, revision), None);
    assert_eq!(next_event(&mut running, "watch running across compaction").await, expected);
    assert_eq!(next_event(&mut kept, "watch from the compaction").await, expected);
}
