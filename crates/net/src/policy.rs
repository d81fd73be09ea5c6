//! Kubernetes NetworkPolicy compiled to what the datapath keys on: an ipcache (addresses →
//! identities), which pod identities are restricted in which direction, and the allowed
//! (pod identity, peer identity, port, protocol, direction) entries.
//!
//! Semantics as in Kubernetes: a pod no policy selects is not restricted; once one selects it
//! for a direction, only what some selecting policy allows passes in that direction (the
//! union of their rules). A namespace labelled [`api::netpol::DEFAULT_DENY_LABEL`] restricts
//! all its pods in the directions the label names, as a selecting policy without rules would.
//! A rule without peers allows every peer, a rule without ports every
//! port and protocol. `ipBlock` peers are CIDR identities of their own, one per distinct
//! prefix among the policies, so `except` is a more specific prefix the rule does not allow
//! and the longest match decides. The node itself (its pod gateway) may always reach its pods,
//! as the kubelet's probes need.
//!
//! FlotillaNetworkPolicies compile as the NetworkPolicies their L3/L4 parts are, their DNS-name
//! egress rules as ipBlocks of the addresses the names were seen to resolve to; their HTTP
//! rules add the (pod identity, port) pairs whose connections go through the node's proxy, and
//! what each peer may ask there.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use api::identity::{IdentitySpec, HOST};
use api::k8s_openapi::api::networking::v1::{IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicyPort};
use api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use api::netpol::flotilla::{FlotillaNetworkPolicy, HttpRule};
use api::selector::Selector;
use ipnet::Ipv4Net;

use crate::datapath::{Direction, Protocol, Rule};

/// Where the identities of `ipBlock` prefixes start (above every allocated pod identity).
pub const CIDR_IDENTITY_BASE: u32 = 1 << 24;

/// A container port a policy may name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedPort {
    /// Its name.
    pub name: String,
    /// Its number.
    pub port: u16,
    /// Its protocol.
    pub protocol: Protocol,
}

/// A pod as the policies see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its namespace.
    pub namespace: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its containers' named ports.
    pub ports: Vec<NamedPort>,
}

/// What the compiler works from.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    /// Every pod with an address (this node's and the others').
    pub endpoints: Vec<Endpoint>,
    /// The identity numbers in use, by label set.
    pub identities: BTreeMap<IdentitySpec, u32>,
    /// Namespace labels, by namespace.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Every NetworkPolicy.
    pub policies: Vec<NetworkPolicy>,
    /// Every FlotillaNetworkPolicy.
    pub http_policies: Vec<FlotillaNetworkPolicy>,
    /// The addresses DNS names were seen to resolve to, by name (lowercase, no final dot).
    pub resolved: BTreeMap<String, BTreeSet<Ipv4Addr>>,
    /// The node's own addresses (its pod gateway), identity [`HOST`].
    pub host: Vec<Ipv4Addr>,
    /// The identities of this node's pods: only these get restrictions and rules.
    pub local: BTreeSet<u32>,
}

/// What the datapath is to hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// Address ranges → identity.
    pub ipcache: BTreeMap<Ipv4Net, u32>,
    /// (identity, direction) pairs restricted to their rules.
    pub enforced: BTreeSet<(u32, Direction)>,
    /// What is allowed.
    pub rules: BTreeSet<Rule>,
    /// The (pod identity, TCP port) pairs with HTTP rules, whose connections go through the
    /// node's proxy, and what each peer may ask there.
    pub http: BTreeMap<(u32, u16), HttpPort>,
}

/// What the peers allowed on a port with HTTP rules may ask.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpPort {
    /// Per peer identity (`None`: every peer), the requests allowed.
    pub peers: BTreeMap<Option<u32>, Access>,
}

/// The requests a peer may make on a port with HTTP rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// Any: a rule without HTTP rules allows the peer on the port.
    All,
    /// Those one of these rules matches.
    Rules(BTreeSet<HttpRule>),
}

impl HttpPort {
    fn add(&mut self, peer: Option<u32>, access: Access) {
        match (self.peers.get_mut(&peer), access) {
            (None, access) => {
                self.peers.insert(peer, access);
            }
            (Some(current), Access::All) => *current = Access::All,
            (Some(Access::All), Access::Rules(_)) => {}
            (Some(Access::Rules(have)), Access::Rules(more)) => have.extend(more),
        }
    }

