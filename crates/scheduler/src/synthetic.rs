//! A synthetic fleet for the scheduler benchmark: nodes of mixed sizes across regions, zones
//! and sites, some with GPUs and cameras and taints; and a pod stream from many workloads with
//! a realistic mix of plain requests, node selectors, node affinity, zone spread, host
//! anti-affinity, pod affinity, preferences and devices. Seeded: the same seed, the same fleet.

use api::k8s_openapi::api::core::v1::{Node, Pod};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// `count` nodes.
pub fn nodes(count: usize, seed: u64) -> Vec<Node> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|i| {
            let cpu = [4, 8, 16, 32, 64][rng.gen_range(0..5)];
            let mem_gi = cpu * [2, 4, 8][rng.gen_range(0..3)];
            let zone = rng.gen_range(0..12);
            let mut allocatable = json!({"cpu": cpu.to_string(), "memory": format!("{mem_gi}Gi"), "pods": "110", "ephemeral-storage": "200Gi"});
            let mut labels = json!({
                "kubernetes.io/hostname": format!("node-{i:05}"),
                "topology.kubernetes.io/region": format!("region-{}", zone / 4),
                "topology.kubernetes.io/zone": format!("zone-{zone}"),
                "flotilla.dev/site": format!("site-{}", rng.gen_range(0..60)),
                "kubernetes.io/arch": if rng.gen_bool(0.8) { "amd64" } else { "arm64" },
                "node.flotilla.dev/class": (["edge", "standard", "large"][rng.gen_range(0..3)]),
                "node.flotilla.dev/generation": rng.gen_range(1..6).to_string(),
            });
            let mut taints = json!([]);
            if rng.gen_bool(0.1) {
                allocatable["nvidia.com/gpu"] = json!(rng.gen_range(1..9).to_string());
                labels["nvidia.com/gpu.product"] = json!("NVIDIA-L4");
                taints = json!([{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]);
            }
            if rng.gen_bool(0.2) {
                allocatable["flotilla.dev/camera"] = json!(rng.gen_range(1..3).to_string());
            }
            if rng.gen_bool(0.05) {
                taints = json!([{"key": "maintenance", "effect": "PreferNoSchedule"}]);
            }
            serde_json::from_value(json!({
                "metadata": {"name": format!("node-{i:05}"), "labels": labels},
                "spec": {"taints": taints},
                "status": {"allocatable": allocatable, "conditions": [{"type": "Ready", "status": "True"}]}
            }))
            .expect("synthetic nodes are valid")
        })
        .collect()
}

/// A workload: a pod template and how many replicas it has.
pub struct Workload {
    /// The pod every replica copies (without a name).
    pub template: Pod,
    /// Replicas.
    pub replicas: usize,
}

/// Workloads whose replicas add up to at least `pods`.
pub fn workloads(pods: usize, seed: u64) -> Vec<Workload> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut out = Vec::new();
    let mut total = 0;
    let mut i = 0;
    while total < pods {
        let app = format!("app-{i}");
        let kind = rng.gen_range(0..100);
        let mut replicas = rng.gen_range(5..200).min(pods - total);
        let mut spec = json!({"containers": [{"name": "main", "image": format!("registry.local/{app}:1"), "resources": {"requests": {
            "cpu": format!("{}m", [50, 100, 200, 250, 500][rng.gen_range(0..5)]),
            "memory": format!("{}Mi", [64, 128, 256, 512][rng.gen_range(0..4)])
        }}}]});
        let selector = json!({"matchLabels": {"app": app}});
        match kind {
            0..=34 => {}
            35..=49 => spec["nodeSelector"] = json!({"topology.kubernetes.io/zone": format!("zone-{}", rng.gen_range(0..12))}),
            50..=59 => {
                spec["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
                    {"key": "node.flotilla.dev/generation", "operator": "Gt", "values": ["2"]}
                ]}]}}})
            }
            60..=71 => {
                spec["topologySpreadConstraints"] =
                    json!([{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": selector}])
            }
            72..=77 => {
                replicas = replicas.min(50);
                spec["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": selector, "topologyKey": "kubernetes.io/hostname"}]}});
            }
            78..=83 => {
                spec["affinity"] = json!({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 50, "preference": {"matchExpressions": [{"key": "node.flotilla.dev/class", "operator": "In", "values": ["large"]}]}}]},
                    "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 20, "podAffinityTerm": {"labelSelector": selector, "topologyKey": "flotilla.dev/site"}}]}})
            }
            84..=89 => {
                let target = format!("app-{}", rng.gen_range(0..i.max(1)));
                spec["affinity"] = json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": target}}, "namespaceSelector": {}, "topologyKey": "topology.kubernetes.io/region"}]}})
            }
            90..=94 => {
                replicas = replicas.min(20);
                spec["containers"][0]["resources"]["limits"] = json!({"nvidia.com/gpu": "1"});
                spec["tolerations"] = json!([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]);
            }
            _ => {
                replicas = replicas.min(20);
                spec["containers"][0]["resources"]["limits"] = json!({"flotilla.dev/camera": "1"});
                spec["topologySpreadConstraints"] =
                    json!([{"maxSkew": 2, "topologyKey": "flotilla.dev/site", "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": selector}]);
            }
        }
        let template: Value = json!({"metadata": {"namespace": format!("team-{}", i % 20), "labels": {"app": app}}, "spec": spec});
        out.push(Workload { template: serde_json::from_value(template).expect("synthetic pods are valid"), replicas });
        total += replicas;
        i += 1;
    }
    out
}

/// The replicas of every workload, interleaved the way several Deployments scaling at once
/// arrive: round-robin over workloads.
pub fn pod_stream(workloads: &[Workload]) -> impl Iterator<Item = Pod> + '_ {
    let longest = workloads.iter().map(|w| w.replicas).max().unwrap_or(0);
    (0..longest).flat_map(move |r| {
        workloads.iter().enumerate().filter(move |(_, w)| r < w.replicas).map(move |(i, w)| {
            let mut p = w.template.clone();
            p.metadata.name = Some(format!("w{i}-{r}"));
            p
        })
    })
}
