//! Pod network setup and teardown (`PodNetwork::setup` + `teardown`) through iproute2's `ip`
//! against the native netlink implementation: one pod at a time, and many set up at once then
//! torn down at once. Needs root and iproute2; uses its own bridge and 10.198.0.0/16.
//!
//! `cargo bench -p agent --bench netlink` (RUNS=n to change the 50 pods one at a time per
//! case, PODS=n the 100 at once).

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::network::{IpRoute2, NativeNetlink, Netlink, NetworkConfig, PodNetwork};

use common::report;

/// Removes the benchmark's bridge, also when a case fails halfway.
struct BridgeGuard(String);

impl Drop for BridgeGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "delete", "dev", &self.0]).output();
    }
}

fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        return; // built and run by `cargo test --all-targets`: making namespaces is for `cargo bench`.
    }
    assert!(nix::unistd::geteuid().is_root(), "this benchmark makes network namespaces: run it as root");
    let env = |name: &str, default: usize| std::env::var(name).ok().and_then(|n| n.parse().ok()).unwrap_or(default);
    let (runs, pods) = (env("RUNS", 50), env("PODS", 100));
    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    let dir = tempfile::tempdir().expect("tempdir");
    let bridge = format!("flbench{}", std::process::id() % 10_000);
    let _guard = BridgeGuard(bridge.clone());
    let cases: [(&str, Arc<dyn Netlink>); 2] =
        [("iproute2", Arc::new(IpRoute2::new().expect("iproute2 is required"))), ("native", Arc::new(NativeNetlink::new().expect("native netlink")))];
    for (name, netlink) in cases {
        let mut config = NetworkConfig::new(dir.path().join(name));
        config.bridge = bridge.clone();
        config.cidr = "10.198.0.0/16".parse().expect("cidr");
        config.enable_ip_forward = false;
        let net = PodNetwork::with_netlink(config, netlink).expect("pod network");
        // Distinct in the 12 characters that name the namespace.
        let uid = |n: usize| format!("{}{n:05}x{}", &name[..1], std::process::id());
        tokio.block_on(async {
            net.ensure_bridge().await.expect("bridge");
            let (mut setups, mut teardowns, mut both) = (Vec::new(), Vec::new(), Vec::new());
            // Pod 0 warms up: the page cache, `ip`'s binary, the first namespace mount.
            for n in 0..=runs {
                let started = Instant::now();
                net.setup(&uid(n)).await.expect("setup");
                let set_up = started.elapsed();
                net.teardown(&uid(n)).await.expect("teardown");
                if n > 0 {
                    setups.push(set_up);
                    teardowns.push(started.elapsed() - set_up);
                    both.push(started.elapsed());
                }
            }
            report(&format!("{name}: setup, one pod at a time"), &setups);
            report(&format!("{name}: teardown, one pod at a time"), &teardowns);
            report(&format!("{name}: setup + teardown, one pod at a time"), &both);
            settle().await;

            let uids: Vec<String> = (runs + 1..=runs + pods).map(uid).collect();
            let started = Instant::now();
            futures::future::join_all(uids.iter().map(|uid| net.setup(uid))).await.into_iter().for_each(|result| drop(result.expect("setup")));
            let set_up = started.elapsed();
            futures::future::join_all(uids.iter().map(|uid| net.teardown(uid))).await.into_iter().for_each(|result| result.expect("teardown"));
            let total = started.elapsed();
            let per_pod = |phase: Duration| phase.as_secs_f64() * 1e3 / pods as f64;
            println!(
                "{name}: {pods} pods at once: setup {:.0}ms, teardown {:.0}ms, total {:.0}ms = {:.2}ms per pod set up and torn down",
                set_up.as_secs_f64() * 1e3,
                (total - set_up).as_secs_f64() * 1e3,
                total.as_secs_f64() * 1e3,
                per_pod(total),
            );
            settle().await;
        });
    }
}

/// The kernel frees deleted namespaces in the background; letting it finish keeps one case's
/// cleanup out of the next case's figures.
async fn settle() {
    tokio::time::sleep(Duration::from_secs(2)).await;
}
