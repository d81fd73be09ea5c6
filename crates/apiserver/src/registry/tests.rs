use std::sync::Arc;

use api::{Namespace, Pod};
use futures::StreamExt;
use serde_json::json;

use super::*;

async fn registry() -> (Registry, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = store::embedded::EmbeddedStore::open(&dir.path().join("store.redb")).unwrap();
    let registry = Registry::new(Arc::new(store));
    let ns = ResourceType::of::<Namespace>();
    registry.create(ns, None, json!({"metadata": {"name": "default"}})).await.unwrap();
    (registry, dir)
}

fn pod(name: &str, app: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": app}},
           "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}})
}

fn pods() -> &'static ResourceType {
    ResourceType::of::<Pod>()
}

#[tokio::test]
async fn create_sets_identity_and_defaults() {
    let (r, _dir) = registry().await;
    let created = r.create(pods(), Some("default"), pod("a", "web")).await.unwrap();
    assert!(created["metadata"]["uid"].as_str().is_some_and(|u| u.len() == 36));
    assert_eq!(created["metadata"]["generation"], 1);
    assert_eq!(created["metadata"]["namespace"], "default");
    assert_eq!(created["spec"]["restartPolicy"], "Always");
    assert_eq!(created["status"]["phase"], "Pending");
    let got = r.get(pods(), Some("default"), "a").await.unwrap();
    assert_eq!(got, created);
    let again = r.create(pods(), Some("default"), pod("a", "web")).await.unwrap_err();
    assert!(matches!(again, ApiError::AlreadyExists { .. }));
}

#[tokio::test]
async fn bad_input_changes_nothing() {
    let (r, _dir) = registry().await;
    let rev = r.store().revision().await.unwrap();
    let mut bad = pod("b", "web");
    bad["spec"]["containers"][0]["image"] = json!("");
    assert!(matches!(r.create(pods(), Some("default"), bad).await, Err(ApiError::Invalid { .. })));
    let mut unknown = pod("b", "web");
    unknown["spec"]["containers"][0]["imagee"] = json!("x");
    let err = r.create(pods(), Some("default"), unknown).await.unwrap_err();
    assert!(err.to_string().contains("spec.containers[0].imagee: unknown field"), "{err}");
    let err = r.create(pods(), Some("nowhere"), pod("b", "web")).await.unwrap_err();
    assert!(matches!(err, ApiError::NotFound { .. }), "{err}");
    let err = r.create(pods(), Some("default"), json!({"kind": "Deployment", "metadata": {"name": "x"}})).await.unwrap_err();
    assert!(matches!(err, ApiError::BadRequest(_)));
    assert_eq!(r.store().revision().await.unwrap(), rev, "a refused write must not touch the store");
}

#[tokio::test]
async fn stale_updates_conflict_and_status_is_a_subresource() {
    let (r, _dir) = registry().await;
    let created = r.create(pods(), Some("default"), pod("a", "web")).await.unwrap();
    let mut first = created.clone();
    first["spec"]["containers"][0]["image"] = json!("busybox:1.36");
    first["status"]["phase"] = json!("Running");
    let updated = r.update(pods(), Some("default"), "a", first, false).await.unwrap();
    assert_eq!(updated["status"]["phase"], "Pending", "a main-resource update keeps the stored status");
    assert_eq!(updated["metadata"]["generation"], 2);
    let mut stale = created.clone();
    stale["spec"]["containers"][0]["image"] = json!("busybox:1.37");
    assert!(matches!(r.update(pods(), Some("default"), "a", stale, false).await, Err(ApiError::Conflict { .. })));
    let mut status = updated.clone();
    status["status"]["phase"] = json!("Running");
    status["spec"]["containers"][0]["image"] = json!("ignored");
    let after = r.update(pods(), Some("default"), "a", status, true).await.unwrap();
    assert_eq!(after["status"]["phase"], "Running");
    assert_eq!(after["spec"]["containers"][0]["image"], "busybox:1.36");
}

