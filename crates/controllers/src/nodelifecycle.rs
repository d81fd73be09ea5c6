//! Node lifecycle: a node whose heartbeat Lease is older than the grace period becomes
//! `Ready=Unknown` and gets the `node.kubernetes.io/unreachable` taints (NoSchedule keeps new
//! pods away, NoExecute evicts running ones); when heartbeats resume the taints go and the node
//! is Ready again. Taint eviction deletes the pods on NoExecute-tainted nodes that do not
//! tolerate the taint, at once or after their `tolerationSeconds` counted from the taint's
//! `timeAdded`; their Deployments then create replacements on other nodes.

use std::time::Duration;

use api::jiff::Timestamp;
use api::k8s_openapi::api::core::v1::{NodeCondition, Taint};
use api::pod::is_terminating;
use api::{Lease, Node, Pod, Time};
use apiserver::{ApiError, DeleteOptions, Registry};

use crate::events::Recorder;
use crate::Caches;

/// The taint of a node whose agent stopped heartbeating.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// Settings of the node lifecycle controller.
#[derive(Clone, Debug)]
pub struct LifecycleConfig {
    /// How long a node may miss heartbeats before it is NotReady and tainted.
    pub grace: Duration,
    /// How often nodes are looked at when nothing changes.
    pub tick: Duration,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig { grace: Duration::from_secs(10), tick: Duration::from_millis(500) }
    }
}

/// Runs the controller until its task is dropped: a pass every tick. Heartbeats are not acted
/// on as they arrive: a fleet renews hundreds of Leases a second, and a node's reachability
/// only changes on the tick's time scale.
pub async fn run(registry: Registry, caches: Caches, recorder: Recorder, config: LifecycleConfig) {
    let started = Timestamp::now();
    loop {
        if let Err(e) = pass(&registry, &caches, &recorder, &config, started, Timestamp::now()).await {
            tracing::debug!(error = %e, "node lifecycle pass failed");
        }
        tokio::time::sleep(config.tick).await;
    }
}

fn lease_of(caches: &Caches, node: &str) -> Option<std::sync::Arc<Lease>> {
    caches.leases.get(&format!("kube-node-lease/{node}"))
}

/// The moment a node's heartbeats count from: its Lease's last renewal, or, before the first
/// one, the node's creation; never before this controller started watching (after a control
/// plane restart every node gets a full grace period to renew, so nothing is evicted because
/// the controller itself was away).
fn last_heartbeat(node: &Node, lease: Option<&Lease>, started: Timestamp) -> Timestamp {
    let seen = lease.and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0)).or_else(|| node.metadata.creation_timestamp.as_ref().map(|t| t.0));
    seen.map_or(started, |t| t.max(started))
}

fn ready_status(node: &Node) -> Option<&str> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready").map(|c| c.status.as_str())
}

fn has_unreachable(node: &Node) -> bool {
    node.spec.as_ref().and_then(|s| s.taints.as_ref()).is_some_and(|t| t.iter().any(|t| t.key == UNREACHABLE))
}

/// One pass over every node and the pods on tainted ones, as of `now`, for a controller that
/// started watching at `started`.
pub async fn pass(
    registry: &Registry,
    caches: &Caches,
    recorder: &Recorder,
    config: &LifecycleConfig,
    started: Timestamp,
    now: Timestamp,
) -> Result<(), ApiError> {
    let grace = api::jiff::SignedDuration::try_from(config.grace).unwrap_or(api::jiff::SignedDuration::from_secs(10));
    for node in caches.nodes.list() {
        let name = node.metadata.name.clone().unwrap_or_default();
        let beat = last_heartbeat(&node, lease_of(caches, &name).as_deref(), started);
        let expired_at = beat + grace;
        let lost = now >= expired_at;
        if lost && (!has_unreachable(&node) || ready_status(&node) == Some("True")) {
            set_reachability(registry, recorder, &node, Some(Time(expired_at))).await?;
        } else if !lost && has_unreachable(&node) {
            set_reachability(registry, recorder, &node, None).await?;
        }
    }
    evict(registry, caches, recorder, now).await
}

