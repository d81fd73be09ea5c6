//! One pod's worker: sets up its network, starts, watches, probes, restarts (with back-off)
//! and finally stops its containers, reporting status to the API as it goes. Level-triggered:
//! every turn compares the pod's spec with what runs and acts on the difference.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use api::k8s_openapi::api::core::v1::{Container, Probe};
use api::{Pod, Time};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::admission::{self, Admission};
use super::container::{self, remove_rootfs};
use super::state::{comparable, containers_in_order, find_container, pod_status, ContainerTrack, Phase, ProbeTrack, Role, Terminated};
use crate::config::container_id;
use crate::logs::log_path;
use crate::probes::{self, ProbeResult};
use crate::runtime::{self, ExitOutcome, Signal};
use crate::AgentContext;

/// Which probe a result belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

type ProbeDone = (String, u64, ProbeKind, ProbeResult);
type ExitDone = (String, u64, ExitOutcome);

/// A container run ran this long without crashing resets its back-off.
const BACKOFF_RESET: Duration = Duration::from_secs(600);

struct Worker {
    ctx: Arc<AgentContext>,
    uid: String,
    tracks: Vec<ContainerTrack>,
    network: Option<(IpAddr, std::path::PathBuf)>,
    adopted: bool,
    /// Every init container has completed and every sidecar has started.
    initialized: bool,
    admission: Admission,
    published: Option<api::k8s_openapi::api::core::v1::PodStatus>,
    start_time: Time,
    exits: mpsc::UnboundedSender<ExitDone>,
}