#[tokio::test]
async fn bound_pods_terminate_gracefully() {
    let (r, _dir) = registry().await;
    let mut p = pod("a", "web");
    p["spec"]["nodeName"] = json!("n1");
    r.create(pods(), Some("default"), p).await.unwrap();
    let marked = r.delete(pods(), Some("default"), "a", &DeleteOptions::default()).await.unwrap();
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
    assert!(r.get(pods(), Some("default"), "a").await.is_ok());
    let opts = DeleteOptions { grace_period_seconds: Some(0), ..Default::default() };
    r.delete(pods(), Some("default"), "a", &opts).await.unwrap();
    assert!(matches!(r.get(pods(), Some("default"), "a").await, Err(ApiError::NotFound { .. })));
}

#[tokio::test]
async fn watch_reports_selector_transitions() {
    let (r, _dir) = registry().await;
    let start = r.store().revision().await.unwrap();
    let filter = ListFilter::parse(Some("app=web"), None).unwrap();
    let mut events = Box::pin(r.watch(pods(), Some("default"), filter, start).await.unwrap());
    let a = r.create(pods(), Some("default"), pod("a", "web")).await.unwrap();
    r.create(pods(), Some("default"), pod("b", "db")).await.unwrap();
    let mut relabeled = a.clone();
    relabeled["metadata"]["labels"]["app"] = json!("db");
    r.update(pods(), Some("default"), "a", relabeled, false).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        let e = tokio::time::timeout(std::time::Duration::from_secs(5), events.next()).await.unwrap().unwrap().unwrap();
        got.push((e.type_, e.object["metadata"]["name"].as_str().unwrap().to_string()));
    }
    assert_eq!(got, vec![("ADDED", "a".to_string()), ("DELETED", "a".to_string())]);
    let (items, _) = r.list(pods(), None, &ListFilter::parse(Some("app=db"), None).unwrap()).await.unwrap();
    assert_eq!(items.len(), 2);
    let (items, _) = r.list(pods(), None, &ListFilter::field("metadata.name", "b")).await.unwrap();
    assert_eq!(items.len(), 1);
}

#[tokio::test]
async fn priority_classes_set_pod_priority() {
    let (r, _dir) = registry().await;
    let pcs = ResourceType::of::<api::PriorityClass>();
    let class = |name: &str, value: i64, default: bool| json!({"metadata": {"name": name}, "value": value, "globalDefault": default});
    r.create(pcs, None, class("batch", 100, false)).await.unwrap();
    let mut named = pod("p1", "web");
    named["spec"]["priorityClassName"] = json!("batch");
    let created = r.create(pods(), Some("default"), named).await.unwrap();
    assert_eq!(created["spec"]["priority"], 100);
    assert_eq!(created["spec"]["preemptionPolicy"], "PreemptLowerPriority");
    // No class and no default: priority 0. Then a global default applies to pods naming none.
    assert_eq!(r.create(pods(), Some("default"), pod("p2", "web")).await.unwrap()["spec"]["priority"], 0);
    r.create(pcs, None, json!({"metadata": {"name": "normal"}, "value": 10, "globalDefault": true, "preemptionPolicy": "Never"})).await.unwrap();
    let defaulted = r.create(pods(), Some("default"), pod("p3", "web")).await.unwrap();
    assert_eq!(
        (defaulted["spec"]["priority"].clone(), defaulted["spec"]["priorityClassName"].clone(), defaulted["spec"]["preemptionPolicy"].clone()),
        (json!(10), json!("normal"), json!("Never"))
    );
    let mut system = pod("p4", "web");
    system["spec"]["priorityClassName"] = json!("system-node-critical");
    assert_eq!(r.create(pods(), Some("default"), system).await.unwrap()["spec"]["priority"], 2_000_001_000);

    // Bad input names the field and stores nothing.
    let mut unknown = pod("p5", "web");
    unknown["spec"]["priorityClassName"] = json!("urgent");
    let err = r.create(pods(), Some("default"), unknown).await.unwrap_err().to_string();
    assert!(err.contains("spec.priorityClassName") && err.contains("urgent"), "{err}");
    let mut forged = pod("p6", "web");
    forged["spec"]["priorityClassName"] = json!("batch");
    forged["spec"]["priority"] = json!(1_000_000);
    assert!(r.create(pods(), Some("default"), forged).await.unwrap_err().to_string().contains("spec.priority"));
    let too_high = r.create(pcs, None, class("huge", 2_000_000_000, false)).await.unwrap_err().to_string();
    assert!(too_high.contains("value"), "{too_high}");
    let reserved = r.create(pcs, None, class("system-mine", 5, false)).await.unwrap_err().to_string();
    assert!(reserved.contains("metadata.name"), "{reserved}");
    let (all, _) = r.list(pods(), Some("default"), &ListFilter::default()).await.unwrap();
    assert_eq!(all.len(), 4);
}

