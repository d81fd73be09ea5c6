//! The pod network across nodes, for real: a server on this host and two agents, each in a
//! network namespace of its own joined to a hub bridge (two "hosts" on one segment), each given
//! its pod network by the control plane (`--cluster-cidr`). A pod on one node fetches a page
//! from a pod on the other: through the VXLAN tunnel (whose counters show the traffic went
//! through it), and with plain routes via the peer. When a node is deleted, the routes to its
//! pods go.

mod common;

use std::time::Duration;

use serde_json::Value;

use common::{summary, wait_for, Cluster, ExtraAgent, Mode, IMAGE};

fn web(node: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: web, labels: {{app: web}}}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: {IMAGE}
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
"#
    )
}

fn fetch(node: &str, ip: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: fetch, labels: {{app: fetch}}}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: {IMAGE}
    command: ["sh", "-c", "for i in $(seq 1 100); do timeout 5 wget -q -O - http://{ip}:8080/ && echo fetched && break; sleep 0.3; done; sleep 3600"]
"#
    )
}

fn pod_cidr(cluster: &Cluster, node: &str) -> String {
    let node = cluster.get("node", node);
    node["spec"]["podCIDR"].as_str().unwrap_or_else(|| panic!("no podCIDR: {node}")).to_string()
}

/// Two extra nodes with `--overlay mode`; checks the networks they were given and that a pod
/// on the first reaches a pod on the second. Returns the second's network.
fn pods_reach_each_other(cluster: &mut Cluster, a: &ExtraAgent, b: &ExtraAgent) -> String {
    let (cidr_a, cidr_b) = (pod_cidr(cluster, &a.node), pod_cidr(cluster, &b.node));
    assert_ne!(cidr_a, cidr_b);
    for cidr in [&cidr_a, &cidr_b] {
        assert!(cidr.starts_with("10.97.") && cidr.ends_with(".0/24"), "a /24 of the cluster CIDR: {cidr}");
    }
    assert_eq!(pod_cidr(cluster, &cluster.node), cluster.pod_cidr, "a node that brought its own network keeps it");

    cluster.apply(&web(&b.node));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let pods = loop {
        let pods = cluster.pods(Some("app=web"));
        if pods.len() == 1 && common::pod_ready(&pods[0]) {
            break pods;
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "the web pod is not ready on {}: {}\nevents: {}\nagent b:\n{}\n{}",
                b.node,
                summary(&pods),
                cluster.try_run(&["get", "events", "-A"]).unwrap_or_default(),
                b.log(),
                cluster.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let ip = pods[0]["status"]["podIP"].as_str().unwrap_or_else(|| panic!("no podIP: {}", summary(&pods))).to_string();
    let prefix = cidr_b.trim_end_matches("0/24");
    assert!(ip.starts_with(prefix), "the pod's address {ip} is in its node's network {cidr_b}");

    cluster.apply(&fetch(&a.node, &ip));
    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    loop {
        let logs = cluster.try_run(&["logs", "fetch"]).unwrap_or_default();
        if logs.contains("hello from flotilla") && logs.contains("fetched") {
            return cidr_b;
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "the pod on {} did not fetch the page from {ip} on {}; its log: {logs}\nroutes on a:\n{}\nroutes on b:\n{}\nagent a:\n{}\nagent b:\n{}",
                a.node,
                b.node,
                a.ip(&["route", "show"]),
                b.ip(&["route", "show"]),
                a.log(),
                b.log()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn tx_packets(agent: &ExtraAgent, device: &str) -> u64 {
    let out = agent.ip(&["-s", "-j", "link", "show", device]);
    let links: Value = serde_json::from_str(&out).unwrap();
    links[0]["stats64"]["tx"]["packets"].as_u64().unwrap_or(0)
}

#[test]
fn pods_on_two_nodes_talk_over_vxlan_and_the_routes_to_a_deleted_node_go() {
    let mut cluster = Cluster::start_with("podnet-vxlan", Mode::Split, &["--cluster-cidr", "10.97.0.0/16"]);
    let a = ExtraAgent::join_with(&cluster, "a", 11, None, &["--overlay", "vxlan"]);
    let mut b = ExtraAgent::join_with(&cluster, "b", 12, None, &["--overlay", "vxlan"]);
    let cidr_b = pods_reach_each_other(&mut cluster, &a, &b);

    let device = format!("{}.vx", a.bridge);
    let details = a.ip(&["-d", "link", "show", &device]);
    assert!(details.contains("vxlan id 1") && details.contains(&format!("local {}", a.address())) && details.contains("dstport 8472"), "{details}");
    assert!(tx_packets(&a, &device) > 0, "the request left through the tunnel");
    let route = a.ip(&["route", "show", &cidr_b]);
    assert!(route.contains(&format!("dev {device}")), "the route to the other node's pods is the tunnel: {route}");
    let fdb = std::process::Command::new("bridge").args(["-n", &a.netns, "fdb", "show", "dev", &device]).output().unwrap();
    let fdb = String::from_utf8_lossy(&fdb.stdout);
    assert!(fdb.contains(&format!("dst {}", b.address())), "the tunnel knows where the other node is: {fdb}");

    b.kill();
    cluster.run_ok(&["delete", "node", &b.node]);
    // The agent removes the route, then the forwarding entry: both must go within the bound.
    wait_for(Duration::from_secs(10), "the route to the deleted node's pods and its forwarding entry to go", || {
        let fdb = std::process::Command::new("bridge").args(["-n", &a.netns, "fdb", "show", "dev", &device]).output().unwrap();
        let fdb_gone = !String::from_utf8_lossy(&fdb.stdout).contains(&format!("dst {}", b.address()));
        (a.ip(&["route", "show", &cidr_b]).trim().is_empty() && fdb_gone).then_some(())
    });
    eprintln!("agent a's log:\n{}", a.log());
}

#[test]
fn pods_on_two_nodes_talk_over_plain_routes() {
    let mut cluster = Cluster::start_with("podnet-routes", Mode::Split, &["--cluster-cidr", "10.97.0.0/16"]);
    let a = ExtraAgent::join_with(&cluster, "a", 13, None, &["--overlay", "routes"]);
    let b = ExtraAgent::join_with(&cluster, "b", 14, None, &["--overlay", "routes"]);
    let cidr_b = pods_reach_each_other(&mut cluster, &a, &b);
    let route = a.ip(&["route", "show", &cidr_b]);
    assert!(route.contains(&format!("via {}", b.address())), "a route via the other node: {route}");
    assert!(!a.ip(&["link", "show"]).contains(".vx"), "no tunnel in routes mode");
}
