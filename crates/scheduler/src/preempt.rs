//! Preemption: when a pod fits nowhere, find the node where evicting the fewest, lowest-priority
//! pods lets it pass every filter, as kube-scheduler's DefaultPreemption does. Only pods of
//! strictly lower priority are ever victims.

use std::cmp::Reverse;

use crate::filter::{Evicted, Prepared, Reject};
use crate::podinfo::PodInfo;
use crate::snapshot::{NodeInfo, Snapshot};

/// A preemption plan: the node and the keys of the pods to evict there.
pub(crate) struct Plan {
    pub slot: usize,
    pub victims: Vec<String>,
}

impl Snapshot {
    /// The best plan over the nodes whose first obstacle evicting could remove, or `None`.
    pub(crate) fn preempt(&self, pod: &PodInfo, prep: &Prepared, failed: &[(usize, Reject)]) -> Option<Plan> {
        let mut best: Option<((i32, usize, i64, String), Plan)> = None;
        for (slot, _) in failed.iter().filter(|(_, r)| r.preemptible()) {
            let Some(victims) = self.victims_on(*slot, pod, prep) else { continue };
            let node = self.nodes[*slot].as_ref().expect("failed nodes exist");
            let prios: Vec<i32> = victims.iter().map(|k| self.placed[k].priority).collect();
            let rank = (prios.iter().copied().max().unwrap_or(i32::MIN), victims.len(), prios.iter().map(|p| *p as i64).sum(), node.name.clone());
            if best.as_ref().is_none_or(|(r, _)| rank < *r) {
                best = Some((rank, Plan { slot: *slot, victims }));
            }
        }
        best.map(|(_, plan)| plan)
    }

    /// True when the node runs a pod of priority below `priority`.
    pub(crate) fn holds_lower_priority(&self, slot: usize, priority: i32) -> bool {
        self.nodes[slot].as_ref().is_some_and(|n| n.pods.iter().any(|k| self.placed.get(k).is_some_and(|p| p.priority < priority)))
    }

    /// The smallest set of lower-priority pods on the node whose eviction lets the pod pass
    /// every filter there (kube-scheduler's `SelectVictimsOnNode`): evict every candidate, then
    /// give back as many as the pod still passes with, highest priority first. A pod that
    /// fails even with every candidate gone gets nothing here: that includes a pod whose
    /// required affinity only lower-priority pods on the node satisfy, which Kubernetes does
    /// not preempt for either, so the pods a preemptor needs are never its victims.
    fn victims_on(&self, slot: usize, pod: &PodInfo, prep: &Prepared) -> Option<Vec<String>> {
        let node = self.nodes[slot].as_ref()?;
        let mut candidates: Vec<Evicted> =
            node.pods.iter().filter_map(|k| self.placed.get(k).map(|p| (k.as_str(), p))).filter(|(_, p)| p.priority < pod.priority).collect();
        if candidates.is_empty() {
            return None;
        }
        candidates.sort_by_key(|(k, p)| (Reverse(p.priority), *k));
        let mut gone = candidates.clone();
        self.passes_without(slot, node, pod, prep, &gone).then_some(())?;
        let mut victims = Vec::new();
        for (key, p) in candidates {
            gone.retain(|(k, _)| *k != key);
            if !self.passes_without(slot, node, pod, prep, &gone) {
                gone.push((key, p));
                victims.push(key.to_string());
            }
        }
        Some(victims)
    }

    /// Whether the pod passes the filters that depend on the node's pods with `gone` evicted
    /// (the others passed already: they came before the preemptible rejection).
    fn passes_without(&self, slot: usize, node: &NodeInfo, pod: &PodInfo, prep: &Prepared, gone: &[Evicted]) -> bool {
        let mut requested = node.requested.clone();
        for (_, p) in gone {
            requested.add_request(&p.request, -1);
        }
        self.check_pods(slot, prep, gone).is_none() && self.fits(node, pod, &requested, (node.pods.len() - gone.len()) as i64).is_none()
    }
}
