//! Advertising devices on the Node: extended resources in `status.capacity` and
//! `status.allocatable`, the GPU labels, kept current as devices come and go.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use api::k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use api::Node;
use client::{Client, ClientError};
use tokio::time::Instant;

use super::requests::is_device_resource;
use crate::AgentContext;

/// The Node is read back at least this often, so a status someone else replaced is repaired.
const RECHECK: Duration = Duration::from_secs(60);

/// Conflicting writers (the node lifecycle controller) are retried this many times.
const ATTEMPTS: usize = 5;

/// What the Node says about the node's devices.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeDevices {
    /// Extended resource → number of devices present.
    pub resources: BTreeMap<String, u64>,
    /// Labels derived from the devices (`nvidia.com/gpu.product`, …).
    pub labels: BTreeMap<String, String>,
}

/// True for the labels this layer owns (`nvidia.com/gpu.*`).
pub fn is_device_label(key: &str) -> bool {
    key.starts_with("nvidia.com/gpu.")
}

impl NodeDevices {
    /// Writes the counts into a capacity or allocatable list and drops device resources no
    /// longer advertised; cpu, memory and the rest are left alone. Returns true on a change.
    pub fn apply_resources(&self, list: &mut BTreeMap<String, Quantity>) -> bool {
        let before = list.clone();
        list.retain(|name, _| !is_device_resource(name) || self.resources.contains_key(name));
        for (name, count) in &self.resources {
            list.insert(name.clone(), Quantity(count.to_string()));
        }
        *list != before
    }

    /// Writes the device labels and drops device labels no longer true. Returns true on a
    /// change.
    pub fn apply_labels(&self, labels: &mut BTreeMap<String, String>) -> bool {
        let before = labels.clone();
        labels.retain(|key, _| !is_device_label(key) || self.labels.contains_key(key));
        labels.extend(self.labels.clone());
        *labels != before
    }

    /// Applies both to `node`: returns whether its labels and whether its status changed.
    pub fn apply(&self, node: &mut Node) -> (bool, bool) {
        let labels = self.apply_labels(node.metadata.labels.get_or_insert_with(BTreeMap::new));
        let status = node.status.get_or_insert_with(Default::default);
        let capacity = self.apply_resources(status.capacity.get_or_insert_with(BTreeMap::new));
        let allocatable = self.apply_resources(status.allocatable.get_or_insert_with(BTreeMap::new));
        (labels, capacity || allocatable)
    }
}

/// Brings Node `node_name` in line with `devices`; writes only what differs. Returns whether
/// it wrote anything.
pub async fn publish(client: &Client, node_name: &str, devices: &NodeDevices) -> Result<bool, ClientError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match try_publish(client, node_name, devices).await {
            Err(e) if e.is_conflict() && attempt < ATTEMPTS => continue,
            other => return other,
        }
    }
}

async fn try_publish(client: &Client, node_name: &str, devices: &NodeDevices) -> Result<bool, ClientError> {
    let mut node: Node = client.get_as(None, node_name).await?;
    let (labels_changed, mut status_changed) = devices.apply(&mut node);
    if labels_changed {
        // An update keeps the stored status; the answer carries it, to be brought in line next.
        node = client.update_as(None, node_name, &node).await?;
        status_changed = devices.apply(&mut node).1;
    }
    if status_changed {
        client.update_status_as(None, node_name, &node).await?;
    }
    Ok(labels_changed || status_changed)
}

/// Rescans the node every `config.device_rescan` and publishes when the devices changed, when
/// the last publication failed, and at least every minute (the Node may have been rewritten).
pub async fn run(ctx: Arc<AgentContext>) {
    let mut published: Option<NodeDevices> = None;
    let mut checked = Instant::now();
    loop {
        let devices = ctx.devices.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || devices.rescan()).await {
            tracing::warn!(error = %e, "device rescan failed");
        }
        let current = ctx.devices.node_devices();
        if published.as_ref() != Some(&current) || checked.elapsed() >= RECHECK {
            match publish(&ctx.client, &ctx.config.node_name, &current).await {
                Ok(wrote) => {
                    if wrote {
                        tracing::info!(resources = ?current.resources, "node devices advertised");
                    }
                    published = Some(current);
                    checked = Instant::now();
                }
                Err(e) => tracing::warn!(error = %e, "advertising node devices; will retry"),
            }
        }
        tokio::time::sleep(ctx.config.device_rescan).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(list: &BTreeMap<String, Quantity>) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect()
    }

    #[test]
    fn counts_land_next_to_cpu_and_memory() {
        let devices = NodeDevices {
            resources: BTreeMap::from([("nvidia.com/gpu".to_string(), 2), ("flotilla.dev/camera".to_string(), 1)]),
            labels: BTreeMap::from([("nvidia.com/gpu.count".to_string(), "2".to_string())]),
        };
        let mut node = Node::default();
        let status = node.status.get_or_insert_with(Default::default);
        status.capacity = Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("2".into())),
            ("memory".to_string(), Quantity("4Gi".into())),
            ("flotilla.dev/serial".to_string(), Quantity("3".into())),
        ]));
        node.metadata.labels =
            Some(BTreeMap::from([("kubernetes.io/os".to_string(), "linux".to_string()), ("nvidia.com/gpu.product".to_string(), "Old-Card".to_string())]));
        assert_eq!(devices.apply(&mut node), (true, true));
        let status = node.status.as_ref().expect("status");
        let expected = [("cpu", "2"), ("flotilla.dev/camera", "1"), ("memory", "4Gi"), ("nvidia.com/gpu", "2")].map(|(k, v)| (k.to_string(), v.to_string()));
        assert_eq!(q(status.capacity.as_ref().expect("capacity")), expected, "the unplugged class is dropped");
        assert_eq!(q(status.allocatable.as_ref().expect("allocatable")), expected[1..2].iter().chain(&expected[3..]).cloned().collect::<Vec<_>>());
        let labels = node.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels.keys().collect::<Vec<_>>(), ["kubernetes.io/os", "nvidia.com/gpu.count"]);
        assert_eq!(devices.apply(&mut node), (false, false), "idempotent");
    }
}
