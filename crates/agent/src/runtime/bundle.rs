//! Turns a [`ContainerSpec`] into an OCI bundle config (`config.json`) with secure defaults.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder,
    RootBuilder, Spec, SpecBuilder, UserBuilder,
};
use oci_spec::OciSpecError;

use super::defaults;
use super::RuntimeError;

use crate::PathError;

/// CFS period used to express CPU limits (100 ms, as Kubernetes does).
const CPU_PERIOD_US: u64 = 100_000;

/// What the agent knows about a container to run; [`write_bundle`] adds the secure defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerSpec {
    /// The command and its arguments (entrypoint + cmd, already merged).
    pub args: Vec<String>,
    /// `KEY=value` pairs; a default `PATH` is added when absent.
    pub env: Vec<String>,
    /// Working directory inside the container.
    pub cwd: String,
    /// Who the process runs as.
    pub user: ProcessUser,
    /// Hostname inside the container's UTS namespace.
    pub hostname: Option<String>,
    /// The root filesystem (absolute, or relative to the bundle directory).
    pub rootfs: PathBuf,
    /// Mount the root filesystem read-only.
    pub readonly_rootfs: bool,
    /// The pod network namespace to join; `None` gives the container a private, empty one.
    pub netns: Option<PathBuf>,
    /// cgroup path relative to each hierarchy root, see
    /// [`container_cgroups_path`](super::container_cgroups_path).
    pub cgroups_path: String,
    /// cgroup limits.
    pub resources: Resources,
    /// Extra bind mounts (/etc/hosts, /etc/resolv.conf, /etc/hostname, volumes, …).
    pub mounts: Vec<BindMount>,
    /// Apply the default seccomp deny-list (on unless a pod is explicitly unconfined).
    pub seccomp: bool,
    /// Host devices granted to the container: each is created in it and allowed by its device
    /// cgroup; every other device stays denied.
    pub devices: Vec<DeviceNode>,
}

impl ContainerSpec {
    /// A spec running `args` as root in `rootfs`, with every other field at its default.
    pub fn new(args: Vec<String>, rootfs: impl Into<PathBuf>) -> Self {
        ContainerSpec {
            args,
            env: Vec::new(),
            cwd: "/".to_string(),
            user: ProcessUser::default(),
            hostname: None,
            rootfs: rootfs.into(),
            readonly_rootfs: false,
            netns: None,
            cgroups_path: String::new(),
            resources: Resources::default(),
            mounts: Vec::new(),
            seccomp: true,
            devices: Vec::new(),
        }
    }
}

/// The identity of the container process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids.
    pub additional_gids: Vec<u32>,
}

/// cgroup limits; `None` leaves a resource unlimited.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// Relative CPU weight (cgroup v1 `cpu.shares`; runc maps it to `cpu.weight` on v2).
    pub cpu_shares: Option<u64>,
    /// Hard CPU limit in millicores, enforced as a CFS quota over a 100 ms period.
    pub cpu_limit_millicores: Option<u64>,
    /// Memory limit in bytes.
    pub memory_limit_bytes: Option<i64>,
    /// Maximum number of processes and threads.
    pub pids_limit: Option<i64>,
}

impl Resources {
    /// CPU shares for a request in millicores, as Kubernetes computes them (1000m = 1024).
    pub fn cpu_shares_for_millicores(millicores: u64) -> u64 {
        (millicores.saturating_mul(1024) / 1000).clamp(2, 262_144)
    }

    /// The CFS quota and period enforcing `cpu_limit_millicores`, if set.
    pub fn cpu_quota_and_period(&self) -> Option<(i64, u64)> {
        let millicores = self.cpu_limit_millicores?;
        // 1 ms is the kernel's minimum quota.
        let quota = (millicores.saturating_mul(CPU_PERIOD_US) / 1000).max(1000);
        Some((i64::try_from(quota).unwrap_or(i64::MAX), CPU_PERIOD_US))
    }
}

