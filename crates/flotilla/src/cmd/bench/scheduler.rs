//! `flotilla bench scheduler`: placements per second and decision latency of the scheduler,
//! in-process on one thread, over a synthetic fleet (see `scheduler::synthetic`).

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;
use scheduler::{Decision, SchedulerConfig, Snapshot, Strategy};

/// Settings of the scheduler benchmark.
#[derive(Args, Debug)]
pub struct SchedulerBenchArgs {
    /// Synthetic nodes.
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    /// Pods to place.
    #[arg(long, default_value_t = 100_000)]
    pods: usize,
    /// Seed of the fleet, the workloads and the scheduler.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Scoring strategy: spread (LeastAllocated) or binpack (MostAllocated).
    #[arg(long, default_value = "spread")]
    strategy: String,
    /// Percentage of nodes to find feasible before scoring (0 = the default: 100 nodes; 10 is
    /// kube-scheduler's adaptive default at 5,000 nodes).
    #[arg(long, default_value_t = 0)]
    percentage: u32,
}

/// Runs the benchmark and prints its figures.
pub fn run(args: &SchedulerBenchArgs) -> Result<()> {
    let Some(strategy) = Strategy::parse(&args.strategy) else { bail!("--strategy: \"{}\" is not spread or binpack", args.strategy) };
    let setup = Instant::now();
    let mut snapshot = Snapshot::new(SchedulerConfig { strategy, percentage: args.percentage, seed: args.seed, ..Default::default() });
    for node in scheduler::synthetic::nodes(args.nodes, args.seed) {
        snapshot.upsert_node(&node);
    }
    let workloads = scheduler::synthetic::workloads(args.pods, args.seed);
    println!("fleet: {} nodes, {} workloads, {} pods; set up in {:.2} s", args.nodes, workloads.len(), args.pods, setup.elapsed().as_secs_f64());
    let mut latencies = Vec::with_capacity(args.pods);
    let (mut placed, mut refused) = (0usize, 0usize);
    let mut busy = Duration::ZERO;
    let mut refused_time = Duration::ZERO;
    let mut reasons: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for pod in scheduler::synthetic::pod_stream(&workloads).take(args.pods) {
        let start = Instant::now();
        let info = snapshot.pod_info(&pod)?;
        let decision = snapshot.schedule(&info);
        if let Ok(Decision::Bind(node)) = &decision {
            snapshot.assume(&info, node);
        }
        let took = start.elapsed();
        // Counting outcomes is the benchmark's own work: outside the timed part.
        match decision {
            Ok(Decision::Bind(_)) => placed += 1,
            Ok(Decision::Preempt { .. }) => {
                refused += 1;
                refused_time += took;
            }
            Err(why) => {
                refused += 1;
                refused_time += took;
                for r in why.reasons.keys() {
                    *reasons.entry(r.to_string()).or_default() += 1;
                }
            }
        }
        busy += took;
        latencies.push(took);
    }
    latencies.sort();
    let at = |q: f64| super::quantile(&latencies, q);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("placed {placed}, unschedulable {refused} (deciding those took {:.2} s of {:.2} s)", refused_time.as_secs_f64(), busy.as_secs_f64());
    let mut top: Vec<_> = reasons.into_iter().collect();
    top.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    for (reason, n) in top.iter().take(4) {
        println!("  {n} unschedulable pods had nodes {reason}");
    }
    println!("nodes filtered per decision (fast path): {:.1}", snapshot.nodes_checked as f64 / (placed + refused).max(1) as f64);
    println!("placements/s {:.0} (one thread; read + decide + assume per pod)", (placed + refused) as f64 / busy.as_secs_f64());
    println!("decision latency p50 {:.1} µs   p99 {:.1} µs   max {:.1} µs", us(at(0.5)), us(at(0.99)), us(at(1.0)));
    Ok(())
}
