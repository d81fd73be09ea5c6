//! Records Events ("Scheduled", "SuccessfulCreate", …) about objects, as Kubernetes does.

use api::k8s_openapi::api::core::v1::ObjectReference;
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
        let event = api::events::build(involved, &self.component, warning, reason, message);
        // The written Event is not needed back: `create` spares decoding it into its type.
        let rt = api::ResourceType::of::<api::Event>();
        let value = match serde_json::to_value(&event) {
            Ok(value) => value,
            Err(e) => return tracing::debug!(error = %e, reason, "could not encode event"),
        };
        if let Err(e) = self.registry.create(rt, event.metadata.namespace.as_deref(), value).await {
            tracing::debug!(error = %e, reason, "could not record event");
        }
    }
}
