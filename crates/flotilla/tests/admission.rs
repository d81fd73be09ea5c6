//! The node's own admission through the built binary: a pod bound straight to a node (bypassing
//! the scheduler) that does not fit beside what runs there fails with the kubelet's reason, and
//! the pods that fit keep running.

mod common;

use std::time::Duration;

use common::{wait_for, Cluster, IMAGE};

#[test]
fn a_pod_bound_to_a_node_it_does_not_fit_fails_with_out_of_cpu() {
    let mut cluster = Cluster::up("outofcpu");
    let node = cluster.node.clone();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let pod = |name: &str, cpu: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: bound}}}}\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {IMAGE}\n    command: [sleep, \"3600\"]\n    resources: {{requests: {{cpu: \"{cpu}\"}}}}\n"
        )
    };
    // Most of the node's CPU, then more than what is left.
    let most = format!("{}m", cpus * 1000 - 200);
    cluster.apply(&pod("first", &most));
    cluster.wait_ready("app=bound", 1, Duration::from_secs(60));
    cluster.apply(&pod("second", "500m"));
    let failed = wait_for(Duration::from_secs(30), "the second pod to fail admission", || {
        let pod = cluster.get("pod", "second");
        (pod["status"]["phase"] == "Failed").then_some(pod)
    });
    assert_eq!(failed["status"]["reason"], "OutOfcpu", "{}", failed["status"]);
    let message = failed["status"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains(&format!("cpu, requested: 500, used: {}, capacity: {}", cpus * 1000 - 200, cpus * 1000)),
        "the message says what did not fit: {message}"
    );
    assert!(cluster.containers().iter().all(|(id, _, _)| !id.contains(failed["metadata"]["uid"].as_str().unwrap())), "nothing of the refused pod runs");
    let events = cluster.run_ok(&["describe", "pod", "second"]);
    assert!(events.contains("OutOfcpu"), "{events}");
    assert!(common::pod_ready(&cluster.get("pod", "first")), "the pod that fits keeps running");

    // Freed room is room again.
    cluster.run_ok(&["delete", "pod", "first"]);
    cluster.apply(&pod("third", "500m"));
    wait_for(Duration::from_secs(60), "the third pod to run", || common::pod_ready(&cluster.get("pod", "third")).then_some(()));
    cluster.delete_everything();
    cluster.assert_host_clean();
}
