use super::*;
use api::k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use api::k8s_openapi::api::core::v1::{Container, PodSpec, PodStatus, PodTemplateSpec};
use api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

fn deployment(replicas: i32, image: &str, surge: i32, unavailable: i32) -> Deployment {
    Deployment {
        metadata: ObjectMeta { name: Some("web".into()), namespace: Some("default".into()), uid: Some("u1".into()), ..Default::default() },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            template: PodTemplateSpec {
                metadata: None,
                spec: Some(PodSpec { containers: vec![Container { name: "c".into(), image: Some(image.into()), ..Default::default() }], ..Default::default() }),
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(surge)),
                    max_unavailable: Some(IntOrString::Int(unavailable)),
                }),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

fn pod_of(d: &Deployment, name: &str, ready: bool) -> Arc<Pod> {
    let mut p = new_pod(d);
    p.metadata.name = Some(name.into());
    let mut status = PodStatus::default();
    api::pod::set_condition(&mut status, "Ready", ready, "", "");
    p.status = Some(status);
    Arc::new(p)
}

#[test]
fn scales_up_and_down() {
    let d = deployment(3, "a", 1, 0);
    assert_eq!(plan(&d, &[]).create, 3);
    let pods: Vec<_> = (0..5).map(|i| pod_of(&d, &format!("p{i}"), i != 4)).collect();
    let p = plan(&d, &pods);
    assert_eq!(p.create, 0);
    assert_eq!(p.delete.len(), 2);
    assert!(p.delete.contains(&"p4".to_string()), "not-ready pods go first: {:?}", p.delete);
}

#[test]
fn rolling_update_surges_before_removing_ready_pods() {
    let old = deployment(3, "a", 1, 0);
    let pods: Vec<_> = (0..3).map(|i| pod_of(&old, &format!("old{i}"), true)).collect();
    let new = deployment(3, "b", 1, 0);
    let p = plan(&new, &pods);
    assert_eq!((p.create, p.delete.len()), (1, 0));
    let mut pods = pods;
    pods.push(pod_of(&new, "new0", false));
    assert_eq!(plan(&new, &pods).delete.len(), 0, "no old pod goes before the new one is ready");
    pods.pop();
    pods.push(pod_of(&new, "new0", true));
    assert_eq!(plan(&new, &pods).delete.len(), 1);
}

/// Simulates rollouts step by step (new pods become ready one step after creation) and checks
/// that ready pods never drop below `replicas - maxUnavailable` and that the rollout finishes.
#[test]
fn rollouts_keep_minimum_availability() {
    for (replicas, surge, unavailable) in [(3, 1, 0), (3, 0, 1), (10, 3, 2), (5, 2, 2), (1, 1, 0), (4, 0, 4)] {
        let old = deployment(replicas, "a", surge, unavailable);
        let new = deployment(replicas, "b", surge, unavailable);
        let mut pods: Vec<Arc<Pod>> = (0..replicas).map(|i| pod_of(&old, &format!("old{i}"), true)).collect();
        let mut counter = 0;
        let mut finished = false;
        for _step in 0..100 {
            // Pods created last step become ready now.
            pods = pods.into_iter().map(|p| if is_ready(&p) { p } else { pod_of(&new, p.metadata.name.as_deref().unwrap(), true) }).collect();
            let plan = plan(&new, &pods);
            pods.retain(|p| !plan.delete.contains(p.metadata.name.as_ref().unwrap()));
            let ready = pods.iter().filter(|p| is_ready(p)).count() as i32;
            assert!(ready >= replicas - unavailable, "replicas={replicas} surge={surge} unavailable={unavailable}: {ready} ready");
            assert!(pods.len() as i32 <= replicas + surge);
            for _ in 0..plan.create {
                counter += 1;
                pods.push(pod_of(&new, &format!("new{counter}"), false));
            }
            if plan.create == 0
                && plan.delete.is_empty()
                && pods.len() as i32 == replicas
                && pods.iter().all(|p| p.metadata.name.as_deref().unwrap().starts_with("new"))
            {
                finished = true;
                break;
            }
        }
        assert!(finished, "rollout {replicas}/{surge}/{unavailable} did not finish");
    }
}
