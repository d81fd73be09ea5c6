//! Candidate pruning: which nodes are worth filtering for a pod, found from indexes instead of
//! by visiting every node. The label index settles node selectors and simple affinity terms,
//! the resource index extended resources, the taint index every NoSchedule or NoExecute taint
//! the pod does not tolerate (those of cordoned and not-ready nodes too), and the topology
//! members the domains that pod affinity, anti-affinity and hard spread rule out. Pruning only
//! removes nodes the filters would reject: every candidate is still filtered.

use crate::bitset::Bitset;
use crate::filter::Prepared;
use crate::podinfo::{NodeExpr, NodeTerm, PodInfo};
use crate::resources::STORAGE;
use crate::snapshot::{Snapshot, NO_DOMAIN};

impl Snapshot {
    /// The candidates for `pod`; the node selector and node affinity are settled exactly by
    /// the label index, so the filters need not look at labels again.
    pub(crate) fn candidates(&self, pod: &PodInfo, prep: &Prepared) -> Bitset {
        let mut set = self.alive.clone();
        let empty = Bitset::default();
        for (k, v) in &pod.node_selector {
            set.intersect(self.labels.get(k).and_then(|vs| vs.get(v)).unwrap_or(&empty));
        }
        if let Some(terms) = &pod.node_affinity {
            let mut any = Bitset::default();
            for term in terms {
                any.union(&self.term_nodes(term));
            }
            set.intersect(&any);
        }
        for (id, _) in pod.request.0.iter().filter(|(id, _)| *id > STORAGE) {
            set.intersect(self.has_resource.get(*id).unwrap_or(&empty));
        }
        self.taint_index.prune(&mut set, pod);
        self.prune_domains(&mut set, prep);
        set
    }

    /// The live nodes a node selector term matches.
    pub(crate) fn term_nodes(&self, term: &NodeTerm) -> Bitset {
        if term.labels.is_empty() && term.fields.is_empty() {
            return Bitset::default();
        }
        let mut set = self.alive.clone();
        let empty = Bitset::default();
        for e in &term.labels {
            let values = self.labels.get(e.key());
            let union_of = |keep: &dyn Fn(&str) -> bool| {
                let mut u = Bitset::default();
                for (v, nodes) in values.into_iter().flatten() {
                    if keep(v) {
                        u.union(nodes);
                    }
                }
                u
            };
            let has_key = self.label_keys.get(e.key()).unwrap_or(&empty);
            match e {
                NodeExpr::In(_, vs) => set.intersect(&union_of(&|v| vs.iter().any(|x| x == v))),
                NodeExpr::NotIn(_, vs) => set.difference(&union_of(&|v| vs.iter().any(|x| x == v))),
                NodeExpr::Exists(_) => set.intersect(has_key),
                NodeExpr::DoesNotExist(_) => set.difference(has_key),
                NodeExpr::Gt(_, _) | NodeExpr::Lt(_, _) => set.intersect(&union_of(&|v| e.matches(Some(v)))),
            }
        }
        for e in &term.fields {
            let named: Bitset = self.alive.iter_from(0).filter(|s| self.nodes[*s].as_ref().is_some_and(|n| e.matches(Some(&n.name)))).collect();
            set.intersect(&named);
        }
        set
    }

    fn remove_domain(&self, set: &mut Bitset, topology: usize, domain: u32) {
        if let Some(members) = self.topologies[topology].members.get(domain as usize) {
            for slot in members {
                set.remove(*slot as usize);
            }
        }
    }

    /// Keeps only nodes in domains where `allowed(domain)` holds (nodes without the key go).
    fn keep_domains(&self, set: &mut Bitset, topology: usize, allowed: impl Fn(u32) -> bool) {
        let t = &self.topologies[topology];
        let (yes, no): (Vec<u32>, Vec<u32>) = (0..t.members.len() as u32).filter(|d| !t.members[*d as usize].is_empty()).partition(|d| allowed(*d));
        let yes_nodes: usize = yes.iter().map(|d| t.members[*d as usize].len()).sum();
        let no_nodes: usize = no.iter().map(|d| t.members[*d as usize].len()).sum();
        if no_nodes <= yes_nodes {
            set.intersect(&t.has_key);
            for d in no {
                self.remove_domain(set, topology, d);
            }
        } else {
            let mut keep = Bitset::default();
            for d in yes {
                for slot in &t.members[d as usize] {
                    keep.insert(*slot as usize);
                }
            }
            set.intersect(&keep);
        }
    }

    fn prune_domains(&self, set: &mut Bitset, prep: &Prepared) {
        for term in &prep.affinity {
            let tc = &self.terms[*term];
            if prep.first_of_group {
                set.intersect(&self.topologies[tc.topology].has_key);
            } else {
                self.keep_domains(set, tc.topology, |d| tc.count(d) > 0);
            }
        }
        for term in &prep.anti_affinity {
            let tc = &self.terms[*term];
            for (d, _) in tc.counts.iter().enumerate().filter(|(_, c)| **c > 0) {
                self.remove_domain(set, tc.topology, d as u32);
            }
        }
        for (topology, domain) in &prep.excluded {
            if *domain != NO_DOMAIN {
                self.remove_domain(set, *topology, *domain);
            }
        }
        for s in prep.spread.iter().filter(|s| s.hard) {
            let tc = &self.terms[s.term];
            self.keep_domains(set, tc.topology, |d| s.count(tc, d) + s.self_match - s.min <= s.max_skew);
        }
    }
}
