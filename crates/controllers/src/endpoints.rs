//! The endpoints controller: keeps, for every Service with a selector, an Endpoints object of
//! the same name listing the pods it selects — ready ones under `addresses`, the others under
//! `notReadyAddresses` — with each Service port resolved against the pod's container ports
//! (a named `targetPort` may be a different number on different pods). A terminating pod is
//! left out, so no new connection goes to it while it stops; a Service without a selector
//! keeps the Endpoints its user wrote.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use api::k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, ObjectReference, ServicePort};
use api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use api::pod::{is_ready, is_terminating};
use api::{Endpoints, ObjectMeta, Pod, Service};
use apiserver::{ApiError, DeleteOptions, Registry};
use tokio::sync::broadcast::error::RecvError;

use crate::informer::key_of;
use crate::queue::queue;
use crate::Caches;

fn selects(service: &Service, pod: &Pod) -> bool {
    let Some(selector) = service.spec.as_ref().and_then(|s| s.selector.as_ref()).filter(|s| !s.is_empty()) else { return false };
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn namespace_of(key: &str) -> &str {
    key.split('/').next().unwrap_or_default()
}

/// Runs the controller until its task is dropped.
pub async fn run(registry: Registry, caches: Caches) {
    let (handle, mut queue) = queue();
    let mut services = caches.services.subscribe();
    let mut pods = caches.pods.subscribe();
    let mut endpoints = caches.endpoints.subscribe();
    let all_services = |caches: &Caches, handle: &crate::queue::QueueHandle| caches.services.list().iter().for_each(|s| handle.add(key_of(&s.metadata)));
    all_services(&caches, &handle);
    let feed = handle.clone();
    let cache = caches.clone();
    let feeder = async move {
        // The Services each pod was last seen to be selected by: a pod whose labels change, or
        // that goes, concerns the Services it left too.
        let mut membership: HashMap<String, BTreeSet<String>> = HashMap::new();
        loop {
            tokio::select! {
                change = services.recv() => match change {
                    Ok(c) => feed.add(c.key),
                    Err(RecvError::Lagged(_)) => all_services(&cache, &feed),
                    Err(RecvError::Closed) => return,
                },
                change = endpoints.recv() => match change {
                    // Somebody else changed (or deleted) an Endpoints object: put it right.
                    Ok(c) => if cache.services.get(&c.key).is_some() { feed.add(c.key) },
                    Err(RecvError::Lagged(_)) => all_services(&cache, &feed),
                    Err(RecvError::Closed) => return,
                },
                change = pods.recv() => match change {
                    Ok(c) => {
                        let ns = namespace_of(&c.key);
                        let now: BTreeSet<String> = match c.object.as_deref() {
                            Some(pod) => cache.services.list_namespace(ns).iter().filter(|s| selects(s, pod)).map(|s| key_of(&s.metadata)).collect(),
                            None => BTreeSet::new(),
                        };
                        let before = if now.is_empty() { membership.remove(&c.key) } else { membership.insert(c.key.clone(), now.clone()) };
                        before.into_iter().flatten().chain(now).for_each(|s| feed.add(s));
                    }
                    Err(RecvError::Lagged(_)) => all_services(&cache, &feed),
                    Err(RecvError::Closed) => return,
                },
            }
        }
    };
    let worker = async move {
        while let Some(batch) = queue.next_batch().await {
            for key in batch {
                if let Err(e) = reconcile(&registry, &caches, &key).await {
                    tracing::debug!(service = %key, error = %e, "endpoints reconcile failed; retrying");
                    handle.add_after(key, Duration::from_millis(200));
                }
            }
        }
    };
    tokio::join!(feeder, worker);
}

async fn reconcile(registry: &Registry, caches: &Caches, key: &str) -> Result<(), ApiError> {
    let (ns, name) = key.split_once('/').unwrap_or(("default", key));
    let current = caches.endpoints.get(key);
    let Some(service) = caches.services.get(key) else {
        if current.is_some() {
            match registry.delete_as::<Endpoints>(Some(ns), name, &DeleteOptions::default()).await {
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        return Ok(());
    };
    if service.spec.as_ref().and_then(|s| s.selector.as_ref()).is_none_or(BTreeMap::is_empty) {
        return Ok(());
    }
    let pods = caches.pods.list_namespace(ns);
    let subsets = subsets(&service, &pods);
    let mut wanted = Endpoints {
        metadata: ObjectMeta { name: Some(name.to_string()), namespace: Some(ns.to_string()), labels: service.metadata.labels.clone(), ..Default::default() },
        subsets: (!subsets.is_empty()).then_some(subsets),
    };
    match current {
        Some(current) if current.subsets == wanted.subsets && current.metadata.labels == wanted.metadata.labels => Ok(()),
        Some(current) => {
            wanted.metadata.resource_version = current.metadata.resource_version.clone();
            registry.update_as(&wanted).await.map(|_| ())
        }
        None => match registry.create_as(&wanted).await {
            Ok(_) => Ok(()),
            Err(ApiError::AlreadyExists { .. }) => Err(ApiError::Conflict { kind: "endpoints".into(), name: key.to_string() }),
            Err(e) => Err(e),
        },
    }
}

/// The port a Service port reaches on `pod`: a number as given, a name looked up among the
/// pod's container ports of that protocol; `None` when the pod has no such port.
pub fn target_port(port: &ServicePort, pod: &Pod) -> Option<i32> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match port.target_port.clone().unwrap_or(IntOrString::Int(port.port)) {
        IntOrString::Int(n) => Some(n),
        IntOrString::String(name) => pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name.as_str()) && p.protocol.as_deref().unwrap_or("TCP") == protocol)
            .map(|p| p.container_port),
    }
}

