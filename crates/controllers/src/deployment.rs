//! The Deployment controller: keeps `replicas` pods of the current template, replacing old
//! ones by the rolling-update rules (maxSurge, maxUnavailable) or all at once (Recreate), and
//! reports progress in the Deployment's status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use api::k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus};
use api::pod::{is_ready, is_terminating, template_hash};
use api::{defaults, Deployment, ObjectMeta, OwnerReference, Pod};
use apiserver::{DeleteOptions, Registry};
use tokio::sync::broadcast::error::RecvError;

use crate::events::Recorder;
use crate::informer::{key_of, written_revision};
use crate::queue::queue;
use crate::Caches;

/// The label that tells a deployment's pods of one template from another's.
pub const TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// The controlling owner reference of a pod, if it is a Deployment's.
pub fn owning_deployment(pod: &Pod) -> Option<&OwnerReference> {
    pod.metadata.owner_references.iter().flatten().find(|o| o.controller == Some(true) && o.kind == "Deployment")
}

/// Runs the controller until its task is dropped.
pub async fn run(registry: Registry, caches: Caches, recorder: Recorder) {
    let (handle, mut queue) = queue();
    let mut deployments = caches.deployments.subscribe();
    let mut pods = caches.pods.subscribe();
    for d in caches.deployments.list() {
        handle.add(key_of(&d.metadata));
    }
    let resync_handle = handle.clone();
    let all = caches.clone();
    let feeder = async move {
        loop {
            tokio::select! {
                change = deployments.recv() => match change {
                    Ok(c) => resync_handle.add(c.key),
                    Err(RecvError::Lagged(_)) => all.deployments.list().iter().for_each(|d| resync_handle.add(key_of(&d.metadata))),
                    Err(RecvError::Closed) => return,
                },
                change = pods.recv() => match change {
                    Ok(c) => {
                        let ns = c.key.split('/').next().unwrap_or("").to_string();
                        if let Some(owner) = c.object.as_deref().and_then(owning_deployment) {
                            resync_handle.add(format!("{ns}/{}", owner.name));
                        }
                    }
                    Err(RecvError::Lagged(_)) => all.deployments.list().iter().for_each(|d| resync_handle.add(key_of(&d.metadata))),
                    Err(RecvError::Closed) => return,
                },
            }
        }
    };
    let worker = async move {
        while let Some(batch) = queue.next_batch().await {
            for key in batch {
                match reconcile(&registry, &caches, &recorder, &key).await {
                    Ok(Some(after)) => handle.add_after(key, after),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!(deployment = %key, error = %e, "reconcile failed; retrying");
                        handle.add_after(key, Duration::from_millis(200));
                    }
                }
            }
        }
    };
    tokio::join!(feeder, worker);
}

/// What to do for one deployment, computed from its pods; pure so it can be tested directly.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// How many new-template pods to create.
    pub create: usize,
    /// Which pods to delete (names).
    pub delete: Vec<String>,
    /// The status to report.
    pub status: Counts,
}

/// The replica counts reported in status.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Non-terminating pods.
    pub replicas: i32,
    /// Non-terminating pods of the current template.
    pub updated: i32,
    /// Ready non-terminating pods.
    pub ready: i32,
}

/// Decides creations and deletions for a deployment whose pods are `pods` (all owned by it).
pub fn plan(deployment: &Deployment, pods: &[Arc<Pod>]) -> Plan {
    let spec = deployment.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1).max(0) as usize;
    let hash = template_hash(&spec.template);
    let is_new = |p: &Pod| p.metadata.labels.as_ref().and_then(|l| l.get(TEMPLATE_HASH_LABEL)) == Some(&hash);
    let active: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).filter(|p| !is_terminating(p) && !matches!(api::pod::phase(p), "Failed" | "Succeeded")).collect();
    let (new, old): (Vec<&Pod>, Vec<&Pod>) = active.iter().partition(|p| is_new(p));
    let ready_total = active.iter().filter(|p| is_ready(p)).count();
    let mut plan = Plan { status: Counts { replicas: active.len() as i32, updated: new.len() as i32, ready: ready_total as i32 }, ..Default::default() };
    // Oldest-last ordering for deletion: not-ready pods go first, then the newest.
    let by_deletion_preference = |pods: &[&Pod]| -> Vec<String> {
        let mut sorted: Vec<&Pod> = pods.to_vec();
        sorted.sort_by_key(|p| (is_ready(p), std::cmp::Reverse(p.metadata.creation_timestamp.clone().map(|t| t.0))));
        sorted.iter().map(|p| p.metadata.name.clone().unwrap_or_default()).collect()
    };
    let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
    if recreate {
        if !old.is_empty() {
            plan.delete = old.iter().map(|p| p.metadata.name.clone().unwrap_or_default()).collect();
            return plan;
        }
        let old_terminating = pods.iter().any(|p| !is_new(p) && is_terminating(p));
        if new.len() < replicas && !old_terminating {
            plan.create = replicas - new.len();
        } else if new.len() > replicas {
            plan.delete = by_deletion_preference(&new).into_iter().take(new.len() - replicas).collect();
        }
        return plan;
    }
    let rolling = spec.strategy.as_ref().and_then(|s| s.rolling_update.clone()).unwrap_or_default();
    let surge = defaults::scaled_value(rolling.max_surge.as_ref(), replicas as i32, true).max(0) as usize;
    let mut unavailable = defaults::scaled_value(rolling.max_unavailable.as_ref(), replicas as i32, false).max(0) as usize;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    let total = active.len();
    if new.len() < replicas {
        let room = (replicas + surge).saturating_sub(total);
        plan.create = room.min(replicas - new.len());
    } else if new.len() > replicas {
        plan.delete = by_deletion_preference(&new).into_iter().take(new.len() - replicas).collect();
    }
    if !old.is_empty() {
        let min_available = replicas.saturating_sub(unavailable);
        let new_unavailable = new.iter().filter(|p| !is_ready(p)).count();
        let budget = total.saturating_sub(min_available).saturating_sub(new_unavailable);
        let unhealthy_old: Vec<&Pod> = old.iter().copied().filter(|p| !is_ready(p)).collect();
        for p in unhealthy_old.iter().take(budget) {
            plan.delete.push(p.metadata.name.clone().unwrap_or_default());
        }
        let ready_surplus = ready_total.saturating_sub(min_available);
        let healthy_old: Vec<&Pod> = old.iter().copied().filter(|p| is_ready(p)).collect();
        for p in healthy_old.iter().take(ready_surplus) {
            plan.delete.push(p.metadata.name.clone().unwrap_or_default());
        }
    }
    plan
}

