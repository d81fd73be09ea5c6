//! Admission: decode strictly (unknown fields and wrong types are errors), fill defaults,
//! validate, and hand back the normalized JSON to store.

use api::manifest::decode;
use api::{defaults, validation, ConfigMap, Deployment, Event, FieldErrors, Lease, Namespace, Node, Pod, PriorityClass, ResourceType, Secret};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::ApiError;

/// Why the object is being admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// A new object.
    Create,
    /// A replacement of an existing object.
    Update,
}

/// Decodes, defaults and validates `value` as the type `rt`; `old` is the stored object on update.
pub fn admit(rt: &ResourceType, value: &Value, old: Option<&Value>) -> Result<Value, ApiError> {
    let name = value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    let invalid = |errors: FieldErrors| ApiError::Invalid { kind: rt.kind.to_string(), name: name.clone(), errors };
    match rt.kind {
        "Pod" => {
            let mut pod: Pod = strict(rt, &name, value)?;
            defaults::pod(&mut pod);
            match old {
                Some(old) => validation::pod_update(&strict(rt, &name, old)?, &pod),
                None => validation::pod(&pod),
            }
            .map_err(invalid)?;
            encode(&pod)
        }
        "Deployment" => {
            let mut d: Deployment = strict(rt, &name, value)?;
            defaults::deployment(&mut d);
            validation::deployment(&d).map_err(invalid)?;
            if let Some(old) = old {
                let old: Deployment = strict(rt, &name, old)?;
                let selector = |d: &Deployment| d.spec.as_ref().map(|s| s.selector.clone());
                if selector(&old) != selector(&d) {
                    let mut errors = FieldErrors::default();
                    errors.push(api::FieldError::invalid("spec.selector", "changed", "field is immutable"));
                    return Err(invalid(errors));
                }
            }
            encode(&d)
        }
        "ConfigMap" => {
            let cm: ConfigMap = strict(rt, &name, value)?;
            let old: Option<ConfigMap> = old.map(|o| strict(rt, &name, o)).transpose()?;
            api::configdata::config_map(&cm, old.as_ref()).map_err(invalid)?;
            encode(&cm)
        }
        "Secret" => {
            let mut secret: Secret = strict(rt, &name, value)?;
            api::configdata::default_secret(&mut secret);
            let old: Option<Secret> = old.map(|o| strict(rt, &name, o)).transpose()?;
            api::configdata::secret(&secret, old.as_ref()).map_err(invalid)?;
            encode(&secret)
        }
        "Namespace" => {
            let namespace: Namespace = strict(rt, &name, value)?;
            api::netpol::validate_namespace(&namespace).map_err(invalid)?;
            encode(&namespace)
        }
        "Node" => {
            let node: Node = strict(rt, &name, value)?;
            let old: Option<Node> = old.map(|o| strict(rt, &name, o)).transpose()?;
            let mut errors = FieldErrors::default();
            validation::metadata(&node.metadata, false, &mut errors);
            validation::node_pod_cidr(&node, old.as_ref(), &mut errors);
            errors.into_result().map_err(invalid)?;
            encode(&node)
        }
        "Event" => metadata_only::<Event>(rt, &name, value, false, |o| &o.metadata),
        "Lease" => metadata_only::<Lease>(rt, &name, value, false, |o| &o.metadata),
        "PriorityClass" => {
            let mut class: PriorityClass = strict(rt, &name, value)?;
            api::priority::default_class(&mut class);
            let mut errors = FieldErrors::default();
            validation::metadata(&class.metadata, false, &mut errors);
            api::priority::validate_class(&class, &mut errors);
            if let Some(old) = old {
                let old: PriorityClass = strict(rt, &name, old)?;
                if old.value != class.value {
                    errors.push(api::FieldError::invalid("value", class.value, "field is immutable"));
                }
            }
            errors.into_result().map_err(invalid)?;
            encode(&class)
        }
        "Function" => {
            let mut function: api::function::Function = strict(rt, &name, value)?;
            if let Some(pod) = function.spec.template.spec.as_mut() {
                defaults::pod_spec(pod);
            }
            api::function::validate(&function).map_err(invalid)?;
            encode(&function)
        }
        "NetworkPolicy" => {
            let policy: api::NetworkPolicy = strict(rt, &name, value)?;
            api::netpol::validate(&policy).map_err(invalid)?;
            encode(&policy)
        }
        "FlotillaNetworkPolicy" => {
            let policy: api::netpol::flotilla::FlotillaNetworkPolicy = strict(rt, &name, value)?;
            api::netpol::flotilla::validate(&policy).map_err(invalid)?;
            encode(&policy)
        }
        "Service" => {
            let mut service: api::Service = strict(rt, &name, value)?;
            api::service::default_service(&mut service);
            api::service::validate_service(&service).map_err(invalid)?;
            if let Some(old) = old {
                api::service::validate_service_update(&strict(rt, &name, old)?, &service).map_err(invalid)?;
            }
            encode(&service)
        }
        "Endpoints" => {
            let endpoints: api::Endpoints = strict(rt, &name, value)?;
            api::service::validate_endpoints(&endpoints).map_err(invalid)?;
            encode(&endpoints)
        }
        "Identity" => {
            let identity: api::identity::Identity = strict(rt, &name, value)?;
            api::identity::validate(&identity).map_err(invalid)?;
            if let Some(old) = old {
                let old: api::identity::Identity = strict(rt, &name, old)?;
                if old.spec != identity.spec {
                    let mut errors = FieldErrors::default();
                    errors.push(api::FieldError::invalid("spec", "changed", "an Identity stands for one label set for life; create another"));
                    return Err(invalid(errors));
                }
            }
            encode(&identity)
        }
        "ImagePolicy" | "ClusterImagePolicy" => {
            let policy: api::ImagePolicy = strict(rt, &name, value)?;
            api::imagepolicy::validate(&policy, rt.namespaced).map_err(invalid)?;
            if let Err(reason) = trust::policy::compile(&policy) {
                let (path, message) = reason.split_once(": ").unwrap_or(("spec", reason.as_str()));
                let mut errors = FieldErrors::default();
                errors.push(api::FieldError { path: path.to_string(), message: message.to_string() });
                return Err(invalid(errors));
            }
            encode(&policy)
        }
        other => Err(ApiError::Internal(format!("no admission for kind {other}"))),
    }
}

