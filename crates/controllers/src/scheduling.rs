//! The scheduling controller: keeps a [`scheduler::Snapshot`] current from watch events (never
//! rebuilt per pod), decides for every pending pod, and writes the bindings concurrently.
//! A binding is a compare-and-swap on the pod's resourceVersion, so a decision about a pod that
//! changed meanwhile fails and is retried; the snapshot assumes each decision before it is
//! written, so two decisions in one pass never share the same room. Pods that fit nowhere get
//! the `PodScheduled=False` condition with the reason; preemption evicts the victims it chose
//! and nominates the node.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use api::pod::{condition, is_terminating};
use api::Pod;
use apiserver::{ApiError, DeleteOptions, Registry};
use futures::StreamExt;
use scheduler::{Decision, PodInfo, SchedulerConfig, Snapshot};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::events::Recorder;
use crate::informer::{written_revision, Change};
use crate::Caches;

/// How often pending pods are looked at again even when nothing changed.
const RETRY: Duration = Duration::from_secs(5);
/// Bindings written at once.
const PARALLEL_BINDS: usize = 64;

fn wants_scheduler(pod: &Pod) -> bool {
    api::pod::node_name(pod).is_none()
        && !is_terminating(pod)
        && !matches!(api::pod::phase(pod), "Succeeded" | "Failed")
        && pod.spec.as_ref().and_then(|s| s.scheduler_name.as_deref()).is_none_or(|s| s == "default-scheduler")
}

/// The controller's state: the snapshot and the pods waiting for a node.
struct Scheduling {
    snapshot: Snapshot,
    pending: BTreeMap<String, Arc<Pod>>,
}

impl Scheduling {
    fn rebuild(caches: &Caches, config: &SchedulerConfig) -> Scheduling {
        let mut s = Scheduling { snapshot: Snapshot::new(config.clone()), pending: BTreeMap::new() };
        for ns in caches.namespaces.list() {
            s.snapshot.upsert_namespace(ns.metadata.name.as_deref().unwrap_or(""), ns.metadata.labels.clone().unwrap_or_default());
        }
        for node in caches.nodes.list() {
            s.snapshot.upsert_node(&node);
        }
        for pod in caches.pods.list() {
            s.pod_changed(&crate::informer::key_of(&pod.metadata), Some(pod));
        }
        s
    }

    fn node_changed(&mut self, change: Change<api::Node>) {
        match change.object {
            Some(node) => self.snapshot.upsert_node(&node),
            None => self.snapshot.remove_node(&change.key),
        }
    }

    fn namespace_changed(&mut self, change: Change<api::Namespace>) {
        self.snapshot.upsert_namespace(&change.key, change.object.and_then(|n| n.metadata.labels.clone()).unwrap_or_default());
    }

    fn pod_changed(&mut self, key: &str, pod: Option<Arc<Pod>>) {
        match pod {
            None => {
                self.pending.remove(key);
                self.snapshot.remove_pod(key);
            }
            Some(pod) => {
                if let Err(e) = self.snapshot.upsert_pod(&pod) {
                    tracing::debug!(pod = key, error = %e, "unreadable constraints");
                }
                if wants_scheduler(&pod) {
                    self.pending.insert(key.to_string(), pod);
                } else {
                    self.pending.remove(key);
                }
            }
        }
    }
}

/// Runs the controller until its task is dropped.
pub async fn run(registry: Registry, caches: Caches, recorder: Recorder, config: SchedulerConfig) {
    let mut pods = caches.pods.subscribe();
    let mut nodes = caches.nodes.subscribe();
    let mut namespaces = caches.namespaces.subscribe();
    let mut state = Scheduling::rebuild(&caches, &config);
    loop {
        // Apply every change seen so far (nodes first, so pods find their nodes); a lagging
        // receiver means changes were lost: rebuild.
        let mut lost = false;
        let open = drain(&mut nodes, &mut lost, |c| state.node_changed(c))
            && drain(&mut pods, &mut lost, |c| state.pod_changed(&c.key, c.object))
            && drain(&mut namespaces, &mut lost, |c| state.namespace_changed(c));
        if !open {
            return;
        }
        if lost {
            state = Scheduling::rebuild(&caches, &config);
        }
        if let Err(e) = pass(&registry, &caches, &recorder, &mut state).await {
            tracing::debug!(error = %e, "scheduling pass failed");
        }
        let open = tokio::select! {
            r = pods.recv() => received(r, &mut lost, |c| state.pod_changed(&c.key, c.object)),
            r = nodes.recv() => received(r, &mut lost, |c| state.node_changed(c)),
            _ = tokio::time::sleep(RETRY) => true,
        };
        if !open {
            return;
        }
        if lost {
            state = Scheduling::rebuild(&caches, &config);
        }
    }
}

/// Applies every change waiting in `rx`; false once the channel is closed.
fn drain<K>(rx: &mut broadcast::Receiver<Change<K>>, lost: &mut bool, mut apply: impl FnMut(Change<K>)) -> bool {
    loop {
        match rx.try_recv() {
            Ok(change) => apply(change),
            Err(TryRecvError::Lagged(_)) => *lost = true,
            Err(TryRecvError::Empty) => return true,
            Err(TryRecvError::Closed) => return false,
        }
    }
}

