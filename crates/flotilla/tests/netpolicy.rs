//! NetworkPolicy on real pods through the binary: a web pod and two client pods probe it on
//! two ports all along, each probe line stamped with the (shared) uptime clock. A policy that
//! lets only one client in on the named port `http` takes effect on the running pods within a
//! second, the web pod's readiness probe (from the node) keeps passing, and deleting the
//! policy opens everything again within a second. Egress and a default-deny namespace too.

mod common;

use std::time::Duration;

use serde_json::Value;

use common::probes::{flows, identity_of, uptime};
use common::world::World;
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
    prober_of(name, &[(ip, 8080), (ip, 9090)])
}

/// A pod that fetches `http://ip:port/` from each target in turn, all along, and logs
/// "<uptime> <port> ok|fail" for each try.
fn prober_of(name: &str, targets: &[(&str, u16)]) -> String {
    prober_as(name, name, targets)
}

/// [`prober_of`], with the label `app=<app>`.
fn prober_as(name: &str, app: &str, targets: &[(&str, u16)]) -> String {
    let targets: Vec<String> = targets.iter().map(|(ip, port)| format!("{ip}:{port}")).collect();
    let targets = targets.join(" ");
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {app}}}}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: {IMAGE}
    command: ["sh", "-c", "while true; do for target in {targets}; do t=$(cut -d' ' -f1 /proc/uptime); if timeout 1 wget -q -O /dev/null http://$target/; then echo \"$t ${{target#*:}} ok\"; else echo \"$t ${{target#*:}} fail\"; fi; done; sleep 0.1; done"]
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

/// A cluster with the web pod and the `client` and `other` probers of it, all ready.
fn web_and_probers(name: &str) -> Cluster {
    let mut cluster = Cluster::up(name);
    cluster.apply(&web());
    let pods = cluster.wait_ready("app=web", 1, Duration::from_secs(60));
    let ip = pods[0]["status"]["podIP"].as_str().unwrap().to_string();
    cluster.apply(&prober("client", &ip));
    cluster.apply(&prober("other", &ip));
    cluster.wait_ready("app in (client, other)", 2, Duration::from_secs(60));
    cluster
}

#[test]
fn a_policy_on_running_pods_lets_only_the_allowed_client_in_within_a_second() {
    let cluster = web_and_probers("netpolicy");

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
    let cluster = web_and_probers("netpolicy-egress");
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
    let cluster = web_and_probers("netpolicy-default-deny");
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

/// ipBlock with except against real addresses outside the cluster: the client may send only
/// to 198.18.77.0/24 except 198.18.77.128/25, so it reaches .10 and not .200; the other pod,
/// which no policy selects, reaches both.
#[test]
fn an_ip_block_with_except_lets_out_only_to_its_addresses() {
    let world = World::new();
    let mut cluster = Cluster::up("netpolicy-ipblock");
    let targets = [("198.18.77.10", 8080), ("198.18.77.200", 9090)];
    cluster.apply(&prober_of("client", &targets));
    cluster.apply(&prober_of("other", &targets));
    cluster.wait_ready("app in (client, other)", 2, Duration::from_secs(60));
    assert_eq!(verdicts(&cluster, "client", uptime()), (true, true), "no policy: the pods reach both addresses of {}", world.netns);

    cluster.apply(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: client-out}\nspec:\n  podSelector: {matchLabels: {app: client}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{ipBlock: {cidr: 198.18.77.0/24, except: [198.18.77.128/25]}}]\n",
    );
    let applied = uptime();
    assert_eq!(verdicts(&cluster, "client", applied + 1.0), (true, false), "198.18.77.10 is in the block, 198.18.77.200 in its except");
    assert_eq!(verdicts(&cluster, "other", applied + 1.0), (true, true), "a pod no policy selects is not restricted");

    cluster.run_ok(&["delete", "networkpolicy", "client-out"]);
    assert_eq!(verdicts(&cluster, "client", uptime() + 1.0), (true, true), "without the policy everything flows again");
}