/// Runs a pod's worker until the pod is gone and everything it had is cleaned up. `pods`
/// carries the pod's latest version, `None` once it was deleted from the API.
pub async fn run(ctx: Arc<AgentContext>, uid: String, mut pods: watch::Receiver<Option<Arc<Pod>>>) {
    let (exits_tx, mut exits) = mpsc::unbounded_channel::<ExitDone>();
    let mut probe_runs: JoinSet<ProbeDone> = JoinSet::new();
    let initial = pods.borrow().clone();
    let start_time = initial.as_ref().and_then(|p| p.status.as_ref()?.start_time.clone()).unwrap_or_else(api::now);
    let mut w = Worker {
        ctx,
        uid,
        tracks: Vec::new(),
        network: None,
        adopted: false,
        initialized: false,
        admission: Admission::Pending,
        published: None,
        start_time,
        exits: exits_tx,
    };
    loop {
        let current = pods.borrow_and_update().clone();
        let Some(pod) = current else {
            w.terminate(None, Duration::from_secs(2)).await;
            return;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(30).max(0) as u64;
            w.terminate(Some(&pod), Duration::from_secs(grace)).await;
            return;
        }
        if w.admission == Admission::Pending {
            w.admission = admission::admit(&w.ctx, &w.uid, &pod);
            if let Admission::Rejected { reason, message } = &w.admission {
                if !admission::reported(&pod) {
                    w.event(&pod, true, reason, message);
                }
            }
        }
        if w.admission != Admission::Admitted {
            // Nothing of a pod that is not admitted runs: report it and wait for it to change
            // or go away (or, while pending, to try again).
            if let Admission::Rejected { reason, message } = w.admission.clone() {
                w.publish_rejected(&pod, &reason, &message).await;
            }
            let wait = if w.published.is_some() && w.admission != Admission::Pending { Duration::from_secs(300) } else { Duration::from_secs(5) };
            tokio::select! {
                changed = pods.changed() => if changed.is_err() {
                    w.terminate(None, Duration::from_secs(2)).await;
                    return;
                },
                _ = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        w.sync(&pod).await;
        w.start_probes(&pod, &mut probe_runs);
        w.publish(&pod).await;
        let deadline = w.next_deadline();
        tokio::select! {
            changed = pods.changed() => if changed.is_err() {
                w.terminate(None, Duration::from_secs(2)).await;
                return;
            },
            Some((name, attempt, outcome)) = exits.recv() => w.on_exit(&pod, &name, attempt, outcome).await,
            Some(Ok(done)) = probe_runs.join_next(), if !probe_runs.is_empty() => w.on_probe(&pod, done).await,
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

mod adopt;
mod init;

fn spec_hash(container: &Container) -> String {
    let json = serde_json::to_vec(container).unwrap_or_default();
    hex_prefix(&Sha256::digest(json))
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

impl Worker {
    fn pod_name(pod: &Pod) -> String {
        format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or(""), pod.metadata.name.as_deref().unwrap_or(""))
    }

    fn event(&self, pod: &Pod, warning: bool, reason: &str, message: &str) {
        let mut involved = api::k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        };
        involved.resource_version = None;
        let event = api::events::build(involved, "flotilla-agent", warning, reason, message);
        // Recorded in the background: a pod start must not wait for its events to be stored.
        let client = self.ctx.client.clone();
        let reason = reason.to_string();
        tokio::spawn(async move {
            if let Err(e) = client.create_as(event.metadata.namespace.clone().as_deref(), &event).await {
                tracing::debug!(error = %e, reason, "could not record event");
            }
        });
    }

    /// Brings what runs in line with the pod spec.
    async fn sync(&mut self, pod: &Pod) {
        let spec = pod.spec.clone().unwrap_or_default();
        if self.network.is_none() {
            match self.ctx.network.setup(&self.uid).await {
                Ok(info) => {
                    // Before any container starts: no packet of the pod passes unjudged.
                    if let Err(e) = self.ctx.netpolicy.attach(&self.uid, pod, info.ip, &info.host_veth).await {
                        self.event(pod, true, "FailedCreatePodSandBox", &format!("network policy: {e}"));
                        return;
                    }
                    if let Err(e) = self.ctx.services.register(&self.uid, &info.netns_path) {
                        self.event(pod, true, "FailedCreatePodSandBox", &format!("service load balancer: {e}"));
                        return;
                    }
                    if let Err(e) = self.write_pod_files(pod, info.ip) {
                        tracing::warn!(pod = %Self::pod_name(pod), error = %e, "writing /etc files");
                    }
                    self.network = Some((info.ip, info.netns_path));
                }
                Err(e) => {
                    self.event(pod, true, "FailedCreatePodSandBox", &format!("setting up the pod network: {e}"));
                    return;
                }
            }
        }
        self.ctx.netpolicy.update(&self.uid, pod);
        if !self.adopted {
            self.adopt(pod).await;
            self.adopted = true;
        }
        if !self.initialized {
            self.initialized = self.advance_init(pod, &spec).await;
            if !self.initialized {
                return;
            }
        }
        let now = Instant::now();
        let finished = self.containers_finished(&spec);
        for (container, role) in containers_in_order(&spec).filter(|(_, role)| *role != Role::Init) {
            let Some(i) = self.tracks.iter().position(|t| t.name == container.name) else { continue };
            let track = &self.tracks[i];
            let grace = Duration::from_secs(spec.termination_grace_period_seconds.unwrap_or(30).max(0) as u64);
            if role == Role::Sidecar && finished {
                // The containers are done for good: their sidecars stop and stay stopped.
                if track.running() {
                    self.kill(i, pod, grace);
                }
                continue;
            }
            if track.running() && !track.spec_hash.is_empty() && track.spec_hash != spec_hash(container) {
                self.event(pod, false, "Killing", &format!("Container {} definition changed, will be restarted", container.name));
                self.kill(i, pod, grace);
                continue;
            }
            let due = track.start_at.is_none_or(|t| t <= now);
            if matches!(track.phase, Phase::Waiting { .. }) && due {
                self.start(pod, container, i).await;
            }
        }
        self.freeze_or_thaw(pod).await;
    }

    /// Freezes the running containers of a pod annotated paused, and thaws them when the
    /// annotation goes (a Function's warm-pool pod, claimed).
    async fn freeze_or_thaw(&mut self, pod: &Pod) {
        let wanted = pod.metadata.annotations.as_ref().and_then(|a| a.get(api::function::PAUSED_ANNOTATION)).is_some_and(|v| v == "true");
        for i in 0..self.tracks.len() {
            let track = &self.tracks[i];
            if !track.running() || track.paused == wanted || track.role == Role::Init {
                continue;
            }
            let id = container_id(&self.uid, &track.name);
            let done = if wanted { self.ctx.runtime.pause(&id).await } else { self.ctx.runtime.resume(&id).await };
            match done {
                Ok(()) => self.tracks[i].paused = wanted,
                Err(e) => tracing::warn!(pod = %Self::pod_name(pod), container = %id, error = %e, "freezing or thawing"),
            }
        }
    }

    /// True when every container (not init container) has ended and will not run again.
    fn containers_finished(&self, spec: &api::k8s_openapi::api::core::v1::PodSpec) -> bool {
        let policy = spec.restart_policy.as_deref().unwrap_or("Always");
        let mut regular = self.tracks.iter().filter(|t| t.role == Role::Regular).peekable();
        regular.peek().is_some() && regular.all(|t| matches!(&t.phase, Phase::Terminated(term) if !t.restarts_after(term.exit_code, policy)))
    }

    fn watch_exit(&self, name: &str, attempt: u64, pid: u32) {
        let (tx, name) = (self.exits.clone(), name.to_string());
        tokio::spawn(async move {
            let outcome = runtime::wait_exit(pid).await;
            let _ = tx.send((name, attempt, outcome));
        });
    }

    async fn start(&mut self, pod: &Pod, container: &Container, i: usize) {
        let Some((pod_ip, netns)) = self.network.clone() else { return };
        let ctx = self.ctx.clone();
        let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".to_string());
        let pinned = match container::recheck_image(&ctx, &namespace, container).await {
            Ok(pinned) => pinned,
            Err(e) => return self.failed_start(pod, i, e.reason, &e.message).await,
        };
        // What runs is the pinned image; the spec (and its hash) stays as the API holds it.
        let run = pinned.as_ref().unwrap_or(container);
        let image = match container::ensure_image(&ctx, run).await {
            Ok((image, pulled)) => {
                let reference = run.image.clone().unwrap_or_default();
                let message = if pulled {
                    format!("Successfully pulled image \"{reference}\"")
                } else {
                    format!("Container image \"{reference}\" already present on machine")
                };
                self.event(pod, false, "Pulled", &message);
                image
            }
            Err(e) => return self.failed_start(pod, i, e.reason, &e.message).await,
        };
        let restart = self.tracks[i].restart_count;
        let log = log_path(
            &ctx.config.pod_log_dir(pod.metadata.namespace.as_deref().unwrap_or(""), pod.metadata.name.as_deref().unwrap_or(""), &self.uid),
            &container.name,
            restart,
        );
        match container::start(&ctx, pod, run, &image, (pod_ip, &netns), &log).await {
            Ok(pid) => {
                let track = &mut self.tracks[i];
                track.attempt += 1;
                track.phase = Phase::Running { pid, started_at: api::now(), since: Instant::now() };
                track.image_id = image.digest.clone();
                track.spec_hash = spec_hash(container);
                track.start_at = None;
                track.paused = false;
                track.started = container.startup_probe.is_none();
                track.ready = container.readiness_probe.is_none() && track.started;
                let now = Instant::now();
                let initial = |p: &Option<Probe>| p.as_ref().map(|p| now + Duration::from_secs(p.initial_delay_seconds.unwrap_or(0).max(0) as u64));
                track.liveness = ProbeTrack { due: initial(&container.liveness_probe), ..Default::default() };
                track.readiness = ProbeTrack { due: initial(&container.readiness_probe), ..Default::default() };
                track.startup = ProbeTrack { due: initial(&container.startup_probe), ..Default::default() };
                let attempt = track.attempt;
                self.watch_exit(&container.name, attempt, pid);
                self.event(pod, false, "Started", &format!("Started container {}", container.name));
            }
            Err(e) => self.failed_start(pod, i, e.reason, &e.message).await,
        }
    }

    async fn failed_start(&mut self, pod: &Pod, i: usize, reason: &str, message: &str) {
        let delay = self.next_backoff(i);
        let track = &mut self.tracks[i];
        let waiting_reason = match reason {
            "ErrImagePull" if track.backoff > self.ctx.config.backoff_base => "ImagePullBackOff",
            r => r,
        };
        track.phase = Phase::Waiting { reason: waiting_reason.to_string(), message: message.to_string() };
        track.start_at = Some(Instant::now() + delay.max(Duration::from_millis(500)));
        self.event(pod, true, "Failed", &format!("Error: {message}"));
    }

    fn next_backoff(&mut self, i: usize) -> Duration {
        let (base, max) = (self.ctx.config.backoff_base, self.ctx.config.max_backoff);
        let track = &mut self.tracks[i];
        let delay = track.backoff;
        track.backoff = if delay.is_zero() { base } else { (delay * 2).min(max) };
        delay
    }

    async fn on_exit(&mut self, pod: &Pod, name: &str, attempt: u64, outcome: ExitOutcome) {
        let Some(i) = self.tracks.iter().position(|t| t.name == name && t.attempt == attempt) else { return };
        let Phase::Running { started_at, since, .. } = self.tracks[i].phase.clone() else { return };
        let code = outcome.code();
        let reason = match code {
            Some(0) => "Completed",
            Some(_) => "Error",
            None => "ContainerStatusUnknown",
        };
        let ended = Terminated { exit_code: code, reason: reason.into(), started_at: Some(started_at), finished_at: api::now() };
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec.restart_policy.as_deref().unwrap_or("Always");
        let restart = self.tracks[i].restarts_after(code, policy) && !(self.tracks[i].role == Role::Sidecar && self.containers_finished(&spec));
        if since.elapsed() >= BACKOFF_RESET {
            self.tracks[i].backoff = Duration::ZERO;
        }
        let id = container_id(&self.uid, name);
        if let Err(e) = self.ctx.runtime.delete(&id).await {
            tracing::debug!(container = %id, error = %e, "deleting exited container");
        }
        let track_ready = &mut self.tracks[i];
        track_ready.ready = false;
        track_ready.started = false;
        track_ready.paused = false;
        if !restart {
            self.tracks[i].phase = Phase::Terminated(ended);
            return;
        }
        let delay = self.next_backoff(i);
        let track = &mut self.tracks[i];
        track.last = Some(ended);
        track.restart_count += 1;
        track.start_at = Some(Instant::now() + delay);
        track.phase = if delay.is_zero() {
            Phase::Waiting { reason: "ContainerCreating".into(), message: String::new() }
        } else {
            let message = format!("back-off {}s restarting failed container={name} pod={}", delay.as_secs(), pod.metadata.name.as_deref().unwrap_or(""));
            Phase::Waiting { reason: "CrashLoopBackOff".into(), message }
        };
        if !delay.is_zero() {
            self.event(pod, true, "BackOff", &format!("Back-off restarting failed container {name}"));
        }
    }

    /// Sends SIGTERM now and SIGKILL after `grace`; the exit then arrives as for any exit.
    fn kill(&self, i: usize, pod: &Pod, grace: Duration) {
        let Phase::Running { pid, .. } = self.tracks[i].phase else { return };
        let id = container_id(&self.uid, &self.tracks[i].name);
        let runtime = self.ctx.runtime.clone();
        let paused = self.tracks[i].paused;
        let _ = pod;
        tokio::spawn(async move {
            // A frozen process cannot act on a signal: thaw it first.
            if paused {
                let _ = runtime.resume(&id).await;
            }
            let _ = runtime.kill(&id, Signal::SIGTERM).await;
            let gone = tokio::time::timeout(grace, async {
                while std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
            if gone.await.is_err() {
                let _ = runtime.kill(&id, Signal::SIGKILL).await;
            }
        });
    }

    fn start_probes(&mut self, pod: &Pod, runs: &mut JoinSet<ProbeDone>) {
        let Some((ip, _)) = self.network.clone() else { return };
        let spec = pod.spec.clone().unwrap_or_default();
        let now = Instant::now();
        for track in self.tracks.iter_mut().filter(|t| t.running() && !t.paused) {
            let Some(container) = find_container(&spec, &track.name) else { continue };
            let kinds = [
                (ProbeKind::Startup, &container.startup_probe, !track.started),
                (ProbeKind::Liveness, &container.liveness_probe, track.started),
                (ProbeKind::Readiness, &container.readiness_probe, track.started),
            ];
            for (kind, probe, active) in kinds {
                let (Some(probe), true) = (probe.clone(), active) else { continue };
                let bookkeeping = match kind {
                    ProbeKind::Liveness => &mut track.liveness,
                    ProbeKind::Readiness => &mut track.readiness,
                    ProbeKind::Startup => &mut track.startup,
                };
                if bookkeeping.running || bookkeeping.due.is_none_or(|d| d > now) {
                    continue;
                }
                bookkeeping.running = true;
                bookkeeping.due = Some(now + Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64));
                let (runtime, id, c, name, attempt) =
                    (self.ctx.runtime.clone(), container_id(&self.uid, &track.name), container.clone(), track.name.clone(), track.attempt);
                runs.spawn(async move {
                    let result = probes::run(&probe, &c, ip, runtime, &id).await;
                    (name, attempt, kind, result)
                });
            }
        }
    }

    async fn on_probe(&mut self, pod: &Pod, (name, attempt, kind, result): ProbeDone) {
        let spec = pod.spec.clone().unwrap_or_default();
        let Some(container) = find_container(&spec, &name) else { return };
        let Some(i) = self.tracks.iter().position(|t| t.name == name) else { return };
        let track = &mut self.tracks[i];
        let (probe, bookkeeping) = match kind {
            ProbeKind::Liveness => (&container.liveness_probe, &mut track.liveness),
            ProbeKind::Readiness => (&container.readiness_probe, &mut track.readiness),
            ProbeKind::Startup => (&container.startup_probe, &mut track.startup),
        };
        bookkeeping.running = false;
        if track.attempt != attempt || !matches!(track.phase, Phase::Running { .. }) {
            return;
        }
        let Some(probe) = probe else { return };
        let (success_threshold, failure_threshold) = (probe.success_threshold.unwrap_or(1), probe.failure_threshold.unwrap_or(3));
        match &result {
            ProbeResult::Success => {
                bookkeeping.successes += 1;
                bookkeeping.failures = 0;
            }
            ProbeResult::Failure(_) => {
                bookkeeping.failures += 1;
                bookkeeping.successes = 0;
            }
        }
        let (successes, failures) = (bookkeeping.successes, bookkeeping.failures);
        let kind_name = match kind {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        };
        if let ProbeResult::Failure(why) = &result {
            self.event(pod, true, "Unhealthy", &format!("{kind_name} probe failed: {why}"));
        }
        let track = &mut self.tracks[i];
        match kind {
            ProbeKind::Readiness => {
                if successes >= success_threshold {
                    track.ready = true;
                } else if failures >= failure_threshold {
                    track.ready = false;
                }
            }
            ProbeKind::Startup if successes >= success_threshold => {
                track.started = true;
                track.ready = container.readiness_probe.is_none();
                let now = Instant::now();
                track.liveness.due = container.liveness_probe.as_ref().map(|_| now);
                track.readiness.due = container.readiness_probe.as_ref().map(|_| now);
            }
            ProbeKind::Liveness | ProbeKind::Startup if failures >= failure_threshold => {
                track.liveness.failures = 0;
                track.startup.failures = 0;
                self.event(pod, false, "Killing", &format!("Container {name} failed {} probe, will be restarted", kind_name.to_ascii_lowercase()));
                let grace = Duration::from_secs(spec.termination_grace_period_seconds.unwrap_or(30).max(0) as u64);
                self.kill(i, pod, grace);
            }
            _ => {}
        }
    }

    fn next_deadline(&self) -> Instant {
        let mut next = Instant::now() + Duration::from_secs(30);
        for t in &self.tracks {
            for due in [t.start_at, t.liveness.due, t.readiness.due, t.startup.due].into_iter().flatten() {
                next = next.min(due);
            }
        }
        next.max(Instant::now() + Duration::from_millis(10))
    }

    async fn publish(&mut self, pod: &Pod) {
        let Some((ip, _)) = self.network.clone() else { return };
        let policy = pod.spec.as_ref().and_then(|s| s.restart_policy.clone()).unwrap_or_else(|| "Always".into());
        let status = pod_status(pod, &self.tracks, Some(ip), self.ctx.config.node_ip, &policy, &self.start_time, self.initialized);
        if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
            // A finished pod's containers are gone and will not restart: what it held is free.
            self.ctx.resources.release(&self.uid);
            if let Err(e) = self.ctx.devices.release(&self.uid) {
                tracing::warn!(pod = %self.uid, error = %e, "recording freed devices");
            }
        }
        self.write_status(pod, status).await;
    }

    /// Reports that the pod failed admission.
    async fn publish_rejected(&mut self, pod: &Pod, reason: &str, message: &str) {
        let status = admission::rejected_status(pod, reason, message, self.ctx.config.node_ip, &self.start_time);
        self.write_status(pod, status).await;
    }

    /// Writes `status` unless it is what was last written.
    async fn write_status(&mut self, pod: &Pod, status: api::k8s_openapi::api::core::v1::PodStatus) {
        if self.published.as_ref().is_some_and(|p| comparable(p) == comparable(&status)) {
            return;
        }
        let mut updated = pod.clone();
        updated.status = Some(status.clone());
        updated.metadata.resource_version = None;
        let (ns, name) = (pod.metadata.namespace.clone(), pod.metadata.name.clone().unwrap_or_default());
        match self.ctx.client.update_status_as(ns.as_deref(), &name, &updated).await {
            Ok(_) => self.published = Some(status),
            Err(e) => tracing::debug!(pod = %name, error = %e, "status update failed; will retry"),
        }
    }

    /// Stops every container (SIGTERM, `grace`, SIGKILL), removes everything the pod had on the
    /// node, and finishes the deletion in the API.
    async fn terminate(&mut self, pod: Option<&Pod>, grace: Duration) {
        // The containers (and a running init container) first, then the sidecars they may
        // still be using, last started first, as Kubernetes stops them.
        let deadline = Instant::now() + grace;
        let (sidecars, others): (Vec<usize>, Vec<usize>) = (0..self.tracks.len()).partition(|&i| self.tracks[i].role == Role::Sidecar);
        self.stop_all(pod, &others, deadline, grace).await;
        for i in sidecars.into_iter().rev() {
            self.stop_all(pod, &[i], deadline, grace).await;
        }
        cleanup_pod(&self.ctx, &self.uid, pod).await;
        if let Some(pod) = pod {
            let (ns, name) = (pod.metadata.namespace.clone(), pod.metadata.name.clone().unwrap_or_default());
            match self.ctx.client.delete(api::ResourceType::of::<Pod>(), ns.as_deref(), &name, Some(0)).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => tracing::warn!(pod = %name, error = %e, "finishing pod deletion"),
            }
        }
    }

    /// Stops the running containers among `which` at once, each given what is left of the
    /// pod's grace period `grace` (but at least 2 s of it, so the last sidecars still get a
    /// chance to exit on SIGTERM).
    async fn stop_all(&self, pod: Option<&Pod>, which: &[usize], deadline: Instant, grace: Duration) {
        let grace = deadline.saturating_duration_since(Instant::now()).max(grace.min(Duration::from_secs(2)));
        let mut stops = Vec::new();
        for track in which.iter().map(|&i| &self.tracks[i]) {
            let id = container_id(&self.uid, &track.name);
            if let Phase::Running { pid, .. } = track.phase {
                if let Some(pod) = pod {
                    self.event(pod, false, "Killing", &format!("Stopping container {}", track.name));
                }
                let runtime = self.ctx.runtime.clone();
                let paused = track.paused;
                stops.push(async move {
                    if paused {
                        let _ = runtime.resume(&id).await;
                    }
                    if let Err(e) = runtime::stop(runtime.as_ref(), &id, pid, grace).await {
                        tracing::warn!(container = %id, error = %e, "stopping container");
                    }
                });
            }
        }
        futures::future::join_all(stops).await;
    }

    fn write_pod_files(&self, pod: &Pod, ip: IpAddr) -> std::io::Result<()> {
        let dir = self.ctx.config.pod_dir(&self.uid);
        std::fs::create_dir_all(&dir)?;
        let name = pod.metadata.name.as_deref().unwrap_or("pod");
        std::fs::write(dir.join("hosts"), format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{ip}\t{name}\n"))?;
        std::fs::write(dir.join("hostname"), format!("{name}\n"))?;
        // dnsPolicy ClusterFirst (the default): the node's cluster resolver, with Kubernetes'
        // search path; Default: the node's own resolv.conf.
        let spec = pod.spec.as_ref();
        let cluster_first = spec.and_then(|s| s.dns_policy.as_deref()).is_none_or(|p| p != "Default");
        let resolv = match (&self.ctx.dns, cluster_first, self.ctx.network.gateway()) {
            (Some(dns), true, gateway) => crate::dns::resolv_conf(gateway, pod.metadata.namespace.as_deref().unwrap_or("default"), dns.domain()),
            _ => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        };
        std::fs::write(dir.join("resolv.conf"), resolv)
    }
}

/// Removes every trace of pod `uid` from the node: containers, mounts, bundles, network,
/// cgroups, per-pod files and logs. Idempotent; used for deleted pods and orphans alike.
pub async fn cleanup_pod(ctx: &AgentContext, uid: &str, pod: Option<&Pod>) {
    let prefix = format!("{uid}-");
    if let Ok(containers) = ctx.runtime.list().await {
        for c in containers.iter().filter(|c| c.id.starts_with(&prefix)) {
            remove_rootfs(ctx, &c.id).await;
        }
    }
    if let Ok(dirs) = std::fs::read_dir(ctx.config.containers_dir()) {
        for d in dirs.flatten() {
            let id = d.file_name().to_string_lossy().to_string();
            if id.starts_with(&prefix) {
                remove_rootfs(ctx, &id).await;
            }
        }
    }
    ctx.netpolicy.forget(uid);
    ctx.services.forget(uid);
    if let Err(e) = ctx.network.teardown(uid).await {
        tracing::warn!(pod = uid, error = %e, "tearing down pod network");
    }
    ctx.resources.release(uid);
    if let Err(e) = ctx.devices.release(uid) {
        tracing::warn!(pod = uid, error = %e, "recording freed devices");
    }
    if let Err(e) = runtime::remove_pod_cgroups(uid) {
        tracing::warn!(pod = uid, error = %e, "removing pod cgroups");
    }
    let _ = std::fs::remove_dir_all(ctx.config.pod_dir(uid));
    let log_dir = match pod {
        Some(p) => Some(ctx.config.pod_log_dir(p.metadata.namespace.as_deref().unwrap_or(""), p.metadata.name.as_deref().unwrap_or(""), uid)),
        None => std::fs::read_dir(ctx.config.logs_dir()).ok().and_then(|d| d.flatten().map(|e| e.path()).find(|p| p.to_string_lossy().ends_with(uid))),
    };
    if let Some(dir) = log_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
}
