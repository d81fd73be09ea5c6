//! What a node may touch beyond the static rules of [`crate::auth::authorize`], as
//! Kubernetes' Node authorizer and NodeRestriction admission decide: only the pods bound to it,
//! only its own Node and Lease, and only the Secrets and ConfigMaps its pods refer to.

use std::collections::BTreeSet;

use api::ResourceType;
use serde_json::Value;

use crate::auth::{UserInfo, NODES_GROUP};
use crate::error::ApiError;
use crate::registry::{ListFilter, Registry};
use crate::request::RequestInfo;

/// The node a user speaks for, when it is a per-node identity.
pub fn node_of(user: &UserInfo) -> Option<&str> {
    user.groups.iter().any(|g| g == NODES_GROUP).then(|| user.name.strip_prefix("system:node:")).flatten()
}

fn forbidden(node: &str, what: String) -> ApiError {
    ApiError::Forbidden(format!("node \"{node}\" may not {what}"))
}

/// Checks a request of a node that names its object in the path.
pub async fn check(registry: &Registry, node: &str, info: &RequestInfo) -> Result<(), ApiError> {
    let (Some(name), Some(ns)) = (info.name.as_deref(), info.namespace.as_deref()) else {
        return Ok(());
    };
    match (info.resource.as_str(), info.subresource.as_deref(), info.verb.as_str()) {
        // Status updates are checked by `pod_is_bound_to` on the object the update reads.
        ("pods", None, "delete") => {
            let pod = match registry.get(ResourceType::of::<api::Pod>(), Some(ns), name).await {
                Ok(pod) => pod,
                // The request itself will answer 404.
                Err(ApiError::NotFound { .. }) => return Ok(()),
                Err(e) => return Err(e),
            };
            pod_is_bound_to(node, "delete", &pod)?;
        }
        ("leases", _, _) if name != node => return Err(forbidden(node, format!("{} the Lease of another node ({name})", info.verb))),
        (kind @ ("secrets" | "configmaps"), None, "get") => {
            let pods = registry.list(ResourceType::of::<api::Pod>(), Some(ns), &ListFilter::field("spec.nodeName", node)).await?.0;
            let wanted = if kind == "secrets" { Reference::Secret } else { Reference::ConfigMap };
            if !pods.iter().any(|pod| references(pod, wanted).contains(name)) {
                let singular = &kind[..kind.len() - 1];
                return Err(forbidden(node, format!("get {singular} {ns}/{name}: no pod bound to it refers to it")));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Refuses a node's `verb` on a pod bound elsewhere (or nowhere).
pub fn pod_is_bound_to(node: &str, verb: &str, pod: &Value) -> Result<(), ApiError> {
    let bound = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("");
    if bound == node {
        return Ok(());
    }
    let (ns, name) =
        (pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or(""), pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or(""));
    Err(forbidden(node, format!("{verb} pod {ns}/{name}: it is bound to {}", if bound.is_empty() { "no node" } else { bound })))
}

/// Checks a create by a node, whose object name is in the body: it may create only its own
/// Node and its own Lease.
pub fn check_create(node: &str, rt: &ResourceType, body: &Value) -> Result<(), ApiError> {
    let name = body.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    match rt.kind {
        "Node" | "Lease" if name != node => Err(forbidden(node, format!("create the {} of another node ({name})", rt.kind))),
        _ => Ok(()),
    }
}

/// The kind of object a pod refers to by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reference {
    /// Env values, envFrom, volumes and image pull secrets.
    Secret,
    /// Env values, envFrom and volumes.
    ConfigMap,
}

/// The names of the Secrets or ConfigMaps a pod (as JSON) refers to.
pub fn references(pod: &Value, kind: Reference) -> BTreeSet<String> {
    let spec = &pod["spec"];
    let (key_ref, from_ref, volume, volume_name) = match kind {
        Reference::Secret => ("secretKeyRef", "secretRef", "secret", "secretName"),
        Reference::ConfigMap => ("configMapKeyRef", "configMapRef", "configMap", "name"),
    };
    let mut names = BTreeSet::new();
    let mut add = |v: &Value| {
        if let Some(n) = v.as_str().filter(|n| !n.is_empty()) {
            names.insert(n.to_string());
        }
    };
    let containers = ["containers", "initContainers"].into_iter().flat_map(|list| spec[list].as_array().into_iter().flatten());
    for c in containers {
        for var in c["env"].as_array().into_iter().flatten() {
            add(&var["valueFrom"][key_ref]["name"]);
        }
        for from in c["envFrom"].as_array().into_iter().flatten() {
            add(&from[from_ref]["name"]);
        }
    }
    for v in spec["volumes"].as_array().into_iter().flatten() {
        add(&v[volume][volume_name]);
        for source in v["projected"]["sources"].as_array().into_iter().flatten() {
            add(&source[volume]["name"]);
        }
    }
    if kind == Reference::Secret {
        for s in spec["imagePullSecrets"].as_array().into_iter().flatten() {
            add(&s["name"]);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_pods_references_come_from_env_env_from_volumes_and_pull_secrets() {
        let pod = json!({"spec": {
            "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "init-secret"}}]}],
            "containers": [{"name": "c", "env": [
                {"name": "A", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}},
                {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "k"}}},
                {"name": "C", "value": "plain"}
            ]}],
            "volumes": [{"name": "v", "secret": {"secretName": "certs"}}, {"name": "w", "configMap": {"name": "files"}},
                        {"name": "p", "projected": {"sources": [{"configMap": {"name": "projected"}}]}}],
            "imagePullSecrets": [{"name": "registry"}]
        }});
        let secrets: Vec<String> = references(&pod, Reference::Secret).into_iter().collect();
        assert_eq!(secrets, ["certs", "db", "init-secret", "registry"]);
        let maps: Vec<String> = references(&pod, Reference::ConfigMap).into_iter().collect();
        assert_eq!(maps, ["files", "projected", "settings"]);
    }

    #[test]
    fn nodes_create_only_their_own_node_and_lease() {
        let node = api::ResourceType::of::<api::Node>();
        assert!(check_create("n1", node, &json!({"metadata": {"name": "n1"}})).is_ok());
        assert!(matches!(check_create("n1", node, &json!({"metadata": {"name": "n2"}})), Err(ApiError::Forbidden(_))));
        let lease = api::ResourceType::of::<api::Lease>();
        assert!(matches!(check_create("n1", lease, &json!({"metadata": {"name": "n2"}})), Err(ApiError::Forbidden(_))));
        let event = api::ResourceType::of::<api::Event>();
        assert!(check_create("n1", event, &json!({"metadata": {"name": "anything"}})).is_ok());
    }
}
