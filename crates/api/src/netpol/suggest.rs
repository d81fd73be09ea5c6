//! `flotilla policy suggest`: turns the flows a namespace's pods were seen in into
//! NetworkPolicies that allow exactly those and deny the rest (learn, then enforce).
//!
//! One policy per identity (a distinct set of security labels) of the namespace, selecting
//! exactly the pods with that set, restricting both directions. Its ingress rules are the
//! forwarded flows judged on the way into those pods, its egress rules those judged on the way
//! out: the peer (a pod selector, with a namespace selector for another namespace, or the
//! address as an ipBlock `/32`) and the destination ports. Identities seen in no flow get a
//! policy with no rules: everything but the node's probes is denied.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::flow::{Flow, FlowEndpoint, TrafficDirection, Verdict};
use crate::identity::{security_labels, HOST};
use crate::{ObjectMeta, Pod};

/// The label every namespace carries with its own name.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// Labels whose value names a workload best, in the order they are looked for.
const NAME_LABELS: [&str; 4] = ["app.kubernetes.io/name", "app", "k8s-app", "name"];

/// One suggested policy and what its reviewer should know about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Suggested {
    /// The policy.
    pub policy: NetworkPolicy,
    /// Lines for its reviewer (written as YAML comments above it).
    pub notes: Vec<String>,
}

/// What a suggestion was made from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Forwarded flows turned into rules.
    pub used: usize,
    /// Dropped flows, left out: they were denied, and stay so.
    pub dropped: usize,
    /// Forwarded flows whose other end no policy can name (not valid), left out.
    pub unusable: usize,
    /// The first and last time of the flows used.
    pub span: Option<(jiff::Timestamp, jiff::Timestamp)>,
}

/// A peer of a rule.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Peer {
    /// Pods of a namespace with these security labels.
    Pods { namespace: String, labels: BTreeMap<String, String> },
    /// The node (it has no NetworkPolicy peer).
    Node,
    /// An address outside the pods.
    Address(String),
}

/// A destination port: protocol and number.
type Port = (String, u16);

/// What one identity was seen doing, peer by peer.
#[derive(Default)]
struct Seen {
    ingress: BTreeMap<Peer, BTreeSet<Port>>,
    egress: BTreeMap<Peer, BTreeSet<Port>>,
    /// Its ports the node's proxy judged requests on (a FlotillaNetworkPolicy's HTTP rules).
    http: BTreeSet<u16>,
}

/// The pods known, by namespace and by address.
struct Pods {
    label_sets: BTreeMap<String, BTreeSet<BTreeMap<String, String>>>,
    by_ip: BTreeMap<String, (String, BTreeMap<String, String>)>,
}

impl Pods {
    fn new(pods: &[Pod]) -> Pods {
        let mut known = Pods { label_sets: BTreeMap::new(), by_ip: BTreeMap::new() };
        for pod in pods {
            let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
            let Some(namespace) = pod.metadata.namespace.clone() else { continue };
            if host_network {
                continue;
            }
            let labels = security_labels(pod.metadata.labels.as_ref());
            for ip in pod.status.iter().flat_map(|s| s.pod_ip.iter().chain(s.pod_ips.iter().flatten().map(|p| &p.ip))) {
                known.by_ip.insert(ip.clone(), (namespace.clone(), labels.clone()));
            }
            known.label_sets.entry(namespace).or_default().insert(labels);
        }
        known
    }

    /// What `end` of a flow is: a pod (named in the flow, or known by its address), the node,
    /// or an address. A pod's first packets, before its identity reached the node, are judged
    /// as the world's; they are still the pod's.
    ///
    /// None for an end no policy could name: a namespace or labels that are not valid, an
    /// address that is none (a flow line comes from a node, and is checked like any input).
    fn peer(&self, end: &FlowEndpoint) -> Option<Peer> {
        if let (Some(namespace), Some(_)) = (&end.namespace, &end.pod) {
            let labels = security_labels(Some(&end.labels));
            let mut errors = crate::FieldErrors::default();
            crate::validation::labels(Some(&labels), "labels", &mut errors);
            return (crate::validation::is_dns_label(namespace) && errors.is_empty()).then(|| Peer::Pods { namespace: namespace.clone(), labels });
        }
        if let Some((namespace, labels)) = self.by_ip.get(&end.ip) {
            return Some(Peer::Pods { namespace: namespace.clone(), labels: labels.clone() });
        }
        let address: Ipv4Addr = end.ip.parse().ok()?;
        Some(if end.identity == HOST { Peer::Node } else { Peer::Address(address.to_string()) })
    }

