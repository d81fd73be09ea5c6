use super::*;
use api::k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};
use api::k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use proptest::prelude::*;

fn node(name: &str, cpu: i64, mem: i64, labels: &[(&str, &str)]) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        allocatable: Requests { cpu_millis: cpu, memory_bytes: mem },
        max_pods: 110,
        requested: Requests::default(),
        pods: 0,
        ready: true,
        unschedulable: false,
    }
}

fn pod(cpu: i64, mem: i64, selector: &[(&str, &str)]) -> Pod {
    let requests = [("cpu".to_string(), Quantity(format!("{cpu}m"))), ("memory".to_string(), Quantity(mem.to_string()))].into();
    Pod {
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                resources: Some(ResourceRequirements { requests: Some(requests), ..Default::default() }),
                ..Default::default()
            }],
            node_selector: (!selector.is_empty()).then(|| selector.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn picks_the_least_allocated_feasible_node() {
    let mut snap = Snapshot { nodes: vec![node("a", 1000, 1 << 30, &[]), node("b", 4000, 4 << 30, &[])] };
    assert_eq!(schedule(&pod(500, 1 << 20, &[]), &snap).unwrap(), "b");
    snap.nodes[1].requested = Requests { cpu_millis: 3900, memory_bytes: 0 };
    assert_eq!(schedule(&pod(500, 1 << 20, &[]), &snap).unwrap(), "a");
}

#[test]
fn explains_why_nothing_fits() {
    let mut not_ready = node("c", 8000, 8 << 30, &[]);
    not_ready.ready = false;
    let snap = Snapshot { nodes: vec![node("a", 1000, 1 << 20, &[]), node("b", 8000, 1 << 20, &[("zone", "x")]), not_ready] };
    let err = schedule(&pod(500, 1 << 30, &[]), &snap).unwrap_err();
    assert_eq!(err.to_string(), "0/3 nodes are available: 2 Insufficient memory, 1 node(s) not ready.");
    let err = schedule(&pod(10, 10, &[("zone", "y")]), &snap).unwrap_err();
    assert_eq!(err.reasons.get("node(s) didn't match Pod's node selector"), Some(&2));
    assert!(schedule(&pod(1, 1, &[]), &Snapshot::default()).unwrap_err().to_string().contains("no nodes"));
}

proptest! {
    /// Placing a stream of pods one by one never overcommits a node, and a pod is refused only
    /// when no node has room for it.
    #[test]
    fn never_overcommits(nodes in prop::collection::vec((1i64..8000, 1i64..8_000_000), 1..6),
                         pods in prop::collection::vec((0i64..3000, 0i64..3_000_000), 1..60)) {
        let mut snap = Snapshot { nodes: nodes.iter().enumerate().map(|(i, (c, m))| node(&format!("n{i}"), *c, *m, &[])).collect() };
        for (cpu, mem) in pods {
            let p = pod(cpu, mem, &[]);
            match schedule(&p, &snap) {
                Ok(name) => snap.assume(&name, Requests { cpu_millis: cpu, memory_bytes: mem }),
                Err(_) => prop_assert!(snap.nodes.iter().all(|n| n.free().cpu_millis < cpu || n.free().memory_bytes < mem)),
            }
            for n in &snap.nodes {
                prop_assert!(n.requested.cpu_millis <= n.allocatable.cpu_millis);
                prop_assert!(n.requested.memory_bytes <= n.allocatable.memory_bytes);
            }
        }
    }
}