    /// What `peer` may ask: what is allowed to it, and to every peer.
    pub fn access(&self, peer: u32) -> Vec<&Access> {
        [self.peers.get(&Some(peer)), self.peers.get(&None)].into_iter().flatten().collect()
    }
}

const ALL_PROTOCOLS: [Protocol; 4] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp, Protocol::Icmp];

fn protocol(port: &NetworkPolicyPort) -> Protocol {
    match port.protocol.as_deref() {
        Some("UDP") => Protocol::Udp,
        Some("SCTP") => Protocol::Sctp,
        _ => Protocol::Tcp,
    }
}

fn selector(object: Option<&api::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>) -> Option<Selector> {
    // Validated at admission; one that does not parse selects nothing.
    match object {
        None => Some(Selector::default()),
        Some(object) => Selector::from_object(object).ok(),
    }
}

/// A namespace's labels, with the `kubernetes.io/metadata.name` label Kubernetes sets.
fn namespace_labels(inputs: &Inputs, name: &str) -> BTreeMap<String, String> {
    let mut labels = inputs.namespaces.get(name).cloned().unwrap_or_default();
    labels.insert("kubernetes.io/metadata.name".into(), name.into());
    labels
}

/// The network of a validated CIDR text.
fn network(text: &str) -> Option<Ipv4Net> {
    text.parse::<Ipv4Net>().ok().map(|n| n.trunc())
}

fn inside(inner: &Ipv4Net, outer: &Ipv4Net) -> bool {
    outer.contains(inner)
}

struct Compiler<'a> {
    inputs: &'a Inputs,
    /// The identity of every ipBlock prefix.
    prefixes: BTreeMap<Ipv4Net, u32>,
}

impl Compiler<'_> {
    /// The identities `peer` (of a policy in `ns`) stands for.
    fn peer(&self, ns: &str, peer: &NetworkPolicyPeer) -> Vec<u32> {
        if let Some(block) = &peer.ip_block {
            let Some(cidr) = network(&block.cidr) else { return Vec::new() };
            let excepts: Vec<Ipv4Net> = block.except.iter().flatten().filter_map(|e| network(e)).collect();
            return self.prefixes.iter().filter(|(p, _)| inside(p, &cidr) && !excepts.iter().any(|e| inside(p, e))).map(|(_, id)| *id).collect();
        }
        let Some(pods) = selector(peer.pod_selector.as_ref()) else { return Vec::new() };
        let namespaces = match &peer.namespace_selector {
            None => None,
            Some(object) => match Selector::from_object(object) {
                Ok(s) => Some(s),
                Err(_) => return Vec::new(),
            },
        };
        self.inputs
            .identities
            .iter()
            .filter(|(spec, _)| match &namespaces {
                None => spec.namespace == ns,
                Some(selector) => selector.matches(&namespace_labels(self.inputs, &spec.namespace)),
            })
            .filter(|(spec, _)| pods.matches(&spec.labels))
            .map(|(_, id)| *id)
            .collect()
    }

    /// The (port, protocol) pairs `ports` allows, a named port resolved among `holders`' pods.
    fn ports(&self, ports: Option<&Vec<NetworkPolicyPort>>, holders: &dyn Fn(&Endpoint) -> bool) -> Vec<(Option<u16>, Protocol)> {
        let Some(ports) = ports.filter(|p| !p.is_empty()) else {
            return ALL_PROTOCOLS.iter().map(|p| (None, *p)).collect();
        };
        let mut out = Vec::new();
        for port in ports {
            let proto = protocol(port);
            match &port.port {
                None => out.push((None, proto)),
                Some(IntOrString::Int(start)) => {
                    let (start, end) = (*start as u16, port.end_port.unwrap_or(*start) as u16);
                    out.extend((start..=end).map(|p| (Some(p), proto)));
                }
                Some(IntOrString::String(name)) => {
                    let numbers: BTreeSet<u16> = self
                        .inputs
                        .endpoints
                        .iter()
                        .filter(|e| holders(e))
                        .flat_map(|e| e.ports.iter())
                        .filter(|p| p.name == *name && p.protocol == proto)
                        .map(|p| p.port)
                        .collect();
                    out.extend(numbers.into_iter().map(|p| (Some(p), proto)));
                }
            }
        }
        out
    }

    fn identity_of(&self, endpoint: &Endpoint) -> Option<u32> {
        self.inputs.identities.get(&api::identity::spec_for(&endpoint.namespace, Some(&endpoint.labels))).copied()
    }
}

