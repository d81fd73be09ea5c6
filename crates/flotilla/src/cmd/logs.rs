//! `flotilla logs POD [-c CONTAINER] [-f] [--previous] [--tail N]`.

use std::io::Write;

use anyhow::Result;
use clap::Args;
use futures::StreamExt;

use crate::Context;

/// Arguments of `logs`.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// The pod (or pod/NAME).
    pub pod: String,
    /// The container, when the pod has several.
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Keep printing what the container writes.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// The log of the previous run of the container.
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<i64>,
}

/// Runs `logs`.
pub async fn run(ctx: &Context, args: &LogsArgs) -> Result<()> {
    let pod = args.pod.strip_prefix("pod/").or_else(|| args.pod.strip_prefix("pods/")).unwrap_or(&args.pod);
    let mut stream = ctx.client.logs(&ctx.namespace, pod, args.container.as_deref(), args.follow, args.previous, args.tail.filter(|t| *t >= 0)).await?;
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = stream.next().await {
        out.write_all(&chunk?)?;
        out.flush()?;
    }
    Ok(())
}
