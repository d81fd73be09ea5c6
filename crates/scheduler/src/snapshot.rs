//! The scheduler's incremental view of the cluster: nodes in slots, the pods bound to them,
//! label and resource indexes over node slots, and per-domain counts of the pods that affinity
//! and spread terms select. Updated from watch events one object at a time; never rebuilt
//! per pod.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use api::k8s_openapi::api::core::v1::{Node, Pod, Taint};

use crate::bitset::Bitset;
use crate::podinfo::{ConstraintError, PodInfo, PodTerm};
use crate::resources::{Amounts, Request, ResourceNames};
use crate::spread::Eligible;
use crate::taints::{is_hard, with_state_taints, TaintIndex};
use crate::SchedulerConfig;

/// No domain: the node lacks the topology label.
pub(crate) const NO_DOMAIN: u32 = u32::MAX;

/// What the scheduler knows of one node.
#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Taints: first the NoSchedule ones its state implies, as Kubernetes' node lifecycle
    /// controller writes them (`node.kubernetes.io/unschedulable` when cordoned,
    /// `node.kubernetes.io/not-ready` or `unreachable` when not Ready), then its own. The
    /// scheduler keeps pods off cordoned and not-ready nodes through these alone, so a pod
    /// that tolerates them may land there.
    pub taints: Vec<Taint>,
    /// Some taint is NoSchedule or NoExecute.
    pub hard_taints: bool,
    /// What pods may use in total, by resource number.
    pub allocatable: Amounts,
    /// The most pods it runs.
    pub max_pods: i64,
    /// What its pods request.
    pub requested: Amounts,
    /// The keys of its pods.
    pub pods: HashSet<String>,
    /// Its Ready condition is True (when not, `taints` says so to the filters).
    pub ready: bool,
    /// Cordoned (`spec.unschedulable`; `taints` says so to the filters).
    pub unschedulable: bool,
    /// Images present, with their sizes in bytes.
    pub images: HashMap<String, i64>,
    /// Pods nominated to run here once their preemption victims are gone: key, priority, request.
    pub nominated: Vec<(String, i32, Request)>,
}

/// A pod holding resources on a node.
#[derive(Clone, Debug)]
pub(crate) struct Placed {
    pub slot: usize,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub request: Request,
    pub priority: i32,
    /// Its required anti-affinity terms, which incoming pods must respect too.
    pub anti_affinity: Vec<PodTerm>,
}

/// The placed pods holding one required anti-affinity term, and their node slots.
#[derive(Clone, Debug)]
pub(crate) struct AntiGroup {
    pub term: PodTerm,
    pub holders: HashMap<String, usize>,
}

impl AntiGroup {
    fn namespaces(term: &PodTerm) -> impl Iterator<Item = String> + '_ {
        term.namespaces.names.iter().cloned().chain(term.namespaces.selector.as_ref().map(|_| String::new()))
    }
}

/// The domains of one topology key: each node slot's domain number.
#[derive(Clone, Debug, Default)]
pub(crate) struct Topology {
    pub key: String,
    pub node_domain: Vec<u32>,
    pub ids: HashMap<String, u32>,
    /// Domain number → the node slots in it.
    pub members: Vec<Vec<u32>>,
    /// The node slots that have the key.
    pub has_key: Bitset,
}

impl Topology {
    pub fn domain(&self, slot: usize) -> u32 {
        self.node_domain.get(slot).copied().unwrap_or(NO_DOMAIN)
    }

    fn set(&mut self, slot: usize, labels: Option<&BTreeMap<String, String>>) {
        if slot >= self.node_domain.len() {
            self.node_domain.resize(slot + 1, NO_DOMAIN);
        }
        let old = self.node_domain[slot];
        if old != NO_DOMAIN {
            self.members[old as usize].retain(|s| *s as usize != slot);
            self.has_key.remove(slot);
        }
        let new = match labels.and_then(|l| l.get(&self.key)) {
            Some(v) => {
                let next = self.ids.len() as u32;
                let id = *self.ids.entry(v.clone()).or_insert(next);
                if id as usize >= self.members.len() {
                    self.members.resize(id as usize + 1, Vec::new());
                }
                self.members[id as usize].push(slot as u32);
                self.has_key.insert(slot);
                id
            }
            None => NO_DOMAIN,
        };
        self.node_domain[slot] = new;
    }
}

