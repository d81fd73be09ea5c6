//! Devices through the built binary: `up --device-class` advertises fake device nodes (made
//! with mknod) as `flotilla.dev/<class>`, a pod asking for one gets exactly one of them in its
//! container, a pod asking for more than is free waits with the reason, and freed devices go to
//! the next pod.

mod common;

use std::time::Duration;

use common::{wait_for, Cluster, IMAGE};

/// Two character devices: clones of /dev/kmsg (1:11) and /dev/fuse (10:229).
const NODES: [(&str, u64, u64); 2] = [("fake0", 1, 11), ("fake1", 10, 229)];

#[test]
fn pods_get_exactly_the_devices_they_ask_for_and_wait_when_none_are_free() {
    let dev = tempfile::Builder::new().prefix("flotilla-e2e-dev-").tempdir().unwrap();
    for (name, major, minor) in NODES {
        let path = dev.path().join(name);
        nix::sys::stat::mknod(&path, nix::sys::stat::SFlag::S_IFCHR, nix::sys::stat::Mode::from_bits_truncate(0o666), nix::sys::stat::makedev(major, minor))
            .unwrap_or_else(|e| panic!("mknod {}: {e}", path.display()));
    }
    let class = format!("fake={}/fake*", dev.path().display());
    let mut cluster = Cluster::start_with("devices", common::Mode::Up, &["--device-class", &class, "--device-rescan-ms", "200"]);
    let node = cluster.get("node", &cluster.node.clone());
    assert_eq!(node["status"]["allocatable"]["flotilla.dev/fake"], "2", "{}", node["status"]["allocatable"]);

    let dir = dev.path().display().to_string();
    let pod = |name: &str, count: u32| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: {name}}}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {IMAGE}\n    command: [sh, -c, 'ls {dir}; exec sleep 3600']\n    resources: {{limits: {{flotilla.dev/fake: \"{count}\"}}}}\n"
        )
    };
    let listing = |cluster: &Cluster, name: &str| {
        wait_for(Duration::from_secs(10), "the container's listing", || {
            let out = cluster.run_ok(&["logs", name]);
            (!out.trim().is_empty()).then_some(out.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        })
    };

    cluster.apply(&pod("one", 1));
    cluster.wait_ready("app=one", 1, Duration::from_secs(60));
    let seen = listing(&cluster, "one");
    assert_eq!(seen.len(), 1, "exactly one device node in the container: {seen:?}");
    assert!(NODES.iter().any(|(n, _, _)| *n == seen[0]), "{seen:?}");

    cluster.apply(&pod("two", 2));
    let waiting = wait_for(Duration::from_secs(30), "the second pod to be unschedulable", || {
        let pod = cluster.get("pod", "two");
        let condition = pod["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "PodScheduled" && c["status"] == "False")?.clone();
        Some(condition)
    });
    let message = waiting["message"].as_str().unwrap_or("");
    assert!(message.contains("flotilla.dev/fake"), "the reason names the device class: {message}");

    cluster.run_ok(&["delete", "pod", "one"]);
    cluster.wait_ready("app=two", 1, Duration::from_secs(60));
    let mut seen = listing(&cluster, "two");
    seen.sort();
    assert_eq!(seen, ["fake0", "fake1"], "both devices once they are free");

    cluster.delete_everything();
    cluster.assert_host_clean();
}