/// Takes events from `events` until none comes for 300 ms: (type, name).
async fn drain_events(events: &mut (impl Stream<Item = Result<ObjectEvent, ApiError>> + Unpin)) -> Vec<(&'static str, String)> {
    let mut got = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout(std::time::Duration::from_millis(300), events.next()).await {
        let event = event.unwrap();
        got.push((event.type_, event.object["metadata"]["name"].as_str().unwrap().to_string()));
    }
    got
}

async fn bind(r: &Registry, name: &str, node: &str) {
    let mut bound = r.get(pods(), Some("default"), name).await.unwrap();
    bound["spec"]["nodeName"] = json!(node);
    r.update(pods(), Some("default"), name, bound, false).await.unwrap();
}

#[tokio::test]
async fn node_watches_see_only_their_nodes_pods() {
    let (r, _dir) = registry().await;
    let start = r.store().revision().await.unwrap();
    let on = |node: &str| ListFilter::parse(None, Some(&format!("spec.nodeName={node}"))).unwrap();
    let mut n1 = Box::pin(r.watch(pods(), None, on("n1"), start).await.unwrap());
    let mut n2 = Box::pin(r.watch(pods(), None, on("n2"), start).await.unwrap());
    let mut everything = Box::pin(r.watch(pods(), None, ListFilter::default(), start).await.unwrap());
    // `spec.nodeName=` selects the pods no node holds yet.
    let mut unbound = Box::pin(r.watch(pods(), None, on(""), start).await.unwrap());
    for name in ["a", "b", "c"] {
        r.create(pods(), Some("default"), pod(name, "web")).await.unwrap();
    }
    bind(&r, "a", "n1").await;
    bind(&r, "b", "n2").await;
    let opts = DeleteOptions { grace_period_seconds: Some(0), ..Default::default() };
    r.delete(pods(), Some("default"), "a", &opts).await.unwrap();
    // A bind is the pod arriving on its node; unbound pods reach no node.
    assert_eq!(drain_events(&mut n1).await, vec![("ADDED", "a".into()), ("DELETED", "a".into())]);
    assert_eq!(drain_events(&mut n2).await, vec![("ADDED", "b".into())]);
    let all = drain_events(&mut everything).await;
    assert_eq!(all.len(), 6, "{all:?}");
    assert_eq!(all.last(), Some(&("DELETED", "a".into())));
    let expected = [("ADDED", "a"), ("ADDED", "b"), ("ADDED", "c"), ("DELETED", "a"), ("DELETED", "b")];
    assert_eq!(drain_events(&mut unbound).await, expected.map(|(t, n)| (t, n.to_string())));
    // A watch from before the first one (the hub's start) is still complete: the store serves it.
    let mut late = Box::pin(r.watch(pods(), None, on("n2"), start - 1).await.unwrap());
    assert_eq!(drain_events(&mut late).await, vec![("ADDED", "b".into())]);
    // A watch starting after a list, while changes went on, replays what it missed.
    let mid = r.store().revision().await.unwrap();
    bind(&r, "c", "n2").await;
    let mut resumed = Box::pin(r.watch(pods(), None, on("n2"), mid).await.unwrap());
    assert_eq!(drain_events(&mut resumed).await, vec![("ADDED", "c".into())]);
    // A revision the store has not reached is refused, as before.
    let future = r.watch(pods(), None, on("n2"), mid + 1000).await.err().unwrap();
    assert!(matches!(future, ApiError::BadRequest(_)), "{future:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn updates_without_a_resource_version_never_conflict_but_stale_ones_do() {
    let (r, _dir) = registry().await;
    let created = r.create(pods(), Some("default"), pod("busy", "web")).await.unwrap();
    let writers = (0..16).map(|i| {
        let r = r.clone();
        let mut body = created.clone();
        body["metadata"].as_object_mut().unwrap().remove("resourceVersion");
        body["status"] = json!({"phase": "Running", "message": format!("writer {i}")});
        tokio::spawn(async move { r.update(pods(), Some("default"), "busy", body, true).await })
    });
    for writer in writers.collect::<Vec<_>>() {
        writer.await.unwrap().expect("an unconditional update must not fail with a conflict");
    }
    let stale = r.update(pods(), Some("default"), "busy", created, true).await.unwrap_err();
    assert!(matches!(stale, ApiError::Conflict { .. }), "{stale}");
}

fn service(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec})
}

