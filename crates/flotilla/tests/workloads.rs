//! Workload behaviour through the built binary: scaling, rolling updates that keep
//! availability, crash restarts with back-off, liveness restarts and restart policies.

mod common;

use std::time::{Duration, Instant};

use serde_json::Value;

use common::{pod_ready, summary, wait_for, Cluster, IMAGE};

fn deployment(name: &str, replicas: u32, max_surge: u32, max_unavailable: u32, version: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  strategy: {{rollingUpdate: {{maxSurge: {max_surge}, maxUnavailable: {max_unavailable}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {IMAGE}
        command: ["sh", "-c", "touch /tmp/ready; trap 'exit 0' TERM; while true; do sleep 1; done"]
        env: [{{name: VERSION, value: "{version}"}}]
        # Ready a second after the start, so that a rollout lasts long enough to be watched.
        readinessProbe:
          exec: {{command: ["cat", "/tmp/ready"]}}
          initialDelaySeconds: 1
          periodSeconds: 1
        resources: {{requests: {{cpu: 10m, memory: 8Mi}}}}
"#
    )
}

fn container_status(pod: &Value) -> &Value {
    &pod["status"]["containerStatuses"][0]
}

#[test]
fn scale_a_deployment_from_3_to_10_to_0() {
    let mut cluster = Cluster::up("scale");
    cluster.apply(&deployment("scaled", 3, 1, 0, "1"));
    cluster.wait_ready("app=scaled", 3, Duration::from_secs(60));

    assert!(cluster.run_ok(&["scale", "deployment/scaled", "--replicas", "10"]).contains("scaled"));
    let pods = cluster.wait_ready("app=scaled", 10, Duration::from_secs(90));
    let ips: std::collections::BTreeSet<&str> = pods.iter().filter_map(|p| p["status"]["podIP"].as_str()).collect();
    assert_eq!(ips.len(), 10, "every pod has its own IP: {}", summary(&pods));
    assert_eq!(cluster.containers().len(), 10);
    let d = cluster.get("deployment", "scaled");
    assert_eq!(d["status"]["readyReplicas"], 10, "{}", d["status"]);

    cluster.run_ok(&["scale", "deployment/scaled", "--replicas", "0"]);
    wait_for(Duration::from_secs(60), "the pods to be gone", || cluster.pods(Some("app=scaled")).is_empty().then_some(()));
    let d = cluster.get("deployment", "scaled");
    assert_eq!(d["status"]["replicas"].as_i64().unwrap_or(0), 0, "{}", d["status"]);
    cluster.assert_host_clean();
}

#[test]
fn rolling_update_never_drops_below_replicas_minus_max_unavailable() {
    let mut cluster = Cluster::up("rolling");
    let (replicas, max_unavailable) = (4usize, 1usize);
    cluster.apply(&deployment("rolled", replicas as u32, 1, max_unavailable as u32, "1"));
    let before = cluster.wait_ready("app=rolled", replicas, Duration::from_secs(60));
    let old_names: Vec<String> = before.iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect();

    cluster.apply(&deployment("rolled", replicas as u32, 1, max_unavailable as u32, "2"));
    // Watch availability until every pod runs the new template.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut lowest = usize::MAX;
    let mut samples = 0;
    loop {
        let pods = cluster.pods(Some("app=rolled"));
        let available: Vec<&Value> = pods.iter().filter(|p| pod_ready(p) && p["metadata"]["deletionTimestamp"].is_null()).collect();
        lowest = lowest.min(available.len());
        samples += 1;
        assert!(
            available.len() >= replicas - max_unavailable,
            "only {} ready pods during the rollout (at least {} required):\n{}",
            available.len(),
            replicas - max_unavailable,
            summary(&pods)
        );
        // As in Kubernetes, terminating pods do not count against maxSurge.
        let live = pods.iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).count();
        assert!(live <= replicas + 1, "more than replicas + maxSurge pods exist:\n{}", summary(&pods));
        let all_new = pods.len() == replicas
            && available.len() == replicas
            && pods.iter().all(|p| !old_names.contains(&p["metadata"]["name"].as_str().unwrap().to_string()));
        if all_new {
            break;
        }
        assert!(Instant::now() < deadline, "the rollout did not finish:\n{}", summary(&pods));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(samples > 10, "the rollout was observed only {samples} times");
    let status = cluster.run_ok(&["rollout", "status", "deployment/rolled", "--timeout", "30"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    for pod in cluster.pods(Some("app=rolled")) {
        let env = &pod["spec"]["containers"][0]["env"][0];
        assert_eq!(env["value"], "2", "pod {} runs the old template", pod["metadata"]["name"]);
    }
    eprintln!("lowest availability during the rollout: {lowest}/{replicas} over {samples} samples");
    cluster.delete_everything();
    cluster.assert_host_clean();
}

#[test]
fn a_crashing_container_is_restarted_with_growing_back_off() {
    let mut cluster = Cluster::up("crash");
    cluster.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: crasher}}
spec:
  containers:
  - name: main
    image: {IMAGE}
    command: ["sh", "-c", "echo run at $(date +%s); exit 3"]
"#
    ));
    // Record when each restart is first seen; with a 300 ms base the gaps double.
    let mut seen: Vec<(i64, Instant)> = Vec::new();
    let mut saw_back_off = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.last().map(|s| s.0).unwrap_or(0) < 4 {
        let pod = cluster.get("pod", "crasher");
        let status = container_status(&pod);
        let restarts = status["restartCount"].as_i64().unwrap_or(0);
        if seen.last().map(|s| s.0) != Some(restarts) {
            seen.push((restarts, Instant::now()));
        }
        saw_back_off |= status["state"]["waiting"]["reason"] == "CrashLoopBackOff";
        assert!(Instant::now() < deadline, "only {restarts} restarts after 60 s: {status}");
        std::thread::sleep(Duration::from_millis(25));
    }
    let pod = cluster.get("pod", "crasher");
    let status = container_status(&pod);
    assert_eq!(status["lastState"]["terminated"]["exitCode"], 3, "{status}");
    assert_eq!(status["lastState"]["terminated"]["reason"], "Error", "{status}");
    assert!(saw_back_off, "the container was never seen waiting in CrashLoopBackOff");
    let gap = |restarts: i64| {
        let at = |n: i64| seen.iter().find(|s| s.0 == n).map(|s| s.1);
        at(restarts).zip(at(restarts - 1)).map(|(b, a)| b - a)
    };
    if let (Some(early), Some(late)) = (gap(2), gap(4)) {
        assert!(late > early * 2, "back-off did not grow: restart 2 after {early:?}, restart 4 after {late:?}");
    }
    let described = cluster.run_ok(&["describe", "pod", "crasher"]);
    assert!(described.contains("BackOff"), "no BackOff event:\n{described}");

    // --previous shows the last run's output; both runs printed their start line.
    let previous = cluster.run_ok(&["logs", "crasher", "--previous"]);
    assert!(previous.contains("run at"), "{previous}");
    cluster.delete_everything();
    cluster.assert_host_clean();
}

#[test]
fn restart_policies_never_and_on_failure_end_in_the_right_phase() {
    let mut cluster = Cluster::up("policies");
    let pod = |name: &str, policy: &str, code: u8| {
        format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  restartPolicy: {policy}
  containers:
  - name: main
    image: {IMAGE}
    command: ["sh", "-c", "exit {code}"]
"#
        )
    };
    cluster.apply(&(pod("never-fails", "Never", 7) + "---" + &pod("onfailure-succeeds", "OnFailure", 0)));
    let phases = wait_for(Duration::from_secs(60), "both pods to finish", || {
        let a = cluster.get("pod", "never-fails");
        let b = cluster.get("pod", "onfailure-succeeds");
        (a["status"]["phase"] == "Failed" && b["status"]["phase"] == "Succeeded").then_some((a, b))
    });
    let failed = container_status(&phases.0);
    assert_eq!(failed["state"]["terminated"]["exitCode"], 7, "{failed}");
    assert_eq!(failed["restartCount"], 0);
    let succeeded = container_status(&phases.1);
    assert_eq!(succeeded["state"]["terminated"]["exitCode"], 0, "{succeeded}");
    assert_eq!(succeeded["state"]["terminated"]["reason"], "Completed", "{succeeded}");
    cluster.delete_everything();
    cluster.assert_host_clean();
}

#[test]
fn a_failing_liveness_probe_restarts_the_container() {
    let mut cluster = Cluster::up("liveness");
    cluster.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: sickly}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {IMAGE}
    command: ["sh", "-c", "touch /tmp/alive; sleep 2; rm /tmp/alive; exec sleep 3600"]
    livenessProbe:
      exec: {{command: ["cat", "/tmp/alive"]}}
      periodSeconds: 1
      failureThreshold: 2
"#
    ));
    let pod = wait_for(Duration::from_secs(60), "a liveness restart", || {
        let pod = cluster.get("pod", "sickly");
        (container_status(&pod)["restartCount"].as_i64().unwrap_or(0) >= 1).then_some(pod)
    });
    let status = container_status(&pod);
    assert!(!status["lastState"]["terminated"].is_null(), "{status}");
    let described = cluster.run_ok(&["describe", "pod", "sickly"]);
    assert!(described.contains("Unhealthy") && described.contains("Liveness"), "no liveness event:\n{described}");
    assert!(described.contains("Killing"), "no Killing event:\n{described}");
    cluster.delete_everything();
    cluster.assert_host_clean();
}
