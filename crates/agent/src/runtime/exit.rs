//! Exit codes of container inits: the agent is their child subreaper and reaps them through a
//! pidfd, so no zombie is left and every waiter on a PID sees the same outcome.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// How a container init ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitOutcome {
    /// It exited with this code.
    Exited(i32),
    /// It was killed by this signal number.
    Signaled(i32),
    /// It is gone but its status is not ours to know: it is not our child (adopted after an
    /// agent restart, or never started by us) or someone else reaped it.
    Unknown,
}

impl ExitOutcome {
    /// The code a shell would report: the exit code, or 128 + the signal.
    pub fn code(&self) -> Option<i32> {
        match self {
            ExitOutcome::Exited(code) => Some(*code),
            ExitOutcome::Signaled(signal) => Some(128 + signal),
            ExitOutcome::Unknown => None,
        }
    }
}

/// Makes this process the child subreaper of its descendants, so a container init whose
/// runtime parent exits (`runc run --detach`) is reparented to the agent and its exit status
/// can be collected with [`wait_exit`].
pub fn become_subreaper() -> std::io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(std::io::Error::from)
}

type SharedWait = Shared<BoxFuture<'static, ExitOutcome>>;

/// One reaping future per PID, shared by every concurrent waiter (only one of them may call
/// `waitid`; the others would get ECHILD and lose the status), tagged with a unique id.
static WAITERS: LazyLock<Mutex<HashMap<u32, (u64, SharedWait)>>> = LazyLock::new(Default::default);
static NEXT_WAIT_ID: AtomicU64 = AtomicU64::new(0);

/// Waits until process `pid` exits and reaps it. Concurrent calls for the same PID share one
/// wait and all see the same outcome. A process that is not our child, or is already gone, is
/// waited for (if still alive) and reported as [`ExitOutcome::Unknown`].
pub async fn wait_exit(pid: u32) -> ExitOutcome {
    let mut waiter = {
        let mut waiters = lock_waiters();
        let (id, wait) = waiters.entry(pid).or_insert_with(|| (NEXT_WAIT_ID.fetch_add(1, Ordering::Relaxed), reap(pid).boxed().shared()));
        Waiter { pid, id: *id, wait: wait.clone() }
    };
    (&mut waiter.wait).await
}

fn lock_waiters() -> std::sync::MutexGuard<'static, HashMap<u32, (u64, SharedWait)>> {
    WAITERS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One caller's share of a wait; the last one to leave, done or cancelled, removes the entry.
struct Waiter {
    pid: u32,
    id: u64,
    wait: SharedWait,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut waiters = lock_waiters();
        let Some((id, shared)) = waiters.get(&self.pid) else {
            return;
        };
        // A completed wait leaves our handle empty (`None`); a cancelled one is dropped with
        // the entry when only the map and this waiter still hold it.
        let done = self.wait.strong_count().is_none();
        if *id == self.id && (done || shared.strong_count() <= Some(2)) {
            waiters.remove(&self.pid);
        }
    }
}

async fn reap(pid: u32) -> ExitOutcome {
    let pidfd = match pidfd_open(pid) {
        Ok(fd) => fd,
        // ESRCH: no such process; it was reaped already (by someone else) or never existed.
        Err(err) => {
            tracing::debug!(pid, %err, "pidfd_open failed; exit status unknown");
            return ExitOutcome::Unknown;
        }
    };
    // SAFETY: the AsyncFd owns the OwnedFd, which keeps the descriptor open and unchanged
    // until it is handed back by `into_inner` (or `into_parts` on failure).
    let registered = unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) };
    let pidfd = match registered {
        Ok(async_fd) => {
            // A pidfd becomes readable once the process has exited.
            if let Err(err) = async_fd.readable().await {
                tracing::warn!(pid, %err, "polling pidfd failed; waiting on a blocking thread");
            }
            async_fd.into_inner()
        }
        Err(failed) => {
            let (pidfd, err) = failed.into_parts();
            tracing::warn!(pid, %err, "cannot register pidfd; waiting on a blocking thread");
            pidfd
        }
    };
    // The process has exited (or polling failed and waitid blocks until it does).
    match tokio::task::spawn_blocking(move || waitid_pidfd(&pidfd)).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(err)) => {
            if err.raw_os_error() != Some(libc::ECHILD) {
                tracing::warn!(pid, %err, "waitid failed; exit status unknown");
            }
            ExitOutcome::Unknown
        }
        Err(join_err) => {
            tracing::warn!(pid, %join_err, "waitid thread failed; exit status unknown");
            ExitOutcome::Unknown
        }
    }
}

fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| std::io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: pidfd_open takes a pid and a flags word and returns a new file descriptor or -1;
    // it reads and writes no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| std::io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reaps the process behind `pidfd`, blocking until it has exited. ECHILD means it is not our
/// child.
fn waitid_pidfd(pidfd: &OwnedFd) -> std::io::Result<ExitOutcome> {
    loop {
        // SAFETY: siginfo_t is plain data for which all-zero bytes are a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t that outlives the call; the pidfd is
        // open for the duration of the call because we borrow it.
        let rc = unsafe { libc::waitid(libc::P_PIDFD, pidfd.as_raw_fd() as libc::id_t, &mut info, libc::WEXITED) };
        if rc < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        // SAFETY: waitid succeeded with WEXITED, so the kernel filled in the SIGCHLD fields.
        let status = unsafe { info.si_status() };
        return Ok(match info.si_code {
            libc::CLD_EXITED => ExitOutcome::Exited(status),
            libc::CLD_KILLED | libc::CLD_DUMPED => ExitOutcome::Signaled(status),
            _ => ExitOutcome::Unknown,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    #[allow(clippy::zombie_processes, reason = "wait_exit is the reaper under test")]
    async fn reaps_our_child_with_code_and_signal() {
        let child = std::process::Command::new("/bin/sh").args(["-c", "exit 7"]).spawn().expect("spawn sh");
        let (a, b) = tokio::join!(wait_exit(child.id()), wait_exit(child.id()));
        assert_eq!((a, b), (ExitOutcome::Exited(7), ExitOutcome::Exited(7)));

        let child = std::process::Command::new("/bin/sleep").arg("30").spawn().expect("sleep");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL).expect("kill");
        assert_eq!(wait_exit(child.id()).await, ExitOutcome::Signaled(libc::SIGKILL));
        assert_eq!(ExitOutcome::Signaled(9).code(), Some(137));
    }

    #[tokio::test]
    async fn unknown_for_processes_that_are_not_ours() {
        // PID 1 is alive and not our child; a PID beyond pid_max does not exist.
        assert_eq!(wait_exit(u32::MAX).await, ExitOutcome::Unknown);
        let not_ours = tokio::time::timeout(std::time::Duration::from_millis(50), wait_exit(1));
        assert!(not_ours.await.is_err(), "PID 1 must still be running");
        assert!(!lock_waiters().contains_key(&1), "a cancelled wait must not linger");
    }
}
