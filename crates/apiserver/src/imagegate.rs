//! Image admission: the `ImagePolicy` and `ClusterImagePolicy` objects that govern a Pod's or a
//! Deployment's images are evaluated before the object is stored. Enforced failures refuse the
//! request (403) naming the policy, the rule and the fix; `warn` failures admit with a `Warning`
//! header and an Event; `audit` failures only record an Event. A Pod's image tags are pinned to
//! the digest that was checked, so the node runs exactly what was verified.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use api::imagepolicy::ImagePolicy;
use api::kinds::lookup_kind;
use api::ResourceType;
use image::{normalize_reference, ImageStore, PullOptions, Reference, Remote};
use k8s_openapi::api::core::v1::ObjectReference;
use serde_json::Value;
use trust::policy::{compile, Compiled, Mode, Violation};
use trust::signatures::{self, Resolved};

use crate::error::ApiError;
use crate::registry::{ListFilter, Registry};

/// How long a tag's resolution to a digest is reused.
const RESOLVE_TTL: Duration = Duration::from_secs(30);
/// How long a successful signature verification is reused for the same digest and keys.
const VERIFY_TTL: Duration = Duration::from_secs(300);

/// What the gate needs besides the policies.
#[derive(Default)]
pub struct GateConfig {
    /// Registries reached over plain HTTP besides loopback ones.
    pub insecure_registries: Vec<String>,
    /// Where images are pulled to be scanned (the node's image store under `flotilla up`).
    pub image_store: Option<ImageStore>,
    /// The vulnerability database file; policies with a vulnerability gate refuse images when it
    /// is missing.
    pub vulndb: Option<PathBuf>,
}

/// Per-outcome counters for `/metrics`.
#[derive(Default)]
struct Counters {
    /// (policy, rule, mode) → violations.
    violations: HashMap<(String, String, String), u64>,
    verify_cached: u64,
    verify_uncached: u64,
}

