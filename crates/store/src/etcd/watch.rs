//! Watch streams of the etcd store: one etcd watch per stream, with previous values, its events
//! turned into ours and its compaction and cancellation into errors that end the stream.

use std::collections::VecDeque;
use std::time::Duration;

use etcd_client::{Client, EventType, WatchOptions, WatchResponse};

use super::{convert_key_value, EtcdError};
use crate::{EventKind, KeyValue, Revision, StoreError, WatchEvent, WatchStream};

/// How long to wait for etcd to say which revision a compacted watch needed.
const COMPACTION_PROBE: Duration = Duration::from_secs(5);

/// One etcd watch and what it has delivered.
pub(crate) struct EtcdWatcher {
    stream: etcd_client::WatchStream,
    endpoints: String,
    namespace: String,
    prefix: String,
    /// The revision of the last change delivered (or the `after` the watch started from).
    last: Revision,
    ready: VecDeque<WatchEvent>,
    finished: bool,
}

impl EtcdWatcher {
    /// Starts watching keys under `namespace` + `prefix` after revision `after`, and waits for
    /// etcd to confirm the watch.
    pub async fn start(client: &Client, endpoints: &str, namespace: &str, prefix: &str, after: Revision) -> Result<Self, StoreError> {
        let action = format!("watch {prefix} after revision {after}");
        let request_error = |source| EtcdError::Request { endpoints: endpoints.to_owned(), action: action.clone(), source };
        let options = WatchOptions::new().with_prefix().with_start_revision(after + 1).with_prev_key();
        let full = format!("{namespace}{prefix}");
        let mut stream = client.watch_client().watch(full, Some(options)).await.map_err(request_error)?;
        let created = stream.message().await.map_err(request_error)?;
        let problem = match created {
            Some(response) if response.created() && !response.canceled() => None,
            Some(response) => Some(format!("etcd refused the watch: {}", response.cancel_reason())),
            None => Some("etcd closed the watch before confirming it".to_owned()),
        };
        if let Some(problem) = problem {
            return Err(EtcdError::Unexpected { endpoints: endpoints.to_owned(), action, problem }.into());
        }
        Ok(Self {
            stream,
            endpoints: endpoints.to_owned(),
            namespace: namespace.to_owned(),
            prefix: prefix.to_owned(),
            last: after,
            ready: VecDeque::new(),
            finished: false,
        })
    }

    /// The compaction revision etcd reports to a watch of `key` starting after `after`, if it
    /// reports one in time.
    pub async fn probe_compaction(client: &Client, key: &[u8], after: Revision) -> Option<Revision> {
        let options = WatchOptions::new().with_prefix().with_start_revision(after + 1);
        let probe = async {
            let mut stream = client.watch_client().watch(key.to_vec(), Some(options)).await.ok()?;
            while let Some(response) = stream.message().await.ok()? {
                if response.compact_revision() > 0 {
                    return Some(response.compact_revision());
                }
                if response.canceled() {
                    return None;
                }
            }
            None
        };
        tokio::time::timeout(COMPACTION_PROBE, probe).await.ok().flatten()
    }

    /// The watcher as a stream.
    pub fn into_stream(self) -> WatchStream {
        Box::pin(futures::stream::unfold(self, |mut watcher| async move {
            let item = watcher.next().await?;
            Some((item, watcher))
        }))
    }

    async fn next(&mut self) -> Option<Result<WatchEvent, StoreError>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(Ok(event));
            }
            if self.finished {
                return None;
            }
            let outcome = match self.stream.message().await {
                Ok(Some(response)) => self.on_response(&response),
                Ok(None) => Err(self.ended("etcd closed the watch".to_owned())),
                Err(source) => {
                    Err(EtcdError::Request { endpoints: self.endpoints.clone(), action: format!("watch {} after revision {}", self.prefix, self.last), source }
                        .into())
                }
            };
            if let Err(error) = outcome {
                self.finished = true;
                return Some(Err(error));
            }
        }
    }

    fn on_response(&mut self, response: &WatchResponse) -> Result<(), StoreError> {
        if response.compact_revision() > 0 {
            return Err(StoreError::Compacted { requested: self.last, oldest: response.compact_revision() - 1 });
        }
        if response.canceled() {
            return Err(self.ended(format!("etcd cancelled the watch: {}", response.cancel_reason())));
        }
        for event in response.events() {
            let converted = self.convert(event).map_err(|problem| self.ended(problem))?;
            self.last = converted.revision();
            self.ready.push_back(converted);
        }
        Ok(())
    }

    fn convert(&self, event: &etcd_client::Event) -> Result<WatchEvent, String> {
        let kv = event.kv().ok_or("a watch event without its key")?;
        let kv = convert_key_value(&self.namespace, kv)?;
        let prev = event.prev_kv().map(|prev| convert_key_value(&self.namespace, prev)).transpose()?;
        Ok(match event.event_type() {
            EventType::Put => WatchEvent { kind: EventKind::Put, kv, prev },
            EventType::Delete => {
                // etcd sends a delete with only the key and the delete's revision; the last
                // value comes from the previous key-value (absent if that was compacted).
                let last = prev.clone().unwrap_or(KeyValue { value: Vec::new(), create_revision: 0, ..kv.clone() });
                WatchEvent { kind: EventKind::Delete, kv: KeyValue { mod_revision: kv.mod_revision, ..last }, prev }
            }
        })
    }

    fn ended(&self, problem: String) -> StoreError {
        EtcdError::Unexpected { endpoints: self.endpoints.clone(), action: format!("watch {} after revision {}", self.prefix, self.last), problem }.into()
    }
}
