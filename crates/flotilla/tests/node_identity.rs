//! Node identities through the built binary: the join token only joins; the agent keeps a token
//! of its own (mode 0600) that acts for its node only (its pods, its Lease, the Secrets its pods
//! use); another machine cannot take the node's name; and the agent endpoint serves only the
//! API server's client certificate.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{wait_for, Cluster, Mode, IMAGE};

/// `curl`s the API server as `token`; returns the HTTP code and the body.
fn call(cluster: &Cluster, token: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let ca = cluster.data_dir().join("pki/ca.crt");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-w", "\n%{http_code}", "--cacert", ca.to_str().unwrap(), "-X", method, "-H", &format!("Authorization: Bearer {token}")]);
    if let Some(body) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data", body]);
    }
    let out = cmd.arg(format!("https://127.0.0.1:{}{path}", cluster.port)).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let body = if out.status.success() { body.to_string() } else { format!("{body} (curl: {}, {})", out.status, String::from_utf8_lossy(&out.stderr)) };
    (code.trim().parse().unwrap_or(0), body)
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

#[test]
fn nodes_act_only_for_themselves_and_their_endpoint_serves_only_the_api_server() {
    let mut cluster = Cluster::start("identity", Mode::Split);
    let node = cluster.node.clone();
    let identity = cluster.agent_dir().join("identity");
    for secret in ["node-token", "node-secret", "serving.key"] {
        assert_eq!(mode_of(&identity.join(secret)), 0o600, "{secret} must be private");
    }
    let token = std::fs::read_to_string(identity.join("node-token")).unwrap().trim().to_string();
    assert!(token.starts_with(&format!("flnode:{node}:")), "{token}");
    let join_token = std::fs::read_to_string(cluster.data_dir().join("node-token")).unwrap().trim().to_string();

    // The join token joins and nothing else.
    let (code, body) = call(&cluster, &join_token, "GET", "/api/v1/pods", None);
    assert_eq!(code, 403, "the join token listed pods: {body}");
    let takeover = format!(r#"{{"nodeName": "{node}", "nodeSecret": "{}"}}"#, "f".repeat(64));
    let (code, body) = call(&cluster, &join_token, "POST", "/join", Some(&takeover));
    assert_eq!(code, 403, "another machine took the node's name: {body}");
    assert!(body.contains("in use by another machine"), "{body}");

    // The node's own token: reads what it needs, writes only what is its own.
    assert_eq!(call(&cluster, &token, "GET", "/api/v1/pods", None).0, 200);
    let other_status = r#"{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "someone-else"}, "status": {}}"#;
    let (code, body) = call(&cluster, &token, "PUT", "/api/v1/nodes/someone-else/status", Some(other_status));
    assert_eq!(code, 403, "a node wrote another node's status: {body}");
    let (code, body) = call(&cluster, &token, "POST", "/api/v1/nodes", Some(other_status));
    assert_eq!(code, 403, "a node created another node: {body}");
    cluster.apply("apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: {password: s3cret}\n");
    cluster.apply("apiVersion: v1\nkind: Secret\nmetadata: {name: vault}\nstringData: {key: k}\n");
    assert_eq!(call(&cluster, &token, "GET", "/api/v1/namespaces/default/secrets", None).0, 403, "a node listed secrets");
    assert_eq!(call(&cluster, &token, "GET", "/api/v1/namespaces/default/secrets/db", None).0, 403, "no pod of the node uses db yet");
    cluster.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: user, labels: {{app: user}}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {IMAGE}\n    command: [sh, -c, 'echo pw=$PW; exec sleep 3600']\n    env: [{{name: PW, valueFrom: {{secretKeyRef: {{name: db, key: password}}}}}}]\n"
    ));
    cluster.wait_ready("app=user", 1, Duration::from_secs(60));
    assert_eq!(call(&cluster, &token, "GET", "/api/v1/namespaces/default/secrets/db", None).0, 200, "the node's pod uses db");
    assert_eq!(call(&cluster, &token, "GET", "/api/v1/namespaces/default/secrets/vault", None).0, 403);
    cluster.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: elsewhere}}\nspec:\n  nodeName: another-node\n  containers:\n  - {{name: main, image: {IMAGE}}}\n"
    ));
    let pod = cluster.get("pod", "elsewhere");
    let (code, body) = call(&cluster, &token, "PUT", "/api/v1/namespaces/default/pods/elsewhere/status", Some(&pod.to_string()));
    assert_eq!(code, 403, "a node wrote the status of a pod bound elsewhere: {body}");
    assert_eq!(call(&cluster, &token, "DELETE", "/api/v1/namespaces/default/pods/elsewhere", None).0, 403);
    // No agent runs another-node to finish a graceful deletion.
    cluster.run_ok(&["delete", "pod", "elsewhere", "--grace-period", "0"]);

    // Logs come through the API server's mutual TLS; nothing else is served.
    let logs = wait_for(Duration::from_secs(10), "the pod's log line", || {
        let out = cluster.run_ok(&["logs", "user"]);
        (!out.trim().is_empty()).then_some(out)
    });
    assert_eq!(logs.trim(), "pw=s3cret");
    let node_obj = cluster.get("node", &node);
    let port = node_obj["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_i64().expect("agent port");
    let direct = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", "-H", &format!("Authorization: Bearer {token}")])
        .arg(format!("https://127.0.0.1:{port}/containerLogs/default/user/main"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&direct.stdout), "000", "the agent endpoint answered a caller without the API server's certificate");

    // A restarted agent keeps its identity.
    cluster.kill_agent();
    cluster.start_agent();
    wait_for(Duration::from_secs(30), "the node to be Ready again", || {
        let n = cluster.get("node", &node);
        common::node_ready(&n).then_some(())
    });
    let after = std::fs::read_to_string(identity.join("node-token")).unwrap();
    assert_eq!(after.trim(), token, "the agent joined again instead of using its identity");
    cluster.delete_everything();
    cluster.assert_host_clean();
}
