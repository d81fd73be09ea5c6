use std::collections::BTreeMap;
use std::os::unix::fs::symlink;

use super::*;
use crate::devices::requests::tests::pod;
use crate::devices::DeviceClass;
use crate::runtime::DeviceKind;

/// A scratch device directory whose entries are symlinks to real, harmless host devices
/// (discovery follows them), so these tests need no root.
struct FakeDev {
    dir: tempfile::TempDir,
}

impl FakeDev {
    fn new() -> FakeDev {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("dev")).expect("dev");
        FakeDev { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("dev")
    }

    fn plug(&self, name: &str, target: &str) {
        symlink(target, self.root().join(name)).expect("symlink");
    }

    fn unplug(&self, name: &str) {
        std::fs::remove_file(self.root().join(name)).expect("unplug");
    }

    fn config(&self, classes: &[&str], nvidia: bool) -> DiscoveryConfig {
        DiscoveryConfig {
            dev_root: self.root(),
            classes: classes.iter().map(|c| c.parse::<DeviceClass>().expect("class")).collect(),
            nvidia,
            nvidia_smi: Some(self.dir.path().join("nvidia-smi")),
        }
    }

    fn open(&self, classes: &[&str]) -> DeviceManager {
        DeviceManager::open(&self.dir.path().join("state"), self.config(classes, false)).expect("open")
    }
}

fn granted(manager: &DeviceManager, uid: &str, container: &str) -> Vec<String> {
    manager.allocation(uid).and_then(|a| a.containers.get(container).cloned()).unwrap_or_default().into_iter().map(|d| d.id).collect()
}

