//! The single-node store: redb on local disk, every acknowledged write fsync'd, with a bounded
//! change log that watches replay from; keys under volatile prefixes are kept in memory only.

mod apply;
mod read;
mod tables;
mod volatile;
mod watch;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use async_trait::async_trait;
use redb::{Database, ReadableTable};
use tokio::sync::{broadcast, mpsc, oneshot};

use self::apply::KeyChange;
use self::tables::{Counters, KV, LOG, META};
use self::volatile::{Memory, VolatilePrefixes};
use self::watch::Watcher;
use self::writer::{WriteOp, WriteRequest, WriterState, Written};
use crate::{KeyValue, Revision, Store, StoreError, WatchEvent, WatchStream};

/// Tuning of an [`EmbeddedStore`].
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// How many of the latest revisions keep their change in the watch history; a watch from
    /// further back gets `Compacted`. At least 1.
    pub retained_revisions: u64,
    /// How many changes a live watcher may fall behind before it re-reads them from disk.
    pub watch_buffer: usize,
    /// Keys starting with one of these prefixes are volatile: kept in memory and never written
    /// to the file, so that frequent writes nobody needs after a restart (node heartbeat Leases
    /// under `/registry/leases/`) cost no disk writes. Empty by default; no prefix may be empty.
    ///
    /// Volatile keys otherwise behave like durable ones: they take revisions from the same
    /// counter, compare-and-swap, list and watch alike. What a crash or restart loses: every
    /// volatile key (its writer is expected to create it again), and the watch history from
    /// before the restart, so a watch resuming from an older revision gets `Compacted` and must
    /// list again. Revisions stay monotonic: one durable commit reserves the next 10,000 for
    /// volatile writes, and a reopened store counts on after the reservation.
    pub volatile_prefixes: Vec<String>,
    /// Bytes of file pages the store caches in memory (redb's own default is 1 GiB, which a
    /// busy cluster fills: most of the process's memory). Pages not cached are read back
    /// through the kernel's page cache.
    pub cache_bytes: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self { retained_revisions: 10_000, watch_buffer: 1024, volatile_prefixes: Vec::new(), cache_bytes: 32 << 20 }
    }
}

/// Failures of the embedded store, each naming the database file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EmbeddedError {
    /// The database could not be opened or prepared.
    #[error("cannot open embedded store {}: {source}", path.display())]
    Open { path: PathBuf, source: redb::Error },
    /// The options make no sense.
    #[error("embedded store {}: {problem}", path.display())]
    InvalidOptions { path: PathBuf, problem: &'static str },
    /// The writer thread could not start.
    #[error("embedded store {}: cannot start the writer thread: {source}", path.display())]
    WriterThread { path: PathBuf, source: std::io::Error },
    /// A read failed.
    #[error("embedded store {}: cannot {action}: {source}", path.display())]
    Storage { path: PathBuf, action: String, source: redb::Error },
    /// A batch of writes could not be committed; none of them happened.
    #[error("embedded store {}: commit failed for [{writes}]: {source}", path.display())]
    Commit { path: PathBuf, writes: String, source: redb::Error },
    /// The writer thread is gone (the store is shutting down).
    #[error("embedded store {}: the writer has stopped; cannot {action}", path.display())]
    WriterGone { path: PathBuf, action: String },
    /// A blocking task panicked or was cancelled.
    #[error("embedded store {}: background task failed: {source}", path.display())]
    Task { path: PathBuf, source: tokio::task::JoinError },
    /// The log table lacks revisions that should be there: the file is damaged.
    #[error("embedded store {}: history between revisions {after} and {through} is incomplete", path.display())]
    MissingHistory { path: PathBuf, after: Revision, through: Revision },
    /// A log row could not be decoded: the file is damaged or from a newer version.
    #[error("embedded store {}: history entry for revision {revision} is unreadable", path.display())]
    UnreadableHistory { path: PathBuf, revision: Revision },
}

impl From<EmbeddedError> for StoreError {
    fn from(error: EmbeddedError) -> Self {
        StoreError::Backend(error.to_string())
    }
}

/// What readers, the writer and watchers share.
pub(crate) struct Shared {
    db: Database,
    path: PathBuf,
    prefixes: VolatilePrefixes,
    /// The revision, history start and volatile keys, updated after each batch is committed and
    /// before its changes are published.
    memory: Mutex<Memory>,
}

