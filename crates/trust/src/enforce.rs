//! Evaluating the policies that govern one image: where it comes from, its tag resolved to a
//! digest, its signatures and its vulnerabilities. Shared by the API server's admission and the
//! agent's re-check before it starts a container; caches make the second and later checks of a
//! digest cheap.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use image::{normalize_reference, ImageStore, PullOptions, Reference, Remote};

use crate::policy::{Compiled, Violation};
use crate::scan::ScanReport;
use crate::signatures::{self, Resolved};

/// How long a tag's resolution to a digest is reused.
const RESOLVE_TTL: Duration = Duration::from_secs(30);
/// How long a successful signature verification is reused for the same digest and keys.
const VERIFY_TTL: Duration = Duration::from_secs(300);

/// What evaluation needs besides the policies.
#[derive(Default, Clone)]
pub struct EvaluatorConfig {
    /// Registries reached over plain HTTP besides loopback ones.
    pub insecure_registries: Vec<String>,
    /// Where images are pulled to be scanned.
    pub image_store: Option<ImageStore>,
    /// The vulnerability database file.
    pub vulndb: Option<PathBuf>,
    /// Who is checking, for fixes that name where to act (`server`, `node`).
    pub site: &'static str,
    /// Skip vulnerability rules when `vulndb` does not exist (a node re-checking what the
    /// server's admission scanned), instead of failing them.
    pub vulndb_optional: bool,
}

/// The outcome for one image.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Rules that failed, in every mode.
    pub violations: Vec<Violation>,
    /// `registry/repo:tag@digest` when a tag was resolved for a signature or vulnerability rule:
    /// what must run so that what runs is what was checked.
    pub pinned: Option<String>,
}

/// Evaluates images against compiled policies, with caches.
pub struct Evaluator {
    config: EvaluatorConfig,
    resolved: Mutex<HashMap<String, (Resolved, Instant)>>,
    verified: Mutex<HashMap<(String, String), Instant>>,
    scanned: Mutex<HashMap<String, (ScanReport, chrono::DateTime<chrono::Utc>)>>,
    /// Signature checks answered by the cache.
    pub verify_hits: AtomicU64,
    /// Signature checks that went to the registry.
    pub verify_misses: AtomicU64,
}

impl Evaluator {
    /// An evaluator with empty caches.
    pub fn new(config: EvaluatorConfig) -> Evaluator {
        Evaluator {
            config,
            resolved: Mutex::default(),
            verified: Mutex::default(),
            scanned: Mutex::default(),
            verify_hits: AtomicU64::new(0),
            verify_misses: AtomicU64::new(0),
        }
    }

