use super::*;
use crate::manifest::{decode_document, parse_documents};

fn deployment_from(yaml: &str) -> Deployment {
    let docs = parse_documents(yaml).unwrap();
    let mut d: Deployment = decode_document(&docs[0]).unwrap();
    crate::defaults::deployment(&mut d);
    d
}

const GOOD: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: httpd
        image: busybox:1.35
        ports: [{containerPort: 8080}]
        resources: {requests: {cpu: 100m, memory: 16Mi}, limits: {memory: 32Mi}}
        readinessProbe: {httpGet: {port: 8080}}
"#;

#[test]
fn good_deployment_passes() {
    deployment(&deployment_from(GOOD)).unwrap();
}

#[test]
fn missing_image_names_the_field() {
    let d = deployment_from(&GOOD.replace("image: busybox:1.35", ""));
    let err = deployment(&d).unwrap_err().to_string();
    assert!(err.contains("spec.template.spec.containers[0].image: Required value"), "{err}");
}

#[test]
fn selector_must_match_template() {
    let d = deployment_from(&GOOD.replace("matchLabels: {app: web}", "matchLabels: {app: api}"));
    let err = deployment(&d).unwrap_err().to_string();
    assert!(err.contains("spec.template.metadata.labels"), "{err}");
}

#[test]
fn bad_values_are_each_reported() {
    let text = GOOD
        .replace("name: web,", "name: Web_1,")
        .replace("containerPort: 8080", "containerPort: 70000")
        .replace("cpu: 100m", "cpu: lots")
        .replace("memory: 16Mi}, limits", "memory: 64Mi}, limits")
        .replace("readinessProbe: {httpGet: {port: 8080}}", "readinessProbe: {}");
    let d = deployment_from(&text);
    let errors = deployment(&d).unwrap_err();
    let all = errors.to_string();
    for expected in [
        "metadata.name: Invalid value: \"Web_1\"",
        "spec.template.spec.containers[0].ports[0].containerPort",
        "spec.template.spec.containers[0].resources.requests[cpu]",
        "spec.template.spec.containers[0].resources.requests[memory]: Invalid value: \"64Mi\": must be less than or equal to memory limit 32Mi",
        "spec.template.spec.containers[0].readinessProbe: Invalid value",
    ] {
        assert!(all.contains(expected), "missing {expected} in {all}");
    }
}

#[test]
fn pod_updates_may_only_change_images() {
    let docs = parse_documents("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: a}]}\n").unwrap();
    let old: Pod = decode_document(&docs[0]).unwrap();
    let mut new = old.clone();
    new.spec.as_mut().unwrap().containers[0].image = Some("b".into());
    pod_update(&old, &new).unwrap();
    new.spec.as_mut().unwrap().containers[0].args = Some(vec!["x".into()]);
    assert!(pod_update(&old, &new).is_err());
}

#[test]
fn env_references_are_checked_field_by_field() {
    let with_env = |env: &str| {
        deployment_from(&GOOD.replace("        ports: [{containerPort: 8080}]", &format!("        ports: [{{containerPort: 8080}}]\n        env:\n{env}")))
    };
    let good = "        - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}\n        - {name: APP, valueFrom: {fieldRef: {fieldPath: \"metadata.labels['app']\"}}}\n        - {name: PW, valueFrom: {secretKeyRef: {name: db, key: password}}}\n        - {name: MEM, valueFrom: {resourceFieldRef: {resource: limits.memory}}}";
    deployment(&with_env(good)).unwrap();
    let cases = [
        ("        - {name: X, valueFrom: {fieldRef: {fieldPath: spec.secret}}}", "env[0].valueFrom.fieldRef.fieldPath: Unsupported value: \"spec.secret\""),
        ("        - {name: X, valueFrom: {}}", "env[0].valueFrom: Required value"),
        ("        - {name: X, value: v, valueFrom: {fieldRef: {fieldPath: metadata.name}}}", "env[0].valueFrom: Invalid value"),
        ("        - {name: X, valueFrom: {configMapKeyRef: {name: cfg, key: \"a/b\"}}}", "env[0].valueFrom.configMapKeyRef.key: Invalid value: \"a/b\""),
        ("        - {name: X, valueFrom: {resourceFieldRef: {resource: limits.gpu}}}", "env[0].valueFrom.resourceFieldRef.resource: Unsupported value"),
        ("        - {name: \"A=B\", value: v}", "env[0].name: Invalid value: \"A=B\""),
    ];
    for (env, expected) in cases {
        let err = deployment(&with_env(env)).unwrap_err().to_string();
        assert!(err.contains(&format!("spec.template.spec.containers[0].{expected}")), "{env}: {err}");
    }
}

