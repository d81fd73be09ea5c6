//! Identities through the binary: pods with the same namespace and labels share one numeric
//! Identity (a Deployment's replicas, whatever their pod-template-hash), another label set or
//! another namespace gets another, an Identity nobody needs is deleted after the grace period,
//! and bad Identity objects are refused naming the field.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use common::{wait_for, Cluster, IMAGE};

fn manifest() -> String {
    format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: lab}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 0
      containers: [{{name: main, image: {IMAGE}, command: ["sleep", "3600"]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: db, labels: {{app: db}}}}
spec:
  terminationGracePeriodSeconds: 0
  containers: [{{name: main, image: {IMAGE}, command: ["sleep", "3600"]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: lab, labels: {{app: web}}}}
spec:
  terminationGracePeriodSeconds: 0
  containers: [{{name: main, image: {IMAGE}, command: ["sleep", "3600"]}}]
"#
    )
}

/// (namespace, app label) → identity number.
fn identities(cluster: &Cluster) -> BTreeMap<(String, String), u32> {
    let list: Value = serde_json::from_str(&cluster.run_ok(&["get", "identities", "-o", "json"])).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let labels = i["spec"]["labels"].as_object().unwrap();
            assert!(!labels.contains_key("pod-template-hash"), "bookkeeping labels are not part of an identity: {i}");
            let key = (i["spec"]["namespace"].as_str().unwrap().to_string(), labels.get("app").and_then(Value::as_str).unwrap_or("").to_string());
            (key, i["metadata"]["name"].as_str().unwrap().parse().unwrap())
        })
        .collect()
}

#[test]
fn pods_share_an_identity_per_label_set_and_unused_ones_go() {
    let mut cluster = Cluster::start_with("identities", common::Mode::Up, &["--identity-gc-grace", "1s"]);
    cluster.apply(&manifest());
    cluster.wait_ready("app=web", 3, Duration::from_secs(60));
    let found = wait_for(Duration::from_secs(20), "three identities", || {
        let found = identities(&cluster);
        (found.len() == 3).then_some(found)
    });
    let key = |ns: &str, app: &str| (ns.to_string(), app.to_string());
    let numbers: std::collections::BTreeSet<u32> = found.values().copied().collect();
    assert_eq!(numbers.len(), 3, "one number per label set: {found:?}");
    assert!(numbers.iter().all(|n| *n >= 256), "numbers below 256 are reserved: {found:?}");
    assert!(found.contains_key(&key("default", "web")) && found.contains_key(&key("default", "db")) && found.contains_key(&key("lab", "web")), "{found:?}");
    let table = cluster.run_ok(&["get", "identities"]);
    assert!(table.contains("NAMESPACE") && table.contains("app=db"), "{table}");

    // Scaling the Deployment adds pods, not identities.
    cluster.run_ok(&["scale", "deployment/web", "--replicas", "3"]);
    cluster.wait_ready("app=web", 4, Duration::from_secs(60));
    assert_eq!(identities(&cluster), found, "the new replica shares its identity");

    // The db pod goes: its identity follows after the grace period; the others stay.
    cluster.run_ok(&["delete", "pod", "db"]);
    wait_for(Duration::from_secs(20), "the unused identity to be deleted", || (!identities(&cluster).contains_key(&key("default", "db"))).then_some(()));
    let left = identities(&cluster);
    assert_eq!(left.len(), 2, "{left:?}");
    assert_eq!(left[&key("default", "web")], found[&key("default", "web")], "an identity in use keeps its number");

    // Bad input names the field and changes nothing.
    let (ok, _, stderr) =
        cluster.try_apply("apiVersion: flotilla.dev/v1alpha1\nkind: Identity\nmetadata: {name: \"12\"}\nspec: {namespace: default, labels: {app: x}}\n");
    assert!(!ok && stderr.contains("metadata.name") && stderr.contains("from 256"), "{stderr}");
    let web = found[&key("default", "web")].to_string();
    let (ok, _, stderr) = cluster.try_apply(&format!(
        "apiVersion: flotilla.dev/v1alpha1\nkind: Identity\nmetadata: {{name: \"{web}\"}}\nspec: {{namespace: default, labels: {{app: other}}}}\n"
    ));
    assert!(!ok && stderr.contains("spec") && stderr.contains("one label set for life"), "{stderr}");
    assert_eq!(identities(&cluster), left, "nothing changed");
}
