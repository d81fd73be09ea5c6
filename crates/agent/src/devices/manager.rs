//! The node's devices in one place: the latest scan, the recorded allocations, admission of
//! pods, and the device nodes and environment each container is given.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use api::Pod;

use super::advertise::NodeDevices;
use super::allocator::{Allocations, PodAllocation};
use super::class::check_unique;
use super::discovery::{device_node, Discoverer, DiscoveryConfig, Inventory};
use super::nvidia::GPU_RESOURCE;
use super::requests::PodRequest;
use super::{AdmissionError, DeviceError};
use crate::runtime::DeviceNode;

/// The variable the NVIDIA container toolkit reads to choose the GPUs of a container.
pub const NVIDIA_VISIBLE_DEVICES: &str = "NVIDIA_VISIBLE_DEVICES";

/// The name of the allocation file in the state directory.
pub const ALLOCATIONS_FILE: &str = "allocations.json";

/// What one container is given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerDevices {
    /// Device nodes to create in it and allow in its device cgroup: its granted devices, then
    /// the nodes every holder of such a device needs (the GPU control nodes).
    pub nodes: Vec<DeviceNode>,
    /// `NVIDIA_VISIBLE_DEVICES` for a container granted GPUs: their UUIDs when all are known,
    /// else their indices.
    pub visible_gpus: Option<String>,
}

impl ContainerDevices {
    /// Sets `NVIDIA_VISIBLE_DEVICES` in `env` (`KEY=value` pairs) to the granted GPUs. A
    /// container granted none that still carries the variable (CUDA images set it to `all`)
    /// gets `void`, so an NVIDIA runtime hook cannot hand it GPUs behind the allocator's back.
    pub fn apply_env(&self, env: &mut Vec<String>) {
        let prefix = format!("{NVIDIA_VISIBLE_DEVICES}=");
        let had = env.iter().any(|e| e.starts_with(&prefix));
        env.retain(|e| !e.starts_with(&prefix));
        match &self.visible_gpus {
            Some(gpus) => env.push(format!("{prefix}{gpus}")),
            None if had => env.push(format!("{prefix}void")),
            None => {}
        }
    }
}

struct State {
    inventory: Inventory,
    allocations: Allocations,
}

/// The device plug-in layer of one node. Cheap to share behind an `Arc`; every method is
/// safe to call from any task.
pub struct DeviceManager {
    file: PathBuf,
    discoverer: Mutex<Discoverer>,
    state: Mutex<State>,
}

