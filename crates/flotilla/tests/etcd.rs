//! `flotilla up --etcd-endpoints` through the built binary, on a real etcd: the quickstart runs,
//! every object lives in etcd (none in an embedded store), and a restarted `up` finds them all.

mod common;

use std::time::Duration;

use common::{http_get, repo_root, wait_for, Cluster, Mode};
use store::testing::EtcdServer;
use store::{EtcdStore, Store};

fn keys_in_etcd(endpoints: &[String], prefix: &str) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let store = EtcdStore::connect(endpoints, "").await.expect("connect to etcd");
        store.list(prefix).await.expect("list").0.into_iter().map(|kv| kv.key).collect()
    })
}

#[test]
fn up_on_etcd_runs_the_quickstart_and_keeps_its_objects_there() {
    let etcd = EtcdServer::start();
    let endpoints = etcd.endpoints();
    let mut cluster = Cluster::start_with("onetcd", Mode::Up, &["--etcd-endpoints", &endpoints.join(",")]);
    let web = repo_root().join("examples/web.yaml");
    cluster.run_ok(&["apply", "-f", web.to_str().unwrap()]);
    let pods = cluster.wait_ready("app=web", 3, Duration::from_secs(60));
    for pod in &pods {
        http_get(pod["status"]["podIP"].as_str().unwrap(), 8080, "/").expect("a pod does not serve");
    }
    let pod_keys = keys_in_etcd(&endpoints, "/flotilla/registry/pods/");
    assert_eq!(pod_keys.len(), 3, "the pods are stored in etcd: {pod_keys:?}");
    assert_eq!(keys_in_etcd(&endpoints, "/flotilla/registry/deployments/").len(), 1);
    assert!(!cluster.data_dir().join("store.redb").exists(), "an embedded store was opened beside etcd");

    let uids = |pods: &[serde_json::Value]| pods.iter().map(|p| p["metadata"]["uid"].as_str().unwrap().to_string()).collect::<std::collections::BTreeSet<_>>();
    cluster.kill_all();
    cluster.start_processes();
    let after = cluster.wait_ready("app=web", 3, Duration::from_secs(60));
    assert_eq!(uids(&after), uids(&pods), "the restarted up lost or replaced pods");

    cluster.run_ok(&["delete", "-f", web.to_str().unwrap()]);
    wait_for(Duration::from_secs(30), "the pods to be gone", || cluster.pods(None).is_empty().then_some(()));
    assert!(keys_in_etcd(&endpoints, "/flotilla/registry/pods/").is_empty());
    cluster.assert_host_clean();
}