/// Restricts `local` in `direction` to its rules; the node may still reach it (probes).
fn restrict(state: &mut State, local: u32, direction: Direction) {
    state.enforced.insert((local, direction));
    if direction == Direction::Ingress {
        for protocol in ALL_PROTOCOLS {
            state.rules.insert(Rule { local, peer: Some(HOST), port: None, protocol, direction });
        }
    }
}

/// A rule's peers one by one: `None` for a rule that allows every peer.
fn each_peer(peers: &Option<Vec<u32>>) -> Vec<Option<u32>> {
    match peers {
        None => vec![None],
        Some(peers) => peers.iter().map(|p| Some(*p)).collect(),
    }
}

/// `policy` as a NetworkPolicy whose rules with DNS names allow the addresses those names
/// resolved to, each an ipBlock of its own; a rule whose names resolved to nothing yet allows
/// nothing.
fn with_resolved(policy: &FlotillaNetworkPolicy, resolved: &BTreeMap<String, BTreeSet<Ipv4Addr>>) -> NetworkPolicy {
    let mut plain = policy.network_policy();
    let Some(spec) = plain.spec.as_mut() else { return plain };
    for (selectors, ports) in policy.egress_fqdns() {
        let addresses: BTreeSet<Ipv4Addr> =
            resolved.iter().filter(|(name, _)| selectors.iter().any(|s| s.matches(name))).flat_map(|(_, addresses)| addresses.iter().copied()).collect();
        if addresses.is_empty() {
            continue;
        }
        let to =
            addresses.iter().map(|a| NetworkPolicyPeer { ip_block: Some(IPBlock { cidr: format!("{a}/32"), except: None }), ..Default::default() }).collect();
        spec.egress.get_or_insert_with(Vec::new).push(NetworkPolicyEgressRule { to: Some(to), ports });
    }
    plain
}

