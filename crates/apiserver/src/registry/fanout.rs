//! Watch fan-out: one store watch per resource type, each change decoded once and handed to
//! the watchers it concerns. A watcher selecting `spec.nodeName=<node>` (every agent does) is
//! indexed by that node, so a pod change wakes the one or two agents it concerns, not all of
//! them. The last changes are kept so a watch starting a little in the past (after a list) is
//! served here too; one starting further back goes to the store directly.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;

use futures::{Stream, StreamExt};
use serde_json::Value;
use store::{EventKind, Revision, Store, StoreError};
use tokio::sync::mpsc;

use super::{decode, ListFilter, Selectable};
use crate::ApiError;

/// Changes kept for watches that start before the newest one.
const HISTORY: usize = 2048;

/// Changes a watcher may have waiting before it is cut off as too slow (it lists again).
const BACKLOG: usize = 16384;

/// The field whose equality watches are indexed by.
const NODE_FIELD: &str = "spec.nodeName";

/// One change to an object, decoded once for every watcher.
#[derive(Debug)]
pub(crate) struct Change {
    /// The store key.
    pub key: String,
    /// The revision of the change.
    pub revision: Revision,
    /// Put or delete.
    pub kind: EventKind,
    /// The object after the change (the last state, for a delete), resourceVersion set.
    pub now: Arc<Value>,
    /// What selectors see of the object before the change: a watch needs no more of it, and
    /// decoding all of it for every change was a tenth of the server's CPU under load.
    pub prev: Option<Selectable>,
    /// `now` as JSON, made by the first watcher that sends it over HTTP.
    pub encoded: Arc<OnceLock<Bytes>>,
}

impl Change {
    pub fn decode(event: &store::WatchEvent) -> Result<Change, ApiError> {
        let revision = event.revision();
        let now = Arc::new(decode(&event.kv, revision)?);
        let prev = event.prev.as_ref().and_then(|p| Selectable::of_stored(&p.value));
        Ok(Change { key: event.kv.key.clone(), revision, kind: event.kind, now, prev, encoded: Arc::default() })
    }

    fn node_names(&self) -> [Option<&str>; 2] {
        fn node(v: &Value) -> Option<&str> {
            v.pointer("/spec/nodeName").and_then(Value::as_str)
        }
        let now = node(&self.now);
        let prev = self.prev.as_ref().and_then(Selectable::node_name).filter(|p| Some(*p) != now);
        [now, prev]
    }
}

/// Why a fanned-out watch ended early: too far behind (410, list again) or the store failed.
pub(crate) type Ending = Arc<Mutex<Option<ApiError>>>;

