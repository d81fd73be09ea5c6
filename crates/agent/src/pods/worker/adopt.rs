//! Taking over a pod's containers after an agent restart: what still runs is watched again,
//! what ended keeps the outcome the API recorded, so nothing finished is run twice.

use api::k8s_openapi::api::core::v1::ContainerStatus as K8sStatus;
use api::Pod;
use tokio::time::Instant;

use super::super::container::remove_rootfs;
use super::super::state::{containers_in_order, ContainerTrack, Phase, Role, Terminated};
use super::{spec_hash, Worker};
use crate::config::container_id;
use crate::runtime::ContainerStatus;

fn terminated_of(state: Option<&api::k8s_openapi::api::core::v1::ContainerStateTerminated>) -> Option<Terminated> {
    state.map(|t| Terminated {
        exit_code: Some(t.exit_code),
        reason: t.reason.clone().unwrap_or_default(),
        started_at: t.started_at.clone(),
        finished_at: t.finished_at.clone().unwrap_or_else(api::now),
    })
}

impl Worker {
    /// Builds the tracks of every container with the history the API holds and takes over
    /// the containers that survived an agent restart. A pod whose status says it was
    /// initialized does not run its init containers again.
    pub(super) async fn adopt(&mut self, pod: &Pod) {
        let spec = pod.spec.clone().unwrap_or_default();
        let status = pod.status.clone().unwrap_or_default();
        let previous: Vec<K8sStatus> = status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten()).cloned().collect();
        let policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".into());
        self.initialized =
            spec.init_containers.as_ref().is_none_or(Vec::is_empty) || api::pod::condition(Some(&status), "Initialized").is_some_and(|c| c.status == "True");
        for (container, role) in containers_in_order(&spec) {
            let mut track = ContainerTrack::new(&container.name, role);
            let before = previous.iter().find(|s| s.name == container.name);
            let ended_before = before.and_then(|b| terminated_of(b.state.as_ref()?.terminated.as_ref()));
            if let Some(before) = before {
                track.restart_count = before.restart_count;
                track.image_id = before.image_id.clone();
                track.last = terminated_of(before.last_state.as_ref().and_then(|s| s.terminated.as_ref()));
            }
            let id = container_id(&self.uid, &container.name);
            match self.ctx.runtime.state(&id).await {
                Ok(Some(state)) if matches!(state.status, ContainerStatus::Running | ContainerStatus::Paused) && state.pid.is_some() => {
                    track.paused = state.status == ContainerStatus::Paused;
                    let pid = state.pid.unwrap_or_default();
                    let started_at = before.and_then(|b| b.state.as_ref()?.running.as_ref()?.started_at.clone()).unwrap_or_else(api::now);
                    track.attempt = 1;
                    track.phase = Phase::Running { pid, started_at, since: Instant::now() };
                    track.spec_hash = spec_hash(container);
                    track.started = container.startup_probe.is_none();
                    track.ready = before.is_some_and(|b| b.ready) || (container.readiness_probe.is_none() && track.started);
                    self.watch_exit(&container.name, track.attempt, pid);
                    tracing::info!(container = %id, pid, "adopted running container");
                }
                Ok(Some(_)) => {
                    track.last = Some(Terminated { exit_code: None, reason: "ContainerStatusUnknown".into(), started_at: None, finished_at: api::now() });
                    track.restart_count += 1;
                    remove_rootfs(&self.ctx, &id).await;
                }
                _ => match ended_before {
                    // Ended before the agent stopped, for good: it stays ended.
                    Some(ended) if !track.restarts_after(ended.exit_code, &policy) => track.phase = Phase::Terminated(ended),
                    _ if role == Role::Init && self.initialized => {
                        track.phase =
                            Phase::Terminated(Terminated { exit_code: Some(0), reason: "Completed".into(), started_at: None, finished_at: api::now() });
                    }
                    _ => {}
                },
            }
            self.tracks.push(track);
        }
    }
}
