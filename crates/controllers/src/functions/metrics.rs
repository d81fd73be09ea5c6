//! Per-Function counters, gauges and latency histograms, rendered for `/metrics` in the
//! Prometheus text format, and a short log of recent invocations.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// Invocation lines kept per Function.
const LOG_LINES: usize = 1000;

/// A latency histogram.
#[derive(Clone, Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if s <= *bound {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += s;
    }
}

/// What one Function's dispatcher counted.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// Events received from brokers.
    pub received: u64,
    /// Deliveries made (first and retries).
    pub delivered: u64,
    /// Events a replica acknowledged.
    pub acked: u64,
    /// Deliveries that failed and were tried again.
    pub retried: u64,
    /// Events sent to the dead-letter destination.
    pub dead_lettered: u64,
    /// Replicas started because events waited with none ready.
    pub cold_starts: u64,
    /// Warm-pool pods claimed (thawed) to serve as replicas.
    pub pool_claims: u64,
    /// Events being handled now.
    pub in_flight: u64,
    /// Events waiting now.
    pub backlog: u64,
    /// Replicas ready now.
    pub ready_replicas: u64,
    /// Arrival → the handler's answer, for acknowledged events.
    latency: Histogram,
    /// Recent invocations, numbered from 1, with their time (formatted when read).
    log: VecDeque<(u64, std::time::SystemTime, String)>,
    /// The number of the last invocation line.
    logged: u64,
}

/// One series: its name, Prometheus type, help text and how to read it from the counters.
type Series = (&'static str, &'static str, &'static str, fn(&Counters) -> u64);

/// Every Function's counters, keyed `namespace/name`.
#[derive(Debug, Default)]
pub struct FunctionMetrics {
    functions: Mutex<BTreeMap<String, Counters>>,
}

impl FunctionMetrics {
    /// Changes the counters of `function`.
    pub fn update(&self, function: &str, change: impl FnOnce(&mut Counters)) {
        let mut all = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        match all.get_mut(function) {
            Some(counters) => change(counters),
            None => change(all.entry(function.to_string()).or_default()),
        }
    }

    /// Records an acknowledged event's latency from arrival.
    pub fn observe(&self, function: &str, latency: Duration) {
        self.update(function, |c| c.latency.observe(latency));
    }

    /// Adds an invocation line (event id, replica, outcome, duration), stamped with the time.
    pub fn log(&self, function: &str, line: String) {
        let time = std::time::SystemTime::now();
        self.update(function, |c| {
            if c.log.len() == LOG_LINES {
                c.log.pop_front();
            }
            c.logged += 1;
            c.log.push_back((c.logged, time, line));
        });
    }

    /// The recent invocation lines of `function`.
    pub fn lines(&self, function: &str) -> Vec<String> {
        self.lines_since(function, 0).into_iter().map(|(_, line)| line).collect()
    }

    /// The invocation lines of `function` numbered after `since`, with their numbers.
    pub fn lines_since(&self, function: &str, since: u64) -> Vec<(u64, String)> {
        let all = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        let stamp = |t: &std::time::SystemTime| chrono::DateTime::<chrono::Utc>::from(*t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        all.get(function)
            .map(|c| c.log.iter().filter(|(n, _, _)| *n > since).map(|(n, t, line)| (*n, format!("{} {line}", stamp(t)))).collect())
            .unwrap_or_default()
    }

    /// A copy of the counters of `function`.
    pub fn counters(&self, function: &str) -> Counters {
        self.functions.lock().unwrap_or_else(|e| e.into_inner()).get(function).cloned().unwrap_or_default()
    }

    /// Forgets a deleted Function.
    pub fn remove(&self, function: &str) {
        self.functions.lock().unwrap_or_else(|e| e.into_inner()).remove(function);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let all = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        let series: [Series; 10] = [
            ("flotilla_function_events_received_total", "counter", "Events received from brokers.", |c| c.received),
            ("flotilla_function_deliveries_total", "counter", "Deliveries to replicas, retries included.", |c| c.delivered),
            ("flotilla_function_events_acked_total", "counter", "Events a replica acknowledged with a 2xx.", |c| c.acked),
            ("flotilla_function_retries_total", "counter", "Deliveries that failed and were tried again.", |c| c.retried),
            ("flotilla_function_events_dead_lettered_total", "counter", "Events sent to the dead-letter destination.", |c| c.dead_lettered),
            ("flotilla_function_cold_starts_total", "counter", "Replicas started for events that found none ready.", |c| c.cold_starts),
            ("flotilla_function_warm_pool_claims_total", "counter", "Warm-pool pods thawed to serve as replicas.", |c| c.pool_claims),
            ("flotilla_function_in_flight", "gauge", "Events being handled.", |c| c.in_flight),
            ("flotilla_function_backlog", "gauge", "Events waiting for a replica.", |c| c.backlog),
            ("flotilla_function_ready_replicas", "gauge", "Replicas ready for events.", |c| c.ready_replicas),
        ];
        for (name, kind, help, value) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (function, c) in all.iter() {
                let _ = writeln!(out, "{name}{{function=\"{function}\"}} {}", value(c));
            }
        }
        let name = "flotilla_function_latency_seconds";
        let _ = writeln!(out, "# HELP {name} From an event's arrival to its acknowledgement.\n# TYPE {name} histogram");
        for (function, c) in all.iter() {
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(out, "{name}_bucket{{function=\"{function}\",le=\"{bound}\"}} {}", c.latency.counts[i]);
            }
            let _ = writeln!(out, "{name}_bucket{{function=\"{function}\",le=\"+Inf\"}} {}", c.latency.count);
            let _ = writeln!(out, "{name}_sum{{function=\"{function}\"}} {:.6}\n{name}_count{{function=\"{function}\"}} {}", c.latency.sum, c.latency.count);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_per_function_with_a_cumulative_histogram() {
        let m = FunctionMetrics::default();
        m.update("default/f", |c| c.received += 2);
        m.observe("default/f", Duration::from_micros(800));
        m.observe("default/f", Duration::from_millis(30));
        let text = m.render();
        assert!(text.contains("flotilla_function_events_received_total{function=\"default/f\"} 2"), "{text}");
        assert!(text.contains("flotilla_function_latency_seconds_bucket{function=\"default/f\",le=\"0.001\"} 1"), "{text}");
        assert!(text.contains("flotilla_function_latency_seconds_bucket{function=\"default/f\",le=\"0.05\"} 2"), "{text}");
        assert!(text.contains("flotilla_function_latency_seconds_count{function=\"default/f\"} 2"), "{text}");
        for i in 0..LOG_LINES + 5 {
            m.log("default/f", format!("line {i}"));
        }
        let lines = m.lines("default/f");
        assert_eq!(lines.len(), LOG_LINES, "the oldest lines go");
        assert!(lines[0].ends_with(" line 5") && lines[0].contains('T'), "a time stamp, then the line: {}", lines[0]);
        let since = m.lines_since("default/f", (LOG_LINES + 3) as u64);
        assert_eq!(since.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [LOG_LINES as u64 + 4, LOG_LINES as u64 + 5], "numbered from 1, after `since`");
    }
}
