//! Runs containers through an OCI runtime (runc, crun, youki): bundles, lifecycle verbs, exit
//! codes and the cgroups they leave behind.

mod bundle;
mod cgroups;
mod defaults;
mod exec;
mod exit;
mod kind;
mod oci;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;

pub use bundle::{write_bundle, BindMount, ContainerSpec, DeviceKind, DeviceNode, ProcessUser, Resources};
pub use cgroups::{container_cgroups_path, pod_cgroups_path, remove_pod_cgroups};
pub use exit::{become_subreaper, wait_exit, ExitOutcome};
pub use kind::RuntimeKind;
pub use nix::sys::signal::Signal;
pub use oci::OciRuntime;

/// Everything that can go wrong while preparing, running or cleaning up a container.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A container id, pod uid or container name that would be unsafe as a path or an argument.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        /// What the value names ("container id", "pod uid", …).
        what: &'static str,
        /// The offending value.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The OCI runtime binary could not be found.
    #[error("OCI runtime {name:?} not found (looked in PATH and {searched}); install the Debian package `{package}` or configure a path")]
    BinaryNotFound {
        /// The configured name or path.
        name: String,
        /// Where it was looked for.
        searched: String,
        /// The package that provides it.
        package: String,
    },
    /// Reading or writing a file failed.
    #[error(transparent)]
    Io(#[from] crate::PathError),
    /// The runtime command ran and failed.
    #[error("`{command}` for container {id:?} failed ({status}): {stderr}")]
    Command {
        /// The container the command was about.
        id: String,
        /// The command line.
        command: String,
        /// How it ended.
        status: String,
        /// What the runtime said about it.
        stderr: String,
    },
    /// The runtime command did not finish in time and was killed.
    #[error("`{command}` for container {id:?} did not finish within {timeout:?}")]
    CommandTimeout {
        /// The container the command was about.
        id: String,
        /// The command line.
        command: String,
        /// The limit it ran past.
        timeout: Duration,
    },
    /// An exec'd process did not finish in time and was killed.
    #[error("exec {argv:?} in container {id:?} did not finish within {timeout:?}; it was killed")]
    ExecTimeout {
        /// The container.
        id: String,
        /// The command that was run inside it.
        argv: Vec<String>,
        /// The limit it ran past.
        timeout: Duration,
    },
    /// The runtime printed something we could not understand.
    #[error("cannot parse the output of `{command}`: {reason}")]
    Parse {
        /// The command line.
        command: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The container spec could not be turned into an OCI config.
    #[error("invalid OCI spec for the bundle at {bundle}: {source}")]
    Spec {
        /// The bundle directory.
        bundle: PathBuf,
        /// The error from the spec builder.
        #[source]
        source: oci_spec::OciSpecError,
    },
    /// A cgroup directory could not be removed.
    #[error("remove cgroup {path}: {source} (are processes still running in it?)")]
    Cgroup {
        /// The cgroup directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// The lifecycle state an OCI runtime reports for a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerStatus {
    /// Created but its process has not been started (also reported while being created).
    Created,
    /// Its init process is running.
    Running,
    /// Frozen by the runtime.
    Paused,
    /// Its init process has exited.
    Stopped,
}

/// What the runtime knows about one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerState {
    /// The container id.
    pub id: String,
    /// Its lifecycle state.
    pub status: ContainerStatus,
    /// The host PID of its init process, when it has one.
    pub pid: Option<u32>,
    /// The bundle it was created from.
    pub bundle: PathBuf,
}

/// The result of a command run inside a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    /// Its exit code (128 + n when killed by signal n).
    pub exit_code: i32,
    /// What it wrote to stdout.
    pub stdout: Vec<u8>,
    /// What it wrote to stderr.
    pub stderr: Vec<u8>,
}