/// A Service port as one pod serves it: (name, number, protocol).
type ResolvedPort = (String, i32, String);

/// The Endpoints subsets of `service` over `pods` (its namespace's): pods grouped by the
/// ports they resolve to, addresses sorted, so equal inputs give equal objects.
pub fn subsets(service: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let spec = service.spec.clone().unwrap_or_default();
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    let ports = spec.ports.unwrap_or_default();
    let mut groups: BTreeMap<Vec<ResolvedPort>, (Vec<EndpointAddress>, Vec<EndpointAddress>)> = BTreeMap::new();
    for pod in pods.iter().filter(|p| selects(service, p)) {
        let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).filter(|ip| !ip.is_empty()) else { continue };
        if is_terminating(pod) || matches!(api::pod::phase(pod), "Failed" | "Succeeded") {
            continue;
        }
        let resolved: Vec<ResolvedPort> = ports
            .iter()
            .filter_map(|p| Some((p.name.clone().unwrap_or_default(), target_port(p, pod)?, p.protocol.clone().unwrap_or_else(|| "TCP".into()))))
            .collect();
        if resolved.is_empty() && !ports.is_empty() {
            continue;
        }
        let address = EndpointAddress {
            ip,
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                namespace: pod.metadata.namespace.clone(),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (ready, not_ready) = groups.entry(resolved).or_default();
        if publish_not_ready || is_ready(pod) {
            ready.push(address);
        } else {
            not_ready.push(address);
        }
    }
    groups
        .into_iter()
        .map(|(ports, (mut ready, mut not_ready))| {
            ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: Some(
                    ports
                        .into_iter()
                        .map(|(name, port, protocol)| EndpointPort {
                            name: (!name.is_empty()).then_some(name),
                            port,
                            protocol: Some(protocol),
                            ..Default::default()
                        })
                        .collect(),
                ),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::manifest::{decode_document, parse_documents};

    fn object<K: api::k8s_openapi::serde::de::DeserializeOwned>(yaml: &str) -> K {
        decode_document(&parse_documents(yaml).unwrap()[0]).unwrap()
    }

    fn pod(name: &str, app: &str, ip: &str, ready: bool, port: i32) -> Arc<Pod> {
        let ready = if ready { "True" } else { "False" };
        Arc::new(object(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: shop, labels: {{app: {app}}}}}\nspec:\n  nodeName: n1\n  containers: [{{name: c, image: x, ports: [{{name: http, containerPort: {port}}}]}}]\nstatus:\n  phase: Running\n  podIP: {ip}\n  conditions: [{{type: Ready, status: \"{ready}\"}}]\n"
        )))
    }

    #[test]
    fn ready_pods_are_addresses_and_named_ports_resolve_per_pod() {
        let service: Service = object("apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  selector: {app: web}\n  ports: [{name: web, port: 80, targetPort: http}]\n");
        let mut terminating = (*pod("gone", "web", "10.0.0.9", true, 8080)).clone();
        terminating.metadata.deletion_timestamp = Some(api::now());
        let pods = vec![
            pod("b", "web", "10.0.0.3", true, 8080),
            pod("a", "web", "10.0.0.2", true, 8080),
            pod("c", "web", "10.0.0.4", false, 8080),
            pod("d", "web", "10.0.0.5", true, 9090),
            pod("db", "db", "10.0.0.6", true, 8080),
            Arc::new(terminating),
        ];
        let subsets = subsets(&service, &pods);
        assert_eq!(subsets.len(), 2, "{subsets:?}");
        let ips = |a: &Option<Vec<EndpointAddress>>| a.iter().flatten().map(|a| a.ip.clone()).collect::<Vec<_>>();
        let at_8080 = subsets.iter().find(|s| s.ports.as_ref().unwrap()[0].port == 8080).unwrap();
        assert_eq!(ips(&at_8080.addresses), ["10.0.0.2", "10.0.0.3"]);
        assert_eq!(ips(&at_8080.not_ready_addresses), ["10.0.0.4"]);
        assert_eq!(at_8080.ports.as_ref().unwrap()[0].name.as_deref(), Some("web"));
        let at_9090 = subsets.iter().find(|s| s.ports.as_ref().unwrap()[0].port == 9090).unwrap();
        assert_eq!(ips(&at_9090.addresses), ["10.0.0.5"]);
        assert_eq!(at_8080.addresses.as_ref().unwrap()[0].target_ref.as_ref().unwrap().name.as_deref(), Some("a"));
    }
}
