//! `flotilla image import|ls|pull`: this node's image store.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use image::{ImageStore, PullOptions};

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
}

/// Runs `image`.
pub async fn run(args: &ImageArgs) -> Result<()> {
    let root = args.data_dir.join("images");
    let store = ImageStore::open(&root).with_context(|| format!("opening the image store at {}", root.display()))?;
    match &args.command {
        ImageCommand::Import { path, name } => {
            let (store_path, name) = (path.clone(), name.clone());
            let records = tokio::task::spawn_blocking(move || store.import(&store_path, name.as_deref())).await??;
            for r in records {
                println!("imported {} ({})", r.name, r.digest);
            }
        }
        ImageCommand::Ls => {
            let mut rows = vec![vec!["IMAGE".to_string(), "DIGEST".into(), "SIZE".into()]];
            for r in store.list()? {
                rows.push(vec![r.name.clone(), r.digest.chars().take(19).collect(), format!("{:.1}MB", r.size as f64 / 1e6)]);
            }
            table(&rows);
        }
        ImageCommand::Pull { reference, insecure_registry } => {
            let opts = PullOptions { insecure_registries: insecure_registry.clone(), ..Default::default() };
            let r = store.pull(reference, &opts).await?;
            println!("pulled {} ({})", r.name, r.digest);
        }
    }
    Ok(())
}
