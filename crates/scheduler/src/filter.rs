//! Filters: may this pod run on this node? The hot path answers with a small `Copy` value;
//! only when a pod fits nowhere are the answers turned into the reasons a user reads.

use std::fmt;

use crate::podinfo::{tolerated, PodInfo, PodTerm};
use crate::resources::{Amounts, STORAGE};
use crate::snapshot::{NodeInfo, Placed, Snapshot, NO_DOMAIN};
use crate::taints::{is_hard, NOT_READY, UNREACHABLE, UNSCHEDULABLE};

/// Why a node cannot take a pod.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// The node's Ready condition is not True: an untolerated `node.kubernetes.io/not-ready`
    /// or `node.kubernetes.io/unreachable` taint.
    NotReady,
    /// The node is cordoned: an untolerated `node.kubernetes.io/unschedulable` taint.
    Cordoned,
    /// Node selector or required node affinity.
    NodeAffinity,
    /// A NoSchedule or NoExecute taint the pod does not tolerate.
    Taint(String),
    /// Required pod affinity.
    PodAffinity,
    /// Required pod anti-affinity of the pod.
    PodAntiAffinity,
    /// Required pod anti-affinity of a pod already in the node's domain.
    ExistingAntiAffinity,
    /// A DoNotSchedule topology spread constraint.
    Spread,
    /// The node runs its maximum number of pods.
    TooManyPods,
    /// The node has the resource, not enough of it free.
    Insufficient(String),
    /// The node has none of the resource.
    Missing(String),
}

impl Reject {
    /// True when evicting lower-priority pods could remove this reason: kube-scheduler's
    /// `Unschedulable` as against `UnschedulableAndUnresolvable`. Evicting never adds the pods a
    /// required affinity term needs, nor changes a node's labels or taints.
    pub fn preemptible(self) -> bool {
        matches!(self, Reject::TooManyPods | Reject::Insufficient(_) | Reject::PodAntiAffinity | Reject::ExistingAntiAffinity | Reject::Spread)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotReady => write!(f, "not ready"),
            Reason::Cordoned => write!(f, "cordoned"),
            Reason::NodeAffinity => write!(f, "not matching the node selector/affinity"),
            Reason::Taint(t) => write!(f, "with untolerated taint {t}"),
            Reason::PodAffinity => write!(f, "not matching pod affinity"),
            Reason::PodAntiAffinity => write!(f, "not matching pod anti-affinity"),
            Reason::ExistingAntiAffinity => write!(f, "excluded by anti-affinity of running pods"),
            Reason::Spread => write!(f, "violating topology spread"),
            Reason::TooManyPods => write!(f, "too many pods"),
            Reason::Insufficient(r) => write!(f, "insufficient {r}"),
            Reason::Missing(r) => write!(f, "missing {r}"),
        }
    }
}

/// The hot path's answer: a [`Reason`] without its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Reject {
    /// The node is gone.
    NotReady,
    NodeAffinity,
    /// Index into the node's taints.
    Taint(usize),
    PodAffinity,
    PodAntiAffinity,
    ExistingAntiAffinity,
    Spread,
    TooManyPods,
    /// Resource number.
    Insufficient(usize),
    Missing(usize),
}

/// A pod preemption would evict: its key and what it holds.
pub(crate) type Evicted<'a> = (&'a str, &'a Placed);

/// Per-pod data the filters and scores share, computed once per decision.
pub(crate) struct Prepared {
    /// Required affinity terms (count caches).
    pub affinity: Vec<usize>,
    /// The pod matches every one of its required affinity terms itself.
    pub matches_own_affinity: bool,
    /// No term selects a pod yet and the pod matches them all: any node with the keys passes
    /// (the first of a group).
    pub first_of_group: bool,
    pub anti_affinity: Vec<usize>,
    /// (topology, domain) pairs excluded by running pods' anti-affinity.
    pub excluded: Vec<(usize, u32)>,
    /// The running pods' anti-affinity groups that select the pod, with their topology:
    /// preemption checks them again without its victims.
    pub excluding: Vec<(usize, String)>,
    pub spread: Vec<SpreadState>,
    pub preferred_pods: Vec<(i64, usize)>,
    /// The label index already guarantees the node selector and affinity for every candidate.
    pub nodes_prefiltered: bool,
    /// Some filter reads the pods around a node (most pods have none: they skip them).
    pub reads_pods: bool,
}

/// One topology spread constraint, ready to check.
pub(crate) struct SpreadState {
    pub term: usize,
    pub max_skew: i64,
    pub hard: bool,
    /// The smallest count over the eligible domains.
    pub min: i64,
    /// `min` is that smallest count, not 0 for want of `minDomains` domains.
    pub global_min: bool,
    /// 1 when the pod is one of the pods it counts.
    pub self_match: i64,
    /// Counts of the domains that hold nodes the constraint does not admit (see
    /// [`crate::spread`]): only the pods on the admitted nodes count there.
    pub honored: Vec<(u32, i64)>,
}

