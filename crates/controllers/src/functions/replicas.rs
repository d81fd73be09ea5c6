//! The pods of a Function: made from its template (owned by it, so they go with it), read from
//! the pod cache, and removed one at a time once drained. The dispatcher manages them itself,
//! not through a Deployment, so that scale-in removes exactly the replica it drained.

use std::collections::BTreeMap;
use std::net::IpAddr;

use api::function::{Function, FUNCTION_LABEL, PAUSED_ANNOTATION, WARM_LABEL};
use api::pod::{is_ready, is_terminating, template_hash};
use api::{ObjectMeta, OwnerReference, Pod};

use crate::Caches;

/// The label with the hash of the template a pod was made from.
pub const TEMPLATE_LABEL: &str = "flotilla.dev/function-template";

/// One pod of a Function as the dispatcher sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replica {
    /// The pod name.
    pub name: String,
    /// Its address, once it has one.
    pub ip: Option<IpAddr>,
    /// Ready for events.
    pub ready: bool,
    /// Made from the Function's current template.
    pub current: bool,
    /// Ended (Succeeded or Failed): it is replaced.
    pub finished: bool,
    /// In the warm pool: frozen, taking no events until claimed.
    pub warm: bool,
}

/// The hash of a Function's pod template.
pub fn template_of(function: &Function) -> String {
    template_hash(&function.spec.template)
}

/// A new pod for `function`; a `warm` one is for the pool.
pub fn new_pod(function: &Function, warm: bool) -> Pod {
    let name = function.metadata.name.clone().unwrap_or_default();
    let template = &function.spec.template;
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels: BTreeMap<String, String> = meta.labels.unwrap_or_default();
    labels.insert(FUNCTION_LABEL.into(), name.clone());
    labels.insert(TEMPLATE_LABEL.into(), template_of(function));
    let mut annotations = meta.annotations.unwrap_or_default();
    if warm {
        labels.insert(WARM_LABEL.into(), "true".into());
        annotations.insert(PAUSED_ANNOTATION.into(), "true".into());
    }
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: function.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: api::function::API_VERSION.into(),
                kind: "Function".into(),
                name,
                uid: function.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// `pod` claimed from the warm pool: without the label and the annotation that kept it frozen.
pub fn claimed(pod: &Pod) -> Pod {
    let mut pod = pod.clone();
    if let Some(labels) = pod.metadata.labels.as_mut() {
        labels.remove(WARM_LABEL);
    }
    if let Some(annotations) = pod.metadata.annotations.as_mut() {
        annotations.remove(PAUSED_ANNOTATION);
    }
    pod.metadata.resource_version = None;
    pod.status = None;
    pod
}

/// The live (not terminating) pods of `function` in the cache.
pub fn replicas(caches: &Caches, function: &Function) -> Vec<Replica> {
    replicas_of_template(caches, function, &template_of(function))
}

/// [`replicas`], given the hash of the Function's template.
pub fn replicas_of_template(caches: &Caches, function: &Function, template: &str) -> Vec<Replica> {
    let ns = function.metadata.namespace.as_deref().unwrap_or("default");
    let name = function.metadata.name.as_deref().unwrap_or("");
    caches
        .pods
        .list_namespace(ns)
        .into_iter()
        .filter(|p| p.metadata.labels.as_ref().and_then(|l| l.get(FUNCTION_LABEL)).is_some_and(|f| f == name) && !is_terminating(p))
        .map(|p| replica(&p, template))
        .collect()
}

fn replica(pod: &Pod, template: &str) -> Replica {
    let phase = api::pod::phase(pod);
    Replica {
        name: pod.metadata.name.clone().unwrap_or_default(),
        ip: pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()).and_then(|ip| ip.parse().ok()),
        ready: is_ready(pod),
        current: pod.metadata.labels.as_ref().and_then(|l| l.get(TEMPLATE_LABEL)).is_some_and(|h| h == template),
        finished: matches!(phase, "Succeeded" | "Failed"),
        warm: pod.metadata.labels.as_ref().and_then(|l| l.get(WARM_LABEL)).is_some_and(|w| w == "true"),
    }
}
