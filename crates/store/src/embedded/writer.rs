//! The embedded store's one writer: a thread that applies queued writes in order, commits each
//! batch's durable part with one fsync, then publishes the changes to memory and watchers and
//! answers the callers. A batch of volatile writes alone touches the file only when it needs
//! more reserved revisions.

use std::sync::Arc;
use std::thread::JoinHandle;

use redb::{Durability, WriteTransaction};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::apply::{self, KeyChange, KeySpace};
use super::tables::{self, Counters, KV, LOG, META};
use super::volatile::{Staged, RESERVATION};
use super::{EmbeddedError, Shared};
use crate::{KeyValue, Revision, StoreError, WatchEvent};

/// Writes waiting to be committed together at most; bounds the work lost to one failed commit.
const MAX_BATCH: usize = 256;

/// How long a batch that found other writers waiting lingers for more before it commits. A
/// commit costs far more than a write in it (page flush, checksums, fsync), so under load a
/// short wait raises throughput several times; a lone writer never waits.
const LINGER: std::time::Duration = std::time::Duration::from_micros(500);

/// One write asked of the store.
#[derive(Debug)]
pub(crate) enum WriteOp {
    /// Change one key.
    Key { key: String, change: KeyChange },
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
    /// Receives the outcome once the write is durable, or in memory for a volatile key (or
    /// refused).
    pub reply: oneshot::Sender<Result<Written, StoreError>>,
}

/// The writer's counters between batches.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WriterState {
    /// The counters after the last batch; ahead of the file after batches of volatile writes.
    counters: Counters,
    /// The counters as the file's META table holds them.
    persisted: Counters,
    retained_revisions: u64,
}

impl WriterState {
    /// The state of a store just opened with `counters`, all of them in the file.
    pub fn new(counters: Counters, retained_revisions: u64) -> Self {
        Self { counters, persisted: counters, retained_revisions }
    }
}

/// Starts the writer thread. It runs until every sender of `requests` is dropped.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    requests: mpsc::Receiver<WriteRequest>,
    events: broadcast::Sender<Arc<WatchEvent>>,
    state: WriterState,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("store-writer".into()).spawn(move || run(&shared, requests, &events, state))
}

fn run(shared: &Shared, mut requests: mpsc::Receiver<WriteRequest>, events: &broadcast::Sender<Arc<WatchEvent>>, mut state: WriterState) {
    while let Some(first) = requests.blocking_recv() {
        let mut batch = vec![first];
        take_waiting(&mut requests, &mut batch);
        if batch.len() > 1 && batch.len() < MAX_BATCH {
            std::thread::sleep(LINGER);
            take_waiting(&mut requests, &mut batch);
        }
        commit_batch(shared, events, &mut state, batch);
    }
}

fn take_waiting(requests: &mut mpsc::Receiver<WriteRequest>, batch: &mut Vec<WriteRequest>) {
    while batch.len() < MAX_BATCH {
        match requests.try_recv() {
            Ok(request) => batch.push(request),
            Err(_) => break,
        }
    }
}

