//! What the agent knows of each container of a pod, and the PodStatus computed from it.

use std::net::IpAddr;
use std::time::Duration;

use api::k8s_openapi::api::core::v1::{
    Container, ContainerState as K8sState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, PodIP, PodSpec, PodStatus,
};
use api::{Pod, Time};
use tokio::time::Instant;

/// How a container ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Terminated {
    /// Exit code (128 + signal when killed); `None` when it could not be known.
    pub exit_code: Option<i32>,
    /// `Completed`, `Error`, `ContainerStatusUnknown`.
    pub reason: String,
    /// When it started.
    pub started_at: Option<Time>,
    /// When it ended.
    pub finished_at: Time,
}

/// The lifecycle of one container, as Kubernetes reports it. Transitions:
/// Waiting → Running (started), Running → Terminated (exited), Terminated → Waiting
/// (back-off before a restart) or Running (restarted at once).
#[derive(Clone, Debug, PartialEq)]
pub enum Phase {
    /// Not running: never started, pulling, or backing off.
    Waiting { reason: String, message: String },
    /// Running with this host PID.
    Running { pid: u32, started_at: Time, since: Instant },
    /// Exited and not (yet) restarted.
    Terminated(Terminated),
}

/// What a container is to its pod, which decides when it runs and whether it restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// An init container: runs to completion, one after another, before anything later starts.
    Init,
    /// An init container with `restartPolicy: Always`: started in its turn among the init
    /// containers, then kept running beside the containers until they finish.
    Sidecar,
    /// One of `spec.containers`.
    Regular,
}

impl Role {
    /// True for the roles reported in `initContainerStatuses`.
    pub fn is_init(self) -> bool {
        self != Role::Regular
    }
}

/// The pod's containers in the order they start, each with its role: the init containers
/// (sidecars among them) in order, then the containers.
pub fn containers_in_order(spec: &PodSpec) -> impl Iterator<Item = (&Container, Role)> {
    let init = spec.init_containers.iter().flatten().map(|c| (c, if c.restart_policy.as_deref() == Some("Always") { Role::Sidecar } else { Role::Init }));
    init.chain(spec.containers.iter().map(|c| (c, Role::Regular)))
}

/// The container (init or regular) called `name`.
pub fn find_container<'a>(spec: &'a PodSpec, name: &str) -> Option<&'a Container> {
    containers_in_order(spec).map(|(c, _)| c).find(|c| c.name == name)
}

/// Consecutive results of one probe kind.
#[derive(Clone, Debug, Default)]
pub struct ProbeTrack {
    /// When to run it next.
    pub due: Option<Instant>,
    /// A run is in flight.
    pub running: bool,
    /// Consecutive successes.
    pub successes: i32,
    /// Consecutive failures.
    pub failures: i32,
}

/// One container's state in the worker.
#[derive(Clone, Debug)]
pub struct ContainerTrack {
    /// Container name.
    pub name: String,
    /// Init container, sidecar or container.
    pub role: Role,
    /// Restarts so far.
    pub restart_count: i32,
    /// Increments on every start, so exits and probe results of an older run are ignored.
    pub attempt: u64,
    /// Lifecycle.
    pub phase: Phase,
    /// The previous run's end, for `lastState`.
    pub last: Option<Terminated>,
    /// Readiness.
    pub ready: bool,
    /// The startup probe passed (or there is none).
    pub started: bool,
    /// Next back-off delay.
    pub backoff: Duration,
    /// When a waiting container may be (re)started.
    pub start_at: Option<Instant>,
    /// Image digest it runs.
    pub image_id: String,
    /// The spec it was started from, to notice changes (a new image).
    pub spec_hash: String,
    /// Probe bookkeeping: liveness, readiness, startup.
    pub liveness: ProbeTrack,
    /// Readiness probe bookkeeping.
    pub readiness: ProbeTrack,
    /// Startup probe bookkeeping.
    pub startup: ProbeTrack,
    /// Frozen (the pod is annotated paused: a Function's warm-pool pod).
    pub paused: bool,
}

