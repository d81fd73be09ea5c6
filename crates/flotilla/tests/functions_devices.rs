//! A Function whose handler asks for a device runs only where the device is: two nodes, one
//! with a fake device class (mknod'd character devices), one without. Both replicas of a
//! Function that needs one device each go to the node with the device until it has none free;
//! the replica left over waits with the device named instead of running on the other node; the
//! replica that runs answers an event with the device node in its container.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{repo_root, wait_for, Cluster, ExtraAgent};
use events::nats::NatsBroker;
use events::testing::NatsServer;
use serde_json::Value;

#[test]
fn a_device_requesting_function_runs_only_where_the_device_is() {
    let dev = tempfile::Builder::new().prefix("flotilla-e2e-fndev-").tempdir().unwrap();
    let path = dev.path().join("cam0");
    nix::sys::stat::mknod(&path, nix::sys::stat::SFlag::S_IFCHR, nix::sys::stat::Mode::from_bits_truncate(0o666), nix::sys::stat::makedev(1, 11))
        .unwrap_or_else(|e| panic!("mknod {}: {e}", path.display()));
    let class = format!("camera={}/cam*", dev.path().display());
    let nats = NatsServer::start();
    let mut cluster = Cluster::split_with_agent_flags("fn-devices", &["--device-class", &class]);
    let mut other = ExtraAgent::join(&cluster, "plain", 9);
    let main_node = cluster.node.clone();
    let node = cluster.get("node", &main_node);
    assert_eq!(node["status"]["allocatable"]["flotilla.dev/camera"], "1", "{}", node["status"]["allocatable"]);

    // examples/on-event.yaml with two replicas kept, each needing a camera.
    let example = std::fs::read_to_string(repo_root().join("examples/on-event.yaml")).unwrap();
    let manifest = example
        .replace("nats://127.0.0.1:4222", &nats.url())
        .replace("minReplicas: 0, maxReplicas: 3", "minReplicas: 2, maxReplicas: 2")
        .replace(
            "        image: localhost/flotilla/busybox:1.35\n",
            "        image: localhost/flotilla/busybox:1.35\n        resources: {limits: {flotilla.dev/camera: \"1\"}}\n",
        )
        .replace("          exec httpd", &format!("          ls {} >&2\n          exec httpd", dev.path().display()));
    assert!(manifest.contains("flotilla.dev/camera") && manifest.contains("minReplicas: 2"), "examples/on-event.yaml changed: update this test");
    cluster.apply(&manifest);

    let pods = |cluster: &mut Cluster| -> Vec<Value> { cluster.pods(Some("flotilla.dev/function=echo")) };
    let (running, waiting) = wait_for(Duration::from_secs(60), "one replica ready and one waiting for a camera", || {
        let all = pods(&mut cluster);
        let running: Vec<Value> = all.iter().filter(|p| common::pod_ready(p)).cloned().collect();
        let waiting: Vec<Value> = all
            .iter()
            .filter(|p| p["status"]["conditions"].as_array().is_some_and(|c| c.iter().any(|c| c["type"] == "PodScheduled" && c["status"] == "False")))
            .cloned()
            .collect();
        (running.len() == 1 && waiting.len() == 1).then_some((running, waiting))
    });
    assert_eq!(running[0]["spec"]["nodeName"], main_node.as_str(), "the replica runs on the node with the camera");
    let reason = waiting[0]["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "PodScheduled").unwrap()["message"].clone();
    assert!(reason.as_str().unwrap_or("").contains("flotilla.dev/camera"), "the waiting replica names the device: {reason}");
    assert!(pods(&mut cluster).iter().all(|p| p["spec"]["nodeName"] != other.node.as_str()), "no replica goes to the node without a camera");

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let broker = runtime.block_on(NatsBroker::connect(&nats.url())).unwrap();
    let answer = runtime.block_on(broker.request("demo.cam", Bytes::from_static(b"frame"), Duration::from_secs(30))).expect("an answer");
    assert_eq!(&answer[..], b"ok frame");
    let name = running[0]["metadata"]["name"].as_str().unwrap().to_string();
    let logs = cluster.run_ok(&["logs", &name]);
    assert!(logs.lines().any(|l| l.trim() == "cam0"), "the granted device node is in the container: {logs}");

    cluster.run_ok(&["delete", "function", "echo"]);
    cluster.delete_everything();
    other.assert_host_clean();
    cluster.assert_host_clean();
}
