//! One test per constraint kind, and combinations, through the public decisions.

use serde_json::json;

use super::*;

fn zone(z: &str) -> serde_json::Value {
    json!({"metadata": {"labels": {"topology.kubernetes.io/zone": z}}})
}

#[test]
fn resources_and_the_reason_a_user_reads() {
    let cam = json!({"status": {"allocatable": {"flotilla.dev/camera": "1"}}});
    let mut s =
        cluster(&[node("a", 4, 1, json!({})), node("b", 4, 1, json!({})), node("c", 4, 1, json!({})), node("d", 4, 8, json!({})), node("e", 4, 8, json!({}))]);
    let cam_pod = |name: &str| {
        pod(
            name,
            0,
            0,
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "100m", "memory": "2Gi"}, "limits": {"flotilla.dev/camera": "1"}}}]}}),
        )
    };
    let p = cam_pod("p");
    assert_eq!(place(&mut s, &p).unwrap_err(), "0/5 nodes available: 3 insufficient memory, 2 missing flotilla.dev/camera.");
    s.upsert_node(&node("e", 4, 8, cam));
    assert_eq!(place(&mut s, &p).unwrap(), "e");
    let again = cam_pod("q");
    assert_eq!(
        place(&mut s, &again).unwrap_err(),
        "0/5 nodes available: 3 insufficient memory, 1 insufficient flotilla.dev/camera, 1 missing flotilla.dev/camera."
    );
}

#[test]
fn cpu_ephemeral_storage_pod_count_overhead_and_init_containers() {
    let mut s = cluster(&[node("a", 2, 4, json!({"status": {"allocatable": {"pods": "2", "ephemeral-storage": "10Gi"}}}))]);
    let big_init =
        pod("init", 500, 10, json!({"spec": {"initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1500m"}}}], "overhead": {"cpu": "100m"}}}));
    assert_eq!(place(&mut s, &big_init).unwrap(), "a");
    assert_eq!(s.node("a").unwrap().requested.get(crate::resources::CPU), 1600, "max(sum, init) + overhead");
    let disk = pod("disk", 100, 10, json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "100m", "ephemeral-storage": "11Gi"}}}]}}));
    assert_eq!(place(&mut s, &disk).unwrap_err(), "0/1 nodes available: 1 insufficient ephemeral-storage.");
    assert_eq!(place(&mut s, &pod("cpu", 500, 10, json!({}))).unwrap_err(), "0/1 nodes available: 1 insufficient cpu.");
    assert_eq!(place(&mut s, &pod("small", 100, 10, json!({}))).unwrap(), "a");
    assert_eq!(place(&mut s, &pod("third", 1, 1, json!({}))).unwrap_err(), "0/1 nodes available: 1 too many pods.");
}