impl ContainerTrack {
    /// A container that has not run yet.
    pub fn new(name: &str, role: Role) -> ContainerTrack {
        let waiting = if role.is_init() { "PodInitializing" } else { "ContainerCreating" };
        ContainerTrack {
            name: name.to_string(),
            role,
            restart_count: 0,
            attempt: 0,
            phase: Phase::Waiting { reason: waiting.into(), message: String::new() },
            last: None,
            ready: false,
            started: false,
            backoff: Duration::ZERO,
            start_at: None,
            image_id: String::new(),
            spec_hash: String::new(),
            liveness: ProbeTrack::default(),
            readiness: ProbeTrack::default(),
            startup: ProbeTrack::default(),
            paused: false,
        }
    }

    /// True while the container's process runs.
    pub fn running(&self) -> bool {
        matches!(self.phase, Phase::Running { .. })
    }

    /// True for an init container that ran to completion with exit code 0.
    pub fn completed(&self) -> bool {
        matches!(&self.phase, Phase::Terminated(t) if t.exit_code == Some(0))
    }

    /// Whether the container runs again after ending as `ended`, under the pod's restart
    /// policy: sidecars always do (until the pod finishes), init containers only after a
    /// failure, containers as the policy says.
    pub fn restarts_after(&self, ended: Option<i32>, restart_policy: &str) -> bool {
        match (self.role, restart_policy) {
            (Role::Sidecar, _) => true,
            (_, "Never") => false,
            (Role::Init, _) | (Role::Regular, "OnFailure") => ended != Some(0),
            (Role::Regular, _) => true,
        }
    }
}

fn terminated(t: &Terminated, id: &str) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: t.exit_code.unwrap_or(137),
        reason: Some(t.reason.clone()),
        started_at: t.started_at.clone(),
        finished_at: Some(t.finished_at.clone()),
        container_id: Some(format!("runc://{id}")),
        ..Default::default()
    }
}

/// One container's status; `initializing` says the pod's init phase is still on, when a
/// container that has not run yet waits for it (`PodInitializing`).
fn container_status(t: &ContainerTrack, spec: &PodSpec, uid: &str, initializing: bool) -> ContainerStatus {
    let id = crate::config::container_id(uid, &t.name);
    let image = find_container(spec, &t.name).and_then(|c| c.image.clone()).unwrap_or_default();
    let state = match &t.phase {
        Phase::Waiting { reason, message } if initializing && t.attempt == 0 && reason == "ContainerCreating" => K8sState {
            waiting: Some(ContainerStateWaiting { reason: Some("PodInitializing".into()), message: (!message.is_empty()).then(|| message.clone()) }),
            ..Default::default()
        },
        Phase::Waiting { reason, message } => K8sState {
            waiting: Some(ContainerStateWaiting { reason: Some(reason.clone()), message: (!message.is_empty()).then(|| message.clone()) }),
            ..Default::default()
        },
        Phase::Running { started_at, .. } => K8sState { running: Some(ContainerStateRunning { started_at: Some(started_at.clone()) }), ..Default::default() },
        Phase::Terminated(term) => K8sState { terminated: Some(terminated(term, &id)), ..Default::default() },
    };
    ContainerStatus {
        name: t.name.clone(),
        image,
        image_id: t.image_id.clone(),
        container_id: (t.attempt > 0).then(|| format!("runc://{id}")),
        ready: t.ready,
        started: Some(t.started && t.running()),
        restart_count: t.restart_count,
        state: Some(state),
        last_state: t.last.as_ref().map(|l| K8sState { terminated: Some(terminated(l, &id)), ..Default::default() }),
        ..Default::default()
    }
}

