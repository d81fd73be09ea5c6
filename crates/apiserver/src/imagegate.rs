//! Image admission: the `ImagePolicy` and `ClusterImagePolicy` objects that govern a Pod's or a
//! Deployment's images are evaluated before the object is stored. Enforced failures refuse the
//! request (403) naming the policy, the rule and the fix; `warn` failures admit with a `Warning`
//! header and an Event; `audit` failures only record an Event. A Pod's image tags are pinned to
//! the digest that was checked, so the node runs exactly what was verified.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use api::kinds::lookup_kind;
use api::ResourceType;
use image::normalize_reference;
use k8s_openapi::api::core::v1::ObjectReference;
use serde_json::Value;
use trust::enforce::{Evaluator, EvaluatorConfig};
use trust::policy::{compile_stored, Compiled, Mode, Violation};

use crate::error::ApiError;
use crate::registry::{ListFilter, Registry};

/// Per-outcome counters for `/metrics`.
#[derive(Default)]
struct Counters {
    /// (policy, rule, mode) → violations.
    violations: HashMap<(String, String, String), u64>,
}

/// The image admission gate.
pub struct ImageGate {
    evaluator: Evaluator,
    counters: Mutex<Counters>,
    vulndb: Option<std::path::PathBuf>,
    /// Pod uid → the vulnerability refusals last reported for it.
    affected: Mutex<HashMap<String, Vec<String>>>,
}

/// How often the rescan loop looks for a new vulnerability database.
const RESCAN_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// The outcome of a review that admits: warnings for the response.
#[derive(Debug, Default)]
pub struct Review {
    /// `Warning` header texts.
    pub warnings: Vec<String>,
}

struct ImageRef {
    /// `spec.containers[0].image`, relative to the pod spec.
    path: String,
    /// JSON pointer to the image string.
    pointer: String,
    image: String,
}

impl ImageGate {
    /// A gate with empty caches.
    pub fn new(config: EvaluatorConfig) -> ImageGate {
        let vulndb = config.vulndb.clone();
        ImageGate { evaluator: Evaluator::new(EvaluatorConfig { site: "server", ..config }), counters: Mutex::default(), vulndb, affected: Mutex::default() }
    }

    /// Rescans the images of every live pod whenever the vulnerability database file changes,
    /// recording a `VulnerabilitiesFound` Event on each pod that a vulnerability gate would now
    /// refuse (once per new set of findings) and keeping `flotilla_image_vulnerable_pods`.
    pub async fn rescan_on_update(&self, registry: Registry) {
        let Some(path) = self.vulndb.clone() else { return };
        let mut seen: Option<std::time::SystemTime> = None;
        loop {
            let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            if modified.is_some() && modified != seen {
                seen = modified;
                if let Err(e) = self.rescan(&registry).await {
                    tracing::warn!(error = %e, "rescanning running workloads");
                }
            }
            tokio::time::sleep(RESCAN_POLL).await;
        }
    }

