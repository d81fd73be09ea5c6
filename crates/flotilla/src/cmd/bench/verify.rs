//! `flotilla bench verify`: what an ImagePolicy's signature rule costs at admission. It starts a
//! local `docker-registry`, pushes the busybox test image under two names, signs one with a
//! cosign signature tag and the other with a Sigstore bundle referrer, then times the policy
//! evaluation the API server runs per pod: uncached (a fresh evaluator: tag resolution,
//! signature fetch, ECDSA verification) and cached (the same evaluator again).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use image::testing::{busybox_layout, Registry};
use image::{normalize_reference, PullOptions, Remote};
use trust::cosign::PrivateKey;
use trust::enforce::{Evaluator, EvaluatorConfig};
use trust::policy::Compiled;
use trust::signatures::{self, Format};

/// Arguments of `bench verify`.
#[derive(Args, Debug)]
pub struct VerifyBenchArgs {
    /// Uncached evaluations per signature format.
    #[arg(long, default_value_t = 200)]
    uncached: usize,
    /// Cached evaluations per signature format.
    #[arg(long, default_value_t = 10_000)]
    cached: usize,
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

fn policy(key: &PrivateKey) -> Result<Compiled> {
    let policy: api::imagepolicy::ImagePolicy = serde_json::from_value(serde_json::json!({
        "apiVersion": "flotilla.dev/v1alpha1",
        "kind": "ClusterImagePolicy",
        "metadata": {"name": "signed"},
        "spec": {"images": ["**"], "signatures": {"keys": [{"name": "bench", "publicKey": key.public_key().to_pem()}]}},
    }))?;
    trust::policy::compile(&policy).map_err(anyhow::Error::msg)
}

/// Signs `reference` in its registry with `key`.
pub(super) async fn sign(reference: &str, key: &PrivateKey, format: Format) -> Result<()> {
    let reference = normalize_reference(reference)?;
    let mut remote = Remote::for_push(&reference, &PullOptions::default())?;
    let resolved = signatures::resolve(&mut remote, &reference).await?;
    signatures::sign(&mut remote, &resolved, key, BTreeMap::new(), format).await?;
    Ok(())
}

async fn evaluate(evaluator: &Evaluator, image: &str, policies: &[Compiled]) -> Result<Duration> {
    let started = Instant::now();
    let outcome = evaluator.evaluate("default", image, policies).await;
    let took = started.elapsed();
    if let Some(v) = outcome.violations.first() {
        bail!("{image} was refused: {}", v.message);
    }
    Ok(took)
}

fn config() -> EvaluatorConfig {
    EvaluatorConfig { site: "server", ..EvaluatorConfig::default() }
}

/// Runs `bench verify`.
pub async fn run(args: &VerifyBenchArgs) -> Result<()> {
    if args.uncached == 0 || args.cached == 0 {
        bail!("--uncached and --cached must be at least 1");
    }
    let registry = tokio::task::spawn_blocking(Registry::start).await?;
    let dir = tempfile::tempdir()?;
    let layout = dir.path().join("layout");
    busybox_layout(&layout, "1");
    let key = PrivateKey::generate();
    let policies = [policy(&key)?];
    let mut images = Vec::new();
    for (repository, format, label) in [("bench/tagged", Format::SignatureTag, "signature tag"), ("bench/bundled", Format::Bundle, "Sigstore bundle")] {
        let image = registry.push(&layout, "1", repository, "1");
        sign(&image, &key, format).await.with_context(|| format!("signing {image}"))?;
        images.push((image, label));
    }
    println!("registry: docker-registry on {} (loopback, plain HTTP); one P-256 key", registry.addr);
    println!("{:<16} {:<9} {:>7} {:>11} {:>11}", "signature", "cache", "runs", "p50", "p99");
    for (image, label) in &images {
        let mut uncached = Vec::with_capacity(args.uncached);
        for _ in 0..args.uncached {
            uncached.push(evaluate(&Evaluator::new(config()), image, &policies).await?);
        }
        let warm = Evaluator::new(config());
        evaluate(&warm, image, &policies).await?;
        let mut cached = Vec::with_capacity(args.cached);
        for _ in 0..args.cached {
            cached.push(evaluate(&warm, image, &policies).await?);
        }
        for (cache, samples) in [("uncached", &mut uncached), ("cached", &mut cached)] {
            println!(
                "{label:<16} {cache:<9} {:>7} {:>8.3} ms {:>8.3} ms",
                samples.len(),
                percentile(samples, 0.5).as_secs_f64() * 1e3,
                percentile(samples, 0.99).as_secs_f64() * 1e3
            );
        }
    }
    Ok(())
}
