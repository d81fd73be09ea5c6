use super::*;
use crate::{Deployment, Pod};

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: httpd
        image: busybox
---
---
{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
"#;

#[test]
fn several_documents_yaml_and_json() {
    let docs = parse_documents(WEB).unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].resource.kind, "Deployment");
    assert_eq!(docs[1].index, 3);
    let d: Deployment = decode_document(&docs[0]).unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(3));
    let p: Pod = decode_document(&docs[1]).unwrap();
    assert_eq!(p.metadata.name.as_deref(), Some("p"));
}

#[test]
fn unknown_field_is_named_with_its_path() {
    let text = WEB.replace("image: busybox", "image: busybox\n        imagePolicy: x");
    let docs = parse_documents(&text).unwrap();
    let err = decode_document::<Deployment>(&docs[0]).unwrap_err().to_string();
    assert!(err.contains("spec.template.spec.containers[0].imagePolicy: unknown field"), "{err}");
}

#[test]
fn wrong_type_is_named_with_its_path() {
    let text = WEB.replace("replicas: 3", "replicas: three");
    let docs = parse_documents(&text).unwrap();
    let err = decode_document::<Deployment>(&docs[0]).unwrap_err().to_string();
    assert!(err.contains("spec.replicas: invalid type"), "{err}");
}

#[test]
fn syntax_errors_and_unknown_kinds() {
    assert!(matches!(parse_documents("a: [1, 2"), Err(ManifestError::Syntax { document: 1, .. })));
    let err = parse_documents("apiVersion: v1\nkind: Widget\n").unwrap_err();
    assert!(err.to_string().contains("no kind \"Widget\""), "{err}");
    let err = parse_documents("kind: Pod\n").unwrap_err();
    assert!(err.to_string().contains("apiVersion: Required value"), "{err}");
    assert!(matches!(parse_documents("- 1\n- 2\n"), Err(ManifestError::Shape { .. })));
}

#[test]
fn oversized_manifest_is_refused() {
    let text = "#".repeat(MAX_MANIFEST_BYTES + 1);
    assert!(matches!(parse_documents(&text), Err(ManifestError::TooLarge { .. })));
}

#[test]
fn list_items_are_documents() {
    let text = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"}}]}"#;
    let docs = parse_documents(text).unwrap();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].resource.kind, "Namespace");
}
