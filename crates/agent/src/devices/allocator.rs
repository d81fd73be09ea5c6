//! Which container holds which device: all-or-nothing allocation per pod over the devices
//! present, never handing one device to two pods, recorded in one JSON file replaced
//! atomically (temp file, fsync, rename, fsync of the directory).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::discovery::{Device, Inventory};
use super::requests::PodRequest;
use super::{AdmissionError, DeviceError};

use crate::PathError;

/// The file format's version; a file of another version is refused rather than misread.
const VERSION: u32 = 1;

/// The devices of one pod, per container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodAllocation {
    /// Container name → the devices it was granted (with their paths, so a container keeps
    /// its devices across restarts even while one is unplugged).
    pub containers: BTreeMap<String, Vec<Device>>,
}

impl PodAllocation {
    /// Every device of the pod.
    pub fn devices(&self) -> impl Iterator<Item = &Device> {
        self.containers.values().flatten()
    }
}

/// Devices some container holds, by resource and id and by host path: a device is taken
/// when either matches, so a node seen under another resource or name after a configuration
/// change is still not handed out twice.
#[derive(Default)]
struct Taken {
    ids: BTreeSet<(String, String)>,
    paths: BTreeSet<std::path::PathBuf>,
}

impl Taken {
    fn add(&mut self, device: &Device) {
        self.ids.insert((device.resource.clone(), device.id.clone()));
        self.paths.insert(device.host_path.clone());
    }

    fn holds(&self, device: &Device) -> bool {
        self.ids.contains(&(device.resource.clone(), device.id.clone())) || self.paths.contains(&device.host_path)
    }
}

/// Every pod's allocation on this node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocations {
    version: u32,
    /// Pod uid → its devices.
    pods: BTreeMap<String, PodAllocation>,
}

impl Allocations {
    /// No pod holds a device.
    pub fn new() -> Allocations {
        Allocations { version: VERSION, pods: BTreeMap::new() }
    }

    /// The allocation of pod `uid`.
    pub fn get(&self, uid: &str) -> Option<&PodAllocation> {
        self.pods.get(uid)
    }

    /// The pods holding devices.
    pub fn pods(&self) -> impl Iterator<Item = &str> {
        self.pods.keys().map(String::as_str)
    }

    /// Devices held by some pod: (resource, id).
    pub fn in_use(&self) -> BTreeSet<(String, String)> {
        self.pods.values().flat_map(PodAllocation::devices).map(|d| (d.resource.clone(), d.id.clone())).collect()
    }

    /// Gives pod `uid` the devices it asks for, from those in `inventory` no pod holds; all or
    /// nothing. A pod that already has an allocation keeps it (an agent restart, a repeated
    /// admission). Returns the allocation and whether it is new.
    pub fn allocate(&mut self, uid: &str, request: &PodRequest, inventory: &Inventory) -> Result<(PodAllocation, bool), AdmissionError> {
        if let Some(existing) = self.pods.get(uid) {
            return Ok((existing.clone(), false));
        }
        if request.is_empty() {
            return Ok((PodAllocation::default(), false));
        }
        let mut taken = Taken::default();
        for device in self.pods.values().flat_map(PodAllocation::devices) {
            taken.add(device);
        }
        for (resource, requested) in request.totals() {
            let available = inventory.devices.iter().filter(|d| d.resource == resource && !taken.holds(d)).count() as u64;
            if available < requested {
                return Err(AdmissionError::Insufficient { resource, requested, available });
            }
        }
        let mut allocation = PodAllocation::default();
        for (container, resources) in &request.containers {
            let mut granted = Vec::new();
            for (resource, count) in resources {
                let chosen: Vec<Device> =
                    inventory.devices.iter().filter(|d| &d.resource == resource && !taken.holds(d)).take(*count as usize).cloned().collect();
                for device in &chosen {
                    taken.add(device);
                }
                granted.extend(chosen);
            }
            allocation.containers.insert(container.clone(), granted);
        }
        self.pods.insert(uid.to_string(), allocation.clone());
        Ok((allocation, true))
    }

    /// Frees pod `uid`'s devices; returns what it held.
    pub fn release(&mut self, uid: &str) -> Option<PodAllocation> {
        self.pods.remove(uid)
    }