impl DeviceManager {
    /// Loads the allocations recorded in `state_dir` and scans the node once. A class list with
    /// a name twice or an unreadable allocation file is an error.
    pub fn open(state_dir: &Path, config: DiscoveryConfig) -> Result<DeviceManager, DeviceError> {
        check_unique(&config.classes)?;
        let file = state_dir.join(ALLOCATIONS_FILE);
        let allocations = Allocations::load(&file)?;
        let mut discoverer = Discoverer::new(config);
        let inventory = discoverer.scan();
        for (resource, count) in inventory.counts() {
            tracing::info!(resource, count, "devices found");
        }
        Ok(DeviceManager { file, discoverer: Mutex::new(discoverer), state: Mutex::new(State { inventory, allocations }) })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Scans the node again; returns true when the set of devices changed. Blocks (it reads
    /// the device directory and may run `nvidia-smi`): call it off the async executor.
    pub fn rescan(&self) -> bool {
        let inventory = self.discoverer.lock().unwrap_or_else(|p| p.into_inner()).scan();
        let mut state = self.lock();
        if state.inventory == inventory {
            return false;
        }
        for d in inventory.devices.iter().filter(|d| state.inventory.get(&d.resource, &d.id).is_none()) {
            tracing::info!(resource = %d.resource, id = %d.id, path = %d.host_path.display(), "device added");
        }
        for d in state.inventory.devices.iter().filter(|d| inventory.get(&d.resource, &d.id).is_none()) {
            let holder =
                state.allocations.pods().find(|uid| state.allocations.get(uid).is_some_and(|a| a.devices().any(|h| h.resource == d.resource && h.id == d.id)));
            match holder {
                Some(pod) => tracing::warn!(
                    resource = %d.resource, id = %d.id, path = %d.host_path.display(), pod,
                    "allocated device removed; it stays allocated to the pod but is no longer counted"
                ),
                None => tracing::info!(resource = %d.resource, id = %d.id, path = %d.host_path.display(), "device removed"),
            }
        }
        state.inventory = inventory;
        true
    }

    /// The latest scan.
    pub fn inventory(&self) -> Inventory {
        self.lock().inventory.clone()
    }

    /// What the Node advertises now.
    pub fn node_devices(&self) -> NodeDevices {
        self.lock().inventory.node_devices()
    }

    /// Admits pod `uid`: allocates the devices its containers ask for and records that before
    /// returning, or refuses it. A pod asking for none gets an empty allocation and nothing is
    /// written; a pod that already holds devices keeps them.
    pub fn admit(&self, uid: &str, pod: &Pod) -> Result<PodAllocation, AdmissionError> {
        let request = PodRequest::of(pod)?;
        let mut state = self.lock();
        if request.is_empty() && state.allocations.get(uid).is_none() {
            return Ok(PodAllocation::default());
        }
        let mut next = state.allocations.clone();
        let (allocation, new) = next.allocate(uid, &request, &state.inventory)?;
        if new {
            next.save(&self.file).map_err(AdmissionError::Persist)?;
            state.allocations = next;
            for (container, devices) in &allocation.containers {
                let ids: Vec<&str> = devices.iter().map(|d| d.id.as_str()).collect();
                tracing::info!(pod = uid, container, devices = ?ids, "devices allocated");
            }
        }
        Ok(allocation)
    }

    /// Pod `uid`'s allocation, if it holds devices.
    pub fn allocation(&self, uid: &str) -> Option<PodAllocation> {
        self.lock().allocations.get(uid).cloned()
    }

    /// The pods holding devices.
    pub fn allocated_pods(&self) -> Vec<String> {
        self.lock().allocations.pods().map(str::to_string).collect()
    }

    /// What container `container` of pod `uid` is given, read from the host nodes now. A
    /// container granted nothing gets no node; a granted device that is gone is an error.
    pub fn container_devices(&self, uid: &str, container: &str) -> Result<ContainerDevices, DeviceError> {
        let (granted, shared) = {
            let state = self.lock();
            let granted = state.allocations.get(uid).and_then(|a| a.containers.get(container)).cloned().unwrap_or_default();
            (granted, state.inventory.shared.clone())
        };
        let mut devices = ContainerDevices::default();
        for device in &granted {
            devices.nodes.push(device_node(&device.host_path, &device.container_path)?);
        }
        let mut resources: Vec<&str> = granted.iter().map(|d| d.resource.as_str()).collect();
        resources.sort_unstable();
        resources.dedup();
        for (host, inside) in resources.iter().filter_map(|r| shared.get(*r)).flatten() {
            if devices.nodes.iter().any(|n| &n.path == inside) {
                continue;
            }
            match device_node(host, inside) {
                Ok(node) => devices.nodes.push(node),
                Err(e) => tracing::warn!(error = %e, "control node not given to the container"),
            }
        }
        let gpus: Vec<_> = granted.iter().filter(|d| d.resource == GPU_RESOURCE).collect();
        if !gpus.is_empty() {
            let uuids: Option<Vec<&str>> = gpus.iter().map(|d| d.uuid.as_deref()).collect();
            let ids: Vec<&str> = gpus.iter().map(|d| d.id.as_str()).collect();
            devices.visible_gpus = Some(uuids.unwrap_or(ids).join(","));
        }
        Ok(devices)
    }

    /// Frees pod `uid`'s devices (its containers are gone, or it finished). Returns what it
    /// held. The memory is freed even when recording that fails: the stale record names a pod
    /// that is dropped at the next start.
    pub fn release(&self, uid: &str) -> Result<Option<PodAllocation>, DeviceError> {
        let mut state = self.lock();
        let Some(released) = state.allocations.release(uid) else { return Ok(None) };
        let ids: Vec<&str> = released.devices().map(|d| d.id.as_str()).collect();
        tracing::info!(pod = uid, devices = ?ids, "devices freed");
        state.allocations.save(&self.file)?;
        Ok(Some(released))
    }

    /// Frees the devices of every pod not in `live` (pods deleted while the agent was down);
    /// returns their uids.
    pub fn retain_pods(&self, live: &HashSet<String>) -> Result<Vec<String>, DeviceError> {
        let mut state = self.lock();
        let dropped = state.allocations.retain(|uid| live.contains(uid));
        if !dropped.is_empty() {
            tracing::info!(pods = ?dropped, "freed the devices of pods that no longer exist");
            state.allocations.save(&self.file)?;
        }
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests;
