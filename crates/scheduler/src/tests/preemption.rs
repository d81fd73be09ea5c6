//! Preemption: the fewest, lowest-priority victims; never for a pod of lower or equal priority.

use serde_json::json;

use super::*;

fn prio(p: i32) -> serde_json::Value {
    json!({"spec": {"priority": p}})
}

#[test]
fn evicts_the_fewest_lowest_priority_pods() {
    let mut s = cluster(&[node("a", 4, 64, json!({})), node("b", 4, 64, json!({}))]);
    // a: two 1-CPU pods at priority 10 and one 2-CPU pod at 100; b: one 4-CPU pod at 50.
    for (name, cpu, p, n) in [("a-low1", 1000, 10, "a"), ("a-low2", 1000, 10, "a"), ("a-high", 2000, 100, "a"), ("b-mid", 4000, 50, "b")] {
        let mut extra = prio(p);
        merge(&mut extra, json!({"spec": {"nodeSelector": {"kubernetes.io/hostname": n}}}));
        place(&mut s, &pod(name, cpu, 10, extra)).unwrap();
    }
    let urgent = s.pod_info(&pod("urgent", 2000, 10, prio(1000))).unwrap();
    // b needs one victim of priority 50; a needs two of priority 10: lower priority wins.
    assert_eq!(s.schedule(&urgent).unwrap(), Decision::Preempt { node: "a".into(), victims: vec!["default/a-low1".into(), "default/a-low2".into()] });
    // Only one of the low pods must go for a 1-CPU pod.
    let small = s.pod_info(&pod("small", 1000, 10, prio(1000))).unwrap();
    assert_eq!(s.schedule(&small).unwrap(), Decision::Preempt { node: "a".into(), victims: vec!["default/a-low2".into()] });
}

#[test]
fn never_for_lower_or_equal_priority_nor_with_policy_never() {
    let mut s = cluster(&[node("a", 1, 64, json!({}))]);
    place(&mut s, &pod("running", 1000, 10, prio(100))).unwrap();
    let equal = s.pod_info(&pod("equal", 500, 10, prio(100))).unwrap();
    assert_eq!(s.schedule(&equal).unwrap_err().to_string(), "0/1 nodes available: 1 insufficient cpu.");
    // Evicting every lower-priority pod would not make room.
    let mut t = cluster(&[node("a", 1, 64, json!({}))]);
    place(&mut t, &pod("low", 100, 10, prio(0))).unwrap();
    place(&mut t, &pod("high", 900, 10, prio(100))).unwrap();
    let mid = t.pod_info(&pod("mid", 500, 10, prio(50))).unwrap();
    let err = t.schedule(&mid).unwrap_err();
    assert_eq!(err.to_string(), "0/1 nodes available: 1 insufficient cpu. Preemption: no node where evicting lower-priority pods makes room.");
    let never = s.pod_info(&pod("never", 500, 10, json!({"spec": {"priority": 1000, "preemptionPolicy": "Never"}}))).unwrap();
    assert_eq!(s.schedule(&never).unwrap_err().to_string(), "0/1 nodes available: 1 insufficient cpu.");
    // Evicting cannot help a pod that matches no node.
    let elsewhere = s.pod_info(&pod("x", 500, 10, json!({"spec": {"priority": 1000, "nodeSelector": {"gpu": "yes"}}}))).unwrap();
    assert!(!s.schedule(&elsewhere).unwrap_err().preemption_failed);
}

#[test]
fn a_nominated_pod_keeps_its_room_from_lower_priority_pods() {
    let mut s = cluster(&[node("a", 2, 64, json!({}))]);
    place(&mut s, &pod("low", 1000, 10, prio(0))).unwrap();
    // The preemptor is nominated to a (its victim is terminating); it reserves 2 CPUs.
    let nominated = pod("urgent", 2000, 10, json!({"spec": {"priority": 100}, "status": {"nominatedNodeName": "a"}}));
    s.upsert_pod(&nominated).unwrap();
    s.remove_pod("default/low");
    assert!(place(&mut s, &pod("sneaky", 500, 10, prio(0))).unwrap_err().contains("insufficient cpu"));
    assert_eq!(place(&mut s, &nominated).unwrap(), "a");
}

fn on(node: &str, app: &str, p: i32, spec: serde_json::Value) -> serde_json::Value {
    let mut extra = json!({"metadata": {"labels": {"app": app}}, "spec": {"priority": p, "nodeSelector": {"kubernetes.io/hostname": node}}});
    merge(&mut extra, json!({"spec": spec}));
    extra
}

