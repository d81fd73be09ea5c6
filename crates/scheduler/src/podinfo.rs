//! What the scheduler reads from a Pod, parsed once: requests, priority, node selector and
//! affinity, tolerations, pod (anti-)affinity terms and topology spread constraints.

use std::collections::BTreeMap;

use api::k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Pod, PodAffinityTerm, PodSpec, Taint, Toleration};
use api::selector::Selector;

use crate::resources::{Request, ResourceNames};

/// The annotation that overrides the cluster's scoring strategy for one workload.
pub const STRATEGY_ANNOTATION: &str = "flotilla.dev/scheduling-strategy";

/// How nodes are ranked by their resources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    /// Prefer the emptiest node (spread).
    #[default]
    LeastAllocated,
    /// Prefer the fullest node that fits (bin-pack).
    MostAllocated,
}

impl Strategy {
    /// Reads `LeastAllocated`/`spread` or `MostAllocated`/`binpack`.
    pub fn parse(text: &str) -> Option<Strategy> {
        match text.to_ascii_lowercase().as_str() {
            "leastallocated" | "spread" => Some(Strategy::LeastAllocated),
            "mostallocated" | "binpack" | "bin-pack" => Some(Strategy::MostAllocated),
            _ => None,
        }
    }
}

/// One requirement on a node label (or, for `matchFields`, on the node's name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeExpr {
    /// The label's value is one of these.
    In(String, Vec<String>),
    /// The label is absent or its value is none of these.
    NotIn(String, Vec<String>),
    /// The label is present.
    Exists(String),
    /// The label is absent.
    DoesNotExist(String),
    /// The label is an integer greater than this.
    Gt(String, i64),
    /// The label is an integer less than this.
    Lt(String, i64),
}

impl NodeExpr {
    /// The label (or field) the expression reads.
    pub fn key(&self) -> &str {
        match self {
            NodeExpr::In(k, _) | NodeExpr::NotIn(k, _) | NodeExpr::Exists(k) | NodeExpr::DoesNotExist(k) | NodeExpr::Gt(k, _) | NodeExpr::Lt(k, _) => k,
        }
    }

    /// True when a label (or field) with this value, or none, satisfies the expression.
    pub fn matches(&self, value: Option<&str>) -> bool {
        let int = || value.and_then(|v| v.parse::<i64>().ok());
        match self {
            NodeExpr::In(_, vs) => value.is_some_and(|v| vs.iter().any(|x| x == v)),
            NodeExpr::NotIn(_, vs) => value.is_none_or(|v| !vs.iter().any(|x| x == v)),
            NodeExpr::Exists(_) => value.is_some(),
            NodeExpr::DoesNotExist(_) => value.is_none(),
            NodeExpr::Gt(_, n) => int().is_some_and(|v| v > *n),
            NodeExpr::Lt(_, n) => int().is_some_and(|v| v < *n),
        }
    }
}

/// A node selector term: every expression holds (an empty term matches no node).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeTerm {
    /// On labels.
    pub labels: Vec<NodeExpr>,
    /// On fields (only `metadata.name`).
    pub fields: Vec<NodeExpr>,
}

impl NodeTerm {
    /// True when a node with this name and labels satisfies the term.
    pub fn matches(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        (!self.labels.is_empty() || !self.fields.is_empty())
            && self.labels.iter().all(|e| e.matches(labels.get(e.key()).map(String::as_str)))
            && self.fields.iter().all(|e| e.matches(Some(name)))
    }
}

/// Which namespaces a pod term looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespaces {
    /// Named namespaces.
    pub names: Vec<String>,
    /// Namespaces whose labels match (an empty selector matches all).
    pub selector: Option<Selector>,
}

/// A pod (anti-)affinity term, or the pod set of a spread constraint: which pods, counted per
/// domain of `topology_key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodTerm {
    /// Where the pods live.
    pub namespaces: Namespaces,
    /// Which pods; `None` (no selector given) matches none.
    pub selector: Option<Selector>,
    /// The node label whose values are the domains.
    pub topology_key: String,
    /// A stable text form, the key of the scheduler's count cache.
    pub cache_key: String,
}

impl PodTerm {
    fn new(namespaces: Namespaces, selector: Option<Selector>, topology_key: &str) -> PodTerm {
        let cache_key = format!("{:?}|{:?}|{}", namespaces, selector, topology_key);
        PodTerm { namespaces, selector, topology_key: topology_key.to_string(), cache_key }
    }

