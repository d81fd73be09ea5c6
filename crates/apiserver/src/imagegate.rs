//! Image admission: the `ImagePolicy` and `ClusterImagePolicy` objects that govern a Pod's or a
//! Deployment's images are evaluated before the object is stored. Enforced failures refuse the
//! request (403) naming the policy, the rule and the fix; `warn` failures admit with a `Warning`
//! header and an Event; `audit` failures only record an Event. A Pod's image tags are pinned to
//! the digest that was checked, so the node runs exactly what was verified.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use api::imagepolicy::ImagePolicy;
use api::kinds::lookup_kind;
use api::ResourceType;
use k8s_openapi::api::core::v1::ObjectReference;
use serde_json::Value;
use trust::enforce::{Evaluator, EvaluatorConfig};
use trust::policy::{compile, Compiled, Mode, Violation};

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
}

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
        ImageGate { evaluator: Evaluator::new(EvaluatorConfig { site: "server", ..config }), counters: Mutex::default() }
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
            if let (Ok(value), Some(events)) = (serde_json::to_value(&event), lookup_kind("v1", "Event")) {
                if let Err(e) = registry.create(events, Some(namespace), value).await {
                    tracing::warn!(error = %e, "recording an image policy Event");
                }
            }
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
            for item in items {
                let policy: ImagePolicy = match serde_json::from_value(item) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(kind, error = %e, "skipping an unreadable image policy");
                        continue;
                    }
                };
                match compile(&policy) {
                    Ok(c) => out.push(c),
                    Err(e) => tracing::warn!(kind, name = ?policy.metadata.name, error = %e, "skipping an image policy that does not compile"),
                }
            }
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

/// Whether two versions of an object (same kind) name the same images in the same places.
pub fn same_images(old: &Value, new: &Value) -> bool {
    let kind = new.get("kind").and_then(Value::as_str).unwrap_or("");
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
