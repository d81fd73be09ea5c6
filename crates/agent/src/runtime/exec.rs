//! `exec`: runs a command inside a running container with captured, size-capped output and a
//! deadline after which the process itself is killed.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::oci::{describe, os, runtime_errors, CONTROL_TIMEOUT};
use super::{validate_name, ExecOutput, OciRuntime, RuntimeError, Signal};

use crate::PathError;

/// Output kept per stream of an exec; the rest is read and dropped so the process never blocks.
const EXEC_OUTPUT_LIMIT: usize = 4 << 20;

/// `<runtime> exec --pid-file … <id> <argv…>`; see [`ContainerRuntime::exec`](super::ContainerRuntime::exec).
pub(super) async fn exec(runtime: &OciRuntime, id: &str, argv: &[String], timeout: Duration) -> Result<ExecOutput, RuntimeError> {
    validate_name("container id", id)?;
    if argv.is_empty() {
        return Err(RuntimeError::InvalidName { what: "exec command", value: String::new(), reason: "argv must name a program" });
    }
    let scratch = tempfile::Builder::new()
        .prefix("flotilla-exec-")
        .tempdir()
        .map_err(|source| RuntimeError::Io(PathError { action: "create", path: std::env::temp_dir(), source }))?;
    let pid_file = scratch.path().join("pid");
    let runtime_log = scratch.path().join("runtime.log");
    let log_arg = format!("--log={}", runtime_log.display());
    let mut args = vec![os(&log_arg), os("--log-format=json"), os("exec"), os("--pid-file"), os(&pid_file), os(id)];
    args.extend(argv.iter().map(os));
    let (mut command, line) = runtime.command(&args);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|source| RuntimeError::Io(PathError { action: "spawn", path: runtime.binary().to_path_buf(), source }))?;
    let stdout = read_capped(child.stdout.take());
    let stderr = read_capped(child.stderr.take());
    let run = async { tokio::join!(child.wait(), stdout, stderr) };
    let (status, stdout, stderr) = match tokio::time::timeout(timeout, run).await {
        Ok(done) => done,
        Err(_) => {
            // The runtime forwards nothing on its own death, so kill the process itself.
            kill_pid_file(&pid_file);
            let _ = tokio::time::timeout(CONTROL_TIMEOUT, child.wait()).await;
            return Err(RuntimeError::ExecTimeout { id: id.to_string(), argv: argv.to_vec(), timeout });
        }
    };
    let status = status.map_err(|source| RuntimeError::Io(PathError { action: "wait for", path: runtime.binary().to_path_buf(), source }))?;
    let errors = runtime_errors(&runtime_log);
    if !status.success() && !errors.is_empty() {
        return Err(RuntimeError::Command { id: id.to_string(), command: line, status: describe(status), stderr: errors });
    }
    let exit_code = status.code().or_else(|| std::os::unix::process::ExitStatusExt::signal(&status).map(|s| 128 + s));
    Ok(ExecOutput { exit_code: exit_code.unwrap_or(-1), stdout, stderr })
}

async fn read_capped<R: AsyncRead + Unpin>(reader: Option<R>) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut reader) = reader else {
        return kept;
    };
    let mut chunk = [0u8; 8192];
    while let Ok(n @ 1..) = reader.read(&mut chunk).await {
        let room = EXEC_OUTPUT_LIMIT.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..n.min(room)]);
    }
    kept
}

fn kill_pid_file(pid_file: &Path) {
    let pid = std::fs::read_to_string(pid_file).ok().and_then(|pid| pid.trim().parse::<i32>().ok());
    if let Some(pid) = pid.filter(|pid| *pid > 0) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
}
