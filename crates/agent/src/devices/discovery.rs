//! Finding the node's devices: NVIDIA GPUs and the nodes of configured classes, each a unit of
//! an extended resource, and reading a device node's numbers from the host.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::advertise::NodeDevices;
use super::class::DeviceClass;
use super::nvidia::{self, GpuInfo, GPU_RESOURCE};
use super::DeviceError;
use crate::runtime::{DeviceKind, DeviceNode};

/// Where and what to look for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// The device directory: `/dev` on a node, a scratch directory in tests. Class globs under
    /// `/dev/` and the NVIDIA nodes are looked up here.
    pub dev_root: PathBuf,
    /// Configured classes, in flag order (the first to match a device claims it).
    pub classes: Vec<DeviceClass>,
    /// Look for NVIDIA GPUs.
    pub nvidia: bool,
    /// The `nvidia-smi` to run; `None` looks for it in PATH.
    pub nvidia_smi: Option<PathBuf>,
}

impl DiscoveryConfig {
    /// `/dev`, NVIDIA discovery on, and these classes.
    pub fn new(classes: Vec<DeviceClass>) -> DiscoveryConfig {
        DiscoveryConfig { dev_root: PathBuf::from("/dev"), classes, nvidia: true, nvidia_smi: None }
    }
}

/// One unit of an extended resource: a device node that can be granted to one container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// The extended resource, e.g. `nvidia.com/gpu` or `flotilla.dev/camera`.
    pub resource: String,
    /// Stable id within the resource: the GPU index, or the node's path in the container.
    pub id: String,
    /// The node on the host.
    pub host_path: PathBuf,
    /// Where it appears in the container.
    pub container_path: PathBuf,
    /// The GPU UUID, when `nvidia-smi` told it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
}

/// What one scan found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Every device, GPUs first (by index), then each class's (in glob and path order).
    pub devices: Vec<Device>,
    /// Nodes added to every container granted a resource (the GPU control nodes): host path
    /// and container path.
    pub shared: BTreeMap<String, Vec<(PathBuf, PathBuf)>>,
    /// What `nvidia-smi` said, when it ran.
    pub gpus: Vec<GpuInfo>,
    /// Resources advertised even when no device of them is present (the configured classes).
    pub resources: BTreeSet<String>,
}

impl Inventory {
    /// The device `id` of `resource`, if present.
    pub fn get(&self, resource: &str, id: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.resource == resource && d.id == id)
    }

    /// Devices present per resource; configured classes count 0 when none is present.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        let mut counts: BTreeMap<String, u64> = self.resources.iter().map(|r| (r.clone(), 0)).collect();
        for d in &self.devices {
            *counts.entry(d.resource.clone()).or_default() += 1;
        }
        counts
    }

    /// What the Node advertises: the counts and the GPU labels.
    pub fn node_devices(&self) -> NodeDevices {
        NodeDevices { resources: self.counts(), labels: nvidia::labels(&self.gpus) }
    }
}

/// Scans the node for devices; keeps what `nvidia-smi` said until the set of GPUs changes, so
/// frequent rescans stay cheap.
#[derive(Debug)]
pub struct Discoverer {
    config: DiscoveryConfig,
    /// GPU indices of the last `nvidia-smi` run and what it said.
    smi_cache: Option<(Vec<u32>, Vec<GpuInfo>)>,
}

impl Discoverer {
    /// A discoverer for `config`.
    pub fn new(config: DiscoveryConfig) -> Discoverer {
        Discoverer { config, smi_cache: None }
    }

    /// The settings.
    pub fn config(&self) -> &DiscoveryConfig {
        &self.config
    }

    /// Looks at the device directory now. Never fails: what cannot be read is not there.
    pub fn scan(&mut self) -> Inventory {
        let root = self.config.dev_root.clone();
        let mut inventory = Inventory::default();
        // A device node matched twice (a symlink, two classes) is still one device.
        let mut claimed: HashMap<(DeviceKind, u64), String> = HashMap::new();
        if self.config.nvidia {
            let nodes: Vec<(u32, PathBuf)> = nvidia::gpu_nodes(&root).into_iter().filter(|(_, p)| device_node(p, p).is_ok()).collect();
            let indices: Vec<u32> = nodes.iter().map(|(i, _)| *i).collect();
            if !nodes.is_empty() {
                inventory.gpus = self.gpu_info(&indices);
                inventory
                    .shared
                    .insert(GPU_RESOURCE.to_string(), nvidia::control_nodes(&root).into_iter().map(|p| (p.clone(), container_path(&root, &p))).collect());
            }
            for (index, path) in nodes {
                let uuid = inventory.gpus.iter().find(|g| g.index == index).map(|g| g.uuid.clone());
                let container = container_path(&root, &path);
                if let Ok(node) = device_node(&path, &container) {
                    claimed.insert((node.kind, rdev(node.major, node.minor)), GPU_RESOURCE.to_string());
                }
                inventory.devices.push(Device { resource: GPU_RESOURCE.to_string(), id: index.to_string(), host_path: path, container_path: container, uuid });
            }
        }
        for class in &self.config.classes {
            let resource = class.resource();
            inventory.resources.insert(resource.clone());
            for path in class.expand(&root) {
                let container = container_path(&root, &path);
                let Ok(node) = device_node(&path, &container) else { continue };
                let key = (node.kind, rdev(node.major, node.minor));
                if let Some(owner) = claimed.get(&key) {
                    if owner != &resource {
                        tracing::debug!(path = %path.display(), class = class.name(), owner, "device already advertised as another resource");
                    }
                    continue;
                }
                claimed.insert(key, resource.clone());
                inventory.devices.push(Device {
                    resource: resource.clone(),
                    id: container.display().to_string(),
                    host_path: path,
                    container_path: container,
                    uuid: None,
                });
            }
        }
        inventory
    }

