//! The secure defaults every container gets, modelled on Docker's: capabilities, kernel file
//! masks, standard mounts and a seccomp deny-list.

use std::collections::HashSet;

use oci_spec::runtime::{Arch, Capability, LinuxDeviceCgroup, LinuxSeccomp, LinuxSeccompAction, LinuxSyscall, Mount};
use oci_spec::OciSpecError;

/// `PATH` for processes whose environment does not set one.
pub(crate) const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The most open files a container process may have (the kernel's default `nr_open`).
const NOFILE_CEILING: u64 = 1_048_576;

/// Open-file limit (soft and hard) for container processes: the agent's own hard limit, up to
/// [`NOFILE_CEILING`]. Raising a hard limit needs CAP_SYS_RESOURCE, which the runtime may lack.
pub(crate) fn nofile_limit() -> u64 {
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap_or((1024, 1024));
    hard.min(NOFILE_CEILING)
}

/// Docker's default capability set.
pub(crate) fn capabilities() -> HashSet<Capability> {
    [
        Capability::Chown,
        Capability::DacOverride,
        Capability::Fsetid,
        Capability::Fowner,
        Capability::Mknod,
        Capability::NetRaw,
        Capability::Setgid,
        Capability::Setuid,
        Capability::Setfcap,
        Capability::Setpcap,
        Capability::NetBindService,
        Capability::SysChroot,
        Capability::Kill,
        Capability::AuditWrite,
    ]
    .into_iter()
    .collect()
}

/// Kernel files that leak host information or allow host changes; bind-mounted over with
/// /dev/null (files) or an empty read-only tmpfs (directories).
pub(crate) fn masked_paths() -> Vec<String> {
    [
        "/proc/asound",
        "/proc/acpi",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/sys/firmware",
        "/sys/devices/virtual/powercap",
    ]
    .map(String::from)
    .to_vec()
}

/// Kernel paths that stay visible but read-only.
pub(crate) fn readonly_paths() -> Vec<String> {
    ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"].map(String::from).to_vec()
}

/// /proc, /dev, /dev/pts, /dev/shm, /dev/mqueue, /sys and a read-only /sys/fs/cgroup.
pub(crate) fn standard_mounts() -> Result<Vec<Mount>, OciSpecError> {
    let mount = |destination: &str, typ: &str, source: &str, options: &[&str]| {
        oci_spec::runtime::MountBuilder::default()
            .destination(destination)
            .typ(typ)
            .source(source)
            .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
            .build()
    };
    Ok(vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"])?,
        mount("/dev/pts", "devpts", "devpts", &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"])?,
        mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"])?,
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"])?,
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"])?,
        mount("/sys/fs/cgroup", "cgroup", "cgroup", &["nosuid", "noexec", "nodev", "relatime", "ro"])?,
    ])
}

/// Deny access to every device node; the runtime then allows its standard set (null, zero,
/// full, random, urandom, tty, console, ptmx, pts).
pub(crate) fn device_rules() -> Result<Vec<LinuxDeviceCgroup>, OciSpecError> {
    Ok(vec![oci_spec::runtime::LinuxDeviceCgroupBuilder::default().allow(false).access("rwm").build()?])
}

/// Syscalls Docker's profile refuses to unprivileged containers: kernel modules and keyrings,
/// clock and reboot control, tracing and cross-process memory access, namespace and mount
/// manipulation, and rarely used legacy calls with a history of bugs.
const DENIED_SYSCALLS: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "sysfs",
    "_sysctl",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
];

/// Allows everything except [`DENIED_SYSCALLS`], which fail with EPERM.
pub(crate) fn seccomp() -> Result<LinuxSeccomp, OciSpecError> {
    let denied = oci_spec::runtime::LinuxSyscallBuilder::default()
        .names(DENIED_SYSCALLS.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .action(LinuxSeccompAction::ScmpActErrno)
        .errno_ret(libc::EPERM as u32)
        .build()?;
    let syscalls: Vec<LinuxSyscall> = vec![denied];
    oci_spec::runtime::LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32, Arch::ScmpArchAarch64, Arch::ScmpArchArm])
        .syscalls(syscalls)
        .build()
}
