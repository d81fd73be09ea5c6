use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::*;

/// A runtime whose "container" is a plain child process; records every verb it is asked for.
struct ProcessRuntime {
    pid: u32,
    calls: Mutex<Vec<String>>,
}

impl ProcessRuntime {
    #[allow(clippy::zombie_processes, reason = "stop() reaps it through wait_exit")]
    fn spawn(script: &str) -> Self {
        let child = std::process::Command::new("/bin/sh").args(["-c", script]).spawn().expect("spawn /bin/sh");
        ProcessRuntime { pid: child.id(), calls: Mutex::new(Vec::new()) }
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("calls").clone()
    }

    fn alive(&self) -> bool {
        // A zombie still answers signal 0, so look at its state instead.
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).is_ok_and(|stat| !stat.rsplit(") ").next().unwrap_or("").starts_with('Z'))
    }
}

#[async_trait]
impl ContainerRuntime for ProcessRuntime {
    async fn start(&self, _: &str, _: &Path, _: &Path) -> Result<u32, RuntimeError> {
        Ok(self.pid)
    }

    async fn state(&self, id: &str) -> Result<Option<ContainerState>, RuntimeError> {
        self.calls.lock().expect("calls").push("state".into());
        let status = if self.alive() { ContainerStatus::Running } else { ContainerStatus::Stopped };
        Ok(Some(ContainerState { id: id.into(), status, pid: Some(self.pid), bundle: "/b".into() }))
    }

    async fn list(&self) -> Result<Vec<ContainerState>, RuntimeError> {
        Ok(Vec::new())
    }

    async fn kill(&self, id: &str, signal: Signal) -> Result<(), RuntimeError> {
        self.calls.lock().expect("calls").push(format!("kill {signal}"));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid as i32), signal).map_err(|err| RuntimeError::Command {
            id: id.into(),
            command: "kill".into(),
            status: "failed".into(),
            stderr: err.to_string(),
        })
    }

    async fn delete(&self, _: &str) -> Result<(), RuntimeError> {
        self.calls.lock().expect("calls").push("delete".into());
        Ok(())
    }

    async fn exec(&self, _: &str, _: &[String], _: Duration) -> Result<ExecOutput, RuntimeError> {
        unreachable!("stop never execs")
    }
}

#[tokio::test]
async fn stop_uses_sigterm_when_it_is_enough() {
    let runtime = ProcessRuntime::spawn("trap 'exit 0' TERM; sleep 30 & wait");
    tokio::time::sleep(Duration::from_millis(100)).await; // let sh install its trap
    let started = Instant::now();
    let outcome = stop(&runtime, "c1", runtime.pid, Duration::from_secs(10)).await.expect("stop");
    assert_eq!(outcome, ExitOutcome::Exited(0));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(runtime.calls(), ["kill SIGTERM", "delete"]);
}

#[tokio::test]
async fn stop_escalates_to_sigkill_after_the_grace() {
    let runtime = ProcessRuntime::spawn("trap '' TERM; sleep 30 & wait");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let outcome = stop(&runtime, "c2", runtime.pid, Duration::from_millis(300)).await.expect("stop");
    assert_eq!(outcome, ExitOutcome::Signaled(libc::SIGKILL));
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(runtime.calls(), ["kill SIGTERM", "kill SIGKILL", "delete"]);
    assert!(!runtime.alive());
}

#[tokio::test]
async fn stop_of_an_exited_container_still_deletes_it() {
    let runtime = ProcessRuntime::spawn("exit 4");
    assert_eq!(wait_exit(runtime.pid).await, ExitOutcome::Exited(4));
    let outcome = stop(&runtime, "c3", runtime.pid, Duration::from_secs(1)).await.expect("stop");
    assert_eq!(outcome, ExitOutcome::Unknown, "already reaped above");
    assert_eq!(runtime.calls(), ["kill SIGTERM", "state", "delete"]);
}

#[test]
fn names_that_could_escape_are_refused() {
    for bad in ["", "-rf", ".hidden", "a/b", "a b", "x;y", &"a".repeat(129)] {
        assert!(validate_name("container id", bad).is_err(), "{bad:?} accepted");
    }
    for good in ["web", "pod-1_x.2", "0123456789abcdef"] {
        assert!(validate_name("container id", good).is_ok(), "{good:?} refused");
    }
}

#[test]
fn unknown_runtime_names_are_refused() {
    let err = OciRuntime::new("docker", "/tmp/x").expect_err("docker is not an OCI runtime");
    assert!(err.to_string().contains("runc, crun, youki"), "{err}");
    let err = OciRuntime::new("/nonexistent/runc", "/tmp/x").expect_err("missing path");
    assert!(matches!(err, RuntimeError::BinaryNotFound { .. }), "{err}");
}
