//! Hollow agents: nodes that register, renew their Lease and report every pod bound to them
//! Running, through the API exactly as a real agent does, but start nothing. They put a
//! fleet's load on the control plane for `flotilla bench cluster` (Kubernetes' kubemark does
//! the same with hollow kubelets).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use api::k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use api::{Node, Pod};
use client::{Client, ClientError, Selectors};
use futures::StreamExt;
use serde_json::{json, Value};

use crate::config::AgentConfig;
use crate::devices::NodeDevices;
use crate::node::{self, Heartbeat};

/// What a hollow node advertises.
#[derive(Clone, Debug)]
pub struct HollowNode {
    /// Its name.
    pub name: String,
    /// Its number in the fleet: picks its addresses (10.<n/256>.<n%256>.0/24 for pods).
    pub index: u32,
    /// CPUs, memory (a quantity) and pods.
    pub cpus: u32,
    pub memory: String,
    pub max_pods: u32,
    /// Extra labels (zone, site …).
    pub labels: BTreeMap<String, String>,
    /// Lease renewal period.
    pub heartbeat: Duration,
}

impl HollowNode {
    fn config(&self) -> AgentConfig {
        let mut config = AgentConfig::new(&self.name, std::path::Path::new("/nonexistent"));
        let [hi, lo] = u16::try_from(self.index % 65536).unwrap_or(0).to_be_bytes();
        config.node_ip = IpAddr::V4(Ipv4Addr::new(172, 30 + (hi >> 6), hi & 63, lo));
        config.pod_cidr = format!("10.{hi}.{lo}.0/24");
        config
    }

    /// The Node object, as `node::describe` makes it, with the hollow capacity and labels.
    pub fn describe(&self) -> Node {
        let mut node = node::describe(&self.config(), 10250, &NodeDevices::default());
        let capacity: BTreeMap<String, Quantity> = [
            ("cpu".to_string(), Quantity(self.cpus.to_string())),
            ("memory".to_string(), Quantity(self.memory.clone())),
            ("pods".to_string(), Quantity(self.max_pods.to_string())),
        ]
        .into();
        if let Some(status) = node.status.as_mut() {
            status.capacity = Some(capacity.clone());
            status.allocatable = Some(capacity);
        }
        node.metadata.labels.get_or_insert_with(Default::default).extend(self.labels.clone());
        node
    }
}

/// Registers `node` and serves it until the task is dropped: heartbeats, and every pod bound
/// to it reported Running (and finished when it is deleted). Fails only if registration does.
pub async fn run(client: Client, node: HollowNode) -> Result<(), ClientError> {
    node::register(&client, node.describe()).await?;
    let heartbeat_client = client.clone();
    let (name, period) = (node.name.clone(), node.heartbeat);
    let heartbeats = tokio::spawn(async move {
        let mut lease = Heartbeat::default();
        loop {
            if let Err(e) = lease.renew(&heartbeat_client, &name).await {
                tracing::debug!(node = %name, error = %e, "hollow node: renewing the lease");
            }
            tokio::time::sleep(period).await;
        }
    });
    let _stop_heartbeats = AbortOnDrop(heartbeats);
    let config = node.config();
    let mut addresses = Addresses { host_ip: config.node_ip.to_string(), pod_prefix: config.pod_cidr.trim_end_matches(".0/24").to_string(), next: 2 };
    loop {
        if let Err(e) = serve_pods(&client, &node.name, &mut addresses).await {
            tracing::debug!(node = %node.name, error = %e, "hollow node: pod watch ended; listing again");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The node's address and the pod addresses it hands out, from its /24.
struct Addresses {
    host_ip: String,
    pod_prefix: String,
    next: u8,
}

impl Addresses {
    fn next_pod_ip(&mut self) -> String {
        let ip = format!("{}.{}", self.pod_prefix, self.next);
        self.next = self.next.wrapping_add(1).max(2);
        ip
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn serve_pods(client: &Client, node: &str, addresses: &mut Addresses) -> Result<(), ClientError> {
    let pods = api::ResourceType::of::<Pod>();
    let selectors = Selectors { fields: Some(format!("spec.nodeName={node}")), labels: None };
    let (items, revision) = client.list(pods, None, &selectors).await?;
    for pod in items {
        handle(client, pod, addresses).await?;
    }
    let mut events = client.watch(pods, None, &selectors, &revision).await?;
    while let Some(event) = events.next().await {
        let event = event?;
        if event.type_ != "DELETED" {
            handle(client, event.object, addresses).await?;
        }
    }
    Ok(())
}

/// Reports a new pod Running; finishes a deleted one.
async fn handle(client: &Client, mut pod: Value, addresses: &mut Addresses) -> Result<(), ClientError> {
    let pods = api::ResourceType::of::<Pod>();
    let ns = pod.pointer("/metadata/namespace").and_then(Value::as_str).map(str::to_string);
    let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        return match client.delete(pods, ns.as_deref(), &name, Some(0)).await {
            Err(e) if !e.is_not_found() && !e.is_conflict() => Err(e),
            _ => Ok(()),
        };
    }
    if pod.pointer("/status/phase").and_then(Value::as_str) == Some("Running") {
        return Ok(());
    }
    let pod_ip = addresses.next_pod_ip();
    let now = api::jiff::Timestamp::now().to_string();
    let containers: Vec<Value> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            let container = c.get("name").and_then(Value::as_str).unwrap_or_default();
            json!({
                "name": container, "image": c.get("image").cloned().unwrap_or_default(), "imageID": "",
                "containerID": format!("hollow://{name}-{container}"), "ready": true, "started": true, "restartCount": 0,
                "state": {"running": {"startedAt": now}},
            })
        })
        .collect();
    let condition = |kind: &str| json!({"type": kind, "status": "True", "lastTransitionTime": now});
    let host_ip = &addresses.host_ip;
    let status = &mut pod["status"];
    status["phase"] = json!("Running");
    status["hostIP"] = json!(host_ip);
    status["hostIPs"] = json!([{"ip": host_ip}]);
    status["podIP"] = json!(pod_ip);
    status["podIPs"] = json!([{"ip": pod_ip}]);
    status["startTime"] = json!(now);
    status["containerStatuses"] = Value::Array(containers);
    status["conditions"] = json!(["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"].map(condition));
    match client.update_status(pods, ns.as_deref(), &name, &pod).await {
        // Changed or deleted meanwhile: the watch brings what it is now.
        Err(e) if e.is_conflict() || e.is_not_found() => Ok(()),
        other => other.map(|_| ()),
    }
}
