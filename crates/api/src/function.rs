//! `Function` (`flotilla.dev/v1alpha1`): a workload started by broker messages. Each message is
//! delivered to a replica as an HTTP POST in the CloudEvents binary mode; replicas scale with
//! the backlog, down to zero.
//!
//! ```yaml
//! apiVersion: flotilla.dev/v1alpha1
//! kind: Function
//! metadata: {name: on-motion}
//! spec:
//!   port: 8080                      # where the handler listens in its pod
//!   path: /                         # the path events are POSTed to
//!   template:                       # a pod template, as in a Deployment
//!     spec:
//!       containers: [{name: handler, image: registry.lan/motion:1}]
//!   triggers:
//!   - nats: {url: "nats://10.0.0.5:4222", subject: "sensors.*.motion"}
//!   - jetstream: {url: "nats://10.0.0.5:4222", stream: SENSORS, ackWait: 30s, maxDeliver: 5}
//!   - mqtt: {url: "mqtt://10.0.0.6:1883", topic: "cams/+/motion", qos: 1}
//!   scaling: {minReplicas: 0, maxReplicas: 5, targetInFlight: 4, scaleDownDelay: 30s}
//!   concurrency: 4                  # events in flight per replica at most
//!   timeout: 10s                    # per delivery
//!   retries: {count: 3, backoff: 200ms}
//!   deadLetter: {subject: "sensors.dead", topic: "cams/dead"}
//! ```
//!
//! NATS core is at most once: what arrives while the dispatcher is away is gone. JetStream and
//! MQTT at QoS 1 or 2 are at least once: the broker keeps each message until the dispatcher
//! settles it, after the handler answered 2xx or after the dead letter was published.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde::{Deserialize, Serialize};

use crate::field::{index, join, FieldError, FieldErrors};
use crate::validation;
use crate::ObjectMeta;

/// API group and version of the Function kind.
pub const API_VERSION: &str = "flotilla.dev/v1alpha1";

/// The label every pod of a Function carries, with the Function's name.
pub const FUNCTION_LABEL: &str = "flotilla.dev/function";

/// The label of a Function's warm-pool pods (`"true"`): started, frozen, taking no events
/// until the dispatcher claims one by removing the label and [`PAUSED_ANNOTATION`].
pub const WARM_LABEL: &str = "flotilla.dev/warm";

/// A pod annotated `"true"` has its containers frozen by the agent once started (the cgroup
/// freezer, `runc pause`), and thawed when the annotation goes.
pub const PAUSED_ANNOTATION: &str = "flotilla.dev/paused";

/// A Function.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Function {
    /// `flotilla.dev/v1alpha1`.
    #[serde(default)]
    pub api_version: String,
    /// `Function`.
    #[serde(default)]
    pub kind: String,
    /// Name and namespace.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What runs and what starts it.
    #[serde(default)]
    pub spec: FunctionSpec,
    /// What the dispatcher last reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<FunctionStatus>,
}

impl k8s_openapi::Resource for Function {
    type Scope = k8s_openapi::NamespaceResourceScope;
    const API_VERSION: &'static str = API_VERSION;
    const GROUP: &'static str = "flotilla.dev";
    const KIND: &'static str = "Function";
    const VERSION: &'static str = "v1alpha1";
    const URL_PATH_SEGMENT: &'static str = "functions";
}

impl k8s_openapi::Metadata for Function {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// What a Function runs and what starts it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionSpec {
    /// The pods that handle events.
    #[serde(default)]
    pub template: PodTemplateSpec,
    /// The port the handler listens on.
    #[serde(default)]
    pub port: i32,
    /// The HTTP path events are POSTed to (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The broker subscriptions that feed it.
    #[serde(default)]
    pub triggers: Vec<Trigger>,
    /// How replicas follow the load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<Scaling>,
    /// Events in flight per replica at most (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// How long one delivery may take (default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Deliveries again after a failure (non-2xx, timeout, crash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<Retries>,
    /// Where events that exhausted their retries go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetter>,
    /// Pods kept started and frozen beside the replicas (default 0, at most `maxReplicas`):
    /// an event that needs a new replica thaws one instead of starting a pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_pool: Option<u32>,
}

