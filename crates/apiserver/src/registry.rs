//! Object semantics over the key-value store: uids, resourceVersions, generations, status
//! subresources, graceful pod deletion, selectors, and watch events in Kubernetes form. The
//! HTTP handlers and the in-process controllers both go through here.

use std::sync::Arc;

use api::k8s_openapi::{Metadata, Resource};
use api::selector::Selector;
use api::{ObjectMeta, ResourceType};
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde::Serialize;
use serde_json::Value;
use store::{KeyValue, Revision, Store, StoreError};

use crate::admission::admit;

mod fanout;
mod services;
use crate::error::ApiError;
pub use services::ServiceRanges;

/// Reads and writes API objects.
#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    /// Watch fan-out, one hub per resource type (by key prefix).
    hubs: Arc<std::sync::Mutex<std::collections::HashMap<String, HubSlot>>>,
    /// Where Services' cluster IPs and node ports come from.
    service_ranges: ServiceRanges,
}

/// Where a type's fan-out hub lives once started.
type HubSlot = Arc<tokio::sync::Mutex<Option<Arc<fanout::Hub>>>>;

/// Label and field selectors of a list or watch.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    /// `?labelSelector=`.
    pub labels: Selector,
    /// `?fieldSelector=` terms: (dotted field path, value, true for `=` / false for `!=`).
    pub fields: Vec<(String, String, bool)>,
}

impl ListFilter {
    /// Parses the query forms; a bad selector is a 400 naming it.
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<ListFilter, ApiError> {
        let labels = Selector::parse(labels.unwrap_or("")).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let mut terms = Vec::new();
        for term in fields.unwrap_or("").split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (path, value, equal) = if let Some((p, v)) = term.split_once("!=") {
                (p, v, false)
            } else if let Some((p, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (p, v, true)
            } else {
                return Err(ApiError::BadRequest(format!("field selector \"{term}\": expected field=value or field!=value")));
            };
            const FIELDS: [&str; 5] = ["metadata.name", "metadata.namespace", "spec.nodeName", "status.phase", "involvedObject.name"];
            if !FIELDS.contains(&path.trim()) {
                return Err(ApiError::BadRequest(format!(
                    "field selector \"{term}\": \"{}\" is not a supported field; use one of {}",
                    path.trim(),
                    FIELDS.join(", ")
                )));
            }
            terms.push((path.trim().to_string(), value.trim().to_string(), equal));
        }
        Ok(ListFilter { labels, fields: terms })
    }

    /// A filter on one field's equality.
    pub fn field(path: &str, value: &str) -> ListFilter {
        ListFilter { fields: vec![(path.to_string(), value.to_string(), true)], ..Default::default() }
    }

    /// True when the object passes both selectors.
    pub fn matches(&self, object: &Value) -> bool {
        self.is_trivial() || Selectable::deserialize(object).is_ok_and(|o| self.selects(&o))
    }

    /// True when the filter selects everything.
    fn is_trivial(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    /// True when the object (its selectable fields) passes both selectors.
    pub(crate) fn selects(&self, object: &Selectable) -> bool {
        self.labels.matches(&object.metadata.labels)
            && self.fields.iter().all(|(path, value, equal)| {
                let actual = match path.as_str() {
                    "metadata.name" => &object.metadata.name,
                    "metadata.namespace" => &object.metadata.namespace,
                    "spec.nodeName" => &object.spec.node_name,
                    "status.phase" => &object.status.phase,
                    "involvedObject.name" => &object.involved_object.name,
                    _ => &None,
                };
                (actual.as_deref().unwrap_or("") == value) == *equal
            })
    }
}

/// What selectors can look at of an object: its labels and the fields a field selector may
/// name ([`ListFilter::parse`]). Read from stored JSON without building the whole object, for
/// the state before each change a watch judges.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct Selectable {
    #[serde(deserialize_with = "null_is_default")]
    metadata: SelectableMeta,
    #[serde(deserialize_with = "null_is_default")]
    spec: SelectableSpec,
    #[serde(deserialize_with = "null_is_default")]
    status: SelectableStatus,
    #[serde(rename = "involvedObject", deserialize_with = "null_is_default")]
    involved_object: SelectableMeta,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct SelectableMeta {
    name: Option<String>,
    namespace: Option<String>,
    #[serde(deserialize_with = "null_is_default")]
    labels: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct SelectableSpec {
    #[serde(rename = "nodeName")]
    node_name: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct SelectableStatus {
    phase: Option<String>,
}

/// A field where `null` stands for its default.
fn null_is_default<'de, D: serde::Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::deserialize(d)?.unwrap_or_default())
}

impl Selectable {
    /// The selectable fields of stored JSON; `None` when it is not an object of that shape.
    pub(crate) fn of_stored(bytes: &[u8]) -> Option<Selectable> {
        serde_json::from_slice(bytes).ok()
    }

    /// `spec.nodeName`.
    pub(crate) fn node_name(&self) -> Option<&str> {
        self.spec.node_name.as_deref()
    }
}

/// Options of a delete.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    /// Seconds the workload gets to stop; `Some(0)` deletes at once.
    pub grace_period_seconds: Option<i64>,
    /// Only delete the object with this uid.
    pub precondition_uid: Option<String>,
}

/// One change seen by a watch, in the wire form `{"type": ..., "object": ...}`.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectEvent {
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub type_: &'static str,
    /// The object after the change (before it, for a delete), with its resourceVersion; shared
    /// by every watcher that sees the change.
    pub object: Arc<Value>,
    /// `object` as JSON, encoded once for every HTTP watcher.
    pub(crate) encoded: Arc<std::sync::OnceLock<bytes::Bytes>>,
}

