//! A cache of one resource type kept current by list + watch, with change notifications:
//! one writer (the watch task), many readers (controllers).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use api::ResourceType;
use apiserver::registry::Typed;
use apiserver::{ApiError, ListFilter, Registry};
use futures::StreamExt;
use store::Revision;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;

/// One change to the cache.
#[derive(Debug)]
pub struct Change<K> {
    /// `namespace/name` (or `name` for cluster-scoped objects).
    pub key: String,
    /// The object now; `None` when it was deleted.
    pub object: Option<Arc<K>>,
}

impl<K> Clone for Change<K> {
    fn clone(&self) -> Self {
        Change { key: self.key.clone(), object: self.object.clone() }
    }
}

struct Inner<K> {
    cache: RwLock<BTreeMap<String, Arc<K>>>,
    revision: watch::Sender<Revision>,
    synced: watch::Sender<bool>,
    changes: broadcast::Sender<Change<K>>,
}

/// The cache of one type.
pub struct Informer<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Informer { inner: self.inner.clone() }
    }
}

/// The cache key of an object: `namespace/name` or `name`.
pub fn key_of(meta: &api::ObjectMeta) -> String {
    match meta.namespace.as_deref() {
        Some(ns) => format!("{ns}/{}", meta.name.as_deref().unwrap_or("")),
        None => meta.name.clone().unwrap_or_default(),
    }
}

fn revision_of(meta: &api::ObjectMeta) -> Revision {
    meta.resource_version.as_deref().and_then(|r| r.parse().ok()).unwrap_or(0)
}

impl<K: Typed + Clone> Informer<K> {
    /// Starts listing and watching `K` in the background.
    pub fn start(registry: Registry, tasks: &mut JoinSet<()>) -> Informer<K> {
        let inner = Arc::new(Inner {
            cache: RwLock::new(BTreeMap::new()),
            revision: watch::channel(0).0,
            synced: watch::channel(false).0,
            changes: broadcast::channel(4096).0,
        });
        let informer = Informer { inner };
        let runner = informer.clone();
        tasks.spawn(async move {
            loop {
                if let Err(e) = runner.list_and_watch(&registry).await {
                    tracing::warn!(kind = ResourceType::of::<K>().kind, error = %e, "watch ended; listing again");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        informer
    }

    async fn list_and_watch(&self, registry: &Registry) -> Result<(), ApiError> {
        let rt = ResourceType::of::<K>();
        let (items, revision) = registry.list_as::<K>(None, &ListFilter::default()).await?;
        let fresh: BTreeMap<String, Arc<K>> = items.into_iter().map(|o| (key_of(o.metadata()), Arc::new(o))).collect();
        let changes: Vec<Change<K>> = {
            let mut cache = self.inner.cache.write().unwrap_or_else(|e| e.into_inner());
            let mut changes: Vec<Change<K>> = cache.keys().filter(|k| !fresh.contains_key(*k)).map(|k| Change { key: k.clone(), object: None }).collect();
            changes.extend(fresh.iter().map(|(k, o)| Change { key: k.clone(), object: Some(o.clone()) }));
            *cache = fresh;
            changes
        };
        self.inner.revision.send_replace(revision);
        self.inner.synced.send_replace(true);
        for change in changes {
            let _ = self.inner.changes.send(change);
        }
        let mut events = Box::pin(registry.watch(rt, None, ListFilter::default(), revision).await?);
        while let Some(event) = events.next().await {
            let event = event?;
            let object: K = K::deserialize(&*event.object).map_err(|e| ApiError::Internal(format!("stored object does not decode: {e}")))?;
            let key = key_of(object.metadata());
            let revision = revision_of(object.metadata());
            let change = {
                let mut cache = self.inner.cache.write().unwrap_or_else(|e| e.into_inner());
                if event.type_ == "DELETED" {
                    cache.remove(&key);
                    Change { key, object: None }
                } else {
                    let object = Arc::new(object);
                    cache.insert(key.clone(), object.clone());
                    Change { key, object: Some(object) }
                }
            };
            self.inner.revision.send_replace(revision);
            let _ = self.inner.changes.send(change);
        }
        Ok(())
    }

    /// Waits until the first list is in the cache.
    pub async fn wait_synced(&self) {
        let mut rx = self.inner.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Waits (at most 5 s) until the cache reflects every change up to `revision`, so a
    /// controller does not act twice on its own write.
    pub async fn wait_for(&self, revision: Revision) {
        let mut rx = self.inner.revision.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|r| *r >= revision)).await;
    }

    /// Changes from now on. A receiver that lags gets `Lagged` and must look at everything.
    pub fn subscribe(&self) -> broadcast::Receiver<Change<K>> {
        self.inner.changes.subscribe()
    }

    /// One object by key.
    pub fn get(&self, key: &str) -> Option<Arc<K>> {
        self.inner.cache.read().unwrap_or_else(|e| e.into_inner()).get(key).cloned()
    }

    /// Every object.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.inner.cache.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    /// Every object in a namespace.
    pub fn list_namespace(&self, ns: &str) -> Vec<Arc<K>> {
        let prefix = format!("{ns}/");
        self.inner
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// The revision of a freshly written object.
pub fn written_revision<K: Typed>(object: &K) -> Revision {
    revision_of(object.metadata())
}