/// ipBlock with except on ingress, from real addresses outside the cluster: the web pod lets
/// in 198.18.77.0/24 except 198.18.77.128/25, so the world's .10 gets an answer and its .200
/// does not; the node's probes still pass.
#[test]
fn an_ingress_ip_block_with_except_lets_in_only_its_addresses() {
    let world = World::new();
    let mut cluster = Cluster::up("netpolicy-ipblock-in");
    cluster.apply(&web());
    let pods = cluster.wait_ready("app=web", 1, Duration::from_secs(60));
    let ip = pods[0]["status"]["podIP"].as_str().unwrap().to_string();
    wait_for(Duration::from_secs(10), "the world to reach the web pod", || {
        (world.fetch_from("198.18.77.10", &ip, 8080) && world.fetch_from("198.18.77.200", &ip, 8080)).then_some(())
    });

    cluster.apply(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web-from-world}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from: [{ipBlock: {cidr: 198.18.77.0/24, except: [198.18.77.128/25]}}]\n    ports: [{port: 8080}]\n",
    );
    std::thread::sleep(Duration::from_secs(1));
    for _ in 0..3 {
        assert!(world.fetch_from("198.18.77.10", &ip, 8080), "198.18.77.10 is in the block");
        assert!(!world.fetch_from("198.18.77.200", &ip, 8080), "198.18.77.200 is in its except");
        assert!(!world.fetch_from("198.18.77.10", &ip, 9090), "and only on the port named");
    }
    assert!(common::pod_ready(&cluster.get("pod", "web")), "the node's probes still reach the pod");
}

