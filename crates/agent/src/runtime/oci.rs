//! [`ContainerRuntime`] on top of an OCI runtime's command line (runc, crun and youki share it).

use std::ffi::OsStr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::process::Command;

use super::kind::find_binary;
use super::{validate_name, ContainerRuntime, ContainerState, ContainerStatus, ExecOutput, RuntimeError, Signal};

use crate::PathError;

/// How long `run --detach` may take (image rootfs on slow disks, many mounts).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `state`, `list`, `kill` and `delete` may take.
pub(super) const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

/// Drives an OCI runtime binary, keeping its state under `root` (`--root`).
#[derive(Clone, Debug)]
pub struct OciRuntime {
    binary: PathBuf,
    root: PathBuf,
}

impl OciRuntime {
    /// `<runtime> <verb> <id>`, for the verbs that take nothing else (pause, resume).
    async fn verb(&self, id: &str, verb: &str) -> Result<(), RuntimeError> {
        validate_name("container id", id)?;
        let out = self.control(id, &[os(verb), os(id)]).await?;
        if out.status.success() {
            Ok(())
        } else {
            Err(out.failure(id))
        }
    }

    /// The runtime used when none is configured.
    pub const DEFAULT: &'static str = "runc";

    /// A runtime chosen by name (`runc`, `crun`, `youki`, looked up in `PATH` and the sbin
    /// directories) or by path (anything containing `/`), keeping its state in `root`, which
    /// should live under the agent's data directory.
    pub fn new(kind_or_path: &str, root: impl Into<PathBuf>) -> Result<Self, RuntimeError> {
        Ok(OciRuntime { binary: find_binary(kind_or_path)?, root: root.into() })
    }

    /// The runtime binary in use.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The runtime's state directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A runtime command in its own process group (a Ctrl-C on the agent's terminal must not
    /// reach it or the containers it starts), killed if the caller gives up on it.
    pub(super) fn command(&self, args: &[&OsStr]) -> (Command, String) {
        let mut command = Command::new(&self.binary);
        command.arg(format!("--root={}", self.root.display()));
        let mut line = format!("{} --root={}", self.binary.display(), self.root.display());
        for arg in args {
            command.arg(arg);
            line.push(' ');
            line.push_str(&arg.to_string_lossy());
        }
        command.process_group(0).kill_on_drop(true).stdin(Stdio::null());
        (command, line)
    }

    /// Runs a control command, capturing its output.
    async fn control(&self, id: &str, args: &[&OsStr]) -> Result<Captured, RuntimeError> {
        let (mut command, line) = self.command(args);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let output = tokio::time::timeout(CONTROL_TIMEOUT, command.output())
            .await
            .map_err(|_| RuntimeError::CommandTimeout { id: id.to_string(), command: line.clone(), timeout: CONTROL_TIMEOUT })?
            .map_err(|source| RuntimeError::Io(PathError { action: "spawn", path: self.binary.clone(), source }))?;
        Ok(Captured { line, status: output.status, stdout: output.stdout, stderr: output.stderr })
    }

    fn state_dir_exists(&self, id: &str) -> bool {
        self.root.join(id).exists()
    }
}

/// Lets `&str`, paths and `String`s share one argument list.
pub(super) fn os<S: AsRef<OsStr> + ?Sized>(arg: &S) -> &OsStr {
    arg.as_ref()
}

struct Captured {
    line: String,
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Captured {
    fn failure(&self, id: &str) -> RuntimeError {
        RuntimeError::Command {
            id: id.to_string(),
            command: self.line.clone(),
            status: describe(self.status),
            stderr: String::from_utf8_lossy(&self.stderr).trim().to_string(),
        }
    }

    fn says_missing(&self) -> bool {
        let stderr = String::from_utf8_lossy(&self.stderr);
        stderr.contains("does not exist") || stderr.contains("No such file or directory")
    }
}

#[async_trait]
impl ContainerRuntime for OciRuntime {
    async fn start(&self, id: &str, bundle: &Path, log: &Path) -> Result<u32, RuntimeError> {
        validate_name("container id", id)?;
        let bundle =
            std::path::absolute(bundle).map_err(|source| RuntimeError::Io(PathError { action: "resolve bundle path", path: bundle.into(), source }))?;
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(log)
            .map_err(|source| RuntimeError::Io(PathError { action: "open container log", path: log.into(), source }))?;
        let stdout = log_file.try_clone().map_err(|source| RuntimeError::Io(PathError { action: "duplicate log fd", path: log.into(), source }))?;
        let pid_file = bundle.join("init.pid");
        let runtime_log = bundle.join("runtime.log");
        for stale in [&pid_file, &runtime_log] {
            remove_if_present(stale)?;
        }
        let log_arg = format!("--log={}", runtime_log.display());
        let (mut command, line) = self.command(&[
            os(&log_arg),
            os("--log-format=json"),
            os("run"),
            os("--detach"),
            os("--pid-file"),
            os(&pid_file),
            os("--bundle"),
            os(&bundle),
            os(id),
        ]);
        // In detached mode the runtime hands these descriptors to the container's init.
        command.stdout(Stdio::from(stdout)).stderr(Stdio::from(log_file));
        let status = tokio::time::timeout(START_TIMEOUT, command.status())
            .await
            .map_err(|_| RuntimeError::CommandTimeout { id: id.to_string(), command: line.clone(), timeout: START_TIMEOUT })?
            .map_err(|source| RuntimeError::Io(PathError { action: "spawn", path: self.binary.clone(), source }))?;
        if !status.success() {
            return Err(RuntimeError::Command { id: id.to_string(), command: line, status: describe(status), stderr: runtime_errors(&runtime_log) });
        }
        let pid =
            std::fs::read_to_string(&pid_file).map_err(|source| RuntimeError::Io(PathError { action: "read pid file", path: pid_file.clone(), source }))?;
        pid.trim().parse().map_err(|_| RuntimeError::Parse { command: line, reason: format!("pid file {} holds {pid:?}, not a PID", pid_file.display()) })
    }

