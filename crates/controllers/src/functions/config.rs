//! A Function's settings with their defaults filled in, read once per spec.

use std::time::Duration;

use api::function::{parse_duration, Function};

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
    /// Where events that failed every delivery go.
    pub dead_letter: Option<String>,
    /// Replicas kept when idle.
    pub min_replicas: u32,
    /// Replicas at most.
    pub max_replicas: u32,
    /// Backlog plus in-flight per replica the scaler aims for.
    pub target_in_flight: u32,
    /// How long the load must stay lower before replicas are removed.
    pub scale_down_delay: Duration,
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
            dead_letter: spec.dead_letter.as_ref().and_then(|d| d.subject.clone()),
            min_replicas,
            max_replicas: (scaling.max_replicas.unwrap_or(10).max(1) as u32).max(min_replicas),
            target_in_flight: scaling.target_in_flight.unwrap_or(concurrency).max(1),
            scale_down_delay: or(scaling.scale_down_delay.as_ref(), Duration::from_secs(30)),
        }
    }

    /// The wait before delivery `attempt` (2 for the first retry).
    pub fn backoff_before(&self, attempt: u32) -> Duration {
        self.backoff.saturating_mul(1 << attempt.saturating_sub(2).min(16))
    }
}
