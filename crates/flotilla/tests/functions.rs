//! Functions through the built binary on a real NATS server (Debian's `nats-server`), with
//! `examples/on-event.yaml`: no replica until the first message, which a replica started for it
//! answers; a poison message ends on the dead-letter subject after its retries without holding
//! back the messages behind it; the counts show in `get functions` and `/metrics`; and after
//! the scale-down delay the Function is back at zero.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{repo_root, wait_for, Cluster};
use events::nats::NatsBroker;
use events::testing::NatsServer;
use events::Broker;
use futures::StreamExt;
use serde_json::Value;

fn function_pods(cluster: &mut Cluster) -> Vec<Value> {
    cluster.pods(Some("flotilla.dev/function=echo")).into_iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).collect()
}

#[test]
fn a_function_starts_from_zero_answers_dead_letters_poison_and_returns_to_zero() {
    let nats = NatsServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let broker = runtime.block_on(NatsBroker::connect(&nats.url())).expect("connect to nats");
    let mut dead = runtime.block_on(broker.subscribe("dead.demo", None)).unwrap();
    runtime.block_on(broker.flush()).unwrap();

    let mut cluster = Cluster::up("functions");
    let example = std::fs::read_to_string(repo_root().join("examples/on-event.yaml")).unwrap().replace("nats://127.0.0.1:4222", &nats.url());
    let bad = example.replace("subject: \"demo.>\"", "subject: \"demo.>.x\"");
    let (ok, _, err) = cluster.try_apply(&bad);
    assert!(!ok && err.contains("spec.triggers[0].nats.subject: Invalid value"), "a bad subject must be refused by name: {err}");
    let looping = example.replace("subject: dead.demo", "subject: demo.dead");
    let (ok, _, err) = cluster.try_apply(&looping);
    assert!(!ok && err.contains("spec.deadLetter.subject") && err.contains("would deliver it back"), "a dead letter the triggers receive loops: {err}");
    assert!(cluster.try_run(&["get", "function", "echo"]).is_err(), "a refused Function must not be stored");
    cluster.apply(&example);
    std::thread::sleep(Duration::from_millis(500));
    assert!(function_pods(&mut cluster).is_empty(), "minReplicas 0: nothing runs before the first event");

    // The first message: a replica is started for it and answers the request.
    let started = Instant::now();
    let answer = runtime.block_on(broker.request("demo.hello", Bytes::from_static(b"hello"), Duration::from_secs(30))).expect("an answer");
    let cold = started.elapsed();
    assert_eq!(&answer[..], b"ok hello");
    eprintln!("cold start, request to answer: {cold:?}");
    let pods = function_pods(&mut cluster);
    assert_eq!(pods.len(), 1, "one replica for one event: {}", common::summary(&pods));
    let pod = pods[0]["metadata"]["name"].as_str().unwrap().to_string();
    let logs = cluster.run_ok(&["logs", &pod]);
    assert!(logs.contains("delivery=1 subject=demo.hello body=hello"), "the handler saw the CloudEvent headers: {logs}");

    // A poison message fails every delivery and is dead-lettered; the ones behind it go through.
    runtime.block_on(async {
        broker.publish("demo.bad", Bytes::from_static(b"poison"), &[("Nats-Msg-Id", "poison-1".to_string())]).await.unwrap();
        for i in 0..5 {
            broker.publish("demo.after", Bytes::from(format!("after-{i}")), &[]).await.unwrap();
        }
        broker.flush().await.unwrap();
    });
    let lettered =
        runtime.block_on(async { tokio::time::timeout(Duration::from_secs(20), dead.next()).await }).expect("a dead letter").expect("the subscription");
    assert_eq!(&lettered.payload[..], b"poison");
    assert_eq!(lettered.id, "poison-1", "the dead letter keeps the event's id");
    let logs = wait_for(Duration::from_secs(10), "the five later messages to be handled", || {
        let logs: String = function_pods(&mut cluster).iter().map(|p| cluster.run_ok(&["logs", p["metadata"]["name"].as_str().unwrap()])).collect();
        (0..5).all(|i| logs.contains(&format!("body=after-{i}"))).then_some(logs)
    });
    let poison_tries = logs.lines().filter(|l| l.contains("body=poison")).count();
    assert_eq!(poison_tries, 3, "one delivery and two retries of the poison message:\n{logs}");
    assert!(logs.contains("delivery=3 subject=demo.bad"), "the delivery count is in the extension header:\n{logs}");

    let table = wait_for(Duration::from_secs(10), "the status to catch up", || {
        let out = cluster.run_ok(&["get", "functions"]);
        let row: Vec<String> = out.lines().nth(1)?.split_whitespace().map(str::to_string).collect();
        // NAME READY REPLICAS BACKLOG IN-FLIGHT RECEIVED ACKED DEAD-LETTERED AGE
        (row.get(5).map(String::as_str) == Some("7") && row.get(6).map(String::as_str) == Some("6") && row.get(7).map(String::as_str) == Some("1"))
            .then_some(out)
    });
    eprintln!("{table}");
    let listing = cluster.run_ok(&["functions"]);
    let header: Vec<&str> = listing.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(&header[..4], ["NAME", "TRIGGERS", "READY", "SCALE"], "{listing}");
    assert!(listing.contains("echo") && listing.contains("nats demo.>") && listing.contains("0-3"), "{listing}");
    let invocations = cluster.run_ok(&["logs", "fn/echo"]);
    assert!(invocations.lines().any(|l| l.contains("event=poison-1") && l.contains("outcome=dead-letter") && l.contains("attempt=3")), "{invocations}");
    assert_eq!(invocations.lines().filter(|l| l.contains("outcome=retry")).count(), 2, "{invocations}");
    assert_eq!(invocations.lines().filter(|l| l.contains("outcome=acked")).count(), 6, "{invocations}");
    let last = cluster.run_ok(&["logs", "fn/echo", "--tail", "1"]);
    assert_eq!(last.lines().count(), 1, "{last}");
    let missing = cluster.try_run(&["logs", "fn/nope"]).unwrap_err();
    assert!(missing.contains("nope") && missing.to_lowercase().contains("not found"), "{missing}");
    let metrics = cluster.metrics();
    for line in [
        "flotilla_function_events_received_total{function=\"default/echo\"} 7",
        "flotilla_function_events_acked_total{function=\"default/echo\"} 6",
        "flotilla_function_events_dead_lettered_total{function=\"default/echo\"} 1",
        "flotilla_function_retries_total{function=\"default/echo\"} 2",
        "flotilla_function_cold_starts_total{function=\"default/echo\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from /metrics");
    }

    // Idle for the scale-down delay (10 s): back to zero.
    wait_for(Duration::from_secs(40), "the function to scale back to zero", || function_pods(&mut cluster).is_empty().then_some(()));
    let function = cluster.get("function", "echo");
    assert_eq!(function["status"]["replicas"], 0, "{}", function["status"]);

    cluster.run_ok(&["delete", "function", "echo"]);
    cluster.delete_everything();
    cluster.assert_host_clean();
    drop(nats);
}
