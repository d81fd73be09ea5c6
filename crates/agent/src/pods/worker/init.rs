//! The init phase of a pod: its init containers run one at a time, in order, each to
//! completion; a sidecar (an init container with `restartPolicy: Always`) only needs to have
//! started before the next one runs, and keeps running.

use api::k8s_openapi::api::core::v1::PodSpec;
use api::Pod;
use tokio::time::Instant;

use super::super::state::{Phase, Role};
use super::Worker;

/// Where the init sequence stands at one init container.
enum Step {
    /// Done with it (completed, or a sidecar that started): on to the next.
    Next,
    /// Start it now.
    Start,
    /// Wait: it runs, backs off, or failed for good.
    Wait,
}

impl Worker {
    /// Moves the init sequence forward: starts the first init container that has not done its
    /// part yet, if it is due. Returns true once every init container has completed and every
    /// sidecar has started, so the containers may start.
    pub(super) async fn advance_init(&mut self, pod: &Pod, spec: &PodSpec) -> bool {
        let now = Instant::now();
        for container in spec.init_containers.iter().flatten() {
            let Some(i) = self.tracks.iter().position(|t| t.name == container.name) else { continue };
            let track = &self.tracks[i];
            let step = match (&track.phase, track.role) {
                (Phase::Terminated(_), Role::Init) if track.completed() => Step::Next,
                (Phase::Running { .. }, Role::Sidecar) if track.started => Step::Next,
                (Phase::Waiting { .. }, _) if track.start_at.is_none_or(|t| t <= now) => Step::Start,
                _ => Step::Wait,
            };
            match step {
                Step::Next => continue,
                Step::Start => {
                    self.start(pod, container, i).await;
                    // A sidecar without a startup probe has started as soon as it runs.
                    let track = &self.tracks[i];
                    if !(track.role == Role::Sidecar && track.running() && track.started) {
                        return false;
                    }
                }
                Step::Wait => return false,
            }
        }
        true
    }
}