fn services() -> &'static ResourceType {
    ResourceType::of::<api::Service>()
}

#[tokio::test]
async fn services_get_distinct_addresses_that_come_back_when_deleted() {
    let (r, _dir) = registry().await;
    let ranges = ServiceRanges::parse("10.96.7.0/29", "30000-30002").unwrap();
    let r = r.with_service_ranges(ranges);
    // A /29 hands out .2 to .6: five addresses.
    let mut ips = std::collections::BTreeSet::new();
    for i in 0..5 {
        let created = r.create(services(), Some("default"), service(&format!("s{i}"), json!({"ports": [{"port": 80}]}))).await.unwrap();
        let ip: std::net::Ipv4Addr = created["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
        assert!((2..=6).contains(&ip.octets()[3]) && ip.octets()[..3] == [10, 96, 7], "{ip}");
        assert_eq!(created["spec"]["clusterIPs"], json!([ip.to_string()]));
        ips.insert(ip);
    }
    assert_eq!(ips.len(), 5);
    let full = r.create(services(), Some("default"), service("s5", json!({"ports": [{"port": 80}]}))).await.unwrap_err().to_string();
    assert!(full.contains("spec.clusterIP") && full.contains("no free address"), "{full}");
    assert!(matches!(r.get(services(), Some("default"), "s5").await, Err(ApiError::NotFound { .. })));

    let taken = ips.first().unwrap().to_string();
    let clash = r.create(services(), Some("default"), service("s5", json!({"clusterIP": taken, "ports": [{"port": 80}]}))).await.unwrap_err().to_string();
    assert!(clash.contains(&format!("spec.clusterIP: Invalid value: \"{taken}\": is already allocated")), "{clash}");
    let outside =
        r.create(services(), Some("default"), service("s5", json!({"clusterIP": "10.96.8.1", "ports": [{"port": 80}]}))).await.unwrap_err().to_string();
    assert!(outside.contains("is not in the service network 10.96.7.0/29"), "{outside}");

    let holder = r.list(services(), Some("default"), &ListFilter::default()).await.unwrap().0;
    let holder = holder.iter().find(|s| s["spec"]["clusterIP"] == taken.as_str()).unwrap()["metadata"]["name"].as_str().unwrap().to_string();
    r.delete(services(), Some("default"), &holder, &DeleteOptions::default()).await.unwrap();
    let reused = r.create(services(), Some("default"), service("s5", json!({"clusterIP": taken, "ports": [{"port": 80}]}))).await.unwrap();
    assert_eq!(reused["spec"]["clusterIP"], taken.as_str());

    // Headless Services take no address.
    let headless = r.create(services(), Some("default"), service("h", json!({"clusterIP": "None", "selector": {"app": "web"}}))).await.unwrap();
    assert_eq!(headless["spec"]["clusterIP"], "None");
}

#[tokio::test]
async fn node_ports_are_allocated_kept_on_update_and_released() {
    let (r, _dir) = registry().await;
    let r = r.with_service_ranges(ServiceRanges::parse("10.96.0.0/24", "30000-30001").unwrap());
    let spec = json!({"type": "NodePort", "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81}]});
    let created = r.create(services(), Some("default"), service("np", spec.clone())).await.unwrap();
    let ports: Vec<u64> = created["spec"]["ports"].as_array().unwrap().iter().map(|p| p["nodePort"].as_u64().unwrap()).collect();
    assert_eq!(ports.iter().copied().collect::<std::collections::BTreeSet<_>>(), [30000, 30001].into());
    let ip = created["spec"]["clusterIP"].clone();

    // Applying the same manifest again (no clusterIP, no node ports) keeps both.
    let updated = r.update(services(), Some("default"), "np", service("np", spec.clone()), false).await.unwrap();
    assert_eq!(updated["spec"]["clusterIP"], ip);
    let again: Vec<u64> = updated["spec"]["ports"].as_array().unwrap().iter().map(|p| p["nodePort"].as_u64().unwrap()).collect();
    assert_eq!(again, ports);

    let full = r.create(services(), Some("default"), service("np2", json!({"type": "NodePort", "ports": [{"port": 80}]}))).await.unwrap_err().to_string();
    assert!(full.contains("spec.ports[0].nodePort") && full.contains("no free port"), "{full}");
    let moved = r
        .update(services(), Some("default"), "np", service("np", json!({"clusterIP": "10.96.0.77", "type": "NodePort", "ports": [{"port": 80}]})), false)
        .await;
    assert!(moved.unwrap_err().to_string().contains("spec.clusterIP: Invalid value: \"10.96.0.77\": field is immutable"));
    assert_eq!(r.get(services(), Some("default"), "np").await.unwrap()["spec"]["ports"], updated["spec"]["ports"]);

    // Dropping port b frees its node port for another Service.
    let kept =
        r.update(services(), Some("default"), "np", service("np", json!({"type": "NodePort", "ports": [{"name": "a", "port": 80}]})), false).await.unwrap();
    let freed = if kept["spec"]["ports"][0]["nodePort"] == 30000 { 30001 } else { 30000 };
    let other = r.create(services(), Some("default"), service("np2", json!({"type": "NodePort", "ports": [{"port": 80}]}))).await.unwrap();
    assert_eq!(other["spec"]["ports"][0]["nodePort"], freed);
    r.delete(services(), Some("default"), "np", &DeleteOptions::default()).await.unwrap();
    let last =
        r.create(services(), Some("default"), service("np3", json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30005}]}))).await.unwrap_err();
    assert!(last.to_string().contains("spec.ports[0].nodePort: Invalid value: \"30005\": must be in the node-port range 30000-30001"));
    r.create(services(), Some("default"), service("np3", json!({"type": "NodePort", "ports": [{"port": 80}]}))).await.unwrap();
}