    async fn rescan(&self, registry: &Registry) -> Result<(), ApiError> {
        let pods_rt = lookup_kind("v1", "Pod").ok_or_else(|| ApiError::Internal("Pod is not served".into()))?;
        let (pods, _) = registry.list(pods_rt, None, &ListFilter::default()).await?;
        let mut policies_by_ns: HashMap<String, Vec<Compiled>> = HashMap::new();
        let mut now_affected = HashMap::new();
        for pod in &pods {
            let phase = pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or("");
            if pod.pointer("/metadata/deletionTimestamp").is_some_and(|d| !d.is_null()) || phase == "Succeeded" || phase == "Failed" {
                continue;
            }
            let ns = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default").to_string();
            let uid = pod.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string();
            if !policies_by_ns.contains_key(&ns) {
                let compiled = self.policies(registry, &ns).await?;
                policies_by_ns.insert(ns.clone(), compiled);
            }
            let gates: Vec<Compiled> = policies_by_ns[&ns].iter().filter(|p| p.max_severity.is_some()).cloned().collect();
            if gates.is_empty() {
                continue;
            }
            let mut refusals = Vec::new();
            for img in images(pod, "/spec") {
                let Ok(reference) = normalize_reference(&img.image) else { continue };
                let governing: Vec<&Compiled> = gates.iter().filter(|p| p.governs(&ns, &reference)).collect();
                if governing.is_empty() {
                    continue;
                }
                let report = match self.evaluator.scan(&reference).await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(image = %img.image, error = %e, "rescan");
                        continue;
                    }
                };
                let now = chrono::Utc::now();
                refusals
                    .extend(governing.iter().filter_map(|p| p.check_vulnerabilities(&report, now)).map(|v| format!("image {} ({}): {v}", img.image, img.path)));
            }
            if refusals.is_empty() {
                continue;
            }
            let previously = self.affected.lock().unwrap_or_else(|e| e.into_inner()).get(&uid).cloned();
            if previously.as_ref() != Some(&refusals) {
                let involved = ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: pod.pointer("/metadata/name").and_then(Value::as_str).map(str::to_string),
                    namespace: Some(ns.clone()),
                    uid: Some(uid.clone()),
                    ..Default::default()
                };
                let event = api::events::build(
                    involved,
                    "image-policy",
                    true,
                    "VulnerabilitiesFound",
                    &format!("after a vulnerability database update: {}", refusals.join("; ")),
                );
                self.record(registry, &ns, &event).await;
            }
            now_affected.insert(uid, refusals);
        }
        *self.affected.lock().unwrap_or_else(|e| e.into_inner()) = now_affected;
        Ok(())
    }

    async fn record(&self, registry: &Registry, namespace: &str, event: &api::Event) {
        if let (Ok(value), Some(events)) = (serde_json::to_value(event), lookup_kind("v1", "Event")) {
            if let Err(e) = registry.create(events, Some(namespace), value).await {
                tracing::warn!(error = %e, "recording an image policy Event");
            }
        }
    }

    /// Evaluates the policies that govern `object`'s images (a Pod or a Deployment in
    /// `namespace`), pinning a Pod's images to the checked digests.
    pub async fn review(&self, registry: &Registry, rt: &ResourceType, namespace: &str, object: &mut Value) -> Result<Review, ApiError> {
        if !GATED_KINDS.contains(&rt.kind) {
            return Ok(Review::default());
        }
        let spec_pointer = spec_pointer(rt.kind);
        let policies = self.policies(registry, namespace).await?;
        if policies.is_empty() {
            return Ok(Review::default());
        }
        let images = images(object, spec_pointer);
        let mut violations: Vec<(String, Violation)> = Vec::new();
        let mut pins = Vec::new();
        for img in &images {
            let outcome = self.evaluator.evaluate(namespace, &img.image, &policies).await;
            let subject = format!("image {} ({})", img.image, img.path);
            violations.extend(outcome.violations.into_iter().map(|v| (subject.clone(), v)));
            if let Some(pinned) = outcome.pinned {
                pins.push((img.pointer.clone(), pinned));
            }
        }

        let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
        let involved = ObjectReference {
            api_version: Some(rt.api_version()),
            kind: Some(rt.kind.to_string()),
            name: Some(name.clone()),
            namespace: Some(namespace.to_string()),
            uid: object.pointer("/metadata/uid").and_then(Value::as_str).map(str::to_string),
            ..Default::default()
        };
        let mut review = Review::default();
        let mut refused = Vec::new();
        for (subject, v) in &violations {
            self.count(v);
            let text = format!("{subject}: {v}");
            let reason = match v.mode {
                Mode::Enforce => "ImagePolicyDenied",
                Mode::Warn => "ImagePolicyWarning",
                Mode::Audit => "ImagePolicyAudit",
            };
            let event = api::events::build(involved.clone(), "image-policy", v.mode != Mode::Audit, reason, &text);
            self.record(registry, namespace, &event).await;
            match v.mode {
                Mode::Enforce => refused.push(text),
                Mode::Warn => review.warnings.push(text),
                Mode::Audit => tracing::info!(%text, "image policy audit"),
            }
        }
        if !refused.is_empty() {
            return Err(ApiError::Forbidden(format!("{} \"{name}\" is forbidden by image policy: {}", rt.plural, refused.join("; "))));
        }
        if rt.kind == "Pod" {
            for (pointer, pinned) in pins {
                if let Some(slot) = object.pointer_mut(&pointer) {
                    *slot = Value::String(pinned);
                }
            }
        }
        Ok(review)
    }

    async fn policies(&self, registry: &Registry, namespace: &str) -> Result<Vec<Compiled>, ApiError> {
        let mut out = Vec::new();
        for (kind, ns) in [("ClusterImagePolicy", None), ("ImagePolicy", Some(namespace))] {
            let rt = lookup_kind(api::imagepolicy::API_VERSION, kind).ok_or_else(|| ApiError::Internal(format!("{kind} is not served")))?;
            let (items, _) = registry.list(rt, ns, &ListFilter::default()).await?;
            out.extend(compile_stored(items));
        }
        Ok(out)
    }

    fn count(&self, v: &Violation) {
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        *counters.violations.entry((v.policy.clone(), v.rule.to_string(), v.mode.to_string())).or_default() += 1;
    }

    /// Prometheus text: violations by policy, rule and mode, and signature verifications by
    /// whether the cache answered.
    pub fn metrics(&self) -> String {
        use std::fmt::Write as _;
        let counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::from(
            "# HELP flotilla_image_policy_violations_total Image policy rule failures at admission.\n# TYPE flotilla_image_policy_violations_total counter\n",
        );
        let mut rows: Vec<_> = counters.violations.iter().collect();
        rows.sort();
        for ((policy, rule, mode), n) in rows {
            let _ = writeln!(out, "flotilla_image_policy_violations_total{{policy=\"{policy}\",rule=\"{rule}\",mode=\"{mode}\"}} {n}");
        }
        let affected = self.affected.lock().unwrap_or_else(|e| e.into_inner()).len();
        out.push_str("# HELP flotilla_image_vulnerable_pods Live pods a vulnerability gate would refuse since the last database update.\n# TYPE flotilla_image_vulnerable_pods gauge\n");
        let _ = writeln!(out, "flotilla_image_vulnerable_pods {affected}");
        out.push_str("# HELP flotilla_image_signature_verifications_total Signature checks at admission, by cache outcome.\n# TYPE flotilla_image_signature_verifications_total counter\n");
        let (hits, misses) = (self.evaluator.verify_hits.load(Ordering::Relaxed), self.evaluator.verify_misses.load(Ordering::Relaxed));
        let _ = writeln!(out, "flotilla_image_signature_verifications_total{{cache=\"hit\"}} {hits}");
        let _ = writeln!(out, "flotilla_image_signature_verifications_total{{cache=\"miss\"}} {misses}");
        out
    }
}

