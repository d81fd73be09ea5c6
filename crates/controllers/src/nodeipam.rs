//! Node IPAM: every Node without a pod network gets one of its own, the lowest slice of the
//! cluster CIDR (`--cluster-cidr`, split into `/--node-cidr-mask-size` pieces) that no other
//! Node holds, written to `spec.podCIDR` and `spec.podCIDRs` as kube-controller-manager's
//! range allocator does. A Node that brought its own (an agent started with `--pod-cidr`)
//! keeps it, and its range is not handed to anyone else. Admission makes the field immutable
//! once set, so a write here never moves a network pods already have addresses in.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use api::Node;
use apiserver::{ApiError, Registry};

use crate::events::Recorder;
use crate::Caches;

/// An IPv4 network: its address and prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Network {
    /// The network address (host bits clear).
    pub address: Ipv4Addr,
    /// The prefix length.
    pub len: u8,
}

impl Network {
    /// Parses `a.b.c.d/n` (host bits clear).
    pub fn parse(text: &str) -> Result<Network, String> {
        api::validation::parse_ipv4_network(text).map(|(address, len)| Network { address, len })
    }

    fn mask(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - len)
        }
    }

    /// Whether the two networks share any address.
    pub fn overlaps(&self, other: &Network) -> bool {
        let mask = Self::mask(self.len.min(other.len));
        u32::from(self.address) & mask == u32::from(other.address) & mask
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.address, self.len)
    }
}

/// Which networks nodes get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeIpamConfig {
    /// The whole pod network of the cluster.
    pub cluster_cidr: Network,
    /// The prefix length of each node's slice.
    pub node_mask: u8,
}

impl Default for NodeIpamConfig {
    /// 10.88.0.0/16 in /24s: 256 nodes of up to 253 pods.
    fn default() -> Self {
        NodeIpamConfig { cluster_cidr: Network { address: Ipv4Addr::new(10, 88, 0, 0), len: 16 }, node_mask: 24 }
    }
}

impl NodeIpamConfig {
    /// Checks the two settings together; the error names the flag at fault.
    pub fn new(cluster_cidr: &str, node_mask: u8) -> Result<NodeIpamConfig, String> {
        let cluster = Network::parse(cluster_cidr).map_err(|e| format!("--cluster-cidr \"{cluster_cidr}\": {e}"))?;
        if node_mask < cluster.len || node_mask > 30 {
            return Err(format!(
                "--node-cidr-mask-size {node_mask}: must be from the cluster CIDR's own prefix length ({}) to 30, leaving room for a gateway and pods",
                cluster.len
            ));
        }
        if node_mask - cluster.len > 20 {
            return Err(format!("--node-cidr-mask-size {node_mask}: more than 2^20 node networks in {cluster}; use a shorter mask"));
        }
        Ok(NodeIpamConfig { cluster_cidr: cluster, node_mask })
    }

    /// The lowest node network of the cluster CIDR that overlaps none of `used`.
    pub fn first_free(&self, used: &BTreeSet<Network>) -> Option<Network> {
        let count = 1u32 << (self.node_mask - self.cluster_cidr.len);
        let step = 1u32.checked_shl(32 - u32::from(self.node_mask)).unwrap_or(0);
        (0..count)
            .map(|i| Network { address: Ipv4Addr::from(u32::from(self.cluster_cidr.address) + i * step), len: self.node_mask })
            .find(|candidate| !used.iter().any(|u| u.overlaps(candidate)))
    }
}

/// A Node's pod network, when it has a valid one.
pub fn pod_network(node: &Node) -> Option<Network> {
    node.spec.as_ref()?.pod_cidr.as_deref().and_then(|c| Network::parse(c).ok())
}

/// How often nodes are looked at when no Node changes.
const RESYNC: Duration = Duration::from_secs(10);

/// Runs the allocator until its task is dropped: a pass on every Node change (and every
/// [`RESYNC`], for writes that failed).
pub async fn run(registry: Registry, caches: Caches, recorder: Recorder, config: NodeIpamConfig) {
    let mut changes = caches.nodes.subscribe();
    let mut warned = BTreeSet::new();
    loop {
        if let Err(e) = pass(&registry, &caches, &recorder, &config, &mut warned).await {
            tracing::debug!(error = %e, "node IPAM pass failed");
        }
        let _ = tokio::time::timeout(RESYNC, changes.recv()).await;
        while changes.try_recv().is_ok() {}
    }
}

