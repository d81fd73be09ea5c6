//! Network policy across nodes, for real: a server on this host and two agents in network
//! namespaces of their own (two "hosts" joined by VXLAN). The web pod runs on one node, two
//! client pods on the other, fetching from it all along, each fetch logged with the (shared)
//! uptime clock and how it ended (ok, 403, or fail: no connection). The web node's datapath
//! tells the clients apart by the identities its ipcache gives their addresses: a policy lets
//! only one of them in, on one port, then only to some paths (403 from the web node's proxy for
//! the rest), and each decision is in the flow log of the node that made it.

mod common;

use std::time::Duration;

use common::probes::{fetcher, flows, identity_of, outcomes, uptime, web};
use common::{Cluster, ExtraAgent, Mode};

const NETWORK_POLICY: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web-from-client}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: client}}}]\n    ports: [{port: http}]\n";

const HTTP_POLICY: &str = "apiVersion: flotilla.dev/v1alpha1\nkind: FlotillaNetworkPolicy\nmetadata: {name: web-http}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: client}}}]\n    ports: [{port: http}]\n    http: [{method: GET, path: /public/.*}]\n";

#[test]
fn a_policy_judges_pods_of_another_node_by_their_identities() {
    let mut cluster = Cluster::start_with("netpol-nodes", Mode::Split, &["--cluster-cidr", "10.97.0.0/16"]);
    let a = ExtraAgent::join_with(&cluster, "a", 15, None, &["--overlay", "vxlan"]);
    let b = ExtraAgent::join_with(&cluster, "b", 16, None, &["--overlay", "vxlan"]);
    cluster.apply(&web(Some(&b.node)));
    let pods = cluster.wait_ready("app=web", 1, Duration::from_secs(60));
    let ip = pods[0]["status"]["podIP"].as_str().unwrap().to_string();
    let targets: Vec<String> = ["8080/public/", "8080/private/", "9090/"].iter().map(|t| format!("{ip}:{t}")).collect();
    let public = vec![targets[0].clone()];
    cluster.apply(&fetcher("client", Some(&a.node), &targets, 1));
    cluster.apply(&fetcher("other", Some(&a.node), &public, 1));
    cluster.wait_ready("app in (client, other)", 2, Duration::from_secs(60));
    assert_eq!(outcomes(&cluster, "client", &targets, uptime()), ["ok", "ok", "ok"], "no policy: everything flows between the nodes");

    cluster.apply(NETWORK_POLICY);
    let applied = uptime();
    // The decisions under the policy: before the client's address reached the web node, its
    // first connections were (rightly) the world's.
    let enforced = (chrono::Utc::now() + chrono::Duration::seconds(1)).format("%Y-%m-%dT%H:%M:%S").to_string();
    assert_eq!(outcomes(&cluster, "client", &targets, applied + 1.0), ["ok", "ok", "fail"], "the client reaches http (8080) only");
    assert_eq!(outcomes(&cluster, "other", &public, applied + 1.0), ["fail"], "the other pod of the same node reaches nothing");
    assert!(common::pod_ready(&cluster.get("pod", "web")), "the web node's probes still reach it");

    let (client, other, web_id) = (identity_of(&cluster, "client"), identity_of(&cluster, "other"), identity_of(&cluster, "web"));
    let mut at_b = flows(&cluster, &["--all", "--node", &b.node, "--pod", "default/web"]);
    assert!(!at_b.is_empty() && at_b.iter().all(|f| f["node"] == b.node.as_str()), "--node: {at_b:#?}");
    at_b.retain(|f| f["time"].as_str().is_some_and(|t| t >= enforced.as_str()));
    let judged = |from: &str, verdict: &str| {
        at_b.iter().find(|f| f["source"]["pod"] == from && f["destination"]["port"] == 8080 && f["verdict"] == verdict && f["trafficDirection"] == "INGRESS")
    };
    let allowed = judged("client", "FORWARDED").unwrap_or_else(|| panic!("the client's connection, judged on {}: {at_b:#?}", b.node));
    assert_eq!((allowed["source"]["identity"].as_u64(), allowed["destination"]["identity"].as_u64()), (Some(client), Some(web_id)));
    let denied = judged("other", "DROPPED").unwrap_or_else(|| panic!("the other pod's connection, judged on {}: {at_b:#?}", b.node));
    assert_eq!(denied["source"]["identity"].as_u64(), Some(other), "the other node's pod by its identity, not as the world");
    let at_a = flows(&cluster, &["--all", "--node", &a.node, "--pod", "default/client"]);
    assert!(
        at_a.iter().any(|f| f["trafficDirection"] == "EGRESS" && f["destination"]["pod"] == "web" && f["destination"]["identity"].as_u64() == Some(web_id)),
        "the client's own node saw it leave, to the web pod's identity: {at_a:#?}"
    );

    cluster.run_ok(&["delete", "networkpolicy", "web-from-client"]);
    cluster.apply(HTTP_POLICY);
    let http = uptime();
    assert_eq!(outcomes(&cluster, "client", &targets, http + 1.0), ["ok", "403", "fail"], "the web node's proxy answers what the HTTP rules leave out");
    assert_eq!(outcomes(&cluster, "other", &public, http + 1.0), ["fail"]);
    let at_b = flows(&cluster, &["--all", "--node", &b.node, "--pod", "default/web", "--verdict", "dropped"]);
    let refused = at_b.iter().find(|f| f["l7"]["http"]["code"] == 403).unwrap_or_else(|| panic!("the 403 in {}'s flow log: {at_b:#?}", b.node));
    assert_eq!((refused["source"]["pod"].as_str(), refused["source"]["identity"].as_u64()), (Some("client"), Some(client)));
    assert_eq!(refused["l7"]["http"]["url"], "/private/");
}