#[tokio::test]
async fn bind_sets_only_the_node_and_refuses_a_stale_or_bound_pod() {
    let (r, _dir) = registry().await;
    let created = r.create(pods(), Some("default"), pod("p", "web")).await.unwrap();
    let seen: Pod = from_value(created.clone()).unwrap();
    let bound = r.bind(&seen, "node-1").await.unwrap();
    assert_eq!(bound.spec.as_ref().and_then(|s| s.node_name.as_deref()), Some("node-1"));
    let stored = r.get(pods(), Some("default"), "p").await.unwrap();
    assert_eq!(stored["spec"]["nodeName"], "node-1");
    assert_eq!(stored["metadata"]["resourceVersion"].as_str(), bound.metadata.resource_version.as_deref(), "the returned pod is the stored one");
    assert_eq!(stored["metadata"]["generation"], 2);
    let mut expected = created.clone();
    expected["spec"]["nodeName"] = json!("node-1");
    expected["metadata"]["generation"] = json!(2);
    expected["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"].clone();
    assert_eq!(stored, expected, "nothing but the node (and generation) changed");
    assert_eq!(serde_json::to_value(&bound).unwrap(), stored, "the pod handed back is what the store holds");

    let rev = r.store().revision().await.unwrap();
    let err = r.bind(&seen, "node-2").await.unwrap_err();
    assert!(matches!(err, ApiError::Conflict { .. }), "a stale pod: {err}");
    let err = r.bind(&bound, "node-2").await.unwrap_err();
    assert!(matches!(err, ApiError::Conflict { .. }), "a bound pod: {err}");
    assert_eq!(r.store().revision().await.unwrap(), rev, "a refused bind must not touch the store");
    let mut gone = seen.clone();
    gone.metadata.name = Some("nobody".into());
    assert!(matches!(r.bind(&gone, "node-1").await, Err(ApiError::NotFound { .. })));
}

