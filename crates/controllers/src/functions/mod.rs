//! Functions: each Function gets a [`dispatcher::Dispatcher`] of its own, started when the
//! Function appears, told of every change to it, and stopped when it goes (its pods go with it,
//! by their owner reference).

mod config;
mod delivery;
mod dispatcher;
mod http1;
pub mod metrics;
mod replicas;
mod scaler;

use std::collections::HashMap;
use std::sync::Arc;

use api::function::Function;
use apiserver::Registry;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use metrics::FunctionMetrics;
pub use replicas::TEMPLATE_LABEL;

use crate::informer::key_of;
use crate::Caches;

struct Running {
    updates: watch::Sender<Arc<Function>>,
    task: JoinHandle<()>,
}

/// Runs the Functions' dispatchers until the task is dropped.
pub async fn run(registry: Registry, caches: Caches, metrics: Arc<FunctionMetrics>) {
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut changes = caches.functions.subscribe();
    loop {
        let functions: HashMap<String, Arc<Function>> = caches.functions.list().into_iter().map(|f| (key_of(&f.metadata), f)).collect();
        running.retain(|key, r| {
            let keep = functions.contains_key(key) && !r.task.is_finished();
            if !keep {
                r.task.abort();
                metrics.remove(key);
            }
            keep
        });
        for (key, function) in functions {
            match running.get(&key) {
                Some(r) => {
                    if !Arc::ptr_eq(&r.updates.borrow(), &function) {
                        r.updates.send_replace(function);
                    }
                }
                None => {
                    let (updates, rx) = watch::channel(function.clone());
                    let dispatcher = dispatcher::Dispatcher::new(key.clone(), function, registry.clone(), caches.clone(), metrics.clone());
                    running.insert(key, Running { updates, task: tokio::spawn(dispatcher.run(rx)) });
                }
            }
        }
        match changes.recv().await {
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
    }
}