impl Shared {
    fn memory(&self) -> MutexGuard<'_, Memory> {
        volatile::lock(&self.memory)
    }
}

/// The most keys a listing reads on the caller's thread before it moves to the blocking pool.
const INLINE_LIST: usize = 32;

/// The embedded [`Store`]: one redb file on local disk.
///
/// Writes go through one writer thread that commits whatever has queued up in one transaction
/// (one fsync for many concurrent writers) with `Durability::Immediate`: a write is acknowledged
/// only once it is on disk, or, for a key under [`EmbeddedOptions::volatile_prefixes`], once it
/// is in memory. Reads and history replay run on tokio's blocking pool.
///
/// The file stays locked until the store and every watch stream from it are dropped.
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    requests: Option<mpsc::Sender<WriteRequest>>,
    events: broadcast::Sender<Arc<WatchEvent>>,
    writer: Option<JoinHandle<()>>,
}

impl EmbeddedStore {
    /// Opens the store at `path`, creating the file if needed, with default options.
    pub fn open(path: &Path) -> Result<EmbeddedStore, StoreError> {
        Self::open_with(path, EmbeddedOptions::default())
    }

    /// Opens the store at `path`, creating the file if needed. History beyond
    /// `options.retained_revisions` is dropped right away.
    pub fn open_with(path: &Path, options: EmbeddedOptions) -> Result<EmbeddedStore, StoreError> {
        let path = path.to_path_buf();
        if options.retained_revisions == 0 {
            let problem = "retained_revisions must be at least 1";
            return Err(EmbeddedError::InvalidOptions { path, problem }.into());
        }
        if options.watch_buffer == 0 {
            let problem = "watch_buffer must be at least 1";
            return Err(EmbeddedError::InvalidOptions { path, problem }.into());
        }
        if options.volatile_prefixes.iter().any(String::is_empty) {
            let problem = "volatile_prefixes must not contain an empty prefix (it would make every key volatile)";
            return Err(EmbeddedError::InvalidOptions { path, problem }.into());
        }
        let prefixes = VolatilePrefixes::new(options.volatile_prefixes);
        let open = |source: redb::Error| EmbeddedError::Open { path: path.clone(), source };
        let db = Database::builder().set_cache_size(options.cache_bytes).create(&path).map_err(|e| open(e.into()))?;
        let counters = prepare(&db, options.retained_revisions, &prefixes).map_err(open)?;
        let memory = Mutex::new(Memory::new(&counters));
        let shared = Arc::new(Shared { db, path, prefixes, memory });
        let (requests, queue) = mpsc::channel(1024);
        let (events, _) = broadcast::channel(options.watch_buffer);
        let state = WriterState::new(counters, options.retained_revisions);
        let writer = writer::spawn(Arc::clone(&shared), queue, events.clone(), state)
            .map_err(|source| EmbeddedError::WriterThread { path: shared.path.clone(), source })?;
        Ok(EmbeddedStore { shared, requests: Some(requests), events, writer: Some(writer) })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    async fn write(&self, key: &str, change: KeyChange) -> Result<Written, StoreError> {
        self.send(WriteOp::Key { key: key.to_owned(), change }).await
    }

    async fn send(&self, op: WriteOp) -> Result<Written, StoreError> {
        let gone = |op: &WriteOp| EmbeddedError::WriterGone { path: self.shared.path.clone(), action: format!("{op:?}") };
        let Some(requests) = &self.requests else {
            return Err(gone(&op).into());
        };
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError(request)) = requests.send(WriteRequest { op, reply }).await {
            return Err(gone(&request.op).into());
        }
        answer.await.map_err(|_| EmbeddedError::WriterGone { path: self.shared.path.clone(), action: "receive a write's outcome".into() })?
    }

    /// Runs `read` on the blocking pool; `action` names it in errors.
    async fn read<T: Send + 'static>(
        &self,
        action: impl FnOnce() -> String,
        read: impl FnOnce(&Shared) -> Result<T, redb::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shared = Arc::clone(&self.shared);
        let path = shared.path.clone();
        let outcome = tokio::task::spawn_blocking(move || read(&shared)).await.map_err(|source| EmbeddedError::Task { path: path.clone(), source })?;
        outcome.map_err(|source| EmbeddedError::Storage { path, action: action(), source }.into())
    }
}

