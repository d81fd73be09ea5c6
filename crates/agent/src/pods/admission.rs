//! Admission of a pod to the node before anything of it runs: the devices it asks for are
//! allocated, or it fails for good the way the kubelet fails a pod it cannot take (phase
//! `Failed`, reason `UnexpectedAdmissionError`).

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
    /// Failed admission, with the message its status carries.
    Rejected(String),
}

/// True when the pod's status already says it failed admission.
pub fn reported(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| s.phase.as_deref() == Some("Failed") && s.reason.as_deref() == Some(ADMISSION_FAILED_REASON))
}

/// Decides a pod's admission. A pod whose status already says it failed admission (before an
/// agent restart) stays rejected, even if it would fit now: the kubelet never revives it. A pod
/// that already finished is not given devices again.
pub fn admit(ctx: &AgentContext, uid: &str, pod: &Pod) -> Admission {
    let status = pod.status.as_ref();
    if reported(pod) {
        return Admission::Rejected(status.and_then(|s| s.message.clone()).unwrap_or_default());
    }
    if matches!(status.and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")) && ctx.devices.allocation(uid).is_none() {
        return Admission::Admitted;
    }
    match ctx.devices.admit(uid, pod) {
        Ok(_) => Admission::Admitted,
        Err(e) if e.is_transient() => {
            tracing::warn!(pod = uid, error = %e, "device admission will be tried again");
            Admission::Pending
        }
        Err(e) => Admission::Rejected(e.to_string()),
    }
}

/// The status of a pod that failed admission: nothing of it ran or will run.
pub fn rejected_status(pod: &Pod, message: &str, host_ip: IpAddr, start_time: &Time) -> PodStatus {
    PodStatus {
        phase: Some("Failed".into()),
        reason: Some(ADMISSION_FAILED_REASON.into()),
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
        let status = rejected_status(&Pod::default(), message, IpAddr::from([10, 0, 0, 2]), &api::now());
        assert_eq!(status.phase.as_deref(), Some("Failed"));
        assert_eq!(status.reason.as_deref(), Some("UnexpectedAdmissionError"));
        assert_eq!(status.message.as_deref(), Some(message));
        assert_eq!(status.host_ip.as_deref(), Some("10.0.0.2"));
        assert!(status.container_statuses.is_none());
    }
}