/// A change as one watcher sees it through its selectors.
pub(crate) type Seen = (&'static str, Arc<Change>);

struct Watcher {
    /// Only keys under this prefix (a namespace's, or the whole type's).
    prefix: String,
    /// Only changes after this revision.
    after: Revision,
    /// Its selectors.
    filter: ListFilter,
    changes: mpsc::Sender<Seen>,
    ending: Ending,
}

impl Watcher {
    /// Hands `change` over if the watcher selects it; false when the watcher is gone or too far
    /// behind (it is dropped).
    fn offer(&self, change: &Arc<Change>) -> bool {
        if change.revision <= self.after || !change.key.starts_with(&self.prefix) {
            return !self.changes.is_closed();
        }
        let Some(type_) = selected(&self.filter, change) else { return !self.changes.is_closed() };
        match self.changes.try_send((type_, change.clone())) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                end(&self.ending, ApiError::Gone(format!("the watch fell more than {BACKLOG} changes behind; list again")));
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

fn end(ending: &Ending, why: ApiError) {
    let mut slot = ending.lock().unwrap_or_else(|e| e.into_inner());
    slot.get_or_insert(why);
}

/// How a change shows through `filter`: ADDED, MODIFIED or DELETED, or not at all. An object
/// entering the selection is ADDED and one leaving it DELETED, as Kubernetes reports them.
pub(crate) fn selected(filter: &ListFilter, change: &Change) -> Option<&'static str> {
    let was = change.prev.as_ref().is_some_and(|p| filter.selects(p));
    let is = filter.matches(&change.now);
    match (change.kind, was, is) {
        (EventKind::Delete, true, _) => Some("DELETED"),
        (EventKind::Delete, false, _) => None,
        (EventKind::Put, false, true) => Some("ADDED"),
        (EventKind::Put, true, true) => Some("MODIFIED"),
        (EventKind::Put, true, false) => Some("DELETED"),
        (EventKind::Put, false, false) => None,
    }
}

#[derive(Default)]
struct State {
    /// Every change with revision > `complete_after` is in `history`.
    complete_after: Revision,
    /// The newest revision seen.
    latest: Revision,
    history: VecDeque<Arc<Change>>,
    next_id: u64,
    /// Watchers of every change.
    all: HashMap<u64, Watcher>,
    /// Watchers of one node's pods.
    by_node: HashMap<String, HashMap<u64, Watcher>>,
    /// Set when the store watch ended: the hub is done.
    failed: Option<ApiError>,
}

/// The fan-out of one resource type.
pub(crate) struct Hub {
    state: Mutex<State>,
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a hub for keys under `prefix`, complete from `after` on when the store still has
    /// that history, else from the current revision.
    pub async fn start(store: &Arc<dyn Store>, prefix: &str, after: Revision) -> Result<Arc<Hub>, StoreError> {
        let (events, from) = match store.watch(prefix, after).await {
            Ok(events) => (events, after),
            Err(StoreError::Compacted { .. } | StoreError::FutureRevision { .. }) => {
                let now = store.revision().await?;
                (store.watch(prefix, now).await?, now)
            }
            Err(e) => return Err(e),
        };
        let hub = Arc::new(Hub { state: Mutex::new(State { complete_after: from, latest: from, ..Default::default() }) });
        tokio::spawn(pump(Arc::downgrade(&hub), events));
        Ok(hub)
    }

    /// The newest revision the hub has seen.
    pub fn latest(&self) -> Revision {
        self.lock().latest
    }

    /// True once the hub's store watch ended.
    pub fn failed(&self) -> bool {
        self.lock().failed.is_some()
    }

    /// A stream of the changes under `prefix` after `after`, or `None` when the hub cannot
    /// vouch for every change since `after` (the caller watches the store directly).
    pub fn subscribe(&self, prefix: String, filter: ListFilter, after: Revision) -> Option<(mpsc::Receiver<Seen>, Ending)> {
        let node = indexed_node(&filter.fields);
        let mut state = self.lock();
        if after < state.complete_after || state.failed.is_some() {
            return None;
        }
        // Watchers whose client left are dropped when a change comes for them; a reconnecting
        // agent's old ones go here.
        match node.as_deref() {
            Some(node) => {
                if let Some(watchers) = state.by_node.get_mut(node) {
                    watchers.retain(|_, w| !w.changes.is_closed());
                }
            }
            None => state.all.retain(|_, w| !w.changes.is_closed()),
        }
        let (tx, rx) = mpsc::channel(BACKLOG);
        let ending: Ending = Arc::default();
        let watcher = Watcher { prefix, after, filter, changes: tx, ending: ending.clone() };
        let start = state.history.partition_point(|c| c.revision <= after);
        for change in state.history.range(start..) {
            if !node.as_deref().is_none_or(|n| change.node_names().contains(&Some(n))) {
                continue;
            }
            if !watcher.offer(change) {
                return Some((rx, ending));
            }
        }
        state.next_id += 1;
        let id = state.next_id;
        match node {
            Some(node) => {
                state.by_node.entry(node).or_default().insert(id, watcher);
            }
            None => {
                state.all.insert(id, watcher);
            }
        }
        Some((rx, ending))
    }

    fn publish(&self, change: Change) {
        let change = Arc::new(change);
        let mut state = self.lock();
        let state = &mut *state;
        state.latest = change.revision;
        state.all.retain(|_, w| w.offer(&change));
        for node in change.node_names().into_iter().flatten() {
            if let Some(watchers) = state.by_node.get_mut(node) {
                watchers.retain(|_, w| w.offer(&change));
                if watchers.is_empty() {
                    state.by_node.remove(node);
                }
            }
        }
        state.history.push_back(change);
        if state.history.len() > HISTORY {
            if let Some(oldest) = state.history.pop_front() {
                state.complete_after = oldest.revision;
            }
        }
    }

    fn fail(&self, why: String) {
        let mut state = self.lock();
        for watcher in state.all.values().chain(state.by_node.values().flat_map(HashMap::values)) {
            end(&watcher.ending, ApiError::Internal(why.clone()));
        }
        state.all.clear();
        state.by_node.clear();
        state.failed = Some(ApiError::Internal(why));
    }

    /// A stored object that does not decode ends the watches that would have seen its key;
    /// the others go on.
    fn undecodable(&self, key: &str, why: &ApiError) {
        let mut state = self.lock();
        let state = &mut *state;
        let drop_watching = |watchers: &mut HashMap<u64, Watcher>| {
            watchers.retain(|_, w| {
                let watching = key.starts_with(&w.prefix);
                if watching {
                    end(&w.ending, ApiError::Internal(why.to_string()));
                }
                !watching
            })
        };
        drop_watching(&mut state.all);
        state.by_node.values_mut().for_each(drop_watching);
    }
}

/// Fails the hub if its pump stops without saying why (cancelled with the runtime, or a panic),
/// so watchers end instead of waiting forever and the next watch starts a new hub.
struct PumpGuard(std::sync::Weak<Hub>);

impl Drop for PumpGuard {
    fn drop(&mut self) {
        if let Some(hub) = self.0.upgrade() {
            if !hub.failed() {
                hub.fail("the watch fan-out stopped".into());
            }
        }
    }
}

/// Feeds the store's changes to the hub until either is gone.
async fn pump(hub: std::sync::Weak<Hub>, mut events: store::WatchStream) {
    let _guard = PumpGuard(hub.clone());
    while let Some(event) = events.next().await {
        let Some(hub) = hub.upgrade() else { return };
        match event {
            Ok(event) => match Change::decode(&event) {
                Ok(change) => hub.publish(change),
                Err(why) => hub.undecodable(&event.kv.key, &why),
            },
            Err(e) => {
                hub.fail(format!("store watch: {e}"));
                return;
            }
        }
    }
    if let Some(hub) = hub.upgrade() {
        hub.fail("the store watch ended".into());
    }
}

/// The node a filter's `spec.nodeName=<node>` term names, for the index.
pub(crate) fn indexed_node(fields: &[(String, String, bool)]) -> Option<String> {
    // `spec.nodeName=` (empty) selects the unscheduled pods, which no node index holds.
    fields.iter().find(|(path, value, equal)| path == NODE_FIELD && *equal && !value.is_empty()).map(|(_, value, _)| value.clone())
}

/// The receiver as a stream that ends with an error when the hub cut it off.
pub(crate) fn stream(rx: mpsc::Receiver<Seen>, ending: Ending) -> impl Stream<Item = Result<Seen, ApiError>> + Send + 'static {
    futures::stream::unfold((rx, ending, false), |(mut rx, ending, done)| async move {
        if done {
            return None;
        }
        match rx.recv().await {
            Some(change) => Some((Ok(change), (rx, ending, false))),
            None => {
                let why = ending.lock().unwrap_or_else(|e| e.into_inner()).take();
                why.map(|why| (Err(why), (rx, ending, true)))
            }
        }
    })
}
