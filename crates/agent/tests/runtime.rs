//! Real-kernel tests of the OCI runtime layer: runc, busybox containers, cgroups, exit codes.
//! Needs root, runc (Debian `runc`) and a static busybox (Debian `busybox-static`).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agent::runtime::{
    container_cgroups_path, remove_pod_cgroups, stop, wait_exit, write_bundle, BindMount, ContainerRuntime, ContainerSpec, ContainerStatus, ExitOutcome,
    OciRuntime, RuntimeError,
};

/// Containers run one test at a time so the zombie check at the end of each test is exact.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const APPLETS: &[&str] = &["sh", "echo", "sleep", "cat", "ps", "touch", "hostname", "true"];

/// A runc state root, a rootfs and a pod uid, all private to one test.
struct Fixture {
    dir: tempfile::TempDir,
    runtime: OciRuntime,
    pod_uid: String,
}

impl Fixture {
    fn new() -> Self {
        let (dir, runtime, pod_uid) = common::sandbox("rt", APPLETS, "runtime tests");
        Fixture { dir, runtime, pod_uid }
    }

    fn spec(&self, container: &str, script: &str) -> ContainerSpec {
        let mut spec = ContainerSpec::new(vec!["sh".into(), "-c".into(), script.into()], self.dir.path().join("rootfs"));
        spec.cgroups_path = container_cgroups_path(&self.pod_uid, container).expect("cgroups path");
        spec.hostname = Some(container.to_string());
        spec
    }

    /// Writes the bundle and starts it; returns (id, pid, log path).
    async fn start(&self, container: &str, spec: &ContainerSpec) -> (String, u32, PathBuf) {
        let bundle = self.dir.path().join(format!("bundle-{container}"));
        write_bundle(&bundle, spec).expect("write bundle");
        let id = format!("{}-{container}", &self.pod_uid[..14]);
        let log = self.dir.path().join(format!("{container}.log"));
        let pid = self.runtime.start(&id, &bundle, &log).await.expect("start container");
        (id, pid, log)
    }

    async fn exec(&self, id: &str, argv: &[&str]) -> (i32, String) {
        let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
        let out = self.runtime.exec(id, &argv, Duration::from_secs(10)).await.expect("exec");
        (out.exit_code, String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Best effort after a failed assertion: kill and delete whatever this test left.
        common::clean_up(&self.runtime, &self.pod_uid);
    }
}

/// Children of this process that have exited but were never reaped.
fn zombie_children() -> Vec<u32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let mut fields = stat.rsplit_once(") ")?.1.split(' ');
            let (state, ppid) = (fields.next()?, fields.next()?);
            (state == "Z" && ppid == me).then_some(pid)
        })
        .collect()
}

fn pod_cgroup_dirs(pod_uid: &str) -> Vec<PathBuf> {
    std::fs::read_dir("/sys/fs/cgroup")
        .expect("/sys/fs/cgroup")
        .flatten()
        .map(|hierarchy| hierarchy.path().join(format!("flotilla/pod{pod_uid}")))
        .chain([PathBuf::from(format!("/sys/fs/cgroup/flotilla/pod{pod_uid}"))])
        .filter(|dir| dir.exists())
        .collect()
}

/// A cgroup file of the container: the v1 controller hierarchy if mounted, else cgroup v2.
fn cgroup_value(cgroups_path: &str, v1: (&str, &str), v2: &str) -> String {
    let relative = cgroups_path.trim_start_matches('/');
    let v1_path = Path::new("/sys/fs/cgroup").join(v1.0).join(relative).join(v1.1);
    let path = if Path::new("/sys/fs/cgroup").join(v1.0).join("cgroup.procs").exists() { v1_path } else { Path::new("/sys/fs/cgroup").join(relative).join(v2) };
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {}: {err}", path.display())).trim().to_string()
}

