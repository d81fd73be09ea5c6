//! Placement for fleets: filters (resources, node selector and affinity, taints, pod affinity
//! and anti-affinity, topology spread), scores (spread or bin-pack, balance, preferences, image
//! locality) and preemption, over an incremental [`Snapshot`]. Pure logic with no IO; the
//! controller that binds pods lives in `controllers`.
#![forbid(unsafe_code)]

mod bitset;
mod filter;
pub mod podinfo;
mod preempt;
mod prune;
pub mod resources;
mod score;
mod snapshot;
mod spread;
pub mod synthetic;
mod taints;

use std::collections::BTreeMap;
use std::fmt;

pub use filter::Reason;
pub use podinfo::{ConstraintError, PodInfo, Strategy};
pub use snapshot::{NodeInfo, Snapshot};

/// How the scheduler decides.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// The cluster's resource scoring strategy; a pod may override it with the
    /// `flotilla.dev/scheduling-strategy` annotation.
    pub strategy: Strategy,
    /// Stop looking once this many feasible nodes are found (or [`SchedulerConfig::percentage`]
    /// of the nodes, when that is more); every candidate is looked at when fewer fit. The
    /// indexes leave mostly feasible candidates, so 100 random-rotated feasible nodes score
    /// close to all of them at a fraction of the cost.
    pub min_feasible: usize,
    /// Percentage of the nodes to find feasible before scoring; 0 means only
    /// [`SchedulerConfig::min_feasible`]. kube-scheduler's adaptive default is 50% at 100 nodes
    /// down to 5% from 5,625 nodes; 10 reproduces it at 5,000 nodes.
    pub percentage: u32,
    /// Where the first search starts; the same snapshot, seed and pod stream give the same
    /// placements.
    pub seed: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig { strategy: Strategy::LeastAllocated, min_feasible: 100, percentage: 0, seed: 0 }
    }
}

/// What to do with a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Bind it to this node.
    Bind(String),
    /// Evict these pods (`namespace/name`) from the node, then bind it there.
    Preempt {
        /// The node.
        node: String,
        /// The pods to evict.
        victims: Vec<String>,
    },
}

/// Why a pod fits nowhere: for each reason, how many nodes gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unschedulable {
    /// Nodes considered.
    pub total: usize,
    /// Reason → number of nodes.
    pub reasons: BTreeMap<Reason, usize>,
    /// The pod's constraints cannot be read.
    pub invalid: Option<ConstraintError>,
    /// Preemption was tried and found no node.
    pub preemption_failed: bool,
}

impl fmt::Display for Unschedulable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(e) = &self.invalid {
            return write!(f, "invalid scheduling constraints: {e}");
        }
        if self.total == 0 {
            return write!(f, "0/0 nodes available: no nodes are registered; start an agent (flotilla up runs one)");
        }
        let mut reasons: Vec<(&Reason, &usize)> = self.reasons.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.to_string().cmp(&b.0.to_string())));
        let parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
        write!(f, "0/{} nodes available: {}.", self.total, parts.join(", "))?;
        if self.preemption_failed {
            write!(f, " Preemption: no node where evicting lower-priority pods makes room.")?;
        }
        Ok(())
    }
}

impl Snapshot {
    fn feasible_to_find(&self, nodes: usize) -> usize {
        let min = self.config.min_feasible.max(1);
        if nodes <= min {
            return nodes;
        }
        (nodes * self.config.percentage.min(100) as usize / 100).max(min)
    }

    /// The best-scoring of `feasible` (not empty); ties go to the first in search order.
    fn best(&self, pod: &PodInfo, prep: &filter::Prepared, feasible: &[usize]) -> Decision {
        let scores = self.scores(pod, prep, feasible);
        let best = scores.iter().enumerate().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0))).map(|(i, _)| feasible[i]).expect("feasible is not empty");
        Decision::Bind(self.nodes[best].as_ref().expect("feasible nodes exist").name.clone())
    }

    /// Decides where `pod` goes. The snapshot is not changed except for caches; call
    /// [`Snapshot::assume`] once the binding is written.
    pub fn schedule(&mut self, pod: &PodInfo) -> Result<Decision, Unschedulable> {
        let mut prep = self.prepare(pod);
        let candidates = self.candidates(pod, &prep);
        prep.nodes_prefiltered = true;
        let want = self.feasible_to_find(self.alive.len());
        let mut feasible = Vec::with_capacity(want.min(1024));
        let mut last = None;
        for slot in candidates.iter_from(self.next_start) {
            last = Some(slot);
            self.nodes_checked += 1;
            if self.check(slot, pod, &prep).is_none() {
                feasible.push(slot);
                if feasible.len() >= want {
                    break;
                }
            }
        }
        if let Some(last) = last {
            self.next_start = last + 1;
        }
        if !feasible.is_empty() {
            return Ok(self.best(pod, &prep, &feasible));
        }
        // Nothing fits: look at every node for the reasons (the indexes skipped some).
        prep.nodes_prefiltered = false;
        let failed: Vec<(usize, filter::Reject)> = self.alive.iter_from(0).filter_map(|slot| self.check(slot, pod, &prep).map(|r| (slot, r))).collect();
        if failed.len() < self.alive.len() {
            // The indexes pruned a node that fits: a bug, but the pod still deserves the node.
            let feasible: Vec<usize> = self.alive.iter_from(0).filter(|s| !failed.iter().any(|(f, _)| f == s)).collect();
            return Ok(self.best(pod, &prep, &feasible));
        }
        let mut preemption_failed = false;
        if pod.may_preempt
            && self.lowest_priority().is_some_and(|low| low < pod.priority)
            && failed.iter().any(|(slot, r)| r.preemptible() && self.holds_lower_priority(*slot, pod.priority))
        {
            match self.preempt(pod, &prep, &failed) {
                Some(plan) => {
                    let node = self.nodes[plan.slot].as_ref().expect("plans name live nodes").name.clone();
                    return Ok(Decision::Preempt { node, victims: plan.victims });
                }
                None => preemption_failed = true,
            }
        }
        // Spell each distinct rejection once (taints differ per node, so those per node).
        let mut grouped: std::collections::HashMap<filter::Reject, (usize, usize)> = std::collections::HashMap::new();
        let mut reasons = BTreeMap::new();
        for (slot, r) in failed {
            if matches!(r, filter::Reject::Taint(_)) {
                *reasons.entry(self.reason(slot, r)).or_default() += 1;
            } else {
                grouped.entry(r).or_insert((slot, 0)).1 += 1;
            }
        }
        for (r, (slot, n)) in grouped {
            *reasons.entry(self.reason(slot, r)).or_default() += n;
        }
        Err(Unschedulable { total: self.alive.len(), reasons, invalid: None, preemption_failed })
    }
}

#[cfg(test)]
mod tests;
