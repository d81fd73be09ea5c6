//! Admission of a pod to the node before anything of it runs: its requests fit beside the pods
//! admitted before (`resources`) and the devices it asks for are allocated, or it fails for
//! good the way the kubelet fails a pod it cannot take (phase `Failed`, reason `OutOfcpu`,
//! `OutOfmemory`, `OutOfpods` or `UnexpectedAdmissionError`).

use std::net::IpAddr;

use api::k8s_openapi::api::core::v1::PodStatus;
use api::{Pod, Time};

use crate::devices::ADMISSION_FAILED_REASON;
use crate::AgentContext;

/// Where a pod stands with admission. Transitions: `Pending` → `Admitted` (its devices are
/// allocated and recorded) or `Rejected` (the node cannot take it; final). `Pending` stays
/// while the allocation cannot be recorded (a disk error) and is tried again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Not decided yet.
    Pending,
    /// May run.
    Admitted,
    /// Failed admission, with the reason and message its status carries.
    Rejected {
        /// `OutOfcpu`, `UnexpectedAdmissionError`, ….
        reason: String,
        /// What was missing.
        message: String,
    },
}

fn is_admission_reason(reason: &str) -> bool {
    reason == ADMISSION_FAILED_REASON || reason.starts_with("OutOf")
}

/// True when the pod's status already says it failed admission.
pub fn reported(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| s.phase.as_deref() == Some("Failed") && s.reason.as_deref().is_some_and(is_admission_reason))
}

/// True when the pod ran on this node before (its containers have a state): it was admitted
/// then, and an agent restart does not judge it again.
fn ran_before(pod: &Pod) -> bool {
    let statuses = pod.status.as_ref().into_iter().flat_map(|s| s.container_statuses.iter().chain(s.init_container_statuses.iter()).flatten());
    statuses.filter_map(|c| c.state.as_ref()).any(|state| state.running.is_some() || state.terminated.is_some())
}

/// Decides a pod's admission. A pod whose status already says it failed admission (before an
/// agent restart) stays rejected, even if it would fit now: the kubelet never revives it. A pod
/// that already finished is not given devices again.
pub fn admit(ctx: &AgentContext, uid: &str, pod: &Pod) -> Admission {
    let status = pod.status.as_ref();
    if reported(pod) {
        let reason = status.and_then(|s| s.reason.clone()).unwrap_or_default();
        return Admission::Rejected { reason, message: status.and_then(|s| s.message.clone()).unwrap_or_default() };
    }
    if matches!(status.and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")) && ctx.devices.allocation(uid).is_none() {
        return Admission::Admitted;
    }
    if let Err(shortage) = ctx.resources.admit(uid, pod, ran_before(pod)) {
        return Admission::Rejected { reason: shortage.reason(), message: shortage.to_string() };
    }
    match ctx.devices.admit(uid, pod) {
        Ok(_) => Admission::Admitted,
        Err(e) if e.is_transient() => {
            tracing::warn!(pod = uid, error = %e, "device admission will be tried again");
            Admission::Pending
        }
        Err(e) => {
            ctx.resources.release(uid);
            Admission::Rejected { reason: ADMISSION_FAILED_REASON.into(), message: e.to_string() }
        }
    }
}

/// The status of a pod that failed admission: nothing of it ran or will run.
pub fn rejected_status(pod: &Pod, reason: &str, message: &str, host_ip: IpAddr, start_time: &Time) -> PodStatus {
    PodStatus {
        phase: Some("Failed".into()),
        reason: Some(reason.into()),
        message: Some(message.to_string()),
        host_ip: Some(host_ip.to_string()),
        start_time: Some(start_time.clone()),
        conditions: pod.status.as_ref().and_then(|s| s.conditions.clone()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejected_pod_reads_like_the_kubelet_says_it() {
        let message = "Allocate failed due to requested number of devices unavailable for nvidia.com/gpu. Requested: 1, Available: 0, which is unexpected";
        let status = rejected_status(&Pod::default(), ADMISSION_FAILED_REASON, message, IpAddr::from([10, 0, 0, 2]), &api::now());
        assert_eq!(status.phase.as_deref(), Some("Failed"));
        assert_eq!(status.reason.as_deref(), Some("UnexpectedAdmissionError"));
        assert_eq!(status.message.as_deref(), Some(message));
        assert_eq!(status.host_ip.as_deref(), Some("10.0.0.2"));
        assert!(status.container_statuses.is_none());
    }
}
