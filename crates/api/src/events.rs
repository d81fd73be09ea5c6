//! Events: what happened to an object, in the shape `kubectl get events` shows.

use k8s_openapi::api::core::v1::{EventSource, ObjectReference};

use crate::{Event, ObjectMeta};

/// Builds an Event about `involved` from `component` (shared by the control plane and the agent).
pub fn build(involved: ObjectReference, component: &str, warning: bool, reason: &str, message: &str) -> Event {
    let now = crate::now();
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
