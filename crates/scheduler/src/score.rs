//! Scores: of the nodes that can take a pod, which is best. Each score is 0–100 and weighted
//! like kube-scheduler's defaults (taints 3, node affinity 2, pod affinity 2, spread 2,
//! resources 1, balance 1, image locality 1).

use crate::filter::Prepared;
use crate::podinfo::{tolerated, PodInfo, Strategy};
use crate::resources::{CPU, MEMORY};
use crate::snapshot::{NodeInfo, Snapshot};

const MB: i64 = 1 << 20;

impl Snapshot {
    /// The score of each feasible node, in the order given.
    pub(crate) fn scores(&self, pod: &PodInfo, prep: &Prepared, feasible: &[usize]) -> Vec<i64> {
        let strategy = pod.strategy.unwrap_or(self.config.strategy);
        let n = feasible.len();
        let mut total = vec![0i64; n];
        // Raw values of the scores normalised across the feasible nodes.
        let mut node_pref = vec![0i64; n];
        let mut taints = vec![0i64; n];
        let mut pod_pref = vec![0i64; n];
        let mut spread = vec![0i64; n];
        let soft_spread = prep.spread.iter().any(|s| !s.hard);
        let preferred: Vec<(i64, crate::bitset::Bitset)> = pod.preferred_nodes.iter().map(|(w, t)| (*w, self.term_nodes(t))).collect();
        for (i, slot) in feasible.iter().enumerate() {
            let node = self.nodes[*slot].as_ref().expect("feasible nodes exist");
            let (resources, balance) = resource_scores(node, pod, strategy);
            total[i] = resources + balance + self.image_score(node, pod);
            node_pref[i] = preferred.iter().filter(|(_, nodes)| nodes.contains(*slot)).map(|(w, _)| *w).sum();
            taints[i] = node.taints.iter().filter(|t| t.effect == "PreferNoSchedule" && !tolerated(&pod.tolerations, t)).count() as i64;
            for (w, term) in &prep.preferred_pods {
                let tc = &self.terms[*term];
                pod_pref[i] += w * tc.count(self.topologies[tc.topology].domain(*slot)) as i64;
            }
            if soft_spread {
                for s in prep.spread.iter().filter(|s| !s.hard) {
                    let tc = &self.terms[s.term];
                    let domain = self.topologies[tc.topology].domain(*slot);
                    // A node outside every domain scores worst (marked, then set below).
                    spread[i] = if domain == crate::snapshot::NO_DOMAIN || spread[i] < 0 { -1 } else { spread[i] + s.count(tc, domain) + s.self_match - s.min };
                }
            }
        }
        let worst = spread.iter().max().copied().unwrap_or(0) + 1;
        spread.iter_mut().filter(|v| **v < 0).for_each(|v| *v = worst);
        add_normalised(&mut total, &node_pref, 2, false);
        add_normalised(&mut total, &taints, 3, true);
        add_normalised(&mut total, &pod_pref, 2, false);
        add_normalised(&mut total, &spread, 2, true);
        total
    }

    /// Image locality: the pod's images already on the node, by size, discounted by how few
    /// nodes have them (so one node holding an image does not attract every pod).
    fn image_score(&self, node: &NodeInfo, pod: &PodInfo) -> i64 {
        if pod.images.is_empty() || node.images.is_empty() {
            return 0;
        }
        let nodes = self.node_count().max(1) as i64;
        let sum: i64 =
            pod.images.iter().filter_map(|img| node.images.get(img).map(|size| size * self.image_nodes.get(img).copied().unwrap_or(1) as i64 / nodes)).sum();
        let (lo, hi) = (23 * MB, 1000 * MB * pod.images.len() as i64);
        (sum.clamp(lo, hi) - lo) * 100 / (hi - lo)
    }
}

/// The strategy's score and the balanced-allocation score, over CPU, memory and the extended
/// resources the pod asks for.
fn resource_scores(node: &NodeInfo, pod: &PodInfo, strategy: Strategy) -> (i64, i64) {
    let mut fractions = [0f64; 8];
    let mut k = 0;
    let mut push = |id: usize, ask: i64| {
        let alloc = node.allocatable.get(id);
        if alloc > 0 && k < fractions.len() {
            fractions[k] = ((node.requested.get(id) + ask) as f64 / alloc as f64).min(1.0);
            k += 1;
        }
    };
    push(CPU, pod.request.get(CPU));
    push(MEMORY, pod.request.get(MEMORY));
    for (id, ask) in pod.request.0.iter().filter(|(id, _)| *id > crate::resources::STORAGE) {
        push(*id, *ask);
    }
    if k == 0 {
        return (0, 100);
    }
    let used = &fractions[..k];
    let mean = used.iter().sum::<f64>() / k as f64;
    let resources = match strategy {
        Strategy::LeastAllocated => (1.0 - mean) * 100.0,
        Strategy::MostAllocated => mean * 100.0,
    };
    let variance = used.iter().map(|f| (f - mean).powi(2)).sum::<f64>() / k as f64;
    (resources as i64, ((1.0 - variance.sqrt()) * 100.0) as i64)
}

/// Scales raw values to 0–100 (higher raw is better unless `lower_is_better`) and adds them
/// with `weight`. All-equal raw values add nothing: they do not tell nodes apart.
fn add_normalised(total: &mut [i64], raw: &[i64], weight: i64, lower_is_better: bool) {
    let (Some(min), Some(max)) = (raw.iter().min(), raw.iter().max()) else { return };
    if min == max {
        return;
    }
    for (t, r) in total.iter_mut().zip(raw) {
        let scaled = (r - min) * 100 / (max - min);
        *t += weight * if lower_is_better { 100 - scaled } else { scaled };
    }
}
