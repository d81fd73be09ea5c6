//! Restart safety: an agent killed with SIGKILL adopts its containers (same PIDs, no restarts),
//! and `up` killed and started again keeps every object.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use common::{http_get, repo_root, Cluster, Mode};

fn pids(cluster: &Cluster) -> BTreeMap<String, i64> {
    cluster.containers().into_iter().filter(|(_, _, status)| status == "running").map(|(id, pid, _)| (id, pid)).collect()
}

fn alive(pid: i64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn restarts(pods: &[Value]) -> i64 {
    pods.iter().map(|p| p["status"]["containerStatuses"][0]["restartCount"].as_i64().unwrap_or(0)).sum()
}

#[test]
fn an_agent_killed_with_sigkill_adopts_every_container() {
    let mut cluster = Cluster::start("agentkill", Mode::Split);
    let web = repo_root().join("examples/web.yaml");
    cluster.run_ok(&["apply", "-f", web.to_str().unwrap()]);
    let pods = cluster.wait_ready("app=web", 3, Duration::from_secs(60));
    let before = pids(&cluster);
    assert_eq!(before.len(), 3, "{before:?}");

    cluster.kill_agent();
    // With the agent gone the containers go on serving.
    for pid in before.values() {
        assert!(alive(*pid), "container process {pid} died with the agent");
    }
    for pod in &pods {
        http_get(pod["status"]["podIP"].as_str().unwrap(), 8080, "/").expect("a pod stopped serving while the agent was down");
    }

    cluster.start_agent();
    // The restarted agent reports the pods ready again without touching their containers.
    std::thread::sleep(Duration::from_secs(3));
    let after_pods = cluster.wait_ready("app=web", 3, Duration::from_secs(30));
    assert_eq!(pids(&cluster), before, "the agent restarted or replaced containers");
    assert_eq!(restarts(&after_pods), 0);
    let ips = |ps: &[Value]| ps.iter().map(|p| (p["metadata"]["name"].to_string(), p["status"]["podIP"].to_string())).collect::<BTreeMap<_, _>>();
    assert_eq!(ips(&pods), ips(&after_pods), "pods changed name or IP");
    for pod in &after_pods {
        http_get(pod["status"]["podIP"].as_str().unwrap(), 8080, "/").expect("a pod does not serve after adoption");
    }

    // The adopted containers are still managed: deleting cleans up as usual.
    cluster.run_ok(&["delete", "-f", web.to_str().unwrap()]);
    common::wait_for(Duration::from_secs(30), "the pods to be gone", || cluster.pods(None).is_empty().then_some(()));
    cluster.assert_host_clean();
}

#[test]
fn up_killed_and_restarted_keeps_every_object_and_container() {
    let mut cluster = Cluster::up("upkill");
    let web = repo_root().join("examples/web.yaml");
    cluster.run_ok(&["apply", "-f", web.to_str().unwrap()]);
    cluster.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: kept}\n");
    cluster.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: lone, namespace: kept, labels: {{tier: x}}}}\nspec:\n  containers:\n  - {{name: main, image: {}, command: [sleep, '3600']}}\n",
        common::IMAGE
    ));
    cluster.wait_ready("app=web", 3, Duration::from_secs(60));
    cluster.wait_ready("tier=x", 1, Duration::from_secs(60));
    let snapshot = |c: &Cluster| {
        let mut objects = BTreeMap::new();
        for kind in ["namespaces", "deployments", "pods", "nodes"] {
            let list: Value = serde_json::from_str(&c.run_ok(&["get", kind, "-A", "-o", "json"])).unwrap();
            for item in list["items"].as_array().unwrap() {
                let key = format!("{kind}/{}/{}", item["metadata"]["namespace"].as_str().unwrap_or(""), item["metadata"]["name"].as_str().unwrap());
                objects.insert(key, (item["metadata"]["uid"].clone(), item["metadata"]["creationTimestamp"].clone(), item["spec"].clone()));
            }
        }
        objects
    };
    let before = snapshot(&cluster);
    let before_pids = pids(&cluster);
    assert_eq!(before_pids.len(), 4);

    cluster.kill_all();
    cluster.start_processes();
    std::thread::sleep(Duration::from_secs(2));
    cluster.wait_ready("app=web", 3, Duration::from_secs(30));
    let after = snapshot(&cluster);
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>(), "objects appeared or disappeared");
    for (key, (uid, created, spec)) in &before {
        let (uid2, created2, spec2) = &after[key];
        assert_eq!((uid, created), (uid2, created2), "{key} was recreated");
        if !key.starts_with("nodes/") {
            assert_eq!(spec, spec2, "{key} changed");
        }
    }
    assert_eq!(pids(&cluster), before_pids, "containers were restarted");
    cluster.delete_everything();
    cluster.assert_host_clean();
}