#[test]
fn node_selector_and_required_affinity_operators() {
    let nodes = [
        node("a", 4, 8, json!({"metadata": {"labels": {"disk": "ssd", "gen": "3"}}})),
        node("b", 4, 8, json!({"metadata": {"labels": {"disk": "hdd", "gen": "5"}}})),
        node("c", 4, 8, json!({"metadata": {"labels": {"gen": "7"}}})),
    ];
    let cases = [
        (json!({"nodeSelector": {"disk": "ssd"}}), vec!["a"]),
        (affinity(json!([{"key": "disk", "operator": "In", "values": ["ssd", "hdd"]}])), vec!["a", "b"]),
        (affinity(json!([{"key": "disk", "operator": "NotIn", "values": ["ssd"]}])), vec!["b", "c"]),
        (affinity(json!([{"key": "disk", "operator": "Exists"}])), vec!["a", "b"]),
        (affinity(json!([{"key": "disk", "operator": "DoesNotExist"}])), vec!["c"]),
        (affinity(json!([{"key": "gen", "operator": "Gt", "values": ["4"]}])), vec!["b", "c"]),
        (affinity(json!([{"key": "gen", "operator": "Lt", "values": ["4"]}])), vec!["a"]),
        (affinity(json!([{"key": "gen", "operator": "Gt", "values": ["3"]}, {"key": "disk", "operator": "Exists"}])), vec!["b"]),
    ];
    for (spec, allowed) in cases {
        let mut s = cluster(&nodes);
        let mut got = Vec::new();
        for i in 0..6 {
            got.push(place(&mut s, &pod(&format!("p{i}"), 100, 10, json!({"spec": spec.clone()}))).unwrap());
        }
        got.sort();
        got.dedup();
        assert_eq!(got, allowed, "{spec}");
    }
    // Terms are ORed; matchFields selects by name.
    let mut s = cluster(&nodes);
    let or = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["c"]}]},
        {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]}
    ]}}}});
    let mut got: Vec<String> = (0..6).map(|i| place(&mut s, &pod(&format!("o{i}"), 100, 10, json!({"spec": or.clone()}))).unwrap()).collect();
    got.sort();
    got.dedup();
    assert_eq!(got, ["b", "c"]);
    let err = place(&mut s, &pod("x", 1, 1, json!({"spec": {"nodeSelector": {"disk": "nvme"}}}))).unwrap_err();
    assert_eq!(err, "0/3 nodes available: 3 not matching the node selector/affinity.");
}

fn affinity(exprs: serde_json::Value) -> serde_json::Value {
    json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": exprs}]}}}})
}

#[test]
fn bad_constraints_name_the_field() {
    let mut s = cluster(&[node("a", 1, 1, json!({}))]);
    let bad = pod("p", 1, 1, json!({"spec": affinity(json!([{"key": "gen", "operator": "Gt", "values": ["x"]}]))}));
    let err = s.pod_info(&bad).unwrap_err();
    assert_eq!(err.field, "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0]");
    let skew = pod(
        "p",
        1,
        1,
        json!({"spec": {"topologySpreadConstraints": [{"maxSkew": 0, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {}}]}}),
    );
    assert_eq!(s.pod_info(&skew).unwrap_err().field, "spec.topologySpreadConstraints[0].maxSkew");
}

#[test]
fn preferred_node_affinity_wins_among_feasible_nodes() {
    let mut s =
        cluster(&[node("a", 4, 8, json!({"metadata": {"labels": {"site": "north"}}})), node("b", 4, 8, json!({"metadata": {"labels": {"site": "south"}}}))]);
    let pref = json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 10, "preference": {"matchExpressions": [{"key": "site", "operator": "In", "values": ["north"]}]}},
        {"weight": 80, "preference": {"matchExpressions": [{"key": "site", "operator": "In", "values": ["south"]}]}}
    ]}}}});
    for i in 0..3 {
        assert_eq!(place(&mut s, &pod(&format!("p{i}"), 100, 10, pref.clone())).unwrap(), "b");
    }
}