/// Creates the tables of a new file and applies the retention to an old one. When the last run
/// wrote volatile keys, or the file holds keys under a prefix that is volatile now, what it does
/// not record is gone: the revision moves one past every revision the last run may have handed
/// out, and the history before it is dropped, so that no watch resumes across the loss.
fn prepare(db: &Database, retained_revisions: u64, prefixes: &VolatilePrefixes) -> Result<Counters, redb::Error> {
    let txn = db.begin_write()?;
    let counters = {
        let mut kv = txn.open_table(KV)?;
        let mut log = txn.open_table(LOG)?;
        let mut meta = txn.open_table(META)?;
        let stored = Counters::read(&meta)?;
        let mut counters = stored;
        let dropped = drop_volatile_rows(&mut kv, prefixes)?;
        if counters.reserved > 0 || dropped > 0 {
            counters.revision = counters.revision.max(counters.reserved) + 1;
            counters.history_start = counters.revision + 1;
            counters.reserved = 0;
        }
        counters.history_start = writer::retention_start(&counters, retained_revisions);
        if counters.history_start > stored.history_start {
            log.retain_in(..counters.history_start, |_, _| false)?;
        }
        counters.write(&mut meta)?;
        counters
    };
    txn.commit()?;
    Ok(counters)
}

/// Removes the stored keys under the volatile prefixes (written while a prefix was durable);
/// returns how many there were.
fn drop_volatile_rows(kv: &mut redb::Table<&'static str, (i64, i64, &'static [u8])>, prefixes: &VolatilePrefixes) -> Result<usize, redb::Error> {
    let mut keys = Vec::new();
    for prefix in prefixes.iter() {
        for entry in kv.range::<&str>(prefix..)? {
            let key = entry?.0.value().to_owned();
            if !key.starts_with(prefix) {
                break;
            }
            keys.push(key);
        }
    }
    for key in &keys {
        kv.remove(key.as_str())?;
    }
    Ok(keys.len())
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // Closing the queue stops the writer once it has finished what was already queued.
        self.requests.take();
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!(path = %self.shared.path.display(), "embedded store writer panicked");
            }
        }
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        if self.shared.prefixes.covers(key) {
            return Ok(self.shared.memory().get(key));
        }
        // One key from a snapshot is a few microseconds (the pages are in redb's cache or the
        // kernel's), less than handing it to the blocking pool and waking a thread for it.
        tables::get(&self.shared.db, key)
            .map_err(|source| EmbeddedError::Storage { path: self.shared.path.clone(), action: format!("read key {key}"), source }.into())
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        // A short listing (a few PriorityClasses or policies, read on every pod create) is read
        // here; one that turns out longer goes to the blocking pool, not to hold up this thread.
        let storage = |source: redb::Error| EmbeddedError::Storage { path: self.shared.path.clone(), action: format!("list prefix {prefix}"), source };
        if let Some(listed) = read::list_at_most(&self.shared, prefix, INLINE_LIST).map_err(storage)? {
            return Ok(listed);
        }
        let owned = prefix.to_owned();
        self.read(|| format!("list prefix {prefix}"), move |shared| read::list(shared, &owned)).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
        Ok(self.write(key, KeyChange::Create { value }).await?.revision)
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision, StoreError> {
        Ok(self.write(key, KeyChange::Update { value, expected }).await?.revision)
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue), StoreError> {
        let written = self.write(key, KeyChange::Delete { expected }).await?;
        let removed =
            written.removed.ok_or_else(|| StoreError::Backend(format!("embedded store {}: delete of {key} removed nothing", self.path().display())))?;
        Ok((written.revision, removed))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        // Subscribe before reading the applied revision: every later change then reaches us.
        let live = self.events.subscribe();
        let (current, oldest) = {
            let memory = self.shared.memory();
            (memory.revision, memory.history_start - 1)
        };
        if after > current {
            return Err(StoreError::FutureRevision { requested: after, current });
        }
        if after < oldest {
            return Err(StoreError::Compacted { requested: after, oldest });
        }
        Ok(Watcher::new(Arc::clone(&self.shared), live, prefix, after, current).into_stream())
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        Ok(self.shared.memory().revision)
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.send(WriteOp::Compact { revision }).await.map(|_| ())
    }
}
