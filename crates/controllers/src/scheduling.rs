//! The scheduling controller: binds pending pods to nodes chosen by [`scheduler::schedule`],
//! and marks the ones that fit nowhere as Unschedulable with the reason.

use std::time::Duration;

use api::pod::{condition, is_terminating, node_name};
use api::Pod;
use apiserver::{ApiError, Registry};
use scheduler::{schedule, Snapshot};
use tokio::sync::broadcast::error::RecvError;

use crate::events::Recorder;
use crate::informer::written_revision;
use crate::Caches;

/// How often pending pods are looked at again even when nothing changed.
const RETRY: Duration = Duration::from_secs(5);

/// Runs the controller until its task is dropped.
pub async fn run(registry: Registry, caches: Caches, recorder: Recorder) {
    let mut pods = caches.pods.subscribe();
    let mut nodes = caches.nodes.subscribe();
    loop {
        if let Err(e) = pass(&registry, &caches, &recorder).await {
            tracing::debug!(error = %e, "scheduling pass failed");
        }
        tokio::select! {
            r = pods.recv() => if matches!(r, Err(RecvError::Closed)) { return },
            r = nodes.recv() => if matches!(r, Err(RecvError::Closed)) { return },
            _ = tokio::time::sleep(RETRY) => {}
        }
        // Coalesce a burst of changes into one pass.
        while pods.try_recv().is_ok() || nodes.try_recv().is_ok() {}
    }
}

fn pending(pod: &Pod) -> bool {
    node_name(pod).is_none() && !is_terminating(pod) && pod.spec.as_ref().and_then(|s| s.scheduler_name.as_deref()).is_none_or(|s| s == "default-scheduler")
}

/// Schedules every pending pod once, oldest first.
pub async fn pass(registry: &Registry, caches: &Caches, recorder: &Recorder) -> Result<(), ApiError> {
    let mut waiting: Vec<_> = caches.pods.list().into_iter().filter(|p| pending(p)).collect();
    if waiting.is_empty() {
        return Ok(());
    }
    waiting.sort_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
    let nodes = caches.nodes.list();
    let all_pods = caches.pods.list();
    let mut snapshot = Snapshot::build(nodes.iter().map(|n| n.as_ref()), all_pods.iter().map(|p| p.as_ref()));
    let mut last_revision = 0;
    for pod in waiting {
        match schedule(&pod, &snapshot) {
            Ok(node) => {
                let mut bound = (*pod).clone();
                if let Some(spec) = bound.spec.as_mut() {
                    spec.node_name = Some(node.clone());
                }
                match registry.update_as(&bound).await {
                    Ok(written) => {
                        last_revision = last_revision.max(written_revision(&written));
                        snapshot.assume(&node, api::pod::requests(bound.spec.as_ref().unwrap_or(&Default::default())));
                        let name = pod.metadata.name.as_deref().unwrap_or("");
                        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
                        recorder.normal(&written, "Scheduled", &format!("Successfully assigned {ns}/{name} to {node}")).await;
                    }
                    Err(ApiError::Conflict { .. } | ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Err(why) => {
                let message = why.to_string();
                let current = condition(pod.status.as_ref(), "PodScheduled");
                if current.is_some_and(|c| c.message.as_deref() == Some(message.as_str())) {
                    continue;
                }
                let mut updated = (*pod).clone();
                api::pod::set_condition(updated.status.get_or_insert_with(Default::default), "PodScheduled", false, "Unschedulable", &message);
                match registry.update_status_as(&updated).await {
                    Ok(written) => {
                        last_revision = last_revision.max(written_revision(&written));
                        recorder.warning(&written, "FailedScheduling", &message).await;
                    }
                    Err(ApiError::Conflict { .. } | ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    if last_revision > 0 {
        caches.pods.wait_for(last_revision).await;
    }
    Ok(())
}
