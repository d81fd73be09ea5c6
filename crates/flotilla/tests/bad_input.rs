//! Bad input through the real API server and CLI: each case gets a 4xx `Status` naming the
//! problem, and the store is unchanged (the objects, with their resourceVersions, are intact and
//! no new ones appear).

mod common;

use std::time::Duration;

use serde_json::{json, Value};

use common::{Cluster, IMAGE};

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
    runtime: tokio::runtime::Runtime,
}

impl Api {
    fn new(cluster: &Cluster) -> Api {
        let config = client::Kubeconfig::load(&cluster.kubeconfig()).unwrap();
        let (server, ca, token) = config.current().unwrap();
        let ca = reqwest::Certificate::from_pem(ca.unwrap().as_bytes()).unwrap();
        let http = reqwest::Client::builder().use_rustls_tls().add_root_certificate(ca).timeout(Duration::from_secs(10)).build().unwrap();
        Api { http, base: server, token, runtime: tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap() }
    }

    /// Sends a request; returns the status code and the body as JSON (Null if not JSON).
    fn send(&self, method: &str, path: &str, content_type: &str, body: Vec<u8>, token: Option<&str>) -> (u16, Value) {
        self.runtime.block_on(async {
            let mut request = self.http.request(method.parse().unwrap(), format!("{}{path}", self.base)).header("content-type", content_type).body(body);
            if let Some(t) = token.or(Some(&self.token)).filter(|t| !t.is_empty()) {
                request = request.bearer_auth(t);
            }
            let response = request.send().await.unwrap();
            let code = response.status().as_u16();
            let bytes = response.bytes().await.unwrap();
            (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
        })
    }

    fn json(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        self.send(method, path, "application/json", serde_json::to_vec(body).unwrap(), None)
    }

    fn yaml(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        self.send(method, path, "application/yaml", body.as_bytes().to_vec(), None)
    }

    /// Every pod and deployment of the default namespace (the node's heartbeats move the store
    /// revision, so the objects themselves are compared).
    fn state(&self) -> (Value, Value) {
        let (_, pods) = self.json("GET", "/api/v1/namespaces/default/pods", &Value::Null);
        let (_, deployments) = self.json("GET", "/apis/apps/v1/namespaces/default/deployments", &Value::Null);
        (pods["items"].clone(), deployments["items"].clone())
    }
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"nodeSelector": {"never": "scheduled"}, "containers": [{"name": "main", "image": IMAGE, "command": ["sleep", "3600"]}]}})
}

/// Asserts a 4xx `Status` whose message contains every one of `words`.
fn assert_status(case: &str, (code, body): (u16, Value), expected: u16, words: &[&str]) {
    assert_eq!(code, expected, "{case}: wrong HTTP code; body {body}");
    assert_eq!(body["kind"], "Status", "{case}: not a Status: {body}");
    assert_eq!(body["code"], expected, "{case}: {body}");
    let message = body["message"].as_str().unwrap_or("");
    for word in words {
        assert!(message.contains(word), "{case}: the message does not name {word:?}: {message}");
    }
}

