//! Node operations through the built binary: cordon keeps new pods off with the reason shown
//! on the pod, uncordon lets them on, drain evicts and the Deployment's replacements wait.

mod common;

use std::time::Duration;

use common::{wait_for, Cluster, IMAGE};

fn deployment(replicas: u32) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: drainme}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: drainme}}}}
  template:
    metadata: {{labels: {{app: drainme}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {IMAGE}
        command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
"#
    )
}

fn unschedulable_message(cluster: &mut Cluster) -> Option<String> {
    let pods = cluster.pods(Some("app=drainme"));
    let pending: Vec<_> = pods.iter().filter(|p| p["spec"]["nodeName"].is_null() && p["metadata"]["deletionTimestamp"].is_null()).collect();
    pending.first().and_then(|p| p["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "PodScheduled")?["message"].as_str().map(str::to_string))
}

#[test]
fn cordon_uncordon_and_drain() {
    let mut cluster = Cluster::up("nodes");
    let node = "e2e-nodes".to_string();
    cluster.apply(&deployment(2));
    let before = cluster.wait_ready("app=drainme", 2, Duration::from_secs(60));

    let out = cluster.run_ok(&["drain", &node, "--timeout", "60s"]);
    assert!(out.contains(&format!("node/{node} cordoned")) && out.contains(&format!("node/{node} drained")), "{out}");
    assert_eq!(cluster.get("node", &node)["spec"]["unschedulable"], true);
    // The Deployment replaced the evicted pods; they wait, and say why.
    let message = wait_for(Duration::from_secs(20), "the replacements to be unschedulable", || unschedulable_message(&mut cluster));
    assert_eq!(message, "0/1 nodes available: 1 cordoned.");
    let names = |pods: &[serde_json::Value]| pods.iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    let waiting = cluster.pods(Some("app=drainme"));
    assert_eq!(waiting.len(), 2, "only the replacements are left: {:?}", names(&waiting));
    assert!(names(&waiting).iter().all(|n| !names(&before).contains(n)));

    let out = cluster.run_ok(&["uncordon", &node]);
    assert!(out.contains(&format!("node/{node} uncordoned")), "{out}");
    cluster.wait_ready("app=drainme", 2, Duration::from_secs(60));
    assert!(cluster.run_ok(&["cordon", &node]).contains("cordoned"));
    assert!(cluster.run_ok(&["cordon", &node]).contains("already cordoned"));
    cluster.run_ok(&["uncordon", &node]);

    cluster.delete_everything();
    cluster.assert_host_clean();
}
