//! Defaults filled in at admission, as Kubernetes does, so stored objects are explicit.

use k8s_openapi::api::apps::v1::{DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{Container, PodSpec, Probe, Toleration};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::{Deployment, Pod};

/// Fills in a pod's defaults.
pub fn pod(pod: &mut Pod) {
    if let Some(spec) = pod.spec.as_mut() {
        pod_spec(spec);
        node_loss_tolerations(spec);
    }
    let status = pod.status.get_or_insert_with(Default::default);
    status.phase.get_or_insert_with(|| "Pending".to_string());
}

/// Seconds a pod stays bound to a node that is not ready or unreachable before it is evicted
/// and replaced elsewhere (Kubernetes waits 300 s; edge fleets want fast healing).
pub const NODE_LOSS_TOLERATION_SECONDS: i64 = 5;

/// Taints a node gets when it stops being ready or stops heartbeating.
pub const NODE_LOSS_TAINTS: [&str; 2] = ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"];

/// Adds the NoExecute tolerations of node loss with [`NODE_LOSS_TOLERATION_SECONDS`] unless the
/// pod already tolerates that taint (like Kubernetes' DefaultTolerationSeconds admission).
fn node_loss_tolerations(spec: &mut PodSpec) {
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for key in NODE_LOSS_TAINTS {
        let covered = tolerations.iter().any(|t| {
            let key_ok = match t.operator.as_deref() {
                Some("Exists") => t.key.as_deref().is_none_or(|k| k.is_empty() || k == key),
                _ => t.key.as_deref() == Some(key),
            };
            key_ok && t.effect.as_deref().is_none_or(|e| e.is_empty() || e == "NoExecute")
        });
        if !covered {
            tolerations.push(Toleration {
                key: Some(key.to_string()),
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: Some(NODE_LOSS_TOLERATION_SECONDS),
                value: None,
            });
        }
    }
}

/// Fills in a deployment's defaults, its pod template included.
pub fn deployment(deployment: &mut Deployment) {
    let Some(spec) = deployment.spec.as_mut() else { return };
    spec.replicas.get_or_insert(1);
    spec.revision_history_limit.get_or_insert(10);
    spec.progress_deadline_seconds.get_or_insert(600);
    let strategy = spec.strategy.get_or_insert_with(DeploymentStrategy::default);
    let type_ = strategy.type_.get_or_insert_with(|| "RollingUpdate".to_string()).clone();
    if type_ == "RollingUpdate" {
        let rolling = strategy.rolling_update.get_or_insert_with(RollingUpdateDeployment::default);
        rolling.max_surge.get_or_insert_with(|| IntOrString::String("25%".into()));
        rolling.max_unavailable.get_or_insert_with(|| IntOrString::String("25%".into()));
    }
    if let Some(pod_spec_) = spec.template.spec.as_mut() {
        pod_spec(pod_spec_);
    }
}

/// Fills in a pod spec's defaults (shared by pods and pod templates).
pub fn pod_spec(spec: &mut PodSpec) {
    spec.restart_policy.get_or_insert_with(|| "Always".to_string());
    spec.termination_grace_period_seconds.get_or_insert(30);
    spec.dns_policy.get_or_insert_with(|| "ClusterFirst".to_string());
    spec.scheduler_name.get_or_insert_with(|| "default-scheduler".to_string());
    for c in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
        container(c);
    }
}

fn container(c: &mut Container) {
    let image = c.image.clone().unwrap_or_default();
    c.image_pull_policy.get_or_insert_with(|| {
        let last = image.rsplit('/').next().unwrap_or("");
        let latest = !image.contains('@') && (!last.contains(':') || last.ends_with(":latest"));
        if latest { "Always" } else { "IfNotPresent" }.to_string()
    });
    c.termination_message_path.get_or_insert_with(|| "/dev/termination-log".to_string());
    c.termination_message_policy.get_or_insert_with(|| "File".to_string());
    for port in c.ports.iter_mut().flatten() {
        port.protocol.get_or_insert_with(|| "TCP".to_string());
    }
    for probe in [&mut c.liveness_probe, &mut c.readiness_probe, &mut c.startup_probe].into_iter().flatten() {
        probe_defaults(probe);
    }
}

fn probe_defaults(p: &mut Probe) {
    p.period_seconds.get_or_insert(10);
    p.timeout_seconds.get_or_insert(1);
    p.success_threshold.get_or_insert(1);
    p.failure_threshold.get_or_insert(3);
    p.initial_delay_seconds.get_or_insert(0);
    if let Some(http) = p.http_get.as_mut() {
        http.path.get_or_insert_with(|| "/".to_string());
        http.scheme.get_or_insert_with(|| "HTTP".to_string());
    }
}

/// Resolves an int-or-percent against a total: percentages round up when `round_up`, down
/// otherwise (maxSurge rounds up, maxUnavailable down, as in Kubernetes). Percentages are not
/// yet validated when this runs, so out-of-range ones saturate instead of overflowing.
pub fn scaled_value(value: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match value {
        None => 0,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => {
            let pct = i128::from(s.trim_end_matches('%').parse::<i64>().unwrap_or(0));
            let scaled = pct * i128::from(total);
            let value = if round_up { (scaled + 99) / 100 } else { scaled / 100 };
            value.clamp(i32::MIN.into(), i32::MAX.into()) as i32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_like_kubernetes() {
        let pct = IntOrString::String("25%".into());
        assert_eq!(scaled_value(Some(&pct), 10, true), 3);
        assert_eq!(scaled_value(Some(&pct), 10, false), 2);
        assert_eq!(scaled_value(Some(&IntOrString::Int(4)), 10, false), 4);
    }

    #[test]
    fn huge_percentages_saturate() {
        let huge = IntOrString::String("999999999999999999%".into());
        assert_eq!(scaled_value(Some(&huge), 100, true), i32::MAX);
        let negative = IntOrString::String("-9223372036854775808%".into());
        assert_eq!(scaled_value(Some(&negative), i32::MAX, false), i32::MIN);
    }

    #[test]
    fn latest_images_are_always_pulled() {
        let mut spec = PodSpec {
            containers: vec![
                Container { name: "a".into(), image: Some("busybox".into()), ..Default::default() },
                Container { name: "b".into(), image: Some("localhost:5000/busybox:1.35".into()), ..Default::default() },
            ],
            ..Default::default()
        };
        pod_spec(&mut spec);
        assert_eq!(spec.containers[0].image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(spec.containers[1].image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    }
}
