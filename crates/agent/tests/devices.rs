//! Real-kernel tests of the device plug-in layer: device nodes made with mknod, discovered,
//! allocated to a pod and given to a real runc container, whose device cgroup lets it open
//! exactly what it was granted. Needs root, runc (Debian `runc`) and a static busybox (Debian
//! `busybox-static`).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent::devices::{DeviceManager, DiscoveryConfig, ALLOCATIONS_FILE, GPU_RESOURCE};
use agent::runtime::{container_cgroups_path, remove_pod_cgroups, stop, write_bundle, ContainerRuntime, ContainerSpec, OciRuntime};
use api::Pod;

/// Containers run one test at a time: they share the host's device numbers.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const APPLETS: &[&str] = &["sh", "ls", "cat", "mknod", "sleep", "true", "echo"];

/// The device granted below: a clone of /dev/kmsg (1:11). Opening it write-only does nothing
/// until something is written, and it is not among the devices runc allows every container,
/// so only the grant's cgroup rule lets a container open it.
const GRANTED: (u64, u64) = (1, 11);
/// Not granted: a clone of /dev/fuse (10:229), which any process may open on the host.
const FUSE: (u64, u64) = (10, 229);
/// Not granted: an unused minor of the mem major.
const UNUSED: (u64, u64) = (1, 6);

/// A runc state root, a busybox rootfs, a scratch /dev and a pod uid, private to one test.
struct Fixture {
    dir: tempfile::TempDir,
    runtime: OciRuntime,
    pod_uid: String,
}

impl Fixture {
    fn new() -> Self {
        let (dir, runtime, pod_uid) = common::sandbox("dv", APPLETS, "device tests (mknod, runc)");
        std::fs::create_dir_all(dir.path().join("dev")).expect("fake dev");
        Fixture { dir, runtime, pod_uid }
    }

    fn dev_root(&self) -> PathBuf {
        self.dir.path().join("dev")
    }

    /// A character device node `name` in the scratch /dev.
    fn mknod(&self, name: &str, (major, minor): (u64, u64)) {
        let path = self.dev_root().join(name);
        nix::sys::stat::mknod(&path, nix::sys::stat::SFlag::S_IFCHR, nix::sys::stat::Mode::from_bits_truncate(0o666), nix::sys::stat::makedev(major, minor))
            .unwrap_or_else(|e| panic!("mknod {}: {e}", path.display()));
    }

    fn devices(&self, classes: &[&str], nvidia_smi: Option<PathBuf>) -> DeviceManager {
        let config = DiscoveryConfig {
            dev_root: self.dev_root(),
            classes: classes.iter().map(|c| c.parse().expect("class")).collect(),
            nvidia: nvidia_smi.is_some(),
            nvidia_smi,
        };
        DeviceManager::open(&self.dir.path().join("state"), config).expect("open devices")
    }

    fn spec(&self, container: &str) -> ContainerSpec {
        let mut spec = ContainerSpec::new(vec!["sleep".into(), "1000".into()], self.dir.path().join("rootfs"));
        spec.cgroups_path = container_cgroups_path(&self.pod_uid, container).expect("cgroups path");
        spec
    }

    async fn start(&self, container: &str, spec: &ContainerSpec) -> (String, u32) {
        let bundle = self.dir.path().join(format!("bundle-{container}"));
        write_bundle(&bundle, spec).expect("write bundle");
        let id = format!("{}-{container}", &self.pod_uid[..14]);
        let pid = self.runtime.start(&id, &bundle, &self.dir.path().join(format!("{container}.log"))).await.expect("start container");
        (id, pid)
    }

    /// Runs `script` in the container: (exit code, stdout + stderr).
    async fn sh(&self, id: &str, script: &str) -> (i32, String) {
        let argv = vec!["sh".to_string(), "-c".to_string(), script.to_string()];
        let out = self.runtime.exec(id, &argv, Duration::from_secs(10)).await.expect("exec");
        (out.exit_code, format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Best effort after a failed assertion: kill and delete whatever this test left.
        common::clean_up(&self.runtime, &self.pod_uid);
    }
}

/// A pod whose containers have these limits.
fn pod(containers: &[(&str, &[(&str, &str)])]) -> Pod {
    let containers: Vec<serde_json::Value> = containers
        .iter()
        .map(|(name, limits)| {
            let limits: BTreeMap<&str, &str> = limits.iter().copied().collect();
            serde_json::json!({"name": name, "image": "busybox", "resources": {"limits": limits}})
        })
        .collect();
    serde_json::from_value(serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers}})).expect("pod")
}

