//! Init containers and sidecars through the built binary: init containers run in order, each to
//! completion, before the containers; a sidecar starts in its turn and keeps running beside
//! them; a failing init container holds the pod back (or fails it under `Never`); and an agent
//! restart runs no init container again.

mod common;

use std::time::Duration;

use serde_json::Value;

use common::{http_get, wait_for, Cluster, Mode, IMAGE};

/// Two init containers, a sidecar serving on :9000 and a container that refuses to start
/// unless the sidecar already answers.
fn ordered_pod() -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: ordered, labels: {{app: ordered}}}}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: first
    image: {IMAGE}
    command: ["sh", "-c", "echo first ran; sleep 2"]
  - name: second
    image: {IMAGE}
    command: ["sh", "-c", "echo second ran"]
  - name: helper
    image: {IMAGE}
    restartPolicy: Always
    command: ["sh", "-c", "mkdir -p /www; echo from-sidecar > /www/index.html; exec httpd -f -p 9000 -h /www"]
  containers:
  - name: main
    image: {IMAGE}
    command: ["sh", "-c", "wget -qO- http://127.0.0.1:9000/ || exit 1; echo main saw the sidecar; mkdir -p /www; echo main > /www/index.html; exec httpd -f -p 8080 -h /www"]
"#
    )
}

fn init_status<'a>(pod: &'a Value, name: &str) -> &'a Value {
    let statuses = pod["status"]["initContainerStatuses"].as_array().expect("initContainerStatuses");
    statuses.iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no init status for {name}: {statuses:?}"))
}

fn time(status: &Value, pointer: &str) -> String {
    status.pointer(pointer).and_then(Value::as_str).unwrap_or_else(|| panic!("{pointer} missing in {status}")).to_string()
}

fn table_status(cluster: &Cluster, pod: &str) -> String {
    let out = cluster.run_ok(&["get", "pods", pod]);
    out.lines().nth(1).unwrap_or_default().split_whitespace().nth(2).unwrap_or_default().to_string()
}

#[test]
fn init_containers_run_in_order_then_sidecar_and_containers_and_survive_an_agent_restart() {
    let mut cluster = Cluster::start("initorder", Mode::Split);
    cluster.apply(&ordered_pod());
    // While `first` sleeps the pod is in its init phase.
    let early = wait_for(Duration::from_secs(30), "the pod to enter its init phase", || {
        let status = table_status(&cluster, "ordered");
        status.starts_with("Init:").then_some(status)
    });
    assert!(early == "Init:0/3" || early == "Init:1/3", "STATUS while initializing: {early}");
    let pod = cluster.get("pod", "ordered");
    assert_eq!(pod["status"]["phase"], "Pending", "{}", pod["status"]);

    let pods = cluster.wait_ready("app=ordered", 1, Duration::from_secs(60));
    let pod = &pods[0];
    let (first, second, helper) = (init_status(pod, "first"), init_status(pod, "second"), init_status(pod, "helper"));
    for done in [first, second] {
        assert_eq!(done["state"]["terminated"]["exitCode"], 0, "{done}");
        assert_eq!(done["state"]["terminated"]["reason"], "Completed", "{done}");
    }
    assert!(helper["state"]["running"].is_object() && helper["ready"] == true, "the sidecar must run beside main: {helper}");
    // Each started after the one before it had finished (RFC 3339 seconds compare as text).
    let main = &pod["status"]["containerStatuses"][0];
    assert!(time(first, "/state/terminated/finishedAt") <= time(second, "/state/terminated/startedAt"));
    assert!(time(second, "/state/terminated/finishedAt") <= time(helper, "/state/running/startedAt"));
    assert!(time(helper, "/state/running/startedAt") <= time(main, "/state/running/startedAt"));
    assert_eq!(main["restartCount"], 0, "main must have found the sidecar serving on its first start: {main}");
    let ready = cluster.run_ok(&["get", "pods", "ordered"]);
    assert!(ready.contains("2/2") && ready.contains("Running"), "the sidecar counts as a container:\n{ready}");
    assert_eq!(cluster.run_ok(&["logs", "ordered", "-c", "first"]).trim(), "first ran");
    // main's first line is what it fetched from the sidecar before it would go on.
    assert_eq!(cluster.run_ok(&["logs", "ordered", "-c", "main"]).trim(), "from-sidecar\nmain saw the sidecar");
    let ip = pod["status"]["podIP"].as_str().expect("pod IP");
    assert_eq!(http_get(ip, 9000, "/").expect("sidecar").trim(), "from-sidecar");

    // A restarted agent adopts main and the sidecar and runs no init container again.
    let containers_before = cluster.containers();
    cluster.kill_agent();
    cluster.start_agent();
    std::thread::sleep(Duration::from_secs(3));
    let pod = &cluster.wait_ready("app=ordered", 1, Duration::from_secs(30))[0];
    assert_eq!(cluster.containers(), containers_before, "the restarted agent started or replaced containers");
    for name in ["first", "second", "helper"] {
        let status = init_status(pod, name);
        assert_eq!(status["restartCount"], 0, "{name} ran again after the agent restart: {status}");
    }
    assert_eq!(init_status(pod, "first")["state"]["terminated"]["reason"], "Completed");
    assert_eq!(cluster.run_ok(&["logs", "ordered", "-c", "first"]).trim(), "first ran", "first ran twice");

    cluster.delete_everything();
    cluster.assert_host_clean();
}

#[test]
fn a_failing_init_container_holds_the_pod_back_or_fails_it() {
    let mut cluster = Cluster::up("initfail");
    let pod = |name: &str, policy: &str| {
        format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  restartPolicy: {policy}
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: check
    image: {IMAGE}
    command: ["sh", "-c", "echo dependency missing; exit 3"]
  containers:
  - name: main
    image: {IMAGE}
    command: ["sleep", "3600"]
"#
        )
    };
    cluster.apply(&pod("never", "Never"));
    cluster.apply(&pod("always", "Always"));

    let failed = wait_for(Duration::from_secs(60), "the Never pod to fail", || {
        let pod = cluster.get("pod", "never");
        (pod["status"]["phase"] == "Failed").then_some(pod)
    });
    let check = init_status(&failed, "check");
    assert_eq!(check["state"]["terminated"]["exitCode"], 3, "{check}");
    assert_eq!(check["restartCount"], 0, "restartPolicy Never must not rerun it: {check}");
    let main = &failed["status"]["containerStatuses"][0];
    assert_eq!(main["state"]["waiting"]["reason"], "PodInitializing", "main must never start: {main}");
    assert_eq!(table_status(&cluster, "never"), "Init:Error");

    let backing_off = wait_for(Duration::from_secs(60), "the Always pod to back off its init container", || {
        let status = table_status(&cluster, "always");
        let pod = cluster.get("pod", "always");
        (status == "Init:CrashLoopBackOff" && init_status(&pod, "check")["restartCount"].as_i64() >= Some(2)).then_some(pod)
    });
    assert_eq!(backing_off["status"]["phase"], "Pending");
    let initialized = backing_off["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Initialized").cloned().unwrap();
    assert_eq!(initialized["status"], "False", "{initialized}");
    assert!(initialized["message"].as_str().unwrap_or("").contains("check"), "{initialized}");
    assert!(
        cluster.containers().iter().all(|(id, _, status)| !id.ends_with("-main") || status != "running"),
        "main ran before its init container succeeded: {:?}",
        cluster.containers()
    );
    let previous = cluster.run_ok(&["logs", "always", "-c", "check", "--previous"]);
    assert_eq!(previous.trim(), "dependency missing");

    cluster.delete_everything();
    cluster.assert_host_clean();
}
