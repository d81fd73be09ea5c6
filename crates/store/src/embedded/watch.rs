//! Watch streams of the embedded store: history from the log table and the volatile history in
//! memory, merged, then live changes from the writer's broadcast, each revision delivered once; a
//! watcher that falls behind the broadcast goes back to the histories.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};

use super::{tables, volatile, EmbeddedError, Shared};
use crate::{Revision, StoreError, WatchEvent, WatchStream};

/// Revisions read from the histories per blocking read.
const HISTORY_PAGE: i64 = 512;

/// One watcher's position. `cursor` is the last revision it has looked at (delivered, or skipped
/// as outside the prefix); every revision up to `catch_up_to` is applied and in one of the
/// histories: the log table for a durable change, memory for a volatile one.
pub(crate) struct Watcher {
    shared: Arc<Shared>,
    live: broadcast::Receiver<Arc<WatchEvent>>,
    prefix: String,
    cursor: Revision,
    catch_up_to: Revision,
    ready: VecDeque<WatchEvent>,
    finished: bool,
}

impl Watcher {
    /// A watcher of `prefix` after revision `after`. `live` must have been subscribed before
    /// `committed` was read, so that every change after `committed` reaches it.
    pub fn new(shared: Arc<Shared>, live: broadcast::Receiver<Arc<WatchEvent>>, prefix: &str, after: Revision, committed: Revision) -> Self {
        Self { shared, live, prefix: prefix.to_owned(), cursor: after, catch_up_to: committed, ready: VecDeque::new(), finished: false }
    }

    /// The watcher as a stream.
    pub fn into_stream(self) -> WatchStream {
        Box::pin(futures::stream::unfold(self, |mut watcher| async move {
            let item = watcher.next().await?;
            Some((item, watcher))
        }))
    }

    /// The next change, an error that ends the stream, or `None` when the store has closed.
    async fn next(&mut self) -> Option<Result<WatchEvent, StoreError>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(Ok(event));
            }
            if self.finished {
                return None;
            }
            if self.cursor < self.catch_up_to {
                if let Err(error) = self.read_history().await {
                    self.finished = true;
                    return Some(Err(error));
                }
                continue;
            }
            match self.live.recv().await {
                Ok(event) => self.on_live(&event),
                // Dropped changes are all applied by now, so the histories have them.
                Err(RecvError::Lagged(_)) => self.catch_up_to = self.shared.memory().revision,
                Err(RecvError::Closed) => return None,
            }
        }
    }

    fn on_live(&mut self, event: &WatchEvent) {
        let revision = event.revision();
        if revision <= self.cursor {
            return;
        }
        if revision > self.cursor + 1 {
            // A change is missing between the cursor and this one: fetch both from the histories.
            self.catch_up_to = revision;
            return;
        }
        self.cursor = revision;
        if event.kv.key.starts_with(&self.prefix) {
            self.ready.push_back(event.clone());
        }
    }

    /// Reads the next page of history after the cursor into `ready`.
    async fn read_history(&mut self) -> Result<(), StoreError> {
        let after = self.cursor;
        let through = self.catch_up_to.min(after.saturating_add(HISTORY_PAGE));
        let shared = Arc::clone(&self.shared);
        let prefix = self.prefix.clone();
        let path = shared.path.clone();
        let page = tokio::task::spawn_blocking(move || read_page(&shared, &prefix, after, through))
            .await
            .map_err(|source| EmbeddedError::Task { path: path.clone(), source })?
            .map_err(|source| EmbeddedError::Storage { path: path.clone(), action: format!("read history after revision {after}"), source })?;
        let oldest = page.oldest_watchable;
        if after < oldest {
            return Err(StoreError::Compacted { requested: after, oldest });
        }
        if let Some(revision) = page.unreadable {
            return Err(EmbeddedError::UnreadableHistory { path, revision }.into());
        }
        if page.covered != through - after {
            return Err(EmbeddedError::MissingHistory { path, after, through }.into());
        }
        self.ready.extend(page.events);
        self.cursor = through;
        Ok(())
    }
}

/// The changes of both kinds in one stretch of history.
struct Page {
    /// The changes under the prefix, in revision order.
    events: Vec<WatchEvent>,
    /// How many revisions the two histories covered together.
    covered: i64,
    /// The first durable revision whose row was unreadable, if any.
    unreadable: Option<Revision>,
    /// The oldest `after` both histories could serve completely.
    oldest_watchable: Revision,
}

/// Reads the changes to keys under `prefix` in revisions `after + 1 ..= through` from memory and
/// the log table. Every such revision is in one of them unless compaction took it, which the
/// later of the two history starts then shows.
fn read_page(shared: &Shared, prefix: &str, after: Revision, through: Revision) -> Result<Page, redb::Error> {
    let volatile = shared.memory().history(prefix, after, through);
    let durable = tables::history(&shared.db, prefix, after, through)?;
    Ok(Page {
        events: volatile::merge(durable.events, volatile.events, |a, b| a.revision() < b.revision()),
        covered: durable.covered + volatile.covered,
        unreadable: durable.unreadable,
        oldest_watchable: durable.counters.oldest_watchable().max(volatile.oldest_watchable),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EmbeddedStore, EventKind, KeyValue};

    fn change(key: &str, revision: Revision) -> WatchEvent {
        let kv = KeyValue { key: key.into(), value: Vec::new(), create_revision: revision, mod_revision: revision };
        WatchEvent { kind: EventKind::Put, kv, prev: None }
    }

    #[tokio::test]
    async fn live_changes_up_to_the_cursor_are_skipped_and_a_gap_goes_back_to_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("store.redb")).unwrap();
        let (_sender, live) = broadcast::channel(4);
        let mut watcher = Watcher::new(Arc::clone(&store.shared), live, "/p/", 5, 5);

        watcher.on_live(&change("/p/a", 4));
        watcher.on_live(&change("/p/a", 5));
        assert!(watcher.ready.is_empty(), "changes the history already covered are not repeated");

        watcher.on_live(&change("/p/a", 6));
        watcher.on_live(&change("/q/a", 7));
        let ready: Vec<Revision> = watcher.ready.iter().map(WatchEvent::revision).collect();
        assert_eq!(ready, [6], "the next change is delivered, one outside the prefix is not");
        assert_eq!(watcher.cursor, 7, "a change outside the prefix still moves the cursor");

        watcher.on_live(&change("/p/b", 9));
        assert_eq!((watcher.cursor, watcher.catch_up_to), (7, 9), "a gap is filled from the log first");
        assert_eq!(watcher.ready.len(), 1);
    }
}