/// A host file or directory bind-mounted into the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindMount {
    /// Path on the host.
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub destination: PathBuf,
    /// Mount it read-only.
    pub readonly: bool,
}

/// Whether a device node is a character or a block device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceKind {
    /// A character device (`c`).
    Char,
    /// A block device (`b`).
    Block,
}

impl DeviceKind {
    fn oci(self) -> LinuxDeviceType {
        match self {
            DeviceKind::Char => LinuxDeviceType::C,
            DeviceKind::Block => LinuxDeviceType::B,
        }
    }
}

/// A device node the runtime creates in the container (`linux.devices`) and allows in its
/// device cgroup (`rwm`), with the numbers, mode and owner of the host's node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceNode {
    /// Absolute path inside the container.
    pub path: PathBuf,
    /// Character or block.
    pub kind: DeviceKind,
    /// Major number.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
    /// Permission bits (e.g. 0o660).
    pub file_mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// Writes `dir/config.json` for `spec` (atomically: temp file, fsync, rename). The rootfs is
/// not touched.
pub fn write_bundle(dir: &Path, spec: &ContainerSpec) -> Result<(), RuntimeError> {
    let oci = oci_spec(spec).map_err(|source| RuntimeError::Spec { bundle: dir.into(), source })?;
    let json = serde_json::to_vec_pretty(&oci).map_err(|err| RuntimeError::Parse { command: "serialize config.json".to_string(), reason: err.to_string() })?;
    std::fs::create_dir_all(dir).map_err(|source| RuntimeError::Io(PathError { action: "create bundle directory", path: dir.into(), source }))?;
    let path = dir.join("config.json");
    let tmp = dir.join(".config.json.tmp");
    let tmp_path = &tmp;
    let io_err = |action| move |source| RuntimeError::Io(PathError { action, path: tmp_path.clone(), source });
    let mut file = std::fs::File::create(&tmp).map_err(io_err("create bundle config"))?;
    file.write_all(&json).map_err(io_err("write bundle config"))?;
    file.sync_all().map_err(io_err("sync bundle config"))?;
    std::fs::rename(&tmp, &path).map_err(|source| RuntimeError::Io(PathError { action: "install bundle config", path, source }))
}

/// Builds the full OCI runtime spec: the caller's process, root and limits on top of
/// [`defaults`].
pub(crate) fn oci_spec(spec: &ContainerSpec) -> Result<Spec, OciSpecError> {
    let mut env = spec.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, defaults::DEFAULT_PATH.to_string());
    }
    let caps = defaults::capabilities();
    let nofile = defaults::nofile_limit();
    let process = ProcessBuilder::default()
        .terminal(false)
        .args(spec.args.clone())
        .env(env)
        .cwd(&spec.cwd)
        .user(UserBuilder::default().uid(spec.user.uid).gid(spec.user.gid).additional_gids(spec.user.additional_gids.clone()).build()?)
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps)
                .inheritable(HashSet::new())
                .ambient(HashSet::new())
                .build()?,
        )
        .rlimits(vec![PosixRlimitBuilder::default().typ(PosixRlimitType::RlimitNofile).soft(nofile).hard(nofile).build()?])
        .no_new_privileges(true)
        .build()?;

    let mut mounts = defaults::standard_mounts()?;
    for bind in &spec.mounts {
        let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
        if bind.readonly {
            options.push("ro".to_string());
        }
        mounts.push(MountBuilder::default().destination(&bind.destination).typ("bind").source(&bind.source).options(options).build()?);
    }

    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces(spec)?)
        .resources(resources(spec)?)
        .masked_paths(defaults::masked_paths())
        .readonly_paths(defaults::readonly_paths());
    if !spec.devices.is_empty() {
        linux = linux.devices(devices(spec)?);
    }
    if !spec.cgroups_path.is_empty() {
        linux = linux.cgroups_path(PathBuf::from(&spec.cgroups_path));
    }
    if spec.seccomp {
        linux = linux.seccomp(defaults::seccomp()?);
    }

    let mut builder = SpecBuilder::default()
        .version("1.0.2")
        .root(RootBuilder::default().path(&spec.rootfs).readonly(spec.readonly_rootfs).build()?)
        .process(process)
        .mounts(mounts)
        .linux(linux.build()?);
    if let Some(hostname) = &spec.hostname {
        builder = builder.hostname(hostname);
    }
    builder.build()
}

