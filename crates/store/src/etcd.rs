//! The multi-server store: etcd v3 through `etcd-client`, under a key prefix so that several
//! clusters can share one etcd.

mod watch;

use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, Txn, TxnOp, TxnOpResponse, TxnResponse};

use self::watch::EtcdWatcher;
use crate::{KeyValue, Revision, Store, StoreError, WatchStream};

/// Keys fetched per range request when listing.
const LIST_PAGE: i64 = 500;

/// Failures talking to etcd, each naming the endpoints and what was being done.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EtcdError {
    /// A request failed (transport, server error, timeout).
    #[error("etcd {endpoints}: cannot {action}: {source}")]
    Request { endpoints: String, action: String, source: etcd_client::Error },
    /// etcd answered something this client cannot interpret.
    #[error("etcd {endpoints}: {action}: {problem}")]
    Unexpected { endpoints: String, action: String, problem: String },
}

impl From<EtcdError> for StoreError {
    fn from(error: EtcdError) -> Self {
        StoreError::Backend(error.to_string())
    }
}

/// The etcd [`Store`]. Every key `k` is stored in etcd as `{prefix}{k}`, and revisions are
/// etcd's own: they count writes of every cluster sharing the etcd, so they grow by one per
/// write only where nobody else writes.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    prefix: String,
    endpoints: String,
}

impl EtcdStore {
    /// Connects to the etcd cluster at `endpoints` (e.g. `http://10.0.0.1:2379`) and checks that
    /// it answers. Every key is stored under `prefix` (e.g. `/flotilla`): clusters sharing an
    /// etcd need prefixes of which none starts with another (not `/a` and `/ab`).
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<EtcdStore, StoreError> {
        let joined = endpoints.join(",");
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(30))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let client = Client::connect(endpoints, Some(options)).await.map_err(|source| EtcdError::Request {
            endpoints: joined.clone(),
            action: "connect".into(),
            source,
        })?;
        let store = EtcdStore { client, prefix: prefix.to_owned(), endpoints: joined };
        store.revision().await?;
        Ok(store)
    }

    /// The prefix every key is stored under.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn full_key(&self, key: &str) -> Vec<u8> {
        format!("{}{key}", self.prefix).into_bytes()
    }

    /// A key to aim requests at that only want the response header; etcd refuses an empty one.
    fn probe_key(&self, key: &str) -> Vec<u8> {
        let full = self.full_key(key);
        if full.is_empty() {
            vec![0]
        } else {
            full
        }
    }

    fn request_error(&self, action: impl Into<String>) -> impl FnOnce(etcd_client::Error) -> StoreError + '_ {
        let action = action.into();
        move |source| EtcdError::Request { endpoints: self.endpoints.clone(), action, source }.into()
    }

    fn unexpected(&self, action: impl Into<String>, problem: impl Into<String>) -> StoreError {
        EtcdError::Unexpected { endpoints: self.endpoints.clone(), action: action.into(), problem: problem.into() }.into()
    }

    /// Our key-value for an etcd one, stripping the prefix.
    fn key_value(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
        convert_key_value(&self.prefix, kv).map_err(|problem| self.unexpected("read a key", problem))
    }

    /// Runs `txn` and returns the revision it wrote at, or the key's current state from the
    /// `else` branch's get when the comparison failed.
    async fn txn(&self, action: &str, txn: Txn) -> Result<Result<TxnResponse, Option<KeyValue>>, StoreError> {
        let response = self.client.kv_client().txn(txn).await.map_err(self.request_error(action))?;
        if response.succeeded() {
            return Ok(Ok(response));
        }
        let current = match response.op_responses().first() {
            Some(TxnOpResponse::Get(get)) => get.kvs().first().map(|kv| self.key_value(kv)).transpose()?,
            _ => return Err(self.unexpected(action, "failed transaction without the key's state")),
        };
        Ok(Err(current))
    }

    fn header_revision(&self, action: &str, header: Option<&etcd_client::ResponseHeader>) -> Result<Revision, StoreError> {
        header.map(|h| h.revision()).ok_or_else(|| self.unexpected(action, "response without a header"))
    }

    /// The compaction revision etcd reports to a watch starting at `after + 1`, if it does.
    async fn compaction_revision(&self, after: Revision) -> Option<Revision> {
        EtcdWatcher::probe_compaction(&self.client, &self.full_key(""), after).await
    }
}

/// Converts an etcd key-value whose key starts with `prefix`.
pub(crate) fn convert_key_value(prefix: &str, kv: &etcd_client::KeyValue) -> Result<KeyValue, String> {
    let full = std::str::from_utf8(kv.key()).map_err(|_| format!("key {:?} is not UTF-8", String::from_utf8_lossy(kv.key())))?;
    let key = full.strip_prefix(prefix).ok_or_else(|| format!("key {full} lies outside prefix {prefix}"))?;
    Ok(KeyValue { key: key.to_owned(), value: kv.value().to_vec(), create_revision: kv.create_revision(), mod_revision: kv.mod_revision() })
}

/// The first key after every key starting with `prefix`; `[0]` (the end of the keyspace) when
/// there is none.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    match prefix.iter().rposition(|&byte| byte < 0xff) {
        Some(last) => {
            let mut end = prefix[..=last].to_vec();
            end[last] += 1;
            end
        }
        None => vec![0],
    }
}

