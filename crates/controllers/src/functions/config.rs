//! A Function's settings with their defaults filled in, read once per spec.

use std::time::Duration;

use api::function::{parse_duration, Function, Trigger};
use events::jetstream::ConsumerSpec;
use events::mqtt::Subscription;

/// What a trigger's events need of the dispatcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TriggerSettings {
    /// Deliveries at most, the first included.
    pub deliveries: u32,
    /// Where its events go when they failed every delivery.
    pub dead_letter: Option<String>,
}

/// How one Function is dispatched and scaled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The handler's port.
    pub port: u16,
    /// The path events are POSTed to.
    pub path: String,
    /// Events in flight per replica at most.
    pub concurrency: u32,
    /// How long one delivery may take.
    pub timeout: Duration,
    /// Deliveries after the first.
    pub retries: u32,
    /// The first wait before a retry, doubling after each.
    pub backoff: Duration,
    /// Per trigger, in the spec's order.
    pub triggers: Vec<TriggerSettings>,
    /// Replicas kept when idle.
    pub min_replicas: u32,
    /// Replicas at most.
    pub max_replicas: u32,
    /// Backlog plus in-flight per replica the scaler aims for.
    pub target_in_flight: u32,
    /// How long the load must stay lower before replicas are removed.
    pub scale_down_delay: Duration,
    /// Frozen pods kept to be claimed.
    pub warm_pool: u32,
}

fn or(text: Option<&String>, default: Duration) -> Duration {
    text.and_then(|t| parse_duration(t).ok()).unwrap_or(default)
}

impl Settings {
    /// The settings of `function` (validated at admission; unreadable values take defaults).
    pub fn of(function: &Function) -> Settings {
        let spec = &function.spec;
        let concurrency = spec.concurrency.unwrap_or(1).max(1);
        let scaling = spec.scaling.clone().unwrap_or_default();
        let min_replicas = scaling.min_replicas.unwrap_or(0).max(0) as u32;
        Settings {
            port: u16::try_from(spec.port).unwrap_or(8080),
            path: spec.path.clone().unwrap_or_else(|| "/".into()),
            concurrency,
            timeout: or(spec.timeout.as_ref(), Duration::from_secs(30)),
            retries: spec.retries.as_ref().and_then(|r| r.count).unwrap_or(3),
            backoff: or(spec.retries.as_ref().and_then(|r| r.backoff.as_ref()), Duration::from_millis(100)),
            triggers: Vec::new(),
            min_replicas,
            max_replicas: (scaling.max_replicas.unwrap_or(10).max(1) as u32).max(min_replicas),
            target_in_flight: scaling.target_in_flight.unwrap_or(concurrency).max(1),
            scale_down_delay: or(scaling.scale_down_delay.as_ref(), Duration::from_secs(30)),
            warm_pool: spec.warm_pool.unwrap_or(0),
        }
        .with_triggers(function)
    }

    fn with_triggers(mut self, function: &Function) -> Settings {
        let dead = function.spec.dead_letter.clone().unwrap_or_default();
        self.triggers = function
            .spec
            .triggers
            .iter()
            .map(|t| TriggerSettings {
                deliveries: match &t.jetstream {
                    Some(js) => js.max_deliver.map_or(self.retries + 1, |m| m.clamp(1, i64::from(u32::MAX)) as u32),
                    None => self.retries + 1,
                },
                dead_letter: if t.mqtt.is_some() { dead.topic.clone() } else { dead.subject.clone() },
            })
            .collect();
        self
    }

    /// The durable consumer of a `jetstream` trigger. The server's limit is one delivery more
    /// than the dispatcher's, so a message whose last delivery was lost with a dispatcher still
    /// comes back once, to be dead-lettered instead of dropped unseen.
    pub fn consumer(&self, function: &Function, trigger: &Trigger) -> Option<ConsumerSpec> {
        let js = trigger.jetstream.as_ref()?;
        let deliveries = js.max_deliver.unwrap_or(i64::from(self.retries) + 1).max(1);
        let default_wait = Duration::from_secs(30).max(self.timeout * 2);
        let backoff = js.backoff.iter().filter_map(|b| parse_duration(b).ok()).collect();
        Some(ConsumerSpec {
            stream: js.stream.clone(),
            durable: js.consumer.clone().unwrap_or_else(|| default_name(function, "flotilla", '-').replace('.', "_")),
            filter_subject: js.filter_subject.clone().unwrap_or_default(),
            ack_wait: or(js.ack_wait.as_ref(), default_wait),
            max_deliver: deliveries + 1,
            backoff,
            max_ack_pending: js.max_ack_pending.unwrap_or(i64::from(self.max_replicas) * i64::from(self.target_in_flight) * 2).max(1),
        })
    }

