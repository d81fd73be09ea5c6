//! A container's environment as Kubernetes builds it: the image's variables, then `envFrom`
//! sources in order, then `env` entries (literal values with `$(VAR)` references expanded, or
//! `valueFrom` a pod field, a resource amount, a ConfigMap key or a Secret key). Later entries
//! replace earlier ones of the same name.

use std::collections::BTreeMap;
use std::net::IpAddr;

use api::k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, ResourceFieldSelector, Secret};
use api::Pod;
use client::Client;

/// Why the environment could not be built; the container waits in
/// `CreateContainerConfigError` and is retried, as a kubelet does.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    /// A referenced ConfigMap or Secret does not exist and the reference is not optional.
    #[error("{kind} \"{name}\" not found")]
    NotFound {
        /// `configmap` or `secret`.
        kind: &'static str,
        /// Its name in the pod's namespace.
        name: String,
    },
    /// The object exists but lacks the key.
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    MissingKey {
        /// `ConfigMap` or `Secret`.
        kind: &'static str,
        /// The pod's namespace.
        namespace: String,
        /// The object.
        name: String,
        /// The key asked for.
        key: String,
    },
    /// The API could not be asked.
    #[error("reading {kind} \"{name}\": {message}")]
    Api {
        /// `configmap` or `secret`.
        kind: &'static str,
        /// The object.
        name: String,
        /// What the client said.
        message: String,
    },
    /// A reference admission would have refused (an older object, or a field this agent
    /// does not know).
    #[error("env {name}: {message}")]
    Unsupported {
        /// The variable.
        name: String,
        /// What is wrong with it.
        message: String,
    },
}

/// Where ConfigMaps and Secrets come from: the API, or a fixed map in unit tests.
#[async_trait::async_trait]
pub trait ConfigSource: Send + Sync {
    /// The ConfigMap `name` of `namespace`, `None` when it does not exist.
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, EnvError>;
    /// The Secret `name` of `namespace`, `None` when it does not exist.
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, EnvError>;
}

#[async_trait::async_trait]
impl ConfigSource for Client {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, EnvError> {
        match self.get_as::<ConfigMap>(Some(namespace), name).await {
            Ok(cm) => Ok(Some(cm)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(EnvError::Api { kind: "configmap", name: name.to_string(), message: e.to_string() }),
        }
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, EnvError> {
        match self.get_as::<Secret>(Some(namespace), name).await {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(EnvError::Api { kind: "secret", name: name.to_string(), message: e.to_string() }),
        }
    }
}

/// What the node knows that env references may ask for.
#[derive(Clone, Debug)]
pub struct NodeFacts {
    /// The pod's address.
    pub pod_ip: IpAddr,
    /// The node's address.
    pub host_ip: IpAddr,
    /// The node's CPUs, for a `limits.cpu` reference of a container without a CPU limit.
    pub cpus: usize,
    /// The node's memory in bytes, likewise for `limits.memory`.
    pub memory_bytes: u64,
}

/// The ConfigMaps and Secrets read while building one environment, each read once.
struct Fetched<'a> {
    source: &'a dyn ConfigSource,
    namespace: String,
    config_maps: BTreeMap<String, Option<BTreeMap<String, String>>>,
    secrets: BTreeMap<String, Option<BTreeMap<String, String>>>,
}

impl Fetched<'_> {
    async fn config_map(&mut self, name: &str) -> Result<Option<&BTreeMap<String, String>>, EnvError> {
        if !self.config_maps.contains_key(name) {
            let cm = self.source.config_map(&self.namespace, name).await?;
            let data = cm.map(|cm| {
                let mut data = cm.data.unwrap_or_default();
                data.extend(cm.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned())));
                data
            });
            self.config_maps.insert(name.to_string(), data);
        }
        Ok(self.config_maps[name].as_ref())
    }

    async fn secret(&mut self, name: &str) -> Result<Option<&BTreeMap<String, String>>, EnvError> {
        if !self.secrets.contains_key(name) {
            let secret = self.source.secret(&self.namespace, name).await?;
            let data = secret.map(|s| s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned())).collect());
            self.secrets.insert(name.to_string(), data);
        }
        Ok(self.secrets[name].as_ref())
    }
}

/// Builds the `NAME=value` list for `container` of `pod`, starting from the image's `env`.
pub async fn container_env(
    source: &dyn ConfigSource,
    pod: &Pod,
    container: &Container,
    facts: &NodeFacts,
    image_env: &[String],
) -> Result<Vec<String>, EnvError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let mut fetched = Fetched { source, namespace: namespace.clone(), config_maps: BTreeMap::new(), secrets: BTreeMap::new() };
    let mut env: Vec<(String, String)> =
        image_env.iter().map(|e| e.split_once('=').map(|(k, v)| (k.into(), v.into())).unwrap_or((e.clone(), String::new()))).collect();
    let set = |env: &mut Vec<(String, String)>, name: String, value: String| {
        env.retain(|(k, _)| *k != name);
        env.push((name, value));
    };
    set(&mut env, "HOSTNAME".into(), pod.metadata.name.clone().unwrap_or_default());
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (kind, name, optional, data) = if let Some(r) = &from.config_map_ref {
            ("configmap", r.name.clone(), r.optional == Some(true), fetched.config_map(&r.name).await?.cloned())
        } else if let Some(r) = &from.secret_ref {
            ("secret", r.name.clone(), r.optional == Some(true), fetched.secret(&r.name).await?.cloned())
        } else {
            continue;
        };
        match data {
            Some(data) => {
                // Keys that are not valid variable names are skipped, as Kubernetes skips them.
                for (k, v) in data.into_iter().filter(|(k, _)| is_env_name(&format!("{prefix}{k}"))) {
                    set(&mut env, format!("{prefix}{k}"), v);
                }
            }
            None if optional => {}
            None => return Err(EnvError::NotFound { kind, name }),
        }
    }
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            None => Some(expand(var.value.as_deref().unwrap_or(""), &env)),
            Some(_) => value_from(var, pod, container, facts, &mut fetched).await?,
        };
        if let Some(value) = value {
            set(&mut env, var.name.clone(), value);
        }
    }
    Ok(env.into_iter().map(|(k, v)| format!("{k}={v}")).collect())
}

