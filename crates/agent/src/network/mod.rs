//! Pod network namespaces on a node bridge: one named netns per pod, a veth pair into the
//! bridge, an address from a persistent IPAM and a default route via the bridge.

mod error;
mod fake;
mod ipam;
mod native;
mod netlink;
pub mod overlay;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ipnet::Ipv4Net;
use sha2::{Digest, Sha256};

pub use error::NetworkError;
pub use fake::{FakeLink, FakeNetlink};
pub(crate) use native::in_netns;
pub use native::NativeNetlink;
pub use netlink::{IpRoute2, Netlink, Netns, NETNS_DIR};

use ipam::Ipam;

/// The interface name of a pod's end of its veth pair.
pub const POD_INTERFACE: &str = "eth0";

/// How the node's pod network is laid out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The node bridge (at most 15 characters).
    pub bridge: String,
    /// The pod network; its first host address is the gateway, on the bridge.
    pub cidr: Ipv4Net,
    /// Where IPAM keeps its allocations (under the agent data dir).
    pub state_dir: PathBuf,
    /// Turn on IPv4 forwarding in [`PodNetwork::ensure_bridge`] so pods reach beyond the node.
    pub enable_ip_forward: bool,
}

impl NetworkConfig {
    /// The default layout (`flotilla0`, 10.88.0.0/16, forwarding on) with state in `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        NetworkConfig {
            bridge: "flotilla0".to_string(),
            cidr: Ipv4Net::new(Ipv4Addr::new(10, 88, 0, 0), 16).unwrap_or_default(),
            state_dir: state_dir.into(),
            enable_ip_forward: true,
        }
    }
}

/// What a pod got from [`PodNetwork::setup`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodNetworkInfo {
    /// The pod's network namespace, to be joined by its containers.
    pub netns_path: PathBuf,
    /// The pod's address.
    pub ip: IpAddr,
    /// The host end of its veth pair.
    pub host_veth: String,
    /// Its default gateway (the bridge address).
    pub gateway: IpAddr,
}

/// The node's pod network.
pub struct PodNetwork {
    config: NetworkConfig,
    /// The pod network with its real prefix, normalised (host bits cleared).
    cidr: Ipv4Net,
    gateway: Ipv4Addr,
    netlink: Arc<dyn Netlink>,
    ipam: Ipam,
    /// Serialises setup and teardown per pod; different pods proceed in parallel.
    pod_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The named network namespace of a pod: `flotilla-<first 12 characters of its uid>`.
pub fn netns_name(pod_uid: &str) -> String {
    format!("flotilla-{}", pod_uid.chars().take(12).collect::<String>())
}

/// The host end of a pod's veth pair: `fl` + 10 hex digits of a hash of its uid.
pub fn host_veth_name(pod_uid: &str) -> String {
    let digest = Sha256::digest(pod_uid.as_bytes());
    let hex: String = digest.iter().take(5).map(|byte| format!("{byte:02x}")).collect();
    format!("fl{hex}")
}

impl PodNetwork {
    /// A pod network driven by [`NativeNetlink`], or by iproute2's `ip` where that cannot
    /// start (no rtnetlink, a kernel older than 3.17).
    pub fn new(config: NetworkConfig) -> Result<Self, NetworkError> {
        let netlink: Arc<dyn Netlink> = match NativeNetlink::new() {
            Ok(native) => Arc::new(native),
            Err(err) => {
                tracing::warn!(%err, "native netlink is unavailable; pod networking falls back to running iproute2's `ip`, several ms slower per pod start");
                Arc::new(IpRoute2::new()?)
            }
        };
        Self::with_netlink(config, netlink)
    }

    /// A pod network driven by `netlink` (a fake in unit tests).
    pub fn with_netlink(config: NetworkConfig, netlink: Arc<dyn Netlink>) -> Result<Self, NetworkError> {
        let invalid = |field, value: String, reason| NetworkError::InvalidConfig { field, value, reason };
        let bridge_ok =
            !config.bridge.is_empty() && config.bridge.len() <= 15 && config.bridge.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !bridge_ok {
            return Err(invalid("bridge", config.bridge.clone(), "use 1 to 15 letters, digits, '-', '_' or '.'"));
        }
        if config.cidr.prefix_len() > 30 {
            return Err(invalid("cidr", config.cidr.to_string(), "needs room for a gateway and pods: /30 or wider"));
        }
        let cidr = config.cidr.trunc();
        let gateway = Ipv4Addr::from(u32::from(cidr.network()) + 1);
        let ipam = Ipam::open(config.state_dir.join("ipam"), cidr, gateway)?;
        Ok(PodNetwork { config, cidr, gateway, netlink, ipam, pod_locks: Mutex::default() })
    }

    /// The configuration in use.
    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// The gateway address, on the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// Creates the bridge if needed, gives it the gateway address, sets it up and (if
    /// configured) turns on IPv4 forwarding. Safe to call any number of times.
    pub async fn ensure_bridge(&self) -> Result<(), NetworkError> {
        let bridge = self.config.bridge.as_str();
        let nl = &self.netlink;
        if !nl.link_exists(Netns::Host, bridge).await? {
            nl.add_bridge(bridge).await?;
        }
        let gateway = Ipv4Net::new(self.gateway, self.cidr.prefix_len()).unwrap_or(self.cidr);
        if !nl.addresses(Netns::Host, bridge).await?.contains(&gateway) {
            nl.add_address(Netns::Host, bridge, gateway).await?;
        }
        nl.set_up(Netns::Host, bridge).await?;
        if self.config.enable_ip_forward {
            nl.enable_ipv4_forwarding().await?;
        }
        Ok(())
    }