impl SpreadState {
    /// The pods the constraint counts in `domain`.
    pub fn count(&self, tc: &crate::snapshot::TermCount, domain: u32) -> i64 {
        match self.honored.iter().find(|(d, _)| *d == domain) {
            Some((_, n)) => *n,
            None => tc.count(domain) as i64,
        }
    }
}

impl Snapshot {
    pub(crate) fn prepare(&mut self, pod: &PodInfo) -> Prepared {
        let affinity: Vec<usize> = pod.affinity.iter().map(|t| self.term(t)).collect();
        let anti_affinity: Vec<usize> = pod.anti_affinity.iter().map(|t| self.term(t)).collect();
        let preferred_pods: Vec<(i64, usize)> = pod.preferred_pods.iter().map(|(w, t)| (*w, self.term(t))).collect();
        let spread_ids: Vec<usize> = pod.spread.iter().map(|s| self.term(&s.term)).collect();
        // Running pods whose anti-affinity selects this pod keep it out of their domains.
        let mut excluding_by_key: Vec<(String, String)> = Vec::new();
        {
            let ns_labels = self.namespaces.get(&pod.namespace);
            let groups = [pod.namespace.as_str(), ""].into_iter().filter_map(|ns| self.anti_index.get(ns)).flatten();
            for (key, group) in groups.filter_map(|k| self.anti_groups.get(k).map(|g| (k, g))) {
                if group.term.matches(&pod.namespace, ns_labels, &pod.labels) {
                    excluding_by_key.push((group.term.topology_key.clone(), key.clone()));
                }
            }
        }
        let mut excluded = Vec::new();
        let mut excluding = Vec::with_capacity(excluding_by_key.len());
        for (topology_key, group) in excluding_by_key {
            let topology = self.topology(&topology_key);
            let t = &self.topologies[topology];
            excluded.extend(self.anti_groups[&group].holders.values().map(|slot| t.domain(*slot)).filter(|d| *d != NO_DOMAIN).map(|d| (topology, d)));
            excluding.push((topology, group));
        }
        excluded.sort_unstable();
        excluded.dedup();
        let mut spread = Vec::with_capacity(pod.spread.len());
        for (s, term) in pod.spread.iter().zip(spread_ids) {
            let topology = self.terms[term].topology;
            self.ensure_eligible(topology, pod, s);
            let eligible = &self.eligible[&(topology, s.inclusion_key.clone())];
            let honored: Vec<(u32, i64)> = eligible.mixed.iter().map(|d| (*d, self.count_on_admitted(term, *d, pod, s))).collect();
            let self_match = self.self_matches(pod, &s.term) as i64;
            let mut state = SpreadState { term, max_skew: s.max_skew, hard: s.hard, min: 0, global_min: false, self_match, honored };
            let tc = &self.terms[term];
            if eligible.domains.len() >= s.min_domains {
                state.min = eligible.domains.iter().map(|d| state.count(tc, *d)).min().unwrap_or(0);
                state.global_min = true;
            }
            spread.push(state);
        }
        // The first pod of a group: no pod matches any of its required terms yet and it matches
        // all of them itself (Kubernetes' rule), so it may go anywhere the keys exist.
        let matches_own_affinity = !affinity.is_empty() && pod.affinity.iter().all(|t| self.self_matches(pod, t));
        let first_of_group = matches_own_affinity && affinity.iter().all(|id| self.terms[*id].total == 0);
        let reads_pods = !affinity.is_empty() || !anti_affinity.is_empty() || !excluding.is_empty() || spread.iter().any(|s| s.hard);
        Prepared {
            affinity,
            matches_own_affinity,
            first_of_group,
            anti_affinity,
            excluded,
            excluding,
            spread,
            preferred_pods,
            nodes_prefiltered: false,
            reads_pods,
        }
    }

    fn self_matches(&self, pod: &PodInfo, term: &PodTerm) -> bool {
        term.matches(&pod.namespace, self.namespaces.get(&pod.namespace), &pod.labels)
    }

    /// The first reason the node in `slot` cannot take the pod, or `None` when it can. Taints
    /// come first, as in kube-scheduler, so a cordoned or not-ready node says so.
    pub(crate) fn check(&self, slot: usize, pod: &PodInfo, prep: &Prepared) -> Option<Reject> {
        let Some(node) = self.nodes[slot].as_ref() else { return Some(Reject::NotReady) };
        if node.hard_taints {
            if let Some(i) = node.taints.iter().position(|t| is_hard(t) && !tolerated(&pod.tolerations, t)) {
                return Some(Reject::Taint(i));
            }
        }
        if !prep.nodes_prefiltered && !pod.accepts_node(&node.name, &node.labels) {
            return Some(Reject::NodeAffinity);
        }
        if prep.reads_pods {
            if let Some(reject) = self.check_pods(slot, prep, &[]) {
                return Some(reject);
            }
        }
        self.fits(node, pod, &node.requested, node.pods.len() as i64)
    }