fn name_of(value: &Value) -> &str {
    value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("")
}

fn decode(kv: &KeyValue, revision: Revision) -> Result<Value, ApiError> {
    let mut value: Value = serde_json::from_slice(&kv.value).map_err(|e| ApiError::Internal(format!("stored object {} is not JSON: {e}", kv.key)))?;
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(revision.to_string()));
    }
    Ok(value)
}

/// `value` as stored: without its resourceVersion (taken out for the encoding and put back,
/// not copied around).
fn encode(value: &mut Value) -> Vec<u8> {
    let version = value.get_mut("metadata").and_then(Value::as_object_mut).and_then(|meta| meta.remove("resourceVersion"));
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    if let (Some(version), Some(meta)) = (version, value.get_mut("metadata").and_then(Value::as_object_mut)) {
        meta.insert("resourceVersion".into(), version);
    }
    bytes
}

impl Registry {
    /// A registry over `store`.
    pub fn new(store: Arc<dyn Store>) -> Registry {
        Registry { store, hubs: Arc::default(), service_ranges: ServiceRanges::default() }
    }

    /// This registry, handing Services addresses from `ranges`.
    pub fn with_service_ranges(mut self, ranges: ServiceRanges) -> Registry {
        self.service_ranges = ranges;
        self
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn namespace<'a>(rt: &ResourceType, ns: Option<&'a str>) -> Option<&'a str> {
        if rt.namespaced {
            ns
        } else {
            None
        }
    }

    /// One object.
    pub async fn get(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> Result<Value, ApiError> {
        let key = rt.key(Self::namespace(rt, ns), name);
        match self.store.get(&key).await.map_err(|e| ApiError::from_store(rt, name, e))? {
            Some(kv) => decode(&kv, kv.mod_revision),
            None => Err(ApiError::NotFound { kind: rt.plural.to_string(), name: name.to_string() }),
        }
    }

    /// Every object of `rt` in `ns` (all namespaces when `None`) passing `filter`, and the
    /// revision the list is consistent with.
    pub async fn list(&self, rt: &ResourceType, ns: Option<&str>, filter: &ListFilter) -> Result<(Vec<Value>, Revision), ApiError> {
        let prefix = match Self::namespace(rt, ns) {
            Some(ns) => rt.namespace_prefix(ns),
            None => rt.key_prefix(),
        };
        let (kvs, revision) = self.store.list(&prefix).await.map_err(|e| ApiError::from_store(rt, "", e))?;
        let mut items = Vec::with_capacity(kvs.len());
        for kv in &kvs {
            let value = decode(kv, kv.mod_revision)?;
            if filter.matches(&value) {
                items.push(value);
            }
        }
        Ok((items, revision))
    }

    /// Creates an object: admission, then uid, creation time and generation are set.
    pub async fn create(&self, rt: &ResourceType, ns: Option<&str>, mut body: Value) -> Result<Value, ApiError> {
        let ns = Self::namespace(rt, ns);
        prepare_identity(rt, ns, &mut body)?;
        if let Some(ns) = ns {
            let ns_key = ResourceType::of::<api::Namespace>().key(None, ns);
            if self.store.get(&ns_key).await.map_err(|e| ApiError::from_store(rt, ns, e))?.is_none() {
                return Err(ApiError::NotFound { kind: "namespaces".into(), name: ns.to_string() });
            }
        }
        if name_of(&body).is_empty() {
            let prefix = body.pointer("/metadata/generateName").and_then(Value::as_str).unwrap_or("").to_string();
            body["metadata"]["name"] = Value::String(format!("{prefix}{}", random_suffix()));
        }
        if rt.kind == "Pod" {
            self.resolve_priority(&mut body).await?;
        }
        let mut object = admit(rt, &body, None)?;
        let meta = object["metadata"].as_object_mut().ok_or_else(|| ApiError::BadRequest("metadata must be an object".into()))?;
        meta.insert("uid".into(), Value::String(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), serde_json::to_value(api::now()).unwrap_or_default());
        meta.insert("generation".into(), Value::from(1));
        meta.remove("deletionTimestamp");
        meta.remove("deletionGracePeriodSeconds");
        let name = name_of(&object).to_string();
        let reserved = match (rt.kind, ns) {
            ("Service", Some(ns)) => services::reserve(&self.store, &self.service_ranges, ns, &mut object, None).await?,
            _ => services::Reserved::default(),
        };
        let revision = match self.store.create(&rt.key(ns, &name), encode(&mut object)).await {
            Ok(revision) => revision,
            Err(e) => {
                reserved.release(&self.store).await;
                return Err(ApiError::from_store(rt, &name, e));
            }
        };
        object["metadata"]["resourceVersion"] = Value::String(revision.to_string());
        Ok(object)
    }

    /// Sets a new pod's `spec.priority` (and `preemptionPolicy` when unset) from its
    /// `priorityClassName`, or from the global default class when it names none. A priority
    /// given directly must agree with the class's.
    async fn resolve_priority(&self, body: &mut Value) -> Result<(), ApiError> {
        let name = name_of(body).to_string();
        let invalid = |path: &str, value: &str, why: &str| {
            let mut errors = api::FieldErrors::default();
            errors.push(api::FieldError::invalid(path, value, why));
            ApiError::Invalid { kind: "Pod".into(), name: name.clone(), errors }
        };
        let Some(spec) = body.get_mut("spec").and_then(Value::as_object_mut) else { return Ok(()) };
        let rt = ResourceType::of::<api::PriorityClass>();
        let named = spec.get("priorityClassName").and_then(Value::as_str).filter(|n| !n.is_empty()).map(str::to_string);
        let class: Option<(String, i32, String)> = match named {
            Some(class) => match api::priority::system_class(&class) {
                Some(value) => Some((class, value, "PreemptLowerPriority".into())),
                None => {
                    let stored = self.store.get(&rt.key(None, &class)).await.map_err(|e| ApiError::from_store(rt, &class, e))?;
                    let stored = stored.ok_or_else(|| invalid("spec.priorityClassName", &class, "no PriorityClass has this name"))?;
                    let pc: api::PriorityClass = from_value(decode(&stored, stored.mod_revision)?)?;
                    Some((class, pc.value, pc.preemption_policy.unwrap_or_else(|| "PreemptLowerPriority".into())))
                }
            },
            None => {
                let (items, _) = self.list_as::<api::PriorityClass>(None, &ListFilter::default()).await?;
                items
                    .into_iter()
                    .filter(|c| c.global_default == Some(true))
                    .max_by_key(|c| c.value)
                    .map(|c| (c.metadata.name.unwrap_or_default(), c.value, c.preemption_policy.unwrap_or_else(|| "PreemptLowerPriority".into())))
            }
        };
        let (class_name, value, policy) = class.unwrap_or_else(|| (String::new(), 0, "PreemptLowerPriority".into()));
        if let Some(given) = spec.get("priority").filter(|v| !v.is_null()) {
            if given.as_i64() != Some(value as i64) {
                return Err(invalid(
                    "spec.priority",
                    &given.to_string(),
                    &format!("must not differ from the value of its priority class ({value}); set spec.priorityClassName instead"),
                ));
            }
        }
        spec.insert("priority".into(), Value::from(value));
        if !class_name.is_empty() {
            spec.insert("priorityClassName".into(), Value::String(class_name));
        }
        if spec.get("preemptionPolicy").is_none_or(Value::is_null) {
            spec.insert("preemptionPolicy".into(), Value::String(policy));
        }
        Ok(())
    }

    /// Replaces an object (PUT). With `status_only`, only `status` is taken from `body`;
    /// otherwise `status` is kept from the stored object. A `resourceVersion` in the body must
    /// match the stored one (409 otherwise).
    pub async fn update(&self, rt: &ResourceType, ns: Option<&str>, name: &str, body: Value, status_only: bool) -> Result<Value, ApiError> {
        self.update_guarded(rt, ns, name, body, status_only, &|_| Ok(())).await
    }

    /// [`Registry::update`], refused by `guard` when the stored object is not one the caller may
    /// change (a node's pods): the check reads the object the update reads anyway.
    pub async fn update_guarded(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        mut body: Value,
        status_only: bool,
        guard: &(dyn Fn(&Value) -> Result<(), ApiError> + Sync),
    ) -> Result<Value, ApiError> {
        let ns = Self::namespace(rt, ns);
        prepare_identity(rt, ns, &mut body)?;
        if name_of(&body) != name {
            return Err(ApiError::BadRequest(format!("metadata.name \"{}\" does not match the name \"{name}\" in the URL", name_of(&body))));
        }
        let key = rt.key(ns, name);
        // A pod's status is all a status update of it changes, and pods validate no status
        // field: it is admitted on its own, once, not with the whole old and new pod.
        let pod_status = match (status_only, rt.kind) {
            (true, "Pod") => Some(crate::admission::pod_status(rt, name, body.get_mut("status").map(Value::take).unwrap_or(Value::Null))?),
            _ => None,
        };
        let expected = body.pointer("/metadata/resourceVersion").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        // An update without a resourceVersion is unconditional: when another write lands
        // between the read and the compare-and-swap it is applied again on the newer object,
        // as kube-apiserver's GuaranteedUpdate does, instead of failing with a conflict.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let current = self.store.get(&key).await.map_err(|e| ApiError::from_store(rt, name, e))?;
            let current = current.ok_or_else(|| ApiError::NotFound { kind: rt.plural.to_string(), name: name.to_string() })?;
            let old = decode(&current, current.mod_revision)?;
            guard(&old)?;
            if expected.as_deref().is_some_and(|rv| rv != current.mod_revision.to_string()) {
                return Err(ApiError::Conflict { kind: rt.plural.to_string(), name: name.to_string() });
            }
            // Every lost race is another writer's success, so this ends; the cap only bounds a pathological pile-up.
            let retry_possible = expected.is_none() && attempts < 64;
            if let Some(status) = &pod_status {
                if old.get("status") == Some(status) {
                    return Ok(old);
                }
                let mut object = old;
                object["status"] = status.clone();
                match self.store.update(&key, encode(&mut object), current.mod_revision).await {
                    Ok(revision) => {
                        object["metadata"]["resourceVersion"] = Value::String(revision.to_string());
                        return Ok(object);
                    }
                    Err(StoreError::Conflict { .. }) if retry_possible => continue,
                    Err(e) => return Err(ApiError::from_store(rt, name, e)),
                }
            }
            let merged = if status_only {
                let mut m = old.clone();
                m["status"] = body.get("status").cloned().unwrap_or(Value::Null);
                m
            } else {
                merge_spec_update(if retry_possible { body.clone() } else { std::mem::take(&mut body) }, &old)
            };
            let service = rt.kind == "Service" && !status_only;
            let mut merged = merged;
            if service {
                services::keep_allocated(&mut merged, &old);
            }
            let mut object = admit(rt, &merged, Some(&old))?;
            if object == old {
                return Ok(old);
            }
            let reserved = match ns {
                Some(ns) if service => services::reserve(&self.store, &self.service_ranges, ns, &mut object, Some(&old)).await?,
                _ => services::Reserved::default(),
            };
            match self.store.update(&key, encode(&mut object), current.mod_revision).await {
                Ok(revision) => {
                    if let (true, Some(ns)) = (service, ns) {
                        services::release_unused(&self.store, ns, &old, Some(&object)).await;
                    }
                    object["metadata"]["resourceVersion"] = Value::String(revision.to_string());
                    return Ok(object);
                }
                Err(StoreError::Conflict { .. }) if retry_possible => {
                    reserved.release(&self.store).await;
                    continue;
                }
                Err(e) => {
                    reserved.release(&self.store).await;
                    return Err(ApiError::from_store(rt, name, e));
                }
            }
        }
    }

    /// Binds `pod`, as the caller last saw it (its resourceVersion), to `node`: the scheduler's
    /// `pods/binding`. Only `spec.nodeName` changes, so the pod is not admitted again (a full
    /// update decodes, defaults and validates the old and new pod for it). A pod that changed
    /// since, is bound already, or is being deleted is a conflict.
    pub async fn bind(&self, pod: &api::Pod, node: &str) -> Result<api::Pod, ApiError> {
        let rt = ResourceType::of::<api::Pod>();
        let (ns, name) = (pod.metadata.namespace.as_deref(), pod.metadata.name.as_deref().unwrap_or_default());
        let key = rt.key(ns, name);
        let conflict = || ApiError::Conflict { kind: rt.plural.to_string(), name: name.to_string() };
        let current = self.store.get(&key).await.map_err(|e| ApiError::from_store(rt, name, e))?;
        let current = current.ok_or_else(|| ApiError::NotFound { kind: rt.plural.to_string(), name: name.to_string() })?;
        if pod.metadata.resource_version.as_deref() != Some(current.mod_revision.to_string().as_str()) {
            return Err(conflict());
        }
        let mut stored: Value = serde_json::from_slice(&current.value).map_err(|e| ApiError::Internal(format!("stored object {key} is not JSON: {e}")))?;
        if !stored.get("spec").is_some_and(Value::is_object) {
            return Err(ApiError::Internal(format!("stored pod {key} has no spec")));
        }
        if stored.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty()) || stored.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(conflict());
        }
        let generation = stored.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1) + 1;
        stored["spec"]["nodeName"] = Value::String(node.to_string());
        stored["metadata"]["generation"] = Value::from(generation);
        let bytes = serde_json::to_vec(&stored).map_err(|e| ApiError::Internal(format!("encoding {key}: {e}")))?;
        let revision = self.store.update(&key, bytes, current.mod_revision).await.map_err(|e| ApiError::from_store(rt, name, e))?;
        let mut bound = pod.clone();
        bound.spec.get_or_insert_with(Default::default).node_name = Some(node.to_string());
        bound.metadata.generation = Some(generation);
        bound.metadata.resource_version = Some(revision.to_string());
        Ok(bound)
    }

    /// Deletes an object. A pod bound to a node is first marked terminating (deletionTimestamp)
    /// so its agent can stop it gracefully; the agent then deletes it with a grace of 0.
    pub async fn delete(&self, rt: &ResourceType, ns: Option<&str>, name: &str, opts: &DeleteOptions) -> Result<Value, ApiError> {
        let ns = Self::namespace(rt, ns);
        let key = rt.key(ns, name);
        let current = self.store.get(&key).await.map_err(|e| ApiError::from_store(rt, name, e))?;
        let current = current.ok_or_else(|| ApiError::NotFound { kind: rt.plural.to_string(), name: name.to_string() })?;
        let mut object = decode(&current, current.mod_revision)?;
        if let Some(uid) = opts.precondition_uid.as_deref() {
            if object.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid) {
                return Err(ApiError::Conflict { kind: rt.plural.to_string(), name: name.to_string() });
            }
        }
        let bound = object.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
        let grace = opts.grace_period_seconds.or_else(|| object.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64)).unwrap_or(30);
        let graceful = rt.kind == "Pod" && bound && grace > 0;
        if graceful {
            if object.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(object);
            }
            let deadline = api::jiff::Timestamp::now() + api::jiff::SignedDuration::from_secs(grace);
            object["metadata"]["deletionTimestamp"] = serde_json::to_value(api::Time(deadline)).unwrap_or_default();
            object["metadata"]["deletionGracePeriodSeconds"] = Value::from(grace);
            let revision = self.store.update(&key, encode(&mut object), current.mod_revision).await.map_err(|e| ApiError::from_store(rt, name, e))?;
            object["metadata"]["resourceVersion"] = Value::String(revision.to_string());
            return Ok(object);
        }
        let (revision, _) = self.store.delete(&key, Some(current.mod_revision)).await.map_err(|e| ApiError::from_store(rt, name, e))?;
        if let ("Service", Some(ns)) = (rt.kind, ns) {
            services::release_unused(&self.store, ns, &object, None).await;
        }
        object["metadata"]["resourceVersion"] = Value::String(revision.to_string());
        Ok(object)
    }

    /// Every change to objects of `rt` in `ns` (all namespaces when `None`) after revision
    /// `after`, as Kubernetes reports them through `filter`: an object entering the selection
    /// is ADDED, one leaving it is DELETED. Served by the type's fan-out hub when it holds the
    /// history since `after`, else by a watch of the store of its own.
    pub async fn watch(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        filter: ListFilter,
        after: Revision,
    ) -> Result<impl Stream<Item = Result<ObjectEvent, ApiError>> + Send + 'static, ApiError> {
        let prefix = match Self::namespace(rt, ns) {
            Some(ns) => rt.namespace_prefix(ns),
            None => rt.key_prefix(),
        };
        let rt_copy = *rt;
        let hub = self.hub(rt, after).await?;
        if after > hub.latest() {
            let current = self.store.revision().await.map_err(|e| ApiError::from_store(rt, "", e))?;
            if after > current {
                return Err(ApiError::from_store(rt, "", store::StoreError::FutureRevision { requested: after, current }));
            }
        }
        let seen = match hub.subscribe(prefix.clone(), filter.clone(), after) {
            Some((rx, ending)) => fanout::stream(rx, ending).boxed(),
            None => {
                let events = self.store.watch(&prefix, after).await.map_err(|e| ApiError::from_store(rt, "", e))?;
                events
                    .filter_map(move |event| {
                        let seen = event.map_err(|e| ApiError::from_store(&rt_copy, "", e)).and_then(|event| fanout::Change::decode(&event)).map(|change| {
                            let change = Arc::new(change);
                            fanout::selected(&filter, &change).map(|type_| (type_, change))
                        });
                        futures::future::ready(seen.transpose())
                    })
                    .boxed()
            }
        };
        Ok(seen.map(|seen| seen.map(|(type_, change)| ObjectEvent { type_, object: change.now.clone(), encoded: change.encoded.clone() })))
    }

    /// The fan-out hub of `rt`, started if it is not running: complete from `after`, or, in
    /// place of a hub that failed, from where that one had got to, so the watches of clients
    /// that listed before the failure are still served by it.
    async fn hub(&self, rt: &ResourceType, after: Revision) -> Result<Arc<fanout::Hub>, ApiError> {
        let prefix = rt.key_prefix();
        // One slot per type: starting a hub awaits the store, and only the watches of that
        // type wait for it.
        let slot = self.hubs.lock().unwrap_or_else(|e| e.into_inner()).entry(prefix.clone()).or_default().clone();
        let mut slot = slot.lock().await;
        let start = match slot.as_ref() {
            Some(hub) if !hub.failed() => return Ok(hub.clone()),
            Some(failed) => after.min(failed.latest()),
            None => after,
        };
        let hub = fanout::Hub::start(&self.store, &prefix, start).await.map_err(|e| ApiError::from_store(rt, "", e))?;
        *slot = Some(hub.clone());
        Ok(hub)
    }
}