    /// Gives the pod a network namespace with `eth0` on the bridge, an address, `lo` up and a
    /// default route via the gateway. Calling it again for a pod already set up repairs what
    /// is missing and returns the same info. A failed first setup leaves nothing behind.
    pub async fn setup(&self, pod_uid: &str) -> Result<PodNetworkInfo, NetworkError> {
        validate_pod_uid(pod_uid)?;
        let lock = self.pod_lock(pod_uid);
        let _guard = lock.lock().await;
        let (ip, fresh) = self.ipam.allocate(pod_uid).map_err(|err| pod_error("allocate an address", pod_uid, err))?;
        match self.wire(pod_uid, ip).await {
            Ok(info) => Ok(info),
            Err(err) => {
                if fresh {
                    if let Err(cleanup) = self.unwire(pod_uid).await {
                        tracing::warn!(pod_uid, %cleanup, "cleanup after a failed setup failed");
                    }
                }
                Err(err)
            }
        }
    }

    async fn wire(&self, pod_uid: &str, ip: Ipv4Addr) -> Result<PodNetworkInfo, NetworkError> {
        let (nl, ns_name, veth) = (&self.netlink, netns_name(pod_uid), host_veth_name(pod_uid));
        let ns = Netns::Named(&ns_name);
        let step = |step| move |err| pod_error(step, pod_uid, err);
        if !self.netlink.link_exists(Netns::Host, &self.config.bridge).await? {
            self.ensure_bridge().await.map_err(step("create the bridge"))?;
        }
        let addr = Ipv4Net::new(ip, self.cidr.prefix_len()).unwrap_or(self.cidr);
        let info =
            PodNetworkInfo { netns_path: Path::new(NETNS_DIR).join(&ns_name), ip: IpAddr::V4(ip), host_veth: veth.clone(), gateway: IpAddr::V4(self.gateway) };
        if !nl.netns_exists(&ns_name).await? {
            nl.add_netns(&ns_name).await.map_err(step("create the network namespace"))?;
            if !nl.link_exists(Netns::Host, &veth).await? {
                // The usual case, a new pod: everything in as few round trips as possible.
                nl.wire_new_pod(&veth, POD_INTERFACE, &ns_name, &self.config.bridge, addr, self.gateway).await.map_err(step("wire the pod namespace"))?;
                return Ok(info);
            }
        }
        if nl.link_exists(Netns::Host, &veth).await? && !nl.link_exists(ns, POD_INTERFACE).await? {
            // The other end died with an earlier namespace of this pod; start over.
            nl.delete_link(&veth).await.map_err(step("delete a stale veth"))?;
        }
        if !nl.link_exists(Netns::Host, &veth).await? {
            nl.add_veth(&veth, POD_INTERFACE, &ns_name).await.map_err(step("create the veth pair"))?;
        }
        nl.set_master(&veth, &self.config.bridge).await.map_err(step("attach the veth to the bridge"))?;
        nl.set_up(Netns::Host, &veth).await.map_err(step("set the host veth up"))?;
        nl.set_up(ns, "lo").await.map_err(step("set lo up"))?;
        if !nl.addresses(ns, POD_INTERFACE).await?.contains(&addr) {
            nl.add_address(ns, POD_INTERFACE, addr).await.map_err(step("assign the pod address"))?;
        }
        nl.set_up(ns, POD_INTERFACE).await.map_err(step("set eth0 up"))?;
        nl.replace_default_route(ns, self.gateway).await.map_err(step("set the default route"))?;
        Ok(info)
    }

    /// Removes the pod's veth pair and network namespace and frees its address. A pod that was
    /// never set up, or was torn down already, is not an error.
    pub async fn teardown(&self, pod_uid: &str) -> Result<(), NetworkError> {
        validate_pod_uid(pod_uid)?;
        let lock = self.pod_lock(pod_uid);
        let result = {
            let _guard = lock.lock().await;
            self.unwire(pod_uid).await
        };
        let mut locks = self.pod_locks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Only the map and this call hold it: nobody is waiting to set the pod up again.
        if Arc::strong_count(&lock) <= 2 {
            locks.remove(pod_uid);
        }
        result
    }

    async fn unwire(&self, pod_uid: &str) -> Result<(), NetworkError> {
        let (nl, ns_name, veth) = (&self.netlink, netns_name(pod_uid), host_veth_name(pod_uid));
        let step = |step| move |err| pod_error(step, pod_uid, err);
        if nl.link_exists(Netns::Host, &veth).await? {
            nl.delete_link(&veth).await.map_err(step("delete the veth pair"))?;
        }
        if nl.netns_exists(&ns_name).await? {
            nl.delete_netns(&ns_name).await.map_err(step("delete the network namespace"))?;
        }
        self.ipam.release(pod_uid).map_err(step("release the address"))?;
        Ok(())
    }

    /// Every allocated address and the pod holding it, as recorded on disk.
    pub fn allocations(&self) -> Result<Vec<(IpAddr, String)>, NetworkError> {
        Ok(self.ipam.allocations()?.into_iter().map(|(ip, pod)| (IpAddr::V4(ip), pod)).collect())
    }

    fn pod_lock(&self, pod_uid: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.pod_locks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        locks.entry(pod_uid.to_string()).or_default().clone()
    }
}

fn validate_pod_uid(pod_uid: &str) -> Result<(), NetworkError> {
    let valid = !pod_uid.is_empty()
        && pod_uid.len() <= 128
        && !pod_uid.starts_with(['-', '.'])
        && pod_uid.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(NetworkError::InvalidPodUid { pod_uid: pod_uid.to_string() })
    }
}

fn pod_error(step: &'static str, pod_uid: &str, source: NetworkError) -> NetworkError {
    NetworkError::Pod { step, pod_uid: pod_uid.to_string(), source: Box::new(source) }
}

#[cfg(test)]
mod tests;