/// The status of a status update of a Pod, decoded strictly (an unknown field is named by its
/// path, `status.foo`) and defaulted as admission of the whole pod would: pods validate no status
/// field, and the rest of the object is the stored one.
pub fn pod_status(rt: &ResourceType, name: &str, status: Value) -> Result<Value, ApiError> {
    #[derive(serde::Deserialize)]
    struct StatusOf {
        status: Option<api::k8s_openapi::api::core::v1::PodStatus>,
    }
    let wrapper = Value::Object([("status".to_string(), status)].into_iter().collect());
    let decoded: StatusOf = strict(rt, name, &wrapper)?;
    let mut status = decoded.status.unwrap_or_default();
    status.phase.get_or_insert_with(|| "Pending".to_string());
    encode(&status)
}

fn metadata_only<K: DeserializeOwned + Serialize>(
    rt: &ResourceType,
    name: &str,
    value: &Value,
    label_name: bool,
    meta: impl Fn(&K) -> &api::ObjectMeta,
) -> Result<Value, ApiError> {
    let object: K = strict(rt, name, value)?;
    let mut errors = FieldErrors::default();
    validation::metadata(meta(&object), label_name, &mut errors);
    errors.into_result().map_err(|errors| ApiError::Invalid { kind: rt.kind.to_string(), name: name.to_string(), errors })?;
    encode(&object)
}

fn strict<K: DeserializeOwned>(rt: &ResourceType, name: &str, value: &Value) -> Result<K, ApiError> {
    decode(value).map_err(|errors| ApiError::BadRequest(format!("{} \"{}\": strict decoding error: {}", rt.kind, name, errors)))
}

fn encode<K: Serialize>(object: &K) -> Result<Value, ApiError> {
    serde_json::to_value(object).map_err(|e| ApiError::Internal(format!("encoding object: {e}")))
}