fn required(kind: &str, app: &str, key: &str) -> serde_json::Value {
    json!({"affinity": {kind: {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}]}}})
}

#[test]
fn evicts_the_running_pod_whose_anti_affinity_excludes_the_preemptor_and_spares_the_rest() {
    let mut s = cluster(&[node("a", 8, 64, json!({}))]);
    place(&mut s, &pod("guard", 100, 10, on("a", "guard", 0, required("podAntiAffinity", "urgent", "kubernetes.io/hostname")))).unwrap();
    place(&mut s, &pod("bystander", 100, 10, on("a", "other", 0, json!({})))).unwrap();
    let urgent = s.pod_info(&pod("urgent", 100, 10, json!({"metadata": {"labels": {"app": "urgent"}}, "spec": {"priority": 100}}))).unwrap();
    assert_eq!(s.schedule(&urgent).unwrap(), Decision::Preempt { node: "a".into(), victims: vec!["default/guard".into()] });
}

#[test]
fn evicts_the_pods_the_preemptors_own_anti_affinity_rejects() {
    let mut s = cluster(&[node("a", 8, 64, json!({}))]);
    place(&mut s, &pod("db-old", 100, 10, on("a", "db", 0, json!({})))).unwrap();
    place(&mut s, &pod("web", 100, 10, on("a", "web", 0, json!({})))).unwrap();
    let spec = required("podAntiAffinity", "db", "kubernetes.io/hostname");
    let db =
        s.pod_info(&pod("db-new", 100, 10, json!({"metadata": {"labels": {"app": "db"}}, "spec": {"priority": 100, "affinity": spec["affinity"]}}))).unwrap();
    assert_eq!(s.schedule(&db).unwrap(), Decision::Preempt { node: "a".into(), victims: vec!["default/db-old".into()] });
}

#[test]
fn never_evicts_the_pod_the_preemptors_required_affinity_needs() {
    let zone = json!({"metadata": {"labels": {"topology.kubernetes.io/zone": "z"}}});
    let mut s = cluster(&[node("a", 4, 64, zone.clone()), node("b", 4, 64, zone)]);
    // a: the cache (priority 0) the preemptor must share a zone with; b: a filler (priority 5).
    place(&mut s, &pod("cache", 3000, 10, on("a", "cache", 0, json!({})))).unwrap();
    place(&mut s, &pod("filler", 4000, 10, on("b", "filler", 5, json!({})))).unwrap();
    let spec = required("podAffinity", "cache", "topology.kubernetes.io/zone");
    let near = s.pod_info(&pod("near", 2000, 10, json!({"spec": {"priority": 100, "affinity": spec["affinity"]}}))).unwrap();
    // Evicting the cache would be cheaper, and leave the preemptor with nothing to be near.
    assert_eq!(s.schedule(&near).unwrap(), Decision::Preempt { node: "b".into(), victims: vec!["default/filler".into()] });
}

#[test]
fn evicts_matching_pods_that_a_hard_spread_constraint_counts() {
    let zone = |z: &str| json!({"metadata": {"labels": {"topology.kubernetes.io/zone": z}}});
    let mut s = cluster(&[node("a1", 8, 64, zone("a")), node("b1", 1, 64, zone("b"))]);
    // Zone a holds two low-priority web pods and a bystander; zone b is full of important work.
    place(&mut s, &pod("web0", 100, 10, on("a1", "web", 0, json!({})))).unwrap();
    place(&mut s, &pod("web1", 100, 10, on("a1", "web", 0, json!({})))).unwrap();
    place(&mut s, &pod("bystander", 100, 10, on("a1", "other", 0, json!({})))).unwrap();
    place(&mut s, &pod("important", 1000, 10, on("b1", "other", 1000, json!({})))).unwrap();
    let constraint = json!([{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]);
    let p = pod("web2", 100, 10, json!({"metadata": {"labels": {"app": "web"}}, "spec": {"priority": 100, "topologySpreadConstraints": constraint}}));
    let info = s.pod_info(&p).unwrap();
    // Zone b has 0, so zone a may hold at most 1 with the new pod: both web pods go.
    assert_eq!(s.schedule(&info).unwrap(), Decision::Preempt { node: "a1".into(), victims: vec!["default/web0".into(), "default/web1".into()] });
}