/// Every decision of the datapath is in `flotilla flows`: the allowed client's connections
/// forwarded, the other pod's dropped as denied by policy, the node's readiness probes, each
/// with both pods and their identities; the filters select; `-f` prints a new drop as it
/// happens; a bad filter is refused naming it.
#[test]
fn flows_show_each_decision_with_both_pods_and_their_identities() {
    let cluster = web_and_probers("netpolicy-flows");
    cluster.apply(POLICY);
    let applied = uptime();
    // The decisions under the policy: a flow of a pod's first moments, before its Identity
    // reached the node (nothing selected it then), is rightly reported as the world's.
    let enforced = (chrono::Utc::now() + chrono::Duration::seconds(1)).format("%Y-%m-%dT%H:%M:%S").to_string();
    assert_eq!(verdicts(&cluster, "client", applied + 1.0), (true, false), "the policy holds");
    assert_eq!(verdicts(&cluster, "other", applied + 1.0), (false, false));
    let (web, client, other) = (identity_of(&cluster, "web"), identity_of(&cluster, "client"), identity_of(&cluster, "other"));

    let mut seen = flows(&cluster, &["--pod", "default/web", "--all"]);
    seen.retain(|f| f["time"].as_str().is_some_and(|t| t >= enforced.as_str()));
    let at_web = |from: &str, port: u64, verdict: &str| {
        seen.iter().find(|f| {
            f["source"]["pod"] == from
                && f["destination"]["pod"] == "web"
                && f["destination"]["port"] == port
                && f["verdict"] == verdict
                && f["trafficDirection"] == "INGRESS"
        })
    };
    let allowed = at_web("client", 8080, "FORWARDED").unwrap_or_else(|| panic!("the client's allowed connection: {seen:#?}"));
    assert_eq!((allowed["source"]["identity"].as_u64(), allowed["destination"]["identity"].as_u64()), (Some(client), Some(web)));
    assert_eq!(allowed["destination"]["labels"]["app"], "web");
    assert_eq!(allowed["protocol"], "TCP");
    assert!(allowed["node"].as_str().is_some_and(|n| !n.is_empty()));
    let denied = at_web("other", 8080, "DROPPED").unwrap_or_else(|| panic!("the other pod's denied connection: {seen:#?}"));
    assert_eq!(denied["dropReason"], "POLICY_DENIED");
    assert_eq!((denied["source"]["identity"].as_u64(), denied["destination"]["identity"].as_u64()), (Some(other), Some(web)));
    assert!(at_web("client", 9090, "DROPPED").is_some(), "the client on the port the policy leaves out: {seen:#?}");
    assert!(
        seen.iter().any(|f| f["source"]["identity"] == 1 && f["destination"]["pod"] == "web" && f["verdict"] == "FORWARDED"),
        "the node's readiness probes, from the host identity: {seen:#?}"
    );
    // The client's own veth judged its connection on the way out, too.
    assert!(seen.iter().any(|f| f["source"]["pod"] == "client" && f["trafficDirection"] == "EGRESS" && f["verdict"] == "FORWARDED"));

    let dropped = flows(&cluster, &["--verdict", "dropped", "--all"]);
    assert!(!dropped.is_empty() && dropped.iter().all(|f| f["verdict"] == "DROPPED"), "{dropped:#?}");
    assert_eq!(flows(&cluster, &["--pod", "default/web", "--last", "3"]).len(), 3, "--last");
    assert!(flows(&cluster, &["-n", "elsewhere", "--all"]).is_empty(), "no pod of another namespace talked");
    let table = cluster.run_ok(&["flows", "--pod", "other", "--verdict", "dropped"]);
    assert!(table.lines().all(|l| l.contains("default/other:") && l.contains("DROPPED (POLICY_DENIED)")), "{table}");
    assert!(table.contains(&format!("-> default/web:8080 (ID:{web})")), "{table}");

    // Following: the other pod's next denied probe comes as it happens.
    let mut follower = cluster
        .command(&["flows", "-f", "--pod", "default/other", "--verdict", "dropped", "--last", "0", "-o", "json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = api_time_now();
    let stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(15)).expect("a new drop within 15 s");
    let _ = follower.kill();
    let _ = follower.wait();
    let flow: Value = serde_json::from_str(&line).unwrap();
    assert_eq!((flow["source"]["pod"].as_str(), flow["verdict"].as_str()), (Some("other"), Some("DROPPED")));
    assert!(flow["time"].as_str().unwrap() >= started.as_str(), "a new flow, not a buffered one: {line} (started {started})");

    let bad = cluster.try_run(&["flows", "--pod", "a/b/c"]).expect_err("a bad pod name is refused");
    assert!(bad.contains("pod"), "{bad}");
}

/// Now as the API writes times (RFC 3339, UTC), to the second, to compare with a flow's.
fn api_time_now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// Learn, then enforce: the client is seen reaching the web pod on 8080 only; `policy suggest`
/// writes policies allowing exactly that, which apply as they are. Under them the client still
/// reaches 8080, the node still probes the web pod, and the rest is denied: a second pod with
/// the client's labels reaches 8080 but not 9090, and a pod started later reaches neither.
#[test]
fn a_suggested_policy_keeps_what_was_seen_and_denies_the_rest() {
    let mut cluster = Cluster::up("netpolicy-suggest");
    cluster.apply(&web());
    let pods = cluster.wait_ready("app=web", 1, Duration::from_secs(60));
    let ip = pods[0]["status"]["podIP"].as_str().unwrap().to_string();
    cluster.apply(&prober_of("client", &[(&ip, 8080)]));
    cluster.wait_ready("app=client", 1, Duration::from_secs(60));
    let learning = uptime();
    wait_for(Duration::from_secs(30), "the client to reach the web pod five times", || {
        (results(&cluster, "client", learning).iter().filter(|(_, ok)| *ok).count() >= 5).then_some(())
    });

    let yaml = cluster.run_ok(&["policy", "suggest", "-n", "default"]);
    assert!(yaml.starts_with("# Suggested by `flotilla policy suggest -n default` from "), "{yaml}");
    let documents: Vec<Value> = yaml.split("\n---\n").skip(1).map(|d| serde_yaml::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}"))).collect();
    let named = |name: &str| documents.iter().find(|d| d["metadata"]["name"] == name).unwrap_or_else(|| panic!("no {name} in\n{yaml}")).clone();
    assert_eq!(documents.len(), 2, "one policy per identity, web and client:\n{yaml}");
    let web = named("suggested-web");
    assert_eq!(web["spec"]["podSelector"]["matchLabels"]["app"], "web");
    assert_eq!(web["spec"]["ingress"].as_array().map(Vec::len), Some(1), "only the client, not the node's probes:\n{yaml}");
    assert_eq!(web["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app"], "client");
    assert_eq!(web["spec"]["ingress"][0]["ports"], serde_json::json!([{"port": 8080, "protocol": "TCP"}]));
    assert_eq!(web["spec"]["egress"], serde_json::json!([]), "the web pod sent nothing");
    let client = named("suggested-client");
    assert_eq!(client["spec"]["egress"][0]["to"][0]["podSelector"]["matchLabels"]["app"], "web");
    assert_eq!(client["spec"]["ingress"], serde_json::json!([]));

    cluster.apply(&yaml);
    let applied = uptime();
    wait_for(Duration::from_secs(30), "the client's probes under the suggested policies", || {
        let seen = results(&cluster, "client", applied + 1.0);
        assert!(seen.iter().all(|(_, ok)| *ok), "what was seen keeps working: {seen:?}");
        (seen.len() >= 3).then_some(())
    });
    assert!(common::pod_ready(&cluster.get("pod", "web")), "the node's probes still reach the web pod");
    cluster.apply(&prober_as("client-2", "client", &[(&ip, 8080), (&ip, 9090)]));
    cluster.apply(&prober_of("late", &[(&ip, 8080), (&ip, 9090)]));
    cluster.wait_ready("app in (client, late)", 3, Duration::from_secs(60));
    let started = uptime();
    assert_eq!(verdicts(&cluster, "client-2", started), (true, false), "the client's identity may reach 8080, which was seen, not 9090");
    assert_eq!(verdicts(&cluster, "late", started), (false, false), "a pod never seen reaches nothing");
}