    /// Frees the devices of every pod `keep` refuses; returns their uids.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) -> Vec<String> {
        let dropped: Vec<String> = self.pods.keys().filter(|uid| !keep(uid)).cloned().collect();
        for uid in &dropped {
            self.pods.remove(uid);
        }
        dropped
    }

    /// Reads the allocations recorded at `path`; no file means no allocations.
    pub fn load(path: &Path) -> Result<Allocations, DeviceError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Allocations::new()),
            Err(source) => return Err(DeviceError::Io(PathError { action: "read", path: path.to_path_buf(), source })),
        };
        let corrupt = |reason: String| DeviceError::CorruptAllocations { path: path.to_path_buf(), reason };
        let allocations: Allocations = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if allocations.version != VERSION {
            return Err(corrupt(format!("format version {} is not the supported {VERSION}", allocations.version)));
        }
        let mut seen = BTreeSet::new();
        for device in allocations.pods.values().flat_map(PodAllocation::devices) {
            if !seen.insert((device.resource.clone(), device.id.clone())) {
                return Err(corrupt(format!("{} {} is recorded for two containers", device.resource, device.id)));
            }
        }
        Ok(allocations)
    }

    /// Records the allocations at `path`, atomically: readers and a crash see the old file or
    /// the new one, never a mix.
    pub fn save(&self, path: &Path) -> Result<(), DeviceError> {
        fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> DeviceError + 'a {
            move |source| DeviceError::Io(PathError { action, path: path.to_path_buf(), source })
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let json =
            serde_json::to_vec_pretty(self).map_err(|e| DeviceError::Io(PathError { action: "serialize", path: path.to_path_buf(), source: e.into() }))?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("allocations.json");
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut file = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
        file.write_all(&json).map_err(io("write", &tmp))?;
        file.sync_all().map_err(io("sync", &tmp))?;
        std::fs::rename(&tmp, path).map_err(io("install", path))?;
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io("sync", dir))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::PathBuf;

    use proptest::prelude::*;

    use super::*;

    fn device(resource: &str, id: &str) -> Device {
        Device {
            resource: resource.into(),
            id: id.into(),
            host_path: PathBuf::from(format!("/dev/{id}")),
            container_path: PathBuf::from(format!("/dev/{id}")),
            uuid: None,
        }
    }

    fn inventory(devices: &[(&str, &str)]) -> Inventory {
        Inventory { devices: devices.iter().map(|(r, id)| device(r, id)).collect(), ..Default::default() }
    }

    fn request(containers: &[(&str, &[(&str, u64)])]) -> PodRequest {
        PodRequest { containers: containers.iter().map(|(c, rs)| (c.to_string(), rs.iter().map(|(r, n)| (r.to_string(), *n)).collect())).collect() }
    }

    const GPU: &str = "nvidia.com/gpu";
    const CAM: &str = "flotilla.dev/camera";

    fn ids(allocation: &PodAllocation, container: &str) -> Vec<String> {
        allocation.containers[container].iter().map(|d| d.id.clone()).collect()
    }

    #[test]
    fn pods_get_distinct_devices_per_container() {
        let inv = inventory(&[(GPU, "0"), (GPU, "1"), (GPU, "2"), (CAM, "video0")]);
        let mut a = Allocations::new();
        let (first, new) = a.allocate("pod-a", &request(&[("train", &[(GPU, 2)]), ("cam", &[(CAM, 1)])]), &inv).expect("fits");
        assert!(new);
        assert_eq!((ids(&first, "train"), ids(&first, "cam")), (vec!["0".to_string(), "1".to_string()], vec!["video0".to_string()]));
        let (second, _) = a.allocate("pod-b", &request(&[("main", &[(GPU, 1)])]), &inv).expect("fits");
        assert_eq!(ids(&second, "main"), ["2"]);
        let (again, new) = a.allocate("pod-a", &request(&[("train", &[(GPU, 2)])]), &inv).expect("kept");
        assert_eq!((again, new), (first, false), "a pod keeps what it has");
    }

    #[test]
    fn a_pod_that_does_not_fit_gets_nothing() {
        let inv = inventory(&[(GPU, "0"), (GPU, "1"), (CAM, "video0")]);
        let mut a = Allocations::new();
        a.allocate("pod-a", &request(&[("c", &[(GPU, 1)])]), &inv).expect("fits");
        let err = a.allocate("pod-b", &request(&[("x", &[(CAM, 1)]), ("y", &[(GPU, 1)]), ("z", &[(GPU, 1)])]), &inv).expect_err("only one GPU left");
        assert_eq!(
            err.to_string(),
            "Allocate failed due to requested number of devices unavailable for nvidia.com/gpu. Requested: 2, Available: 1, which is unexpected"
        );
        assert!(a.get("pod-b").is_none());
        assert_eq!(a.in_use().len(), 1, "the camera was not taken either");
        let err = a.allocate("pod-c", &request(&[("c", &[("flotilla.dev/serial", 1)])]), &inv).expect_err("unknown resource");
        assert!(matches!(err, AdmissionError::Insufficient { available: 0, .. }));
    }

    #[test]
    fn release_and_retain_free_devices() {
        let inv = inventory(&[(GPU, "0")]);
        let mut a = Allocations::new();
        a.allocate("pod-a", &request(&[("c", &[(GPU, 1)])]), &inv).expect("fits");
        assert!(a.allocate("pod-b", &request(&[("c", &[(GPU, 1)])]), &inv).is_err());
        assert!(a.release("pod-a").is_some());
        assert!(a.release("pod-a").is_none());
        a.allocate("pod-b", &request(&[("c", &[(GPU, 1)])]), &inv).expect("freed");
        assert_eq!(a.retain(|uid| uid == "pod-x"), ["pod-b"]);
        assert!(a.in_use().is_empty());
    }

    #[test]
    fn unplugged_devices_stay_with_their_pod() {
        let mut a = Allocations::new();
        a.allocate("pod-a", &request(&[("c", &[(CAM, 1)])]), &inventory(&[(CAM, "video0")])).expect("fits");
        let replugged = inventory(&[(CAM, "video0"), (CAM, "video1")]);
        let (other, _) = a.allocate("pod-b", &request(&[("c", &[(CAM, 1)])]), &replugged).expect("fits");
        assert_eq!(ids(&other, "c"), ["video1"], "video0 is still pod-a's");
    }

    #[test]
    fn a_node_held_under_another_resource_is_still_taken() {
        let mut a = Allocations::new();
        a.allocate("pod-a", &request(&[("c", &[(CAM, 1)])]), &inventory(&[(CAM, "video0")])).expect("fits");
        let renamed = inventory(&[("flotilla.dev/video", "video0")]);
        let err = a.allocate("pod-b", &request(&[("c", &[("flotilla.dev/video", 1)])]), &renamed).expect_err("same node");
        assert!(matches!(err, AdmissionError::Insufficient { available: 0, .. }), "{err}");
    }

    #[test]
    fn the_file_round_trips_and_bad_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("devices/allocations.json");
        assert_eq!(Allocations::load(&path).expect("no file"), Allocations::new());
        let mut a = Allocations::new();
        a.allocate("pod-a", &request(&[("c", &[(GPU, 2)])]), &inventory(&[(GPU, "0"), (GPU, "1")])).expect("fits");
        a.save(&path).expect("save");
        let loaded = Allocations::load(&path).expect("load");
        assert_eq!(loaded, a);
        assert_eq!(std::fs::read_dir(path.parent().expect("dir")).expect("dir").count(), 1, "no temp file left");

        for (bad, reason) in [
            ("{", "EOF"),
            (r#"{"version":2,"pods":{}}"#, "version 2"),
            (
                r#"{"version":1,"pods":{"a":{"containers":{"c":[{"resource":"r","id":"0","hostPath":"/dev/x","containerPath":"/dev/x"}]}},
                    "b":{"containers":{"c":[{"resource":"r","id":"0","hostPath":"/dev/x","containerPath":"/dev/x"}]}}}}"#,
                "two containers",
            ),
        ] {
            std::fs::write(&path, bad).expect("write");
            let err = Allocations::load(&path).expect_err(bad).to_string();
            assert!(err.contains(reason) && err.contains("allocations.json"), "{err}");
        }
    }

    proptest! {
        /// Whatever pods come and go, no device is ever held by two pods, and a pod is given
        /// exactly what it asked for or nothing.
        #[test]
        fn no_device_is_ever_held_twice(ops in proptest::collection::vec((0u8..6, 0u64..3, 0u64..3, any::<bool>()), 1..60)) {
            let inv = inventory(&[(GPU, "0"), (GPU, "1"), (GPU, "2"), (CAM, "video0"), (CAM, "video1")]);
            let mut a = Allocations::new();
            let mut asked: HashMap<String, PodRequest> = HashMap::new();
            for (pod, gpus, cams, release) in ops {
                let uid = format!("pod-{pod}");
                if release {
                    a.release(&uid);
                    asked.remove(&uid);
                    continue;
                }
                let mut containers: Vec<(&str, &[(&str, u64)])> = Vec::new();
                let g = [(GPU, gpus)];
                let c = [(CAM, cams)];
                if gpus > 0 { containers.push(("g", &g)); }
                if cams > 0 { containers.push(("c", &c)); }
                if containers.is_empty() { continue; }
                let req = request(&containers);
                let before = a.clone();
                match a.allocate(&uid, &req, &inv) {
                    Ok((allocation, true)) => {
                        for (container, resources) in &req.containers {
                            let granted = &allocation.containers[container];
                            for (resource, n) in resources {
                                prop_assert_eq!(granted.iter().filter(|d| &d.resource == resource).count() as u64, *n);
                            }
                        }
                        asked.insert(uid, req);
                    }
                    Ok((_, false)) => prop_assert!(asked.contains_key(&uid)),
                    Err(_) => prop_assert_eq!(&a, &before, "a refused pod changes nothing"),
                }
                let held: Vec<(String, String)> = a.pods.values().flat_map(PodAllocation::devices).map(|d| (d.resource.clone(), d.id.clone())).collect();
                let distinct: BTreeSet<_> = held.iter().cloned().collect();
                prop_assert_eq!(held.len(), distinct.len(), "a device held twice");
            }
        }
    }
}
