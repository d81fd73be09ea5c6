//! The image policies the node re-checks containers against, kept current by a watch per kind
//! (ClusterImagePolicy, ImagePolicy in every namespace) instead of two API lists before every
//! container start. Until both watches are established, or after one breaks, readers get `None`
//! and list from the API themselves.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use client::{Client, ClientError, Selectors};
use futures::StreamExt;
use trust::policy::Compiled;

const KINDS: [&str; 2] = ["ClusterImagePolicy", "ImagePolicy"];

/// Compiled image policies as of the last watch event.
#[derive(Default)]
pub struct PolicyCache {
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    /// Stored objects per kind, by namespace/name; `None` while that kind's watch is not live.
    objects: [Option<BTreeMap<String, serde_json::Value>>; 2],
    compiled: Arc<Vec<Compiled>>,
}

impl State {
    fn recompile(&mut self) {
        let items = self.objects.iter().flatten().flat_map(|m| m.values().cloned()).collect();
        self.compiled = Arc::new(trust::policy::compile_stored(items));
    }
}

fn key(object: &serde_json::Value) -> String {
    let meta = &object["metadata"];
    format!("{}/{}", meta["namespace"].as_str().unwrap_or(""), meta["name"].as_str().unwrap_or(""))
}

impl PolicyCache {
    /// Every policy (cluster-wide and of all namespaces; `Compiled::governs` picks), or `None`
    /// when the cache is not live.
    pub fn current(&self) -> Option<Arc<Vec<Compiled>>> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state.objects.iter().all(Option::is_some).then(|| state.compiled.clone())
    }

    fn replace(&self, kind: usize, objects: Option<BTreeMap<String, serde_json::Value>>) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.objects[kind] = objects;
        state.recompile();
    }

    fn apply(&self, kind: usize, event_type: &str, object: serde_json::Value) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let Some(objects) = state.objects[kind].as_mut() else { return };
        if event_type == "DELETED" {
            objects.remove(&key(&object));
        } else {
            objects.insert(key(&object), object);
        }
        state.recompile();
    }

    /// Lists and watches both kinds for as long as the agent runs, relisting after a break.
    pub async fn run(self: Arc<Self>, client: Client) {
        let mut tasks = tokio::task::JoinSet::new();
        for (kind, name) in KINDS.iter().enumerate() {
            let (cache, client) = (self.clone(), client.clone());
            tasks.spawn(async move {
                loop {
                    if let Err(e) = cache.list_and_watch(&client, kind).await {
                        tracing::debug!(kind = name, error = %e, "image policy watch ended; relisting");
                    }
                    cache.replace(kind, None);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }

    async fn list_and_watch(&self, client: &Client, kind: usize) -> Result<(), ClientError> {
        let Some(rt) = api::kinds::lookup_kind(api::imagepolicy::API_VERSION, KINDS[kind]) else {
            return Ok(());
        };
        let (items, revision) = client.list(rt, None, &Selectors::default()).await?;
        let mut events = client.watch(rt, None, &Selectors::default(), &revision).await?;
        tracing::debug!(kind = KINDS[kind], count = items.len(), "watching image policies");
        self.replace(kind, Some(items.into_iter().map(|o| (key(&o), o)).collect()));
        while let Some(event) = events.next().await {
            let event = event?;
            match event.type_.as_str() {
                "ADDED" | "MODIFIED" | "DELETED" => self.apply(kind, &event.type_, event.object),
                // The watch cannot go on (its revision was compacted, say): list again.
                "ERROR" => return Ok(()),
                _ => {}
            }
        }
        Ok(())
    }
}
