//! Topology spread: for one constraint of one pod, which domains count and how many of the
//! constraint's pods they hold. Kubernetes counts only the nodes the constraint's node
//! inclusion policies admit: `nodeAffinityPolicy: Honor` (the default) admits the nodes the
//! pod's node selector and required affinity accept, `nodeTaintsPolicy: Honor` (default
//! `Ignore`) the nodes whose NoSchedule and NoExecute taints the pod tolerates.

use crate::bitset::Bitset;
use crate::podinfo::{tolerated, PodInfo, Spread};
use crate::snapshot::{NodeInfo, Snapshot, NO_DOMAIN};
use crate::taints::is_hard;

/// The domains of one topology that one constraint of pods with the same node constraints
/// (and, under `nodeTaintsPolicy: Honor`, tolerations) counts.
#[derive(Clone, Debug, Default)]
pub(crate) struct Eligible {
    /// `node_generation` when computed.
    pub generation: u64,
    /// Domains holding at least one node the constraint admits.
    pub domains: Vec<u32>,
    /// Those of them that also hold nodes it does not admit: only the pods on the admitted
    /// nodes count there.
    pub mixed: Vec<u32>,
}

/// True when the constraint's node inclusion policies admit `node` into the spread counts.
pub(crate) fn admits(spread: &Spread, pod: &PodInfo, node: &NodeInfo) -> bool {
    (!spread.honor_node_affinity || pod.accepts_node(&node.name, &node.labels))
        && (!spread.honor_taints || !node.hard_taints || node.taints.iter().filter(|t| is_hard(t)).all(|t| tolerated(&pod.tolerations, t)))
}

impl Snapshot {
    /// Makes `eligible[(topology, spread.inclusion_key)]` hold the domains of `topology` with
    /// at least one node the constraint admits, and which of them also hold nodes it does not.
    pub(crate) fn ensure_eligible(&mut self, topology: usize, pod: &PodInfo, spread: &Spread) {
        let key = (topology, spread.inclusion_key.clone());
        if self.eligible.get(&key).is_some_and(|e| e.generation == self.node_generation) {
            return;
        }
        let (mut admitted, mut refused) = (Bitset::default(), Bitset::default());
        let mut eligible = Eligible { generation: self.node_generation, ..Default::default() };
        for (slot, n) in self.nodes.iter().enumerate() {
            let Some(n) = n else { continue };
            let d = self.topologies[topology].domain(slot);
            if d == NO_DOMAIN {
                continue;
            }
            if admits(spread, pod, n) {
                if !admitted.contains(d as usize) {
                    admitted.insert(d as usize);
                    eligible.domains.push(d);
                }
            } else {
                refused.insert(d as usize);
            }
        }
        eligible.mixed = eligible.domains.iter().copied().filter(|d| refused.contains(*d as usize)).collect();
        self.eligible.insert(key, eligible);
    }

    /// The pods `term` counts on the nodes of `domain` that the constraint admits.
    pub(crate) fn count_on_admitted(&self, term: usize, domain: u32, pod: &PodInfo, spread: &Spread) -> i64 {
        let tc = &self.terms[term];
        let members = self.topologies[tc.topology].members.get(domain as usize).map(Vec::as_slice).unwrap_or_default();
        let mut count = 0;
        for slot in members {
            let Some(node) = self.nodes[*slot as usize].as_ref() else { continue };
            if !admits(spread, pod, node) {
                continue;
            }
            count += node
                .pods
                .iter()
                .filter_map(|key| self.placed.get(key))
                .filter(|p| tc.term.matches(&p.namespace, self.namespaces.get(&p.namespace), &p.labels))
                .count() as i64;
        }
        count
    }
}