/// Applies one received change; false once the channel is closed.
fn received<K>(r: Result<Change<K>, RecvError>, lost: &mut bool, apply: impl FnOnce(Change<K>)) -> bool {
    match r {
        Ok(change) => apply(change),
        Err(RecvError::Lagged(_)) => *lost = true,
        Err(RecvError::Closed) => return false,
    }
    true
}

/// The order pods are decided in: higher priority first, then older first.
fn queue_order(state: &Scheduling) -> Vec<Arc<Pod>> {
    let mut waiting: Vec<Arc<Pod>> = state.pending.values().cloned().collect();
    waiting
        .sort_by_cached_key(|p| (std::cmp::Reverse(p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)), p.metadata.creation_timestamp.clone().map(|t| t.0)));
    waiting
}

/// Decides for every pending pod once and writes the outcomes.
async fn pass(registry: &Registry, caches: &Caches, recorder: &Recorder, state: &mut Scheduling) -> Result<(), ApiError> {
    if state.pending.is_empty() {
        return Ok(());
    }
    let mut binds: Vec<(Arc<Pod>, PodInfo, String)> = Vec::new();
    let mut last_revision = 0;
    for pod in queue_order(state) {
        let info = match state.snapshot.pod_info(&pod) {
            Ok(info) => info,
            Err(e) => {
                last_revision = last_revision.max(mark_unschedulable(registry, recorder, &pod, &format!("invalid scheduling constraints: {e}")).await?);
                continue;
            }
        };
        match state.snapshot.schedule(&info) {
            Ok(Decision::Bind(node)) => {
                state.snapshot.assume(&info, &node);
                binds.push((pod, info, node));
            }
            Ok(Decision::Preempt { node, victims }) => {
                last_revision = last_revision.max(preempt(registry, recorder, caches, &pod, &node, &victims).await?);
            }
            Err(why) => {
                last_revision = last_revision.max(mark_unschedulable(registry, recorder, &pod, &why.to_string()).await?);
            }
        }
    }
    let results: Vec<_> = futures::stream::iter(binds.into_iter().map(|(pod, info, node)| async move { (registry.bind(&pod, &node).await, info, node) }))
        .buffer_unordered(PARALLEL_BINDS)
        .collect()
        .await;
    for (result, info, node) in results {
        match result {
            Ok(written) => {
                last_revision = last_revision.max(written_revision(&written));
                state.pending.remove(&info.key);
                let recorder = recorder.clone();
                let message = format!("Successfully assigned {} to {node}", info.key);
                tokio::spawn(async move { recorder.normal(&written, "Scheduled", &message).await });
            }
            // The pod changed or went away since the decision: forget it; the watch brings the
            // pod as it is now and the next pass decides again.
            Err(ApiError::Conflict { .. } | ApiError::NotFound { .. }) => state.snapshot.remove_pod(&info.key),
            Err(e) => {
                state.snapshot.remove_pod(&info.key);
                return Err(e);
            }
        }
    }
    if last_revision > 0 {
        caches.pods.wait_for(last_revision).await;
    }
    Ok(())
}

async fn mark_unschedulable(registry: &Registry, recorder: &Recorder, pod: &Pod, message: &str) -> Result<store::Revision, ApiError> {
    if condition(pod.status.as_ref(), "PodScheduled").is_some_and(|c| c.status == "False" && c.message.as_deref() == Some(message)) {
        return Ok(0);
    }
    let mut updated = pod.clone();
    api::pod::set_condition(updated.status.get_or_insert_with(Default::default), "PodScheduled", false, "Unschedulable", message);
    match registry.update_status_as(&updated).await {
        Ok(written) => {
            recorder.warning(&written, "FailedScheduling", message).await;
            Ok(written_revision(&written))
        }
        Err(ApiError::Conflict { .. } | ApiError::NotFound { .. }) => Ok(0),
        Err(e) => Err(e),
    }
}

/// Evicts the victims (graceful deletion) and nominates the node for the preemptor, whose
/// reservation keeps lower-priority pods out of the room being made.
async fn preempt(registry: &Registry, recorder: &Recorder, caches: &Caches, pod: &Pod, node: &str, victims: &[String]) -> Result<store::Revision, ApiError> {
    let name = crate::informer::key_of(&pod.metadata);
    for key in victims {
        let Some(victim) = caches.pods.get(key) else { continue };
        if is_terminating(&victim) {
            continue;
        }
        let opts = DeleteOptions { precondition_uid: victim.metadata.uid.clone(), ..Default::default() };
        match registry.delete_as::<Pod>(victim.metadata.namespace.as_deref(), victim.metadata.name.as_deref().unwrap_or(""), &opts).await {
            Ok(_) => recorder.normal(&*victim, "Preempted", &format!("Preempted by {name} on node {node}")).await,
            Err(ApiError::NotFound { .. } | ApiError::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    if pod.status.as_ref().and_then(|s| s.nominated_node_name.as_deref()) == Some(node) {
        return Ok(0);
    }
    let mut updated = pod.clone();
    updated.status.get_or_insert_with(Default::default).nominated_node_name = Some(node.to_string());
    match registry.update_status_as(&updated).await {
        Ok(written) => Ok(written_revision(&written)),
        Err(ApiError::Conflict { .. } | ApiError::NotFound { .. }) => Ok(0),
        Err(e) => Err(e),
    }
}
