//! NetworkPolicy on real pods through the binary: a web pod and two client pods probe it on
//! two ports all along, each probe line stamped with the (shared) uptime clock. A policy that
//! lets only one client in on the named port `http` takes effect on the running pods within a
//! second, the web pod's readiness probe (from the node) keeps passing, and deleting the
//! policy opens everything again within a second. Egress and a default-deny namespace too.

mod common;

use std::time::Duration;

use serde_json::Value;

use common::{wait_for, Cluster, IMAGE};

fn web() -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: web, labels: {{app: web}}}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: {IMAGE}
    command: ["sh", "-c", "httpd -p 9090 -h /www; exec httpd -f -p 8080 -h /www"]
    ports: [{{name: http, containerPort: 8080}}]
    readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 1}}
"#
    )
}

fn prober(name: &str, ip: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: {IMAGE}
    command: ["sh", "-c", "while true; do for port in 8080 9090; do t=$(cut -d' ' -f1 /proc/uptime); if timeout 1 wget -q -O /dev/null http://{ip}:$port/; then echo \"$t $port ok\"; else echo \"$t $port fail\"; fi; done; sleep 0.1; done"]
"#
    )
}

const POLICY: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-client}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{port: http}]
"#;

fn uptime() -> f64 {
    std::fs::read_to_string("/proc/uptime").unwrap().split(' ').next().unwrap().parse().unwrap()
}

/// The probe results of `pod` that started at or after `since` (uptime seconds), per port.
fn results(cluster: &Cluster, pod: &str, since: f64) -> Vec<(u16, bool)> {
    let logs = cluster.try_run(&["logs", pod]).unwrap_or_default();
    logs.lines()
        .filter_map(|line| {
            let mut parts = line.split(' ');
            let (t, port, verdict) = (parts.next()?.parse::<f64>().ok()?, parts.next()?.parse::<u16>().ok()?, parts.next()?);
            (t >= since).then_some((port, verdict == "ok"))
        })
        .collect()
}

/// Waits until `pod` has probed both ports at least twice since `since`, and returns whether
/// the probes of each port succeeded: (8080, 9090). Probes of one port that disagree fail the
/// test: the policy is not to flicker.
fn verdicts(cluster: &Cluster, pod: &str, since: f64) -> (bool, bool) {
    let seen = wait_for(Duration::from_secs(30), &format!("{pod} to probe both ports twice"), || {
        let seen = results(cluster, pod, since);
        let count = |port: u16| seen.iter().filter(|(p, _)| *p == port).count();
        (count(8080) >= 2 && count(9090) >= 2).then_some(seen)
    });
    let verdict = |port: u16| {
        let oks: Vec<bool> = seen.iter().filter(|(p, _)| *p == port).map(|(_, ok)| *ok).collect();
        assert!(oks.iter().all(|ok| *ok == oks[0]), "{pod}'s probes of {port} since {since} disagree: {seen:?}");
        oks[0]
    };
    (verdict(8080), verdict(9090))
}

#[test]
fn a_policy_on_running_pods_lets_only_the_allowed_client_in_within_a_second() {
    let mut cluster = Cluster::up("netpolicy");
    cluster.apply(&web());
    let pods = cluster.wait_ready("app=web", 1, Duration::from_secs(60));
    let ip = pods[0]["status"]["podIP"].as_str().unwrap().to_string();
    cluster.apply(&prober("client", &ip));
    cluster.apply(&prober("other", &ip));
    cluster.wait_ready("app in (client, other)", 2, Duration::from_secs(60));

    let start = uptime();
    assert_eq!(verdicts(&cluster, "client", start), (true, true), "no policy: everything flows");
    assert_eq!(verdicts(&cluster, "other", start), (true, true));

    cluster.apply(POLICY);
    let applied = uptime();
    // Probes that began a second after the apply see the policy.
    assert_eq!(verdicts(&cluster, "client", applied + 1.0), (true, false), "the client reaches http (8080) only");
    assert_eq!(verdicts(&cluster, "other", applied + 1.0), (false, false), "the other pod reaches nothing");
    let web: Value = cluster.get("pod", "web");
    assert!(common::pod_ready(&web), "the node's readiness probes still reach the pod: {web}");
    assert_eq!(web["status"]["containerStatuses"][0]["restartCount"], 0, "nothing restarted");

    cluster.run_ok(&["delete", "networkpolicy", "web-from-client"]);
    let deleted = uptime();
    assert_eq!(verdicts(&cluster, "other", deleted + 1.0), (true, true), "without the policy everything flows again");
    assert_eq!(verdicts(&cluster, "client", deleted + 1.0), (true, true));
}