    fn gpu_info(&mut self, indices: &[u32]) -> Vec<GpuInfo> {
        if let Some((cached, gpus)) = &self.smi_cache {
            if cached == indices {
                return gpus.clone();
            }
        }
        let gpus = self.config.nvidia_smi.clone().or_else(nvidia::find_nvidia_smi).and_then(|smi| nvidia::query(&smi)).unwrap_or_default();
        self.smi_cache = Some((indices.to_vec(), gpus.clone()));
        gpus
    }
}

fn rdev(major: u64, minor: u64) -> u64 {
    (major << 32) | minor
}

/// Where a host node appears in containers: a node under `dev_root` at the same place under
/// `/dev`, any other at its own path.
pub fn container_path(dev_root: &Path, host_path: &Path) -> PathBuf {
    match host_path.strip_prefix(dev_root) {
        Ok(relative) => Path::new("/dev").join(relative),
        Err(_) => host_path.to_path_buf(),
    }
}

/// The device node at `host_path` (symlinks followed) as it is to appear at `container_path`:
/// its type, numbers, permission bits and owner.
pub fn device_node(host_path: &Path, container_path: &Path) -> Result<DeviceNode, DeviceError> {
    let meta = std::fs::metadata(host_path).map_err(|source| DeviceError::Gone { path: host_path.to_path_buf(), source })?;
    let kind = if meta.file_type().is_char_device() {
        DeviceKind::Char
    } else if meta.file_type().is_block_device() {
        DeviceKind::Block
    } else {
        return Err(DeviceError::NotADevice { path: host_path.to_path_buf() });
    };
    let rdev = meta.rdev();
    Ok(DeviceNode {
        path: container_path.to_path_buf(),
        kind,
        major: nix::sys::stat::major(rdev),
        minor: nix::sys::stat::minor(rdev),
        file_mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths_keep_the_dev_layout() {
        let root = Path::new("/tmp/fake-dev");
        assert_eq!(container_path(root, Path::new("/tmp/fake-dev/video0")), Path::new("/dev/video0"));
        assert_eq!(container_path(root, Path::new("/tmp/fake-dev/snd/pcm0")), Path::new("/dev/snd/pcm0"));
        assert_eq!(container_path(Path::new("/dev"), Path::new("/dev/ttyUSB0")), Path::new("/dev/ttyUSB0"));
        assert_eq!(container_path(root, Path::new("/run/sensors/s0")), Path::new("/run/sensors/s0"));
    }

    #[test]
    fn real_device_nodes_are_read_and_files_refused() {
        let null = device_node(Path::new("/dev/null"), Path::new("/dev/null")).expect("/dev/null is a device");
        assert_eq!((null.kind, null.major, null.minor), (DeviceKind::Char, 1, 3));
        assert_eq!(null.file_mode, 0o666);
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("file"), "").expect("file");
        assert!(matches!(device_node(&dir.path().join("file"), Path::new("/dev/x")), Err(DeviceError::NotADevice { .. })));
        assert!(matches!(device_node(&dir.path().join("missing"), Path::new("/dev/x")), Err(DeviceError::Gone { .. })));
    }

    #[test]
    fn discovery_without_devices_is_harmless() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("video0"), "not a device").expect("file");
        std::fs::write(dir.path().join("nvidia0"), "not a device").expect("file");
        let class: DeviceClass = "camera=/dev/video*".parse().expect("class");
        let config = DiscoveryConfig { dev_root: dir.path().to_path_buf(), classes: vec![class], nvidia: true, nvidia_smi: Some("/nonexistent".into()) };
        let inventory = Discoverer::new(config).scan();
        assert!(inventory.devices.is_empty() && inventory.gpus.is_empty() && inventory.shared.is_empty());
        assert_eq!(inventory.counts(), BTreeMap::from([("flotilla.dev/camera".to_string(), 0)]), "a configured class is advertised with 0");
    }

    #[test]
    fn symlinks_to_the_same_node_count_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink("/dev/null", dir.path().join("a-null")).expect("symlink");
        std::os::unix::fs::symlink("/dev/null", dir.path().join("b-null")).expect("symlink");
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("c-zero")).expect("symlink");
        let classes =
            vec![format!("first={}/a-*", dir.path().display()).parse().expect("class"), format!("second={}/*", dir.path().display()).parse().expect("class")];
        let config = DiscoveryConfig { dev_root: "/nonexistent".into(), classes, nvidia: false, nvidia_smi: None };
        let inventory = Discoverer::new(config).scan();
        let found: Vec<(&str, &str)> =
            inventory.devices.iter().map(|d| (d.resource.as_str(), d.host_path.file_name().and_then(|n| n.to_str()).unwrap_or(""))).collect();
        assert_eq!(found, [("flotilla.dev/first", "a-null"), ("flotilla.dev/second", "c-zero")]);
        assert_eq!(inventory.devices[0].id, dir.path().join("a-null").display().to_string(), "outside /dev the path is kept");
    }
}