fn is_compacted(error: &etcd_client::Error) -> bool {
    matches!(error, etcd_client::Error::GRpcStatus(status) if status.message().contains("compacted"))
}

fn is_future_revision(error: &etcd_client::Error) -> bool {
    matches!(error, etcd_client::Error::GRpcStatus(status) if status.message().contains("future revision"))
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let response = self.client.kv_client().get(self.full_key(key), None).await.map_err(self.request_error(format!("get {key}")))?;
        response.kvs().first().map(|kv| self.key_value(kv)).transpose()
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        let action = format!("list {prefix}");
        let start = self.full_key(prefix);
        let end = prefix_end(&start);
        let mut from = if start.is_empty() { vec![0] } else { start };
        let mut revision = 0;
        let mut found = Vec::new();
        loop {
            let options = GetOptions::new().with_range(end.clone()).with_limit(LIST_PAGE).with_revision(revision);
            let response = self.client.kv_client().get(from.clone(), Some(options)).await.map_err(self.request_error(action.as_str()))?;
            if revision == 0 {
                revision = self.header_revision(&action, response.header())?;
            }
            for kv in response.kvs() {
                found.push(self.key_value(kv)?);
            }
            match response.kvs().last() {
                Some(last) if response.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok((found, revision)),
            }
        }
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
        let full = self.full_key(key);
        let txn = Txn::new()
            .when([Compare::create_revision(full.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(full.clone(), value, None)])
            .or_else([TxnOp::get(full, None)]);
        let action = format!("create {key}");
        match self.txn(&action, txn).await? {
            Ok(response) => self.header_revision(&action, response.header()),
            Err(_) => Err(StoreError::AlreadyExists { key: key.to_owned() }),
        }
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision, StoreError> {
        let full = self.full_key(key);
        // A missing key compares as mod revision 0: the version check keeps it missing.
        let txn = Txn::new()
            .when([Compare::version(full.clone(), CompareOp::Greater, 0), Compare::mod_revision(full.clone(), CompareOp::Equal, expected)])
            .and_then([TxnOp::put(full.clone(), value, None)])
            .or_else([TxnOp::get(full, None)]);
        let action = format!("update {key}");
        match self.txn(&action, txn).await? {
            Ok(response) => self.header_revision(&action, response.header()),
            Err(None) => Err(StoreError::NotFound { key: key.to_owned() }),
            Err(Some(actual)) => Err(StoreError::Conflict { key: key.to_owned(), expected, actual: actual.mod_revision }),
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue), StoreError> {
        let full = self.full_key(key);
        let mut compares = vec![Compare::version(full.clone(), CompareOp::Greater, 0)];
        if let Some(expected) = expected {
            compares.push(Compare::mod_revision(full.clone(), CompareOp::Equal, expected));
        }
        let txn =
            Txn::new().when(compares).and_then([TxnOp::delete(full.clone(), Some(DeleteOptions::new().with_prev_key()))]).or_else([TxnOp::get(full, None)]);
        let action = format!("delete {key}");
        let response = match self.txn(&action, txn).await? {
            Ok(response) => response,
            Err(None) => return Err(StoreError::NotFound { key: key.to_owned() }),
            Err(Some(actual)) => {
                let expected = expected.unwrap_or_default();
                return Err(StoreError::Conflict { key: key.to_owned(), expected, actual: actual.mod_revision });
            }
        };
        let revision = self.header_revision(&action, response.header())?;
        let removed = match response.op_responses().first() {
            Some(TxnOpResponse::Delete(delete)) => delete.prev_kvs().first().map(|kv| self.key_value(kv)).transpose()?,
            _ => None,
        };
        let removed = removed.ok_or_else(|| self.unexpected(&action, "delete without the removed value"))?;
        Ok((revision, removed))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        let current = self.revision().await?;
        if after > current {
            return Err(StoreError::FutureRevision { requested: after, current });
        }
        if after < 0 {
            return Err(StoreError::Compacted { requested: after, oldest: 0 });
        }
        if after < current {
            // A range read at the first revision the watch needs fails if it is compacted.
            let options = GetOptions::new().with_count_only().with_revision(after + 1);
            let probe = self.client.kv_client().get(self.probe_key(prefix), Some(options)).await;
            match probe {
                Err(error) if is_compacted(&error) => {
                    let oldest = self.compaction_revision(after).await.map_or(after + 1, |c| c - 1);
                    return Err(StoreError::Compacted { requested: after, oldest });
                }
                Err(error) => return Err(self.request_error(format!("watch {prefix}"))(error)),
                Ok(_) => {}
            }
        }
        let watcher = EtcdWatcher::start(&self.client, &self.endpoints, &self.prefix, prefix, after).await?;
        Ok(watcher.into_stream())
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        let options = GetOptions::new().with_count_only();
        let response = self.client.kv_client().get(self.probe_key(""), Some(options)).await.map_err(self.request_error("read the revision"))?;
        self.header_revision("read the revision", response.header())
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let options = CompactionOptions::new().with_physical();
        match self.client.kv_client().compact(revision, Some(options)).await {
            Ok(_) => Ok(()),
            Err(error) if is_compacted(&error) => Ok(()),
            Err(error) if is_future_revision(&error) => Err(StoreError::FutureRevision { requested: revision, current: self.revision().await? }),
            Err(error) => Err(self.request_error(format!("compact to revision {revision}"))(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte_below_ff() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b"/a\xff"), b"/b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }
}