    /// True when a pod in `namespace` (with the namespace's labels) and `labels` is one of the term's pods.
    pub fn matches(&self, namespace: &str, namespace_labels: Option<&BTreeMap<String, String>>, labels: &BTreeMap<String, String>) -> bool {
        let Some(selector) = &self.selector else { return false };
        let in_namespace = self.namespaces.names.iter().any(|n| n == namespace)
            || self.namespaces.selector.as_ref().is_some_and(|s| s.is_empty() || namespace_labels.is_some_and(|l| s.matches(l)));
        in_namespace && selector.matches(labels)
    }
}

/// A topology spread constraint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spread {
    /// The pods counted.
    pub term: PodTerm,
    /// The largest allowed difference between a domain's count and the smallest one.
    pub max_skew: i64,
    /// `DoNotSchedule` (a filter) rather than `ScheduleAnyway` (a score).
    pub hard: bool,
    /// Fewer eligible domains than this count the global minimum as 0.
    pub min_domains: usize,
    /// Only nodes the pod's node selector and required node affinity accept count
    /// (`nodeAffinityPolicy: Honor`, the default; `Ignore` counts every node).
    pub honor_node_affinity: bool,
    /// Only nodes whose NoSchedule and NoExecute taints the pod tolerates count
    /// (`nodeTaintsPolicy: Honor`; the default `Ignore` counts every node).
    pub honor_taints: bool,
    /// A text form of what decides which nodes count (the node constraints and tolerations
    /// the policies honor): constraints with the same one see the same eligible domains.
    pub inclusion_key: String,
}

/// Everything the scheduler needs from one pod.
#[derive(Clone, Debug, Default)]
pub struct PodInfo {
    /// `namespace/name`.
    pub key: String,
    /// Namespace.
    pub namespace: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Effective requests.
    pub request: Request,
    /// Priority (`spec.priority`, set at admission from the priority class).
    pub priority: i32,
    /// May evict lower-priority pods (`preemptionPolicy` is not `Never`).
    pub may_preempt: bool,
    /// `spec.nodeSelector`.
    pub node_selector: Vec<(String, String)>,
    /// Required node affinity: any term matches. `None` when absent.
    pub node_affinity: Option<Vec<NodeTerm>>,
    /// Preferred node affinity: weight and term.
    pub preferred_nodes: Vec<(i64, NodeTerm)>,
    /// Tolerations.
    pub tolerations: Vec<Toleration>,
    /// Required pod affinity terms.
    pub affinity: Vec<PodTerm>,
    /// Required pod anti-affinity terms.
    pub anti_affinity: Vec<PodTerm>,
    /// Preferred pod affinity (positive weight) and anti-affinity (negative weight) terms.
    pub preferred_pods: Vec<(i64, PodTerm)>,
    /// Topology spread constraints.
    pub spread: Vec<Spread>,
    /// Per-workload scoring strategy.
    pub strategy: Option<Strategy>,
    /// Container images.
    pub images: Vec<String>,
    /// The node it is bound to.
    pub node: Option<String>,
    /// The node it may run on once preemption victims are gone.
    pub nominated: Option<String>,
    /// Succeeded or Failed: it holds no resources.
    pub finished: bool,
}

/// Why a pod's scheduling constraints cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {why}")]
pub struct ConstraintError {
    /// The field path.
    pub field: String,
    /// What is wrong.
    pub why: String,
}

fn node_term(term: &NodeSelectorTerm, field: &str) -> Result<NodeTerm, ConstraintError> {
    let convert = |reqs: &Option<Vec<NodeSelectorRequirement>>, sub: &str| -> Result<Vec<NodeExpr>, ConstraintError> {
        let mut out = Vec::new();
        for (i, r) in reqs.iter().flatten().enumerate() {
            let err = |why: &str| ConstraintError { field: format!("{field}.{sub}[{i}]"), why: why.to_string() };
            let values = r.values.clone().unwrap_or_default();
            let one_int = || -> Result<i64, ConstraintError> {
                match values.as_slice() {
                    [v] => v.parse().map_err(|_| err("Gt and Lt take one integer value")),
                    _ => Err(err("Gt and Lt take exactly one value")),
                }
            };
            out.push(match r.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => return Err(err("values must be non-empty for In and NotIn")),
                "In" => NodeExpr::In(r.key.clone(), values),
                "NotIn" => NodeExpr::NotIn(r.key.clone(), values),
                "Exists" => NodeExpr::Exists(r.key.clone()),
                "DoesNotExist" => NodeExpr::DoesNotExist(r.key.clone()),
                "Gt" => NodeExpr::Gt(r.key.clone(), one_int()?),
                "Lt" => NodeExpr::Lt(r.key.clone(), one_int()?),
                other => return Err(err(&format!("operator \"{other}\" is not one of In, NotIn, Exists, DoesNotExist, Gt, Lt"))),
            });
        }
        Ok(out)
    };
    Ok(NodeTerm { labels: convert(&term.match_expressions, "matchExpressions")?, fields: convert(&term.match_fields, "matchFields")? })
}

