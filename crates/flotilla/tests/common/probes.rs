//! Pods that probe other pods all along, for policy tests: each try is a log line stamped with
//! the uptime clock (which pods share with the host), so a test reads how the tries after a
//! moment ended, and fails when tries of one target disagree (a policy is not to flicker).

use std::time::Duration;

use serde_json::Value;

use super::{wait_for, Cluster, IMAGE};

/// This host's uptime in seconds, the clock the probe lines carry.
pub fn uptime() -> f64 {
    std::fs::read_to_string("/proc/uptime").unwrap().split(' ').next().unwrap().parse().unwrap()
}

/// A web pod labelled `app=web` (on `node`, where given) serving `/`, `/public/` and
/// `/private/` on 8080 (the named port `http`, with a readiness probe) and 9090.
pub fn web(node: Option<&str>) -> String {
    let selector = node.map(|n| format!("  nodeSelector: {{kubernetes.io/hostname: {n}}}\n")).unwrap_or_default();
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: web, labels: {{app: web}}}}
spec:
{selector}  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: {IMAGE}
    command: ["sh", "-c", "mkdir -p /tmp/www/public /tmp/www/private && echo public > /tmp/www/public/index.html && echo private > /tmp/www/private/index.html && echo up > /tmp/www/index.html && httpd -p 9090 -h /tmp/www && exec httpd -f -p 8080 -h /tmp/www"]
    ports: [{{name: http, containerPort: 8080}}]
    readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 1}}
"#
    )
}

/// A pod labelled `app=<name>` (on `node`, where given) that fetches `http://TARGET` for each
/// of `targets` (`host:port/path`) in turn, all along, giving each `timeout` seconds, and logs
/// "<uptime> <target> ok|403|fail" (fail: no answer).
pub fn fetcher(name: &str, node: Option<&str>, targets: &[String], timeout: u32) -> String {
    let targets = targets.join(" ");
    let selector = node.map(|n| format!("  nodeSelector: {{kubernetes.io/hostname: {n}}}\n")).unwrap_or_default();
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
{selector}  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: {IMAGE}
    command: ["sh", "-c", "while true; do for target in {targets}; do t=$(cut -d' ' -f1 /proc/uptime); if out=$(timeout {timeout} wget -q -O /dev/null http://$target 2>&1); then echo \"$t $target ok\"; else case \"$out\" in *403*) echo \"$t $target 403\";; *) echo \"$t $target fail\";; esac; fi; done; sleep 0.1; done"]
"#
    )
}

/// How `pod`'s tries of each of `targets` that began at or after `since` ended, once each was
/// tried twice.
pub fn outcomes(cluster: &Cluster, pod: &str, targets: &[String], since: f64) -> Vec<String> {
    outcomes_between(cluster, pod, targets, since, f64::INFINITY)
}

/// [`outcomes`] of the tries that began from `since` to `until`.
pub fn outcomes_between(cluster: &Cluster, pod: &str, targets: &[String], since: f64, until: f64) -> Vec<String> {
    let seen = wait_for(Duration::from_secs(40), &format!("{pod} to try {targets:?} twice"), || {
        let logs = cluster.try_run(&["logs", pod]).unwrap_or_default();
        let seen: Vec<(String, String)> = logs
            .lines()
            .filter_map(|line| {
                let mut parts = line.split(' ');
                let t = parts.next()?.parse::<f64>().ok()?;
                let (target, outcome) = (parts.next()?, parts.next()?);
                (t >= since && t <= until).then(|| (target.to_string(), outcome.to_string()))
            })
            .collect();
        targets.iter().all(|t| seen.iter().filter(|(target, _)| target == t).count() >= 2).then_some(seen)
    });
    targets
        .iter()
        .map(|t| {
            let of: Vec<&String> = seen.iter().filter(|(target, _)| target == t).map(|(_, o)| o).collect();
            assert!(of.iter().all(|o| *o == of[0]), "{pod}'s tries of {t} since {since} disagree: {seen:?}");
            of[0].clone()
        })
        .collect()
}

/// The identity number of the pods labelled `app=<app>` in the default namespace.
pub fn identity_of(cluster: &Cluster, app: &str) -> u64 {
    let list: Value = serde_json::from_str(&cluster.run_ok(&["get", "identities", "-o", "json"])).unwrap();
    let found = list["items"].as_array().unwrap().iter().find(|i| i["spec"]["namespace"] == "default" && i["spec"]["labels"]["app"] == app);
    found.and_then(|i| i["metadata"]["name"].as_str()?.parse().ok()).unwrap_or_else(|| panic!("no identity for app={app}: {list}"))
}

/// The flows `flotilla flows ARGS -o json` prints.
pub fn flows(cluster: &Cluster, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["flows", "-o", "json"];
    all.extend_from_slice(args);
    cluster.run_ok(&all).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}