async fn reconcile(registry: &Registry, caches: &Caches, recorder: &Recorder, key: &str) -> Result<Option<Duration>, apiserver::ApiError> {
    let Some(deployment) = caches.deployments.get(key) else { return Ok(None) };
    if deployment.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let ns = deployment.metadata.namespace.clone().unwrap_or_default();
    let uid = deployment.metadata.uid.clone().unwrap_or_default();
    let owned: Vec<Arc<Pod>> = caches.pods.list_namespace(&ns).into_iter().filter(|p| owning_deployment(p).is_some_and(|o| o.uid == uid)).collect();
    let plan = plan(&deployment, &owned);
    let mut last_revision = 0;
    for _ in 0..plan.create {
        let pod = registry.create_as(&new_pod(&deployment)).await?;
        last_revision = last_revision.max(written_revision(&pod));
        recorder.normal(deployment.as_ref(), "SuccessfulCreate", &format!("Created pod: {}", pod.metadata.name.as_deref().unwrap_or(""))).await;
    }
    for name in &plan.delete {
        match registry.delete_as::<Pod>(Some(&ns), name, &DeleteOptions::default()).await {
            Ok(p) => {
                last_revision = last_revision.max(written_revision(&p));
                recorder.normal(deployment.as_ref(), "SuccessfulDelete", &format!("Deleted pod: {name}")).await;
            }
            Err(apiserver::ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    if last_revision > 0 {
        caches.pods.wait_for(last_revision).await;
    }
    update_status(registry, &deployment, plan.status).await?;
    Ok(None)
}

fn new_pod(deployment: &Deployment) -> Pod {
    let spec = deployment.spec.clone().unwrap_or_default();
    let hash = template_hash(&spec.template);
    let template_meta = spec.template.metadata.clone().unwrap_or_default();
    let mut labels: BTreeMap<String, String> = template_meta.labels.clone().unwrap_or_default();
    labels.insert(TEMPLATE_HASH_LABEL.into(), hash.clone());
    let name = deployment.metadata.name.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-{hash}-")),
            namespace: deployment.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: template_meta.annotations,
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name,
                uid: deployment.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: spec.template.spec,
        status: None,
    }
}

async fn update_status(registry: &Registry, deployment: &Deployment, counts: Counts) -> Result<(), apiserver::ApiError> {
    let spec = deployment.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    let rolling = spec.strategy.as_ref().and_then(|s| s.rolling_update.clone()).unwrap_or_default();
    let max_unavailable = defaults::scaled_value(rolling.max_unavailable.as_ref(), replicas, false);
    let available = counts.ready >= replicas - max_unavailable;
    let complete = counts.updated == replicas && counts.replicas == replicas && counts.ready == replicas;
    let old = deployment.status.clone().unwrap_or_default();
    let condition = |type_: &str, ok: bool, reason: &str, message: String| {
        let status = if ok { "True" } else { "False" }.to_string();
        let previous = old.conditions.iter().flatten().find(|c| c.type_ == type_);
        let changed = previous.is_none_or(|p| p.status != status || p.reason.as_deref() != Some(reason));
        DeploymentCondition {
            type_: type_.into(),
            status,
            reason: Some(reason.into()),
            message: Some(message),
            last_transition_time: if changed { Some(api::now()) } else { previous.and_then(|p| p.last_transition_time.clone()) },
            last_update_time: if changed { Some(api::now()) } else { previous.and_then(|p| p.last_update_time.clone()) },
        }
    };
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let status = DeploymentStatus {
        observed_generation: deployment.metadata.generation,
        replicas: Some(counts.replicas),
        updated_replicas: Some(counts.updated),
        ready_replicas: Some(counts.ready),
        available_replicas: Some(counts.ready),
        unavailable_replicas: Some((replicas - counts.ready).max(0)),
        conditions: Some(vec![
            condition(
                "Available",
                available,
                if available { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
                format!("Deployment {} minimum availability.", if available { "has" } else { "does not have" }),
            ),
            condition(
                "Progressing",
                true,
                if complete { "NewReplicaSetAvailable" } else { "ReplicaSetUpdated" },
                if complete { format!("Deployment \"{name}\" has successfully progressed.") } else { format!("Deployment \"{name}\" is progressing.") },
            ),
        ]),
        ..Default::default()
    };
    let same = |a: &DeploymentStatus, b: &DeploymentStatus| {
        let strip = |s: &DeploymentStatus| {
            let mut s = s.clone();
            for c in s.conditions.iter_mut().flatten() {
                c.last_update_time = None;
                c.last_transition_time = None;
            }
            s
        };
        strip(a) == strip(b)
    };
    if same(&old, &status) {
        return Ok(());
    }
    let mut updated = deployment.clone();
    updated.status = Some(status);
    match registry.update_status_as(&updated).await {
        Ok(_) | Err(apiserver::ApiError::Conflict { .. }) | Err(apiserver::ApiError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;
