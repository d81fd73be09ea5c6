//! `flotilla image import|ls|pull|sbom|scan|keygen|sign|verify`: this node's image store, what is
//! in its images, and their signatures.

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand, ValueEnum};
use image::{ImageRecord, ImageStore, PullOptions};
use trust::rootfs::Rootfs;
use trust::sbom::{Sbom, Subject};
use trust::severity::Level;

use crate::cmd::signing;
use crate::output::table;

/// Arguments of `image`.
#[derive(Args, Debug)]
pub struct ImageArgs {
    /// The node's data directory (its image store is `<data-dir>/images`).
    #[arg(long, default_value = "/var/lib/flotilla", env = "FLOTILLA_DATA_DIR", global = true)]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub command: ImageCommand,
}

/// Image verbs.
#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Import an OCI image layout directory or an OCI/docker-archive tarball.
    Import {
        /// The layout directory or tarball.
        path: PathBuf,
        /// The name to give the image (default: the names recorded in the archive).
        #[arg(long)]
        name: Option<String>,
    },
    /// List images.
    Ls,
    /// Pull an image from a registry.
    Pull {
        /// The reference, e.g. localhost:5000/busybox:1.35.
        reference: String,
        /// Registries reached over plain HTTP besides loopback ones.
        #[arg(long, value_delimiter = ',')]
        insecure_registry: Vec<String>,
    },
    /// Write a cosign-compatible ECDSA P-256 key pair: <prefix>.key (encrypted with the password
    /// from COSIGN_PASSWORD or the terminal) and <prefix>.pub.
    Keygen {
        /// Where to write the keys.
        #[arg(long, default_value = "cosign")]
        output_key_prefix: PathBuf,
    },
    /// Sign an image in a registry the way cosign does (a tag is resolved to its digest first).
    Sign {
        /// The image reference, e.g. localhost:5000/app:1.0.
        reference: String,
        /// The private key (cosign's encrypted PEM); its password comes from COSIGN_PASSWORD or
        /// the terminal.
        #[arg(long)]
        key: PathBuf,
        /// Extra KEY=VALUE claims in the payload's `optional` section.
        #[arg(short = 'a', long = "annotation")]
        annotations: Vec<String>,
        /// Store a Sigstore bundle as an OCI 1.1 referrer instead of the `sha256-<hex>.sig` tag.
        #[arg(long)]
        bundle: bool,
        /// Registries reached over plain HTTP besides loopback ones.
        #[arg(long, value_delimiter = ',')]
        insecure_registry: Vec<String>,
    },
    /// Verify that an image is signed by one of the given public keys, for its own digest and
    /// repository.
    Verify {
        /// The image reference.
        reference: String,
        /// A trusted public key (PEM); repeat for several.
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        /// Registries reached over plain HTTP besides loopback ones.
        #[arg(long, value_delimiter = ',')]
        insecure_registry: Vec<String>,
    },
    /// List the packages in an image (OS packages and language artefacts).
    Sbom {
        /// The image (name, digest or digest prefix) in this node's store.
        image: String,
        /// The document format.
        #[arg(long, value_enum, default_value = "cyclonedx")]
        format: SbomFormat,
    },
    /// Match an image's packages against the vulnerability database.
    Scan {
        /// The image (name, digest or digest prefix) in this node's store.
        image: String,
        /// The database (default: <data-dir>/vulndb/osv.db).
        #[arg(long)]
        db: Option<PathBuf>,
        /// Show findings of this severity or worse.
        #[arg(long, default_value = "UNKNOWN")]
        severity: Level,
        /// Exit with status 3 when a finding is this severe or worse.
        #[arg(long)]
        fail_on: Option<Level>,
        /// Output: a table or the full report as JSON.
        #[arg(short = 'o', long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
        /// Warn when the database is older than this many days.
        #[arg(long, default_value_t = 7)]
        max_age_days: i64,
    },
}

/// SBOM document formats.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum SbomFormat {
    /// CycloneDX 1.5 JSON.
    Cyclonedx,
    /// SPDX 2.3 JSON.
    Spdx,
    /// A table for people.
    Table,
}

