//! Questions asked of pods everywhere: readiness, phase, resource requests, template hashes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus, PodTemplateSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use sha2::{Digest, Sha256};

use crate::{quantity, Pod};

/// True when the pod has been asked to terminate (it has a deletion timestamp).
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// True when the pod's `Ready` condition is `True`.
pub fn is_ready(pod: &Pod) -> bool {
    condition(pod.status.as_ref(), "Ready").is_some_and(|c| c.status == "True")
}

/// The pod's phase, `Pending` when unset.
pub fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending")
}

/// The node the pod is bound to, if any.
pub fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty())
}

/// The condition of `type_` in a pod status.
pub fn condition<'a>(status: Option<&'a PodStatus>, type_: &str) -> Option<&'a PodCondition> {
    status?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// Sets (or replaces) one condition; the transition time changes only when the status does.
pub fn set_condition(status: &mut PodStatus, type_: &str, value: bool, reason: &str, message: &str) {
    let value = if value { "True" } else { "False" }.to_string();
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let previous = conditions.iter().position(|c| c.type_ == type_);
    let transition = match previous {
        Some(i) if conditions[i].status == value => conditions[i].last_transition_time.clone(),
        _ => Some(crate::now()),
    };
    let condition = PodCondition {
        type_: type_.to_string(),
        status: value,
        reason: (!reason.is_empty()).then(|| reason.to_string()),
        message: (!message.is_empty()).then(|| message.to_string()),
        last_transition_time: transition,
        ..Default::default()
    };
    match previous {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
}

/// The amount of one resource quantity: millicores for `cpu`, units (bytes, devices) for the rest.
pub fn resource_amount(name: &str, q: &Quantity) -> Option<i64> {
    if name == "cpu" {
        quantity::millis(&q.0).ok()
    } else {
        quantity::units(&q.0).ok()
    }
}

fn container_request(resources: Option<&ResourceRequirements>, out: &mut BTreeMap<String, i64>, combine: fn(i64, i64) -> i64) {
    let Some(r) = resources else { return };
    // A container that sets only a limit requests its limit (the Kubernetes default).
    let mut merged: BTreeMap<&str, &Quantity> = r.limits.iter().flatten().map(|(k, v)| (k.as_str(), v)).collect();
    merged.extend(r.requests.iter().flatten().map(|(k, v)| (k.as_str(), v)));
    for (name, q) in merged {
        if let Some(v) = resource_amount(name, q).filter(|v| *v > 0) {
            let slot = out.entry(name.to_string()).or_insert(0);
            *slot = combine(*slot, v);
        }
    }
}

/// The pod's effective request by resource name, as Kubernetes computes it: the regular
/// containers plus the sidecars (init containers with `restartPolicy: Always`, which keep
/// running beside them), or the peak of the init phase if that is higher (each ordinary init
/// container runs alone beside the sidecars started before it), plus the pod overhead.
/// Quantities were validated at admission; unreadable ones count as zero here.
pub fn requests(spec: &PodSpec) -> BTreeMap<String, i64> {
    let mut sum = BTreeMap::new();
    for c in &spec.containers {
        container_request(c.resources.as_ref(), &mut sum, i64::saturating_add);
    }
    let mut sidecars: BTreeMap<String, i64> = BTreeMap::new();
    let mut init_peak: BTreeMap<String, i64> = BTreeMap::new();
    for c in spec.init_containers.iter().flatten() {
        let mut own = BTreeMap::new();
        container_request(c.resources.as_ref(), &mut own, i64::saturating_add);
        let sidecar = c.restart_policy.as_deref() == Some("Always");
        if sidecar {
            sidecars = add(&sidecars, &own);
        }
        let during: BTreeMap<String, i64> = if sidecar { sidecars.clone() } else { add(&sidecars, &own) };
        for (name, v) in during {
            let slot = init_peak.entry(name).or_insert(0);
            *slot = (*slot).max(v);
        }
    }
    let mut total = sum;
    add_into(&mut total, &sidecars);
    for (name, v) in init_peak {
        let slot = total.entry(name).or_insert(0);
        *slot = (*slot).max(v);
    }
    for (name, q) in spec.overhead.iter().flatten() {
        if let Some(v) = resource_amount(name, q).filter(|v| *v > 0) {
            *total.entry(name.clone()).or_insert(0) += v;
        }
    }
    total
}

fn add(a: &BTreeMap<String, i64>, b: &BTreeMap<String, i64>) -> BTreeMap<String, i64> {
    let mut out = a.clone();
    add_into(&mut out, b);
    out
}

fn add_into(into: &mut BTreeMap<String, i64>, b: &BTreeMap<String, i64>) {
    for (name, v) in b {
        let slot = into.entry(name.clone()).or_insert(0);
        *slot = slot.saturating_add(*v);
    }
}

/// A short stable hash of a pod template, used as the `pod-template-hash` label that tells
/// a Deployment's current pods from old ones.
pub fn template_hash(template: &PodTemplateSpec) -> String {
    let json = serde_json::to_vec(template).unwrap_or_default();
    let digest = Sha256::digest(&json);
    hex::encode(&digest[..5])
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn container(cpu: Option<&str>, mem_limit: Option<&str>) -> Container {
        let mut r = ResourceRequirements::default();
        if let Some(cpu) = cpu {
            r.requests = Some([("cpu".to_string(), Quantity(cpu.to_string()))].into());
        }
        if let Some(mem) = mem_limit {
            r.limits = Some([("memory".to_string(), Quantity(mem.to_string()))].into());
        }
        Container { name: "c".into(), resources: Some(r), ..Default::default() }
    }

    #[test]
    fn requests_sum_containers_and_fall_back_to_limits() {
        let spec = PodSpec {
            containers: vec![container(Some("100m"), Some("64Mi")), container(Some("1"), None)],
            init_containers: Some(vec![container(Some("2"), None)]),
            ..Default::default()
        };
        assert_eq!(requests(&spec), [("cpu".to_string(), 2000), ("memory".to_string(), 64 << 20)].into());
    }

    #[test]
    fn sidecars_add_to_the_containers_and_init_containers_peak_beside_earlier_sidecars() {
        let init = |cpu: &str, sidecar: bool| {
            let mut c = container(Some(cpu), None);
            c.restart_policy = sidecar.then(|| "Always".to_string());
            c
        };
        let cpu = |spec: &PodSpec| requests(spec)["cpu"];
        // Ordinary init containers: the largest one, if above the containers' sum.
        let mut spec =
            PodSpec { containers: vec![container(Some("1"), None)], init_containers: Some(vec![init("3", false), init("2", false)]), ..Default::default() };
        assert_eq!(cpu(&spec), 3000);
        // A 500m sidecar runs beside the 1-CPU container: 1.5 CPUs, the 2-CPU init container
        // that starts after it peaks at 2.5, the 3-CPU one before it at 3.
        spec.init_containers = Some(vec![init("3", false), init("500m", true), init("2", false)]);
        assert_eq!(cpu(&spec), 3000);
        spec.init_containers = Some(vec![init("500m", true), init("3", false)]);
        assert_eq!(cpu(&spec), 3500);
        spec.init_containers = Some(vec![init("500m", true), init("250m", true)]);
        assert_eq!(cpu(&spec), 1750);
    }

    #[test]
    fn conditions_keep_transition_time_when_unchanged() {
        let mut status = PodStatus::default();
        set_condition(&mut status, "Ready", false, "ContainersNotReady", "");
        let first = status.conditions.as_ref().unwrap()[0].last_transition_time.clone();
        set_condition(&mut status, "Ready", false, "ContainersNotReady", "still");
        assert_eq!(status.conditions.as_ref().unwrap()[0].last_transition_time, first);
        set_condition(&mut status, "Ready", true, "", "");
        let pod = Pod { status: Some(status), ..Default::default() };
        assert!(is_ready(&pod));
    }
}
