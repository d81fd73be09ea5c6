//! Service addresses: every Service's cluster IP and node ports are handed out here, once, at
//! create (or when an update adds a node port), and taken back when it is deleted. A reserved
//! address is a store key of its own, created with `create` (which fails when the key exists),
//! so two API servers racing for one address cannot both win it.

use std::net::Ipv4Addr;
use std::sync::Arc;

use rand::Rng;
use serde_json::Value;
use store::{Store, StoreError};

use crate::error::ApiError;

/// Outside `/registry/`, so no API path reaches them.
const IP_PREFIX: &str = "/flotilla/serviceips/";
const NODE_PORT_PREFIX: &str = "/flotilla/nodeports/";

/// Where cluster IPs and node ports come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceRanges {
    /// The service network's address.
    pub network: Ipv4Addr,
    /// Its prefix length (8 to 30).
    pub prefix: u8,
    /// The node-port range, inclusive.
    pub node_ports: (u16, u16),
}

impl Default for ServiceRanges {
    fn default() -> Self {
        ServiceRanges { network: Ipv4Addr::new(10, 96, 0, 0), prefix: 16, node_ports: api::service::DEFAULT_NODE_PORTS }
    }
}

impl ServiceRanges {
    /// Parses `--service-cidr` and `--service-node-port-range` (`30000-32767`).
    pub fn parse(cidr: &str, node_ports: &str) -> Result<ServiceRanges, String> {
        let (network, prefix) = api::validation::parse_ipv4_network(cidr).map_err(|e| format!("--service-cidr {cidr}: {e}"))?;
        if !(8..=30).contains(&prefix) {
            return Err(format!("--service-cidr {cidr}: the prefix length must be from 8 to 30"));
        }
        let range = node_ports.split_once('-').and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)));
        let node_ports =
            range.filter(|(a, b)| *a >= 1 && a <= b).ok_or_else(|| format!("--service-node-port-range {node_ports}: expected FIRST-LAST, e.g. 30000-32767"))?;
        Ok(ServiceRanges { network, prefix, node_ports })
    }

    /// The addresses handed out: the network without its own address, the first host (kept
    /// for the cluster's own use, as Kubernetes keeps it) and the broadcast address.
    fn hosts(&self) -> (u32, u32) {
        let base = u32::from(self.network);
        let size = 1u32 << (32 - self.prefix);
        (base + 2, base + size - 2)
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        let (first, last) = self.hosts();
        (first..=last).contains(&u32::from(ip))
    }
}

/// The reservations a write made, released again when the write fails.
#[derive(Debug, Default)]
pub(crate) struct Reserved(Vec<String>);

impl Reserved {
    pub(crate) async fn release(self, store: &Arc<dyn Store>) {
        for key in self.0 {
            let _ = store.delete(&key, None).await;
        }
    }
}

fn invalid(name: &str, path: &str, value: impl std::fmt::Display, why: &str) -> ApiError {
    let mut errors = api::FieldErrors::default();
    errors.push(api::FieldError::invalid(path, value, why));
    ApiError::Invalid { kind: "Service".into(), name: name.to_string(), errors }
}

fn internal(e: StoreError) -> ApiError {
    ApiError::Internal(format!("service address allocation: {e}"))
}

/// A reservation's value: the holder and when it was taken (seconds since the epoch).
fn owner(ns: &str, name: &str) -> Vec<u8> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    format!("{ns}/{name} {now}").into_bytes()
}

/// The holder (`ns/name`) of a reservation and its age.
fn holder(value: &[u8]) -> (String, std::time::Duration) {
    let text = String::from_utf8_lossy(value);
    let (holder, taken) = text.split_once(' ').unwrap_or((&text, "0"));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    (holder.to_string(), std::time::Duration::from_secs(now.saturating_sub(taken.parse().unwrap_or(0))))
}

/// The node ports of a Service, by (port, protocol).
fn node_ports(service: &Value) -> Vec<((u64, String), u64)> {
    let ports = service.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default();
    ports
        .iter()
        .filter_map(|p| {
            let key = (p.get("port")?.as_u64()?, p.get("protocol").and_then(Value::as_str).unwrap_or("TCP").to_string());
            Some((key, p.get("nodePort")?.as_u64().filter(|n| *n != 0)?))
        })
        .collect()
}

fn is_node_port(service: &Value) -> bool {
    service.pointer("/spec/type").and_then(Value::as_str) == Some("NodePort")
}

