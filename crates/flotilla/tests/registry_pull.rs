//! Images from a real OCI registry (Debian's docker-registry) through the built binary:
//! `flotilla image pull` and `image ls`, a pull of a missing tag refused with the reason, and
//! a node pulling a pod's image itself (`imagePullPolicy: Always`).

mod common;

use std::time::Duration;

use common::{wait_for, Cluster};
use image::testing::{busybox_layout, Registry};

#[test]
fn image_pull_fetches_from_a_registry_and_nodes_pull_what_pods_name() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let manifest = busybox_layout(&layout, "1");
    let pulled_by_cli = registry.push(&layout, "1", "tools/busybox", "cli");
    let pulled_by_node = registry.push(&layout, "1", "tools/busybox", "node");
    let mut cluster = Cluster::up("pull");
    let agent_dir = cluster.agent_dir();
    let data = agent_dir.to_str().unwrap();

    let out = cluster.run_ok(&["image", "pull", "--data-dir", data, &pulled_by_cli]);
    assert!(out.contains(&pulled_by_cli) && out.contains(manifest.digest.as_str()), "pull names the image and its digest: {out}");
    let listed = cluster.run_ok(&["image", "ls", "--data-dir", data]);
    let row = listed.lines().find(|l| l.starts_with(&pulled_by_cli)).unwrap_or_else(|| panic!("{pulled_by_cli} missing from:\n{listed}"));
    assert!(row.contains(&manifest.digest.as_str()[..19]), "{row}");

    let missing = format!("{}/tools/busybox:absent", registry.addr);
    let err = cluster.try_run(&["image", "pull", "--data-dir", data, &missing]).expect_err("a missing tag must fail");
    assert!(err.contains("404") && err.contains("tools/busybox"), "the error says what was not found: {err}");

    let pod = |name: &str, image: &str, policy: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: pulled}}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {image}\n    imagePullPolicy: {policy}\n    command: [sleep, \"3600\"]\n"
        )
    };
    cluster.apply(&pod("present", &pulled_by_cli, "IfNotPresent"));
    cluster.apply(&pod("fetched", &pulled_by_node, "Always"));
    let pods = cluster.wait_ready("app=pulled", 2, Duration::from_secs(60));
    for p in &pods {
        assert_eq!(p["status"]["containerStatuses"][0]["imageID"], manifest.digest.as_str(), "{}", p["status"]);
    }
    let events = |name: &str| {
        let name = name.to_string();
        wait_for(Duration::from_secs(10), "the Pulled event", || {
            let out = cluster.run_ok(&["describe", "pod", &name]);
            out.contains("Pulled").then_some(out)
        })
    };
    assert!(events("present").contains("already present on machine"));
    assert!(events("fetched").contains(&format!("Successfully pulled image \"{pulled_by_node}\"")));

    cluster.delete_everything();
    cluster.assert_host_clean();
}