    /// A selector for exactly the pods of `namespace` with `labels`: their labels, and for each
    /// other label set of the namespace that has all of them, its extra keys must not exist.
    fn exact_selector(&self, namespace: &str, labels: &BTreeMap<String, String>) -> LabelSelector {
        let extra: BTreeSet<&String> = self
            .label_sets
            .get(namespace)
            .into_iter()
            .flatten()
            .filter(|other| *other != labels && labels.iter().all(|(k, v)| other.get(k) == Some(v)))
            .flat_map(|other| other.keys().filter(|k| !labels.contains_key(*k)))
            .collect();
        LabelSelector {
            match_labels: (!labels.is_empty()).then(|| labels.clone()),
            match_expressions: (!extra.is_empty())
                .then(|| extra.into_iter().map(|key| LabelSelectorRequirement { key: key.clone(), operator: "DoesNotExist".into(), values: None }).collect()),
        }
    }
}

/// Suggests the policies for `namespace` from `flows` (any namespaces; those not touching it
/// are left out), knowing `pods` (all namespaces: peers are selected exactly too).
pub fn suggest(namespace: &str, pods: &[Pod], flows: &[Flow]) -> (Vec<Suggested>, Summary) {
    let mut known = Pods::new(pods);
    let mut seen: BTreeMap<BTreeMap<String, String>, Seen> = BTreeMap::new();
    for labels in known.label_sets.get(namespace).into_iter().flatten() {
        seen.entry(labels.clone()).or_default();
    }
    let mut summary = Summary::default();
    for flow in flows {
        let (local, peer) = match flow.traffic_direction {
            TrafficDirection::Ingress => (&flow.destination, &flow.source),
            TrafficDirection::Egress => (&flow.source, &flow.destination),
        };
        let Some(Peer::Pods { namespace: ns, labels }) = known.peer(local) else { continue };
        if ns != namespace {
            continue;
        }
        let Some(peer) = known.peer(peer) else {
            summary.unusable += 1;
            continue;
        };
        if flow.verdict == Verdict::Dropped {
            summary.dropped += 1;
            continue;
        }
        summary.used += 1;
        summary.span = Some(match summary.span {
            None => (flow.time, flow.time),
            Some((first, last)) => (first.min(flow.time), last.max(flow.time)),
        });
        // Pods seen only in flows (finished, or replaced since) are still selected exactly.
        known.label_sets.entry(namespace.to_string()).or_default().insert(labels.clone());
        let of = seen.entry(labels.clone()).or_default();
        if flow.l7.is_some() && flow.traffic_direction == TrafficDirection::Ingress {
            of.http.insert(flow.destination.port);
        }
        let rules = match flow.traffic_direction {
            TrafficDirection::Ingress => &mut of.ingress,
            TrafficDirection::Egress => &mut of.egress,
        };
        rules.entry(peer).or_default().insert((flow.protocol.clone(), flow.destination.port));
    }
    let mut names = BTreeSet::new();
    let suggested = seen.iter().map(|(labels, of)| policy_for(namespace, labels, of, &known, &mut names)).collect();
    (suggested, summary)
}