/// The device cgroup v1 rules of a container, when the devices hierarchy is mounted.
fn cgroup_v1_device_rules(cgroups_path: &str) -> Option<String> {
    let path = Path::new("/sys/fs/cgroup/devices").join(cgroups_path.trim_start_matches('/')).join("devices.list");
    std::fs::read_to_string(path).ok()
}

#[tokio::test]
async fn a_container_gets_exactly_its_granted_device() {
    let _serial = SERIAL.lock().await;
    let fx = Fixture::new();
    fx.mknod("fake0", GRANTED);
    fx.mknod("fake1", FUSE);
    fx.mknod("fake2", UNUSED);
    std::fs::write(fx.dev_root().join("fake-notes"), "a regular file is not a device").expect("file");

    let devices = fx.devices(&["fake=/dev/fake*"], None);
    assert_eq!(devices.node_devices().resources, BTreeMap::from([("flotilla.dev/fake".to_string(), 3)]), "three device nodes, the file is ignored");

    let pod_uid = fx.pod_uid.clone();
    let allocation = devices.admit(&pod_uid, &pod(&[("main", &[("flotilla.dev/fake", "1")]), ("plain", &[])])).expect("admitted");
    let granted: Vec<&str> = allocation.containers["main"].iter().map(|d| d.id.as_str()).collect();
    assert_eq!(granted, ["/dev/fake0"]);
    assert!(fx.dir.path().join("state").join(ALLOCATIONS_FILE).is_file(), "the allocation is recorded");

    let main = devices.container_devices(&pod_uid, "main").expect("devices of main");
    assert_eq!(main.nodes.len(), 1);
    assert_eq!((main.nodes[0].path.as_path(), main.nodes[0].major, main.nodes[0].minor), (Path::new("/dev/fake0"), GRANTED.0, GRANTED.1));
    let mut spec = fx.spec("main");
    spec.devices = main.nodes.clone();
    let (id, pid) = fx.start("main", &spec).await;

    let (_, listing) = fx.sh(&id, "ls /dev").await;
    let names: HashSet<&str> = listing.split_whitespace().collect();
    assert!(names.contains("fake0"), "the granted node is there: {listing}");
    assert!(!names.contains("fake1") && !names.contains("fake2") && !names.contains("fake-notes"), "nothing else of the class: {listing}");
    assert_eq!(fx.sh(&id, ": > /dev/fake0 && echo opened").await, (0, "opened\n".to_string()), "the granted device opens");
    let (code, out) = fx.sh(&id, "mknod /dev/alias c 1 11 && : > /dev/alias && echo opened").await;
    assert_eq!((code, out.as_str()), (0, "opened\n"), "the cgroup rule is by device number");

    // A node made inside the container for a device it was not granted cannot be opened.
    for (name, (major, minor)) in [("sneaky-fuse", FUSE), ("sneaky-unused", UNUSED)] {
        let (code, out) = fx.sh(&id, &format!("mknod /dev/{name} c {major} {minor} && exec 3<>/dev/{name}")).await;
        assert_ne!(code, 0, "{name} opened");
        assert!(out.contains("Operation not permitted"), "{name} is refused by the device cgroup: {out}");
    }
    if let Some(rules) = cgroup_v1_device_rules(&spec.cgroups_path) {
        assert!(rules.lines().any(|l| l == "c 1:11 rwm"), "{rules}");
        assert!(!rules.lines().any(|l| l.starts_with("c 10:229") || l.starts_with("a ")), "{rules}");
    }

    // A container of the same pod granted nothing sees and opens none of them.
    let plain = devices.container_devices(&pod_uid, "plain").expect("devices of plain");
    assert!(plain.nodes.is_empty());
    let mut plain_spec = fx.spec("plain");
    plain_spec.devices = plain.nodes;
    let (plain_id, plain_pid) = fx.start("plain", &plain_spec).await;
    let (_, listing) = fx.sh(&plain_id, "ls /dev").await;
    assert!(!listing.contains("fake"), "{listing}");
    let (code, out) = fx.sh(&plain_id, "mknod /dev/k c 1 11 && : > /dev/k").await;
    assert!(code != 0 && out.contains("Operation not permitted"), "without the grant the same device is refused: {out}");

    // An agent restart: the running container keeps its device, nobody else gets it.
    drop(devices);
    let devices = fx.devices(&["fake=/dev/fake*"], None);
    let other = devices.admit("another-pod", &pod(&[("c", &[("flotilla.dev/fake", "2")])])).expect("two are free");
    let ids: Vec<&str> = other.containers["c"].iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["/dev/fake1", "/dev/fake2"]);
    let err = devices.admit("third-pod", &pod(&[("c", &[("flotilla.dev/fake", "1")])])).expect_err("none left");
    assert!(err.to_string().contains("Requested: 1, Available: 0"), "{err}");

    for (id, pid) in [(id, pid), (plain_id, plain_pid)] {
        stop(&fx.runtime, &id, pid, Duration::from_millis(200)).await.expect("stop");
    }
    devices.release(&pod_uid).expect("release");
    devices.admit("third-pod", &pod(&[("c", &[("flotilla.dev/fake", "1")])])).expect("fake0 is free again");
    remove_pod_cgroups(&fx.pod_uid).expect("remove cgroups");
}

