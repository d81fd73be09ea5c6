//! Container start latency: raw `runc run` of a trivial busybox bundle against the agent's
//! `OciRuntime::start` path. Needs root, runc and busybox-static.
//!
//! `cargo bench -p agent --bench runc` (RUNS=n to change the 50 runs per case).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent::runtime::{
    become_subreaper, container_cgroups_path, remove_pod_cgroups, wait_exit, write_bundle, ContainerRuntime, ContainerSpec, ExitOutcome, OciRuntime,
};

use common::report;

fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        return; // built and run by `cargo test --all-targets`: starting containers is for `cargo bench`.
    }
    assert!(nix::unistd::geteuid().is_root(), "this benchmark starts containers: run it as root");
    let runs: usize = std::env::var("RUNS").ok().and_then(|n| n.parse().ok()).unwrap_or(50);
    become_subreaper().expect("subreaper");
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).expect("rootfs");
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("busybox-static is required");
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/true")).expect("symlink");

    let pod_uid = format!("bench{}", std::process::id());
    let mut spec = ContainerSpec::new(vec!["true".into()], &rootfs);
    spec.cgroups_path = container_cgroups_path(&pod_uid, "c").expect("cgroups path");
    let bundle = dir.path().join("bundle");
    write_bundle(&bundle, &spec).expect("bundle");
    let runtime = OciRuntime::new("runc", dir.path().join("state")).expect("runc is required");
    let root_arg = format!("--root={}", runtime.root().display());

    let raw = measure(runs, |n| {
        let started = Instant::now();
        let status = Command::new(runtime.binary())
            .args([root_arg.as_str(), "run", "--bundle"])
            .arg(&bundle)
            .arg(format!("raw-{n}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .expect("runc run");
        assert!(status.success(), "runc run failed");
        started.elapsed()
    });
    report("raw `runc run` (create+start+exit+delete, foreground)", &raw);

    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    let log = dir.path().join("c.log");
    let mut to_running = Vec::new();
    let full = measure(runs, |n| {
        tokio.block_on(async {
            let id = format!("agent-{n}");
            let started = Instant::now();
            let pid = runtime.start(&id, &bundle, &log).await.expect("start");
            if n != usize::MAX {
                to_running.push(started.elapsed());
            }
            assert_eq!(wait_exit(pid).await, ExitOutcome::Exited(0));
            runtime.delete(&id).await.expect("delete");
            started.elapsed()
        })
    });
    report("OciRuntime::start (runc run --detach → PID)", &to_running);
    report("start + wait_exit + delete", &full);
    remove_pod_cgroups(&pod_uid).expect("remove cgroups");
}

fn measure(runs: usize, mut once: impl FnMut(usize) -> Duration) -> Vec<Duration> {
    once(usize::MAX); // warm up page cache and runc's binary
    (0..runs).map(&mut once).collect()
}
