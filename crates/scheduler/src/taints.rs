//! Taints as kube-scheduler sees them: the ones a node's state implies (cordoned, not ready,
//! unreachable), which Kubernetes' node lifecycle controller writes onto the node and the
//! scheduler then treats like any other taint, and the index from each distinct NoSchedule or
//! NoExecute taint to the nodes that carry it.

use std::collections::HashMap;

use api::k8s_openapi::api::core::v1::Taint;

use crate::bitset::Bitset;
use crate::podinfo::{tolerated, PodInfo};

/// The taint of a cordoned node (`spec.unschedulable`).
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// The taint of a node whose Ready condition is False, or not reported yet.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The taint of a node whose Ready condition is Unknown (its agent stopped reporting).
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// True for the effects that keep pods off a node (PreferNoSchedule only steers).
pub(crate) fn is_hard(taint: &Taint) -> bool {
    matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute")
}

/// The NoSchedule taints a node carries in Kubernetes because of its state, before its own:
/// cordoned → `unschedulable`, Ready False or absent → `not-ready` (a new node is created with
/// it), Ready Unknown → `unreachable`. One the node already carries with the same key and effect
/// is not repeated: the node's own (set by `controllers::nodelifecycle`) stands.
pub(crate) fn with_state_taints(ready: Option<&str>, cordoned: bool, own: Vec<Taint>) -> Vec<Taint> {
    let readiness = match ready {
        Some("True") => None,
        Some("Unknown") => Some(UNREACHABLE),
        _ => Some(NOT_READY),
    };
    let implied = cordoned.then_some(UNSCHEDULABLE).into_iter().chain(readiness);
    let mut taints: Vec<Taint> = implied
        .filter(|key| !own.iter().any(|t| t.key == *key && t.effect == "NoSchedule"))
        .map(|key| Taint { key: key.to_string(), effect: "NoSchedule".to_string(), ..Default::default() })
        .collect();
    taints.extend(own);
    taints
}

/// What a taint is for tolerations: key, value and effect (`timeAdded` does not matter).
type TaintId = (String, String, String);

fn id(taint: &Taint) -> TaintId {
    (taint.key.clone(), taint.value.clone().unwrap_or_default(), taint.effect.clone())
}

/// The nodes carrying each distinct NoSchedule or NoExecute taint. Clusters have few distinct
/// taints (a handful of dedicated pools and the node-state ones), so a pod's candidates lose
/// every node it does not tolerate in a few set differences, whatever its tolerations.
#[derive(Clone, Debug, Default)]
pub(crate) struct TaintIndex {
    /// Nodes with any hard taint.
    pub any: Bitset,
    by_taint: HashMap<TaintId, (Taint, Bitset)>,
}

impl TaintIndex {
    /// Records the hard taints of the node in `slot`.
    pub fn insert(&mut self, slot: usize, taints: &[Taint]) {
        for t in taints.iter().filter(|t| is_hard(t)) {
            self.any.insert(slot);
            let entry = self.by_taint.entry(id(t)).or_insert_with(|| (Taint { time_added: None, ..t.clone() }, Bitset::default()));
            entry.1.insert(slot);
        }
    }

    /// Forgets the hard taints of the node in `slot`; taints no node carries any more go.
    pub fn remove(&mut self, slot: usize, taints: &[Taint]) {
        self.any.remove(slot);
        for t in taints.iter().filter(|t| is_hard(t)) {
            let key = id(t);
            if let Some((_, nodes)) = self.by_taint.get_mut(&key) {
                nodes.remove(slot);
                if nodes.is_empty() {
                    self.by_taint.remove(&key);
                }
            }
        }
    }

    /// Removes from `set` the nodes with a hard taint the pod does not tolerate.
    pub fn prune(&self, set: &mut Bitset, pod: &PodInfo) {
        if pod.tolerations.is_empty() {
            set.difference(&self.any);
            return;
        }
        for (taint, nodes) in self.by_taint.values() {
            if !tolerated(&pod.tolerations, taint) {
                set.difference(nodes);
            }
        }
    }
}
