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