/// Applies `batch`, durable part in one transaction, and answers every request in it.
fn commit_batch(shared: &Shared, events: &broadcast::Sender<Arc<WatchEvent>>, state: &mut WriterState, batch: Vec<WriteRequest>) {
    let ops: Vec<&WriteOp> = batch.iter().map(|request| &request.op).collect();
    match apply_batch(shared, state, &ops) {
        Ok(applied) => {
            state.counters = applied.counters;
            if applied.committed {
                state.persisted = applied.counters;
            }
            let changes: Vec<Arc<WatchEvent>> = applied.events.into_iter().map(Arc::new).collect();
            let volatile = changes.iter().filter(|event| shared.prefixes.covers(&event.kv.key)).cloned();
            shared.memory().apply(applied.staged, volatile, &applied.counters, applied.committed);
            for change in changes {
                // No receivers is fine: nobody is watching.
                let _ = events.send(change);
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
            WriteOp::Key { key, change: KeyChange::Create { .. } } => format!("create {key}"),
            WriteOp::Key { key, change: KeyChange::Update { .. } } => format!("update {key}"),
            WriteOp::Key { key, change: KeyChange::Delete { .. } } => format!("delete {key}"),
            WriteOp::Compact { revision } => format!("compact to {revision}"),
        })
        .collect();
    keys.join(", ")
}

/// The result of a batch that was applied (and committed, where it had to be).
struct Applied {
    outcomes: Vec<Result<Written, StoreError>>,
    /// Every change, durable and volatile, in revision order.
    events: Vec<WatchEvent>,
    /// The volatile keys the batch wrote, for memory.
    staged: std::collections::BTreeMap<String, Option<KeyValue>>,
    counters: Counters,
    /// Whether the batch committed a transaction to the file.
    committed: bool,
}

fn apply_batch(shared: &Shared, state: &WriterState, ops: &[&WriteOp]) -> Result<Applied, redb::Error> {
    let volatile_writes = ops.iter().filter(|op| is_volatile(shared, op)).count();
    let mut counters = state.counters;
    let reserve = volatile_writes > 0 && counters.revision + as_revisions(volatile_writes) > counters.reserved;
    if reserve {
        // The reservation is durable before any revision from it is handed out.
        counters.reserved = counters.revision + as_revisions(ops.len()) + RESERVATION;
    }
    let txn = if reserve || volatile_writes < ops.len() {
        let mut txn = shared.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        Some(txn)
    } else {
        None
    };
    let mut staged = Staged::new(&shared.memory);
    let mut outcomes = Vec::with_capacity(ops.len());
    let mut events = Vec::new();
    let mut compacted = false;
    {
        let mut kv = txn.as_ref().map(|txn| txn.open_table(KV)).transpose()?;
        for op in ops {
            let outcome = match op {
                WriteOp::Compact { revision } => compact(&mut counters, *revision, &mut compacted),
                WriteOp::Key { key, change } => {
                    let space: Option<&mut dyn KeySpace> =
                        if shared.prefixes.covers(key) { Some(&mut staged) } else { kv.as_mut().map(|kv| kv as &mut dyn KeySpace) };
                    let next = counters.revision + 1;
                    let outcome = match space {
                        Some(space) => apply::apply_change(space, key, change, next)?,
                        None => Err(StoreError::Backend(format!("embedded store {}: no transaction open for durable key {key}", shared.path.display()))),
                    };
                    outcome.map(|(written, event)| {
                        counters.revision = next;
                        events.push(event);
                        written
                    })
                }
            };
            outcomes.push(outcome);
        }
    }
    counters.history_start = retention_start(&counters, state.retained_revisions);
    let durable_changes = events.iter().any(|event| !shared.prefixes.covers(&event.kv.key));
    let committed = match txn {
        Some(txn) if durable_changes || reserve || compacted => {
            persist(shared, &txn, &events, &counters, &state.persisted)?;
            txn.commit()?;
            true
        }
        // Nothing durable changed (every durable write was refused): no need to pay for a commit.
        Some(txn) => {
            txn.abort()?;
            false
        }
        None => false,
    };
    Ok(Applied { outcomes, events, staged: staged.into_changes(), counters, committed })
}

fn is_volatile(shared: &Shared, op: &WriteOp) -> bool {
    matches!(op, WriteOp::Key { key, .. } if shared.prefixes.covers(key))
}

fn as_revisions(count: usize) -> Revision {
    Revision::try_from(count).unwrap_or(Revision::MAX)
}

/// Records a batch's durable changes and the counters in `txn`, dropping history the file no
/// longer needs.
fn persist(shared: &Shared, txn: &WriteTransaction, events: &[WatchEvent], counters: &Counters, persisted: &Counters) -> Result<(), redb::Error> {
    let mut log = txn.open_table(LOG)?;
    for event in events.iter().filter(|event| !shared.prefixes.covers(&event.kv.key)) {
        log.insert(event.revision(), tables::log_row(event))?;
    }
    if counters.history_start > persisted.history_start {
        log.retain_in(..counters.history_start, |_, _| false)?;
    }
    counters.write(&mut txn.open_table(META)?)
}

/// Moves the history start to `revision`, unless it is there already; `compacted` says whether
/// it moved.
fn compact(counters: &mut Counters, revision: Revision, compacted: &mut bool) -> Result<Written, StoreError> {
    if revision > counters.revision {
        return Err(StoreError::FutureRevision { requested: revision, current: counters.revision });
    }
    if revision > counters.history_start {
        counters.history_start = revision;
        *compacted = true;
    }
    Ok(Written { revision: counters.revision, removed: None })
}

/// The history start after keeping only the last `retained_revisions` changes.
pub(crate) fn retention_start(counters: &Counters, retained_revisions: u64) -> Revision {
    let retained = i64::try_from(retained_revisions).unwrap_or(i64::MAX);
    let keep_from = counters.revision.saturating_sub(retained).saturating_add(1);
    counters.history_start.max(keep_from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_keeps_the_last_revisions_and_never_moves_back() {
        let fresh = Counters { revision: 5, history_start: 1, reserved: 0 };
        assert_eq!(retention_start(&fresh, 10), 1);
        assert_eq!(retention_start(&fresh, 5), 1);
        assert_eq!(retention_start(&fresh, 2), 4);
        assert_eq!(retention_start(&fresh, u64::MAX), 1);
        let compacted = Counters { revision: 5, history_start: 5, reserved: 0 };
        assert_eq!(retention_start(&compacted, 10), 5);
    }
}
