//! The pod network between nodes. Every node has its own pod CIDR (`spec.podCIDR`); to reach
//! another node's pods, this node routes that node's CIDR to it, either directly (`routes`:
//! a route via the peer's address, for nodes on one L2 segment) or through a VXLAN device
//! (`vxlan`: VNI 1 on UDP 8472, for nodes that only reach each other over IP). In VXLAN mode
//! nothing is learnt from traffic: each peer's tunnel endpoint MAC is derived from its node
//! address, and the agent writes the neighbour and forwarding entries itself (as flannel's
//! vxlan backend does), so the first packet to a new node already goes the right way.
//!
//! Peers are the other Nodes with a pod CIDR and a non-loopback IPv4 InternalIP; a node whose
//! own address is loopback (a one-machine cluster) has none and creates nothing.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::time::Duration;

use api::{Node, ResourceType};
use client::{Client, ClientError, Selectors};
use futures::StreamExt;
use ipnet::Ipv4Net;

use super::netlink::{links_in_proc, IpRoute2};
use super::{Netns, NetworkError};

/// The VXLAN network identifier of the pod network.
pub const VXLAN_ID: u32 = 1;
/// The UDP port of the tunnel (Linux's and flannel's default, not IANA's 4789).
pub const VXLAN_PORT: u16 = 8472;
/// The tunnel device's MTU: a 1500-byte underlay less VXLAN's 50 bytes of headers.
pub const VXLAN_MTU: u32 = 1450;
/// How often every route is written again, repairing what someone else removed.
const RESYNC: Duration = Duration::from_secs(30);

/// How this node reaches the pods of the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverlayMode {
    /// Encapsulated in VXLAN: works wherever the nodes reach each other over IP.
    Vxlan,
    /// A route per peer via its address: the nodes must share an L2 segment.
    Routes,
    /// Nothing: pods reach only pods on their own node (and what the host routes).
    Off,
}

impl FromStr for OverlayMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "vxlan" => Ok(OverlayMode::Vxlan),
            "routes" => Ok(OverlayMode::Routes),
            "none" | "off" => Ok(OverlayMode::Off),
            other => Err(format!("\"{other}\" is not vxlan, routes or none")),
        }
    }
}

/// Another node whose pods this one routes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its address (the VXLAN endpoint, or the next hop).
    pub node_ip: Ipv4Addr,
    /// Its pod network.
    pub cidr: Ipv4Net,
}

/// The peers of node `me` among `nodes`, by node name.
pub fn peers<'a>(nodes: impl IntoIterator<Item = &'a Node>, me: &str) -> BTreeMap<String, Peer> {
    nodes
        .into_iter()
        .filter(|n| n.metadata.name.as_deref().is_some_and(|name| name != me))
        .filter_map(|n| {
            let cidr: Ipv4Net = n.spec.as_ref()?.pod_cidr.as_deref()?.parse().ok()?;
            let addresses = n.status.as_ref()?.addresses.as_ref()?;
            let node_ip: Ipv4Addr = addresses.iter().find(|a| a.type_ == "InternalIP")?.address.parse().ok()?;
            (!node_ip.is_loopback() && !node_ip.is_unspecified()).then(|| (n.metadata.name.clone().unwrap_or_default(), Peer { node_ip, cidr: cidr.trunc() }))
        })
        .collect()
}

