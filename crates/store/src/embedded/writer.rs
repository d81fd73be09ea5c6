//! The embedded store's one writer: a thread that applies queued writes in order, commits each
//! batch of them with one fsync, then publishes the changes to watchers and answers the callers.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use redb::{Durability, ReadableTable, Table};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::tables::{self, Counters, KV, LOG, META};
use super::{EmbeddedError, Shared};
use crate::{EventKind, KeyValue, Revision, StoreError, WatchEvent};

/// Writes waiting to be committed together at most; bounds the work lost to one failed commit.
const MAX_BATCH: usize = 256;

/// One write asked of the store.
#[derive(Debug)]
pub(crate) enum WriteOp {
    /// Create a key that must not exist.
    Create { key: String, value: Vec<u8> },
    /// Replace a key whose mod revision must be `expected`.
    Update { key: String, value: Vec<u8>, expected: Revision },
    /// Delete a key, checking its mod revision when `expected` is given.
    Delete { key: String, expected: Option<Revision> },
    /// Drop history before `revision`.
    Compact { revision: Revision },
}

/// What an accepted write did.
#[derive(Debug)]
pub(crate) struct Written {
    /// The store revision after the write (unchanged by a compaction).
    pub revision: Revision,
    /// For a delete: the key-value removed.
    pub removed: Option<KeyValue>,
}

/// A write and where its answer goes.
#[derive(Debug)]
pub(crate) struct WriteRequest {
    /// The write.
    pub op: WriteOp,
    /// Receives the outcome once the write is durable (or refused).
    pub reply: oneshot::Sender<Result<Written, StoreError>>,
}

/// Starts the writer thread. It runs until every sender of `requests` is dropped.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    requests: mpsc::Receiver<WriteRequest>,
    events: broadcast::Sender<Arc<WatchEvent>>,
    retained_revisions: u64,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || run(&shared, requests, &events, retained_revisions))
}

fn run(
    shared: &Shared,
    mut requests: mpsc::Receiver<WriteRequest>,
    events: &broadcast::Sender<Arc<WatchEvent>>,
    retained_revisions: u64,
) {
    while let Some(first) = requests.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        commit_batch(shared, events, retained_revisions, batch);
    }
}

/// Applies `batch` in one transaction and answers every request in it.
fn commit_batch(
    shared: &Shared,
    events: &broadcast::Sender<Arc<WatchEvent>>,
    retained_revisions: u64,
    batch: Vec<WriteRequest>,
) {
    let ops: Vec<&WriteOp> = batch.iter().map(|request| &request.op).collect();
    match apply_batch(shared, retained_revisions, &ops) {
        Ok(applied) => {
            shared.revision.store(applied.revision, Ordering::Release);
            for event in applied.events {
                // No receivers is fine: nobody is watching.
                let _ = events.send(Arc::new(event));
            }
            for (request, outcome) in batch.into_iter().zip(applied.outcomes) {
                // The caller may have given up waiting; the write stands regardless.
                let _ = request.reply.send(outcome);
            }
        }
        Err(source) => {
            let error = EmbeddedError::Commit { path: shared.path.clone(), writes: describe(&ops), source };
            tracing::error!(%error, "embedded store commit failed");
            let message = error.to_string();
            for request in batch {
                let _ = request.reply.send(Err(StoreError::Backend(message.clone())));
            }
        }
    }
}

/// The keys a batch touched, for error messages.
fn describe(ops: &[&WriteOp]) -> String {
    let keys: Vec<String> = ops
        .iter()
        .map(|op| match op {
            WriteOp::Create { key, .. } => format!("create {key}"),
            WriteOp::Update { key, .. } => format!("update {key}"),
            WriteOp::Delete { key, .. } => format!("delete {key}"),
            WriteOp::Compact { revision } => format!("compact to {revision}"),
        })
        .collect();
    keys.join(", ")
}

/// The result of a committed batch.
struct Applied {
    outcomes: Vec<Result<Written, StoreError>>,
    events: Vec<WatchEvent>,
    revision: Revision,
}

