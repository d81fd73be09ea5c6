//! The agent's Node: registration with the machine's real capacity, Ready condition, and a
//! Lease renewed as the heartbeat.

use std::collections::BTreeMap;

use api::k8s_openapi::api::coordination::v1::LeaseSpec;
use api::k8s_openapi::api::core::v1::{DaemonEndpoint, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo};
use api::k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use api::k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use api::{Lease, Node, ObjectMeta};
use client::{Client, ClientError};

use crate::config::AgentConfig;
use crate::devices::NodeDevices;

/// The namespace of node heartbeat Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// CPUs and memory of this machine: (logical CPUs, bytes of memory).
pub fn machine_capacity() -> (usize, u64) {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<u64>().ok()))
        .unwrap_or(0);
    (cpus, mem_kib * 1024)
}

/// The most pods a node runs at once (the kubelet's default).
pub const MAX_PODS: i64 = 110;

/// The Node object this agent reports, with its devices as extended resources and labels.
pub fn describe(config: &AgentConfig, port: u16, devices: &NodeDevices) -> Node {
    let (cpus, memory) = machine_capacity();
    let capacity: BTreeMap<String, Quantity> = [
        ("cpu".to_string(), Quantity(cpus.to_string())),
        ("memory".to_string(), Quantity(format!("{}Ki", memory / 1024))),
        ("pods".to_string(), Quantity(MAX_PODS.to_string())),
    ]
    .into();
    let labels: BTreeMap<String, String> = [
        ("kubernetes.io/hostname".to_string(), config.node_name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        (
            "kubernetes.io/arch".to_string(),
            match std::env::consts::ARCH {
                "x86_64" => "amd64",
                "aarch64" => "arm64",
                a => a,
            }
            .to_string(),
        ),
    ]
    .into();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let mut node = Node {
        metadata: ObjectMeta { name: Some(config.node_name.clone()), labels: Some(labels), ..Default::default() },
        // Without a network of its own the node asks for one: the control plane assigns it.
        spec: Some(match config.pod_cidr.as_str() {
            "" => NodeSpec::default(),
            cidr => NodeSpec { pod_cidr: Some(cidr.to_string()), pod_cidrs: Some(vec![cidr.to_string()]), ..Default::default() },
        }),
        status: Some(NodeStatus {
            capacity: Some(capacity.clone()),
            allocatable: Some(capacity),
            addresses: Some(vec![
                NodeAddress { type_: "InternalIP".into(), address: config.node_ip.to_string() },
                NodeAddress { type_: "Hostname".into(), address: config.node_name.clone() },
            ]),
            daemon_endpoints: Some(NodeDaemonEndpoints { kubelet_endpoint: Some(DaemonEndpoint { port: port as i32 }) }),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: Some("KubeletReady".into()),
                message: Some("flotilla agent is posting ready status".into()),
                last_heartbeat_time: Some(api::now()),
                last_transition_time: Some(api::now()),
            }]),
            node_info: Some(NodeSystemInfo {
                architecture: std::env::consts::ARCH.into(),
                container_runtime_version: config.runtime.clone(),
                kernel_version: kernel,
                kubelet_version: format!("flotilla-{}", env!("CARGO_PKG_VERSION")),
                operating_system: "linux".into(),
                os_image: os_image(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    devices.apply(&mut node);
    node
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string())))
        .unwrap_or_else(|| "Linux".into())
}

/// Creates or refreshes the Node object `wanted` (see [`describe`]); an existing Node's status
/// is replaced with the wanted one, keeping when it last became Ready.
pub async fn register(client: &Client, wanted: Node) -> Result<Node, ClientError> {
    let name = wanted.metadata.name.clone().unwrap_or_default();
    let name = name.as_str();
    match client.get_as::<Node>(None, name).await {
        Err(e) if e.is_not_found() => {
            let created = client.create_as(None, &wanted).await?;
            let mut with_status = created.clone();
            with_status.status = wanted.status;
            // Unconditional: the control plane may already have written the new Node (its pod
            // network), and the status is this agent's alone.
            with_status.metadata.resource_version = None;
            client.update_status_as(None, name, &with_status).await
        }
        Err(e) => Err(e),
        Ok(mut existing) => {
            let mut status = wanted.status.unwrap_or_default();
            let was_ready = existing.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|c| c.iter().find(|c| c.type_ == "Ready")).cloned();
            if let (Some(previous), Some(conditions)) = (was_ready, status.conditions.as_mut()) {
                if previous.status == "True" {
                    conditions[0].last_transition_time = previous.last_transition_time;
                }
            }
            existing.status = Some(status);
            existing.metadata.resource_version = None;
            client.update_status_as(None, name, &existing).await
        }
    }
}

