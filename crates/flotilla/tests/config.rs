//! ConfigMaps and Secrets through the built binary: stored with `stringData` folded into `data`,
//! bad keys refused with the field named, and their values reaching a container's environment
//! (with pod fields and `$(VAR)` expansion); a pod whose ConfigMap is missing waits in
//! `CreateContainerConfigError` and starts once it exists.

mod common;

use std::time::Duration;

use common::{wait_for, Cluster, IMAGE};

fn pod() -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: configured, labels: {{app: configured}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {IMAGE}
    command: ["sh", "-c", "echo \"level=$LOG_LEVEL password=$DB_PASSWORD pod=$POD ip=$POD_IP cfg_url=$CFG_url greeting=$(GREETING)\"; exec sleep 3600"]
    envFrom:
    - configMapRef: {{name: settings}}
      prefix: CFG_
    env:
    - {{name: LOG_LEVEL, valueFrom: {{configMapKeyRef: {{name: settings, key: level}}}}}}
    - {{name: DB_PASSWORD, valueFrom: {{secretKeyRef: {{name: db, key: password}}}}}}
    - {{name: POD, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
    - {{name: POD_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}
    - {{name: GREETING, value: "hello $(POD)"}}
"#
    )
}

const SECRET: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: db}
stringData: {password: s3cret}
"#;

const SETTINGS: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {level: debug, url: "http://db:5432"}
"#;

#[test]
fn config_maps_and_secrets_reach_the_environment_once_they_exist() {
    let mut cluster = Cluster::up("config");
    cluster.apply(SECRET);
    let secret = cluster.get("secret", "db");
    assert_eq!(secret["data"]["password"], "czNjcmV0", "stringData is stored base64 in data: {secret}");
    assert!(secret.get("stringData").is_none() && secret["type"] == "Opaque", "{secret}");

    let (ok, _, err) = cluster.try_apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {\"bad/key\": x}\n");
    assert!(!ok && err.contains("data[bad/key]: Invalid value"), "a bad key must be refused by name: {err}");
    assert!(cluster.try_run(&["get", "configmap", "settings"]).is_err(), "a refused ConfigMap must not be stored");

    // The pod comes first: its ConfigMap does not exist yet.
    cluster.apply(&pod());
    wait_for(Duration::from_secs(30), "the pod to wait for its ConfigMap", || {
        let pod = cluster.get("pod", "configured");
        let waiting = &pod["status"]["containerStatuses"][0]["state"]["waiting"];
        (waiting["reason"] == "CreateContainerConfigError" && waiting["message"].as_str()?.contains("configmap \"settings\" not found")).then_some(())
    });
    cluster.apply(SETTINGS);
    let pod = &cluster.wait_ready("app=configured", 1, Duration::from_secs(60))[0];
    let ip = pod["status"]["podIP"].as_str().expect("pod IP");
    let logs = wait_for(Duration::from_secs(10), "the container's line", || {
        let out = cluster.run_ok(&["logs", "configured"]);
        (!out.trim().is_empty()).then_some(out)
    });
    assert_eq!(logs.trim(), format!("level=debug password=s3cret pod=configured ip={ip} cfg_url=http://db:5432 greeting=hello configured"));
    let listed = cluster.run_ok(&["get", "configmaps"]);
    assert!(listed.lines().any(|l| l.starts_with("settings") && l.split_whitespace().nth(1) == Some("2")), "{listed}");

    cluster.delete_everything();
    cluster.assert_host_clean();
}
