//! Network policy across nodes, for real: a server on this host and two agents in network
//! namespaces of their own (two "hosts" joined by VXLAN). The web pod runs on one node, two
//! client pods on the other, fetching from it all along, each fetch logged with the (shared)
//! uptime clock and how it ended (ok, 403, or fail: no connection). The web node's datapath
//! tells the clients apart by the identities its ipcache gives their addresses: a policy lets
//! only one of them in, on one port, then only to some paths (403 from the web node's proxy for
//! the rest), and each decision is in the flow log of the node that made it.

mod common;

use std::time::Duration;

use serde_json::Value;

use common::{wait_for, Cluster, ExtraAgent, Mode, IMAGE};

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
    command: ["sh", "-c", "mkdir -p /tmp/www/public /tmp/www/private && echo public > /tmp/www/public/index.html && echo private > /tmp/www/private/index.html && echo up > /tmp/www/index.html && httpd -p 9090 -h /tmp/www && exec httpd -f -p 8080 -h /tmp/www"]
    ports: [{{name: http, containerPort: 8080}}]
    readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 1}}
"#
    )
}

/// A pod labelled `app=<name>` on `node` that fetches each of `targets` (`address:port/path`)
/// in turn, all along, and logs "<uptime> <target> ok|403|fail".
fn fetcher(name: &str, node: &str, targets: &[String]) -> String {
    let targets = targets.join(" ");
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: {IMAGE}
    command: ["sh", "-c", "while true; do for target in {targets}; do t=$(cut -d' ' -f1 /proc/uptime); if out=$(timeout 1 wget -q -O /dev/null http://$target 2>&1); then echo \"$t $target ok\"; else case \"$out\" in *403*) echo \"$t $target 403\";; *) echo \"$t $target fail\";; esac; fi; done; sleep 0.1; done"]
"#
    )
}

fn uptime() -> f64 {
    std::fs::read_to_string("/proc/uptime").unwrap().split(' ').next().unwrap().parse().unwrap()
}

/// How `pod`'s fetches of each of `targets` that began at or after `since` ended, once each
/// was fetched twice. Fetches of one target that disagree fail the test: no flickering.
fn outcomes(cluster: &Cluster, pod: &str, targets: &[String], since: f64) -> Vec<String> {
    let seen = wait_for(Duration::from_secs(40), &format!("{pod} to fetch {targets:?} twice"), || {
        let logs = cluster.try_run(&["logs", pod]).unwrap_or_default();
        let seen: Vec<(String, String)> = logs
            .lines()
            .filter_map(|line| {
                let mut parts = line.split(' ');
                let t = parts.next()?.parse::<f64>().ok()?;
                let (target, outcome) = (parts.next()?, parts.next()?);
                (t >= since).then(|| (target.to_string(), outcome.to_string()))
            })
            .collect();
        targets.iter().all(|t| seen.iter().filter(|(target, _)| target == t).count() >= 2).then_some(seen)
    });
    targets
        .iter()
        .map(|t| {
            let of: Vec<&String> = seen.iter().filter(|(target, _)| target == t).map(|(_, o)| o).collect();
            assert!(of.iter().all(|o| *o == of[0]), "{pod}'s fetches of {t} since {since} disagree: {seen:?}");
            of[0].clone()
        })
        .collect()
}

fn flows(cluster: &Cluster, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["flows", "-o", "json", "--all"];
    all.extend_from_slice(args);
    cluster.run_ok(&all).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

fn identity_of(cluster: &Cluster, app: &str) -> u64 {
    let list: Value = serde_json::from_str(&cluster.run_ok(&["get", "identities", "-o", "json"])).unwrap();
    let found = list["items"].as_array().unwrap().iter().find(|i| i["spec"]["namespace"] == "default" && i["spec"]["labels"]["app"] == app);
    found.and_then(|i| i["metadata"]["name"].as_str()?.parse().ok()).unwrap_or_else(|| panic!("no identity for app={app}: {list}"))
}

const NETWORK_POLICY: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web-from-client}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: client}}}]\n    ports: [{port: http}]\n";

