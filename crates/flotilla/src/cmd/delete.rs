//! `flotilla delete (-f FILE | TYPE NAME...)`: delete objects and, by default, wait until they
//! are gone.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use api::ResourceType;
use clap::Args;

use super::apply::{namespace_for, read_documents};
use super::get::resolve_kind;
use crate::output::object_name;
use crate::Context;

/// Arguments of `delete`.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Manifest files whose objects to delete.
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<PathBuf>,
    /// `TYPE NAME...` or `TYPE/NAME`.
    pub targets: Vec<String>,
    /// Seconds pods get to stop (0 with --force deletes at once).
    #[arg(long)]
    pub grace_period: Option<i64>,
    /// Wait until the objects are gone.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub wait: bool,
    /// How long --wait waits, in seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

/// Runs `delete`.
pub async fn run(ctx: &Context, args: &DeleteArgs) -> Result<()> {
    let mut objects: Vec<(&'static ResourceType, Option<String>, String)> = Vec::new();
    if !args.files.is_empty() {
        for (_, doc) in read_documents(&args.files)? {
            let ns = namespace_for(ctx, &doc)?.map(str::to_string);
            objects.push((doc.resource, ns, doc.name().to_string()));
        }
    } else {
        let Some(first) = args.targets.first() else { bail!("say what to delete: -f FILE, or TYPE NAME (e.g. flotilla delete pod web-1)") };
        let (rt, inline) = resolve_kind(first)?;
        let names: Vec<String> = inline.into_iter().chain(args.targets[1..].iter().cloned()).collect();
        if names.is_empty() {
            bail!("give the name of the {} to delete", rt.kind.to_ascii_lowercase());
        }
        let ns = rt.namespaced.then(|| ctx.namespace.clone());
        objects.extend(names.into_iter().map(|n| (rt, ns.clone(), n)));
    }
    let mut failures = 0;
    let mut deleted = Vec::new();
    for (rt, ns, name) in objects {
        match ctx.client.delete(rt, ns.as_deref(), &name, args.grace_period).await {
            Ok(_) => {
                println!("{} deleted", object_name(rt, &name));
                deleted.push((rt, ns, name));
            }
            Err(e) if e.is_not_found() && !args.files.is_empty() => eprintln!("{} not found", object_name(rt, &name)),
            Err(e) => {
                failures += 1;
                eprintln!("error: {e}");
            }
        }
    }
    if args.wait {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
        for (rt, ns, name) in &deleted {
            loop {
                match ctx.client.get(rt, ns.as_deref(), name).await {
                    Err(e) if e.is_not_found() => break,
                    _ if tokio::time::Instant::now() > deadline => bail!("timed out waiting for {} to be deleted", object_name(rt, name)),
                    _ => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }
    }
    if failures > 0 {
        bail!("{failures} objects could not be deleted");
    }
    Ok(())
}