fn device_number(n: u64) -> Result<i64, OciSpecError> {
    i64::try_from(n).map_err(|_| OciSpecError::Other(format!("device number {n} is out of range")))
}

fn devices(spec: &ContainerSpec) -> Result<Vec<oci_spec::runtime::LinuxDevice>, OciSpecError> {
    spec.devices
        .iter()
        .map(|node| {
            LinuxDeviceBuilder::default()
                .path(&node.path)
                .typ(node.kind.oci())
                .major(device_number(node.major)?)
                .minor(device_number(node.minor)?)
                .file_mode(node.file_mode)
                .uid(node.uid)
                .gid(node.gid)
                .build()
        })
        .collect()
}

fn namespaces(spec: &ContainerSpec) -> Result<Vec<oci_spec::runtime::LinuxNamespace>, OciSpecError> {
    let fresh = |typ| LinuxNamespaceBuilder::default().typ(typ).build();
    let mut network = LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Network);
    if let Some(path) = &spec.netns {
        network = network.path(path);
    }
    Ok(vec![
        fresh(LinuxNamespaceType::Pid)?,
        fresh(LinuxNamespaceType::Ipc)?,
        fresh(LinuxNamespaceType::Uts)?,
        fresh(LinuxNamespaceType::Mount)?,
        network.build()?,
    ])
}