/// The kinds whose images are gated.
pub const GATED_KINDS: [&str; 2] = ["Pod", "Deployment"];

fn spec_pointer(kind: &str) -> &'static str {
    if kind == "Deployment" {
        "/spec/template/spec"
    } else {
        "/spec"
    }
}

/// Whether two versions of an object of `kind` name the same images in the same places. The kind
/// comes from the URL, not the body, so a body without `kind` cannot skip the gate.
pub fn same_images(kind: &str, old: &Value, new: &Value) -> bool {
    let list = |v: &Value| images(v, spec_pointer(kind)).into_iter().map(|i| (i.pointer, i.image)).collect::<Vec<_>>();
    list(old) == list(new)
}

/// Every container image in the pod spec at `spec_pointer`.
fn images(object: &Value, spec_pointer: &str) -> Vec<ImageRef> {
    let mut out = Vec::new();
    for list in ["initContainers", "containers"] {
        let Some(containers) = object.pointer(&format!("{spec_pointer}/{list}")).and_then(Value::as_array) else {
            continue;
        };
        for (i, c) in containers.iter().enumerate() {
            if let Some(image) = c.get("image").and_then(Value::as_str) {
                out.push(ImageRef { path: format!("{list}[{i}]"), pointer: format!("{spec_pointer}/{list}/{i}/image"), image: image.to_string() });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_deployment_image_is_seen_without_kind_in_the_body() {
        let old = serde_json::json!({"kind": "Deployment", "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "r/x:1"}]}}}});
        let new = serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "r/x:2"}]}}}});
        assert!(!same_images("Deployment", &old, &new));
        assert!(same_images("Deployment", &old, &old));
        let pod = serde_json::json!({"spec": {"initContainers": [{"image": "r/i"}], "containers": [{"image": "r/x"}]}});
        let paths: Vec<String> = images(&pod, spec_pointer("Pod")).into_iter().map(|i| format!("{} {}", i.path, i.pointer)).collect();
        assert_eq!(paths, ["initContainers[0] /spec/initContainers/0/image", "containers[0] /spec/containers/0/image"]);
    }
}