/// Gives every Node without a network the lowest free one. `warned` holds the nodes already
/// told that none is left, so the Warning is not repeated on every pass.
pub async fn pass(registry: &Registry, caches: &Caches, recorder: &Recorder, config: &NodeIpamConfig, warned: &mut BTreeSet<String>) -> Result<(), ApiError> {
    let mut nodes = caches.nodes.list();
    nodes.sort_by(|a, b| (&a.metadata.creation_timestamp, &a.metadata.name).cmp(&(&b.metadata.creation_timestamp, &b.metadata.name)));
    let mut used: BTreeSet<Network> = nodes.iter().filter_map(|n| pod_network(n)).collect();
    for node in nodes.iter().filter(|n| n.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()).is_none_or(str::is_empty)) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let Some(network) = config.first_free(&used) else {
            if warned.insert(name) {
                let message = format!("no node network is left in the cluster CIDR {} (/{} each)", config.cluster_cidr, config.node_mask);
                recorder.warning(node.as_ref(), "CIDRNotAvailable", &message).await;
            }
            continue;
        };
        let mut assigned = (**node).clone();
        let spec = assigned.spec.get_or_insert_with(Default::default);
        spec.pod_cidr = Some(network.to_string());
        spec.pod_cidrs = Some(vec![network.to_string()]);
        // The resourceVersion read is the compare-and-swap token: a Node changed meanwhile
        // (another server's allocator got there first) is a conflict, and the next pass sees it.
        match registry.update_as(&assigned).await {
            Ok(_) => {
                used.insert(network);
                warned.remove(&name);
                tracing::info!(node = %name, %network, "assigned the node's pod network");
                recorder.normal(&assigned, "CIDRAssigned", &format!("pod network {network}")).await;
            }
            Err(ApiError::Conflict { .. } | ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Network {
        Network::parse(text).unwrap()
    }

    #[test]
    fn the_lowest_slice_no_node_overlaps_is_next() {
        let config = NodeIpamConfig::new("10.88.0.0/16", 24).unwrap();
        assert_eq!(config.first_free(&BTreeSet::new()), Some(net("10.88.0.0/24")));
        let used: BTreeSet<Network> = [net("10.88.0.0/24"), net("10.88.2.0/24")].into();
        assert_eq!(config.first_free(&used), Some(net("10.88.1.0/24")));
        // A node that brought a wider network of its own blocks every slice inside it.
        let used: BTreeSet<Network> = [net("10.88.0.0/23"), net("10.88.3.0/24")].into();
        assert_eq!(config.first_free(&used), Some(net("10.88.2.0/24")));
        // Networks outside the cluster CIDR are no obstacle.
        let used: BTreeSet<Network> = [net("10.99.0.0/24")].into();
        assert_eq!(config.first_free(&used), Some(net("10.88.0.0/24")));
        let small = NodeIpamConfig::new("10.88.0.0/23", 24).unwrap();
        assert_eq!(small.first_free(&[net("10.88.0.0/24"), net("10.88.1.0/24")].into()), None, "full");
        assert_eq!(small.first_free(&[net("10.0.0.0/8")].into()), None, "covered by a node's own network");
    }

    #[test]
    fn bad_settings_name_the_flag() {
        for (cidr, mask, expected) in [
            ("10.88.0.1/16", 24, "--cluster-cidr \"10.88.0.1/16\": host bits are set"),
            ("10.88.0.0", 24, "--cluster-cidr \"10.88.0.0\": expected an IPv4 network"),
            ("10.88.0.0/16", 8, "--node-cidr-mask-size 8: must be from the cluster CIDR's own prefix length (16) to 30"),
            ("10.88.0.0/16", 31, "--node-cidr-mask-size 31"),
            ("10.0.0.0/8", 30, "more than 2^20 node networks"),
        ] {
            let err = NodeIpamConfig::new(cidr, mask).unwrap_err();
            assert!(err.contains(expected), "{cidr} {mask}: {err}");
        }
        assert_eq!(NodeIpamConfig::new("10.88.0.0/16", 16).unwrap().first_free(&BTreeSet::new()), Some(net("10.88.0.0/16")));
    }
}