fn resources(spec: &ContainerSpec) -> Result<oci_spec::runtime::LinuxResources, OciSpecError> {
    let limits = &spec.resources;
    // The default deny-all comes first; the granted devices are allowed after it.
    let mut device_rules = defaults::device_rules()?;
    for node in &spec.devices {
        device_rules.push(
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(node.kind.oci())
                .major(device_number(node.major)?)
                .minor(device_number(node.minor)?)
                .access("rwm")
                .build()?,
        );
    }
    let mut resources = LinuxResourcesBuilder::default().devices(device_rules);
    if limits.cpu_shares.is_some() || limits.cpu_limit_millicores.is_some() {
        let mut cpu = LinuxCpuBuilder::default();
        if let Some(shares) = limits.cpu_shares {
            cpu = cpu.shares(shares);
        }
        if let Some((quota, period)) = limits.cpu_quota_and_period() {
            cpu = cpu.quota(quota).period(period);
        }
        resources = resources.cpu(cpu.build()?);
    }
    if let Some(limit) = limits.memory_limit_bytes {
        resources = resources.memory(LinuxMemoryBuilder::default().limit(limit).build()?);
    }
    if let Some(limit) = limits.pids_limit {
        resources = resources.pids(LinuxPidsBuilder::default().limit(limit).build()?);
    }
    resources.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_limits_follow_kubernetes() {
        assert_eq!(Resources::cpu_shares_for_millicores(1000), 1024);
        assert_eq!(Resources::cpu_shares_for_millicores(0), 2);
        let limits = Resources { cpu_limit_millicores: Some(250), ..Default::default() };
        assert_eq!(limits.cpu_quota_and_period(), Some((25_000, 100_000)));
        let tiny = Resources { cpu_limit_millicores: Some(1), ..Default::default() };
        assert_eq!(tiny.cpu_quota_and_period(), Some((1000, 100_000)));
    }

    #[test]
    fn spec_has_secure_defaults() {
        let mut spec = ContainerSpec::new(vec!["sh".into()], "/rootfs");
        spec.netns = Some("/run/netns/flotilla-abc".into());
        spec.resources.memory_limit_bytes = Some(64 << 20);
        spec.cgroups_path = "/flotilla/podabc/web".into();
        spec.mounts.push(BindMount { source: "/tmp/hosts".into(), destination: "/etc/hosts".into(), readonly: true });
        let json = serde_json::to_value(oci_spec(&spec).expect("spec builds")).expect("json");
        let process = &json["process"];
        assert_eq!(process["noNewPrivileges"], true);
        let bounding = process["capabilities"]["bounding"].as_array().expect("caps");
        assert_eq!(bounding.len(), 14);
        assert!(!bounding.iter().any(|c| c == "CAP_SYS_ADMIN"));
        assert!(process["env"][0].as_str().expect("env").starts_with("PATH="));
        let namespaces = json["linux"]["namespaces"].as_array().expect("namespaces");
        let net = namespaces.iter().find(|n| n["type"] == "network").expect("net ns");
        assert_eq!(net["path"], "/run/netns/flotilla-abc");
        assert_eq!(namespaces.len(), 5);
        assert_eq!(json["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(json["linux"]["cgroupsPath"], "/flotilla/podabc/web");
        assert!(json["linux"]["maskedPaths"].as_array().expect("masked").len() > 5);
        assert_eq!(json["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
        let hosts = json["mounts"].as_array().expect("mounts").last().expect("bind").clone();
        assert_eq!(hosts["destination"], "/etc/hosts");
        assert!(hosts["options"].as_array().expect("options").iter().any(|o| o == "ro"));
    }

    #[test]
    fn granted_devices_are_created_and_allowed_after_the_default_deny() {
        let mut spec = ContainerSpec::new(vec!["sh".into()], "/rootfs");
        let plain = serde_json::to_value(oci_spec(&spec).expect("spec builds")).expect("json");
        assert!(plain["linux"].get("devices").is_none(), "no devices unless granted");
        assert_eq!(plain["linux"]["resources"]["devices"].as_array().expect("rules").len(), 1);

        spec.devices = vec![
            DeviceNode { path: "/dev/nvidia0".into(), kind: DeviceKind::Char, major: 195, minor: 0, file_mode: 0o666, uid: 0, gid: 44 },
            DeviceNode { path: "/dev/sdz".into(), kind: DeviceKind::Block, major: 8, minor: 240, file_mode: 0o660, uid: 0, gid: 6 },
        ];
        let json = serde_json::to_value(oci_spec(&spec).expect("spec builds")).expect("json");
        let devices = json["linux"]["devices"].as_array().expect("devices");
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[0]["path"], "/dev/nvidia0");
        assert_eq!((devices[0]["type"].as_str(), devices[0]["major"].as_i64(), devices[0]["minor"].as_i64()), (Some("c"), Some(195), Some(0)));
        assert_eq!((devices[0]["fileMode"].as_u64(), devices[0]["uid"].as_u64(), devices[0]["gid"].as_u64()), (Some(0o666), Some(0), Some(44)));
        assert_eq!(devices[1]["type"], "b");
        let rules = json["linux"]["resources"]["devices"].as_array().expect("rules");
        assert_eq!(rules.len(), 3);
        assert_eq!((rules[0]["allow"].as_bool(), rules[0]["access"].as_str()), (Some(false), Some("rwm")), "deny-all stays first");
        assert!(rules[0].get("major").is_none());
        for (rule, (typ, major, minor)) in rules[1..].iter().zip([("c", 195, 0), ("b", 8, 240)]) {
            assert_eq!(rule["allow"], true);
            assert_eq!((rule["type"].as_str(), rule["major"].as_i64(), rule["minor"].as_i64()), (Some(typ), Some(major), Some(minor)));
            assert_eq!(rule["access"], "rwm");
        }
    }
}
