//! The pods bound to this node: a watch on the API feeding one worker per pod, and the
//! clean-up of anything on the node that belongs to no pod.

mod admission;
mod container;
pub mod env;
pub mod resources;
mod state;
mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use api::Pod;
use client::{ClientError, Selectors};
use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use worker::cleanup_pod;

use crate::config::pod_uid_of;
use crate::AgentContext;

struct PodWorker {
    pods: watch::Sender<Option<Arc<Pod>>>,
    task: JoinHandle<()>,
}

/// Runs the pod manager until its task is dropped.
pub async fn run(ctx: Arc<AgentContext>) {
    let mut workers: HashMap<String, PodWorker> = HashMap::new();
    let mut first = true;
    loop {
        if let Err(e) = list_and_watch(&ctx, &mut workers, &mut first).await {
            tracing::warn!(error = %e, "pod watch ended; listing again");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn dispatch(ctx: &Arc<AgentContext>, workers: &mut HashMap<String, PodWorker>, uid: &str, pod: Option<Arc<Pod>>) {
    workers.retain(|_, w| !w.task.is_finished());
    if let Some(worker) = workers.get(uid) {
        worker.pods.send_replace(pod);
        return;
    }
    if pod.is_none() {
        return;
    }
    let (tx, rx) = watch::channel(pod);
    let task = tokio::spawn(worker::run(ctx.clone(), uid.to_string(), rx));
    workers.insert(uid.to_string(), PodWorker { pods: tx, task });
}

async fn list_and_watch(ctx: &Arc<AgentContext>, workers: &mut HashMap<String, PodWorker>, first: &mut bool) -> Result<(), ClientError> {
    let selectors = Selectors { fields: Some(format!("spec.nodeName={}", ctx.config.node_name)), labels: None };
    let (pods, revision) = ctx.client.list_as::<Pod>(None, &selectors).await?;
    let live: HashSet<String> = pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
    if *first {
        remove_orphans(ctx, &live).await;
        *first = false;
    }
    let gone: Vec<String> = workers.keys().filter(|uid| !live.contains(*uid)).cloned().collect();
    for uid in gone {
        dispatch(ctx, workers, &uid, None);
    }
    for pod in pods {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        dispatch(ctx, workers, &uid, Some(Arc::new(pod)));
    }
    let mut events = ctx.client.watch(api::ResourceType::of::<Pod>(), None, &selectors, &revision).await?;
    while let Some(event) = events.next().await {
        let event = event?;
        let pod: Pod = client::decode(event.object)?;
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if event.type_ == "DELETED" {
            dispatch(ctx, workers, &uid, None);
        } else {
            dispatch(ctx, workers, &uid, Some(Arc::new(pod)));
        }
    }
    Ok(())
}

/// Removes containers, network and device allocations, mounts and files of pods that no
/// longer exist (deleted while the agent was down).
async fn remove_orphans(ctx: &AgentContext, live: &HashSet<String>) {
    let mut orphans: HashSet<String> = HashSet::new();
    if let Ok(containers) = ctx.runtime.list().await {
        orphans.extend(containers.iter().filter_map(|c| pod_uid_of(&c.id)).filter(|u| !live.contains(*u)).map(str::to_string));
    }
    if let Ok(allocations) = ctx.network.allocations() {
        orphans.extend(allocations.into_iter().map(|(_, uid)| uid).filter(|u| !live.contains(u)));
    }
    match ctx.devices.retain_pods(live) {
        Ok(freed) => orphans.extend(freed),
        Err(e) => tracing::warn!(error = %e, "recording the devices freed from deleted pods"),
    }
    for dir in [ctx.config.containers_dir(), ctx.config.pods_dir()] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                let uid = pod_uid_of(&name).map(str::to_string).unwrap_or(name);
                if !live.contains(&uid) {
                    orphans.insert(uid);
                }
            }
        }
    }
    for uid in orphans {
        tracing::info!(pod = %uid, "removing what is left of a deleted pod");
        cleanup_pod(ctx, &uid, None).await;
    }
}
