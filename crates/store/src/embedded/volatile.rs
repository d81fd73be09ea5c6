//! Keys under the volatile prefixes: held in memory only, never written to the redb file, with
//! their own change history. They share the store's one revision counter with the durable keys,
//! and this module also holds that counter as readers see it.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::apply::KeySpace;
use super::tables::Counters;
use crate::{KeyValue, Revision, WatchEvent};

/// Revisions one durable commit reserves for volatile writes when the last reservation runs
/// out: at a heartbeat every 2 s, one commit every 5.5 hours.
pub(crate) const RESERVATION: Revision = 10_000;

/// The key prefixes whose keys live in memory only.
#[derive(Clone, Debug, Default)]
pub(crate) struct VolatilePrefixes {
    prefixes: Vec<String>,
}

/// Which key spaces can hold keys under a listed or watched prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Scope {
    /// Some keys under the prefix are durable.
    pub durable: bool,
    /// Some keys under the prefix are volatile.
    pub volatile: bool,
}

impl VolatilePrefixes {
    /// The given prefixes; an empty list makes every key durable.
    pub fn new(prefixes: Vec<String>) -> Self {
        Self { prefixes }
    }

    /// The prefixes, as configured.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.prefixes.iter().map(String::as_str)
    }

    /// Whether `key` is volatile.
    pub fn covers(&self, key: &str) -> bool {
        self.iter().any(|volatile| key.starts_with(volatile))
    }

    /// Which key spaces hold the keys starting with `prefix`.
    pub fn scope(&self, prefix: &str) -> Scope {
        Scope { durable: !self.covers(prefix), volatile: self.iter().any(|volatile| volatile.starts_with(prefix) || prefix.starts_with(volatile)) }
    }
}

/// What readers share with the writer in memory: the counters as of the last applied batch, the
/// volatile keys, and the volatile changes since the history start.
#[derive(Debug)]
pub(crate) struct Memory {
    /// The store revision: the last change applied, durable or volatile.
    pub revision: Revision,
    /// The oldest revision whose change is still in the history, of either kind.
    pub history_start: Revision,
    /// The revision the file's META table holds since the last durable commit. A reader whose
    /// file snapshot shows another one caught a commit whose batch is not in memory yet.
    pub durable_revision: Revision,
    keys: BTreeMap<String, KeyValue>,
    /// Volatile changes in revision order, none older than `history_start`.
    history: VecDeque<Arc<WatchEvent>>,
}

/// The volatile part of a stretch of history, from [`Memory::history`].
#[derive(Debug, Default)]
pub(crate) struct VolatilePage {
    /// The volatile changes to keys under the prefix, in revision order.
    pub events: Vec<WatchEvent>,
    /// How many volatile changes the range held, under the prefix or not.
    pub covered: i64,
    /// The oldest `after` the memory could serve completely.
    pub oldest_watchable: Revision,
}

impl Memory {
    /// The state right after opening: no volatile keys, counters as the file has them.
    pub fn new(counters: &Counters) -> Self {
        Self {
            revision: counters.revision,
            history_start: counters.history_start,
            durable_revision: counters.revision,
            keys: BTreeMap::new(),
            history: VecDeque::new(),
        }
    }

    /// The volatile key `key`, if present.
    pub fn get(&self, key: &str) -> Option<KeyValue> {
        self.keys.get(key).cloned()
    }

    /// The volatile keys starting with `prefix`, sorted.
    pub fn list(&self, prefix: &str) -> Vec<KeyValue> {
        self.keys
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(_, kv)| kv.clone())
            .collect()
    }

    /// The volatile changes to keys under `prefix` in revisions `after + 1 ..= through`.
    pub fn history(&self, prefix: &str, after: Revision, through: Revision) -> VolatilePage {
        let mut page = VolatilePage { oldest_watchable: self.history_start - 1, ..VolatilePage::default() };
        let first = self.history.partition_point(|event| event.revision() <= after);
        for event in self.history.range(first..).take_while(|event| event.revision() <= through) {
            page.covered += 1;
            if event.kv.key.starts_with(prefix) {
                page.events.push(WatchEvent::clone(event));
            }
        }
        page
    }

    /// Applies a batch the writer has finished: its staged volatile keys, its volatile changes
    /// (in revision order), and the counters after it; `committed` when the batch went to the
    /// file. Drops the volatile history before the new history start.
    pub fn apply(
        &mut self,
        staged: BTreeMap<String, Option<KeyValue>>,
        changes: impl IntoIterator<Item = Arc<WatchEvent>>,
        counters: &Counters,
        committed: bool,
    ) {
        for (key, kv) in staged {
            match kv {
                Some(kv) => self.keys.insert(key, kv),
                None => self.keys.remove(&key),
            };
        }
        self.history.extend(changes);
        self.revision = counters.revision;
        self.history_start = counters.history_start;
        if committed {
            self.durable_revision = counters.revision;
        }
        while self.history.front().is_some_and(|event| event.revision() < self.history_start) {
            self.history.pop_front();
        }
    }
}

/// Merges the durable and volatile halves of a read, each sorted, into one sorted list;
/// `before(a, b)` says whether `a` sorts before `b`.
pub(crate) fn merge<T>(durable: Vec<T>, volatile: Vec<T>, before: impl Fn(&T, &T) -> bool) -> Vec<T> {
    if volatile.is_empty() {
        return durable;
    }
    let mut merged = Vec::with_capacity(durable.len() + volatile.len());
    let mut volatile = volatile.into_iter().peekable();
    for item in durable {
        while let Some(earlier) = volatile.next_if(|candidate| before(candidate, &item)) {
            merged.push(earlier);
        }
        merged.push(item);
    }
    merged.extend(volatile);
    merged
}