fn policy_for(namespace: &str, labels: &BTreeMap<String, String>, of: &Seen, known: &Pods, names: &mut BTreeSet<String>) -> Suggested {
    let mut notes = vec![format!("The pods of {namespace} labelled {}.", describe_labels(labels))];
    if of.ingress.is_empty() && of.egress.is_empty() {
        notes.push("No flow of theirs was seen: everything but the node's probes is denied.".into());
    }
    let mut ingress = Vec::new();
    // A NetworkPolicy rule on a port with HTTP rules would let its peers ask anything there.
    let ingress_seen: BTreeMap<Peer, BTreeSet<Port>> = of
        .ingress
        .iter()
        .map(|(peer, ports)| (peer.clone(), ports.iter().filter(|(_, port)| !of.http.contains(port)).cloned().collect::<BTreeSet<Port>>()))
        .filter(|(_, ports)| !ports.is_empty())
        .collect();
    if !of.http.is_empty() {
        let list: Vec<String> = of.http.iter().map(u16::to_string).collect();
        notes.push(format!(
            "Their port(s) {} have HTTP rules (a FlotillaNetworkPolicy): what comes in there is left to those rules, not allowed here.",
            list.join(", ")
        ));
    }
    for (ports, peers) in by_ports(&ingress_seen) {
        let peers: Vec<_> = peers.into_iter().filter(|p| **p != Peer::Node).collect();
        if peers.is_empty() {
            continue;
        }
        let (ports, note) = policy_ports(&ports, &peers);
        notes.extend(note);
        ingress.push(NetworkPolicyIngressRule { from: Some(peers.iter().map(|p| policy_peer(namespace, p, known)).collect()), ports });
    }
    if of.ingress.contains_key(&Peer::Node) {
        notes.push("The node's own connections to them (probes) always pass; they need no rule.".into());
    }
    let mut egress = Vec::new();
    for (ports, peers) in by_ports(&of.egress) {
        let (node, peers): (Vec<&Peer>, Vec<&Peer>) = peers.into_iter().partition(|p| **p == Peer::Node);
        if !node.is_empty() {
            // Kubernetes has no peer for the node: the rule can name its ports only, and a
            // protocol without ports (ICMP) not at all, as that rule would allow everything.
            let with_ports: BTreeSet<Port> = ports.iter().filter(|(protocol, _)| matches!(protocol.as_str(), "TCP" | "UDP" | "SCTP")).cloned().collect();
            if with_ports.len() < ports.len() {
                notes.push("They sent ICMP (or another protocol without ports) to the node: NetworkPolicy could allow it only by allowing everything, so it is left out.".into());
            }
            if !with_ports.is_empty() {
                let (ports, _) = policy_ports(&with_ports, &node);
                let list =
                    ports.iter().flatten().map(|p| format!("{}/{}", port_number(p), p.protocol.as_deref().unwrap_or("TCP"))).collect::<Vec<_>>().join(", ");
                notes.push(format!(
                    "They reached the node (DNS) on {list}: NetworkPolicy cannot name the node, so that rule allows those ports to any destination."
                ));
                egress.push(NetworkPolicyEgressRule { to: None, ports });
            }
        }
        if !peers.is_empty() {
            let (ports, note) = policy_ports(&ports, &peers);
            notes.extend(note);
            egress.push(NetworkPolicyEgressRule { to: Some(peers.iter().map(|p| policy_peer(namespace, p, known)).collect()), ports });
        }
    }
    let policy = NetworkPolicy {
        metadata: ObjectMeta { name: Some(unique_name(labels, names)), namespace: Some(namespace.to_string()), ..Default::default() },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(known.exact_selector(namespace, labels)),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(ingress),
            egress: Some(egress),
        }),
    };
    Suggested { policy, notes }
}

/// The peers grouped by the set of ports each was seen on, so that peers seen on the same
/// ports share one rule.
fn by_ports(seen: &BTreeMap<Peer, BTreeSet<Port>>) -> BTreeMap<BTreeSet<Port>, Vec<&Peer>> {
    let mut grouped: BTreeMap<BTreeSet<Port>, Vec<&Peer>> = BTreeMap::new();
    for (peer, ports) in seen {
        grouped.entry(ports.clone()).or_default().push(peer);
    }
    grouped
}

