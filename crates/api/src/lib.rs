//! Resource types, manifests, defaults, validation with field paths, label selectors: the
//! vocabulary every other crate speaks. No IO.
#![forbid(unsafe_code)]

pub mod configdata;
pub mod defaults;
pub mod events;
pub mod field;
pub mod flow;
pub mod function;
#[doc(hidden)]
pub mod fuzzing;
pub mod identity;
pub mod imagepolicy;
pub mod kinds;
pub mod manifest;
pub mod netpol;
pub mod pod;
pub mod priority;
pub mod quantity;
pub mod selector;
pub mod service;
pub mod validation;

pub use k8s_openapi;
pub use k8s_openapi::jiff;

pub use k8s_openapi::api::apps::v1::Deployment;
pub use k8s_openapi::api::coordination::v1::Lease;
pub use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Event, Namespace, Node, Pod, Secret, Service};
pub use k8s_openapi::api::networking::v1::NetworkPolicy;
pub use k8s_openapi::api::scheduling::v1::PriorityClass;
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Status, Time};

pub use field::{FieldError, FieldErrors};
pub use imagepolicy::ImagePolicy;
pub use kinds::ResourceType;

/// The current time in the Kubernetes wire type.
pub fn now() -> Time {
    Time(jiff::Timestamp::now())
}
