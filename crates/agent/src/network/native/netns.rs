//! Named network namespaces kept the way `ip netns` keeps them, a file under [`NETNS_DIR`] with
//! the namespace bind-mounted on it, made and entered without running `ip`; and the threads of
//! their own that changing namespace needs.
//!
//! A thread that unshares or enters a namespace stays in it, so that work never runs on a
//! tokio thread: it gets a new OS thread, which exits when the work is done.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::network::{NetworkError, NETNS_DIR};

/// The calling thread's own network namespace (`/proc/self/ns/net` is the main thread's).
const THREAD_NETNS: &str = "/proc/thread-self/ns/net";

/// The file a named namespace is mounted on.
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

fn netns_error(action: &'static str, name: &str, source: impl Into<io::Error>) -> NetworkError {
    NetworkError::Netns { action, name: name.to_string(), source: source.into() }
}

/// Whether this kernel lets a thread name its own namespace (Linux 3.17 and later).
pub fn supported() -> Result<(), NetworkError> {
    std::fs::metadata(THREAD_NETNS).map(drop).map_err(|source| netns_error("find the thread's namespace at", THREAD_NETNS, source))
}

/// Makes [`NETNS_DIR`] a mount point with shared propagation, as `ip netns add` does, so that
/// unmounting a namespace there also unmounts it in mount namespaces made since (containers'),
/// which lets the kernel free it sooner. Blocking.
pub fn share_netns_dir() -> Result<(), NetworkError> {
    let fail = |action, source: Errno| netns_error(action, NETNS_DIR, source);
    DirBuilder::new().recursive(true).mode(0o755).create(NETNS_DIR).map_err(|source| netns_error("create the directory", NETNS_DIR, source))?;
    let mut made_mount_point = false;
    loop {
        match mount(None::<&str>, NETNS_DIR, None::<&str>, MsFlags::MS_SHARED | MsFlags::MS_REC, None::<&str>) {
            Ok(()) => return Ok(()),
            // Not a mount point yet: bind it on itself once, then share it.
            Err(Errno::EINVAL) if !made_mount_point => {
                mount(Some(NETNS_DIR), NETNS_DIR, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                    .map_err(|errno| fail("bind-mount on itself", errno))?;
                made_mount_point = true;
            }
            Err(errno) => return Err(fail("make shared", errno)),
        }
    }
}

/// Creates the named namespace (`ip netns add NAME`); [`share_netns_dir`] must have run.
pub async fn create(name: &str) -> Result<(), NetworkError> {
    let owned = name.to_string();
    on_own_thread(format!("create network namespace {name}"), move || create_on_this_thread(&owned)).await
}

/// Unshares this thread's network namespace, which is why it must be a thread of its own.
fn create_on_this_thread(name: &str) -> Result<(), NetworkError> {
    let file = path(name);
    OpenOptions::new().read(true).write(true).create_new(true).mode(0o000).open(&file).map_err(|source| netns_error("create the file of", name, source))?;
    let made = unshare(CloneFlags::CLONE_NEWNET)
        .map_err(|errno| netns_error("unshare", name, errno))
        .and_then(|()| mount(Some(THREAD_NETNS), &file, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(|errno| netns_error("bind-mount", name, errno)));
    if made.is_err() {
        if let Err(cleanup) = std::fs::remove_file(&file) {
            tracing::warn!(netns = name, %cleanup, "removing the file of a namespace that could not be made failed");
        }
    }
    made
}

/// Removes the named namespace (`ip netns delete NAME`): unmounts it, lazily since a process
/// may still have it open, and removes the file. The kernel frees the namespace, and the links
/// in it, when nothing holds it any more. Blocking.
pub fn delete(name: &str) -> Result<(), NetworkError> {
    let file = path(name);
    match umount2(&file, MntFlags::MNT_DETACH) {
        // EINVAL: the file is there but nothing is mounted on it (a creation cut short).
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(errno) => return Err(netns_error("unmount", name, errno)),
    }
    std::fs::remove_file(&file).map_err(|source| netns_error("remove the file of", name, source))
}

/// Opens the named namespace, for entering it or naming it in a netlink request. Blocking.
pub fn open(name: &str) -> Result<File, NetworkError> {
    File::open(path(name)).map_err(|source| netns_error("open", name, source))
}

/// Runs `work` on a new thread that has entered the named namespace.
pub async fn in_netns<T: Send + 'static>(name: &str, work: impl FnOnce() -> Result<T, NetworkError> + Send + 'static) -> Result<T, NetworkError> {
    let owned = name.to_string();
    on_own_thread(format!("enter network namespace {name}"), move || {
        let netns = open(&owned)?;
        setns(&netns, CloneFlags::CLONE_NEWNET).map_err(|errno| netns_error("enter", &owned, errno))?;
        work()
    })
    .await
}

/// Runs `work` on a new OS thread that exits afterwards, so a namespace it entered dies with
/// it; a panic in `work` resumes in the caller.
async fn on_own_thread<T: Send + 'static>(purpose: String, work: impl FnOnce() -> Result<T, NetworkError> + Send + 'static) -> Result<T, NetworkError> {
    let (done, outcome) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name("flotilla-netns".into()).spawn(move || {
        // The receiver is gone only when the caller was cancelled, and then nobody waits.
        let _ = done.send(std::panic::catch_unwind(AssertUnwindSafe(work)));
    });
    if let Err(source) = spawned {
        return Err(NetworkError::Thread { purpose, source });
    }
    match outcome.await {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => Err(NetworkError::Thread { purpose, source: io::Error::other("the thread ended without reporting") }),
    }
}