/// Adds the unreachable taints (from `since`) and sets Ready=Unknown, or with `since` = `None`
/// removes them and sets Ready=True: the spec write first, then the status on what it wrote.
async fn set_reachability(registry: &Registry, recorder: &Recorder, node: &Node, since: Option<Time>) -> Result<(), ApiError> {
    let mut updated = node.clone();
    let taints = updated.spec.get_or_insert_with(Default::default).taints.get_or_insert_with(Vec::new);
    match &since {
        Some(since) => {
            for effect in ["NoSchedule", "NoExecute"] {
                if !taints.iter().any(|t| t.key == UNREACHABLE && t.effect == effect) {
                    taints.push(Taint { key: UNREACHABLE.into(), effect: effect.into(), time_added: Some(since.clone()), value: None });
                }
            }
        }
        None => taints.retain(|t| t.key != UNREACHABLE),
    }
    let mut written = match registry.update_as(&updated).await {
        Ok(w) => w,
        Err(ApiError::Conflict { .. } | ApiError::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e),
    };
    let (status, reason, message, warning, event, note) = match since {
        Some(_) => (
            "Unknown",
            "NodeStatusUnknown",
            "the flotilla agent stopped posting heartbeats",
            true,
            "NodeNotReady",
            "Node is not ready: no heartbeat within the grace period",
        ),
        None => ("True", "KubeletReady", "heartbeats resumed", false, "NodeReady", "Node is ready: heartbeats resumed"),
    };
    set_ready(&mut written, status, reason, message);
    match registry.update_status_as(&written).await {
        Ok(w) if warning => recorder.warning(&w, event, note).await,
        Ok(w) => recorder.normal(&w, event, note).await,
        Err(ApiError::Conflict { .. } | ApiError::NotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    Ok(())
}

fn set_ready(node: &mut Node, status: &str, reason: &str, message: &str) {
    let conditions = node.status.get_or_insert_with(Default::default).conditions.get_or_insert_with(Vec::new);
    let now = api::now();
    match conditions.iter_mut().find(|c| c.type_ == "Ready") {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = Some(now.clone());
            }
            c.status = status.into();
            c.reason = Some(reason.into());
            c.message = Some(message.into());
            c.last_heartbeat_time = Some(now);
        }
        None => conditions.push(NodeCondition {
            type_: "Ready".into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: Some(now),
        }),
    }
}

/// When a pod must leave a node with these NoExecute taints: `Some(now-or-earlier)` for at
/// once, `Some(later)` after a toleration runs out, `None` when it tolerates them for ever.
pub fn eviction_time(pod: &Pod, taints: &[Taint], now: Timestamp) -> Option<Timestamp> {
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
    let mut when: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<_> = tolerations.iter().filter(|t| scheduler::podinfo::tolerates(t, taint)).collect();
        let deadline = if matching.is_empty() {
            Some(now)
        } else if matching.iter().any(|t| t.toleration_seconds.is_none()) {
            None
        } else {
            let seconds = matching.iter().filter_map(|t| t.toleration_seconds).min().unwrap_or(0).max(0);
            let added = taint.time_added.as_ref().map(|t| t.0).unwrap_or(now);
            Some(added + api::jiff::SignedDuration::from_secs(seconds))
        };
        if let Some(d) = deadline {
            when = Some(when.map_or(d, |w| w.min(d)));
        }
    }
    when
}

async fn evict(registry: &Registry, caches: &Caches, recorder: &Recorder, now: Timestamp) -> Result<(), ApiError> {
    let tainted: Vec<(String, Vec<Taint>)> = caches
        .nodes
        .list()
        .iter()
        .filter_map(|n| {
            let taints: Vec<Taint> = n.spec.as_ref()?.taints.as_ref()?.iter().filter(|t| t.effect == "NoExecute").cloned().collect();
            (!taints.is_empty()).then(|| (n.metadata.name.clone().unwrap_or_default(), taints))
        })
        .collect();
    if tainted.is_empty() {
        return Ok(());
    }
    for pod in caches.pods.list() {
        let Some(node) = api::pod::node_name(&pod) else { continue };
        let Some((_, taints)) = tainted.iter().find(|(n, _)| n == node) else { continue };
        if is_terminating(&pod) || matches!(api::pod::phase(&pod), "Succeeded" | "Failed") {
            continue;
        }
        if eviction_time(&pod, taints, now).is_none_or(|t| t > now) {
            continue;
        }
        let opts = DeleteOptions { precondition_uid: pod.metadata.uid.clone(), ..Default::default() };
        match registry.delete_as::<Pod>(pod.metadata.namespace.as_deref(), pod.metadata.name.as_deref().unwrap_or(""), &opts).await {
            Ok(_) => {
                recorder
                    .normal(
                        &*pod,
                        "TaintManagerEviction",
                        &format!("Marking for deletion Pod {}/{}", pod.metadata.namespace.as_deref().unwrap_or(""), pod.metadata.name.as_deref().unwrap_or("")),
                    )
                    .await
            }
            Err(ApiError::NotFound { .. } | ApiError::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