    /// The subscription of an `mqtt` trigger (number `index`).
    pub fn subscription(function: &Function, trigger: &Trigger, index: usize) -> Option<Subscription> {
        let mqtt = trigger.mqtt.as_ref()?;
        Some(Subscription {
            topic: mqtt.topic.clone(),
            qos: mqtt.qos.unwrap_or(1).min(2),
            client_id: mqtt.client_id.clone().unwrap_or_else(|| format!("{}-{index}", default_name(function, "flotilla", '-'))),
        })
    }

    /// The wait before the retry after a failed delivery `attempt` of an event of `trigger`.
    pub fn retry_wait(&self, function: &Function, trigger: usize, attempt: u32) -> Duration {
        let listed = function.spec.triggers.get(trigger).and_then(|t| t.jetstream.as_ref()).map(|js| js.backoff.as_slice()).unwrap_or(&[]);
        match listed.get(attempt.saturating_sub(1) as usize).or(listed.last()) {
            Some(wait) => parse_duration(wait).unwrap_or(self.backoff),
            None => self.backoff_before(attempt + 1),
        }
    }

    /// The wait before delivery `attempt` (2 for the first retry).
    pub fn backoff_before(&self, attempt: u32) -> Duration {
        self.backoff.saturating_mul(1 << attempt.saturating_sub(2).min(16))
    }
}

/// `<prefix>-<namespace>-<name>`.
fn default_name(function: &Function, prefix: &str, separator: char) -> String {
    let ns = function.metadata.namespace.as_deref().unwrap_or("default");
    let name = function.metadata.name.as_deref().unwrap_or("");
    format!("{prefix}{separator}{ns}{separator}{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function(yaml: &str) -> Function {
        let docs = api::manifest::parse_documents(yaml).unwrap();
        api::manifest::decode_document(&docs[0]).unwrap()
    }

    const SPEC: &str = r#"
apiVersion: flotilla.dev/v1alpha1
kind: Function
metadata: {name: on.motion, namespace: site-1}
spec:
  port: 8080
  timeout: 20s
  template: {spec: {containers: [{name: h, image: busybox}]}}
  scaling: {maxReplicas: 3, targetInFlight: 4}
  retries: {count: 2, backoff: 100ms}
  triggers:
  - jetstream: {url: "nats://n:4222", stream: S}
  - jetstream: {url: "nats://n:4222", stream: S, consumer: c, maxDeliver: 5, backoff: [1s, 3s], ackWait: 60s, maxAckPending: 7}
  - mqtt: {url: "mqtt://m", topic: "cams/#"}
  - nats: {url: "nats://n:4222", subject: "a.>"}
  deadLetter: {subject: dead.s, topic: dead/t}
"#;

    #[test]
    fn triggers_get_their_limits_destinations_and_names() {
        let f = function(SPEC);
        let s = Settings::of(&f);
        let deliveries: Vec<u32> = s.triggers.iter().map(|t| t.deliveries).collect();
        assert_eq!(deliveries, [3, 5, 3, 3], "retries + 1 unless maxDeliver says");
        let dead: Vec<&str> = s.triggers.iter().map(|t| t.dead_letter.as_deref().unwrap()).collect();
        assert_eq!(dead, ["dead.s", "dead.s", "dead/t", "dead.s"], "MQTT events dead-letter to the topic");

        let c = s.consumer(&f, &f.spec.triggers[0]).unwrap();
        assert_eq!(c.durable, "flotilla-site-1-on_motion", "dots are not allowed in consumer names");
        assert_eq!((c.ack_wait, c.max_deliver, c.max_ack_pending), (Duration::from_secs(40), 4, 24), "twice the timeout; one more than ours; 2 × 3 × 4");
        let c = s.consumer(&f, &f.spec.triggers[1]).unwrap();
        assert_eq!((c.durable.as_str(), c.ack_wait, c.max_deliver, c.max_ack_pending), ("c", Duration::from_secs(60), 6, 7));
        assert_eq!(c.backoff, [Duration::from_secs(1), Duration::from_secs(3)]);
        assert!(s.consumer(&f, &f.spec.triggers[2]).is_none());

        let m = Settings::subscription(&f, &f.spec.triggers[2], 2).unwrap();
        assert_eq!((m.client_id.as_str(), m.qos), ("flotilla-site-1-on.motion-2", 1), "QoS 1 unless said");

        // The waits: the trigger's list (its last repeated), else the doubling back-off.
        let waits: Vec<Duration> = (1..=4).map(|a| s.retry_wait(&f, 1, a)).collect();
        assert_eq!(waits, [1, 3, 3, 3].map(Duration::from_secs));
        let waits: Vec<Duration> = (1..=3).map(|a| s.retry_wait(&f, 3, a)).collect();
        assert_eq!(waits, [100, 200, 400].map(Duration::from_millis));
    }
}