#[tokio::test]
async fn exit_code_and_log_of_a_short_container() {
    let _serial = SERIAL.lock().await;
    let fx = Fixture::new();
    let spec = fx.spec("short", "echo hello; echo oops >&2; exit 3");
    let (id, pid, log) = fx.start("short", &spec).await;

    assert_eq!(wait_exit(pid).await, ExitOutcome::Exited(3));
    assert_eq!(std::fs::read_to_string(&log).expect("log"), "hello\noops\n");
    let state = fx.runtime.state(&id).await.expect("state").expect("known");
    assert_eq!((state.status, state.pid), (ContainerStatus::Stopped, None));

    // A second run appends to the same log.
    fx.runtime.delete(&id).await.expect("delete");
    let (id, pid, _) = fx.start("short", &spec).await;
    assert_eq!(wait_exit(pid).await, ExitOutcome::Exited(3));
    assert_eq!(std::fs::read_to_string(&log).expect("log"), "hello\noops\nhello\noops\n");

    fx.runtime.delete(&id).await.expect("delete");
    fx.runtime.delete(&id).await.expect("delete is idempotent");
    assert_eq!(fx.runtime.state(&id).await.expect("state"), None);
    remove_pod_cgroups(&fx.pod_uid).expect("remove cgroups");
    assert!(pod_cgroup_dirs(&fx.pod_uid).is_empty());
    assert_eq!(zombie_children(), Vec::<u32>::new());
}

#[tokio::test]
async fn running_container_execs_and_stops_on_sigterm() {
    let _serial = SERIAL.lock().await;
    let fx = Fixture::new();
    // A PID 1 without a handler never sees SIGTERM, so the init traps it like a real server.
    let spec = fx.spec("server", "trap 'exit 0' TERM; sleep 1000 & wait");
    let (id, pid, _) = fx.start("server", &spec).await;

    let state = fx.runtime.state(&id).await.expect("state").expect("known");
    assert_eq!((state.status, state.pid), (ContainerStatus::Running, Some(pid)));
    let listed = fx.runtime.list().await.expect("list");
    assert!(listed.iter().any(|c| c.id == id && c.status == ContainerStatus::Running), "{listed:?}");

    let pgid = |pid: u32| nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid as i32))).expect("pgid");
    assert_ne!(pgid(pid), pgid(std::process::id()), "Ctrl-C on the agent must not reach containers");

    assert_eq!(fx.exec(&id, &["echo", "x"]).await, (0, "x\n".to_string()));
    assert_eq!(fx.exec(&id, &["sh", "-c", "exit 5"]).await.0, 5);
    assert_eq!(fx.exec(&id, &["hostname"]).await.1, "server\n");

    let argv = vec!["sleep".to_string(), "77".to_string()];
    let err = fx.runtime.exec(&id, &argv, Duration::from_millis(500)).await.expect_err("timeout");
    assert!(matches!(err, RuntimeError::ExecTimeout { .. }), "{err}");
    let (_, ps) = fx.exec(&id, &["ps"]).await;
    assert!(!ps.contains("sleep 77"), "timed-out exec still running:\n{ps}");

    let started = Instant::now();
    let outcome = stop(&fx.runtime, &id, pid, Duration::from_secs(20)).await.expect("stop");
    assert_eq!(outcome, ExitOutcome::Exited(0), "the TERM trap ran");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert_eq!(fx.runtime.state(&id).await.expect("state"), None, "stop deletes");
    remove_pod_cgroups(&fx.pod_uid).expect("remove cgroups");
    assert_eq!(zombie_children(), Vec::<u32>::new());
}

#[tokio::test]
async fn container_ignoring_sigterm_is_killed_after_the_grace() {
    let _serial = SERIAL.lock().await;
    let fx = Fixture::new();
    let spec = fx.spec("stubborn", "trap '' TERM; sleep 1000");
    let (id, pid, _) = fx.start("stubborn", &spec).await;
    let started = Instant::now();
    let outcome = stop(&fx.runtime, &id, pid, Duration::from_secs(1)).await.expect("stop");
    assert_eq!(outcome, ExitOutcome::Signaled(libc::SIGKILL));
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(fx.runtime.state(&id).await.expect("state"), None);
    remove_pod_cgroups(&fx.pod_uid).expect("remove cgroups");
    assert_eq!(zombie_children(), Vec::<u32>::new());
}