/// Copies into `new` (an update's body, before admission) what the stored Service was given
/// and the body leaves out, as Kubernetes keeps it: the cluster IP, and the node port of
/// every port that stays.
pub(crate) fn keep_allocated(new: &mut Value, old: &Value) {
    let old_ip = old.pointer("/spec/clusterIP").cloned();
    if let (Some(spec), Some(ip)) = (new.get_mut("spec").and_then(Value::as_object_mut), old_ip) {
        if spec.get("clusterIP").is_none_or(|v| v.is_null() || v == "") {
            spec.insert("clusterIP".into(), ip.clone());
            spec.insert("clusterIPs".into(), Value::Array(vec![ip]));
        }
    }
    if !is_node_port(new) || !is_node_port(old) {
        return;
    }
    let kept = node_ports(old);
    for port in new.pointer_mut("/spec/ports").and_then(Value::as_array_mut).into_iter().flatten() {
        if port.get("nodePort").is_some_and(|n| !n.is_null() && n != 0) {
            continue;
        }
        let key = (port.get("port").and_then(Value::as_u64).unwrap_or(0), port.get("protocol").and_then(Value::as_str).unwrap_or("TCP").to_string());
        if let Some((_, n)) = kept.iter().find(|(k, _)| *k == key) {
            port["nodePort"] = Value::from(*n);
        }
    }
}

/// Reserves, for the admitted Service `service` (whose stored form is `old` on update), the
/// cluster IP and node ports it names or needs, writing the chosen ones into it.
pub(crate) async fn reserve(store: &Arc<dyn Store>, ranges: &ServiceRanges, ns: &str, service: &mut Value, old: Option<&Value>) -> Result<Reserved, ApiError> {
    let name = service.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    let mut reserved = Reserved::default();
    let result = reserve_into(store, ranges, ns, &name, service, old, &mut reserved).await;
    if result.is_err() {
        reserved.release(store).await;
        return result.map(|_| Reserved::default());
    }
    Ok(reserved)
}

async fn reserve_into(
    store: &Arc<dyn Store>,
    ranges: &ServiceRanges,
    ns: &str,
    name: &str,
    service: &mut Value,
    old: Option<&Value>,
    reserved: &mut Reserved,
) -> Result<(), ApiError> {
    let old_ip = old.and_then(|o| o.pointer("/spec/clusterIP")).and_then(Value::as_str).map(str::to_string);
    let ip = service.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or_default().to_string();
    if ip != api::service::HEADLESS && old_ip.as_deref() != Some(ip.as_str()) {
        let chosen = if ip.is_empty() {
            let (first, last) = ranges.hosts();
            let span = last - first + 1;
            let start = rand::thread_rng().gen_range(0..span);
            let mut found = None;
            for i in 0..span {
                let candidate = Ipv4Addr::from(first + (start + i) % span);
                if claim(store, &format!("{IP_PREFIX}{candidate}"), ns, name, reserved).await? {
                    found = Some(candidate);
                    break;
                }
            }
            found.ok_or_else(|| invalid(name, "spec.clusterIP", "", "the service network has no free address left"))?
        } else {
            let wanted: Ipv4Addr = ip.parse().map_err(|_| invalid(name, "spec.clusterIP", &ip, "must be an IPv4 address"))?;
            if !ranges.contains(wanted) {
                let why = format!("is not in the service network {}/{} (or is one it keeps)", ranges.network, ranges.prefix);
                return Err(invalid(name, "spec.clusterIP", wanted, &why));
            }
            if !claim(store, &format!("{IP_PREFIX}{wanted}"), ns, name, reserved).await? {
                return Err(invalid(name, "spec.clusterIP", wanted, "is already allocated to another Service"));
            }
            wanted
        };
        service["spec"]["clusterIP"] = Value::String(chosen.to_string());
        service["spec"]["clusterIPs"] = Value::Array(vec![Value::String(chosen.to_string())]);
    }
    if !is_node_port(service) {
        return Ok(());
    }
    let held: Vec<u64> = old.filter(|o| is_node_port(o)).map(node_ports).unwrap_or_default().into_iter().map(|(_, n)| n).collect();
    let (low, high) = ranges.node_ports;
    let ports = service.pointer_mut("/spec/ports").and_then(Value::as_array_mut).map(std::mem::take).unwrap_or_default();
    // A port of this Service must not be handed a node port another of its ports has.
    let mut taken: std::collections::BTreeSet<u64> = held.iter().copied().collect();
    taken.extend(ports.iter().filter_map(|p| p.get("nodePort").and_then(Value::as_u64)));
    let mut out = Vec::with_capacity(ports.len());
    for (i, mut port) in ports.into_iter().enumerate() {
        let given = port.get("nodePort").and_then(Value::as_u64).filter(|n| *n != 0);
        match given {
            Some(n) if held.contains(&n) => {}
            Some(n) => {
                if !(u64::from(low)..=u64::from(high)).contains(&n) {
                    return Err(invalid(name, &format!("spec.ports[{i}].nodePort"), n, &format!("must be in the node-port range {low}-{high}")));
                }
                if !claim(store, &format!("{NODE_PORT_PREFIX}{n}"), ns, name, reserved).await? {
                    return Err(invalid(name, &format!("spec.ports[{i}].nodePort"), n, "is already allocated to another Service"));
                }
            }
            None => {
                let span = u32::from(high - low) + 1;
                let start = rand::thread_rng().gen_range(0..span);
                let mut found = None;
                for j in 0..span {
                    let candidate = u32::from(low) + (start + j) % span;
                    if taken.contains(&u64::from(candidate)) {
                        continue;
                    }
                    if claim(store, &format!("{NODE_PORT_PREFIX}{candidate}"), ns, name, reserved).await? {
                        found = Some(candidate);
                        break;
                    }
                }
                let n = found.ok_or_else(|| invalid(name, &format!("spec.ports[{i}].nodePort"), "", "the node-port range has no free port left"))?;
                taken.insert(u64::from(n));
                port["nodePort"] = Value::from(n);
            }
        }
        out.push(port);
    }
    service["spec"]["ports"] = Value::Array(out);
    Ok(())
}

