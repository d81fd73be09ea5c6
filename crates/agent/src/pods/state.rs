//! What the agent knows of each container of a pod, and the PodStatus computed from it.

use std::net::IpAddr;
use std::time::Duration;

use api::k8s_openapi::api::core::v1::{
    ContainerState as K8sState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, PodIP, PodStatus,
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
}

impl ContainerTrack {
    /// A container that has not run yet.
    pub fn new(name: &str) -> ContainerTrack {
        ContainerTrack {
            name: name.to_string(),
            restart_count: 0,
            attempt: 0,
            phase: Phase::Waiting { reason: "ContainerCreating".into(), message: String::new() },
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
        }
    }

    /// True while the container's process runs.
    pub fn running(&self) -> bool {
        matches!(self.phase, Phase::Running { .. })
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

/// The pod status the agent reports.
pub fn pod_status(pod: &Pod, tracks: &[ContainerTrack], pod_ip: Option<IpAddr>, host_ip: IpAddr, restart_policy: &str, start_time: &Time) -> PodStatus {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let statuses: Vec<ContainerStatus> = tracks
        .iter()
        .map(|t| {
            let id = crate::config::container_id(&uid, &t.name);
            let image = spec.containers.iter().find(|c| c.name == t.name).and_then(|c| c.image.clone()).unwrap_or_default();
            let state = match &t.phase {
                Phase::Waiting { reason, message } => K8sState {
                    waiting: Some(ContainerStateWaiting { reason: Some(reason.clone()), message: (!message.is_empty()).then(|| message.clone()) }),
                    ..Default::default()
                },
                Phase::Running { started_at, .. } => {
                    K8sState { running: Some(ContainerStateRunning { started_at: Some(started_at.clone()) }), ..Default::default() }
                }
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
        })
        .collect();
    let all_ready = !tracks.is_empty() && tracks.iter().all(|t| t.ready);
    let never_started = tracks.iter().any(|t| t.attempt == 0 && t.last.is_none() && !matches!(t.phase, Phase::Terminated(_)));
    let will_restart = |t: &ContainerTrack| match (&t.phase, restart_policy) {
        (Phase::Terminated(_), "Never") => false,
        (Phase::Terminated(term), "OnFailure") => term.exit_code != Some(0),
        (Phase::Terminated(_), _) => true,
        _ => true,
    };
    let finished = !tracks.is_empty() && tracks.iter().all(|t| matches!(t.phase, Phase::Terminated(_)) && !will_restart(t));
    let phase = if finished {
        let ok = tracks.iter().all(|t| matches!(&t.phase, Phase::Terminated(term) if term.exit_code == Some(0)));
        if ok {
            "Succeeded"
        } else {
            "Failed"
        }
    } else if never_started {
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
        conditions: pod.status.as_ref().and_then(|s| s.conditions.clone()),
        qos_class: Some(qos_class(&spec).into()),
        ..Default::default()
    };
    let not_ready: Vec<&str> = tracks.iter().filter(|t| !t.ready).map(|t| t.name.as_str()).collect();
    let message = if not_ready.is_empty() { String::new() } else { format!("containers with unready status: [{}]", not_ready.join(" ")) };
    let reason = if all_ready {
        ""
    } else if finished {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    api::pod::set_condition(&mut status, "PodScheduled", true, "", "");
    api::pod::set_condition(&mut status, "Initialized", true, "", "");
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