fn selector(object: Option<&api::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>, field: &str) -> Result<Option<Selector>, ConstraintError> {
    object.map(|o| Selector::from_object(o).map_err(|e| ConstraintError { field: format!("{field}.{}", e.text), why: e.why })).transpose()
}

fn pod_term(term: &PodAffinityTerm, own_namespace: &str, field: &str) -> Result<PodTerm, ConstraintError> {
    let names = term.namespaces.clone().unwrap_or_default();
    let ns_selector = selector(term.namespace_selector.as_ref(), &format!("{field}.namespaceSelector"))?;
    let names = if names.is_empty() && ns_selector.is_none() { vec![own_namespace.to_string()] } else { names };
    if term.topology_key.is_empty() {
        return Err(ConstraintError { field: format!("{field}.topologyKey"), why: "required".into() });
    }
    Ok(PodTerm::new(
        Namespaces { names, selector: ns_selector },
        selector(term.label_selector.as_ref(), &format!("{field}.labelSelector"))?,
        &term.topology_key,
    ))
}

/// Reads the node inclusion policy `name` of the spread constraint at `field`: true for `Honor`.
fn inclusion_policy(value: Option<&str>, default: bool, field: &str, name: &str) -> Result<bool, ConstraintError> {
    match value {
        None => Ok(default),
        Some("Honor") => Ok(true),
        Some("Ignore") => Ok(false),
        Some(other) => Err(ConstraintError { field: format!("{field}.{name}"), why: format!("\"{other}\" is not Honor or Ignore") }),
    }
}

