//! Functions on the at-least-once brokers, through the built binary: JetStream (Debian's
//! `nats-server -js`, `examples/jobs-jetstream.yaml`) and MQTT at QoS 1 and 2 (Debian's
//! `mosquitto`, `examples/jobs-mqtt.yaml`). 10,000 messages are
//! published while function replicas are SIGKILLed at random and the whole `flotilla up`
//! process (agent and dispatcher) is SIGKILLed and started again once; every message is
//! processed at least once, as the handler itself reports each one to a collector the test
//! runs; duplicates are counted and printed; every poison message (the handler always fails
//! it) is on the dead-letter destination, and so is anything else that failed for good.
//! Then a burst of slow events scales a Function to maxReplicas and back down while a trickle
//! keeps replicas busy, and no in-flight event is cut off: each is handled exactly once with
//! no retry.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{containers_in, function_image, wait_for, Cluster, FUNCTION_IMAGE};
use events::jetstream::ConsumerSpec;
use events::mqtt::{MqttBroker, Subscription};
use events::nats::NatsBroker;
use events::testing::{create_stream, MosquittoServer, NatsServer};
use events::{Broker, MessageStream};
use futures::StreamExt;

const MESSAGES: usize = 10_000;
/// Every this many messages, one the handler always fails.
const POISON_EVERY: usize = 500;

/// What the handler reported: one line per request it processed.
#[derive(Clone, Default)]
struct Reports(Arc<Mutex<Vec<Report>>>);

#[derive(Clone, Debug)]
struct Report {
    ce_id: String,
    delivery: u32,
    ok: bool,
    body: String,
}