/// The value of a `valueFrom` variable; `None` for an optional reference that is missing.
async fn value_from(var: &EnvVar, pod: &Pod, container: &Container, facts: &NodeFacts, fetched: &mut Fetched<'_>) -> Result<Option<String>, EnvError> {
    let from = var.value_from.as_ref().expect("called for valueFrom variables");
    let unsupported = |message: String| EnvError::Unsupported { name: var.name.clone(), message };
    if let Some(field) = &from.field_ref {
        return field_value(pod, &field.field_path, facts).map(Some).ok_or_else(|| unsupported(format!("fieldRef {} is not supported", field.field_path)));
    }
    if let Some(resource) = &from.resource_field_ref {
        return resource_value(resource, pod, container, facts).map(Some).map_err(unsupported);
    }
    let namespace = fetched.namespace.clone();
    let (kind, object_kind, name, key, optional, data) = if let Some(r) = &from.config_map_key_ref {
        ("configmap", "ConfigMap", r.name.clone(), r.key.clone(), r.optional == Some(true), fetched.config_map(&r.name).await?)
    } else if let Some(r) = &from.secret_key_ref {
        ("secret", "Secret", r.name.clone(), r.key.clone(), r.optional == Some(true), fetched.secret(&r.name).await?)
    } else {
        return Err(unsupported("valueFrom names no source".into()));
    };
    match data.map(|d| d.get(&key)) {
        Some(Some(value)) => Ok(Some(value.clone())),
        _ if optional => Ok(None),
        None => Err(EnvError::NotFound { kind, name }),
        Some(None) => Err(EnvError::MissingKey { kind: object_kind, namespace, name, key }),
    }
}

fn field_value(pod: &Pod, path: &str, facts: &NodeFacts) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let map_key = |prefix: &str| path.strip_prefix(prefix).and_then(|rest| rest.strip_prefix("['")?.strip_suffix("']"));
    if let Some(key) = map_key("metadata.labels") {
        return Some(meta.labels.as_ref().and_then(|l| l.get(key)).cloned().unwrap_or_default());
    }
    if let Some(key) = map_key("metadata.annotations") {
        return Some(meta.annotations.as_ref().and_then(|a| a.get(key)).cloned().unwrap_or_default());
    }
    Some(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()).unwrap_or_else(|| "default".into()),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.to_string(),
        "status.podIP" | "status.podIPs" => facts.pod_ip.to_string(),
        _ => return None,
    })
}

/// A container's request or limit in units of the divisor, rounded up as Kubernetes does; a
/// limit that is not set is the node's capacity.
fn resource_value(r: &ResourceFieldSelector, pod: &Pod, container: &Container, facts: &NodeFacts) -> Result<String, String> {
    let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => {
            pod.spec.as_ref().and_then(|s| super::state::find_container(s, name)).ok_or_else(|| format!("resourceFieldRef names no container \"{name}\""))?
        }
        None => container,
    };
    let (section, resource) = r.resource.split_once('.').ok_or_else(|| format!("resourceFieldRef {} is not supported", r.resource))?;
    if !["cpu", "memory", "ephemeral-storage"].contains(&resource) || !["limits", "requests"].contains(&section) {
        return Err(format!("resourceFieldRef {} is not supported", r.resource));
    }
    let resources = target.resources.as_ref();
    let amount = |map: Option<&BTreeMap<String, api::k8s_openapi::apimachinery::pkg::api::resource::Quantity>>| {
        map?.get(resource).and_then(|q| api::pod::resource_amount(resource, q))
    };
    let limit = amount(resources.and_then(|r| r.limits.as_ref()));
    let value = match section {
        "limits" => limit,
        _ => amount(resources.and_then(|r| r.requests.as_ref())).or(limit),
    };
    let capacity = match resource {
        "cpu" => facts.cpus as i64 * 1000,
        "memory" => facts.memory_bytes as i64,
        _ => 0,
    };
    let value = value.unwrap_or(if section == "limits" { capacity } else { 0 });
    let divisor = match &r.divisor {
        Some(q) => api::pod::resource_amount(resource, q).filter(|d| *d > 0).ok_or_else(|| format!("divisor {} is not a positive quantity", q.0))?,
        // CPU amounts are millicores: the default divisor, one core, is 1000 of them.
        None if resource == "cpu" => 1000,
        None => 1,
    };
    Ok(((value + divisor - 1) / divisor).to_string())
}

/// Replaces `$(NAME)` with the value of a variable defined before, leaves unknown references
/// as written, and turns `$$` into `$`, as Kubernetes expands env values, commands and args.
pub fn expand(input: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = after.strip_prefix('(').and_then(|a| a.split_once(')')) {
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn is_env_name(name: &str) -> bool {
    api::validation::is_env_name(name)
}

#[cfg(test)]
mod tests;