impl PodInfo {
    /// Reads a pod; errors name the field at fault.
    pub fn from_pod(pod: &Pod, names: &mut ResourceNames) -> Result<PodInfo, ConstraintError> {
        let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let key = format!("{namespace}/{}", pod.metadata.name.as_deref().unwrap_or(""));
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let no_spec;
        let spec = match pod.spec.as_ref() {
            Some(s) => s,
            None => {
                no_spec = PodSpec::default();
                &no_spec
            }
        };
        let status = pod.status.as_ref();
        let mut info = PodInfo {
            request: Request::from_names(&api::pod::requests(spec), names),
            priority: spec.priority.unwrap_or(0),
            may_preempt: spec.preemption_policy.as_deref() != Some("Never"),
            node_selector: spec.node_selector.clone().unwrap_or_default().into_iter().collect(),
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            strategy: pod.metadata.annotations.as_ref().and_then(|a| a.get(STRATEGY_ANNOTATION)).and_then(|s| Strategy::parse(s)),
            images: spec.containers.iter().filter_map(|c| c.image.clone()).collect(),
            node: spec.node_name.clone().filter(|n| !n.is_empty()),
            nominated: status.and_then(|s| s.nominated_node_name.clone()).filter(|n| !n.is_empty()),
            finished: matches!(status.and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")),
            key,
            namespace: namespace.clone(),
            labels,
            ..Default::default()
        };
        let affinity = spec.affinity.as_ref();
        if let Some(na) = affinity.and_then(|a| a.node_affinity.as_ref()) {
            if let Some(required) = &na.required_during_scheduling_ignored_during_execution {
                let field = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms";
                let terms = required.node_selector_terms.iter().enumerate().map(|(i, t)| node_term(t, &format!("{field}[{i}]"))).collect::<Result<_, _>>()?;
                info.node_affinity = Some(terms);
            }
            for (i, p) in na.preferred_during_scheduling_ignored_during_execution.iter().flatten().enumerate() {
                let field = format!("spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[{i}].preference");
                info.preferred_nodes.push((p.weight as i64, node_term(&p.preference, &field)?));
            }
        }
        for (anti, block) in [
            (
                false,
                affinity
                    .and_then(|a| a.pod_affinity.as_ref())
                    .map(|p| (&p.required_during_scheduling_ignored_during_execution, &p.preferred_during_scheduling_ignored_during_execution)),
            ),
            (
                true,
                affinity
                    .and_then(|a| a.pod_anti_affinity.as_ref())
                    .map(|p| (&p.required_during_scheduling_ignored_during_execution, &p.preferred_during_scheduling_ignored_during_execution)),
            ),
        ] {
            let Some((required, preferred)) = block else { continue };
            let base = if anti { "spec.affinity.podAntiAffinity" } else { "spec.affinity.podAffinity" };
            for (i, t) in required.iter().flatten().enumerate() {
                let term = pod_term(t, &namespace, &format!("{base}.requiredDuringSchedulingIgnoredDuringExecution[{i}]"))?;
                if anti {
                    info.anti_affinity.push(term)
                } else {
                    info.affinity.push(term)
                }
            }
            for (i, w) in preferred.iter().flatten().enumerate() {
                let term = pod_term(&w.pod_affinity_term, &namespace, &format!("{base}.preferredDuringSchedulingIgnoredDuringExecution[{i}].podAffinityTerm"))?;
                info.preferred_pods.push((if anti { -(w.weight as i64) } else { w.weight as i64 }, term));
            }
        }
        for (i, c) in spec.topology_spread_constraints.iter().flatten().enumerate() {
            let field = format!("spec.topologySpreadConstraints[{i}]");
            let mut sel = selector(c.label_selector.as_ref(), &format!("{field}.labelSelector"))?;
            // matchLabelKeys narrows the selector to this pod's own values of those keys.
            if let Some(s) = sel.as_mut() {
                for k in c.match_label_keys.iter().flatten() {
                    if let Some(v) = info.labels.get(k) {
                        s.0.push(api::selector::Requirement::In(k.clone(), vec![v.clone()]));
                    }
                }
            }
            if c.max_skew < 1 {
                return Err(ConstraintError { field: format!("{field}.maxSkew"), why: "must be at least 1".into() });
            }
            let hard = match c.when_unsatisfiable.as_str() {
                "DoNotSchedule" => true,
                "ScheduleAnyway" => false,
                other => {
                    return Err(ConstraintError {
                        field: format!("{field}.whenUnsatisfiable"),
                        why: format!("\"{other}\" is not DoNotSchedule or ScheduleAnyway"),
                    })
                }
            };
            if c.topology_key.is_empty() {
                return Err(ConstraintError { field: format!("{field}.topologyKey"), why: "required".into() });
            }
            let honor_node_affinity = inclusion_policy(c.node_affinity_policy.as_deref(), true, &field, "nodeAffinityPolicy")?;
            let honor_taints = inclusion_policy(c.node_taints_policy.as_deref(), false, &field, "nodeTaintsPolicy")?;
            let inclusion_key =
                format!("{:?}|{:?}", honor_node_affinity.then_some((&info.node_selector, &info.node_affinity)), honor_taints.then_some(&info.tolerations));
            let term = PodTerm::new(Namespaces { names: vec![namespace.clone()], selector: None }, sel, &c.topology_key);
            info.spread.push(Spread {
                term,
                max_skew: c.max_skew as i64,
                hard,
                min_domains: c.min_domains.unwrap_or(1).max(1) as usize,
                honor_node_affinity,
                honor_taints,
                inclusion_key,
            });
        }
        Ok(info)
    }

    /// True when the pod's node selector and required node affinity accept a node.
    pub fn accepts_node(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.node_selector.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.node_affinity.as_ref().is_none_or(|terms| terms.iter().any(|t| t.matches(name, labels)))
    }
}

/// True when a toleration tolerates a taint (Kubernetes semantics: an empty key with `Exists`
/// tolerates everything; an empty effect matches every effect).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect.as_deref().is_some_and(|e| !e.is_empty() && e != taint.effect) {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => t.key.as_deref().is_none_or(|k| k.is_empty() || k == taint.key),
        _ => t.key.as_deref() == Some(taint.key.as_str()) && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
    }
}

/// True when some toleration of the list tolerates the taint.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}