/// One broker subscription: exactly one of its fields is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    /// A NATS core subject (`*` matches one token, `>` the rest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<NatsTrigger>,
    /// A JetStream stream, read by a durable consumer with explicit acks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jetstream: Option<JetStreamTrigger>,
    /// An MQTT topic filter (`+` one level, `#` the rest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<MqttTrigger>,
}

/// A durable JetStream consumer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JetStreamTrigger {
    /// The server, `nats://host:port`.
    #[serde(default)]
    pub url: String,
    /// The stream, which must exist.
    #[serde(default)]
    pub stream: String,
    /// The durable consumer's name (default `flotilla-<namespace>-<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
    /// Only the stream's messages on these subjects (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_subject: Option<String>,
    /// How long the server waits for the ack before it delivers again (default the larger of
    /// `30s` and twice `spec.timeout`); must be longer than `spec.timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_wait: Option<String>,
    /// Deliveries at most, the first included (default `spec.retries.count` + 1); then the
    /// message goes to the dead letter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_deliver: Option<i64>,
    /// Waits before the server's redeliveries, one per delivery (default: `spec.retries.backoff`
    /// doubling after each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backoff: Vec<String>,
    /// Messages handed out and not yet settled at most (default twice `maxReplicas` ×
    /// `targetInFlight`): the server keeps the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ack_pending: Option<i64>,
}

/// An MQTT 3.1.1 subscription.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MqttTrigger {
    /// The broker, `mqtt://host:port`.
    #[serde(default)]
    pub url: String,
    /// The topic filter.
    #[serde(default)]
    pub topic: String,
    /// 0 (at most once), 1 (at least once, the default) or 2; with 1 or 2 the session is
    /// persistent: the broker keeps messages while the dispatcher is away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<u8>,
    /// The client id the broker keeps the session under (default
    /// `flotilla-<namespace>-<name>-<trigger index>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// A NATS core subscription.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NatsTrigger {
    /// The server, `nats://host:port`.
    #[serde(default)]
    pub url: String,
    /// The subject, with wildcards.
    #[serde(default)]
    pub subject: String,
    /// A queue group, so several subscribers share the messages (default: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
}

/// How replicas follow the load.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scaling {
    /// Replicas kept when idle (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<i32>,
    /// Replicas at most (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<i32>,
    /// Backlog plus in-flight events per replica the scaler aims for (default the concurrency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_in_flight: Option<u32>,
    /// How long the load must stay lower before replicas are removed (default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay: Option<String>,
}

/// Retries of a failed delivery.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Retries {
    /// Deliveries after the first (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// The first wait before a retry, doubling after each (default `100ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<String>,
}

/// Where an event goes when it failed every delivery, on the broker it came from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// A NATS subject, for events of `nats` and `jetstream` triggers (stored with an ack where
    /// a stream takes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// An MQTT topic, for events of `mqtt` triggers (published at QoS 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

/// What the dispatcher last reported about a Function.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionStatus {
    /// Replicas asked for.
    #[serde(default)]
    pub replicas: i32,
    /// Replicas ready to take events.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Events waiting for a replica.
    #[serde(default)]
    pub backlog: u64,
    /// Events being handled.
    #[serde(default)]
    pub in_flight: u64,
    /// Events received, ever.
    #[serde(default)]
    pub received: u64,
    /// Events a replica acknowledged (2xx).
    #[serde(default)]
    pub acked: u64,
    /// Events sent to the dead-letter destination.
    #[serde(default)]
    pub dead_lettered: u64,
    /// Replicas started because events arrived while none was ready.
    #[serde(default)]
    pub cold_starts: u64,
    /// Events received per second, over the last status period.
    #[serde(default)]
    pub received_per_second: f64,
    /// Events acknowledged per second, over the last status period.
    #[serde(default)]
    pub acked_per_second: f64,
}

/// A short description of a Function's triggers: `nats demo.>, jetstream JOBS, mqtt cams/#`.
pub fn triggers_summary(spec: &FunctionSpec) -> String {
    let one = |t: &Trigger| {
        if let Some(n) = &t.nats {
            format!("nats {}", n.subject)
        } else if let Some(j) = &t.jetstream {
            format!("jetstream {}{}", j.stream, j.filter_subject.as_deref().map(|f| format!(" ({f})")).unwrap_or_default())
        } else if let Some(m) = &t.mqtt {
            format!("mqtt {} qos{}", m.topic, m.qos.unwrap_or(1))
        } else {
            "-".into()
        }
    };
    spec.triggers.iter().map(one).collect::<Vec<_>>().join(", ")
}

