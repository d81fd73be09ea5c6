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

const BROKERS: &str = r#"
apiVersion: flotilla.dev/v1alpha1
kind: Function
metadata: {name: on-motion}
spec:
  port: 8080
  timeout: 5s
  template:
    spec:
      containers: [{name: handler, image: busybox}]
  triggers:
  - jetstream: {url: "nats://127.0.0.1:4222", stream: SENSORS, filterSubject: "sensors.>", ackWait: 30s, maxDeliver: 4, backoff: [1s, 2s], maxAckPending: 100}
  - mqtt: {url: "mqtt://127.0.0.1:1883", topic: "cams/+/motion", qos: 2, clientId: motion-1}
  deadLetter: {subject: dead.sensors, topic: cams/dead}
"#;

#[test]
fn jetstream_and_mqtt_triggers() {
    let f = function(BROKERS).unwrap();
    validate(&f).unwrap();
    assert_eq!(f.spec.triggers[0].jetstream.as_ref().unwrap().backoff, ["1s", "2s"]);
    assert_eq!(f.spec.triggers[1].mqtt.as_ref().unwrap().qos, Some(2));
    let cases = [
        ("stream: SENSORS", "stream: SEN.SORS", "spec.triggers[0].jetstream.stream: Invalid value: \"SEN.SORS\""),
        ("ackWait: 30s", "ackWait: 5s", "spec.triggers[0].jetstream.ackWait: Invalid value: \"5s\": must be longer than spec.timeout"),
        ("ackWait: 30s", "ackWait: long", "spec.triggers[0].jetstream.ackWait: Invalid value: \"long\""),
        ("maxDeliver: 4", "maxDeliver: 0", "spec.triggers[0].jetstream.maxDeliver: Invalid value: \"0\""),
        ("maxDeliver: 4", "maxDeliver: 2", "spec.triggers[0].jetstream.backoff: Invalid value: \"2 waits\": must be fewer than maxDeliver (2)"),
        ("backoff: [1s, 2s]", "backoff: [1s, x]", "spec.triggers[0].jetstream.backoff[1]: Invalid value: \"x\""),
        ("filterSubject: \"sensors.>\"", "filterSubject: \"sensors.>.x\"", "spec.triggers[0].jetstream.filterSubject: Invalid value"),
        ("maxAckPending: 100", "maxAckPending: 0", "spec.triggers[0].jetstream.maxAckPending: Invalid value"),
        ("url: \"mqtt://127.0.0.1:1883\"", "url: \"mqtt://127.0.0.1:x\"", "spec.triggers[1].mqtt.url: Invalid value"),
        ("topic: \"cams/+/motion\"", "topic: \"cams/#/motion\"", "spec.triggers[1].mqtt.topic: Invalid value: \"cams/#/motion\""),
        ("topic: \"cams/+/motion\"", "topic: \"cams/x+/motion\"", "spec.triggers[1].mqtt.topic: Invalid value"),
        ("qos: 2", "qos: 3", "spec.triggers[1].mqtt.qos: Invalid value: \"3\": 0, 1 or 2"),
        ("clientId: motion-1", "clientId: \"a b\"", "spec.triggers[1].mqtt.clientId: Invalid value"),
        (
            "topic: cams/dead",
            "topic: cams/x/motion",
            "spec.deadLetter.topic: Invalid value: \"cams/x/motion\": spec.triggers[1] (cams/+/motion) would deliver it back",
        ),
        ("topic: cams/dead", "topic: \"cams/#\"", "spec.deadLetter.topic: Invalid value"),
        ("deadLetter: {subject: dead.sensors, topic: cams/dead}", "deadLetter: {subject: dead.sensors}", "spec.deadLetter.topic: Required value"),
        ("deadLetter: {subject: dead.sensors, topic: cams/dead}", "deadLetter: {topic: cams/dead}", "spec.deadLetter.subject: Required value"),
        (
            "subject: dead.sensors",
            "subject: sensors.dead",
            "spec.deadLetter.subject: Invalid value: \"sensors.dead\": spec.triggers[0] (sensors.>) would deliver it back",
        ),
        (
            "  - mqtt:",
            "  - nats: {url: \"nats://x:1\", subject: a}\n    mqtt:",
            "spec.triggers[1]: Invalid value: \"2 kinds\": exactly one of: nats, jetstream, mqtt",
        ),
    ];
    for (from, to, expected) in cases {
        assert!(BROKERS.contains(from), "{from}");
        let f = function(&BROKERS.replace(from, to)).unwrap();
        let err = validate(&f).unwrap_err().to_string();
        assert!(err.contains(expected), "{to}: {err}");
    }
}

#[test]
fn mqtt_topics() {
    assert!(is_mqtt_topic("a/b", false) && is_mqtt_topic("a/+/c", true) && is_mqtt_topic("#", true) && is_mqtt_topic("a//b", false));
    assert!(!is_mqtt_topic("a/+", false) && !is_mqtt_topic("a/#/b", true) && !is_mqtt_topic("a/b#", true) && !is_mqtt_topic("", true));
    assert!(mqtt_topic_matches("a/#", "a/b/c") && mqtt_topic_matches("a/#", "a") && mqtt_topic_matches("a/+/c", "a/b/c"));
    assert!(!mqtt_topic_matches("a/+", "a/b/c") && !mqtt_topic_matches("a/b", "a/c") && !mqtt_topic_matches("+", "a/b"));
    assert!(is_mqtt_url("mqtt://h:1883") && is_mqtt_url("mqtt://h") && !is_mqtt_url("mqtt://h:0") && !is_mqtt_url("tcp://h") && !is_mqtt_url("mqtt://"));
}
