//! The key-value store under the API: etcd semantics (one monotonic revision, compare-and-swap
//! on an object's modification revision, watch from a revision) behind one `Store` trait.
#![forbid(unsafe_code)]

use std::pin::Pin;

use async_trait::async_trait;
use futures::Stream;

pub mod embedded;
pub mod etcd;

#[cfg(feature = "testing")]
pub mod conformance;
#[cfg(feature = "testing")]
pub mod testing;

pub use embedded::{EmbeddedOptions, EmbeddedStore};
pub use etcd::EtcdStore;

/// A store revision. Every successful write advances the store's single revision counter by one;
/// the first write gets revision 1. Revision 0 means "before anything was written".
pub type Revision = i64;

/// One stored key and its value, with the revisions etcd reports for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The full key, e.g. `/registry/pods/default/web-1`.
    pub key: String,
    /// The stored bytes (JSON objects, for the API server).
    pub value: Vec<u8>,
    /// Revision of the write that created this key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the last write to this key; the compare-and-swap token.
    pub mod_revision: Revision,
}

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created or updated.
    Put,
    /// The key was deleted.
    Delete,
}

/// One change delivered by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// Put or delete.
    pub kind: EventKind,
    /// For a put: the new key-value. For a delete: the last value before deletion, with
    /// `mod_revision` set to the revision of the delete itself.
    pub kv: KeyValue,
    /// The value before this change, when there was one.
    pub prev: Option<KeyValue>,
}

impl WatchEvent {
    /// The revision at which this change happened.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// A stream of changes, in revision order, each delivered exactly once.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, StoreError>> + Send>>;

/// Errors of every backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `create` found the key already present.
    #[error("key {key} already exists")]
    AlreadyExists { key: String },
    /// `update` or `delete` found no such key.
    #[error("key {key} not found")]
    NotFound { key: String },
    /// The compare-and-swap failed: the key was modified since `expected`.
    #[error("key {key} was modified: expected revision {expected}, found {actual}")]
    Conflict { key: String, expected: Revision, actual: Revision },
    /// A watch asked for history older than what the store still keeps.
    #[error("revision {requested} has been compacted; oldest available is {oldest}")]
    Compacted { requested: Revision, oldest: Revision },
    /// A watch asked to start from a revision the store has not reached.
    #[error("revision {requested} is in the future; current is {current}")]
    FutureRevision { requested: Revision, current: Revision },
    /// The backend failed (disk, network, corruption). The message says what and where.
    #[error("store backend: {0}")]
    Backend(String),
}

/// The key-value store with etcd semantics that every backend implements.
///
/// Keys are UTF-8 strings; a prefix list or watch of `"/registry/pods/"` sees every key that
/// starts with that string.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The value at `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Every key starting with `prefix`, sorted by key, and the store revision the listing is
    /// consistent with (a watch from that revision sees every later change).
    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError>;

    /// Creates `key`; fails with `AlreadyExists` if present. Returns the new revision.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError>;

    /// Replaces `key` if its `mod_revision` equals `expected` (compare-and-swap); fails with
    /// `NotFound` or `Conflict` otherwise. Returns the new revision.
    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision, StoreError>;

    /// Deletes `key`, only if its `mod_revision` equals `expected` when given. Returns the
    /// revision of the delete and the value that was removed.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue), StoreError>;

    /// Every change to keys starting with `prefix` with revision strictly greater than `after`,
    /// in revision order, exactly once, then live changes as they happen. `after` older than the
    /// retained history gives `Compacted`.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError>;

    /// The current store revision.
    async fn revision(&self) -> Result<Revision, StoreError>;

    /// Discards the change history before `revision`: afterwards a watch needs
    /// `after >= revision - 1` and an older one gets `Compacted`. Stored keys are untouched.
    /// Compacting to a revision at or before an earlier compaction does nothing; a revision
    /// beyond the current one gives `FutureRevision`.
    ///
    /// The default does nothing, for backends that keep no history of their own; the
    /// conformance suite's compaction check fails for them.
    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let _ = revision;
        Ok(())
    }
}
