//! What the agent's benchmarks share: one line of percentiles per case.

use std::time::Duration;

/// Prints `name: n=… p50=… p99=… min=… max=…` in milliseconds.
pub fn report(name: &str, samples: &[Duration]) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let at = |q: f64| sorted[((sorted.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{name}: n={} p50={:.1}ms p99={:.1}ms min={:.1}ms max={:.1}ms",
        sorted.len(),
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        sorted[0].as_secs_f64() * 1e3,
        sorted[sorted.len() - 1].as_secs_f64() * 1e3,
    );
}