/// The container verbs the agent needs; [`OciRuntime`] implements them with a real runtime.
#[async_trait]
pub trait ContainerRuntime: Send + Sync {
    /// Creates and starts a container from a bundle directory (config.json + rootfs), detached,
    /// its stdout and stderr appended to `log` (opened `O_APPEND` and handed to the container
    /// directly, so it keeps logging after the agent dies). Returns the init's host PID.
    /// When the container cannot start, the error carries the runtime's message, which the
    /// runtime also appends to `log`.
    async fn start(&self, id: &str, bundle: &Path, log: &Path) -> Result<u32, RuntimeError>;
    /// The container's state, or `None` when the runtime does not know it.
    async fn state(&self, id: &str) -> Result<Option<ContainerState>, RuntimeError>;
    /// Every container the runtime knows.
    async fn list(&self) -> Result<Vec<ContainerState>, RuntimeError>;
    /// Sends a signal to the container's init process.
    async fn kill(&self, id: &str, signal: Signal) -> Result<(), RuntimeError>;
    /// Removes the container, killing it first if needed. A missing container is not an error.
    async fn delete(&self, id: &str) -> Result<(), RuntimeError>;
    /// Runs `argv` inside the running container and captures its output; kills it after
    /// `timeout`.
    async fn exec(&self, id: &str, argv: &[String], timeout: Duration) -> Result<ExecOutput, RuntimeError>;

    /// Freezes every process of the container (the cgroup freezer).
    async fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        Err(RuntimeError::Command { id: id.to_string(), command: "pause".into(), status: "unsupported".into(), stderr: "this runtime cannot pause".into() })
    }

    /// Thaws a paused container.
    async fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        Err(RuntimeError::Command { id: id.to_string(), command: "resume".into(), status: "unsupported".into(), stderr: "this runtime cannot resume".into() })
    }
}

/// Stops a container gracefully: SIGTERM, up to `grace` for the init (host PID `pid`) to exit,
/// then SIGKILL, then deletes the container. Returns how the init ended.
///
/// Waits with [`wait_exit`], so the init is reaped and a concurrent `wait_exit` on the same PID
/// sees the same outcome.
pub async fn stop(runtime: &dyn ContainerRuntime, id: &str, pid: u32, grace: Duration) -> Result<ExitOutcome, RuntimeError> {
    let outcome = match terminate(runtime, id, pid, grace).await {
        Ok(outcome) => outcome,
        Err(err) => {
            // Delete even if signalling failed so nothing is left running.
            runtime.delete(id).await?;
            return Err(err);
        }
    };
    runtime.delete(id).await?;
    Ok(outcome)
}

async fn terminate(runtime: &dyn ContainerRuntime, id: &str, pid: u32, grace: Duration) -> Result<ExitOutcome, RuntimeError> {
    if let Err(err) = runtime.kill(id, Signal::SIGTERM).await {
        // An init that already exited cannot be signalled; that is the goal, not a failure.
        if still_running(runtime, id).await? {
            return Err(err);
        }
    }
    if let Ok(outcome) = tokio::time::timeout(grace, wait_exit(pid)).await {
        return Ok(outcome);
    }
    tracing::info!(container = id, ?grace, "container ignored SIGTERM, sending SIGKILL");
    if let Err(err) = runtime.kill(id, Signal::SIGKILL).await {
        if still_running(runtime, id).await? {
            return Err(err);
        }
    }
    Ok(wait_exit(pid).await)
}

async fn still_running(runtime: &dyn ContainerRuntime, id: &str) -> Result<bool, RuntimeError> {
    Ok(matches!(runtime.state(id).await?, Some(ContainerState { status: ContainerStatus::Running | ContainerStatus::Paused, .. })))
}

/// Refuses names that could escape a directory or be taken for a command-line flag.
pub(crate) fn validate_name(what: &'static str, value: &str) -> Result<(), RuntimeError> {
    let invalid = |reason| RuntimeError::InvalidName { what, value: value.to_string(), reason };
    if value.is_empty() || value.len() > 128 {
        return Err(invalid("must be 1 to 128 characters"));
    }
    if value.starts_with(['-', '.']) {
        return Err(invalid("must not start with '-' or '.'"));
    }
    if !value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err(invalid("may contain only ASCII letters, digits, '-', '_' and '.'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
