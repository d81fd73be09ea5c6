//! `warmPool` through the built binary: a Function with `minReplicas: 0, warmPool: 1` keeps one
//! pod started and frozen (runc says `paused`), which takes no events; the first event claims
//! it (thawed, no new pod started: no cold start counted) and a new frozen pod replaces it in
//! the pool; after the scale-down delay the claimed replica goes and the pool stays. A restart
//! of `up` in between keeps the frozen pod frozen and the pool at one.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{function_image, wait_for, Cluster, FUNCTION_IMAGE};
use events::nats::NatsBroker;
use events::testing::NatsServer;
use serde_json::Value;

fn live(cluster: &mut Cluster) -> Vec<Value> {
    cluster.pods(Some("flotilla.dev/function=pooled")).into_iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).collect()
}

fn warm(pod: &Value) -> bool {
    pod["metadata"]["labels"]["flotilla.dev/warm"] == "true"
}

/// The runc status of the pod's handler container.
fn container_status(cluster: &Cluster, pod: &Value) -> Option<String> {
    let uid = pod["metadata"]["uid"].as_str()?;
    cluster.containers().into_iter().find(|(id, _, _)| id.contains(uid)).map(|(_, _, status)| status)
}

#[test]
fn a_warm_pool_pod_is_frozen_until_an_event_claims_it() {
    let nats = NatsServer::start();
    let mut cluster = Cluster::up_with_images("fn-warm", &[function_image()]);
    let manifest = format!(
        r#"
apiVersion: flotilla.dev/v1alpha1
kind: Function
metadata: {{name: pooled}}
spec:
  port: 8080
  timeout: 5s
  warmPool: 1
  scaling: {{minReplicas: 0, maxReplicas: 2, scaleDownDelay: 2s}}
  triggers:
  - nats: {{url: "{}", subject: "pooled.>"}}
  template:
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{{name: handler, image: {FUNCTION_IMAGE}, command: [/bin/echo-handler, "8080"]}}]
"#,
        nats.url()
    );
    let (ok, _, err) = cluster.try_apply(&manifest.replace("warmPool: 1", "warmPool: 3"));
    assert!(!ok && err.contains("spec.warmPool") && err.contains("maxReplicas"), "a pool larger than maxReplicas is refused: {err}");
    cluster.apply(&manifest);

    let pooled = wait_for(Duration::from_secs(60), "one frozen pool pod", || {
        let pods = live(&mut cluster);
        (pods.len() == 1 && warm(&pods[0]) && container_status(&cluster, &pods[0]).as_deref() == Some("paused")).then(|| pods[0].clone())
    });
    let pooled_name = pooled["metadata"]["name"].as_str().unwrap().to_string();

    // `up` dies and returns: the agent adopts the frozen container as it is, and the dispatcher
    // neither starts another pool pod nor thaws this one.
    cluster.kill_agent();
    cluster.start_processes();
    std::thread::sleep(Duration::from_secs(2));
    let pods = live(&mut cluster);
    assert_eq!(pods.len(), 1, "still one pool pod after the restart: {}", common::summary(&pods));
    assert_eq!(pods[0]["metadata"]["name"], pooled_name.as_str());
    assert_eq!(container_status(&cluster, &pods[0]).as_deref(), Some("paused"), "adopted frozen");

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let broker = runtime.block_on(NatsBroker::connect(&nats.url())).unwrap();
    let started = Instant::now();
    let answer = runtime.block_on(broker.request("pooled.a", Bytes::from_static(b"{}"), Duration::from_secs(30))).expect("an answer");
    eprintln!("first event from the warm pool answered in {:?}", started.elapsed());
    assert!(std::str::from_utf8(&answer).unwrap().parse::<u64>().is_ok(), "the handler's time stamp: {answer:?}");

    let claimed = wait_for(Duration::from_secs(30), "the claimed replica and a new frozen pool pod", || {
        let pods = live(&mut cluster);
        let claimed = pods.iter().find(|p| p["metadata"]["name"] == pooled_name.as_str() && !warm(p))?.clone();
        let fresh = pods.iter().find(|p| warm(p) && p["metadata"]["name"] != pooled_name.as_str())?;
        (pods.len() == 2 && container_status(&cluster, fresh).as_deref() == Some("paused")).then_some(claimed)
    });
    assert_eq!(container_status(&cluster, &claimed).as_deref(), Some("running"), "the claimed pod is thawed");
    let metrics = cluster.metrics();
    for line in
        ["flotilla_function_cold_starts_total{function=\"default/pooled\"} 0", "flotilla_function_warm_pool_claims_total{function=\"default/pooled\"} 1"]
    {
        assert!(metrics.contains(line), "{line} missing: {}", metrics.lines().filter(|l| l.contains("pooled")).collect::<Vec<_>>().join("\n"));
    }

    wait_for(Duration::from_secs(30), "the claimed replica to go, the pool to stay", || {
        let pods = live(&mut cluster);
        (pods.len() == 1 && warm(&pods[0]) && pods[0]["metadata"]["name"] != pooled_name.as_str()).then_some(())
    });
    cluster.run_ok(&["delete", "function", "pooled"]);
    cluster.delete_everything();
    cluster.assert_host_clean();
}
