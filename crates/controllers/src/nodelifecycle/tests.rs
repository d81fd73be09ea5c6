use std::sync::Arc;

use api::k8s_openapi::api::coordination::v1::LeaseSpec;
use api::k8s_openapi::api::core::v1::{Container, NodeStatus, PodSpec, Toleration};
use api::k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use api::ObjectMeta;
use tokio::task::JoinSet;

use super::*;

fn secs(s: i64) -> api::jiff::SignedDuration {
    api::jiff::SignedDuration::from_secs(s)
}

fn pod(name: &str, tolerations: Option<Vec<Toleration>>) -> Pod {
    Pod {
        metadata: ObjectMeta { name: Some(name.into()), namespace: Some("default".into()), ..Default::default() },
        spec: Some(PodSpec {
            node_name: Some("edge-1".into()),
            containers: vec![Container { name: "c".into(), image: Some("busybox".into()), ..Default::default() }],
            tolerations,
            ..Default::default()
        }),
        status: None,
    }
}

fn unreachable_toleration(seconds: Option<i64>) -> Toleration {
    Toleration { key: Some(UNREACHABLE.into()), operator: Some("Exists".into()), effect: Some("NoExecute".into()), toleration_seconds: seconds, value: None }
}

#[test]
fn eviction_time_follows_tolerations() {
    let now = Timestamp::now();
    let taint = Taint { key: UNREACHABLE.into(), effect: "NoExecute".into(), time_added: Some(Time(now - secs(2))), value: None };
    assert_eq!(eviction_time(&pod("p", None), std::slice::from_ref(&taint), now), Some(now));
    assert_eq!(eviction_time(&pod("p", Some(vec![unreachable_toleration(Some(5))])), std::slice::from_ref(&taint), now), Some(now + secs(3)));
    assert_eq!(eviction_time(&pod("p", Some(vec![unreachable_toleration(None)])), std::slice::from_ref(&taint), now), None);
    let schedule_only = Taint { effect: "NoSchedule".into(), ..taint.clone() };
    assert_eq!(eviction_time(&pod("p", None), &[schedule_only], now), None);
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn a_silent_node_is_tainted_its_pods_evicted_and_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(store::EmbeddedStore::open(&dir.path().join("db")).unwrap());
    let registry = Registry::new(store);
    let mut tasks = JoinSet::new();
    let caches = Caches::start(&registry, &mut tasks).await;
    let recorder = Recorder::new(registry.clone(), "node-controller");
    let config = LifecycleConfig::default();
    let t0 = Timestamp::from_second(Timestamp::now().as_second()).unwrap();
    for ns in ["default", "kube-node-lease"] {
        registry.create_as(&api::Namespace { metadata: ObjectMeta { name: Some(ns.into()), ..Default::default() }, ..Default::default() }).await.unwrap();
    }

    let node = registry.create_as(&Node { metadata: ObjectMeta { name: Some("edge-1".into()), ..Default::default() }, ..Default::default() }).await.unwrap();
    let mut ready = node.clone();
    ready.status = Some(NodeStatus::default());
    set_ready(&mut ready, "True", "KubeletReady", "");
    registry.update_status_as(&ready).await.unwrap();
    let lease = Lease {
        metadata: ObjectMeta { name: Some("edge-1".into()), namespace: Some("kube-node-lease".into()), ..Default::default() },
        spec: Some(LeaseSpec { renew_time: Some(MicroTime(t0)), ..Default::default() }),
    };
    let lease = registry.create_as(&lease).await.unwrap();
    for p in [pod("default", None), pod("patient", Some(vec![unreachable_toleration(None)]))] {
        registry.create_as(&p).await.unwrap();
    }
    wait_until("the caches", || {
        caches.pods.list().len() == 2 && caches.leases.list().len() == 1 && caches.nodes.get("edge-1").is_some_and(|n| ready_status(&n) == Some("True"))
    })
    .await;

    // Within the grace period nothing happens.
    pass(&registry, &caches, &recorder, &config, t0 - secs(60), t0 + secs(9)).await.unwrap();
    assert!(!has_unreachable(&registry.get_as::<Node>(None, "edge-1").await.unwrap()));

    // Past it: tainted from the moment the grace ran out, and NotReady.
    pass(&registry, &caches, &recorder, &config, t0 - secs(60), t0 + secs(11)).await.unwrap();
    let lost = registry.get_as::<Node>(None, "edge-1").await.unwrap();
    let taints = lost.spec.as_ref().and_then(|s| s.taints.clone()).unwrap();
    assert_eq!(taints.iter().map(|t| t.effect.as_str()).collect::<Vec<_>>(), ["NoSchedule", "NoExecute"]);
    assert_eq!(taints[1].time_added.as_ref().unwrap().0, t0 + secs(10));
    assert_eq!(ready_status(&lost), Some("Unknown"));
    let terminating = |name: &str| {
        let registry = registry.clone();
        let name = name.to_string();
        async move { registry.get_as::<Pod>(Some("default"), &name).await.map(|p| is_terminating(&p)).unwrap_or(true) }
    };
    wait_until("the tainted node in the cache", || caches.nodes.get("edge-1").is_some_and(|n| has_unreachable(&n))).await;
    // Admission gave the plain pod the default 5 s toleration: it goes 5 s after the taint.
    pass(&registry, &caches, &recorder, &config, t0 - secs(60), t0 + secs(14)).await.unwrap();
    assert!(!terminating("default").await);
    pass(&registry, &caches, &recorder, &config, t0 - secs(60), t0 + secs(15)).await.unwrap();
    assert!(terminating("default").await);
    assert!(!terminating("patient").await, "a pod tolerating the taint without a limit stays");

    // A controller that just started gives every node a full grace period first.
    pass(&registry, &caches, &recorder, &config, t0 + secs(12), t0 + secs(13)).await.unwrap();

    // Heartbeats resume: the taints go and the node is Ready again.
    let mut renewed = lease;
    renewed.spec.as_mut().unwrap().renew_time = Some(MicroTime(t0 + secs(20)));
    registry.update_as(&renewed).await.unwrap();
    wait_until("the renewed lease", || {
        caches.leases.get("kube-node-lease/edge-1").is_some_and(|l| l.spec.as_ref().unwrap().renew_time.as_ref().unwrap().0 == t0 + secs(20))
    })
    .await;
    pass(&registry, &caches, &recorder, &config, t0 - secs(60), t0 + secs(21)).await.unwrap();
    let back = registry.get_as::<Node>(None, "edge-1").await.unwrap();
    assert!(!has_unreachable(&back));
    assert_eq!(ready_status(&back), Some("True"));
}