/// Takes `key` for `ns/name`; false when another Service holds it. A reservation whose
/// Service is gone (a server that stopped between reserving and storing) is taken over.
async fn claim(store: &Arc<dyn Store>, key: &str, ns: &str, name: &str, reserved: &mut Reserved) -> Result<bool, ApiError> {
    match store.create(key, owner(ns, name)).await {
        Ok(_) => {
            reserved.0.push(key.to_string());
            Ok(true)
        }
        Err(StoreError::AlreadyExists { .. }) => {
            let Some(current) = store.get(key).await.map_err(internal)? else { return Ok(false) };
            let (holder, age) = holder(&current.value);
            if holder == format!("{ns}/{name}") {
                return Ok(true);
            }
            let (holder_ns, holder_name) = holder.split_once('/').unwrap_or(("", ""));
            let services = api::ResourceType::of::<api::Service>();
            let stored = store.get(&services.key(Some(holder_ns), holder_name)).await.map_err(internal)?;
            let still_held = stored.is_some_and(|kv| {
                let service: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
                holds(&service, key)
            });
            // An orphan younger than this is most likely a create still in flight.
            let orphan_age = std::time::Duration::from_secs(30);
            let old_enough = age >= orphan_age;
            if still_held || !old_enough {
                return Ok(false);
            }
            match store.update(key, owner(ns, name), current.mod_revision).await {
                Ok(_) => {
                    reserved.0.push(key.to_string());
                    Ok(true)
                }
                Err(StoreError::Conflict { .. }) => Ok(false),
                Err(e) => Err(internal(e)),
            }
        }
        Err(e) => Err(internal(e)),
    }
}

/// Whether the stored `service` uses the reservation `key`.
fn holds(service: &Value, key: &str) -> bool {
    if let Some(ip) = key.strip_prefix(IP_PREFIX) {
        return service.pointer("/spec/clusterIP").and_then(Value::as_str) == Some(ip);
    }
    let port: Option<u64> = key.strip_prefix(NODE_PORT_PREFIX).and_then(|p| p.parse().ok());
    port.is_some_and(|port| is_node_port(service) && node_ports(service).iter().any(|(_, n)| *n == port))
}

/// Releases what `old` held and `new` (the Service after an update; `None` once deleted)
/// no longer does.
pub(crate) async fn release_unused(store: &Arc<dyn Store>, ns: &str, old: &Value, new: Option<&Value>) {
    let name = old.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let mut keys = Vec::new();
    if let Some(ip) = old.pointer("/spec/clusterIP").and_then(Value::as_str).filter(|ip| !ip.is_empty() && *ip != api::service::HEADLESS) {
        keys.push(format!("{IP_PREFIX}{ip}"));
    }
    if is_node_port(old) {
        keys.extend(node_ports(old).into_iter().map(|(_, n)| format!("{NODE_PORT_PREFIX}{n}")));
    }
    for key in keys {
        if new.is_some_and(|new| holds(new, &key)) {
            continue;
        }
        if let Ok(Some(current)) = store.get(&key).await {
            if holder(&current.value).0 == format!("{ns}/{name}") {
                let _ = store.delete(&key, Some(current.mod_revision)).await;
            }
        }
    }
}
