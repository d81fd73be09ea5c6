//! HTTP rules (FlotillaNetworkPolicy) on real pods through the binary: a web pod serving
//! /public/ and /private/ on 8080, and two client pods fetching from it all along, each fetch
//! logged with the (shared) uptime clock and how it ended: ok, 403, or fail (no connection).
//! The node's proxy answers what the rules deny with 403, passes what they allow, and each
//! request is in `flotilla flows` with its method, path and status. The first policy applied is
//! `examples/http-policy.yaml`.

mod common;

use std::time::Duration;

use serde_json::Value;

use common::probes::{fetcher, flows, outcomes, outcomes_between, uptime, web};
use common::{wait_for, Cluster, Mode};

fn policy(paths: &str) -> String {
    format!(
        "apiVersion: flotilla.dev/v1alpha1\nkind: FlotillaNetworkPolicy\nmetadata: {{name: web-http}}\nspec:\n  podSelector: {{matchLabels: {{app: web}}}}\n  ingress:\n  - from: [{{podSelector: {{matchLabels: {{app: client}}}}}}]\n    ports: [{{port: http}}]\n    http: [{{method: GET, path: '{paths}'}}]\n"
    )
}

#[test]
fn http_rules_let_through_only_the_requests_they_name_and_the_rest_get_403() {
    let mut cluster = Cluster::start("l7policy", Mode::Split);
    cluster.apply(&web(None));
    let pods = cluster.wait_ready("app=web", 1, Duration::from_secs(60));
    let ip = pods[0]["status"]["podIP"].as_str().unwrap().to_string();
    let both = [format!("{ip}:8080/public/"), format!("{ip}:8080/private/")];
    let public = [both[0].clone()];
    cluster.apply(&fetcher("client", None, &both, 1));
    cluster.apply(&fetcher("other", None, &public, 1));
    cluster.wait_ready("app in (client, other)", 2, Duration::from_secs(60));
    assert_eq!(outcomes(&cluster, "client", &both, uptime()), ["ok", "ok"], "no policy: everything is served");

    let example = std::fs::read_to_string(common::repo_root().join("examples/http-policy.yaml")).unwrap();
    cluster.apply(&example);
    let applied = uptime();
    assert_eq!(outcomes(&cluster, "client", &both, applied + 1.0), ["ok", "403"], "the client may GET /public/ only; the proxy answers the rest");
    assert_eq!(outcomes(&cluster, "other", &public, applied + 1.0), ["fail"], "a pod no rule names does not get a connection");
    let web: Value = cluster.get("pod", "web");
    assert!(common::pod_ready(&web), "the node's readiness probes go straight to the pod: {web}");
    assert_eq!(web["status"]["containerStatuses"][0]["restartCount"], 0, "nothing restarted");

    let flows = flows(&cluster, &["--pod", "default/web", "--all"]);
    let request = |path: &str, code: u64| flows.iter().find(|f| f["l7"]["http"]["url"] == path && f["l7"]["http"]["code"] == code);
    let denied = request("/private/", 403).unwrap_or_else(|| panic!("the denied request in the flow log: {flows:#?}"));
    assert_eq!((denied["verdict"].as_str(), denied["dropReason"].as_str()), (Some("DROPPED"), Some("POLICY_DENIED")));
    assert_eq!((denied["source"]["pod"].as_str(), denied["destination"]["pod"].as_str()), (Some("client"), Some("web")));
    assert_eq!(denied["l7"]["http"]["method"], "GET");
    assert!(denied["source"]["identity"].as_u64().is_some_and(|id| id >= 256), "the client's own identity: {denied}");
    let served = request("/public/", 200).unwrap_or_else(|| panic!("the allowed request in the flow log: {flows:#?}"));
    assert_eq!(served["verdict"], "FORWARDED");
    assert!(served["l7"]["latencyNs"].as_u64().is_some_and(|ns| ns > 0));
    let table = cluster.run_ok(&["flows", "--pod", "default/client", "--verdict", "dropped", "--last", "5"]);
    assert!(table.contains("HTTP GET /private/ => 403"), "{table}");

    cluster.apply(&policy("/(public|private)/.*"));
    let widened = uptime();
    assert_eq!(outcomes(&cluster, "client", &both, widened + 1.0), ["ok", "ok"], "a changed rule applies to the running pods within a second");

    let (ok, _, stderr) = cluster.try_apply(&policy("/public/(["));
    assert!(!ok && stderr.contains("spec.ingress[0].http[0].path"), "a bad expression is refused naming its field: {stderr}");
    assert_eq!(outcomes(&cluster, "client", &both, uptime()), ["ok", "ok"], "and the policy in force is unchanged");

    cluster.run_ok(&["delete", "flotillanetworkpolicy", "web-http"]);
    let deleted = uptime();
    assert_eq!(outcomes(&cluster, "other", &public, deleted + 1.0), ["ok"], "without the policy everything is served again");
    assert_eq!(outcomes(&cluster, "client", &both, deleted + 1.0), ["ok", "ok"]);

    // The agent dies: the pods stay under the policy, closed rather than open. The policy goes
    // away while it is down: the redirect the killed agent left on the web pod, whose proxy died
    // with it, must not keep the port closed once an agent is back.
    cluster.apply(&policy("/public/.*"));
    assert_eq!(outcomes(&cluster, "client", &both, uptime() + 1.0), ["ok", "403"]);
    cluster.kill_agent();
    let down = uptime();
    // Logs are read through the agent: the fetches made while it is down are looked at later.
    std::thread::sleep(Duration::from_secs(5));
    cluster.run_ok(&["delete", "flotillanetworkpolicy", "web-http"]);
    cluster.start_processes();
    wait_for(Duration::from_secs(60), "the restarted agent to open the web pod again", || {
        let logs = cluster.try_run(&["logs", "other"]).unwrap_or_default();
        logs.lines().last().is_some_and(|l| l.ends_with(" ok")).then_some(())
    });
    let back = uptime();
    assert_eq!(outcomes_between(&cluster, "other", &public, down + 0.5, down + 5.0), ["fail"], "the datapath kept the last policy while no agent ran");
    assert_eq!(
        outcomes_between(&cluster, "client", &both, down + 0.5, down + 5.0),
        ["fail", "fail"],
        "and a port with HTTP rules was not served without its proxy"
    );
    assert_eq!(outcomes(&cluster, "other", &public, back), ["ok"], "the earlier agent's redirect is gone");
    assert_eq!(outcomes(&cluster, "client", &both, back), ["ok", "ok"]);
}