#[tokio::test]
async fn limits_are_applied_and_pod_cgroups_removed() {
    let _serial = SERIAL.lock().await;
    let fx = Fixture::new();
    let mut spec = fx.spec("limited", "sleep 1000");
    spec.resources.memory_limit_bytes = Some(64 << 20);
    spec.resources.pids_limit = Some(32);
    spec.resources.cpu_limit_millicores = Some(500);
    spec.resources.cpu_shares = Some(512);
    let (id, pid, _) = fx.start("limited", &spec).await;

    let path = spec.cgroups_path.as_str();
    assert_eq!(cgroup_value(path, ("memory", "memory.limit_in_bytes"), "memory.max"), "67108864");
    assert_eq!(cgroup_value(path, ("pids", "pids.max"), "pids.max"), "32");
    let quota = cgroup_value(path, ("cpu", "cpu.cfs_quota_us"), "cpu.max");
    assert!(quota == "50000" || quota == "50000 100000", "cpu quota {quota}");
    assert!(!pod_cgroup_dirs(&fx.pod_uid).is_empty(), "runc created the pod cgroups");

    fx.runtime.delete(&id).await.expect("delete a running container");
    assert_eq!(wait_exit(pid).await, ExitOutcome::Signaled(libc::SIGKILL));
    remove_pod_cgroups(&fx.pod_uid).expect("remove cgroups");
    remove_pod_cgroups(&fx.pod_uid).expect("idempotent");
    assert_eq!(pod_cgroup_dirs(&fx.pod_uid), Vec::<PathBuf>::new());
    assert_eq!(zombie_children(), Vec::<u32>::new());
}

#[tokio::test]
async fn secure_defaults_bind_mounts_and_readonly_rootfs() {
    let _serial = SERIAL.lock().await;
    let fx = Fixture::new();
    let hosts = fx.dir.path().join("hosts");
    std::fs::write(&hosts, "10.0.0.9 web\n").expect("hosts file");
    let mut spec = fx.spec("locked", "sleep 1000");
    spec.readonly_rootfs = true;
    spec.mounts.push(BindMount { source: hosts, destination: "/etc/hosts".into(), readonly: true });
    spec.user.additional_gids = vec![10];
    let (id, pid, _) = fx.start("locked", &spec).await;

    assert_eq!(fx.exec(&id, &["cat", "/etc/hosts"]).await.1, "10.0.0.9 web\n");
    assert_ne!(fx.exec(&id, &["touch", "/newfile"]).await.0, 0, "rootfs is read-only");
    assert_ne!(fx.exec(&id, &["touch", "/etc/hosts"]).await.0, 0, "bind mount is read-only");
    assert_eq!(fx.exec(&id, &["touch", "/dev/shm/ok"]).await.0, 0, "/dev/shm is writable");
    let (_, status) = fx.exec(&id, &["cat", "/proc/self/status"]).await;
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim).unwrap_or("").to_string();
    assert_eq!(field("CapEff:"), "00000000a80425fb", "Docker's default capabilities");
    assert_eq!(field("CapBnd:"), "00000000a80425fb");
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(field("Seccomp:"), "2", "seccomp filter active");
    assert_eq!(field("Groups:"), "10");
    let (_, kcore) = fx.exec(&id, &["cat", "/proc/kcore"]).await;
    assert!(kcore.is_empty(), "/proc/kcore is masked");
    assert_ne!(fx.exec(&id, &["sh", "-c", "echo 1 > /proc/sys/kernel/domainname"]).await.0, 0);

    let outcome = stop(&fx.runtime, &id, pid, Duration::from_millis(200)).await.expect("stop");
    assert_eq!(outcome, ExitOutcome::Signaled(libc::SIGKILL), "sleep as PID 1 ignores SIGTERM");
    remove_pod_cgroups(&fx.pod_uid).expect("remove cgroups");
    assert_eq!(zombie_children(), Vec::<u32>::new());
}

#[tokio::test]
async fn failures_name_the_container_and_missing_ones_are_not_errors() {
    let _serial = SERIAL.lock().await;
    let fx = Fixture::new();
    assert_eq!(fx.runtime.state("no-such-container").await.expect("state"), None);
    fx.runtime.delete("no-such-container").await.expect("delete of a missing container");
    assert!(fx.runtime.list().await.expect("list").is_empty());

    let spec = fx.spec("broken", "true");
    let mut broken = spec.clone();
    broken.args = vec!["/bin/not-there".into()];
    let bundle = fx.dir.path().join("bundle-broken");
    write_bundle(&bundle, &broken).expect("bundle");
    let err = fx.runtime.start("broken-1", &bundle, &fx.dir.path().join("broken.log")).await.expect_err("no such executable");
    let text = err.to_string();
    assert!(text.contains("broken-1") && text.contains("not-there"), "{text}");
    // The runtime's last words reach the container log too: `logs` shows why it never ran.
    let log = std::fs::read_to_string(fx.dir.path().join("broken.log")).expect("log");
    assert!(log.contains("not-there"), "{log}");
    fx.runtime.delete("broken-1").await.expect("cleanup");
    remove_pod_cgroups(&fx.pod_uid).expect("remove cgroups");
    assert_eq!(zombie_children(), Vec::<u32>::new());
}
