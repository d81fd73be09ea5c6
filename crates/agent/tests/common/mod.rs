//! The sandbox the real-kernel agent tests share: a runc state root and a busybox rootfs in a
//! private temporary directory, and a pod uid of their own.

use std::path::Path;

use agent::runtime::{become_subreaper, remove_pod_cgroups, OciRuntime};

/// The static busybox the rootfs is made of (Debian `busybox-static`).
pub const BUSYBOX: &str = "/bin/busybox";

/// Checks root, busybox and runc, then builds the sandbox with `applets` linked to busybox.
/// The pod uid starts with `prefix`; `why` says in the failure what needs root.
pub fn sandbox(prefix: &str, applets: &[&str], why: &str) -> (tempfile::TempDir, OciRuntime, String) {
    assert!(nix::unistd::geteuid().is_root(), "{why} need root");
    assert!(Path::new(BUSYBOX).is_file(), "{BUSYBOX} is missing: apt-get install busybox-static");
    become_subreaper().expect("become child subreaper");
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = match OciRuntime::new("runc", dir.path().join("runc-state")) {
        Ok(runtime) => runtime,
        Err(err) => panic!("runc is required for these tests: apt-get install runc ({err})"),
    };
    let rootfs = dir.path().join("rootfs");
    for sub in ["bin", "proc", "dev", "sys", "tmp", "etc"] {
        std::fs::create_dir_all(rootfs.join(sub)).expect("rootfs dir");
    }
    std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).expect("copy busybox");
    for applet in applets {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).expect("symlink");
    }
    let pod_uid = format!("{prefix}{}", uuid::Uuid::new_v4().simple());
    (dir, runtime, pod_uid)
}

/// Deletes by force every container under the sandbox's runc root and the pod's cgroups.
pub fn clean_up(runtime: &OciRuntime, pod_uid: &str) {
    let root = runtime.root().display().to_string();
    if let Ok(entries) = std::fs::read_dir(runtime.root()) {
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            let _ = std::process::Command::new(runtime.binary()).args([&format!("--root={root}"), "delete", "--force", &id]).output();
        }
    }
    let _ = remove_pod_cgroups(pod_uid);
}
