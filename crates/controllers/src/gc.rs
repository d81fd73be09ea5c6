//! Garbage collection: pods whose owning Deployment or Function is gone, objects of deleted namespaces,
//! and Events older than an hour.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use api::{Event, Pod};
use apiserver::{ApiError, DeleteOptions, ListFilter, Registry};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::deployment::owning_deployment;
use crate::Caches;

/// How long Events are kept unless configured otherwise (kube-apiserver's `--event-ttl`).
pub const EVENT_TTL: Duration = Duration::from_secs(3600);

/// Runs the collector until its task is dropped. A changed pod is checked alone; a changed
/// Deployment or Namespace (or a lost change, or 30 s without one) means a whole pass.
/// Events older than `event_ttl` are deleted about once a minute.
pub async fn run(registry: Registry, caches: Caches, event_ttl: Duration) {
    let mut deployments = caches.deployments.subscribe();
    let mut functions = caches.functions.subscribe();
    let mut namespaces = caches.namespaces.subscribe();
    let mut pods = caches.pods.subscribe();
    let mut last_event_sweep = tokio::time::Instant::now();
    let mut whole = true;
    let mut changed: Vec<Arc<Pod>> = Vec::new();
    loop {
        let result = if whole { collect(&registry, &caches).await } else { collect_pods(&registry, &caches, &changed).await };
        if let Err(e) = result {
            tracing::debug!(error = %e, "garbage collection pass failed");
        }
        changed.clear();
        if last_event_sweep.elapsed() > Duration::from_secs(60) {
            last_event_sweep = tokio::time::Instant::now();
            if let Err(e) = expire_events(&registry, event_ttl).await {
                tracing::debug!(error = %e, "event expiry failed");
            }
        }
        whole = false;
        let mut pod_change = |r: Result<crate::informer::Change<Pod>, RecvError>, whole: &mut bool| match r {
            Ok(change) => {
                changed.extend(change.object);
                true
            }
            Err(RecvError::Lagged(_)) => {
                *whole = true;
                true
            }
            Err(RecvError::Closed) => false,
        };
        let open = tokio::select! {
            r = deployments.recv() => { whole = true; !matches!(r, Err(RecvError::Closed)) }
            r = functions.recv() => { whole = true; !matches!(r, Err(RecvError::Closed)) }
            r = namespaces.recv() => { whole = true; !matches!(r, Err(RecvError::Closed)) }
            r = pods.recv() => pod_change(r, &mut whole),
            _ = tokio::time::sleep(Duration::from_secs(30)) => { whole = true; true }
        };
        if !open {
            return;
        }
        while deployments.try_recv().is_ok() || namespaces.try_recv().is_ok() || functions.try_recv().is_ok() {
            whole = true;
        }
        loop {
            match pods.try_recv() {
                Ok(change) => changed.extend(change.object),
                Err(TryRecvError::Lagged(_)) => whole = true,
                Err(_) => break,
            }
        }
    }
}

/// One collection pass over the caches.
pub async fn collect(registry: &Registry, caches: &Caches) -> Result<(), ApiError> {
    collect_pods(registry, caches, &caches.pods.list()).await?;
    let namespaces = namespace_names(caches);
    for deployment in caches.deployments.list() {
        let ns = deployment.metadata.namespace.clone().unwrap_or_default();
        if !namespaces.contains(&ns) {
            let name = deployment.metadata.name.clone().unwrap_or_default();
            match registry.delete_as::<api::Deployment>(Some(&ns), &name, &DeleteOptions::default()).await {
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

fn namespace_names(caches: &Caches) -> HashSet<String> {
    caches.namespaces.list().iter().filter_map(|n| n.metadata.name.clone()).collect()
}

/// The controller of a pod that the collector removes it with: a Deployment or a Function.
fn controlling_owner(pod: &Pod) -> Option<&api::OwnerReference> {
    owning_deployment(pod).or_else(|| pod.metadata.owner_references.iter().flatten().find(|o| o.controller == Some(true) && o.kind == "Function"))
}

/// Deletes those of `pods` whose owning Deployment or Function, or namespace, is gone.
async fn collect_pods(registry: &Registry, caches: &Caches, pods: &[Arc<Pod>]) -> Result<(), ApiError> {
    if pods.is_empty() {
        return Ok(());
    }
    let mut owners: HashSet<String> = caches.deployments.list().iter().filter_map(|d| d.metadata.uid.clone()).collect();
    owners.extend(caches.functions.list().iter().filter_map(|f| f.metadata.uid.clone()));
    let namespaces = namespace_names(caches);
    for pod in pods {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let orphaned = controlling_owner(pod).is_some_and(|o| !owners.contains(&o.uid));
        if (orphaned || !namespaces.contains(ns)) && pod.metadata.deletion_timestamp.is_none() {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            let opts = DeleteOptions { precondition_uid: pod.metadata.uid.clone(), ..Default::default() };
            match registry.delete_as::<Pod>(Some(ns), name, &opts).await {
                Ok(_) | Err(ApiError::NotFound { .. } | ApiError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

async fn expire_events(registry: &Registry, ttl: Duration) -> Result<(), ApiError> {
    let (events, _) = registry.list_as::<Event>(None, &ListFilter::default()).await?;
    let cutoff = api::jiff::Timestamp::now() - api::jiff::SignedDuration::from_secs(ttl.as_secs() as i64);
    for event in events {
        let last = event.last_timestamp.as_ref().or(event.metadata.creation_timestamp.as_ref()).map(|t| t.0);
        if last.is_some_and(|t| t < cutoff) {
            let (ns, name) = (event.metadata.namespace.clone(), event.metadata.name.clone().unwrap_or_default());
            let _ = registry.delete_as::<Event>(ns.as_deref(), &name, &DeleteOptions::default()).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use api::k8s_openapi::api::core::v1::ObjectReference;
    use api::ResourceType;

    use super::*;

    fn event_at(name: &str, seconds_ago: i64) -> Event {
        let mut event = api::events::build(
            ObjectReference { name: Some(name.into()), namespace: Some("default".into()), ..Default::default() },
            "test",
            false,
            "Tested",
            "m",
        );
        let at = api::Time(api::jiff::Timestamp::now() - api::jiff::SignedDuration::from_secs(seconds_ago));
        event.metadata.name = Some(name.into());
        event.first_timestamp = Some(at.clone());
        event.last_timestamp = Some(at);
        event
    }

    #[tokio::test]
    async fn events_past_the_ttl_are_deleted_and_recent_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new(Arc::new(store::embedded::EmbeddedStore::open(&dir.path().join("s.redb")).unwrap()));
        registry.create(ResourceType::of::<api::Namespace>(), None, serde_json::json!({"metadata": {"name": "default"}})).await.unwrap();
        for (name, age) in [("old", 7200), ("edge", 3601), ("recent", 60)] {
            registry.create_as(&event_at(name, age)).await.unwrap();
        }
        expire_events(&registry, EVENT_TTL).await.unwrap();
        let (left, _) = registry.list_as::<Event>(None, &ListFilter::default()).await.unwrap();
        let names: Vec<_> = left.iter().filter_map(|e| e.metadata.name.as_deref()).collect();
        assert_eq!(names, ["recent"]);
    }
}