#[test]
fn bad_input_gets_a_status_naming_the_problem_and_changes_nothing() {
    let cluster = Cluster::up("badinput");
    let api = Api::new(&cluster);
    let pods = "/api/v1/namespaces/default/pods";
    let (code, created) = api.json("POST", pods, &pod("keeper"));
    assert_eq!(code, 201, "{created}");
    let (code, _) = api.json(
        "POST",
        "/apis/apps/v1/namespaces/default/deployments",
        &json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "kept"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "kept"}},
                 "template": {"metadata": {"labels": {"app": "kept"}}, "spec": {"containers": [{"name": "c", "image": IMAGE}]}}}}),
    );
    assert_eq!(code, 201);
    // Let the scheduler record that the pod fits nowhere, so nothing else changes it.
    common::wait_for(Duration::from_secs(10), "the Unschedulable condition", || {
        let (_, p) = api.json("GET", &format!("{pods}/keeper"), &Value::Null);
        (p["status"]["conditions"][0]["reason"] == "Unschedulable").then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    let before = api.state();

    assert_status("malformed YAML", api.yaml("POST", pods, "apiVersion: v1\nkind: Pod\nmetadata: {name: [unclosed\n"), 400, &["line"]);
    assert_status("malformed JSON", api.send("POST", pods, "application/json", b"{\"kind\": \"Pod\",".to_vec(), None), 400, &["JSON"]);
    let mut unknown = pod("unknown-field");
    unknown["spec"]["containers"][0]["imagePolicy"] = json!("Always");
    assert_status("unknown field", api.json("POST", pods, &unknown), 400, &["spec.containers[0].imagePolicy", "unknown field"]);
    let mut wrong_type = pod("wrong-type");
    wrong_type["spec"]["containers"][0]["command"] = json!("sleep 3600");
    assert_status("wrong type", api.json("POST", pods, &wrong_type), 400, &["spec.containers[0].command"]);
    let mut missing = pod("missing-image");
    missing["spec"]["containers"][0].as_object_mut().unwrap().remove("image");
    assert_status("missing field", api.json("POST", pods, &missing), 422, &["spec.containers[0].image", "Required value"]);
    let mut bad_name = pod("Not_A_DNS_Name");
    bad_name["metadata"]["name"] = json!("Not_A_DNS_Name");
    assert_status("invalid name", api.json("POST", pods, &bad_name), 422, &["metadata.name"]);
    let mut huge = pod("huge");
    huge["metadata"]["annotations"] = json!({"blob": "x".repeat(4 << 20)});
    assert_status("oversized body", api.json("POST", pods, &huge), 413, &["too large"]);
    assert_status("unknown kind", api.json("POST", "/api/v1/namespaces/default/widgets", &json!({"kind": "Widget"})), 404, &["widgets"]);
    let mut mismatched = pod("mismatch");
    mismatched["kind"] = json!("Deployment");
    assert_status("kind not matching the path", api.json("POST", pods, &mismatched), 400, &["Deployment"]);
    assert_status("duplicate create", api.json("POST", pods, &pod("keeper")), 409, &["keeper", "already exists"]);
    let mut stale = created.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    stale["spec"]["containers"][0]["image"] = json!("localhost/other:1");
    assert_status("stale update", api.json("PUT", &format!("{pods}/keeper"), &stale), 409, &["keeper", "modified"]);
    let (_, mut forbidden) = api.json("GET", &format!("{pods}/keeper"), &Value::Null);
    forbidden["spec"]["containers"][0]["command"] = json!(["sh"]);
    assert_status("forbidden pod update", api.json("PUT", &format!("{pods}/keeper"), &forbidden), 422, &["spec"]);
    assert_status("missing namespace", api.json("POST", "/api/v1/namespaces/nowhere/pods", &pod("lost")), 404, &["nowhere"]);
    assert_status("no token", api.send("GET", pods, "application/json", Vec::new(), Some("")), 401, &[]);
    assert_status("wrong token", api.send("GET", pods, "application/json", Vec::new(), Some("not-a-token")), 401, &[]);

    let after = api.state();
    assert_eq!(before.0.as_array().unwrap().len(), 1);
    assert_eq!(before.0, after.0, "pods changed");
    assert_eq!(before.1, after.1, "deployments changed");

    // The CLI shows the same messages, with the file and document, and writes nothing either.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: bad}\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      containers:\n      - name: c\n        imagePolicy: Always\n").unwrap();
    let out = cluster.run(&["apply", "-f", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.yaml") && stderr.contains("spec.template.spec.containers[0].imagePolicy"), "{stderr}");
    let out = cluster.run(&["get", "widgets"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("widgets"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(api.state(), before, "the CLI's failed apply wrote something");
}
