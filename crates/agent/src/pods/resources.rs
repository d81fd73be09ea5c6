//! The node's last guard against overcommit: before a pod runs, its requests (cpu, memory,
//! ephemeral storage, one pod slot) must fit beside the pods already admitted, as the kubelet
//! checks whatever the scheduler decided (a stale decision, or a pod bound by hand with
//! `spec.nodeName`). A pod that does not fit fails with `OutOfcpu`, `OutOfmemory`, ….

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use api::Pod;

/// The resources the node checks; extended resources are the device manager's.
const CHECKED: [&str; 4] = ["cpu", "memory", "ephemeral-storage", "pods"];

/// Why a pod does not fit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Pod was rejected: Node didn't have enough resource: {resource}, requested: {requested}, used: {used}, capacity: {capacity}")]
pub struct Shortage {
    /// The resource (`cpu` in millicores, the others in units).
    pub resource: String,
    /// What the pod asks for.
    pub requested: i64,
    /// What the admitted pods hold.
    pub used: i64,
    /// What the node offers.
    pub capacity: i64,
}

impl Shortage {
    /// The pod's status reason, as the kubelet spells it (`OutOfcpu`, `OutOfmemory`, `OutOfpods`).
    pub fn reason(&self) -> String {
        format!("OutOf{}", self.resource)
    }
}

/// What the node offers and what its admitted pods hold.
pub struct NodeResources {
    allocatable: BTreeMap<String, i64>,
    admitted: Mutex<HashMap<String, BTreeMap<String, i64>>>,
}

/// A pod's requests of the checked resources, counting one pod slot.
fn requests(pod: &Pod) -> BTreeMap<String, i64> {
    let mut wanted: BTreeMap<String, i64> =
        pod.spec.as_ref().map(api::pod::requests).unwrap_or_default().into_iter().filter(|(r, _)| CHECKED.contains(&r.as_str())).collect();
    wanted.insert("pods".into(), 1);
    wanted
}

impl NodeResources {
    /// A node offering `allocatable` (cpu in millicores, memory and storage in bytes, pods as a
    /// count); a resource it does not name is not limited.
    pub fn new(allocatable: BTreeMap<String, i64>) -> NodeResources {
        NodeResources { allocatable, admitted: Mutex::default() }
    }

    /// The allocatable this agent advertises for a machine of `cpus` and `memory` bytes.
    pub fn for_machine(cpus: usize, memory: u64, max_pods: i64) -> NodeResources {
        NodeResources::new([("cpu".to_string(), cpus as i64 * 1000), ("memory".to_string(), memory as i64), ("pods".to_string(), max_pods)].into())
    }

    /// Admits pod `uid` when its requests fit beside the pods admitted before; `already_running`
    /// admits it regardless (it ran before an agent restart: the kubelet does not evict it).
    /// Admitting a pod twice counts it once.
    pub fn admit(&self, uid: &str, pod: &Pod, already_running: bool) -> Result<(), Shortage> {
        let wanted = requests(pod);
        let mut admitted = self.admitted.lock().unwrap_or_else(|e| e.into_inner());
        if !already_running && !admitted.contains_key(uid) {
            for (resource, requested) in &wanted {
                let Some(capacity) = self.allocatable.get(resource) else { continue };
                let used: i64 = admitted.values().filter_map(|held| held.get(resource)).sum();
                if used.saturating_add(*requested) > *capacity {
                    return Err(Shortage { resource: resource.clone(), requested: *requested, used, capacity: *capacity });
                }
            }
        }
        admitted.insert(uid.to_string(), wanted);
        Ok(())
    }

    /// Frees what pod `uid` held (it finished or is gone).
    pub fn release(&self, uid: &str) {
        self.admitted.lock().unwrap_or_else(|e| e.into_inner()).remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(cpu: &str, memory: &str) -> Pod {
        serde_json::from_value(json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}})).unwrap()
    }

    #[test]
    fn pods_are_admitted_while_their_requests_fit_and_freed_when_they_go() {
        let node = NodeResources::for_machine(2, 1 << 30, 2);
        node.admit("a", &pod("1500m", "100Mi"), false).unwrap();
        let refused = node.admit("b", &pod("600m", "100Mi"), false).unwrap_err();
        assert_eq!(refused.reason(), "OutOfcpu");
        assert_eq!(refused.to_string(), "Pod was rejected: Node didn't have enough resource: cpu, requested: 600, used: 1500, capacity: 2000");
        node.admit("b", &pod("500m", "100Mi"), false).expect("exactly full fits");
        node.admit("a", &pod("1500m", "100Mi"), false).expect("admitting a pod again counts it once");
        assert_eq!(node.admit("c", &pod("0", "1Gi"), false).unwrap_err().reason(), "OutOfmemory");
        node.release("a");
        node.admit("c", &pod("0", "512Mi"), false).unwrap();
        assert_eq!(node.admit("d", &pod("0", "1Mi"), false).unwrap_err().reason(), "OutOfpods", "two pods admitted is the limit");
        node.admit("d", &pod("4", "2Gi"), true).expect("a pod that ran before the agent restarted stays");
    }
}
