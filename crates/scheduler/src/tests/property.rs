//! Over random clusters (some nodes cordoned, not ready or unreachable) and random pod streams:
//! no node is ever overcommitted, required constraints always hold, a pod is refused only
//! when an independent brute-force check finds no node for it either, and a preemption plan
//! evicts only lower-priority pods and leaves room the brute-force check agrees with.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::strategy::Strategy;
use serde_json::json;

use super::*;

#[derive(Clone, Debug)]
struct N {
    cpu: i64,
    mem: i64,
    gpu: i64,
    max_pods: i64,
    zone: usize,
    tainted: bool,
    cordoned: bool,
    /// The Ready condition's status.
    ready: &'static str,
}

#[derive(Clone, Debug)]
struct P {
    cpu: i64,
    mem: i64,
    gpu: i64,
    app: usize,
    zone: Option<usize>,
    tolerates: bool,
    /// The node-state taint it tolerates, or "" for a toleration of every taint.
    tolerates_state: Option<&'static str>,
    anti_host: bool,
    spread_zone: bool,
    /// The spread constraint has `nodeTaintsPolicy: Honor`.
    honor_taints: bool,
    priority: i32,
}

const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
const NOT_READY: &str = "node.kubernetes.io/not-ready";
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

impl P {
    fn tolerates_all(&self) -> bool {
        self.tolerates_state == Some("")
    }

    /// True when the pod tolerates every NoSchedule taint of the node, its state's included.
    fn tolerates_node(&self, n: &N) -> bool {
        let state = |key: &str| self.tolerates_all() || self.tolerates_state == Some(key);
        let readiness = match n.ready {
            "True" => true,
            "Unknown" => state(UNREACHABLE),
            _ => state(NOT_READY),
        };
        (!n.tainted || self.tolerates || self.tolerates_all()) && (!n.cordoned || state(UNSCHEDULABLE)) && readiness
    }
}

fn arb_node() -> impl Strategy<Value = N> {
    let ready = prop_oneof![8 => Just("True"), 1 => Just("False"), 1 => Just("Unknown")];
    (1i64..8, 1i64..8, 0i64..3, 1i64..6, 0usize..3, prop::bool::weighted(0.2), prop::bool::weighted(0.1), ready).prop_map(
        |(cpu, mem, gpu, max_pods, zone, tainted, cordoned, ready)| N { cpu: cpu * 1000, mem: mem * 1024, gpu, max_pods, zone, tainted, cordoned, ready },
    )
}

fn arb_pod() -> impl Strategy<Value = P> {
    (
        1i64..30,
        1i64..30,
        prop::bool::weighted(0.2),
        0usize..3,
        prop::option::weighted(0.3, 0usize..3),
        any::<bool>(),
        prop_oneof![6 => Just(None), 1 => Just(Some(UNSCHEDULABLE)), 1 => Just(Some(NOT_READY)), 1 => Just(Some(UNREACHABLE)), 1 => Just(Some(""))],
        (prop::bool::weighted(0.3), prop::bool::weighted(0.3), prop::bool::weighted(0.3), 0i32..3),
    )
        .prop_map(|(cpu, mem, gpu, app, zone, tolerates, tolerates_state, (anti_host, spread_zone, honor_taints, priority))| P {
            cpu: cpu * 100,
            mem: mem * 128,
            gpu: gpu as i64,
            app,
            zone,
            tolerates,
            tolerates_state,
            anti_host,
            spread_zone,
            honor_taints,
            priority,
        })
}

fn to_node(i: usize, n: &N) -> Node {
    node(
        &format!("n{i}"),
        0,
        0,
        json!({
            "metadata": {"labels": {"zone": format!("z{}", n.zone)}},
            "spec": {"taints": if n.tainted { json!([{"key": "edge", "effect": "NoSchedule"}]) } else { json!([]) }, "unschedulable": n.cordoned},
            "status": {
                "allocatable": {"cpu": format!("{}m", n.cpu), "memory": format!("{}Mi", n.mem), "pods": n.max_pods.to_string(), "nvidia.com/gpu": n.gpu.to_string()},
                "conditions": [{"type": "Ready", "status": n.ready}]
            }
        }),
    )
}