/// Locks `memory`. A panic while it was held cannot leave it half-updated (every update is a
/// few infallible steps), so a poisoned lock is used as it is.
pub(crate) fn lock(memory: &Mutex<Memory>) -> MutexGuard<'_, Memory> {
    memory.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A batch's volatile writes, kept apart until the batch is done so that a failed commit
/// leaves memory as it was.
pub(crate) struct Staged<'m> {
    memory: &'m Mutex<Memory>,
    changes: BTreeMap<String, Option<KeyValue>>,
}

impl<'m> Staged<'m> {
    /// Nothing staged yet, over `memory`.
    pub fn new(memory: &'m Mutex<Memory>) -> Self {
        Self { memory, changes: BTreeMap::new() }
    }

    /// The staged keys: `None` for a deleted one.
    pub fn into_changes(self) -> BTreeMap<String, Option<KeyValue>> {
        self.changes
    }
}

impl KeySpace for Staged<'_> {
    fn get(&self, key: &str) -> Result<Option<KeyValue>, redb::Error> {
        Ok(match self.changes.get(key) {
            Some(staged) => staged.clone(),
            None => lock(self.memory).get(key),
        })
    }

    fn put(&mut self, kv: &KeyValue) -> Result<(), redb::Error> {
        self.changes.insert(kv.key.clone(), Some(kv.clone()));
        Ok(())
    }

    fn remove(&mut self, key: &str) -> Result<(), redb::Error> {
        self.changes.insert(key.to_owned(), None);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventKind;

    fn put(key: &str, revision: Revision) -> Arc<WatchEvent> {
        let kv = KeyValue { key: key.into(), value: Vec::new(), create_revision: revision, mod_revision: revision };
        Arc::new(WatchEvent { kind: EventKind::Put, kv, prev: None })
    }

    #[test]
    fn scope_says_which_key_spaces_a_prefix_spans() {
        let prefixes = VolatilePrefixes::new(vec!["/registry/leases/".into()]);
        assert!(prefixes.covers("/registry/leases/node-1"));
        assert!(!prefixes.covers("/registry/leasesx"));
        let both = Scope { durable: true, volatile: true };
        assert_eq!(prefixes.scope(""), both);
        assert_eq!(prefixes.scope("/registry/"), both);
        assert_eq!(prefixes.scope("/registry/leases/"), Scope { durable: false, volatile: true });
        assert_eq!(prefixes.scope("/registry/leases/n"), Scope { durable: false, volatile: true });
        assert_eq!(prefixes.scope("/registry/pods/"), Scope { durable: true, volatile: false });
        assert_eq!(VolatilePrefixes::default().scope(""), Scope { durable: true, volatile: false });
    }

    #[test]
    fn history_pages_count_every_volatile_change_and_trim_at_the_history_start() {
        let mut memory = Memory::new(&Counters { revision: 0, history_start: 1, reserved: 0 });
        let changes = [put("/v/a", 2), put("/w/b", 3), put("/v/c", 5)];
        let counters = Counters { revision: 5, history_start: 1, reserved: 100 };
        memory.apply(BTreeMap::new(), changes, &counters, false);
        assert_eq!(memory.durable_revision, 0, "a batch that did not commit leaves the file's revision");

        let page = memory.history("/v/", 2, 5);
        let revisions: Vec<Revision> = page.events.iter().map(WatchEvent::revision).collect();
        assert_eq!((revisions, page.covered), (vec![5], 2), "after 2: revisions 3 and 5, one under /v/");
        assert_eq!(memory.history("/", 0, 4).covered, 2, "nothing past `through`");

        let counters = Counters { revision: 6, history_start: 4, reserved: 100 };
        memory.apply(BTreeMap::new(), [put("/v/d", 6)], &counters, true);
        assert_eq!(memory.durable_revision, 6);
        let page = memory.history("/", 3, 6);
        assert_eq!((page.covered, page.oldest_watchable), (2, 3), "revisions 2 and 3 were dropped");
    }

    #[test]
    fn merge_interleaves_two_sorted_halves() {
        let less = |a: &i32, b: &i32| a < b;
        assert_eq!(merge(vec![1, 4, 5, 9], vec![2, 3, 6, 10, 11], less), [1, 2, 3, 4, 5, 6, 9, 10, 11]);
        assert_eq!(merge(Vec::new(), vec![2, 3], less), [2, 3]);
        assert_eq!(merge(vec![1], Vec::new(), less), [1]);
    }

    #[test]
    fn staged_writes_shadow_memory_until_applied() {
        let memory = Mutex::new(Memory::new(&Counters { revision: 0, history_start: 1, reserved: 0 }));
        let kv = |key: &str| KeyValue { key: key.into(), value: b"v".to_vec(), create_revision: 1, mod_revision: 1 };
        let mut staged = Staged::new(&memory);
        staged.put(&kv("/v/a")).unwrap();
        staged.put(&kv("/v/b")).unwrap();
        staged.remove("/v/b").unwrap();
        assert_eq!(staged.get("/v/a").unwrap(), Some(kv("/v/a")));
        assert_eq!(staged.get("/v/b").unwrap(), None);
        assert_eq!(lock(&memory).get("/v/a"), None, "nothing reaches memory before the batch is applied");

        let changes = staged.into_changes();
        let counters = Counters { revision: 2, history_start: 1, reserved: 100 };
        lock(&memory).apply(changes, [], &counters, false);
        assert_eq!(lock(&memory).list("/v/"), [kv("/v/a")]);
    }
}