/// The tunnel endpoint MAC of the node at `ip`: locally administered, unicast, and the same
/// on every node that computes it.
pub fn vtep_mac(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("0a:f1:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// The VXLAN device of the node whose bridge is `bridge`: `<bridge>.vx`, within the 15
/// characters a link name may have (agents sharing a network namespace, as in tests, have
/// bridges and so devices of their own).
pub fn vxlan_device(bridge: &str) -> String {
    format!("{}.vx", &bridge[..bridge.len().min(12)])
}

/// The `ip` and `bridge` batch lines that make `peer` reachable.
fn peer_lines(mode: OverlayMode, device: &str, peer: &Peer) -> (Vec<String>, Vec<String>) {
    match mode {
        OverlayMode::Routes => (vec![format!("route replace {} via {} proto static", peer.cidr, peer.node_ip)], vec![]),
        OverlayMode::Vxlan => {
            let (mac, gateway) = (vtep_mac(peer.node_ip), peer.cidr.network());
            (
                vec![
                    format!("neigh replace {gateway} lladdr {mac} dev {device} nud permanent"),
                    format!("route replace {} via {gateway} dev {device} onlink", peer.cidr),
                ],
                vec![format!("fdb replace {mac} dev {device} dst {} self permanent", peer.node_ip)],
            )
        }
        OverlayMode::Off => (vec![], vec![]),
    }
}

/// The lines that undo [`peer_lines`]; each is run on its own, and one already gone is fine.
fn removal_lines(mode: OverlayMode, device: &str, peer: &Peer) -> (Vec<String>, Vec<String>) {
    match mode {
        OverlayMode::Routes => (vec![format!("route del {} via {}", peer.cidr, peer.node_ip)], vec![]),
        OverlayMode::Vxlan => (
            vec![format!("route del {} dev {device}", peer.cidr), format!("neigh del {} dev {device}", peer.cidr.network())],
            vec![format!("fdb del {} dev {device} self", vtep_mac(peer.node_ip))],
        ),
        OverlayMode::Off => (vec![], vec![]),
    }
}

/// This node's end of the pod network between nodes.
pub struct Overlay {
    mode: OverlayMode,
    device: String,
    local_ip: Ipv4Addr,
    local_cidr: Ipv4Net,
    ip: IpRoute2,
    bridge: IpRoute2,
    applied: BTreeMap<String, Peer>,
}

impl Overlay {
    /// The overlay of a node at `node_ip` whose pods are in `pod_cidr` on `bridge`; `None`
    /// when it is off or the node's address cannot be reached from another machine.
    pub fn new(mode: OverlayMode, bridge: &str, node_ip: IpAddr, pod_cidr: Ipv4Net) -> Result<Option<Overlay>, NetworkError> {
        let IpAddr::V4(local_ip) = node_ip else { return Ok(None) };
        if mode == OverlayMode::Off || local_ip.is_loopback() || local_ip.is_unspecified() {
            return Ok(None);
        }
        Ok(Some(Overlay {
            mode,
            device: vxlan_device(bridge),
            local_ip,
            local_cidr: pod_cidr.trunc(),
            ip: IpRoute2::new()?,
            bridge: IpRoute2::bridge()?,
            applied: BTreeMap::new(),
        }))
    }

    /// The tunnel device (VXLAN mode).
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Creates the VXLAN device if it is missing and gives it this node's MAC, MTU and
    /// address (the pod network's first address, as its own /32).
    async fn ensure_device(&self) -> Result<(), NetworkError> {
        let exists = links_in_proc(&std::fs::read_to_string("/proc/self/net/dev").unwrap_or_default()).any(|l| l == self.device);
        let dev = &self.device;
        let mut lines = Vec::new();
        if !exists {
            lines.push(format!("link add {dev} type vxlan id {VXLAN_ID} local {} dstport {VXLAN_PORT} nolearning", self.local_ip));
        }
        lines.push(format!("link set {dev} address {} mtu {VXLAN_MTU}", vtep_mac(self.local_ip)));
        lines.push(format!("addr replace {}/32 dev {dev}", self.local_cidr.network()));
        lines.push(format!("link set {dev} up"));
        self.ip.batch(Netns::Host, &lines).await
    }

    /// Routes to exactly `wanted`: peers gone are removed, new or moved ones written; with
    /// `all`, every wanted peer is written again (routes someone removed come back).
    pub async fn sync(&mut self, wanted: &BTreeMap<String, Peer>, all: bool) -> Result<(), NetworkError> {
        let gone: Vec<(String, Peer)> = self.applied.iter().filter(|(name, peer)| wanted.get(*name) != Some(peer)).map(|(n, p)| (n.clone(), *p)).collect();
        for (name, peer) in gone {
            let (ip_lines, bridge_lines) = removal_lines(self.mode, &self.device, &peer);
            for line in ip_lines {
                let _ = self.ip.batch(Netns::Host, &[line]).await;
            }
            for line in bridge_lines {
                let _ = self.bridge.batch(Netns::Host, &[line]).await;
            }
            self.applied.remove(&name);
            tracing::info!(node = %name, cidr = %peer.cidr, "removed the route to a node's pods");
        }
        let todo: Vec<(&String, &Peer)> = wanted.iter().filter(|(name, peer)| all || self.applied.get(*name) != Some(peer)).collect();
        if todo.is_empty() {
            return Ok(());
        }
        if self.mode == OverlayMode::Vxlan {
            self.ensure_device().await?;
        }
        let (mut ip_lines, mut bridge_lines) = (Vec::new(), Vec::new());
        for (_, peer) in &todo {
            let (i, b) = peer_lines(self.mode, &self.device, peer);
            ip_lines.extend(i);
            bridge_lines.extend(b);
        }
        if !bridge_lines.is_empty() {
            self.bridge.batch(Netns::Host, &bridge_lines).await?;
        }
        self.ip.batch(Netns::Host, &ip_lines).await?;
        for (name, peer) in todo {
            if self.applied.insert(name.clone(), *peer).is_none() {
                tracing::info!(node = %name, cidr = %peer.cidr, via = %peer.node_ip, mode = ?self.mode, "routing to a node's pods");
            }
        }
        Ok(())
    }
}

/// Keeps this node's routes to the other nodes' pods current for as long as the agent runs:
/// lists and watches Nodes, relisting after a break.
pub async fn run(client: Client, me: String, mut overlay: Overlay) {
    loop {
        if let Err(e) = follow(&client, &me, &mut overlay).await {
            tracing::warn!(error = %e, "following the nodes for the pod network; listing again");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn follow(client: &Client, me: &str, overlay: &mut Overlay) -> Result<(), ClientError> {
    let rt = ResourceType::of::<Node>();
    let (items, revision) = client.list(rt, None, &Selectors::default()).await?;
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    for item in items {
        let node: Node = client::decode(item)?;
        nodes.insert(node.metadata.name.clone().unwrap_or_default(), node);
    }
    let mut events = client.watch(rt, None, &Selectors::default(), &revision).await?;
    let mut failed = true;
    let mut resync = tokio::time::interval(RESYNC);
    loop {
        let wanted = peers(nodes.values(), me);
        tokio::select! {
            _ = resync.tick() => failed = true,
            event = events.next() => {
                let Some(event) = event else { return Ok(()) };
                let event = event?;
                match event.type_.as_str() {
                    "ADDED" | "MODIFIED" => {
                        let node: Node = client::decode(event.object)?;
                        nodes.insert(node.metadata.name.clone().unwrap_or_default(), node);
                    }
                    "DELETED" => {
                        let name = event.object.pointer("/metadata/name").and_then(|n| n.as_str()).unwrap_or_default().to_string();
                        nodes.remove(&name);
                    }
                    "ERROR" => return Ok(()),
                    _ => {}
                }
            }
        }
        let now = peers(nodes.values(), me);
        if now != wanted || failed {
            match overlay.sync(&now, failed).await {
                Ok(()) => failed = false,
                Err(e) => {
                    tracing::warn!(error = %e, "writing the routes to other nodes' pods; trying again");
                    failed = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::k8s_openapi::api::core::v1::{NodeAddress, NodeSpec, NodeStatus};

    fn node(name: &str, ip: &str, cidr: Option<&str>) -> Node {
        Node {
            metadata: api::ObjectMeta { name: Some(name.into()), ..Default::default() },
            spec: Some(NodeSpec { pod_cidr: cidr.map(str::to_string), ..Default::default() }),
            status: Some(NodeStatus {
                addresses: Some(vec![
                    NodeAddress { type_: "Hostname".into(), address: name.into() },
                    NodeAddress { type_: "InternalIP".into(), address: ip.into() },
                ]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn peers_are_the_other_reachable_nodes_with_a_pod_network() {
        let nodes = [
            node("me", "10.98.0.11", Some("10.97.0.0/24")),
            node("b", "10.98.0.12", Some("10.97.1.0/24")),
            node("waiting", "10.98.0.13", None),
            node("local", "127.0.0.1", Some("10.97.3.0/24")),
            node("v6", "fd00::1", Some("10.97.4.0/24")),
        ];
        let found = peers(&nodes, "me");
        assert_eq!(found.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(found["b"], Peer { node_ip: "10.98.0.12".parse().unwrap(), cidr: "10.97.1.0/24".parse().unwrap() });
    }

    #[test]
    fn vxlan_peers_get_a_neighbour_a_forwarding_entry_and_a_route() {
        let peer = Peer { node_ip: "10.98.0.12".parse().unwrap(), cidr: "10.97.1.0/24".parse().unwrap() };
        let (ip, bridge) = peer_lines(OverlayMode::Vxlan, "fte2x1.vx", &peer);
        assert_eq!(
            ip,
            ["neigh replace 10.97.1.0 lladdr 0a:f1:0a:62:00:0c dev fte2x1.vx nud permanent", "route replace 10.97.1.0/24 via 10.97.1.0 dev fte2x1.vx onlink"]
        );
        assert_eq!(bridge, ["fdb replace 0a:f1:0a:62:00:0c dev fte2x1.vx dst 10.98.0.12 self permanent"]);
        let (ip, bridge) = peer_lines(OverlayMode::Routes, "x", &peer);
        assert_eq!((ip, bridge.len()), (vec!["route replace 10.97.1.0/24 via 10.98.0.12 proto static".to_string()], 0));
        let (ip, bridge) = removal_lines(OverlayMode::Vxlan, "fte2x1.vx", &peer);
        assert_eq!(ip, ["route del 10.97.1.0/24 dev fte2x1.vx", "neigh del 10.97.1.0 dev fte2x1.vx"]);
        assert_eq!(bridge, ["fdb del 0a:f1:0a:62:00:0c dev fte2x1.vx self"]);
    }

    #[test]
    fn names_and_modes() {
        assert_eq!(vxlan_device("flotilla0"), "flotilla0.vx");
        assert_eq!(vxlan_device("a-bridge-name-15"), "a-bridge-nam.vx");
        assert!(vxlan_device("a-bridge-name-15").len() <= 15);
        assert_eq!("routes".parse::<OverlayMode>(), Ok(OverlayMode::Routes));
        assert_eq!("none".parse::<OverlayMode>(), Ok(OverlayMode::Off));
        assert_eq!("gre".parse::<OverlayMode>().unwrap_err(), "\"gre\" is not vxlan, routes or none");
        let mac = vtep_mac("192.168.1.2".parse().unwrap());
        assert_eq!(mac, "0a:f1:c0:a8:01:02");
        let first = u8::from_str_radix(&mac[..2], 16).unwrap();
        assert_eq!(first & 0b11, 0b10, "locally administered, unicast");
        assert!(Overlay::new(OverlayMode::Vxlan, "b", "127.0.0.1".parse().unwrap(), "10.0.0.0/24".parse().unwrap()).unwrap().is_none());
        assert!(Overlay::new(OverlayMode::Off, "b", "10.1.1.1".parse().unwrap(), "10.0.0.0/24".parse().unwrap()).unwrap().is_none());
    }
}
