//! The benchmark subcommands run and measure what they say, at a size a test can afford (the
//! figures in BENCHMARKS.md come from the full sizes).

use std::process::Command;

fn bench(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_flotilla")).arg("bench").args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "flotilla bench {args:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn scheduler_bench_places_every_pod() {
    let out = bench(&["scheduler", "--nodes", "200", "--pods", "2000"]);
    assert!(out.contains("placed 2000, unschedulable 0"), "{out}");
    assert!(out.contains("placements/s"), "{out}");
}

/// Hollow nodes through a real `flotilla server`: every pod is bound and reported Running by
/// its node, and no node gets more pods than it has room for.
#[test]
fn cluster_bench_runs_every_pod_on_hollow_nodes() {
    let out = bench(&["cluster", "--nodes", "20", "--pods", "300", "--timeout", "120s"]);
    assert!(out.contains("20 hollow nodes Ready"), "{out}");
    assert!(out.contains("Running  in"), "{out}");
    let spread = out.lines().find_map(|l| l.trim().strip_prefix("pods per node: ")).expect("the per-node line");
    let (least, most) = spread.split_once('–').unwrap();
    let (least, most): (usize, usize) = (least.parse().unwrap(), most.parse().unwrap());
    // 300 pods over 20 nodes, spread by LeastAllocated: every node gets some.
    assert!(least > 0 && most <= 110, "{out}");
}

/// The service benchmark reaches the pod through every VIP with both load balancers and leaves
/// no iptables rules behind.
#[test]
fn services_bench_measures_both_load_balancers_and_cleans_up() {
    let out = bench(&["services", "--services", "1,100", "--connections", "100", "--runs", "1"]);
    for label in ["pod IP, no service", "eBPF socket LB, 100 services", "iptables (kube-proxy), 100 services", "p50 growth from 1 to 100 services: eBPF"] {
        assert!(out.contains(label), "missing {label:?} in:\n{out}");
    }
    let rules = std::process::Command::new("iptables-save").args(["-t", "nat"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&rules.stdout).contains("FLTB"), "the bench's iptables chains are gone");
}