/// The rule's ports, and a note where some protocol has no ports in NetworkPolicy (ICMP): the
/// rule then names no ports, which allows every port and protocol to and from its peers.
fn policy_ports(ports: &BTreeSet<Port>, peers: &[&Peer]) -> (Option<Vec<NetworkPolicyPort>>, Option<String>) {
    let with_ports = |protocol: &str| matches!(protocol, "TCP" | "UDP" | "SCTP");
    if let Some((other, _)) = ports.iter().find(|(protocol, _)| !with_ports(protocol)) {
        let names = peers.iter().map(|p| peer_name(p)).collect::<Vec<_>>().join(", ");
        return (None, Some(format!("{other} was seen with {names}: NetworkPolicy has no {other} rule, so every port and protocol is allowed with them.")));
    }
    let ports = ports
        .iter()
        .map(|(protocol, port)| NetworkPolicyPort { protocol: Some(protocol.clone()), port: Some(IntOrString::Int(i32::from(*port))), end_port: None })
        .collect();
    (Some(ports), None)
}

fn port_number(port: &NetworkPolicyPort) -> String {
    match &port.port {
        Some(IntOrString::Int(n)) => n.to_string(),
        Some(IntOrString::String(s)) => s.clone(),
        None => "*".into(),
    }
}

fn policy_peer(namespace: &str, peer: &Peer, known: &Pods) -> NetworkPolicyPeer {
    match peer {
        Peer::Pods { namespace: ns, labels } => NetworkPolicyPeer {
            pod_selector: Some(known.exact_selector(ns, labels)),
            namespace_selector: (ns != namespace)
                .then(|| LabelSelector { match_labels: Some([(NAMESPACE_NAME_LABEL.to_string(), ns.clone())].into()), match_expressions: None }),
            ip_block: None,
        },
        Peer::Address(ip) => NetworkPolicyPeer { ip_block: Some(IPBlock { cidr: format!("{ip}/32"), except: None }), ..Default::default() },
        Peer::Node => unreachable!("the node is no NetworkPolicy peer; its rules are port-only"),
    }
}

fn peer_name(peer: &Peer) -> String {
    match peer {
        Peer::Pods { namespace, labels } => format!("the pods of {namespace} labelled {}", describe_labels(labels)),
        Peer::Node => "the node".into(),
        Peer::Address(ip) => ip.clone(),
    }
}

fn describe_labels(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "with nothing".into();
    }
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// `suggested-<what the labels call the pods>`, unique among `taken`.
fn unique_name(labels: &BTreeMap<String, String>, taken: &mut BTreeSet<String>) -> String {
    let what = NAME_LABELS.iter().find_map(|k| labels.get(*k)).cloned().unwrap_or_else(|| labels.values().cloned().collect::<Vec<_>>().join("-"));
    let mut slug: String = what.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    slug = slug.trim_matches('-').chars().take(40).collect::<String>().trim_end_matches('-').to_string();
    let base = if slug.is_empty() { "suggested-unlabelled".to_string() } else { format!("suggested-{slug}") };
    let mut name = base.clone();
    let mut n = 2;
    while !taken.insert(name.clone()) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

/// The suggestion as YAML documents, each policy under its notes as comments.
pub fn to_yaml(namespace: &str, suggested: &[Suggested], summary: &Summary) -> Result<String, serde_yaml::Error> {
    let mut out = format!("# Suggested by `flotilla policy suggest -n {namespace}` from {} forwarded flows", summary.used);
    if let Some((first, last)) = summary.span {
        let at = |t: jiff::Timestamp| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string();
        out.push_str(&format!(" seen from {} to {}", at(first), at(last)));
    }
    out.push_str(".\n# Each policy allows exactly what was seen and denies the rest. Review, then `flotilla apply -f`.\n");
    if summary.dropped > 0 {
        out.push_str(&format!("# {} dropped flows were left out: what was denied stays denied.\n", summary.dropped));
    }
    if summary.unusable > 0 {
        out.push_str(&format!("# {} flows whose other end was not a valid pod or address were left out.\n", summary.unusable));
    }
    for s in suggested {
        out.push_str("---\n");
        for note in &s.notes {
            out.push_str(&format!("# {note}\n"));
        }
        out.push_str(&serde_yaml::to_string(&s.policy)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