/// The pod status the agent reports. `initialized` says whether every init container has
/// completed (and every sidecar started); until then the pod is Pending.
pub fn pod_status(
    pod: &Pod,
    tracks: &[ContainerTrack],
    pod_ip: Option<IpAddr>,
    host_ip: IpAddr,
    restart_policy: &str,
    start_time: &Time,
    initialized: bool,
) -> PodStatus {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let (init, regular): (Vec<&ContainerTrack>, Vec<&ContainerTrack>) = tracks.iter().partition(|t| t.role.is_init());
    let statuses: Vec<ContainerStatus> = regular.iter().map(|t| container_status(t, &spec, &uid, !initialized)).collect();
    let init_statuses: Vec<ContainerStatus> = init.iter().map(|t| container_status(t, &spec, &uid, false)).collect();
    let done_for_good = |t: &&ContainerTrack| matches!(&t.phase, Phase::Terminated(term) if !t.restarts_after(term.exit_code, restart_policy));
    let init_failed = init.iter().any(|t| t.role == Role::Init && done_for_good(t) && !t.completed());
    let sidecars_ready = init.iter().filter(|t| t.role == Role::Sidecar).all(|t| t.ready);
    let all_ready = initialized && !regular.is_empty() && regular.iter().all(|t| t.ready) && sidecars_ready;
    let never_started = regular.iter().any(|t| t.attempt == 0 && t.last.is_none() && !matches!(t.phase, Phase::Terminated(_)));
    let finished = !regular.is_empty() && regular.iter().all(done_for_good);
    let phase = if init_failed {
        "Failed"
    } else if finished {
        if regular.iter().all(|t| t.completed()) {
            "Succeeded"
        } else {
            "Failed"
        }
    } else if !initialized || never_started {
        "Pending"
    } else {
        "Running"
    };
    let mut status = PodStatus {
        phase: Some(phase.into()),
        host_ip: Some(host_ip.to_string()),
        pod_ip: pod_ip.map(|ip| ip.to_string()),
        pod_ips: pod_ip.map(|ip| vec![PodIP { ip: ip.to_string() }]),
        start_time: Some(start_time.clone()),
        container_statuses: Some(statuses),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        conditions: pod.status.as_ref().and_then(|s| s.conditions.clone()),
        qos_class: Some(qos_class(&spec).into()),
        ..Default::default()
    };
    let names = |ts: &mut dyn Iterator<Item = &&ContainerTrack>| ts.map(|t| t.name.as_str()).collect::<Vec<_>>().join(" ");
    let pending_init = names(&mut init.iter().filter(|t| if t.role == Role::Sidecar { !t.started || !t.running() } else { !t.completed() }));
    let init_message = if initialized { String::new() } else { format!("containers with incomplete status: [{pending_init}]") };
    let not_ready = names(&mut regular.iter().chain(init.iter().filter(|t| t.role == Role::Sidecar)).filter(|t| !t.ready));
    let message = if not_ready.is_empty() { String::new() } else { format!("containers with unready status: [{not_ready}]") };
    let reason = if all_ready {
        ""
    } else if finished || init_failed {
        "PodCompleted"
    } else if !initialized {
        "ContainersNotInitialized"
    } else {
        "ContainersNotReady"
    };
    api::pod::set_condition(&mut status, "PodScheduled", true, "", "");
    api::pod::set_condition(&mut status, "Initialized", initialized, if initialized { "" } else { "ContainersNotInitialized" }, &init_message);
    api::pod::set_condition(&mut status, "ContainersReady", all_ready, reason, &message);
    api::pod::set_condition(&mut status, "Ready", all_ready, reason, &message);
    status
}

fn qos_class(spec: &api::k8s_openapi::api::core::v1::PodSpec) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    for c in &spec.containers {
        let r = c.resources.clone().unwrap_or_default();
        let (req, lim) = (r.requests.unwrap_or_default(), r.limits.unwrap_or_default());
        any |= !req.is_empty() || !lim.is_empty();
        for name in ["cpu", "memory"] {
            match (req.get(name), lim.get(name)) {
                (_, None) => guaranteed = false,
                (Some(q), Some(l)) if q != l => guaranteed = false,
                _ => {}
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// The status with its volatile probe-free parts normalised, to decide whether to publish.
pub fn comparable(status: &PodStatus) -> PodStatus {
    let mut s = status.clone();
    for c in s.conditions.iter_mut().flatten() {
        c.last_probe_time = None;
    }
    s
}

#[cfg(test)]
mod tests;