/// How many of a term's pods each domain of its topology key holds.
#[derive(Clone, Debug)]
pub(crate) struct TermCount {
    pub term: PodTerm,
    pub topology: usize,
    pub counts: Vec<u32>,
    pub total: u32,
}

impl TermCount {
    pub fn count(&self, domain: u32) -> u32 {
        if domain == NO_DOMAIN {
            0
        } else {
            self.counts.get(domain as usize).copied().unwrap_or(0)
        }
    }

    fn add(&mut self, domain: u32, sign: i32) {
        if domain == NO_DOMAIN {
            return;
        }
        let d = domain as usize;
        if d >= self.counts.len() {
            self.counts.resize(d + 1, 0);
        }
        self.counts[d] = self.counts[d].saturating_add_signed(sign);
        self.total = self.total.saturating_add_signed(sign);
    }
}

/// Every node and bound pod as the scheduler sees them.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub(crate) config: SchedulerConfig,
    pub(crate) names: ResourceNames,
    pub(crate) nodes: Vec<Option<NodeInfo>>,
    pub(crate) slots: HashMap<String, usize>,
    free_slots: Vec<usize>,
    pub(crate) alive: Bitset,
    /// The nodes with each NoSchedule or NoExecute taint (those their state implies too).
    pub(crate) taint_index: TaintIndex,
    /// label key → value → node slots.
    pub(crate) labels: HashMap<String, HashMap<String, Bitset>>,
    /// label key → node slots that have it.
    pub(crate) label_keys: HashMap<String, Bitset>,
    /// resource number → node slots with some allocatable.
    pub(crate) has_resource: Vec<Bitset>,
    pub(crate) placed: HashMap<String, Placed>,
    /// Required anti-affinity terms of placed pods, by term: incoming pods must respect them.
    pub(crate) anti_groups: HashMap<String, AntiGroup>,
    /// Namespace → the anti-affinity groups whose terms look at it ("" for namespace selectors).
    pub(crate) anti_index: HashMap<String, BTreeSet<String>>,
    pub(crate) nominations: HashMap<String, usize>,
    /// Pods bound to nodes the snapshot does not hold (yet, or any more), by key.
    orphans: HashMap<String, PodInfo>,
    /// How many placed pods have each priority.
    priorities: BTreeMap<i32, usize>,
    pub(crate) namespaces: HashMap<String, BTreeMap<String, String>>,
    pub(crate) topologies: Vec<Topology>,
    topology_ids: HashMap<String, usize>,
    pub(crate) terms: Vec<TermCount>,
    term_ids: HashMap<String, usize>,
    /// Namespace → the terms that look at it ("" for terms with a namespace selector).
    terms_by_namespace: HashMap<String, Vec<usize>>,
    /// (topology, a spread constraint's inclusion key) → eligible domains, valid while
    /// `node_generation` holds.
    pub(crate) eligible: HashMap<(usize, String), Eligible>,
    /// Counts changes of node labels, taints and membership (what eligible domains read).
    pub(crate) node_generation: u64,
    /// How many nodes hold each image (image locality spreads by it).
    pub(crate) image_nodes: HashMap<String, usize>,
    pub(crate) next_start: usize,
    /// Nodes filtered on the fast path so far (a measure of how well the indexes prune).
    pub nodes_checked: u64,
}

fn ready_condition(node: &Node) -> Option<&str> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready").map(|c| c.status.as_str())
}

impl Snapshot {
    /// An empty snapshot scheduling with `config`.
    pub fn new(config: SchedulerConfig) -> Snapshot {
        Snapshot { next_start: config.seed as usize, config, ..Default::default() }
    }

    /// How many nodes it holds.
    pub fn node_count(&self) -> usize {
        self.slots.len()
    }