#[tokio::test]
async fn a_gpu_container_gets_its_gpu_the_control_nodes_and_its_uuid() {
    let _serial = SERIAL.lock().await;
    let fx = Fixture::new();
    fx.mknod("nvidia0", GRANTED);
    fx.mknod("nvidia1", UNUSED);
    fx.mknod("nvidiactl", (1, 3));
    fx.mknod("nvidia-uvm", (1, 5));
    let smi = fx.dir.path().join("nvidia-smi");
    std::fs::write(
        &smi,
        "#!/bin/sh\necho '0, Tesla T4, GPU-00000000-1111-2222-3333-444444444444, 15360'\necho '1, Tesla T4, GPU-55555555-6666-7777-8888-999999999999, 15360'\n",
    )
    .expect("fake nvidia-smi");
    std::fs::set_permissions(&smi, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");

    let devices = fx.devices(&[], Some(smi));
    let advertised = devices.node_devices();
    assert_eq!(advertised.resources, BTreeMap::from([(GPU_RESOURCE.to_string(), 2)]));
    assert_eq!(advertised.labels["nvidia.com/gpu.product"], "Tesla-T4");

    devices.admit(&fx.pod_uid, &pod(&[("cuda", &[("nvidia.com/gpu", "1")])])).expect("admitted");
    let granted = devices.container_devices(&fx.pod_uid, "cuda").expect("devices");
    let mut spec = fx.spec("cuda");
    spec.devices = granted.nodes.clone();
    spec.env.push("NVIDIA_VISIBLE_DEVICES=all".into());
    granted.apply_env(&mut spec.env);
    let (id, pid) = fx.start("cuda", &spec).await;

    let (_, listing) = fx.sh(&id, "ls /dev").await;
    let names: HashSet<&str> = listing.split_whitespace().collect();
    for present in ["nvidia0", "nvidiactl", "nvidia-uvm"] {
        assert!(names.contains(present), "{present} missing: {listing}");
    }
    assert!(!names.contains("nvidia1"), "{listing}");
    assert_eq!(fx.sh(&id, ": > /dev/nvidia0 && echo opened").await, (0, "opened\n".to_string()));
    assert_eq!(fx.sh(&id, "echo $NVIDIA_VISIBLE_DEVICES").await.1, "GPU-00000000-1111-2222-3333-444444444444\n");

    stop(&fx.runtime, &id, pid, Duration::from_millis(200)).await.expect("stop");
    remove_pod_cgroups(&fx.pod_uid).expect("remove cgroups");
}