impl Reports {
    /// Listens on the node bridge's address (the pods' gateway) and keeps every line.
    fn listen(cluster: &Cluster) -> (Reports, String) {
        let gateway = cluster.pod_cidr.replace(".0/24", ".1");
        let listener = wait_for(Duration::from_secs(10), "the bridge address", || TcpListener::bind((gateway.as_str(), 0)).ok());
        let address = format!("{gateway}:{}", listener.local_addr().unwrap().port());
        let reports = Reports::default();
        let sink = reports.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(conn).lines().map_while(Result::ok) {
                        let mut parts = line.splitn(4, ' ');
                        let (id, delivery, outcome, body) = (parts.next(), parts.next(), parts.next(), parts.next());
                        let report = Report {
                            ce_id: id.unwrap_or("").to_string(),
                            delivery: delivery.and_then(|d| d.parse().ok()).unwrap_or(0),
                            ok: outcome == Some("ok"),
                            body: body.unwrap_or("").to_string(),
                        };
                        sink.0.lock().unwrap().push(report);
                    }
                });
            }
        });
        (reports, address)
    }

    fn all(&self) -> Vec<Report> {
        self.0.lock().unwrap().clone()
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

fn body(i: usize) -> String {
    if i % POISON_EVERY == POISON_EVERY - 1 {
        format!("m-{i} poison")
    } else {
        format!("m-{i}")
    }
}

fn id_of(body: &str) -> String {
    body.split(' ').next().unwrap_or("").to_string()
}

/// An example manifest with the test's broker URL, and the handler reporting to `collector`.
fn example(file: &str, url: &str, test_url: &str, collector: &str) -> String {
    let text = std::fs::read_to_string(common::repo_root().join("examples").join(file)).unwrap();
    assert!(text.contains(url) && text.contains(r#"command: [/bin/echo-handler, "8080"]"#), "{file} changed: update this test");
    text.replace(url, test_url).replace(r#"command: [/bin/echo-handler, "8080"]"#, &format!(r#"command: [/bin/echo-handler, "8080", "{collector}"]"#))
}

fn handler(collector: &str) -> String {
    format!(
        r#"
  template:
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: handler
        image: {FUNCTION_IMAGE}
        command: [/bin/echo-handler, "8080", "{collector}"]"#
    )
}

/// SIGKILLs a random running container (a function replica) every 300–700 ms, `kills` times
/// at most, until `stop`.
fn start_killer(agent_dir: PathBuf, stop: Arc<AtomicBool>, kills: usize) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut killed = 0;
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        while !stop.load(Ordering::Relaxed) && killed < kills {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            std::thread::sleep(Duration::from_millis(300 + seed % 400));
            let running: Vec<i64> =
                containers_in(&agent_dir).into_iter().filter(|(_, pid, status)| status == "running" && *pid > 0).map(|(_, pid, _)| pid).collect();
            if let Some(pid) = running.get(seed as usize % running.len().max(1)) {
                if std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().is_ok_and(|s| s.success()) {
                    killed += 1;
                }
            }
        }
        killed
    })
}

/// Publishes the messages (from a task), kills replicas and `up` once while they are handled,
/// and waits until every message was processed or dead-lettered. Returns the reports and the
/// dead letters' bodies.
fn run_through(
    cluster: &mut Cluster,
    reports: &Reports,
    runtime: &tokio::runtime::Runtime,
    publish: impl std::future::Future<Output = ()> + Send + 'static,
    dead: Arc<Mutex<Vec<String>>>,
) {
    let published = runtime.spawn(publish);
    let stop = Arc::new(AtomicBool::new(false));
    let killer = start_killer(cluster.agent_dir(), stop.clone(), 12);

    // Once a third is through, SIGKILL `up` (agent, API server and dispatcher) and start it again.
    wait_for(Duration::from_secs(180), "a third of the messages to be handled", || (reports.len() > MESSAGES / 3).then_some(()));
    cluster.kill_agent();
    let down_at = reports.len();
    std::thread::sleep(Duration::from_millis(500));
    cluster.start_processes();
    eprintln!("restarted `up` after {down_at} reports");

    let poison: BTreeSet<String> = (0..MESSAGES).filter(|i| body(*i).contains("poison")).map(|i| format!("m-{i}")).collect();
    let mut printed = Instant::now();
    let (ok, lettered) = wait_for(Duration::from_secs(300), "every message to be processed or dead-lettered", || {
        let ok: BTreeSet<String> = reports.all().iter().filter(|r| r.ok).map(|r| id_of(&r.body)).collect();
        let lettered: BTreeSet<String> = dead.lock().unwrap().iter().map(|b| id_of(b)).collect();
        let done = (0..MESSAGES).all(|i| {
            let id = format!("m-{i}");
            ok.contains(&id) || lettered.contains(&id)
        });
        if printed.elapsed() > Duration::from_secs(20) {
            printed = Instant::now();
            eprintln!("{} ok, {} dead-lettered of {MESSAGES}", ok.len(), lettered.len());
        }
        (done && poison.is_subset(&lettered)).then_some((ok, lettered))
    });
    stop.store(true, Ordering::Relaxed);
    let kills = killer.join().unwrap();
    runtime.block_on(published).unwrap();

    let all = reports.all();
    let processed = all.iter().filter(|r| r.ok).count();
    let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
    for r in all.iter().filter(|r| r.ok) {
        *per_id.entry(id_of(&r.body)).or_default() += 1;
    }
    let duplicated = per_id.values().filter(|n| **n > 1).count();
    let good_lettered: Vec<&String> = lettered.difference(&poison).collect();
    eprintln!(
        "{MESSAGES} published; {} processed ok ({} distinct, {duplicated} processed more than once, {} extra deliveries); {} dead-lettered ({} poison, other: {good_lettered:?}); {kills} replicas SIGKILLed, `up` SIGKILLed once",
        processed,
        ok.len(),
        processed - ok.len(),
        lettered.len(),
        poison.len(),
    );
    assert!(kills >= 3, "the test must really kill replicas ({kills})");
    assert!(ok.is_disjoint(&poison), "the handler never acks poison");
    // A poison message is dead-lettered after 4 deliveries (1 + 3 retries); a delivery cut off
    // by a kill counts as one the handler may not have seen.
    let short: Vec<(&String, usize)> =
        poison.iter().map(|p| (p, all.iter().filter(|r| id_of(&r.body) == *p).count())).filter(|(_, tries)| *tries < 4).collect();
    assert!(short.iter().all(|(_, tries)| *tries >= 1), "every poison message reached the handler: {short:?}");
    assert!(short.len() <= kills + 1, "only kills cut a poison message's deliveries short: {short:?}");
    assert!(all.iter().all(|r| r.delivery >= 1), "the delivery count reaches the handler");
}

/// Keeps the bodies of the dead letters `letters` brings in `sink`, settling each.
fn collect(runtime: &tokio::runtime::Runtime, mut letters: MessageStream, sink: Arc<Mutex<Vec<String>>>) {
    runtime.spawn(async move {
        while let Some(m) = letters.next().await {
            sink.lock().unwrap().push(String::from_utf8_lossy(&m.payload).into_owned());
            if let Some(ack) = m.ack {
                let _ = ack.0.settle(events::Settle::Done).await;
            }
        }
    });
}

fn settle_and_clean(mut cluster: Cluster, name: &str) {
    cluster.run_ok(&["delete", "function", name]);
    cluster.delete_everything();
    cluster.assert_host_clean();
}

#[test]
fn jetstream_loses_nothing_when_replicas_and_the_node_die() {
    let nats = NatsServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(create_stream(&nats.url(), "JOBS", &["jobs.>"]));
    runtime.block_on(create_stream(&nats.url(), "DEAD", &["dead.>"]));
    let mut cluster = Cluster::up_with_images("fn-jetstream", &[function_image()]);
    let (reports, collector) = Reports::listen(&cluster);
    let manifest = example("jobs-jetstream.yaml", "nats://127.0.0.1:4222", &nats.url(), &collector);
    let (ok, _, err) = cluster.try_apply(&manifest.replace("ackWait: 10s", "ackWait: 2s"));
    assert!(!ok && err.contains("spec.triggers[0].jetstream.ackWait") && err.contains("longer than spec.timeout"), "{err}");
    cluster.apply(&manifest);
    wait_for(Duration::from_secs(20), "the dispatcher to consume", || (!cluster.get("function", "jobs")["status"].is_null()).then_some(()));

    // The dead letters, read back from their stream.
    let dead = Arc::new(Mutex::new(Vec::new()));
    let broker = runtime.block_on(NatsBroker::connect(&nats.url())).unwrap();
    let spec = ConsumerSpec {
        stream: "DEAD".into(),
        durable: "check".into(),
        filter_subject: String::new(),
        ack_wait: Duration::from_secs(30),
        max_deliver: -1,
        backoff: Vec::new(),
        max_ack_pending: 10_000,
    };
    let letters: MessageStream = runtime.block_on(broker.consume(&spec)).unwrap();
    collect(&runtime, letters, dead.clone());

    let publisher = broker.clone();
    let publish = async move {
        for i in 0..MESSAGES {
            publisher.publish_durable(&format!("jobs.{}", i % 7), Bytes::from(body(i)), &[("Nats-Msg-Id", format!("m-{i}"))]).await.expect("stored in JOBS");
        }
    };
    run_through(&mut cluster, &reports, &runtime, publish, dead);
    assert!(reports.all().iter().all(|r| r.ce_id == id_of(&r.body)), "ce-id is the publisher's Nats-Msg-Id");
    settle_and_clean(cluster, "jobs");
}

fn mqtt_loses_nothing(qos: u8) {
    let mosquitto = MosquittoServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut cluster = Cluster::up_with_images(&format!("fn-mqtt{qos}"), &[function_image()]);
    let (reports, collector) = Reports::listen(&cluster);
    let manifest = example("jobs-mqtt.yaml", "mqtt://127.0.0.1:1883", &mosquitto.url(), &collector).replace("qos: 1", &format!("qos: {qos}"));
    let (ok, _, err) = cluster.try_apply(&manifest.replace("topic: dead/jobs", "topic: jobs/dead"));
    assert!(!ok && err.contains("spec.deadLetter.topic") && err.contains("would deliver it back"), "{err}");
    cluster.apply(&manifest);
    wait_for(Duration::from_secs(20), "the dispatcher to subscribe", || (!cluster.get("function", "jobs")["status"].is_null()).then_some(()));

    let dead = Arc::new(Mutex::new(Vec::new()));
    let check = Subscription { topic: "dead/jobs".into(), qos: 1, client_id: "dead-check".into() };
    let (_checker, letters) = runtime.block_on(MqttBroker::subscribe(&mosquitto.url(), &check)).unwrap();
    collect(&runtime, letters, dead.clone());

    let publisher = runtime.block_on(MqttBroker::connect(&mosquitto.url(), "publisher")).unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let publish = async move {
        for i in 0..MESSAGES {
            publisher.publish_durable(&format!("jobs/{}", i % 7), Bytes::from(body(i)), &[]).await.expect("the broker has it");
            counter.fetch_add(1, Ordering::Relaxed);
        }
    };
    run_through(&mut cluster, &reports, &runtime, publish, dead);
    assert_eq!(sent.load(Ordering::Relaxed), MESSAGES);
    settle_and_clean(cluster, "jobs");
    drop(mosquitto);
}

#[test]
fn mqtt_qos1_loses_nothing_when_replicas_and_the_node_die() {
    mqtt_loses_nothing(1);
}

#[test]
fn mqtt_qos2_loses_nothing_when_replicas_and_the_node_die() {
    mqtt_loses_nothing(2);
}

#[test]
fn a_burst_of_slow_events_scales_to_max_and_back_without_cutting_work_off() {
    let nats = NatsServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut cluster = Cluster::up_with_images("fn-burst", &[function_image()]);
    let (reports, collector) = Reports::listen(&cluster);
    let manifest = format!(
        r#"
apiVersion: flotilla.dev/v1alpha1
kind: Function
metadata: {{name: slow}}
spec:
  port: 8080
  concurrency: 2
  timeout: 5s
  scaling: {{minReplicas: 0, maxReplicas: 3, targetInFlight: 2, scaleDownDelay: 2s}}
  triggers:
  - nats: {{url: "{}", subject: "slow.>"}}{}
"#,
        nats.url(),
        handler(&collector)
    );
    cluster.apply(&manifest);
    wait_for(Duration::from_secs(20), "the dispatcher to subscribe", || (!cluster.get("function", "slow")["status"].is_null()).then_some(()));
    let broker = runtime.block_on(NatsBroker::connect(&nats.url())).unwrap();
    let burst = 30;
    runtime.block_on(async {
        for i in 0..burst {
            broker.publish("slow.burst", Bytes::from(format!("sleep 400 b-{i}")), &[]).await.unwrap();
        }
        broker.flush().await.unwrap();
    });
    let pods =
        |cluster: &mut Cluster| cluster.pods(Some("flotilla.dev/function=slow")).into_iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).count();
    let mut most = 0;
    wait_for(Duration::from_secs(60), "the burst to be handled", || {
        most = most.max(pods(&mut cluster));
        (reports.len() >= burst).then_some(())
    });
    assert_eq!(most, 3, "a backlog of 30 at 2 per replica asks for maxReplicas");

    // A trickle of slow events (one in flight at a time) while the load falls: replicas are
    // drained and removed down to one, each event still handled once.
    let trickle = 12;
    let publisher = broker.clone();
    let trickling = runtime.spawn(async move {
        for i in 0..trickle {
            publisher.publish("slow.trickle", Bytes::from(format!("sleep 400 t-{i}")), &[]).await.unwrap();
            publisher.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(450)).await;
        }
    });
    let mut fewest = most;
    wait_for(Duration::from_secs(30), "the trickle to be handled", || {
        if reports.len() < burst + trickle {
            fewest = fewest.min(pods(&mut cluster));
        }
        (reports.len() >= burst + trickle).then_some(())
    });
    runtime.block_on(trickling).unwrap();
    assert_eq!(fewest, 1, "scaled in to one replica while events were still coming");
    wait_for(Duration::from_secs(30), "scale to zero", || (pods(&mut cluster) == 0).then_some(()));
    let all = reports.all();
    let bodies: Vec<String> = all.iter().map(|r| r.body.clone()).collect();
    let distinct: BTreeSet<&String> = bodies.iter().collect();
    assert_eq!((all.len(), distinct.len()), (burst + trickle, burst + trickle), "each event handled exactly once: {bodies:?}");
    assert!(all.iter().all(|r| r.ok && r.delivery == 1), "no event was cut off and retried: {all:?}");
    let metrics = cluster.metrics();
    assert!(
        metrics.contains("flotilla_function_retries_total{function=\"default/slow\"} 0"),
        "{}",
        metrics.lines().filter(|l| l.contains("slow")).collect::<Vec<_>>().join("\n")
    );
    settle_and_clean(cluster, "slow");
}