    /// One node by name.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.slots.get(name).and_then(|s| self.nodes[*s].as_ref())
    }

    /// Reads a pod with this snapshot's resource numbering.
    pub fn pod_info(&mut self, pod: &Pod) -> Result<PodInfo, ConstraintError> {
        PodInfo::from_pod(pod, &mut self.names)
    }

    /// Records a namespace's labels (namespace selectors of affinity terms read them).
    pub fn upsert_namespace(&mut self, name: &str, labels: BTreeMap<String, String>) {
        if self.namespaces.get(name) == Some(&labels) {
            return;
        }
        self.namespaces.insert(name.to_string(), labels);
        // Terms with namespace selectors may now select other pods: count again when asked.
        self.clear_terms();
    }

    fn clear_terms(&mut self) {
        self.terms.clear();
        self.term_ids.clear();
        self.terms_by_namespace.clear();
    }

    /// Adds or replaces a node.
    pub fn upsert_node(&mut self, node: &Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let status = node.status.as_ref();
        let spec = node.spec.as_ref();
        let alloc_map = status.and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref())).cloned().unwrap_or_default();
        let max_pods = alloc_map.get("pods").and_then(|q| api::quantity::units(&q.0).ok()).unwrap_or(110);
        let allocatable = Amounts::from_map(&alloc_map, &mut self.names);
        let labels = node.metadata.labels.clone().unwrap_or_default();
        let images = status
            .and_then(|s| s.images.as_ref())
            .map(|imgs| imgs.iter().flat_map(|i| i.names.iter().flatten().map(move |n| (n.clone(), i.size_bytes.unwrap_or(0)))).collect())
            .unwrap_or_default();
        let slot = match self.slots.get(&name) {
            Some(s) => *s,
            None => {
                let s = self.free_slots.pop().unwrap_or(self.nodes.len());
                if s == self.nodes.len() {
                    self.nodes.push(None);
                }
                self.slots.insert(name.clone(), s);
                self.alive.insert(s);
                s
            }
        };
        let previous = self.nodes[slot].take();
        // A node new to the snapshot takes over the pods already bound to its name.
        let adopt: Vec<PodInfo> = match previous {
            None => self.orphans.values().filter(|p| p.node.as_deref() == Some(name.as_str())).cloned().collect(),
            Some(_) => Vec::new(),
        };
        let ready = ready_condition(node);
        let unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        let taints = with_state_taints(ready, unschedulable, spec.and_then(|s| s.taints.clone()).unwrap_or_default());
        let labels_changed = previous.as_ref().is_none_or(|p| p.labels != labels);
        let taints_changed = previous.as_ref().is_none_or(|p| p.taints != taints);
        let had_pods = previous.as_ref().is_some_and(|p| !p.pods.is_empty());
        if let Some(p) = &previous {
            self.unindex(slot, p);
        }
        let (requested, pods, nominated) = previous.map(|p| (p.requested, p.pods, p.nominated)).unwrap_or_default();
        let info = NodeInfo {
            name,
            labels,
            hard_taints: taints.iter().any(is_hard),
            taints,
            allocatable,
            max_pods,
            requested,
            pods,
            ready: ready == Some("True"),
            unschedulable,
            images,
            nominated,
        };
        self.index(slot, &info);
        self.nodes[slot] = Some(info);
        // Spread constraints that honor taints count domains by them.
        if labels_changed || taints_changed {
            self.node_generation += 1;
        }
        if labels_changed {
            for t in &mut self.topologies {
                t.set(slot, self.nodes[slot].as_ref().map(|n| &n.labels));
            }
            // Pods on a node that moved domain are counted in the wrong place: count again.
            if had_pods {
                self.clear_terms();
            }
        }
        for p in adopt {
            self.orphans.remove(&p.key);
            self.place(&p, slot);
        }
    }

    /// Removes a node; the pods bound to it stop counting.
    pub fn remove_node(&mut self, name: &str) {
        let Some(slot) = self.slots.remove(name) else { return };
        if let Some(info) = self.nodes[slot].take() {
            for key in &info.pods {
                if let Some(p) = self.placed.remove(key) {
                    self.count_terms(&p, -1);
                    self.forget_anti(key, &p);
                    self.forget_priority(p.priority);
                    // Still bound to the name: counted again if a node of that name returns.
                    let orphan = PodInfo {
                        key: key.clone(),
                        namespace: p.namespace,
                        labels: p.labels,
                        request: p.request,
                        priority: p.priority,
                        anti_affinity: p.anti_affinity,
                        node: Some(name.to_string()),
                        ..Default::default()
                    };
                    self.orphans.insert(key.clone(), orphan);
                }
            }
            self.unindex(slot, &info);
        }
        for t in &mut self.topologies {
            t.set(slot, None);
        }
        self.nominations.retain(|_, s| *s != slot);
        self.alive.remove(slot);
        self.free_slots.push(slot);
        self.node_generation += 1;
    }

    fn index(&mut self, slot: usize, info: &NodeInfo) {
        self.taint_index.insert(slot, &info.taints);
        for (k, v) in &info.labels {
            self.labels.entry(k.clone()).or_default().entry(v.clone()).or_default().insert(slot);
            self.label_keys.entry(k.clone()).or_default().insert(slot);
        }
        for (id, amount) in info.allocatable.iter() {
            if amount > 0 {
                if id >= self.has_resource.len() {
                    self.has_resource.resize(id + 1, Bitset::default());
                }
                self.has_resource[id].insert(slot);
            }
        }
        for image in info.images.keys() {
            *self.image_nodes.entry(image.clone()).or_default() += 1;
        }
    }

    fn unindex(&mut self, slot: usize, info: &NodeInfo) {
        self.taint_index.remove(slot, &info.taints);
        for (k, v) in &info.labels {
            if let Some(set) = self.labels.get_mut(k).and_then(|vs| vs.get_mut(v)) {
                set.remove(slot);
            }
            if let Some(set) = self.label_keys.get_mut(k) {
                set.remove(slot);
            }
        }
        for set in &mut self.has_resource {
            set.remove(slot);
        }
        for image in info.images.keys() {
            if let Some(n) = self.image_nodes.get_mut(image) {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// Adds, moves or removes a pod's hold on a node from the pod as it is now: bound and not
    /// finished pods hold their requests; an unbound pod with a nominated node reserves room there.
    pub fn upsert_pod(&mut self, pod: &Pod) -> Result<(), ConstraintError> {
        let info = self.pod_info(pod)?;
        self.upsert_info(&info);
        Ok(())
    }

    /// [`Snapshot::upsert_pod`] for a pod already read.
    pub fn upsert_info(&mut self, info: &PodInfo) {
        self.remove_pod(&info.key);
        if info.finished {
            return;
        }
        match (&info.node, &info.nominated) {
            (Some(node), _) => match self.slots.get(node).copied() {
                Some(slot) => self.place(info, slot),
                // Bound to a node not seen yet: counted once the node arrives.
                None => {
                    self.orphans.insert(info.key.clone(), info.clone());
                }
            },
            (None, Some(node)) => {
                if let Some(slot) = self.slots.get(node).copied() {
                    self.nominations.insert(info.key.clone(), slot);
                    if let Some(n) = self.nodes[slot].as_mut() {
                        n.nominated.push((info.key.clone(), info.priority, info.request.clone()));
                    }
                }
            }
            (None, None) => {}
        }
    }

    /// Records that `info` now runs on the node in `slot` (a decision about to be written).
    pub fn assume(&mut self, info: &PodInfo, node: &str) {
        self.remove_pod(&info.key);
        if let Some(slot) = self.slots.get(node).copied() {
            self.place(info, slot);
        }
    }

    fn place(&mut self, info: &PodInfo, slot: usize) {
        let Some(node) = self.nodes[slot].as_mut() else { return };
        node.requested.add_request(&info.request, 1);
        node.pods.insert(info.key.clone());
        let placed = Placed {
            slot,
            namespace: info.namespace.clone(),
            labels: info.labels.clone(),
            request: info.request.clone(),
            priority: info.priority,
            anti_affinity: info.anti_affinity.clone(),
        };
        self.count_terms(&placed, 1);
        *self.priorities.entry(info.priority).or_default() += 1;
        for t in &placed.anti_affinity {
            let group = self.anti_groups.entry(t.cache_key.clone()).or_insert_with(|| AntiGroup { term: t.clone(), holders: HashMap::new() });
            group.holders.insert(info.key.clone(), slot);
            for ns in AntiGroup::namespaces(t) {
                self.anti_index.entry(ns).or_default().insert(t.cache_key.clone());
            }
        }
        self.placed.insert(info.key.clone(), placed);
    }

    /// Forgets a pod (deleted, finished, or a decision that could not be written).
    pub fn remove_pod(&mut self, key: &str) {
        self.orphans.remove(key);
        if let Some(slot) = self.nominations.remove(key) {
            if let Some(n) = self.nodes[slot].as_mut() {
                n.nominated.retain(|(k, _, _)| k != key);
            }
        }
        let Some(p) = self.placed.remove(key) else { return };
        if let Some(n) = self.nodes[p.slot].as_mut() {
            n.requested.add_request(&p.request, -1);
            n.pods.remove(key);
        }
        self.forget_anti(key, &p);
        self.count_terms(&p, -1);
        self.forget_priority(p.priority);
    }

    fn forget_anti(&mut self, key: &str, p: &Placed) {
        for t in &p.anti_affinity {
            let Some(group) = self.anti_groups.get_mut(&t.cache_key) else { continue };
            group.holders.remove(key);
            if group.holders.is_empty() {
                self.anti_groups.remove(&t.cache_key);
                for ns in AntiGroup::namespaces(t) {
                    if let Some(set) = self.anti_index.get_mut(&ns) {
                        set.remove(&t.cache_key);
                    }
                }
            }
        }
    }

    fn forget_priority(&mut self, priority: i32) {
        if let Some(n) = self.priorities.get_mut(&priority) {
            *n -= 1;
            if *n == 0 {
                self.priorities.remove(&priority);
            }
        }
    }

    /// The lowest priority of any placed pod.
    pub(crate) fn lowest_priority(&self) -> Option<i32> {
        self.priorities.keys().next().copied()
    }

    /// The node a pod holds resources on, if any.
    pub fn pod_node(&self, key: &str) -> Option<&str> {
        self.placed.get(key).and_then(|p| self.nodes[p.slot].as_ref()).map(|n| n.name.as_str())
    }

    fn count_terms(&mut self, p: &Placed, sign: i32) {
        let ns_labels = self.namespaces.get(&p.namespace);
        let watching = [p.namespace.as_str(), ""].into_iter().filter_map(|ns| self.terms_by_namespace.get(ns)).flatten();
        for id in watching {
            let tc = &mut self.terms[*id];
            if tc.term.matches(&p.namespace, ns_labels, &p.labels) {
                let domain = self.topologies[tc.topology].domain(p.slot);
                tc.add(domain, sign);
            }
        }
    }

    pub(crate) fn topology(&mut self, key: &str) -> usize {
        if let Some(id) = self.topology_ids.get(key) {
            return *id;
        }
        let mut t = Topology { key: key.to_string(), ..Default::default() };
        for (slot, n) in self.nodes.iter().enumerate() {
            t.set(slot, n.as_ref().map(|n| &n.labels));
        }
        self.topologies.push(t);
        self.topology_ids.insert(key.to_string(), self.topologies.len() - 1);
        self.topologies.len() - 1
    }

    /// The count cache of a term, built from every placed pod the first time it is asked for.
    pub(crate) fn term(&mut self, term: &PodTerm) -> usize {
        if let Some(id) = self.term_ids.get(&term.cache_key) {
            return *id;
        }
        let topology = self.topology(&term.topology_key);
        let mut tc = TermCount { term: term.clone(), topology, counts: Vec::new(), total: 0 };
        for p in self.placed.values() {
            if term.matches(&p.namespace, self.namespaces.get(&p.namespace), &p.labels) {
                tc.add(self.topologies[topology].domain(p.slot), 1);
            }
        }
        self.terms.push(tc);
        let id = self.terms.len() - 1;
        self.term_ids.insert(term.cache_key.clone(), id);
        // A term with a namespace selector is looked at for every pod (under ""); others only
        // for pods of their named namespaces, each once.
        let mut watched: Vec<&str> = match term.namespaces.selector {
            Some(_) => vec![""],
            None => term.namespaces.names.iter().map(String::as_str).collect(),
        };
        watched.sort_unstable();
        watched.dedup();
        for ns in watched {
            self.terms_by_namespace.entry(ns.to_string()).or_default().push(id);
        }
        self.terms.len() - 1
    }
}
