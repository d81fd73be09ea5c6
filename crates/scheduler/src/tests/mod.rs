//! Builders for nodes and pods, shared by the scheduler's tests.

mod constraints;
mod node_state;
mod preemption;
mod property;
mod spread_policies;

use api::k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};

use super::*;

/// A Ready node with `cpu` cores and `mem_gi` GiB, and extra fields merged in.
pub fn node(name: &str, cpu: i64, mem_gi: i64, extra: Value) -> Node {
    let mut n = json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {
            "allocatable": {"cpu": cpu.to_string(), "memory": format!("{mem_gi}Gi"), "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    });
    merge(&mut n, extra);
    serde_json::from_value(n).expect("a valid node")
}

/// A pod asking for `cpu_m` millicores and `mem_mi` MiB, with extra fields merged in.
pub fn pod(name: &str, cpu_m: i64, mem_mi: i64, extra: Value) -> Pod {
    let mut p = json!({
        "metadata": {"name": name, "namespace": "default", "labels": {}},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": format!("{cpu_m}m"), "memory": format!("{mem_mi}Mi")}}}]}
    });
    merge(&mut p, extra);
    serde_json::from_value(p).expect("a valid pod")
}

fn merge(into: &mut Value, extra: Value) {
    match (into, extra) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

/// A snapshot of these nodes with the default configuration.
pub fn cluster(nodes: &[Node]) -> Snapshot {
    let mut s = Snapshot::new(SchedulerConfig::default());
    for n in nodes {
        s.upsert_node(n);
    }
    s
}

/// Schedules and, when bound, assumes the pod; returns the node or the message.
pub fn place(s: &mut Snapshot, p: &Pod) -> Result<String, String> {
    let info = s.pod_info(p).map_err(|e| e.to_string())?;
    match s.schedule(&info) {
        Ok(Decision::Bind(n)) => {
            s.assume(&info, &n);
            Ok(n)
        }
        Ok(d) => Err(format!("{d:?}")),
        Err(e) => Err(e.to_string()),
    }
}
