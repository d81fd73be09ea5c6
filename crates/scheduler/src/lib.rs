//! Placement: which Ready node has room for a pod and matches its node selector. Pure logic
//! over a [`Snapshot`]; the controller that binds pods lives in `controllers`.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt;

use api::pod::{self, Requests};
use api::{quantity, Node, Pod};

/// What the scheduler knows of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// Node labels.
    pub labels: BTreeMap<String, String>,
    /// What pods may use in total.
    pub allocatable: Requests,
    /// The most pods the node runs.
    pub max_pods: i64,
    /// What bound, non-finished pods request.
    pub requested: Requests,
    /// How many pods are bound to it.
    pub pods: i64,
    /// Its Ready condition is True.
    pub ready: bool,
    /// It is cordoned (`spec.unschedulable`).
    pub unschedulable: bool,
}

/// Every node as the scheduler sees it at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Nodes, sorted by name for deterministic placement.
    pub nodes: Vec<NodeInfo>,
}

impl NodeInfo {
    /// Reads a Node object.
    pub fn from_node(node: &Node) -> NodeInfo {
        let status = node.status.as_ref();
        let alloc = |name: &str| status.and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref())).and_then(|m| m.get(name)).map(|q| q.0.clone());
        let ready = status.and_then(|s| s.conditions.as_ref()).and_then(|c| c.iter().find(|c| c.type_ == "Ready")).is_some_and(|c| c.status == "True");
        NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            allocatable: Requests {
                cpu_millis: alloc("cpu").and_then(|q| quantity::millis(&q).ok()).unwrap_or(0),
                memory_bytes: alloc("memory").and_then(|q| quantity::units(&q).ok()).unwrap_or(0),
            },
            max_pods: alloc("pods").and_then(|q| quantity::units(&q).ok()).unwrap_or(110),
            requested: Requests::default(),
            pods: 0,
            ready,
            unschedulable: node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
        }
    }

    /// What is left for new pods.
    pub fn free(&self) -> Requests {
        Requests {
            cpu_millis: self.allocatable.cpu_millis - self.requested.cpu_millis,
            memory_bytes: self.allocatable.memory_bytes - self.requested.memory_bytes,
        }
    }
}

impl Snapshot {
    /// Builds a snapshot from nodes and the pods bound to them (finished pods free their room).
    pub fn build<'a>(nodes: impl IntoIterator<Item = &'a Node>, pods: impl IntoIterator<Item = &'a Pod>) -> Snapshot {
        let mut snapshot = Snapshot { nodes: nodes.into_iter().map(NodeInfo::from_node).collect() };
        snapshot.nodes.sort_by(|a, b| a.name.cmp(&b.name));
        for p in pods {
            let finished = matches!(pod::phase(p), "Succeeded" | "Failed");
            if let (Some(node), false, Some(spec)) = (pod::node_name(p), finished, p.spec.as_ref()) {
                snapshot.assume(node, pod::requests(spec));
            }
        }
        snapshot
    }

    /// Records that a pod with `requests` now runs on `node`.
    pub fn assume(&mut self, node: &str, requests: Requests) {
        if let Some(n) = self.nodes.iter_mut().find(|n| n.name == node) {
            n.requested = n.requested + requests;
            n.pods += 1;
        }
    }
}

/// Why a pod fits nowhere: for each reason, how many nodes gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unschedulable {
    /// Nodes considered.
    pub total: usize,
    /// Reason → number of nodes.
    pub reasons: BTreeMap<&'static str, usize>,
}

impl fmt::Display for Unschedulable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.total == 0 {
            return write!(f, "0/0 nodes are available: no nodes are registered; start an agent (flotilla up runs one)");
        }
        let reasons: Vec<String> = self.reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
        write!(f, "0/{} nodes are available: {}.", self.total, reasons.join(", "))
    }
}

fn reject(node: &NodeInfo, pod: &Pod, needs: Requests) -> Option<&'static str> {
    if !node.ready {
        return Some("node(s) not ready");
    }
    if node.unschedulable {
        return Some("node(s) were unschedulable");
    }
    let selector = pod.spec.as_ref().and_then(|s| s.node_selector.as_ref());
    if selector.is_some_and(|sel| sel.iter().any(|(k, v)| node.labels.get(k) != Some(v))) {
        return Some("node(s) didn't match Pod's node selector");
    }
    if node.pods + 1 > node.max_pods {
        return Some("Too many pods");
    }
    let free = node.free();
    if needs.cpu_millis > free.cpu_millis {
        return Some("Insufficient cpu");
    }
    if needs.memory_bytes > free.memory_bytes {
        return Some("Insufficient memory");
    }
    None
}

/// Chooses a node for `pod`: among the nodes that pass every filter, the least allocated one
/// (the mean of its CPU and memory fractions after placement), ties broken by name.
pub fn schedule(pod: &Pod, snapshot: &Snapshot) -> Result<String, Unschedulable> {
    let needs = pod.spec.as_ref().map(pod::requests).unwrap_or_default();
    let mut reasons: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut best: Option<(u64, &NodeInfo)> = None;
    for node in &snapshot.nodes {
        if let Some(reason) = reject(node, pod, needs) {
            *reasons.entry(reason).or_default() += 1;
            continue;
        }
        let fraction = |used: i64, total: i64| if total <= 0 { 0 } else { (used.max(0) as u128 * 1_000_000 / total as u128) as u64 };
        let after = node.requested + needs;
        let score = fraction(after.cpu_millis, node.allocatable.cpu_millis) + fraction(after.memory_bytes, node.allocatable.memory_bytes);
        if best.is_none_or(|(s, _)| score < s) {
            best = Some((score, node));
        }
    }
    best.map(|(_, n)| n.name.clone()).ok_or(Unschedulable { total: snapshot.nodes.len(), reasons })
}

#[cfg(test)]
mod tests;