#[test]
fn selectors_judge_stored_json_as_they_judge_the_object() {
    let object = json!({"metadata": {"name": "p", "namespace": "shop", "labels": {"app": "web", "tier": "front"}},
                        "spec": {"nodeName": "n1", "containers": [{"name": "c"}]}, "status": {"phase": "Running"}});
    let bare = json!({"metadata": {"name": "q", "labels": null}, "spec": null});
    let filters = [
        ListFilter::default(),
        ListFilter::parse(Some("app=web"), None).unwrap(),
        ListFilter::parse(Some("app=web,tier!=front"), None).unwrap(),
        ListFilter::parse(Some("!tier"), None).unwrap(),
        ListFilter::parse(None, Some("spec.nodeName=n1")).unwrap(),
        ListFilter::parse(None, Some("spec.nodeName=")).unwrap(),
        ListFilter::parse(None, Some("status.phase!=Running,metadata.namespace=shop")).unwrap(),
        ListFilter::parse(None, Some("metadata.name=p")).unwrap(),
    ];
    let expected = [(true, true), (true, false), (false, false), (false, true), (true, false), (false, true), (false, false), (true, false)];
    for (filter, (on_object, on_bare)) in filters.iter().zip(expected) {
        for (value, want) in [(&object, on_object), (&bare, on_bare)] {
            assert_eq!(filter.matches(value), want, "{filter:?} on {value}");
            let stored = Selectable::of_stored(&serde_json::to_vec(value).unwrap()).expect("stored JSON reads");
            assert_eq!(filter.selects(&stored), want, "{filter:?} on stored {value}");
        }
    }
}

#[tokio::test]
async fn a_pod_status_update_stores_what_admitting_the_whole_pod_would() {
    let (r, _dir) = registry().await;
    let created = r.create(pods(), Some("default"), pod("s", "web")).await.unwrap();
    let mut body = created.clone();
    body["status"] = json!({"podIP": "10.88.0.7", "conditions": [{"type": "Ready", "status": "True"}],
                            "containerStatuses": [{"name": "c", "image": "busybox:1.35", "imageID": "", "ready": true, "restartCount": 0}]});
    let mut merged = created.clone();
    merged["status"] = body["status"].clone();
    let mut whole = crate::admission::admit(pods(), &merged, Some(&created)).unwrap();
    let updated = r.update(pods(), Some("default"), "s", body.clone(), true).await.unwrap();
    whole["metadata"]["resourceVersion"] = updated["metadata"]["resourceVersion"].clone();
    assert_eq!(updated, whole, "the status admitted alone (phase defaulted to Pending) and the stored rest");
    assert_eq!(updated["status"]["phase"], "Pending");
    assert_eq!(r.get(pods(), Some("default"), "s").await.unwrap(), updated);
    let rev = r.store().revision().await.unwrap();
    body["metadata"]["resourceVersion"] = updated["metadata"]["resourceVersion"].clone();
    let same = r.update(pods(), Some("default"), "s", body.clone(), true).await.unwrap();
    assert_eq!(same, updated);
    assert_eq!(r.store().revision().await.unwrap(), rev, "an unchanged status writes nothing");

    body["status"]["podIPz"] = json!("x");
    let err = r.update(pods(), Some("default"), "s", body.clone(), true).await.unwrap_err();
    assert!(err.to_string().contains("status.podIPz: unknown field"), "{err}");
    body["status"] = json!({"phase": 7});
    let err = r.update(pods(), Some("default"), "s", body.clone(), true).await.unwrap_err();
    assert!(err.to_string().contains("status.phase"), "{err}");
    assert_eq!(r.store().revision().await.unwrap(), rev, "a refused status update must not touch the store");
    let mut stale = updated.clone();
    stale["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"].clone();
    stale["status"] = json!({"phase": "Running"});
    assert!(matches!(r.update(pods(), Some("default"), "s", stale, true).await, Err(ApiError::Conflict { .. })));
}
