//! Preemption through the built binary: on a full node, a pod of a higher PriorityClass evicts
//! a lower one and runs in its place, while one with `preemptionPolicy: Never` waits, with the
//! reason on it.

mod common;

use std::time::Duration;

use serde_json::Value;

use common::{wait_for, Cluster, IMAGE};

/// A pod of `class` requesting `millicores` of CPU.
fn pod(name: &str, class: &str, millicores: u64, never: bool) -> String {
    let policy = if never { "\n  preemptionPolicy: Never" } else { "" };
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  priorityClassName: {class}{policy}
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {IMAGE}
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
    resources: {{requests: {{cpu: {millicores}m}}}}
"#
    )
}

const CLASSES: &str = r#"
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: e2e-low}
value: 10
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: e2e-high}
value: 1000
"#;

fn millicores(quantity: &str) -> u64 {
    match quantity.strip_suffix('m') {
        Some(m) => m.parse().unwrap(),
        None => quantity.parse::<u64>().unwrap() * 1000,
    }
}

fn scheduled_condition(pod: &Value) -> Option<(String, String)> {
    let c = pod["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "PodScheduled")?;
    Some((c["status"].as_str()?.to_string(), c["message"].as_str().unwrap_or("").to_string()))
}

#[test]
fn a_higher_priority_pod_preempts_a_lower_one_and_never_waits() {
    let mut cluster = Cluster::up("preempt");
    let node = cluster.get("node", &cluster.node.clone());
    // Each pod asks for 60% of the node's CPU: any two do not fit together.
    let share = millicores(node["status"]["allocatable"]["cpu"].as_str().unwrap()) * 6 / 10;
    cluster.apply(CLASSES);
    cluster.apply(&pod("victim", "e2e-low", share, false));
    let victim = cluster.wait_ready("app=victim", 1, Duration::from_secs(60));
    assert_eq!(victim[0]["spec"]["priority"], 10);

    // Higher priority but preemptionPolicy: Never: it waits, and the victim keeps running.
    cluster.apply(&pod("patient", "e2e-high", share, true));
    wait_for(Duration::from_secs(20), "the patient pod to be reported unschedulable", || {
        let (status, message) = scheduled_condition(&cluster.get("pod", "patient"))?;
        (status == "False").then_some(message)
    });
    let (_, message) = scheduled_condition(&cluster.get("pod", "patient")).unwrap();
    assert!(message.contains("0/1 nodes available") && message.contains("insufficient cpu"), "{message}");
    assert_eq!(cluster.wait_ready("app=victim", 1, Duration::from_secs(5)).len(), 1, "Never must not preempt");
    cluster.run_ok(&["delete", "pod", "patient"]);

    // The same pod allowed to preempt: the victim is evicted and it runs on the node.
    cluster.apply(&pod("urgent", "e2e-high", share, false));
    let urgent = cluster.wait_ready("app=urgent", 1, Duration::from_secs(60));
    assert_eq!(urgent[0]["spec"]["nodeName"], cluster.node.as_str());
    assert!(cluster.try_run(&["get", "pod", "victim"]).is_err(), "the victim is gone");
    let events = cluster.run_ok(&["get", "events", "-o", "json"]);
    assert!(events.contains("Preempted by default/urgent"), "a Preempted event names the preemptor: {events}");

    // A lower-priority pod never preempts a higher one: it waits.
    cluster.apply(&pod("victim", "e2e-low", share, false));
    wait_for(Duration::from_secs(20), "the low-priority pod to be reported unschedulable", || {
        let (status, _) = scheduled_condition(&cluster.get("pod", "victim"))?;
        (status == "False").then_some(())
    });
    assert_eq!(cluster.wait_ready("app=urgent", 1, Duration::from_secs(5)).len(), 1);

    cluster.delete_everything();
    cluster.assert_host_clean();
}
