use super::*;
use crate::manifest::{decode_document, parse_documents};

const GOOD: &str = r#"
apiVersion: flotilla.dev/v1alpha1
kind: Function
metadata: {name: on-motion}
spec:
  port: 8080
  template:
    spec:
      containers: [{name: handler, image: busybox}]
  triggers:
  - nats: {url: "nats://127.0.0.1:4222", subject: "sensors.*.motion"}
  scaling: {minReplicas: 0, maxReplicas: 3, scaleDownDelay: 5s}
  retries: {count: 2, backoff: 100ms}
  deadLetter: {subject: sensors.dead}
"#;

fn function(yaml: &str) -> Result<Function, String> {
    let docs = parse_documents(yaml).map_err(|e| e.to_string())?;
    decode_document(&docs[0]).map_err(|e| e.to_string())
}

#[test]
fn a_good_function_passes() {
    let f = function(GOOD).unwrap();
    validate(&f).unwrap();
    assert_eq!(f.spec.triggers[0].nats.as_ref().unwrap().subject, "sensors.*.motion");
}

#[test]
fn bad_specs_name_the_field() {
    let cases = [
        ("port: 8080", "port: 0", "spec.port: Invalid value: \"0\""),
        ("subject: \"sensors.*.motion\"", "subject: \"sensors.>.motion\"", "spec.triggers[0].nats.subject: Invalid value"),
        ("url: \"nats://127.0.0.1:4222\"", "url: \"http://x\"", "spec.triggers[0].nats.url: Invalid value"),
        ("maxReplicas: 3", "maxReplicas: 0", "spec.scaling.maxReplicas: Invalid value"),
        ("scaleDownDelay: 5s", "scaleDownDelay: soon", "spec.scaling.scaleDownDelay: Invalid value: \"soon\""),
        ("backoff: 100ms", "backoff: \"100\"", "spec.retries.backoff: Invalid value"),
        ("subject: sensors.dead", "subject: \"sensors.*\"", "spec.deadLetter.subject: Invalid value"),
        (
            "subject: sensors.dead",
            "subject: sensors.cam.motion",
            "spec.deadLetter.subject: Invalid value: \"sensors.cam.motion\": spec.triggers[0] (sensors.*.motion) would deliver it back",
        ),
        ("containers: [{name: handler, image: busybox}]", "containers: [{name: handler}]", "spec.template.spec.containers[0].image: Required value"),
    ];
    for (from, to, expected) in cases {
        let f = function(&GOOD.replace(from, to)).unwrap();
        let err = validate(&f).unwrap_err().to_string();
        assert!(err.contains(expected), "{to}: {err}");
    }
    let err = function(&GOOD.replace("port: 8080", "port: 8080\n  replicas: 3")).unwrap_err();
    assert!(err.contains("spec.replicas: unknown field"), "{err}");
}

#[test]
fn subjects_and_durations() {
    assert!(is_nats_subject("a.b.c", false) && is_nats_subject("a.*.c", true) && is_nats_subject("a.>", true));
    assert!(!is_nats_subject("a.*", false) && !is_nats_subject("a..b", true) && !is_nats_subject("a b", true) && !is_nats_subject("", true));
    assert!(!is_nats_subject("a.>.b", true) && !is_nats_subject("a.b*", true));
    assert!(nats_subject_matches("a.>", "a.b.c") && nats_subject_matches("a.*.c", "a.b.c") && nats_subject_matches("a.b", "a.b"));
    assert!(!nats_subject_matches("a.>", "a") && !nats_subject_matches("a.*", "a.b.c") && !nats_subject_matches("a.b", "a.c"));
    assert_eq!(parse_duration("250ms").unwrap(), std::time::Duration::from_millis(250));
    assert_eq!(parse_duration("2m").unwrap(), std::time::Duration::from_secs(120));
    assert!(parse_duration("1.5s").is_err());
}