/// Compiles `inputs` into the datapath's state.
pub fn compile(inputs: &Inputs) -> State {
    let mut state = State::default();
    let mut prefixes = BTreeSet::new();
    // Every policy as a NetworkPolicy, with the HTTP rules of each of its ingress rules.
    let http_policies: Vec<(NetworkPolicy, Vec<Vec<HttpRule>>)> =
        inputs.http_policies.iter().map(|p| (with_resolved(p, &inputs.resolved), p.ingress_http())).collect();
    let all: Vec<(&NetworkPolicy, &[Vec<HttpRule>])> =
        inputs.policies.iter().map(|p| (p, &[][..])).chain(http_policies.iter().map(|(p, http)| (p, &http[..]))).collect();
    for (policy, _) in &all {
        let Some(spec) = &policy.spec else { continue };
        let peers = spec.ingress.iter().flatten().flat_map(|r| r.from.iter().flatten()).chain(spec.egress.iter().flatten().flat_map(|r| r.to.iter().flatten()));
        for block in peers.filter_map(|p| p.ip_block.as_ref()) {
            prefixes.extend(network(&block.cidr));
            prefixes.extend(block.except.iter().flatten().filter_map(|e| network(e)));
        }
    }
    let compiler = Compiler { inputs, prefixes: prefixes.into_iter().enumerate().map(|(i, p)| (p, CIDR_IDENTITY_BASE + i as u32)).collect() };
    for (prefix, id) in &compiler.prefixes {
        state.ipcache.insert(*prefix, *id);
    }
    // After the prefixes: an ipBlock naming exactly a node's address must not take the node's
    // identity away (its probes would then be judged as that block's).
    for ip in &inputs.host {
        state.ipcache.insert(Ipv4Net::from(*ip), HOST);
    }
    for endpoint in &inputs.endpoints {
        if let Some(id) = compiler.identity_of(endpoint) {
            state.ipcache.insert(Ipv4Net::from(endpoint.ip), id);
        }
    }
    for (spec, &local) in &inputs.identities {
        if !inputs.local.contains(&local) {
            continue;
        }
        let (ingress, egress) = inputs.namespaces.get(&spec.namespace).map(api::netpol::default_deny).unwrap_or_default();
        if ingress {
            restrict(&mut state, local, Direction::Ingress);
        }
        if egress {
            restrict(&mut state, local, Direction::Egress);
        }
    }
    // The rules of rules without HTTP rules: on a port with HTTP rules, their peers may ask anything.
    let mut plain: BTreeSet<Rule> = BTreeSet::new();
    for (policy, http) in all {
        let Some(spec) = &policy.spec else { continue };
        let ns = policy.metadata.namespace.as_deref().unwrap_or("default");
        let Some(selects) = selector(spec.pod_selector.as_ref()) else { continue };
        let selected: Vec<u32> = inputs
            .identities
            .iter()
            .filter(|(s, id)| s.namespace == ns && inputs.local.contains(id) && selects.matches(&s.labels))
            .map(|(_, id)| *id)
            .collect();
        if selected.is_empty() {
            continue;
        }
        let egress_rules = spec.egress.as_ref().is_some_and(|e| !e.is_empty());
        let types: Vec<Direction> = match &spec.policy_types {
            Some(types) => types
                .iter()
                .filter_map(|t| {
                    if t == "Ingress" {
                        Some(Direction::Ingress)
                    } else if t == "Egress" {
                        Some(Direction::Egress)
                    } else {
                        None
                    }
                })
                .collect(),
            None if egress_rules => vec![Direction::Ingress, Direction::Egress],
            None => vec![Direction::Ingress],
        };
        for &local in &selected {
            for &direction in &types {
                restrict(&mut state, local, direction);
            }
            let mut add = |direction: Direction, peers: &Option<Vec<u32>>, ports: &[(Option<u16>, Protocol)], with_http: bool| {
                let each = each_peer(peers);
                for (port, protocol) in ports {
                    for peer in &each {
                        let rule = Rule { local, peer: *peer, port: *port, protocol: *protocol, direction };
                        state.rules.insert(rule);
                        if !with_http {
                            plain.insert(rule);
                        }
                    }
                }
            };
            if types.contains(&Direction::Ingress) {
                for (i, rule) in spec.ingress.iter().flatten().enumerate() {
                    let peers = rule.from.as_ref().filter(|f| !f.is_empty()).map(|from| from.iter().flat_map(|p| compiler.peer(ns, p)).collect::<Vec<_>>());
                    let ports = compiler.ports(rule.ports.as_ref(), &|e| compiler.identity_of(e) == Some(local));
                    let http_rules = http.get(i).filter(|h| !h.is_empty());
                    add(Direction::Ingress, &peers, &ports, http_rules.is_some());
                    let Some(http_rules) = http_rules else { continue };
                    for (port, _) in ports.iter().filter(|(_, protocol)| *protocol == Protocol::Tcp) {
                        let Some(port) = port else { continue };
                        let entry = state.http.entry((local, *port)).or_default();
                        for peer in each_peer(&peers) {
                            entry.add(peer, Access::Rules(http_rules.iter().cloned().collect()));
                        }
                    }
                }
            }
            if types.contains(&Direction::Egress) {
                for rule in spec.egress.iter().flatten() {
                    let peers = rule.to.as_ref().filter(|t| !t.is_empty()).map(|to| to.iter().flat_map(|p| compiler.peer(ns, p)).collect::<Vec<_>>());
                    let holders = peers.clone();
                    let ports =
                        compiler.ports(rule.ports.as_ref(), &|e| holders.as_ref().is_none_or(|h| compiler.identity_of(e).is_some_and(|id| h.contains(&id))));
                    add(Direction::Egress, &peers, &ports, false);
                }
            }
        }
    }
    for ((local, port), entry) in state.http.iter_mut() {
        let allows = |r: &&Rule| r.local == *local && r.direction == Direction::Ingress && r.protocol == Protocol::Tcp && r.port.is_none_or(|p| p == *port);
        for rule in plain.iter().filter(allows) {
            entry.add(rule.peer, Access::All);
        }
    }
    state
}

#[cfg(test)]
mod tests;
