//! Topology spread's node inclusion policies, read per constraint: `nodeAffinityPolicy`
//! (default Honor) and `nodeTaintsPolicy` (default Ignore).

use serde_json::json;

use super::*;

fn zone(z: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut n = json!({"metadata": {"labels": {"topology.kubernetes.io/zone": z}}});
    merge(&mut n, extra);
    n
}

fn web(name: &str, constraint: serde_json::Value, extra: serde_json::Value) -> Pod {
    let mut c = json!({"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}});
    merge(&mut c, constraint);
    let mut p = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"topologySpreadConstraints": [c]}});
    merge(&mut p, extra);
    pod(name, 100, 10, p)
}

#[test]
fn node_taints_policy_honor_leaves_out_nodes_the_pod_does_not_tolerate() {
    let db = json!({"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}});
    let nodes = [
        node("a1", 8, 8, zone("a", json!({}))),
        node("b1", 8, 8, zone("b", db.clone())),
        node("c1", 8, 8, zone("c", json!({"spec": {"unschedulable": true}}))),
    ];
    // Ignore (the default): zones b and c count with no pods, so zone a takes one pod only.
    let mut s = cluster(&nodes);
    assert_eq!(place(&mut s, &web("w0", json!({}), json!({}))).unwrap(), "a1");
    assert_eq!(
        place(&mut s, &web("w1", json!({}), json!({}))).unwrap_err(),
        "0/3 nodes available: 1 cordoned, 1 violating topology spread, 1 with untolerated taint dedicated=db:NoSchedule."
    );
    // Honor: the tainted and the cordoned node are not domains; zone a is the only one.
    let mut s = cluster(&nodes);
    for i in 0..3 {
        assert_eq!(place(&mut s, &web(&format!("h{i}"), json!({"nodeTaintsPolicy": "Honor"}), json!({}))).unwrap(), "a1");
    }
    // A pod that tolerates the dedicated taint counts zone b again.
    let tolerant = json!({"spec": {"tolerations": [{"key": "dedicated", "operator": "Exists"}]}});
    assert_eq!(place(&mut s, &web("t0", json!({"nodeTaintsPolicy": "Honor"}), tolerant)).unwrap(), "b1");
}

#[test]
fn node_taints_policy_honor_does_not_count_pods_on_untolerated_nodes() {
    let db = json!({"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}});
    let nodes = [node("a1", 8, 8, zone("a", json!({}))), node("b1", 8, 8, zone("b", json!({}))), node("b2", 8, 8, zone("b", db))];
    let pinned = json!({"spec": {"nodeSelector": {"kubernetes.io/hostname": "b2"}, "tolerations": [{"key": "dedicated", "operator": "Exists"}]}});
    for (policy, expected) in [(json!({}), ["a1", "a1"]), (json!({"nodeTaintsPolicy": "Honor"}), ["a1", "b1"])] {
        let mut s = cluster(&nodes);
        for i in 0..2 {
            let mut p = json!({"metadata": {"labels": {"app": "web"}}});
            merge(&mut p, pinned.clone());
            assert_eq!(place(&mut s, &pod(&format!("db{i}"), 100, 10, p)).unwrap(), "b2");
        }
        // Ignore: zone b holds 2 and a 0, so both go to a. Honor: b2's pods do not count.
        let mut got: Vec<String> = (0..2).map(|i| place(&mut s, &web(&format!("w{i}"), policy.clone(), json!({}))).unwrap()).collect();
        got.sort();
        assert_eq!(got, expected, "{policy}");
    }
}

#[test]
fn node_affinity_policy_ignore_counts_every_node() {
    // As in constraints::topology_spread_counts_only_pods_on_nodes_the_pod_may_use, with Ignore:
    // the two pods on a-cpu count for zone a, so both GPU pods go to zone b.
    let gpu = |z: &str| zone(z, json!({"metadata": {"labels": {"gpu": "yes"}}}));
    let mut s = cluster(&[node("a-gpu", 8, 8, gpu("a")), node("a-cpu", 8, 8, zone("a", json!({}))), node("b-gpu", 8, 8, gpu("b"))]);
    for i in 0..2 {
        let pinned = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"nodeSelector": {"kubernetes.io/hostname": "a-cpu"}}});
        assert_eq!(place(&mut s, &pod(&format!("cpu{i}"), 100, 10, pinned)).unwrap(), "a-cpu");
    }
    let on_gpu = json!({"spec": {"nodeSelector": {"gpu": "yes"}}});
    for i in 0..2 {
        assert_eq!(place(&mut s, &web(&format!("gpu{i}"), json!({"nodeAffinityPolicy": "Ignore"}), on_gpu.clone())).unwrap(), "b-gpu");
    }
}

#[test]
fn an_unknown_policy_names_the_field() {
    let mut s = cluster(&[node("a", 1, 1, json!({}))]);
    let err = s.pod_info(&web("w", json!({"nodeTaintsPolicy": "Sometimes"}), json!({}))).unwrap_err();
    assert_eq!(err.to_string(), "spec.topologySpreadConstraints[0].nodeTaintsPolicy: \"Sometimes\" is not Honor or Ignore");
    let err = s.pod_info(&web("w", json!({"nodeAffinityPolicy": "honor"}), json!({}))).unwrap_err();
    assert_eq!(err.field, "spec.topologySpreadConstraints[0].nodeAffinityPolicy");
}