/// Egress: the client may reach only the web pods, and only on the named port `http`; the
/// other pod, which no policy selects, still reaches everything.
#[test]
fn an_egress_policy_limits_only_the_selected_pod() {
    let mut cluster = Cluster::up("netpolicy-egress");
    cluster.apply(&web());
    let pods = cluster.wait_ready("app=web", 1, Duration::from_secs(60));
    let ip = pods[0]["status"]["podIP"].as_str().unwrap().to_string();
    cluster.apply(&prober("client", &ip));
    cluster.apply(&prober("other", &ip));
    cluster.wait_ready("app in (client, other)", 2, Duration::from_secs(60));
    let start = uptime();
    assert_eq!(verdicts(&cluster, "client", start), (true, true), "no policy: everything flows");

    cluster.apply(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: client-egress}\nspec:\n  podSelector: {matchLabels: {app: client}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{podSelector: {matchLabels: {app: web}}}]\n    ports: [{port: http}]\n",
    );
    let applied = uptime();
    assert_eq!(verdicts(&cluster, "client", applied + 1.0), (true, false), "the client may send only to the web pod's http port");
    assert_eq!(verdicts(&cluster, "other", applied + 1.0), (true, true), "a pod no policy selects is not restricted");
    let web: Value = cluster.get("pod", "web");
    assert!(common::pod_ready(&web), "an egress policy on the client leaves the web pod's probes alone: {web}");

    cluster.run_ok(&["delete", "networkpolicy", "client-egress"]);
    let deleted = uptime();
    assert_eq!(verdicts(&cluster, "client", deleted + 1.0), (true, true), "without the policy everything flows again");
}

fn namespace(labels: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: default, labels: {{{labels}}}}}\n")
}

/// A namespace labelled default-deny restricts its running pods at once, with no policy;
/// a policy then opens what it allows; a label value the platform does not know is refused
/// with the field named and changes nothing; removing the label opens everything again.
#[test]
fn a_default_deny_namespace_closes_until_a_policy_opens() {
    let mut cluster = Cluster::up("netpolicy-default-deny");
    cluster.apply(&web());
    let pods = cluster.wait_ready("app=web", 1, Duration::from_secs(60));
    let ip = pods[0]["status"]["podIP"].as_str().unwrap().to_string();
    cluster.apply(&prober("client", &ip));
    cluster.apply(&prober("other", &ip));
    cluster.wait_ready("app in (client, other)", 2, Duration::from_secs(60));
    assert_eq!(verdicts(&cluster, "client", uptime()), (true, true), "no policy: everything flows");

    cluster.apply(&namespace("flotilla.dev/default-deny: Ingress"));
    let denied = uptime();
    assert_eq!(verdicts(&cluster, "client", denied + 1.0), (false, false), "ingress is denied to every pod of the namespace");
    assert_eq!(verdicts(&cluster, "other", denied + 1.0), (false, false));
    assert!(common::pod_ready(&cluster.get("pod", "web")), "the node still reaches the pods");

    cluster.apply(POLICY);
    let allowed = uptime();
    assert_eq!(verdicts(&cluster, "client", allowed + 1.0), (true, false), "the policy opens http for the client");
    assert_eq!(verdicts(&cluster, "other", allowed + 1.0), (false, false));

    let (ok, _, stderr) = cluster.try_apply(&namespace("flotilla.dev/default-deny: \"yes\""));
    assert!(!ok && stderr.contains("metadata.labels[flotilla.dev/default-deny]") && stderr.contains("Unsupported value"), "{stderr}");
    let labels: Value = cluster.get("namespace", "default")["metadata"]["labels"].clone();
    assert_eq!(labels["flotilla.dev/default-deny"], "Ingress", "the refused label changed nothing: {labels}");

    cluster.run_ok(&["delete", "networkpolicy", "web-from-client"]);
    cluster.apply(&namespace(""));
    let opened = uptime();
    assert_eq!(verdicts(&cluster, "other", opened + 1.0), (true, true), "without the label and the policy everything flows again");
    assert_eq!(verdicts(&cluster, "client", opened + 1.0), (true, true));
}
