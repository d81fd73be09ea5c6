//! Cordoned, not-ready and unreachable nodes: the taints Kubernetes gives them keep pods away
//! unless the pods tolerate them, and the indexes still prune them for pods that do not.

use serde_json::json;

use super::*;

fn ready(status: &str) -> serde_json::Value {
    json!({"status": {"conditions": [{"type": "Ready", "status": status}]}})
}

fn tolerating(key: &str, effect: &str) -> serde_json::Value {
    json!({"spec": {"tolerations": [{"key": key, "operator": "Exists", "effect": effect}]}})
}

#[test]
fn a_pod_tolerating_the_unschedulable_taint_may_use_a_cordoned_node() {
    let mut s = cluster(&[node("a", 4, 8, json!({"spec": {"unschedulable": true}}))]);
    assert_eq!(place(&mut s, &pod("plain", 100, 10, json!({}))).unwrap_err(), "0/1 nodes available: 1 cordoned.");
    assert_eq!(place(&mut s, &pod("daemon", 100, 10, tolerating("node.kubernetes.io/unschedulable", "NoSchedule"))).unwrap(), "a");
    // Tolerating everything tolerates the cordon too, as in Kubernetes.
    assert_eq!(place(&mut s, &pod("all", 100, 10, json!({"spec": {"tolerations": [{"operator": "Exists"}]}}))).unwrap(), "a");
    s.upsert_node(&node("a", 4, 8, json!({})));
    assert_eq!(place(&mut s, &pod("uncordoned", 100, 10, json!({}))).unwrap(), "a");
}

#[test]
fn not_ready_means_the_not_ready_taint_and_unknown_the_unreachable_one() {
    let no_condition = json!({"status": {"conditions": []}});
    let mut s = cluster(&[node("f", 4, 8, ready("False")), node("u", 4, 8, ready("Unknown")), node("new", 4, 8, no_condition)]);
    assert_eq!(place(&mut s, &pod("plain", 100, 10, json!({}))).unwrap_err(), "0/3 nodes available: 3 not ready.");
    // The NoExecute tolerations every pod gets by default let it stay, not arrive.
    let defaults = json!({"spec": {"tolerations": [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
    ]}});
    assert_eq!(place(&mut s, &pod("defaults", 100, 10, defaults)).unwrap_err(), "0/3 nodes available: 3 not ready.");
    let unreachable = pod("u1", 100, 10, tolerating("node.kubernetes.io/unreachable", "NoSchedule"));
    assert_eq!(place(&mut s, &unreachable).unwrap(), "u");
    let mut not_ready = Vec::new();
    for i in 0..2 {
        not_ready.push(place(&mut s, &pod(&format!("n{i}"), 100, 10, tolerating("node.kubernetes.io/not-ready", "NoSchedule"))).unwrap());
    }
    not_ready.sort();
    assert_eq!(not_ready, ["f", "new"], "Ready=False and a node that has not reported yet are not-ready");
}

#[test]
fn the_unreachable_taint_the_lifecycle_controller_writes_is_not_doubled() {
    // What controllers::nodelifecycle leaves on a node that stopped heartbeating.
    let lost = json!({
        "spec": {"taints": [
            {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule", "timeAdded": "2025-01-01T00:00:00Z"},
            {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": "2025-01-01T00:00:00Z"}
        ]},
        "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}
    });
    let mut s = cluster(&[node("a", 4, 8, lost)]);
    let taints: Vec<(&str, &str)> = s.node("a").unwrap().taints.iter().map(|t| (t.key.as_str(), t.effect.as_str())).collect();
    assert_eq!(taints, [("node.kubernetes.io/unreachable", "NoSchedule"), ("node.kubernetes.io/unreachable", "NoExecute")]);
    assert_eq!(place(&mut s, &pod("plain", 100, 10, json!({}))).unwrap_err(), "0/1 nodes available: 1 not ready.");
    let both = json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists"}]}});
    assert_eq!(place(&mut s, &pod("patient", 100, 10, both)).unwrap(), "a");
}

#[test]
fn nodes_a_pod_does_not_tolerate_are_pruned_before_filtering() {
    let mut nodes = Vec::new();
    for i in 0..40 {
        let state = match i % 4 {
            0 => json!({"spec": {"unschedulable": true}}),
            1 => ready("False"),
            2 => json!({"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}}),
            _ => json!({}),
        };
        nodes.push(node(&format!("n{i:02}"), 4, 8, state));
    }
    let mut s = cluster(&nodes);
    // A pod without tolerations, one with only the default NoExecute ones, and one that
    // tolerates the dedicated pool: each filters only the nodes it may use.
    let default_tolerations = json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}]}});
    for (p, usable) in [
        (pod("plain", 100, 10, json!({})), 10),
        (pod("defaults", 100, 10, default_tolerations), 10),
        (pod("db", 100, 10, tolerating("dedicated", "NoSchedule")), 20),
    ] {
        let before = s.nodes_checked;
        let info = s.pod_info(&p).unwrap();
        assert!(s.schedule(&info).is_ok());
        assert_eq!(s.nodes_checked - before, usable, "{:?}", p.metadata.name);
    }
}
