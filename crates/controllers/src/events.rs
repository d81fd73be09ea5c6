//! Records Events ("Scheduled", "SuccessfulCreate", …) about objects, as Kubernetes does.

use api::k8s_openapi::api::core::v1::{EventSource, ObjectReference};
use api::{Event, ObjectMeta};
use apiserver::registry::Typed;
use apiserver::Registry;

/// Writes Events on behalf of one component.
#[derive(Clone)]
pub struct Recorder {
    registry: Registry,
    component: String,
}

/// A reference to `object` for an Event's `involvedObject`.
pub fn reference<K: Typed>(object: &K) -> ObjectReference {
    let meta = object.metadata();
    ObjectReference {
        api_version: Some(K::API_VERSION.to_string()),
        kind: Some(K::KIND.to_string()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..Default::default()
    }
}

/// Builds an Event (shared by the control plane and the agent).
pub fn build(involved: ObjectReference, component: &str, warning: bool, reason: &str, message: &str) -> Event {
    let now = api::now();
    let nanos = now.0.as_nanosecond();
    let name = format!("{}.{:x}", involved.name.as_deref().unwrap_or("object"), nanos);
    Event {
        metadata: ObjectMeta { name: Some(name), namespace: Some(involved.namespace.clone().unwrap_or_else(|| "default".into())), ..Default::default() },
        involved_object: involved,
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        type_: Some(if warning { "Warning" } else { "Normal" }.to_string()),
        source: Some(EventSource { component: Some(component.to_string()), host: None }),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        reporting_component: Some(component.to_string()),
        ..Default::default()
    }
}

impl Recorder {
    /// A recorder for `component`.
    pub fn new(registry: Registry, component: &str) -> Recorder {
        Recorder { registry, component: component.to_string() }
    }

    /// Records a Normal event.
    pub async fn normal<K: Typed>(&self, object: &K, reason: &str, message: &str) {
        self.record(reference(object), false, reason, message).await;
    }

    /// Records a Warning event.
    pub async fn warning<K: Typed>(&self, object: &K, reason: &str, message: &str) {
        self.record(reference(object), true, reason, message).await;
    }

    async fn record(&self, involved: ObjectReference, warning: bool, reason: &str, message: &str) {
        let event = build(involved, &self.component, warning, reason, message);
        if let Err(e) = self.registry.create_as(&event).await {
            tracing::debug!(error = %e, reason, "could not record event");
        }
    }
}