fn to_pod(i: usize, p: &P) -> Pod {
    let mut spec = json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": format!("{}m", p.cpu), "memory": format!("{}Mi", p.mem)}, "limits": {"nvidia.com/gpu": p.gpu.to_string()}}}]});
    if let Some(z) = p.zone {
        spec["nodeSelector"] = json!({"zone": format!("z{z}")});
    }
    let mut tolerations = Vec::new();
    if p.tolerates {
        tolerations.push(json!({"key": "edge", "operator": "Exists"}));
    }
    match p.tolerates_state {
        Some("") => tolerations.push(json!({"operator": "Exists"})),
        Some(key) => tolerations.push(json!({"key": key, "operator": "Exists", "effect": "NoSchedule"})),
        None => {}
    }
    spec["tolerations"] = json!(tolerations);
    let app = json!({"matchLabels": {"app": format!("a{}", p.app)}});
    if p.anti_host {
        spec["affinity"] =
            json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": app, "topologyKey": "kubernetes.io/hostname"}]}});
    }
    if p.spread_zone {
        let policy = if p.honor_taints { "Honor" } else { "Ignore" };
        spec["topologySpreadConstraints"] =
            json!([{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": app, "nodeTaintsPolicy": policy}]);
    }
    spec["priority"] = json!(p.priority);
    pod(&format!("p{i}"), 0, 0, json!({"metadata": {"labels": {"app": format!("a{}", p.app)}}, "spec": spec}))
}

/// The brute-force answer: may pod `p` go on node `i`, given what is placed?
fn allowed(nodes: &[N], placed: &[(usize, P)], i: usize, p: &P) -> bool {
    let n = &nodes[i];
    let here: Vec<&P> = placed.iter().filter(|(at, _)| *at == i).map(|(_, q)| q).collect();
    let sum = |f: fn(&P) -> i64| here.iter().map(|q| f(q)).sum::<i64>();
    let fits = (here.len() as i64) < n.max_pods && sum(|q| q.cpu) + p.cpu <= n.cpu && sum(|q| q.mem) + p.mem <= n.mem && sum(|q| q.gpu) + p.gpu <= n.gpu;
    let selector = p.zone.is_none_or(|z| z == n.zone);
    let anti = !here.iter().any(|q| q.app == p.app && (q.anti_host || p.anti_host));
    // The nodes the spread counts: those the node selector accepts and, under
    // nodeTaintsPolicy Honor, whose taints the pod tolerates.
    let counted = |m: &N| p.zone.is_none_or(|pz| pz == m.zone) && (!p.honor_taints || p.tolerates_node(m));
    let spread = !p.spread_zone || {
        let eligible: Vec<usize> = (0..3).filter(|z| nodes.iter().any(|m| m.zone == *z && counted(m))).collect();
        let count = |z: usize| placed.iter().filter(|(at, q)| nodes[*at].zone == z && counted(&nodes[*at]) && q.app == p.app).count() as i64;
        let min = eligible.iter().map(|z| count(*z)).min().unwrap_or(0);
        count(n.zone) + 1 - min <= 1
    };
    p.tolerates_node(n) && fits && selector && anti && spread
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn never_overcommits_always_constrains_and_places_what_fits(nodes in prop::collection::vec(arb_node(), 1..12), pods in prop::collection::vec(arb_pod(), 1..60), seed in 0u64..1000) {
        let mut s = Snapshot::new(SchedulerConfig { seed, min_feasible: 3, ..Default::default() });
        for (i, n) in nodes.iter().enumerate() {
            s.upsert_node(&to_node(i, n));
        }
        // Placed pods and, in the same order, their keys.
        let mut placed: Vec<(usize, P)> = Vec::new();
        let mut keys: Vec<String> = Vec::new();
        for (i, p) in pods.iter().enumerate() {
            let info = s.pod_info(&to_pod(i, p)).unwrap();
            match s.schedule(&info) {
                Ok(Decision::Bind(name)) => {
                    let at: usize = name[1..].parse().unwrap();
                    prop_assert!(allowed(&nodes, &placed, at, p), "pod {i} {p:?} placed on {name} against the rules; placed {placed:?}");
                    s.assume(&info, &name);
                    placed.push((at, p.clone()));
                    keys.push(info.key.clone());
                }
                Ok(Decision::Preempt { node, victims }) => {
                    let at: usize = node[1..].parse().unwrap();
                    prop_assert!(!victims.is_empty(), "pod {i} preempts nobody on {node}");
                    let mut kept = Vec::new();
                    for ((on, q), key) in placed.iter().zip(&keys) {
                        if victims.contains(key) {
                            prop_assert!(*on == at && q.priority < p.priority, "pod {i} {p:?} evicts {key} {q:?} on n{on}");
                        } else {
                            kept.push(((*on, q.clone()), key.clone()));
                        }
                    }
                    prop_assert_eq!(kept.len(), placed.len() - victims.len(), "victims are placed pods");
                    (placed, keys) = kept.into_iter().unzip();
                    prop_assert!(allowed(&nodes, &placed, at, p), "pod {i} {p:?} still does not fit {node} without {victims:?}; placed {placed:?}");
                    for v in &victims {
                        s.remove_pod(v);
                    }
                    s.assume(&info, &node);
                    placed.push((at, p.clone()));
                    keys.push(info.key.clone());
                }
                Err(why) => {
                    let somewhere = (0..nodes.len()).find(|at| allowed(&nodes, &placed, *at, p));
                    prop_assert!(somewhere.is_none(), "pod {i} {p:?} refused ({why}) but fits n{}", somewhere.unwrap_or(0));
                }
            }
        }
        let mut per_node: BTreeMap<usize, (i64, i64, i64, i64)> = BTreeMap::new();
        for (at, p) in &placed {
            let e = per_node.entry(*at).or_default();
            *e = (e.0 + p.cpu, e.1 + p.mem, e.2 + p.gpu, e.3 + 1);
        }
        for (at, (cpu, mem, gpu, count)) in per_node {
            let n = &nodes[at];
            prop_assert!(cpu <= n.cpu && mem <= n.mem && gpu <= n.gpu && count <= n.max_pods, "n{at} overcommitted");
        }
    }
}