const HTTP_POLICY: &str = "apiVersion: flotilla.dev/v1alpha1\nkind: FlotillaNetworkPolicy\nmetadata: {name: web-http}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: client}}}]\n    ports: [{port: http}]\n    http: [{method: GET, path: /public/.*}]\n";

#[test]
fn a_policy_judges_pods_of_another_node_by_their_identities() {
    let mut cluster = Cluster::start_with("netpol-nodes", Mode::Split, &["--cluster-cidr", "10.97.0.0/16"]);
    let a = ExtraAgent::join_with(&cluster, "a", 15, None, &["--overlay", "vxlan"]);
    let b = ExtraAgent::join_with(&cluster, "b", 16, None, &["--overlay", "vxlan"]);
    cluster.apply(&web(&b.node));
    let pods = cluster.wait_ready("app=web", 1, Duration::from_secs(60));
    let ip = pods[0]["status"]["podIP"].as_str().unwrap().to_string();
    let targets: Vec<String> = ["8080/public/", "8080/private/", "9090/"].iter().map(|t| format!("{ip}:{t}")).collect();
    let public = vec![targets[0].clone()];
    cluster.apply(&fetcher("client", &a.node, &targets));
    cluster.apply(&fetcher("other", &a.node, &public));
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
    let mut at_b = flows(&cluster, &["--node", &b.node, "--pod", "default/web"]);
    assert!(!at_b.is_empty() && at_b.iter().all(|f| f["node"] == b.node.as_str()), "--node: {at_b:#?}");
    at_b.retain(|f| f["time"].as_str().is_some_and(|t| t >= enforced.as_str()));
    let judged = |from: &str, verdict: &str| {
        at_b.iter().find(|f| f["source"]["pod"] == from && f["destination"]["port"] == 8080 && f["verdict"] == verdict && f["trafficDirection"] == "INGRESS")
    };
    let allowed = judged("client", "FORWARDED").unwrap_or_else(|| panic!("the client's connection, judged on {}: {at_b:#?}", b.node));
    assert_eq!((allowed["source"]["identity"].as_u64(), allowed["destination"]["identity"].as_u64()), (Some(client), Some(web_id)));
    let denied = judged("other", "DROPPED").unwrap_or_else(|| panic!("the other pod's connection, judged on {}: {at_b:#?}", b.node));
    assert_eq!(denied["source"]["identity"].as_u64(), Some(other), "the other node's pod by its identity, not as the world");
    let at_a = flows(&cluster, &["--node", &a.node, "--pod", "default/client"]);
    assert!(
        at_a.iter().any(|f| f["trafficDirection"] == "EGRESS" && f["destination"]["pod"] == "web" && f["destination"]["identity"].as_u64() == Some(web_id)),
        "the client's own node saw it leave, to the web pod's identity: {at_a:#?}"
    );

    cluster.run_ok(&["delete", "networkpolicy", "web-from-client"]);
    cluster.apply(HTTP_POLICY);
    let http = uptime();
    assert_eq!(outcomes(&cluster, "client", &targets, http + 1.0), ["ok", "403", "fail"], "the web node's proxy answers what the HTTP rules leave out");
    assert_eq!(outcomes(&cluster, "other", &public, http + 1.0), ["fail"]);
    let at_b = flows(&cluster, &["--node", &b.node, "--pod", "default/web", "--verdict", "dropped"]);
    let refused = at_b.iter().find(|f| f["l7"]["http"]["code"] == 403).unwrap_or_else(|| panic!("the 403 in {}'s flow log: {at_b:#?}", b.node));
    assert_eq!((refused["source"]["pod"].as_str(), refused["source"]["identity"].as_u64()), (Some("client"), Some(client)));
    assert_eq!(refused["l7"]["http"]["url"], "/private/");
}