/// Parses `500ms`, `10s`, `5m`: the durations Function specs use.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number.parse().map_err(|_| format!("\"{text}\" is not a duration: use e.g. 500ms, 10s or 5m"))?;
    let millis = match unit {
        "ms" => value,
        "s" => value.saturating_mul(1000),
        "m" => value.saturating_mul(60_000),
        "h" => value.saturating_mul(3_600_000),
        _ => return Err(format!("\"{text}\" has no unit ms, s, m or h")),
    };
    Ok(std::time::Duration::from_millis(millis))
}

fn duration(value: Option<&String>, path: &str, errors: &mut FieldErrors) {
    if let Some(text) = value {
        if let Err(why) = parse_duration(text) {
            errors.push(FieldError::invalid(path, text, &why));
        }
    }
}

/// True for a NATS subject to subscribe to: dot-separated tokens without whitespace, `*` a
/// whole token, `>` only as the last token.
pub fn is_nats_subject(subject: &str, wildcards: bool) -> bool {
    let tokens: Vec<&str> = subject.split('.').collect();
    !subject.is_empty()
        && tokens.iter().enumerate().all(|(i, t)| {
            let plain = !t.is_empty() && !t.contains(|c: char| c.is_whitespace() || c == '*' || c == '>');
            plain || (wildcards && (*t == "*" || (*t == ">" && i + 1 == tokens.len())))
        })
}

/// True when the subscription `filter` (with `*` and `>`) receives messages on `subject`.
pub fn nats_subject_matches(filter: &str, subject: &str) -> bool {
    let (mut f, mut s) = (filter.split('.'), subject.split('.'));
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

fn nats_url(url: &str, path: &str, errors: &mut FieldErrors) {
    if !(url.starts_with("nats://") && url.len() > "nats://".len()) {
        errors.push(FieldError::invalid(path, url, "a NATS server URL, nats://host:port"));
    }
}

/// True for `mqtt://host` or `mqtt://host:port`.
pub fn is_mqtt_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("mqtt://") else { return false };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, Some(p)),
        _ => (rest, None),
    };
    !host.is_empty() && !host.contains(['/', '@', ' ']) && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0))
}

/// True for an MQTT topic (or, with `wildcards`, a topic filter): `/`-separated levels, `+` a
/// whole level, `#` alone as the last level, no NUL.
pub fn is_mqtt_topic(topic: &str, wildcards: bool) -> bool {
    let levels: Vec<&str> = topic.split('/').collect();
    !topic.is_empty()
        && topic.len() <= 65535
        && !topic.contains('\0')
        && levels.iter().enumerate().all(|(i, l)| {
            let plain = !l.contains(['+', '#']);
            plain || (wildcards && (*l == "+" || (*l == "#" && i + 1 == levels.len())))
        })
}

