//! Preemption: when a pod fits nowhere, find the node where evicting the fewest, lowest-priority
//! pods makes room. Only pods of strictly lower priority are ever victims.

use crate::filter::Reject;
use crate::podinfo::PodInfo;
use crate::snapshot::Snapshot;

/// A preemption plan: the node and the keys of the pods to evict there.
pub(crate) struct Plan {
    pub slot: usize,
    pub victims: Vec<String>,
}

impl Snapshot {
    /// The best plan over the nodes whose only obstacle was room, or `None`.
    pub(crate) fn preempt(&self, pod: &PodInfo, failed: &[(usize, Reject)]) -> Option<Plan> {
        let mut best: Option<((i32, usize, i64, String), Plan)> = None;
        for (slot, _) in failed.iter().filter(|(_, r)| r.preemptible()) {
            let Some(victims) = self.victims_on(*slot, pod) else { continue };
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

    /// The smallest set of lower-priority pods on the node whose eviction lets the pod fit:
    /// remove every candidate, then give back as many as still fit, highest priority first.
    fn victims_on(&self, slot: usize, pod: &PodInfo) -> Option<Vec<String>> {
        let node = self.nodes[slot].as_ref()?;
        let mut candidates: Vec<&String> = node.pods.iter().filter(|k| self.placed.get(*k).is_some_and(|p| p.priority < pod.priority)).collect();
        if candidates.is_empty() {
            return None;
        }
        let mut requested = node.requested.clone();
        for k in &candidates {
            requested.add_request(&self.placed[*k].request, -1);
        }
        let mut pods = (node.pods.len() - candidates.len()) as i64;
        self.fits(node, pod, &requested, pods).is_none().then_some(())?;
        candidates.sort_by_key(|k| (std::cmp::Reverse(self.placed[*k].priority), (*k).clone()));
        let mut victims = Vec::new();
        for k in candidates {
            let p = &self.placed[k];
            requested.add_request(&p.request, 1);
            if self.fits(node, pod, &requested, pods + 1).is_none() {
                pods += 1;
            } else {
                requested.add_request(&p.request, -1);
                victims.push(k.clone());
            }
        }
        Some(victims)
    }
}
