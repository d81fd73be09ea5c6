//! `flotilla vulndb import|info`: the node's offline vulnerability database.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::output::table;

/// Arguments of `vulndb`.
#[derive(Args, Debug)]
pub struct VulnDbArgs {
    /// The node's data directory (the database is `<data-dir>/vulndb/osv.db`).
    #[arg(long, default_value = "/var/lib/flotilla", env = "FLOTILLA_DATA_DIR", global = true)]
    pub data_dir: PathBuf,
    /// The database file, instead of the one in the data directory.
    #[arg(long, global = true)]
    pub db: Option<PathBuf>,
    #[command(subcommand)]
    pub command: VulnDbCommand,
}

/// Database verbs.
#[derive(Subcommand, Debug)]
pub enum VulnDbCommand {
    /// Load OSV advisories (JSON files, or directories of them) into the database. All or
    /// nothing: a malformed advisory is named and nothing is imported.
    Import {
        /// Advisory files and directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Show what the database holds and when it was built.
    Info,
}

/// Where the database lives by default.
pub fn default_path(data_dir: &Path) -> PathBuf {
    data_dir.join("vulndb").join("osv.db")
}

/// Runs `vulndb`.
pub async fn run(args: &VulnDbArgs) -> Result<()> {
    let path = args.db.clone().unwrap_or_else(|| default_path(&args.data_dir));
    match &args.command {
        VulnDbCommand::Import { paths } => {
            let (db, paths) = (path.clone(), paths.clone());
            let report = tokio::task::spawn_blocking(move || trust::vulndb::import(&db, &paths, chrono::Utc::now())).await??;
            println!(
                "imported {} files into {}: {} advisories added or updated, {} unchanged; the database holds {} advisories ({} package entries)",
                report.files,
                path.display(),
                report.updated,
                report.unchanged,
                report.meta.advisories,
                report.meta.entries
            );
        }
        VulnDbCommand::Info => {
            let db = trust::vulndb::VulnDb::open(&path)?;
            let meta = db.meta();
            println!("database:        {}", path.display());
            println!("built:           {}", meta.built_at.to_rfc3339());
            println!("newest advisory: {}", meta.newest_advisory);
            println!("advisories:      {}\n", meta.advisories);
            let mut rows = vec![vec!["ECOSYSTEM".to_string(), "ENTRIES".into()]];
            rows.extend(meta.ecosystems.iter().map(|(e, n)| vec![e.clone(), n.to_string()]));
            table(&rows);
        }
    }
    Ok(())
}