#[test]
fn taints_and_tolerations() {
    let tainted = |effect: &str| json!({"spec": {"taints": [{"key": "gpu", "value": "true", "effect": effect}]}});
    let mut s = cluster(&[node("a", 4, 8, tainted("NoSchedule")), node("b", 4, 8, tainted("NoExecute"))]);
    assert_eq!(
        place(&mut s, &pod("p", 1, 1, json!({}))).unwrap_err(),
        "0/2 nodes available: 1 with untolerated taint gpu=true:NoExecute, 1 with untolerated taint gpu=true:NoSchedule."
    );
    let equal = json!({"spec": {"tolerations": [{"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]}});
    assert_eq!(place(&mut s, &pod("q", 1, 1, equal)).unwrap(), "a");
    let wrong_value = json!({"spec": {"tolerations": [{"key": "gpu", "operator": "Equal", "value": "false"}]}});
    assert!(place(&mut s, &pod("r", 1, 1, wrong_value)).is_err());
    let exists = json!({"spec": {"tolerations": [{"key": "gpu", "operator": "Exists"}]}});
    assert!(place(&mut s, &pod("s", 1, 1, exists)).is_ok());
    let everything = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
    assert!(place(&mut s, &pod("t", 1, 1, everything)).is_ok());
    // PreferNoSchedule only steers.
    let mut s = cluster(&[node("a", 4, 8, tainted("PreferNoSchedule")), node("b", 4, 8, json!({}))]);
    for i in 0..3 {
        assert_eq!(place(&mut s, &pod(&format!("p{i}"), 100, 10, json!({}))).unwrap(), "b");
    }
    s.upsert_node(&node("b", 4, 8, json!({"spec": {"unschedulable": true}})));
    assert_eq!(place(&mut s, &pod("last", 100, 10, json!({}))).unwrap(), "a");
}

fn labelled(app: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"metadata": {"labels": {"app": app}}, "spec": spec})
}

fn pod_term(kind: &str, app: &str, key: &str) -> serde_json::Value {
    json!({"affinity": {kind: {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}]}}})
}

#[test]
fn pod_anti_affinity_one_per_host_and_its_symmetry() {
    let mut s = cluster(&[node("a", 8, 8, json!({})), node("b", 8, 8, json!({})), node("c", 8, 8, json!({}))]);
    let spec = pod_term("podAntiAffinity", "db", "kubernetes.io/hostname");
    let mut hosts: Vec<String> = (0..3).map(|i| place(&mut s, &pod(&format!("db{i}"), 100, 10, labelled("db", spec.clone()))).unwrap()).collect();
    hosts.sort();
    assert_eq!(hosts, ["a", "b", "c"]);
    assert_eq!(place(&mut s, &pod("db3", 100, 10, labelled("db", spec))).unwrap_err(), "0/3 nodes available: 3 not matching pod anti-affinity.");
    // A pod without terms that the running pods' anti-affinity selects is kept away too.
    assert_eq!(
        place(&mut s, &pod("plain-db", 100, 10, labelled("db", json!({})))).unwrap_err(),
        "0/3 nodes available: 3 excluded by anti-affinity of running pods."
    );
    assert!(place(&mut s, &pod("web", 100, 10, labelled("web", json!({})))).is_ok());
}

#[test]
fn pod_affinity_by_zone_and_the_first_of_a_group() {
    let mut s = cluster(&[node("a1", 8, 8, zone("a")), node("a2", 8, 8, zone("a")), node("b1", 8, 8, zone("b"))]);
    let cache = place(&mut s, &pod("cache", 100, 10, labelled("cache", json!({"nodeSelector": {"kubernetes.io/hostname": "b1"}})))).unwrap();
    assert_eq!(cache, "b1");
    for i in 0..3 {
        assert_eq!(
            place(&mut s, &pod(&format!("w{i}"), 100, 10, labelled("web", pod_term("podAffinity", "cache", "topology.kubernetes.io/zone")))).unwrap(),
            "b1"
        );
    }
    // Nothing selected yet, but the pod selects itself: it may start the group anywhere.
    let group = pod_term("podAffinity", "group", "topology.kubernetes.io/zone");
    let first = place(&mut s, &pod("g0", 100, 10, labelled("group", group.clone()))).unwrap();
    let zone_of = |n: &str| n.chars().next().unwrap();
    for i in 1..4 {
        assert_eq!(zone_of(&place(&mut s, &pod(&format!("g{i}"), 100, 10, labelled("group", group.clone()))).unwrap()), zone_of(&first));
    }
    // Selecting no pod and not itself: nowhere.
    let err = place(&mut s, &pod("lonely", 100, 10, labelled("x", pod_term("podAffinity", "nobody", "topology.kubernetes.io/zone")))).unwrap_err();
    assert_eq!(err, "0/3 nodes available: 3 not matching pod affinity.");
}

#[test]
fn affinity_terms_respect_namespaces() {
    let mut s = cluster(&[node("a", 8, 8, json!({})), node("b", 8, 8, json!({}))]);
    s.upsert_namespace("prod", [("env".to_string(), "prod".to_string())].into());
    let other_ns = json!({"metadata": {"namespace": "prod", "labels": {"app": "db"}}, "spec": {"nodeSelector": {"kubernetes.io/hostname": "a"}}});
    place(&mut s, &pod("db", 100, 10, other_ns)).unwrap();
    // Same labels in another namespace do not count by default...
    let anti = pod_term("podAntiAffinity", "db", "kubernetes.io/hostname");
    let mut placed = Vec::new();
    for i in 0..2 {
        placed.push(place(&mut s, &pod(&format!("d{i}"), 100, 10, labelled("db", anti.clone()))).unwrap());
    }
    placed.sort();
    assert_eq!(placed, ["a", "b"]);
    // ...but do through a namespace selector.
    let mut s2 = cluster(&[node("a", 8, 8, json!({})), node("b", 8, 8, json!({}))]);
    s2.upsert_namespace("prod", [("env".to_string(), "prod".to_string())].into());
    place(
        &mut s2,
        &pod("db", 100, 10, json!({"metadata": {"namespace": "prod", "labels": {"app": "db"}}, "spec": {"nodeSelector": {"kubernetes.io/hostname": "a"}}})),
    )
    .unwrap();
    let by_ns = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": "db"}}, "namespaceSelector": {"matchLabels": {"env": "prod"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
    for i in 0..3 {
        assert_eq!(place(&mut s2, &pod(&format!("e{i}"), 100, 10, labelled("other", by_ns.clone()))).unwrap(), "b");
    }
}

#[test]
fn preferred_pod_affinity_and_anti_affinity() {
    let mut s = cluster(&[node("a", 8, 8, json!({})), node("b", 8, 8, json!({}))]);
    place(&mut s, &pod("cache", 100, 10, labelled("cache", json!({"nodeSelector": {"kubernetes.io/hostname": "a"}})))).unwrap();
    let near = json!({"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "kubernetes.io/hostname"}}]}}});
    let far = json!({"affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "kubernetes.io/hostname"}}]}}});
    for i in 0..3 {
        assert_eq!(place(&mut s, &pod(&format!("n{i}"), 100, 10, labelled("n", near.clone()))).unwrap(), "a");
        assert_eq!(place(&mut s, &pod(&format!("f{i}"), 100, 10, labelled("f", far.clone()))).unwrap(), "b");
    }
}

fn spread(key: &str, when: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut c = json!({"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": when, "labelSelector": {"matchLabels": {"app": "web"}}});
    merge(&mut c, extra);
    json!({"topologySpreadConstraints": [c]})
}

#[test]
fn topology_spread_do_not_schedule() {
    // Zone a has far more room; spread still alternates zones within maxSkew 1.
    let mut s = cluster(&[node("a1", 64, 64, zone("a")), node("a2", 64, 64, zone("a")), node("b1", 2, 2, zone("b")), node("nozone", 64, 64, json!({}))]);
    let spec = spread("topology.kubernetes.io/zone", "DoNotSchedule", json!({}));
    let mut per_zone = std::collections::BTreeMap::new();
    for i in 0..6 {
        let n = place(&mut s, &pod(&format!("w{i}"), 100, 10, labelled("web", spec.clone()))).unwrap();
        assert_ne!(n, "nozone", "a node without the topology key is not a candidate");
        *per_zone.entry(n.chars().next().unwrap()).or_insert(0) += 1;
        let counts: Vec<i32> = per_zone.values().copied().collect();
        assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1, "{per_zone:?}");
    }
    // Zone b is full: the skew would exceed 1, so the pod waits.
    let mut s = cluster(&[node("a1", 64, 64, zone("a")), node("b1", 1, 1, zone("b"))]);
    place(&mut s, &pod("w0", 100, 10, labelled("web", spec.clone()))).unwrap();
    place(&mut s, &pod("w1", 100, 10, labelled("web", spec.clone()))).unwrap();
    place(&mut s, &pod("filler", 900, 10, json!({"spec": {"nodeSelector": {"kubernetes.io/hostname": "b1"}}}))).unwrap();
    assert_eq!(place(&mut s, &pod("w2", 100, 10, labelled("web", spec.clone()))).unwrap(), "a1");
    let err = place(&mut s, &pod("w3", 100, 10, labelled("web", spec.clone()))).unwrap_err();
    assert_eq!(err, "0/2 nodes available: 1 insufficient cpu, 1 violating topology spread.");
}

#[test]
fn topology_spread_min_domains_and_schedule_anyway() {
    // Two zones exist but minDomains 3: the minimum counts as 0, so each zone takes one pod.
    let mut s = cluster(&[node("a1", 64, 64, zone("a")), node("b1", 64, 64, zone("b"))]);
    let spec = spread("topology.kubernetes.io/zone", "DoNotSchedule", json!({"minDomains": 3}));
    place(&mut s, &pod("w0", 100, 10, labelled("web", spec.clone()))).unwrap();
    place(&mut s, &pod("w1", 100, 10, labelled("web", spec.clone()))).unwrap();
    assert!(place(&mut s, &pod("w2", 100, 10, labelled("web", spec))).unwrap_err().contains("2 violating topology spread"));
    // ScheduleAnyway steers but never refuses.
    let mut s = cluster(&[node("a1", 64, 64, zone("a")), node("b1", 64, 64, zone("b"))]);
    let soft = spread("topology.kubernetes.io/zone", "ScheduleAnyway", json!({}));
    let mut zones: Vec<String> = (0..4).map(|i| place(&mut s, &pod(&format!("s{i}"), 100, 10, labelled("web", soft.clone()))).unwrap()).collect();
    zones.sort();
    assert_eq!(zones, ["a1", "a1", "b1", "b1"]);
}

#[test]
fn topology_spread_counts_only_pods_on_nodes_the_pod_may_use() {
    // Zone a holds a GPU node and a CPU node with two app=web pods; zone b one GPU node.
    let gpu = |z: &str| json!({"metadata": {"labels": {"topology.kubernetes.io/zone": z, "gpu": "yes"}}});
    let mut s = cluster(&[node("a-gpu", 8, 8, gpu("a")), node("a-cpu", 8, 8, zone("a")), node("b-gpu", 8, 8, gpu("b"))]);
    for i in 0..2 {
        let pinned = labelled("web", json!({"nodeSelector": {"kubernetes.io/hostname": "a-cpu"}}));
        assert_eq!(place(&mut s, &pod(&format!("cpu{i}"), 100, 10, pinned)).unwrap(), "a-cpu");
    }
    // GPU pods spread by zone: the pods on a-cpu, a node they may not use, do not count
    // (nodeAffinityPolicy: Honor), so the two zones start even and take one each.
    let mut spec = spread("topology.kubernetes.io/zone", "DoNotSchedule", json!({}));
    merge(&mut spec, json!({"nodeSelector": {"gpu": "yes"}}));
    let mut placed: Vec<String> = (0..2).map(|i| place(&mut s, &pod(&format!("gpu{i}"), 100, 10, labelled("web", spec.clone()))).unwrap()).collect();
    placed.sort();
    assert_eq!(placed, ["a-gpu", "b-gpu"]);
}

#[test]
fn strategies_spread_or_pack_and_the_per_workload_override() {
    let nodes = [node("a", 4, 8, json!({})), node("b", 4, 8, json!({}))];
    let mut s = cluster(&nodes);
    let spread_out: Vec<String> = (0..4).map(|i| place(&mut s, &pod(&format!("p{i}"), 500, 100, json!({}))).unwrap()).collect();
    assert_eq!(spread_out.iter().filter(|n| *n == "a").count(), 2);
    let mut s = Snapshot::new(SchedulerConfig { strategy: Strategy::MostAllocated, ..Default::default() });
    nodes.iter().for_each(|n| s.upsert_node(n));
    let packed: Vec<String> = (0..4).map(|i| place(&mut s, &pod(&format!("p{i}"), 500, 100, json!({}))).unwrap()).collect();
    assert!(packed.iter().all(|n| *n == packed[0]), "{packed:?}");
    let mut s = cluster(&nodes);
    let annotated = json!({"metadata": {"annotations": {"flotilla.dev/scheduling-strategy": "binpack"}}});
    let packed: Vec<String> = (0..4).map(|i| place(&mut s, &pod(&format!("p{i}"), 500, 100, annotated.clone())).unwrap()).collect();
    assert!(packed.iter().all(|n| *n == packed[0]), "{packed:?}");
}

#[test]
fn image_locality_prefers_nodes_holding_the_image() {
    let image = json!({"status": {"images": [{"names": ["registry/app:1"], "sizeBytes": 900_000_000}]}});
    let mut s = cluster(&[node("a", 8, 8, json!({})), node("b", 8, 8, image)]);
    let p = pod("p", 100, 10, json!({"spec": {"containers": [{"name": "c", "image": "registry/app:1", "resources": {"requests": {"cpu": "100m"}}}]}}));
    assert_eq!(place(&mut s, &p).unwrap(), "b");
}

#[test]
fn not_ready_and_cordoned_nodes_take_nothing() {
    let not_ready = json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
    let mut s = cluster(&[node("a", 4, 8, not_ready), node("b", 4, 8, json!({"spec": {"unschedulable": true}}))]);
    assert_eq!(place(&mut s, &pod("p", 1, 1, json!({}))).unwrap_err(), "0/2 nodes available: 1 cordoned, 1 not ready.");
    assert_eq!(cluster(&[]).schedule(&PodInfo::default()).unwrap_err().total, 0);
}

#[test]
fn gpu_camera_zone_spread_and_anti_affinity_together() {
    let dev = |z: &str, gpus: i64, cams: i64| json!({"metadata": {"labels": {"topology.kubernetes.io/zone": z}}, "status": {"allocatable": {"nvidia.com/gpu": gpus.to_string(), "flotilla.dev/camera": cams.to_string()}}});
    let mut s =
        cluster(&[node("a1", 8, 16, dev("a", 2, 1)), node("a2", 8, 16, dev("a", 0, 1)), node("b1", 8, 16, dev("b", 1, 1)), node("b2", 8, 16, dev("b", 4, 0))]);
    let mut spec = spread("topology.kubernetes.io/zone", "DoNotSchedule", json!({}));
    merge(&mut spec, pod_term("podAntiAffinity", "web", "kubernetes.io/hostname"));
    merge(&mut spec, json!({"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1", "flotilla.dev/camera": "1"}}}]}));
    let mut got: Vec<String> = (0..2).map(|i| place(&mut s, &pod(&format!("v{i}"), 1000, 3072, labelled("web", spec.clone()))).unwrap()).collect();
    got.sort();
    assert_eq!(got, ["a1", "b1"], "only a1 and b1 have both a GPU and a camera");
    let err = place(&mut s, &pod("v2", 1000, 3072, labelled("web", spec))).unwrap_err();
    assert_eq!(err, "0/4 nodes available: 2 not matching pod anti-affinity, 1 missing flotilla.dev/camera, 1 missing nvidia.com/gpu.");
}

