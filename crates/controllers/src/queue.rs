//! A deduplicating work queue of keys with delayed re-queueing: what a controller still has
//! to look at.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::sync::mpsc;

/// The sending side, cheap to clone.
#[derive(Clone)]
pub struct QueueHandle {
    tx: mpsc::UnboundedSender<String>,
}

/// The receiving side, owned by the controller loop.
pub struct Queue {
    rx: mpsc::UnboundedReceiver<String>,
}

/// A new queue.
pub fn queue() -> (QueueHandle, Queue) {
    let (tx, rx) = mpsc::unbounded_channel();
    (QueueHandle { tx }, Queue { rx })
}

impl QueueHandle {
    /// Asks for `key` to be reconciled.
    pub fn add(&self, key: impl Into<String>) {
        let _ = self.tx.send(key.into());
    }

    /// Asks for `key` to be reconciled after `delay`.
    pub fn add_after(&self, key: impl Into<String>, delay: Duration) {
        let (tx, key) = (self.tx.clone(), key.into());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(key);
        });
    }
}

impl Queue {
    /// Waits for at least one key, then returns every key queued so far, each once.
    pub async fn next_batch(&mut self) -> Option<BTreeSet<String>> {
        let first = self.rx.recv().await?;
        let mut batch = BTreeSet::from([first]);
        while let Ok(key) = self.rx.try_recv() {
            batch.insert(key);
        }
        Some(batch)
    }
}