/// Fills `apiVersion`/`kind` when absent, checks them when present, and puts the namespace
/// from the URL into the body (a different namespace in the body is an error).
fn prepare_identity(rt: &ResourceType, ns: Option<&str>, body: &mut Value) -> Result<(), ApiError> {
    let object = body.as_object_mut().ok_or_else(|| ApiError::BadRequest(format!("the body must be a JSON object of kind {}", rt.kind)))?;
    for (field, expected) in [("apiVersion", rt.api_version()), ("kind", rt.kind.to_string())] {
        match object.get(field).and_then(Value::as_str) {
            None => {
                object.insert(field.into(), Value::String(expected));
            }
            Some(given) if given == expected => {}
            Some(given) => return Err(ApiError::BadRequest(format!("{field} \"{given}\" does not match the URL, which expects \"{expected}\""))),
        }
    }
    let meta = object.entry("metadata").or_insert_with(|| Value::Object(Default::default()));
    let meta = meta.as_object_mut().ok_or_else(|| ApiError::BadRequest("metadata must be an object".into()))?;
    match (ns, meta.get("namespace").and_then(Value::as_str)) {
        (Some(url), Some(given)) if url != given => {
            return Err(ApiError::BadRequest(format!("metadata.namespace \"{given}\" does not match the namespace \"{url}\" in the URL")))
        }
        (Some(url), _) => {
            meta.insert("namespace".into(), Value::String(url.to_string()));
        }
        (None, _) => {
            meta.remove("namespace");
        }
    }
    Ok(())
}

fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::thread_rng();
    (0..5).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}

/// Typed access for in-process callers (controllers, the scheduler).
impl Registry {
    /// Gets one typed object.
    pub async fn get_as<K: Typed>(&self, ns: Option<&str>, name: &str) -> Result<K, ApiError> {
        from_value(self.get(ResourceType::of::<K>(), ns, name).await?)
    }

    /// Lists typed objects.
    pub async fn list_as<K: Typed>(&self, ns: Option<&str>, filter: &ListFilter) -> Result<(Vec<K>, Revision), ApiError> {
        let (items, revision) = self.list(ResourceType::of::<K>(), ns, filter).await?;
        Ok((items.into_iter().map(from_value).collect::<Result<_, _>>()?, revision))
    }

    /// Creates a typed object in its own namespace.
    pub async fn create_as<K: Typed>(&self, object: &K) -> Result<K, ApiError> {
        let ns = object.metadata().namespace.clone();
        from_value(self.create(ResourceType::of::<K>(), ns.as_deref(), to_value(object)?).await?)
    }

    /// Replaces a typed object (its resourceVersion is the compare-and-swap token).
    pub async fn update_as<K: Typed>(&self, object: &K) -> Result<K, ApiError> {
        let (ns, name) = (object.metadata().namespace.clone(), object.metadata().name.clone().unwrap_or_default());
        from_value(self.update(ResourceType::of::<K>(), ns.as_deref(), &name, to_value(object)?, false).await?)
    }