fn apply_batch(shared: &Shared, retained_revisions: u64, ops: &[&WriteOp]) -> Result<Applied, redb::Error> {
    let mut txn = shared.db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    let mut outcomes = Vec::with_capacity(ops.len());
    let mut events = Vec::new();
    let (before, after) = {
        let mut kv = txn.open_table(KV)?;
        let mut log = txn.open_table(LOG)?;
        let mut meta = txn.open_table(META)?;
        let before = Counters::read(&meta)?;
        let mut counters = before;
        for op in ops {
            let outcome = apply_one(&mut kv, &mut counters, op)?;
            outcomes.push(outcome.map(|(written, event)| {
                if let Some(event) = event {
                    events.push(event);
                }
                written
            }));
        }
        for event in &events {
            log.insert(event.revision(), tables::log_row(event))?;
        }
        counters.history_start = retention_start(&counters, retained_revisions);
        if counters.history_start > before.history_start {
            log.retain_in(..counters.history_start, |_, _| false)?;
        }
        if counters != before {
            counters.write(&mut meta)?;
        }
        (before, counters)
    };
    if after == before {
        // Nothing changed (every write was refused): no need to pay for a commit.
        txn.abort()?;
    } else {
        txn.commit()?;
    }
    Ok(Applied { outcomes, events, revision: after.revision })
}

/// The history start after keeping only the last `retained_revisions` changes.
pub(crate) fn retention_start(counters: &Counters, retained_revisions: u64) -> Revision {
    let retained = i64::try_from(retained_revisions).unwrap_or(i64::MAX);
    let keep_from = counters.revision.saturating_sub(retained).saturating_add(1);
    counters.history_start.max(keep_from)
}

type Outcome = Result<(Written, Option<WatchEvent>), StoreError>;

/// Applies one write to the tables, or refuses it leaving them untouched.
fn apply_one(kv: &mut Table<&'static str, (i64, i64, &'static [u8])>, counters: &mut Counters, op: &WriteOp) -> Result<Outcome, redb::Error> {
    let next = counters.revision + 1;
    let existing = |kv: &Table<&'static str, (i64, i64, &'static [u8])>, key: &str| -> Result<Option<KeyValue>, redb::Error> {
        Ok(kv.get(key)?.map(|row| tables::key_value(key, row.value())))
    };
    let (written, event) = match op {
        WriteOp::Create { key, value } => {
            if existing(kv, key)?.is_some() {
                return Ok(Err(StoreError::AlreadyExists { key: key.clone() }));
            }
            kv.insert(key.as_str(), (next, next, value.as_slice()))?;
            let event = WatchEvent {
                kind: EventKind::Put,
                kv: KeyValue { key: key.clone(), value: value.clone(), create_revision: next, mod_revision: next },
                prev: None,
            };
            (Written { revision: next, removed: None }, Some(event))
        }
        WriteOp::Update { key, value, expected } => {
            let Some(prev) = existing(kv, key)? else {
                return Ok(Err(StoreError::NotFound { key: key.clone() }));
            };
            if prev.mod_revision != *expected {
                return Ok(Err(conflict(key, *expected, prev.mod_revision)));
            }
            kv.insert(key.as_str(), (prev.create_revision, next, value.as_slice()))?;
            let event = WatchEvent {
                kind: EventKind::Put,
                kv: KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision: prev.create_revision,
                    mod_revision: next,
                },
                prev: Some(prev),
            };
            (Written { revision: next, removed: None }, Some(event))
        }
        WriteOp::Delete { key, expected } => {
            let Some(prev) = existing(kv, key)? else {
                return Ok(Err(StoreError::NotFound { key: key.clone() }));
            };
            if let Some(expected) = expected {
                if prev.mod_revision != *expected {
                    return Ok(Err(conflict(key, *expected, prev.mod_revision)));
                }
            }
            kv.remove(key.as_str())?;
            let event = WatchEvent {
                kind: EventKind::Delete,
                kv: KeyValue { mod_revision: next, ..prev.clone() },
                prev: Some(prev.clone()),
            };
            (Written { revision: next, removed: Some(prev) }, Some(event))
        }
        WriteOp::Compact { revision } => {
            if *revision > counters.revision {
                return Ok(Err(StoreError::FutureRevision { requested: *revision, current: counters.revision }));
            }
            counters.history_start = counters.history_start.max(*revision);
            return Ok(Ok((Written { revision: counters.revision, removed: None }, None)));
        }
    };
    counters.revision = next;
    Ok(Ok((written, event)))
}

fn conflict(key: &str, expected: Revision, actual: Revision) -> StoreError {
    StoreError::Conflict { key: key.to_owned(), expected, actual }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_keeps_the_last_revisions_and_never_moves_back() {
        let fresh = Counters { revision: 5, history_start: 1 };
        assert_eq!(retention_start(&fresh, 10), 1);
        assert_eq!(retention_start(&fresh, 5), 1);
        assert_eq!(retention_start(&fresh, 2), 4);
        assert_eq!(retention_start(&fresh, u64::MAX), 1);
        let compacted = Counters { revision: 5, history_start: 5 };
        assert_eq!(retention_start(&compacted, 10), 5);
    }
}
