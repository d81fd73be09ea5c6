//! Node loss, for real: a server and two agents on this host, each with its own data dir,
//! bridge and pod CIDR, the second in a network namespace of its own that reaches the server
//! over a veth (so the nodes share no network stack). One agent is killed with SIGKILL; its Deployment pod is replaced on the other node
//! within the documented bound; when it comes back, it stops the container of the replaced pod.

mod common;

use std::time::{Duration, Instant};

use serde_json::Value;

use common::{pod_ready, summary, wait_for, Cluster, ExtraAgent, Mode, IMAGE};

/// Heartbeat grace (10 s) + default toleration (5 s) + up to one heartbeat (2 s) + the start
/// of the replacement: the bound README states.
const REPLACEMENT_BOUND: Duration = Duration::from_secs(20);

fn deployment() -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: survivor}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: survivor}}}}
  template:
    metadata: {{labels: {{app: survivor}}}}
    spec:
      terminationGracePeriodSeconds: 1
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            podAffinityTerm: {{labelSelector: {{matchLabels: {{app: survivor}}}}, topologyKey: kubernetes.io/hostname}}
      containers:
      - name: main
        image: {IMAGE}
        command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
"#
    )
}

fn node_of(pod: &Value) -> &str {
    pod["spec"]["nodeName"].as_str().unwrap_or("")
}

#[test]
fn a_lost_node_s_pods_run_elsewhere_and_its_duplicates_stop_when_it_returns() {
    let mut cluster = Cluster::start("nodeloss", Mode::Split);
    let mut other = ExtraAgent::join(&cluster, "b", 7);
    cluster.apply(&deployment());
    let pods = cluster.wait_ready("app=survivor", 2, Duration::from_secs(60));
    let mut nodes: Vec<&str> = pods.iter().map(node_of).collect();
    nodes.sort();
    assert_eq!(nodes, [cluster.node.as_str(), other.node.as_str()], "one replica per node: {}", summary(&pods));
    let lost_pod = pods.iter().find(|p| node_of(p) == cluster.node).unwrap()["metadata"]["name"].as_str().unwrap().to_string();
    let lost_containers = cluster.containers();
    assert_eq!(lost_containers.len(), 1);

    cluster.kill_agent();
    let killed = Instant::now();
    // The replacement runs on the other node; the old pod is terminating, its container still
    // running on the silent node.
    wait_for(REPLACEMENT_BOUND, "the replacement to run on the other node", || {
        let pods = cluster.pods(Some("app=survivor"));
        let live: Vec<&Value> = pods.iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).collect();
        (live.len() == 2 && live.iter().all(|p| node_of(p) == other.node && pod_ready(p))).then_some(())
    });
    let replaced_after = killed.elapsed();
    let node: Value = serde_json::from_str(&cluster.run_ok(&["get", "node", &cluster.node, "-o", "json"])).unwrap();
    assert!(node["spec"]["taints"].as_array().unwrap().iter().any(|t| t["key"] == "node.kubernetes.io/unreachable"), "{node}");
    assert!(!cluster.get("pod", &lost_pod)["metadata"]["deletionTimestamp"].is_null(), "the lost node's pod is being deleted");
    assert_eq!(cluster.containers().len(), 1, "its container still runs while its agent is away");
    eprintln!("node loss → replacement Ready after {replaced_after:?}");

    // The node comes back: its agent stops the replaced pod's container and finishes its deletion.
    cluster.start_agent();
    let returned = Instant::now();
    wait_for(Duration::from_secs(20), "the duplicate to stop", || {
        (cluster.containers().is_empty() && cluster.try_run(&["get", "pod", &lost_pod]).is_err()).then_some(())
    });
    eprintln!("duplicate stopped {:?} after the agent returned", returned.elapsed());
    wait_for(Duration::from_secs(20), "the node to be schedulable again", || {
        let node: Value = serde_json::from_str(&cluster.run_ok(&["get", "node", &cluster.node, "-o", "json"])).ok()?;
        node["spec"]["taints"].as_array().is_none_or(|t| t.is_empty()).then_some(())
    });

    cluster.delete_everything();
    cluster.assert_host_clean();
    other.assert_host_clean();
}