#[test]
fn gpus_are_counted_labelled_and_granted_with_their_control_nodes() {
    let dev = FakeDev::new();
    dev.plug("nvidia0", "/dev/null");
    dev.plug("nvidia1", "/dev/zero");
    dev.plug("nvidiactl", "/dev/full");
    dev.plug("nvidia-uvm", "/dev/random");
    let smi = dev.dir.path().join("nvidia-smi");
    std::fs::write(
        &smi,
        "#!/bin/sh\necho '0, NVIDIA A100-SXM4-40GB, GPU-aaaaaaaa-0000-0000-0000-000000000000, 40960'\n\
         echo '1, NVIDIA A100-SXM4-40GB, GPU-bbbbbbbb-0000-0000-0000-000000000000, 40960'\n",
    )
    .expect("script");
    std::fs::set_permissions(&smi, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let manager = DeviceManager::open(&dev.dir.path().join("state"), dev.config(&[], true)).expect("open");

    let advertised = manager.node_devices();
    assert_eq!(advertised.resources, BTreeMap::from([(GPU_RESOURCE.to_string(), 2)]));
    assert_eq!(advertised.labels["nvidia.com/gpu.product"], "NVIDIA-A100-SXM4-40GB");
    assert_eq!(advertised.labels["nvidia.com/gpu.count"], "2");
    assert_eq!(advertised.labels["nvidia.com/gpu.memory"], "40960");

    let train = pod(&[("train", &[("nvidia.com/gpu", "1")], &[]), ("sidecar", &[], &[])]);
    manager.admit("pod-a", &train).expect("fits");
    let devices = manager.container_devices("pod-a", "train").expect("devices");
    let paths: Vec<_> = devices.nodes.iter().map(|n| n.path.display().to_string()).collect();
    assert_eq!(paths, ["/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm"]);
    assert_eq!((devices.nodes[0].kind, devices.nodes[0].major, devices.nodes[0].minor), (DeviceKind::Char, 1, 3), "read from the host node");
    assert_eq!(devices.visible_gpus.as_deref(), Some("GPU-aaaaaaaa-0000-0000-0000-000000000000"));
    assert_eq!(manager.container_devices("pod-a", "sidecar").expect("devices"), ContainerDevices::default(), "the sidecar gets nothing");
    assert_eq!(manager.container_devices("pod-z", "main").expect("devices"), ContainerDevices::default());
}

#[test]
fn nvidia_visible_devices_is_set_only_for_granted_gpus() {
    let gpu = ContainerDevices { nodes: Vec::new(), visible_gpus: Some("GPU-1,GPU-2".into()) };
    let mut env = vec!["PATH=/bin".to_string(), "NVIDIA_VISIBLE_DEVICES=all".to_string()];
    gpu.apply_env(&mut env);
    assert_eq!(env, ["PATH=/bin", "NVIDIA_VISIBLE_DEVICES=GPU-1,GPU-2"]);
    let mut env = vec!["NVIDIA_VISIBLE_DEVICES=all".to_string()];
    ContainerDevices::default().apply_env(&mut env);
    assert_eq!(env, ["NVIDIA_VISIBLE_DEVICES=void"], "a CUDA image without a GPU grant sees none");
    let mut env = vec!["A=1".to_string()];
    ContainerDevices::default().apply_env(&mut env);
    assert_eq!(env, ["A=1"]);
}

#[test]
fn admission_never_double_allocates_and_survives_a_restart() {
    let dev = FakeDev::new();
    dev.plug("fake0", "/dev/null");
    dev.plug("fake1", "/dev/zero");
    let classes = ["fake=/dev/fake*"];
    let manager = dev.open(&classes);
    assert_eq!(manager.node_devices().resources, BTreeMap::from([("flotilla.dev/fake".to_string(), 2)]));

    let one = pod(&[("main", &[("flotilla.dev/fake", "1")], &[])]);
    let two = pod(&[("a", &[("flotilla.dev/fake", "1")], &[]), ("b", &[("flotilla.dev/fake", "1")], &[])]);
    manager.admit("pod-a", &one).expect("fits");
    assert_eq!(granted(&manager, "pod-a", "main"), ["/dev/fake0"]);
    let err = manager.admit("pod-b", &two).expect_err("only one left");
    assert!(err.to_string().contains("flotilla.dev/fake. Requested: 2, Available: 1"), "{err}");
    assert!(!err.is_transient());
    manager.admit("pod-c", &one).expect("fits");
    assert_eq!(granted(&manager, "pod-c", "main"), ["/dev/fake1"]);
    assert!(manager.admit("pod-d", &one).is_err());
    manager.admit("pod-plain", &pod(&[("main", &[("cpu", "1")], &[])])).expect("no devices asked");
    assert_eq!(manager.allocated_pods(), ["pod-a", "pod-c"], "a pod without devices is not recorded");
    drop(manager);

    // An agent restart: the allocations come back, so nobody else gets those devices.
    let manager = dev.open(&classes);
    assert_eq!(granted(&manager, "pod-a", "main"), ["/dev/fake0"]);
    assert!(manager.admit("pod-d", &one).is_err());
    manager.admit("pod-a", &one).expect("re-admitting a pod keeps its devices");
    assert_eq!(granted(&manager, "pod-a", "main"), ["/dev/fake0"]);

    // Pod c was deleted while the agent was down.
    let live = ["pod-a".to_string()].into_iter().collect();
    assert_eq!(manager.retain_pods(&live).expect("retain"), ["pod-c"]);
    manager.admit("pod-d", &one).expect("pod-c's device is free");
    assert_eq!(granted(&manager, "pod-d", "main"), ["/dev/fake1"]);
    assert!(manager.release("pod-a").expect("release").is_some());
    assert!(manager.release("pod-a").expect("release").is_none());
    drop(manager);
    let manager = dev.open(&classes);
    assert_eq!(manager.allocated_pods(), ["pod-d"], "frees are recorded too");
}

#[test]
fn hot_plug_updates_counts_and_keeps_allocated_devices() {
    let dev = FakeDev::new();
    dev.plug("video0", "/dev/null");
    let manager = dev.open(&["camera=/dev/video*"]);
    let count = |m: &DeviceManager| m.node_devices().resources["flotilla.dev/camera"];
    assert_eq!(count(&manager), 1);
    assert!(!manager.rescan(), "nothing changed");

    dev.plug("video1", "/dev/zero");
    assert!(manager.rescan());
    assert_eq!(count(&manager), 2);

    let cam = pod(&[("main", &[("flotilla.dev/camera", "1")], &[])]);
    manager.admit("pod-a", &cam).expect("fits");
    assert_eq!(granted(&manager, "pod-a", "main"), ["/dev/video0"]);
    dev.unplug("video0");
    assert!(manager.rescan());
    assert_eq!(count(&manager), 1, "an unplugged device is not counted");
    assert_eq!(granted(&manager, "pod-a", "main"), ["/dev/video0"], "but stays allocated");
    let err = manager.container_devices("pod-a", "main").expect_err("gone");
    assert!(err.to_string().contains("video0"), "{err}");
    manager.admit("pod-b", &cam).expect("video1 is free");
    assert!(manager.admit("pod-c", &cam).is_err(), "video0 is neither present nor free");

    dev.unplug("video1");
    assert!(manager.rescan());
    assert_eq!(count(&manager), 0, "a configured class stays advertised with 0");
}

#[test]
fn duplicate_classes_and_corrupt_state_refuse_to_open() {
    let dev = FakeDev::new();
    let err = DeviceManager::open(&dev.dir.path().join("state"), dev.config(&["a=/dev/x", "a=/dev/y"], false)).err().expect("duplicate");
    assert!(err.to_string().contains("more than once"), "{err}");
    std::fs::create_dir_all(dev.dir.path().join("state")).expect("state");
    std::fs::write(dev.dir.path().join("state").join(ALLOCATIONS_FILE), "not json").expect("corrupt");
    let err = DeviceManager::open(&dev.dir.path().join("state"), dev.config(&[], false)).err().expect("corrupt");
    assert!(matches!(err, DeviceError::CorruptAllocations { .. }), "{err}");
}
