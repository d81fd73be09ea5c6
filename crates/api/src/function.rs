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
//!   scaling: {minReplicas: 0, maxReplicas: 5, targetInFlight: 4, scaleDownDelay: 30s}
//!   concurrency: 4                  # events in flight per replica at most
//!   timeout: 10s                    # per delivery
//!   retries: {count: 3, backoff: 200ms}
//!   deadLetter: {subject: "sensors.dead"}
//! ```

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde::{Deserialize, Serialize};

use crate::field::{index, join, FieldError, FieldErrors};
use crate::validation;
use crate::ObjectMeta;

/// API group and version of the Function kind.
pub const API_VERSION: &str = "flotilla.dev/v1alpha1";

/// The label every pod of a Function carries, with the Function's name.
pub const FUNCTION_LABEL: &str = "flotilla.dev/function";

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
}

/// One broker subscription.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    /// A NATS core subject (`*` matches one token, `>` the rest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<NatsTrigger>,
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

/// Where an event goes when it failed every delivery.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// A NATS subject on the trigger's server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
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
    for (i, trigger) in spec.triggers.iter().enumerate() {
        let path = index("spec.triggers", i);
        let Some(nats) = &trigger.nats else {
            errors.push(FieldError::required(&path, "one of: nats"));
            continue;
        };
        let npath = join(&path, "nats");
        if !(nats.url.starts_with("nats://") && nats.url.len() > "nats://".len()) {
            errors.push(FieldError::invalid(join(&npath, "url"), &nats.url, "a NATS server URL, nats://host:port"));
        }
        if !is_nats_subject(&nats.subject, true) {
            errors.push(FieldError::invalid(join(&npath, "subject"), &nats.subject, "dot-separated tokens; `*` is one token, `>` the rest"));
        }
        if let Some(queue) = nats.queue.as_deref().filter(|q| q.is_empty() || q.contains(char::is_whitespace)) {
            errors.push(FieldError::invalid(join(&npath, "queue"), queue, "a queue group name without spaces"));
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
    if spec.concurrency == Some(0) {
        errors.push(FieldError::invalid("spec.concurrency", 0, "must be ≥ 1"));
    }
    duration(spec.timeout.as_ref(), "spec.timeout", &mut errors);
    if let Some(retries) = &spec.retries {
        duration(retries.backoff.as_ref(), "spec.retries.backoff", &mut errors);
    }
    if let Some(subject) = spec.dead_letter.as_ref().and_then(|d| d.subject.as_deref()) {
        if !is_nats_subject(subject, false) {
            errors.push(FieldError::invalid("spec.deadLetter.subject", subject, "a subject to publish to (no wildcards)"));
        }
        // A dead letter the Function's own triggers receive would be handled (and fail) again.
        let looping = spec.triggers.iter().enumerate().find(|(_, t)| t.nats.as_ref().is_some_and(|n| nats_subject_matches(&n.subject, subject)));
        if let Some((i, t)) = looping {
            let filter = t.nats.as_ref().map(|n| n.subject.as_str()).unwrap_or("");
            errors.push(FieldError::invalid(
                "spec.deadLetter.subject",
                subject,
                &format!("spec.triggers[{i}] ({filter}) would deliver it back to this function; use a subject outside it"),
            ));
        }
    }
    errors.into_result()
}

#[cfg(test)]
mod tests;