#[test]
fn only_sidecars_restart_or_take_probes_among_init_containers() {
    let with_init = |init: &str| deployment_from(&GOOD.replace("      containers:\n", &format!("      initContainers:\n{init}      containers:\n")));
    deployment(&with_init(
        "      - {name: migrate, image: busybox}\n      - {name: proxy, image: envoy, restartPolicy: Always, readinessProbe: {tcpSocket: {port: 9901}}}\n",
    ))
    .unwrap();
    let cases = [
        ("      - {name: migrate, image: busybox, restartPolicy: Never}\n", "initContainers[0].restartPolicy: Unsupported value: \"Never\""),
        ("      - {name: migrate, image: busybox, livenessProbe: {tcpSocket: {port: 1}}}\n", "initContainers[0].livenessProbe: Invalid value"),
    ];
    for (init, expected) in cases {
        let err = deployment(&with_init(init)).unwrap_err().to_string();
        assert!(err.contains(&format!("spec.template.spec.{expected}")), "{init}: {err}");
    }
    let err = deployment(&deployment_from(&GOOD.replace("        image: busybox:1.35", "        image: busybox:1.35\n        restartPolicy: Always")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("spec.template.spec.containers[0].restartPolicy: Invalid value"), "{err}");
}

#[test]
fn a_node_pod_cidr_is_a_network_and_never_changes_once_set() {
    let node = |cidr: Option<&str>, cidrs: Option<Vec<&str>>| crate::Node {
        spec: Some(k8s_openapi::api::core::v1::NodeSpec {
            pod_cidr: cidr.map(str::to_string),
            pod_cidrs: cidrs.map(|c| c.into_iter().map(str::to_string).collect()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let errors = |new: &crate::Node, old: Option<&crate::Node>| {
        let mut errors = FieldErrors::default();
        node_pod_cidr(new, old, &mut errors);
        errors.into_result().err().map(|e| e.to_string()).unwrap_or_default()
    };
    let set = node(Some("10.88.3.0/24"), Some(vec!["10.88.3.0/24"]));
    assert_eq!(errors(&set, None), "");
    assert_eq!(errors(&node(None, None), None), "", "a node waiting for its network");
    assert_eq!(errors(&set, Some(&node(None, None))), "", "assigned once");
    assert_eq!(errors(&set, Some(&set)), "");
    for (bad, expected) in [
        (node(Some("10.88.3.1/24"), None), "spec.podCIDR: Invalid value: \"10.88.3.1/24\": host bits are set; the network is 10.88.3.0/24"),
        (node(Some("10.88.3.0"), None), "spec.podCIDR: Invalid value: \"10.88.3.0\": expected an IPv4 network"),
        (node(Some("10.88.3.0/33"), None), "is not a prefix length"),
        (node(Some("fd00::/64"), None), "is not an IPv4 address"),
        (node(Some("10.88.3.0/24"), Some(vec!["10.88.4.0/24"])), "spec.podCIDRs[0]: Invalid value: \"10.88.4.0/24\": must equal spec.podCIDR"),
        (node(None, Some(vec!["10.88.4.0/24"])), "spec.podCIDR: Required value"),
    ] {
        let got = errors(&bad, None);
        assert!(got.contains(expected), "{bad:?}: {got}");
    }
    let moved = errors(&node(Some("10.88.4.0/24"), Some(vec!["10.88.4.0/24"])), Some(&set));
    assert!(moved.contains("spec.podCIDR: Invalid value: \"10.88.4.0/24\": may not change once set (it is 10.88.3.0/24)"), "{moved}");
    assert!(errors(&node(None, None), Some(&set)).contains("may not change once set"));
}
