use std::net::Ipv4Addr;

use api::k8s_openapi::api::core::v1::{Container, PodSpec};

use super::*;

fn pod(init: &[(&str, bool)], containers: &[&str]) -> Pod {
    let container = |name: &str, sidecar: bool| Container {
        name: name.into(),
        image: Some("busybox".into()),
        restart_policy: sidecar.then(|| "Always".to_string()),
        ..Default::default()
    };
    Pod {
        spec: Some(PodSpec {
            init_containers: Some(init.iter().map(|(n, s)| container(n, *s)).collect()),
            containers: containers.iter().map(|n| container(n, false)).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn track(name: &str, role: Role, phase: Phase, ready: bool) -> ContainerTrack {
    let mut t = ContainerTrack::new(name, role);
    t.attempt = u64::from(!matches!(phase, Phase::Waiting { .. }));
    t.started = matches!(phase, Phase::Running { .. });
    t.phase = phase;
    t.ready = ready;
    t
}

fn running() -> Phase {
    Phase::Running { pid: 1, started_at: api::now(), since: Instant::now() }
}

fn exited(code: i32) -> Phase {
    Phase::Terminated(Terminated {
        exit_code: Some(code),
        reason: if code == 0 { "Completed" } else { "Error" }.into(),
        started_at: None,
        finished_at: api::now(),
    })
}

fn status_of(pod: &Pod, tracks: &[ContainerTrack], policy: &str, initialized: bool) -> PodStatus {
    pod_status(pod, tracks, None, IpAddr::V4(Ipv4Addr::LOCALHOST), policy, &api::now(), initialized)
}

fn condition<'a>(status: &'a PodStatus, type_: &str) -> &'a api::k8s_openapi::api::core::v1::PodCondition {
    status.conditions.iter().flatten().find(|c| c.type_ == type_).expect("condition")
}

#[test]
fn a_pod_in_its_init_phase_is_pending_and_says_which_init_containers_are_left() {
    let pod = pod(&[("first", false), ("helper", true)], &["main"]);
    let tracks = [track("first", Role::Init, running(), false), ContainerTrack::new("helper", Role::Sidecar), ContainerTrack::new("main", Role::Regular)];
    let status = status_of(&pod, &tracks, "Always", false);
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    let initialized = condition(&status, "Initialized");
    assert_eq!((initialized.status.as_str(), initialized.reason.as_deref()), ("False", Some("ContainersNotInitialized")));
    assert_eq!(initialized.message.as_deref(), Some("containers with incomplete status: [first helper]"));
    let init = status.init_container_statuses.as_ref().expect("init statuses");
    assert_eq!(init.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["first", "helper"]);
    assert_eq!(init[1].state.as_ref().and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.as_deref()), Some("PodInitializing"));
    let main = &status.container_statuses.as_ref().expect("statuses")[0];
    assert_eq!(main.state.as_ref().and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.as_deref()), Some("PodInitializing"));
}

#[test]
fn a_pod_is_ready_only_when_its_containers_and_sidecars_are() {
    let pod = pod(&[("first", false), ("helper", true)], &["main"]);
    let mut tracks =
        [track("first", Role::Init, exited(0), false), track("helper", Role::Sidecar, running(), false), track("main", Role::Regular, running(), true)];
    let status = status_of(&pod, &tracks, "Always", true);
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(condition(&status, "Initialized").status, "True");
    assert_eq!(condition(&status, "Ready").status, "False", "the sidecar is not ready yet");
    assert_eq!(condition(&status, "Ready").message.as_deref(), Some("containers with unready status: [helper]"));
    tracks[1].ready = true;
    let status = status_of(&pod, &tracks, "Always", true);
    assert_eq!(condition(&status, "Ready").status, "True");
}

#[test]
fn a_failed_init_container_fails_the_pod_only_when_it_will_not_run_again() {
    let pod = pod(&[("check", false)], &["main"]);
    let tracks = [track("check", Role::Init, exited(3), false), ContainerTrack::new("main", Role::Regular)];
    assert_eq!(status_of(&pod, &tracks, "Never", false).phase.as_deref(), Some("Failed"));
    assert_eq!(status_of(&pod, &tracks, "OnFailure", false).phase.as_deref(), Some("Pending"));
    assert_eq!(status_of(&pod, &tracks, "Always", false).phase.as_deref(), Some("Pending"));
}

#[test]
fn sidecars_do_not_decide_how_a_pod_ends() {
    let pod = pod(&[("helper", true)], &["job"]);
    let tracks = [track("helper", Role::Sidecar, running(), true), track("job", Role::Regular, exited(0), false)];
    assert_eq!(status_of(&pod, &tracks, "Never", true).phase.as_deref(), Some("Succeeded"));
    let tracks = [track("helper", Role::Sidecar, exited(1), false), track("job", Role::Regular, exited(0), false)];
    assert_eq!(status_of(&pod, &tracks, "OnFailure", true).phase.as_deref(), Some("Succeeded"));
}

#[test]
fn who_restarts_after_which_exit() {
    let (init, sidecar, regular) = (ContainerTrack::new("i", Role::Init), ContainerTrack::new("s", Role::Sidecar), ContainerTrack::new("r", Role::Regular));
    for policy in ["Always", "OnFailure", "Never"] {
        assert!(sidecar.restarts_after(Some(0), policy), "sidecars always restart ({policy})");
        assert!(!init.restarts_after(Some(0), policy), "a completed init container never reruns ({policy})");
    }
    assert!(init.restarts_after(Some(1), "Always") && init.restarts_after(Some(1), "OnFailure") && !init.restarts_after(Some(1), "Never"));
    assert!(regular.restarts_after(Some(0), "Always") && !regular.restarts_after(Some(0), "OnFailure") && regular.restarts_after(None, "OnFailure"));
    assert!(!regular.restarts_after(Some(1), "Never"));
}