/// True when the MQTT filter (with `+` and `#`) receives messages on `topic`.
pub fn mqtt_topic_matches(filter: &str, topic: &str) -> bool {
    let (mut f, mut t) = (filter.split('/'), topic.split('/'));
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A JetStream stream or consumer name: no whitespace, `.`, `*`, `>`, path separators.
fn is_jetstream_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && !name.contains(|c: char| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
}

fn validate_jetstream(js: &JetStreamTrigger, path: &str, timeout: std::time::Duration, errors: &mut FieldErrors) {
    nats_url(&js.url, &join(path, "url"), errors);
    if !is_jetstream_name(&js.stream) {
        errors.push(FieldError::invalid(join(path, "stream"), &js.stream, "a stream name without spaces, `.`, `*`, `>` or `/`"));
    }
    if let Some(consumer) = js.consumer.as_deref().filter(|c| !is_jetstream_name(c)) {
        errors.push(FieldError::invalid(join(path, "consumer"), consumer, "a consumer name without spaces, `.`, `*`, `>` or `/`"));
    }
    if let Some(filter) = js.filter_subject.as_deref().filter(|f| !is_nats_subject(f, true)) {
        errors.push(FieldError::invalid(join(path, "filterSubject"), filter, "dot-separated tokens; `*` is one token, `>` the rest"));
    }
    if let Some(wait) = &js.ack_wait {
        match parse_duration(wait) {
            Err(why) => errors.push(FieldError::invalid(join(path, "ackWait"), wait, &why)),
            Ok(w) if w <= timeout => errors.push(FieldError::invalid(
                join(path, "ackWait"),
                wait,
                &format!("must be longer than spec.timeout ({timeout:?}), or the server delivers events again while they are handled"),
            )),
            Ok(_) => {}
        }
    }
    if let Some(max) = js.max_deliver.filter(|m| *m < 1) {
        errors.push(FieldError::invalid(join(path, "maxDeliver"), max, "must be ≥ 1"));
    }
    for (i, wait) in js.backoff.iter().enumerate() {
        duration(Some(wait), &index(&join(path, "backoff"), i), errors);
    }
    if let Some(max) = js.max_deliver.filter(|m| *m >= 1 && !js.backoff.is_empty() && (js.backoff.len() as i64) >= *m) {
        errors.push(FieldError::invalid(join(path, "backoff"), format!("{} waits", js.backoff.len()), &format!("must be fewer than maxDeliver ({max})")));
    }
    if let Some(max) = js.max_ack_pending.filter(|m| *m < 1) {
        errors.push(FieldError::invalid(join(path, "maxAckPending"), max, "must be ≥ 1"));
    }
}

fn dead_letter(spec: &FunctionSpec, dead: &DeadLetter, errors: &mut FieldErrors) {
    let has_nats = spec.triggers.iter().any(|t| t.nats.is_some() || t.jetstream.is_some());
    let has_mqtt = spec.triggers.iter().any(|t| t.mqtt.is_some());
    if has_nats && dead.subject.is_none() {
        errors.push(FieldError::required("spec.deadLetter.subject", "where failed events of the nats and jetstream triggers go"));
    }
    if has_mqtt && dead.topic.is_none() {
        errors.push(FieldError::required("spec.deadLetter.topic", "where failed events of the mqtt triggers go"));
    }
    if let Some(subject) = dead.subject.as_deref() {
        if !is_nats_subject(subject, false) {
            errors.push(FieldError::invalid("spec.deadLetter.subject", subject, "a subject to publish to (no wildcards)"));
        }
        // A dead letter the Function's own triggers receive would be handled (and fail) again.
        let looping = spec.triggers.iter().enumerate().find_map(|(i, t)| {
            let filter = t.nats.as_ref().map(|n| n.subject.as_str()).or(t.jetstream.as_ref().and_then(|j| j.filter_subject.as_deref()))?;
            nats_subject_matches(filter, subject).then_some((i, filter))
        });
        if let Some((i, filter)) = looping {
            errors.push(FieldError::invalid(
                "spec.deadLetter.subject",
                subject,
                &format!("spec.triggers[{i}] ({filter}) would deliver it back to this function; use a subject outside it"),
            ));
        }
    }
    if let Some(topic) = dead.topic.as_deref() {
        if !is_mqtt_topic(topic, false) {
            errors.push(FieldError::invalid("spec.deadLetter.topic", topic, "a topic to publish to (no wildcards)"));
        }
        let looping = spec.triggers.iter().enumerate().find_map(|(i, t)| {
            let filter = t.mqtt.as_ref().map(|m| m.topic.as_str())?;
            mqtt_topic_matches(filter, topic).then_some((i, filter))
        });
        if let Some((i, filter)) = looping {
            errors.push(FieldError::invalid(
                "spec.deadLetter.topic",
                topic,
                &format!("spec.triggers[{i}] ({filter}) would deliver it back to this function; use a topic outside it"),
            ));
        }
    }
}

/// Validates a Function.
pub fn validate(function: &Function) -> Result<(), FieldErrors> {
    let mut errors = FieldErrors::default();
    validation::metadata(&function.metadata, false, &mut errors);
    let spec = &function.spec;
    match spec.template.spec.as_ref() {
        None => errors.push(FieldError::required("spec.template.spec", "the pods that handle events")),
        Some(pod) => validation::pod_spec(pod, "spec.template.spec", &mut errors),
    }
    if !(1..=65535).contains(&spec.port) {
        errors.push(FieldError::invalid("spec.port", spec.port, "the port the handler listens on, 1 to 65535"));
    }
    if let Some(path) = spec.path.as_deref() {
        if !path.starts_with('/') || path.contains(char::is_whitespace) {
            errors.push(FieldError::invalid("spec.path", path, "an absolute URL path without spaces"));
        }
    }
    if spec.triggers.is_empty() {
        errors.push(FieldError::required("spec.triggers", "at least one trigger, e.g. nats: {url: nats://host:4222, subject: events.>}"));
    }
    let timeout = spec.timeout.as_deref().and_then(|t| parse_duration(t).ok()).unwrap_or(std::time::Duration::from_secs(30));
    for (i, trigger) in spec.triggers.iter().enumerate() {
        let path = index("spec.triggers", i);
        let set = [trigger.nats.is_some(), trigger.jetstream.is_some(), trigger.mqtt.is_some()].iter().filter(|s| **s).count();
        if set == 0 {
            errors.push(FieldError::required(&path, "one of: nats, jetstream, mqtt"));
            continue;
        }
        if set > 1 {
            errors.push(FieldError::invalid(&path, format!("{set} kinds"), "exactly one of: nats, jetstream, mqtt per trigger"));
            continue;
        }
        if let Some(nats) = &trigger.nats {
            let npath = join(&path, "nats");
            nats_url(&nats.url, &join(&npath, "url"), &mut errors);
            if !is_nats_subject(&nats.subject, true) {
                errors.push(FieldError::invalid(join(&npath, "subject"), &nats.subject, "dot-separated tokens; `*` is one token, `>` the rest"));
            }
            if let Some(queue) = nats.queue.as_deref().filter(|q| q.is_empty() || q.contains(char::is_whitespace)) {
                errors.push(FieldError::invalid(join(&npath, "queue"), queue, "a queue group name without spaces"));
            }
        }
        if let Some(js) = &trigger.jetstream {
            validate_jetstream(js, &join(&path, "jetstream"), timeout, &mut errors);
        }
        if let Some(mqtt) = &trigger.mqtt {
            let mpath = join(&path, "mqtt");
            if !is_mqtt_url(&mqtt.url) {
                errors.push(FieldError::invalid(join(&mpath, "url"), &mqtt.url, "an MQTT broker URL, mqtt://host:port"));
            }
            if !is_mqtt_topic(&mqtt.topic, true) {
                errors.push(FieldError::invalid(join(&mpath, "topic"), &mqtt.topic, "levels separated by `/`; `+` is one whole level, `#` the last"));
            }
            if let Some(qos) = mqtt.qos.filter(|q| *q > 2) {
                errors.push(FieldError::invalid(join(&mpath, "qos"), qos, "0, 1 or 2"));
            }
            if let Some(id) = mqtt.client_id.as_deref().filter(|id| id.is_empty() || id.len() > 256 || id.contains(['+', '#', '/', ' '])) {
                errors.push(FieldError::invalid(join(&mpath, "clientId"), id, "1 to 256 characters without spaces, `+`, `#` or `/`"));
            }
        }
    }
    if let Some(scaling) = &spec.scaling {
        let (min, max) = (scaling.min_replicas.unwrap_or(0), scaling.max_replicas.unwrap_or(10));
        if min < 0 {
            errors.push(FieldError::invalid("spec.scaling.minReplicas", min, "must be ≥ 0"));
        }
        if max < 1 || max < min {
            errors.push(FieldError::invalid("spec.scaling.maxReplicas", max, "must be ≥ 1 and ≥ minReplicas"));
        }
        if scaling.target_in_flight == Some(0) {
            errors.push(FieldError::invalid("spec.scaling.targetInFlight", 0, "must be ≥ 1"));
        }
        duration(scaling.scale_down_delay.as_ref(), "spec.scaling.scaleDownDelay", &mut errors);
    }
    if let Some(pool) = spec.warm_pool {
        let max = spec.scaling.as_ref().and_then(|s| s.max_replicas).unwrap_or(10);
        if i64::from(pool) > i64::from(max) {
            errors.push(FieldError::invalid("spec.warmPool", pool, &format!("must be at most spec.scaling.maxReplicas ({max})")));
        }
    }
    if spec.concurrency == Some(0) {
        errors.push(FieldError::invalid("spec.concurrency", 0, "must be ≥ 1"));
    }
    duration(spec.timeout.as_ref(), "spec.timeout", &mut errors);
    if let Some(retries) = &spec.retries {
        duration(retries.backoff.as_ref(), "spec.retries.backoff", &mut errors);
    }
    if let Some(dead) = &spec.dead_letter {
        dead_letter(spec, dead, &mut errors);
    }
    errors.into_result()
}

#[cfg(test)]
mod tests;