    /// Evaluates `image` (as written in a pod spec) in `namespace` against every policy that
    /// governs it. A malformed reference yields nothing: validation reports it.
    pub async fn evaluate(&self, namespace: &str, image: &str, policies: &[Compiled]) -> Outcome {
        let mut outcome = Outcome::default();
        let Ok(reference) = normalize_reference(image) else {
            return outcome;
        };
        let governing: Vec<&Compiled> = policies.iter().filter(|p| p.governs(namespace, &reference)).collect();
        outcome.violations.extend(governing.iter().filter_map(|p| p.check_location(&reference)));
        let digest_rules: Vec<&&Compiled> = governing.iter().filter(|p| !p.keys.is_empty() || p.max_severity.is_some()).collect();
        if digest_rules.is_empty() {
            return outcome;
        }
        let resolved = match self.resolve(&reference).await {
            Ok(r) => r,
            Err(e) => {
                for policy in digest_rules {
                    let rule = if policy.keys.is_empty() { "vulnerabilities" } else { "signatures" };
                    outcome.violations.push(Violation {
                        policy: policy.name.clone(),
                        mode: policy.mode,
                        rule,
                        message: format!("cannot resolve {reference} in its registry: {e}"),
                        fix: format!("check that the image exists and its registry is reachable from the {}", self.config.site),
                    });
                }
                return outcome;
            }
        };
        let pinned = resolved.reference.with_digest(resolved.descriptor.digest.clone());
        for policy in governing.iter().filter(|p| !p.keys.is_empty()) {
            if let Err(reason) = self.verify(&resolved, policy).await {
                outcome.violations.push(policy.signature_violation(&pinned.to_string(), &reason));
            }
        }
        let gates: Vec<&&Compiled> = governing.iter().filter(|p| p.max_severity.is_some()).collect();
        let skip_gates = self.config.vulndb_optional && self.config.vulndb.as_deref().is_none_or(|p| !p.exists());
        if !gates.is_empty() && !skip_gates {
            let now = chrono::Utc::now();
            match self.scan(&pinned).await {
                Ok(report) => outcome.violations.extend(gates.iter().filter_map(|p| p.check_vulnerabilities(&report, now))),
                Err(message) => outcome.violations.extend(gates.iter().map(|p| Violation {
                    policy: p.name.clone(),
                    mode: p.mode,
                    rule: "vulnerabilities",
                    message: message.clone(),
                    fix: format!("import advisories with `flotilla vulndb import` on the {}, or remove spec.vulnerabilities", self.config.site),
                })),
            }
        }
        if reference.digest.is_none() {
            let mut pin = reference.clone();
            pin.digest = Some(resolved.descriptor.digest.clone());
            outcome.pinned = Some(pin.to_string());
        }
        outcome
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
        let cache_key = (format!("{}@{}", resolved.reference.repository_name(), resolved.descriptor.digest), keys.join(","));
        if let Some(at) = self.verified.lock().unwrap_or_else(|e| e.into_inner()).get(&cache_key) {
            if at.elapsed() < VERIFY_TTL {
                self.verify_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
        }
        self.verify_misses.fetch_add(1, Ordering::Relaxed);
        let mut remote = Remote::new(&resolved.reference, &self.pull_options()).map_err(|e| e.to_string())?;
        let keys: Vec<_> = policy.keys.iter().map(|(_, k)| k.clone()).collect();
        signatures::verify(&mut remote, resolved, &keys).await.map_err(|e| e.to_string())?;
        self.verified.lock().unwrap_or_else(|e| e.into_inner()).insert(cache_key, Instant::now());
        Ok(())
    }

    /// Scans the image at `pinned` (pulling it into the store first), reusing the report while
    /// the database is unchanged.
    pub async fn scan(&self, pinned: &Reference) -> Result<ScanReport, String> {
        let (Some(store), Some(db_path)) = (self.config.image_store.clone(), self.config.vulndb.clone()) else {
            return Err(format!("the {} has no vulnerability database to check against", self.config.site));
        };
        let db = crate::vulndb::VulnDb::open(&db_path).map_err(|e| format!("the {}'s vulnerability database: {e}", self.config.site))?;
        let built = db.meta().built_at;
        let key = pinned.to_string();
        if let Some((report, at)) = self.scanned.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            if *at == built {
                return Ok(report.clone());
            }
        }
        let record = store.pull(&key, &self.pull_options()).await.map_err(|e| format!("pulling {pinned} to scan it: {e}"))?;
        let report = tokio::task::spawn_blocking(move || {
            let layers = store.prepare_layers(&record).map_err(|e| e.to_string())?;
            let sbom = crate::sbom::catalog(&crate::rootfs::Rootfs::from_layers(layers)).map_err(|e| e.to_string())?;
            crate::scan::scan(&sbom, &db).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("scan task: {e}"))??;
        self.scanned.lock().unwrap_or_else(|e| e.into_inner()).insert(key, (report.clone(), built));
        Ok(report)
    }

    fn pull_options(&self) -> PullOptions {
        PullOptions { insecure_registries: self.config.insecure_registries.clone(), ..Default::default() }
    }
}