    /// Replaces a typed object's status.
    pub async fn update_status_as<K: Typed>(&self, object: &K) -> Result<K, ApiError> {
        let (ns, name) = (object.metadata().namespace.clone(), object.metadata().name.clone().unwrap_or_default());
        from_value(self.update(ResourceType::of::<K>(), ns.as_deref(), &name, to_value(object)?, true).await?)
    }

    /// Deletes a typed object.
    pub async fn delete_as<K: Typed>(&self, ns: Option<&str>, name: &str, opts: &DeleteOptions) -> Result<K, ApiError> {
        from_value(self.delete(ResourceType::of::<K>(), ns, name, opts).await?)
    }
}

/// What the typed helpers need of a k8s-openapi type.
pub trait Typed: Resource + Metadata<Ty = ObjectMeta> + Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<K: Resource + Metadata<Ty = ObjectMeta> + Serialize + DeserializeOwned + Send + Sync + 'static> Typed for K {}

/// Decodes a stored object into its type.
pub fn from_value<K: DeserializeOwned>(value: Value) -> Result<K, ApiError> {
    serde_json::from_value(value).map_err(|e| ApiError::Internal(format!("stored object does not decode: {e}")))
}

fn to_value<K: Serialize>(object: &K) -> Result<Value, ApiError> {
    serde_json::to_value(object).map_err(|e| ApiError::Internal(format!("encoding object: {e}")))
}

/// A spec update `body` over the stored `old`: status and the server-owned metadata are kept
/// from `old`, and the generation moves on when the spec changed.
fn merge_spec_update(mut m: Value, old: &Value) -> Value {
    match old.get("status") {
        Some(s) => m["status"] = s.clone(),
        None => {
            if let Some(o) = m.as_object_mut() {
                o.remove("status");
            }
        }
    }
    for field in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"] {
        match old["metadata"].get(field) {
            Some(v) => m["metadata"][field] = v.clone(),
            None => {
                if let Some(meta) = m["metadata"].as_object_mut() {
                    meta.remove(field);
                }
            }
        }
    }
    if m.get("spec") != old.get("spec") {
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
        m["metadata"]["generation"] = Value::from(generation);
    }
    m
}

#[cfg(test)]
mod tests;
