//! The agent's settings and the layout of its data directory.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::devices::DeviceClass;

/// How one agent runs.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The Node name.
    pub node_name: String,
    /// The address the control plane reaches this node at (its log endpoint listens here).
    pub node_ip: IpAddr,
    /// The log endpoint's port; 0 picks a free one.
    pub port: u16,
    /// Root of the agent's state (images, containers, logs, IPAM).
    pub data_dir: PathBuf,
    /// `runc`, `crun`, `youki` or a path to an OCI runtime binary.
    pub runtime: String,
    /// The node's pod network, e.g. 10.88.3.0/24; empty: the control plane assigns one.
    pub pod_cidr: String,
    /// The node bridge name.
    pub bridge: String,
    /// How pods reach the pods of other nodes.
    pub overlay: crate::network::overlay::OverlayMode,
    /// Enforce NetworkPolicy with the eBPF datapath.
    pub network_policy: bool,
    /// Flows kept for `flotilla flows` (with network policy on); 0 turns the flow log off.
    pub flow_log: usize,
    /// Load-balance Services with the eBPF socket programs.
    pub service_proxy: bool,
    /// The cluster's DNS domain: Services are `<name>.<namespace>.svc.<domain>`.
    pub cluster_domain: String,
    /// Where the node's resolver relays names outside the cluster (default: the first
    /// nameserver of /etc/resolv.conf).
    pub upstream_dns: Option<std::net::SocketAddr>,
    /// First restart back-off; doubles per crash up to [`AgentConfig::max_backoff`].
    pub backoff_base: Duration,
    /// Longest restart back-off.
    pub max_backoff: Duration,
    /// Lease renewal period.
    pub heartbeat: Duration,
    /// A container log file is rotated past this size.
    pub log_max_bytes: u64,
    /// Registries reached over plain HTTP besides loopback ones.
    pub insecure_registries: Vec<String>,
    /// Classes of device nodes advertised as `flotilla.dev/<class>`.
    pub device_classes: Vec<DeviceClass>,
    /// Look for NVIDIA GPUs (`nvidia.com/gpu`).
    pub gpu_discovery: bool,
    /// Where device nodes are looked for (`/dev`).
    pub dev_root: PathBuf,
    /// How often the node is scanned for devices plugged in or removed.
    pub device_rescan: Duration,
}

impl AgentConfig {
    /// Defaults for a node named `node_name` keeping state in `data_dir`.
    pub fn new(node_name: &str, data_dir: &Path) -> AgentConfig {
        AgentConfig {
            node_name: node_name.to_string(),
            node_ip: IpAddr::from([127, 0, 0, 1]),
            port: 10250,
            data_dir: data_dir.to_path_buf(),
            runtime: "runc".into(),
            pod_cidr: String::new(),
            bridge: "flotilla0".into(),
            overlay: crate::network::overlay::OverlayMode::Vxlan,
            network_policy: true,
            flow_log: crate::flows::DEFAULT_CAPACITY,
            service_proxy: true,
            cluster_domain: "cluster.local".into(),
            upstream_dns: None,
            backoff_base: Duration::from_secs(10),
            max_backoff: Duration::from_secs(300),
            heartbeat: Duration::from_secs(2),
            log_max_bytes: 10 * 1024 * 1024,
            insecure_registries: Vec::new(),
            device_classes: Vec::new(),
            gpu_discovery: true,
            dev_root: PathBuf::from("/dev"),
            device_rescan: Duration::from_secs(2),
        }
    }

    /// The image store.
    pub fn images_dir(&self) -> PathBuf {
        self.data_dir.join("images")
    }

    /// The OCI runtime's state root.
    pub fn runtime_root(&self) -> PathBuf {
        self.data_dir.join("runc")
    }

    /// One container's bundle, rootfs mount point and writable layer.
    pub fn container_dir(&self, container_id: &str) -> PathBuf {
        self.data_dir.join("containers").join(container_id)
    }

    /// Every container directory.
    pub fn containers_dir(&self) -> PathBuf {
        self.data_dir.join("containers")
    }

    /// Per-pod files (/etc/hosts, /etc/hostname, /etc/resolv.conf).
    pub fn pod_dir(&self, pod_uid: &str) -> PathBuf {
        self.data_dir.join("pods").join(pod_uid)
    }

    /// Every pod directory.
    pub fn pods_dir(&self) -> PathBuf {
        self.data_dir.join("pods")
    }

    /// IPAM state.
    pub fn ipam_dir(&self) -> PathBuf {
        self.data_dir.join("ipam")
    }

    /// A pod's log directory.
    pub fn pod_log_dir(&self, namespace: &str, pod: &str, uid: &str) -> PathBuf {
        self.logs_dir().join(format!("{namespace}_{pod}_{uid}"))
    }

    /// Every pod log directory.
    pub fn logs_dir(&self) -> PathBuf {
        self.data_dir.join("logs")
    }

    /// Device allocations.
    pub fn devices_dir(&self) -> PathBuf {
        self.data_dir.join("devices")
    }

    /// The node's identity: its token, node secret, serving certificate and key, node CA.
    pub fn identity_dir(&self) -> PathBuf {
        self.data_dir.join("identity")
    }
}

/// The runtime id of a pod's container: `<pod uid>-<container name>`.
pub fn container_id(pod_uid: &str, container: &str) -> String {
    format!("{pod_uid}-{container}")
}

/// The pod uid in a container id, when it has the agent's form.
pub fn pod_uid_of(container_id: &str) -> Option<&str> {
    (container_id.len() > 37 && container_id.as_bytes()[36] == b'-').then(|| &container_id[..36])
}