    /// The reason a user reads for a rejection of the node in `slot`.
    pub(crate) fn reason(&self, slot: usize, reject: Reject) -> Reason {
        let node = self.nodes[slot].as_ref();
        match reject {
            Reject::NotReady => Reason::NotReady,
            Reject::NodeAffinity => Reason::NodeAffinity,
            // The node-state taints read as the state they stand for.
            Reject::Taint(i) => match &node.expect("checked nodes exist").taints[i] {
                t if t.key == UNSCHEDULABLE => Reason::Cordoned,
                t if t.key == NOT_READY || t.key == UNREACHABLE => Reason::NotReady,
                t => Reason::Taint(match t.value.as_deref() {
                    Some(v) if !v.is_empty() => format!("{}={}:{}", t.key, v, t.effect),
                    _ => format!("{}:{}", t.key, t.effect),
                }),
            },
            Reject::PodAffinity => Reason::PodAffinity,
            Reject::PodAntiAffinity => Reason::PodAntiAffinity,
            Reject::ExistingAntiAffinity => Reason::ExistingAntiAffinity,
            Reject::Spread => Reason::Spread,
            Reject::TooManyPods => Reason::TooManyPods,
            Reject::Insufficient(id) => Reason::Insufficient(self.names.name(id).to_string()),
            Reject::Missing(id) => Reason::Missing(self.names.name(id).to_string()),
        }
    }

    /// The filters that read the pods around the node in `slot`, as if the pods in `gone` (all on
    /// that node) were evicted: scheduling passes none, preemption the victims it tries.
    #[inline]
    pub(crate) fn check_pods(&self, slot: usize, prep: &Prepared, gone: &[Evicted]) -> Option<Reject> {
        // The evicted pods a term selects, all in this node's domains.
        let evicted = |term: &PodTerm| gone.iter().filter(|(_, p)| term.matches(&p.namespace, self.namespaces.get(&p.namespace), &p.labels)).count() as i64;
        let first_of_group = prep.first_of_group
            || (!gone.is_empty() && prep.matches_own_affinity && prep.affinity.iter().all(|t| self.terms[*t].total as i64 == evicted(&self.terms[*t].term)));
        for term in &prep.affinity {
            let tc = &self.terms[*term];
            let domain = self.topologies[tc.topology].domain(slot);
            let ok = if first_of_group { domain != NO_DOMAIN } else { tc.count(domain) as i64 - evicted(&tc.term) > 0 };
            if !ok {
                return Some(Reject::PodAffinity);
            }
        }
        for term in &prep.anti_affinity {
            let tc = &self.terms[*term];
            if tc.count(self.topologies[tc.topology].domain(slot)) as i64 - evicted(&tc.term) > 0 {
                return Some(Reject::PodAntiAffinity);
            }
        }
        let excluded = if gone.is_empty() {
            prep.excluded.iter().any(|(t, d)| self.topologies[*t].domain(slot) == *d)
        } else {
            prep.excluding.iter().any(|(t, group)| {
                let topology = &self.topologies[*t];
                let domain = topology.domain(slot);
                let holders = self.anti_groups.get(group).map(|g| &g.holders);
                domain != NO_DOMAIN && holders.into_iter().flatten().any(|(key, s)| topology.domain(*s) == domain && !gone.iter().any(|(g, _)| g == key))
            })
        };
        if excluded {
            return Some(Reject::ExistingAntiAffinity);
        }
        for s in prep.spread.iter().filter(|s| s.hard) {
            let tc = &self.terms[s.term];
            let domain = self.topologies[tc.topology].domain(slot);
            if domain == NO_DOMAIN {
                return Some(Reject::Spread);
            }
            let count = s.count(tc, domain) - evicted(&tc.term);
            // Evicting pods here may make this domain the emptiest.
            let min = if s.global_min && !gone.is_empty() { s.min.min(count) } else { s.min };
            if count + s.self_match - min > s.max_skew {
                return Some(Reject::Spread);
            }
        }
        None
    }

    /// Whether the pod's requests fit next to `requested` and `pods` on `node` (also counting
    /// room reserved for nominated pods of at least the pod's priority).
    pub(crate) fn fits(&self, node: &NodeInfo, pod: &PodInfo, requested: &Amounts, pods: i64) -> Option<Reject> {
        let reserving = |(k, prio, _): &&(String, i32, crate::resources::Request)| *prio >= pod.priority && *k != pod.key;
        let nominated = !node.nominated.is_empty();
        let reserved_pods = if nominated { node.nominated.iter().filter(reserving).count() as i64 } else { 0 };
        if pods + reserved_pods + 1 > node.max_pods {
            return Some(Reject::TooManyPods);
        }
        for (id, amount) in &pod.request.0 {
            let alloc = node.allocatable.get(*id);
            let held: i64 = if nominated { node.nominated.iter().filter(reserving).map(|(_, _, r)| r.get(*id)).sum() } else { 0 };
            if alloc - requested.get(*id) - held < *amount {
                return Some(if alloc <= 0 && *id > STORAGE { Reject::Missing(*id) } else { Reject::Insufficient(*id) });
            }
        }
        None
    }
}