    async fn state(&self, id: &str) -> Result<Option<ContainerState>, RuntimeError> {
        validate_name("container id", id)?;
        if !self.state_dir_exists(id) {
            return Ok(None);
        }
        let out = self.control(id, &[os("state"), os(id)]).await?;
        if !out.status.success() {
            if out.says_missing() || !self.state_dir_exists(id) {
                return Ok(None);
            }
            return Err(out.failure(id));
        }
        let raw: RawState = serde_json::from_slice(&out.stdout).map_err(|err| RuntimeError::Parse { command: out.line.clone(), reason: err.to_string() })?;
        raw.into_state(&out.line).map(Some)
    }

    async fn list(&self) -> Result<Vec<ContainerState>, RuntimeError> {
        let out = self.control("", &[os("list"), os("--format"), os("json")]).await?;
        if !out.status.success() {
            return Err(out.failure(""));
        }
        let raw: Option<Vec<RawState>> =
            serde_json::from_slice(&out.stdout).map_err(|err| RuntimeError::Parse { command: out.line.clone(), reason: err.to_string() })?;
        raw.unwrap_or_default().into_iter().map(|state| state.into_state(&out.line)).collect()
    }

    async fn kill(&self, id: &str, signal: Signal) -> Result<(), RuntimeError> {
        validate_name("container id", id)?;
        let number = (signal as i32).to_string();
        let out = self.control(id, &[os("kill"), os(id), os(&number)]).await?;
        if out.status.success() {
            Ok(())
        } else {
            Err(out.failure(id))
        }
    }

    async fn delete(&self, id: &str) -> Result<(), RuntimeError> {
        validate_name("container id", id)?;
        if !self.state_dir_exists(id) {
            return Ok(());
        }
        let out = self.control(id, &[os("delete"), os("--force"), os(id)]).await?;
        if out.status.success() || out.says_missing() || !self.state_dir_exists(id) {
            Ok(())
        } else {
            Err(out.failure(id))
        }
    }

    async fn exec(&self, id: &str, argv: &[String], timeout: Duration) -> Result<ExecOutput, RuntimeError> {
        super::exec::exec(self, id, argv, timeout).await
    }

    async fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.verb(id, "pause").await
    }

    async fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.verb(id, "resume").await
    }
}

/// What `state` and `list` print for a container.
#[derive(Deserialize)]
struct RawState {
    id: String,
    #[serde(default)]
    pid: i64,
    status: String,
    #[serde(default)]
    bundle: PathBuf,
}

impl RawState {
    fn into_state(self, command: &str) -> Result<ContainerState, RuntimeError> {
        let status = match self.status.as_str() {
            "creating" | "created" => ContainerStatus::Created,
            "running" => ContainerStatus::Running,
            "paused" | "pausing" => ContainerStatus::Paused,
            "stopped" => ContainerStatus::Stopped,
            other => return Err(RuntimeError::Parse { command: command.to_string(), reason: format!("unknown status {other:?} for container {:?}", self.id) }),
        };
        let pid = u32::try_from(self.pid).ok().filter(|pid| *pid > 0 && status != ContainerStatus::Stopped);
        Ok(ContainerState { id: self.id, status, pid, bundle: self.bundle })
    }
}

/// The error messages from a runtime's JSON log, or its raw tail when it is not JSON.
pub(super) fn runtime_errors(log: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(log) else {
        return String::new();
    };
    let messages: Vec<String> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|entry| matches!(entry["level"].as_str(), Some("error" | "fatal")))
        .filter_map(|entry| entry["msg"].as_str().map(str::to_string))
        .collect();
    if !messages.is_empty() {
        return messages.join("; ");
    }
    let raw = text.trim();
    raw[raw.len().saturating_sub(2000)..].to_string()
}

fn remove_if_present(path: &Path) -> Result<(), RuntimeError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(RuntimeError::Io(PathError { action: "remove", path: path.into(), source })),
    }
}

pub(super) fn describe(status: ExitStatus) -> String {
    status.to_string()
}