/// The image admission gate.
pub struct ImageGate {
    config: GateConfig,
    resolved: Mutex<HashMap<String, (Resolved, Instant)>>,
    verified: Mutex<HashMap<(String, String), Instant>>,
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
    pub fn new(config: GateConfig) -> ImageGate {
        ImageGate { config, resolved: Mutex::default(), verified: Mutex::default(), counters: Mutex::default() }
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
            let Ok(reference) = normalize_reference(&img.image) else {
                continue; // validation names the malformed image
            };
            let governing: Vec<&Compiled> = policies.iter().filter(|p| p.governs(namespace, &reference)).collect();
            let subject = format!("image {} ({})", img.image, img.path);
            for policy in &governing {
                if let Some(v) = policy.check_location(&reference) {
                    violations.push((subject.clone(), v));
                }
            }
            let needs_digest = governing.iter().any(|p| !p.keys.is_empty() || p.max_severity.is_some());
            if !needs_digest {
                continue;
            }
            let resolved = match self.resolve(&reference).await {
                Ok(r) => r,
                Err(e) => {
                    for policy in governing.iter().filter(|p| !p.keys.is_empty() || p.max_severity.is_some()) {
                        let rule = if policy.keys.is_empty() { "vulnerabilities" } else { "signatures" };
                        violations.push((
                            subject.clone(),
                            Violation {
                                policy: policy.name.clone(),
                                mode: policy.mode,
                                rule,
                                message: format!("cannot resolve {reference} in its registry: {e}"),
                                fix: "check that the image exists and the registry is reachable from the server".to_string(),
                            },
                        ));
                    }
                    continue;
                }
            };
            let pinned = resolved.reference.with_digest(resolved.descriptor.digest.clone());
            for policy in governing.iter().filter(|p| !p.keys.is_empty()) {
                if let Err(reason) = self.verify(&resolved, policy).await {
                    violations.push((subject.clone(), policy.signature_violation(&pinned.to_string(), &reason)));
                }
            }
            for policy in governing.iter().filter(|p| p.max_severity.is_some()) {
                match self.scan(&pinned).await {
                    Ok(report) => {
                        if let Some(v) = policy.check_vulnerabilities(&report, chrono::Utc::now()) {
                            violations.push((subject.clone(), v));
                        }
                    }
                    Err(message) => violations.push((
                        subject.clone(),
                        Violation {
                            policy: policy.name.clone(),
                            mode: policy.mode,
                            rule: "vulnerabilities",
                            message,
                            fix: "import advisories with `flotilla vulndb import` on the server, or remove spec.vulnerabilities".to_string(),
                        },
                    )),
                }
            }
            if reference.digest.is_none() {
                let mut pin = reference.clone();
                pin.digest = Some(resolved.descriptor.digest.clone());
                pins.push((img.pointer.clone(), pin.to_string()));
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

    async fn resolve(&self, reference: &Reference) -> Result<Resolved, String> {
        let key = reference.to_string();
        if let Some((r, at)) = self.resolved.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            if at.elapsed() < RESOLVE_TTL || reference.digest.is_some() {
                return Ok(r.clone());
            }
        }
        let mut remote = Remote::new(reference, &self.pull_options()).map_err(|e| e.to_string())?;
        let resolved = signatures::resolve(&mut remote, reference).await.map_err(|e| e.to_string())?;
        self.resolved.lock().unwrap_or_else(|e| e.into_inner()).insert(key, (resolved.clone(), Instant::now()));
        Ok(resolved)
    }

    async fn verify(&self, resolved: &Resolved, policy: &Compiled) -> Result<(), String> {
        let keys: Vec<String> = policy.keys.iter().map(|(_, k)| k.id()).collect();
        let cache_key = (resolved.descriptor.digest.to_string() + "@" + &resolved.reference.repository_name(), keys.join(","));
        if let Some(at) = self.verified.lock().unwrap_or_else(|e| e.into_inner()).get(&cache_key) {
            if at.elapsed() < VERIFY_TTL {
                self.counters.lock().unwrap_or_else(|e| e.into_inner()).verify_cached += 1;
                return Ok(());
            }
        }
        self.counters.lock().unwrap_or_else(|e| e.into_inner()).verify_uncached += 1;
        let mut remote = Remote::new(&resolved.reference, &self.pull_options()).map_err(|e| e.to_string())?;
        let keys: Vec<_> = policy.keys.iter().map(|(_, k)| k.clone()).collect();
        signatures::verify(&mut remote, resolved, &keys).await.map_err(|e| e.to_string())?;
        self.verified.lock().unwrap_or_else(|e| e.into_inner()).insert(cache_key, Instant::now());
        Ok(())
    }

    async fn scan(&self, pinned: &Reference) -> Result<trust::scan::ScanReport, String> {
        let (Some(store), Some(db_path)) = (self.config.image_store.clone(), self.config.vulndb.clone()) else {
            return Err("the server has no vulnerability database to check against".to_string());
        };
        let record = store.pull(&pinned.to_string(), &self.pull_options()).await.map_err(|e| format!("pulling {pinned} to scan it: {e}"))?;
        tokio::task::spawn_blocking(move || {
            let db = trust::vulndb::VulnDb::open(&db_path).map_err(|e| e.to_string())?;
            let layers = store.prepare_layers(&record).map_err(|e| e.to_string())?;
            let sbom = trust::sbom::catalog(&trust::rootfs::Rootfs::from_layers(layers)).map_err(|e| e.to_string())?;
            trust::scan::scan(&sbom, &db).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("scan task: {e}"))?
    }

    fn pull_options(&self) -> PullOptions {
        PullOptions { insecure_registries: self.config.insecure_registries.clone(), ..Default::default() }
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
        let _ = writeln!(out, "flotilla_image_signature_verifications_total{{cache=\"hit\"}} {}", counters.verify_cached);
        let _ = writeln!(out, "flotilla_image_signature_verifications_total{{cache=\"miss\"}} {}", counters.verify_uncached);
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