/// Runs `image`.
pub async fn run(args: &ImageArgs) -> Result<()> {
    let root = args.data_dir.join("images");
    let open_store = || ImageStore::open(&root).with_context(|| format!("opening the image store at {}", root.display()));
    match &args.command {
        ImageCommand::Keygen { output_key_prefix } => signing::keygen(output_key_prefix)?,
        ImageCommand::Sign { reference, key, annotations, bundle, insecure_registry } => {
            signing::sign(reference, key, annotations, *bundle, insecure_registry).await?
        }
        ImageCommand::Verify { reference, keys, insecure_registry } => signing::verify(reference, keys, insecure_registry).await?,
        ImageCommand::Import { path, name } => {
            let (store, store_path, name) = (open_store()?, path.clone(), name.clone());
            let records = tokio::task::spawn_blocking(move || store.import(&store_path, name.as_deref())).await??;
            for r in records {
                println!("imported {} ({})", r.name, r.digest);
            }
        }
        ImageCommand::Ls => {
            let mut rows = vec![vec!["IMAGE".to_string(), "DIGEST".into(), "SIZE".into()]];
            for r in open_store()?.list()? {
                rows.push(vec![r.name.clone(), r.digest.chars().take(19).collect(), format!("{:.1}MB", r.size as f64 / 1e6)]);
            }
            table(&rows);
        }
        ImageCommand::Pull { reference, insecure_registry } => {
            let opts = PullOptions { insecure_registries: insecure_registry.clone(), ..Default::default() };
            let r = open_store()?.pull(reference, &opts).await?;
            println!("pulled {} ({})", r.name, r.digest);
        }
        ImageCommand::Sbom { image, format } => {
            let (record, sbom) = inventory(open_store()?, image).await?;
            let subject = Subject { name: record.name, digest: record.digest };
            match format {
                SbomFormat::Cyclonedx => println!("{}", serde_json::to_string_pretty(&trust::sbom::to_cyclonedx(&sbom, &subject, chrono::Utc::now()))?),
                SbomFormat::Spdx => println!("{}", serde_json::to_string_pretty(&trust::sbom::to_spdx(&sbom, &subject, chrono::Utc::now()))?),
                SbomFormat::Table => {
                    let mut rows = vec![vec!["TYPE".to_string(), "NAME".into(), "VERSION".into(), "LOCATION".into()]];
                    rows.extend(
                        sbom.packages.iter().map(|p| vec![format!("{:?}", p.kind).to_lowercase(), p.name.clone(), p.version.clone(), p.location.clone()]),
                    );
                    table(&rows);
                }
            }
        }
        ImageCommand::Scan { image, db, severity, fail_on, output, max_age_days } => {
            let db_path = db.clone().unwrap_or_else(|| crate::cmd::vulndb::default_path(&args.data_dir));
            let db = trust::vulndb::VulnDb::open(&db_path)?;
            if let Some(age) = db.stale(chrono::Utc::now(), chrono::Duration::days(*max_age_days)) {
                eprintln!(
                    "warning: the vulnerability database was built {} days ago ({}); import fresh advisories with `flotilla vulndb import`",
                    age.num_days(),
                    db.meta().built_at.format("%Y-%m-%d")
                );
            }
            let (_, sbom) = inventory(open_store()?, image).await?;
            let mut report = trust::scan::scan(&sbom, &db)?;
            let worst = report.worst();
            report.findings.retain(|f| f.severity.level >= *severity);
            if output == "json" {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_findings(&report);
            }
            if let (Some(limit), Some(worst)) = (fail_on, worst) {
                if worst >= *limit {
                    eprintln!("error: {image} has {worst} vulnerabilities (--fail-on {limit})");
                    std::process::exit(3);
                }
            }
        }
    }
    Ok(())
}

/// The image's record and inventory, its layers unpacked (once) if they are not yet.
async fn inventory(store: ImageStore, reference: &str) -> Result<(ImageRecord, Sbom)> {
    let reference = reference.to_string();
    tokio::task::spawn_blocking(move || {
        let Some(record) = store.resolve(&reference)? else {
            bail!("no image {reference:?} on this node: `flotilla image pull` or `flotilla image import` it first");
        };
        let layers = store.prepare_layers(&record)?;
        let sbom = trust::sbom::catalog(&Rootfs::from_layers(layers))?;
        Ok((record, sbom))
    })
    .await?
}

fn print_findings(report: &trust::scan::ScanReport) {
    let mut rows = vec![vec!["PACKAGE".to_string(), "VERSION".into(), "ADVISORY".into(), "SEVERITY".into(), "FIXED".into(), "LOCATION".into()]];
    for f in &report.findings {
        let severity = match f.severity.score {
            Some(score) => format!("{} ({score:.1})", f.severity.level),
            None => f.severity.level.to_string(),
        };
        rows.push(vec![
            f.package.name.clone(),
            f.package.version.clone(),
            f.advisory.clone(),
            severity,
            f.fixed.clone().unwrap_or_else(|| "-".into()),
            f.package.location.clone(),
        ]);
    }
    table(&rows);
    let mut counts: Vec<String> = Level::ALL
        .iter()
        .rev()
        .map(|l| (l, report.findings.iter().filter(|f| f.severity.level == *l).count()))
        .filter(|(_, n)| *n > 0)
        .map(|(l, n)| format!("{n} {l}"))
        .collect();
    if counts.is_empty() {
        counts.push("none".into());
    }
    println!("\n{} packages scanned; vulnerabilities: {}", report.packages, counts.join(", "));
    if report.unknown_ecosystem > 0 {
        println!("{} OS packages not matched: the image's OS release is not one the database covers", report.unknown_ecosystem);
    }
}