#[test]
fn the_same_snapshot_and_seed_give_the_same_placements() {
    let run = |seed: u64| {
        let mut s = Snapshot::new(SchedulerConfig { seed, min_feasible: 2, percentage: 10, ..Default::default() });
        for i in 0..20 {
            s.upsert_node(&node(&format!("n{i:02}"), 4, 8, zone(["a", "b", "c"][i % 3])));
        }
        (0..40).map(|i| place(&mut s, &pod(&format!("p{i}"), 100 + i, 64, json!({})))).collect::<Vec<_>>()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

#[test]
fn incremental_updates_free_move_and_recount() {
    let mut s = cluster(&[node("a", 1, 8, zone("a")), node("b", 1, 8, zone("b"))]);
    let anti = pod_term("podAntiAffinity", "db", "topology.kubernetes.io/zone");
    assert!(place(&mut s, &pod("db0", 100, 10, labelled("db", anti.clone()))).is_ok());
    assert!(place(&mut s, &pod("db1", 100, 10, labelled("db", anti.clone()))).is_ok());
    assert!(place(&mut s, &pod("db2", 100, 10, labelled("db", anti.clone()))).is_err());
    // b moves to zone a: both pods are now in zone a, zone b has none, and no node is in b.
    s.upsert_node(&node("b", 1, 8, zone("a")));
    assert!(place(&mut s, &pod("db2", 100, 10, labelled("db", anti.clone()))).is_err());
    s.upsert_node(&node("c", 1, 8, zone("b")));
    assert_eq!(place(&mut s, &pod("db2", 100, 10, labelled("db", anti.clone()))).unwrap(), "c");
    // Removing a pod frees its room; removing a node forgets its pods.
    s.remove_pod("default/db2");
    assert_eq!(place(&mut s, &pod("db3", 100, 10, labelled("db", anti.clone()))).unwrap(), "c");
    s.remove_node("c");
    assert_eq!(s.pod_node("default/db3"), None);
    assert!(place(&mut s, &pod("big", 1000, 10, json!({}))).is_err());
    s.remove_pod("default/db0");
    s.remove_pod("default/db1");
    assert!(place(&mut s, &pod("big", 1000, 10, json!({}))).is_ok());
}

#[test]
fn pods_bound_before_their_node_arrives_count_once_it_does() {
    let mut s = cluster(&[]);
    s.upsert_pod(&pod("early", 800, 10, json!({"spec": {"nodeName": "late"}}))).unwrap();
    s.upsert_node(&node("late", 1, 8, json!({})));
    assert_eq!(place(&mut s, &pod("p", 500, 10, json!({}))).unwrap_err(), "0/1 nodes available: 1 insufficient cpu.");
    // A node deleted and created again under its name still holds its pods.
    s.remove_node("late");
    s.upsert_node(&node("late", 1, 8, json!({})));
    assert!(place(&mut s, &pod("q", 500, 10, json!({}))).is_err());
}

#[test]
fn namespace_label_changes_recount_namespace_selector_terms() {
    let mut s = cluster(&[node("a", 8, 8, json!({})), node("b", 8, 8, json!({}))]);
    place(
        &mut s,
        &pod("db", 100, 10, json!({"metadata": {"namespace": "team", "labels": {"app": "db"}}, "spec": {"nodeSelector": {"kubernetes.io/hostname": "a"}}})),
    )
    .unwrap();
    let by_ns = json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": "db"}}, "namespaceSelector": {"matchLabels": {"env": "prod"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
    assert!(place(&mut s, &pod("w0", 100, 10, labelled("web", by_ns.clone()))).unwrap_err().contains("not matching pod affinity"));
    s.upsert_namespace("team", [("env".to_string(), "prod".to_string())].into());
    assert_eq!(place(&mut s, &pod("w1", 100, 10, labelled("web", by_ns.clone()))).unwrap(), "a");
}

#[test]
fn the_first_of_a_group_must_match_every_term_and_no_term_may_have_pods() {
    let mut s = cluster(&[node("a", 8, 8, zone("a")), node("b", 8, 8, zone("b"))]);
    place(&mut s, &pod("cache", 100, 10, labelled("cache", json!({"nodeSelector": {"kubernetes.io/hostname": "a"}})))).unwrap();
    let two_terms = json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "kubernetes.io/hostname"},
        {"labelSelector": {"matchLabels": {"app": "group"}}, "topologyKey": "kubernetes.io/hostname"}
    ]}}});
    // The cache term has pods, so the group term gets no first-pod exception: nowhere fits.
    assert!(place(&mut s, &pod("g0", 100, 10, labelled("group", two_terms))).unwrap_err().contains("2 not matching pod affinity"));
}