/// The pod network this node's pods get addresses from: the Node's `spec.podCIDR`, waited for
/// until the control plane assigns it when the agent has none configured. A configured one
/// that differs from what the Node already holds is an error: peers route the Node's.
pub async fn pod_network(client: &Client, config: &AgentConfig) -> Result<String, crate::AgentError> {
    let started = std::time::Instant::now();
    let mut told = std::time::Duration::ZERO;
    loop {
        let node: Node = client.get_as(None, &config.node_name).await?;
        let assigned = node.spec.and_then(|s| s.pod_cidr).filter(|c| !c.is_empty());
        match (assigned, config.pod_cidr.as_str()) {
            (Some(assigned), "") => return Ok(assigned),
            (Some(assigned), configured) if assigned == configured => return Ok(assigned),
            (Some(assigned), configured) => {
                return Err(crate::AgentError::Setup(format!(
                    "--pod-cidr {configured}: node {} already has the pod network {assigned} (spec.podCIDR, which never changes); start the agent without --pod-cidr, or with --pod-cidr {assigned}",
                    config.node_name
                )))
            }
            (None, "") => {}
            // A Node registered before it had one (and not by this agent): the configured
            // network is the node's, as on a first registration.
            (None, configured) => return Ok(configured.to_string()),
        }
        if started.elapsed() >= told {
            tracing::info!(node = %config.node_name, "waiting for the control plane to assign this node's pod network (spec.podCIDR)");
            told += std::time::Duration::from_secs(30);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// This node's Lease, renewed as the heartbeat the control plane watches. The last Lease
/// written is kept, so a renewal is one update; a conflict or a missing Lease (someone else
/// wrote or deleted it) costs a read or a create.
#[derive(Default)]
pub struct Heartbeat {
    lease: Option<Lease>,
}

impl Heartbeat {
    /// Renews (or creates) the Lease of `node_name`.
    pub async fn renew(&mut self, client: &Client, node_name: &str) -> Result<(), ClientError> {
        let now = MicroTime(api::jiff::Timestamp::now());
        if let Some(mut lease) = self.lease.take() {
            lease.spec.get_or_insert_with(LeaseSpec::default).renew_time = Some(now.clone());
            match client.update_as(Some(LEASE_NAMESPACE), node_name, &lease).await {
                Ok(written) => {
                    self.lease = Some(written);
                    return Ok(());
                }
                Err(e) if e.is_conflict() || e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        let written = match client.get_as::<Lease>(Some(LEASE_NAMESPACE), node_name).await {
            Ok(mut lease) => {
                lease.spec.get_or_insert_with(LeaseSpec::default).renew_time = Some(now);
                client.update_as(Some(LEASE_NAMESPACE), node_name, &lease).await?
            }
            Err(e) if e.is_not_found() => {
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(node_name.to_string()), namespace: Some(LEASE_NAMESPACE.into()), ..Default::default() },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(node_name.to_string()),
                        lease_duration_seconds: Some(40),
                        renew_time: Some(now.clone()),
                        acquire_time: Some(now),
                        ..Default::default()
                    }),
                };
                client.create_as(Some(LEASE_NAMESPACE), &lease).await?
            }
            Err(e) => return Err(e),
        };
        self.lease = Some(written);
        Ok(())
    }
}
