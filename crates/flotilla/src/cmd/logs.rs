//! `flotilla logs POD [-c CONTAINER] [-f] [--previous] [--tail N]`, and
//! `flotilla logs fn/NAME [-f] [--tail N]`: a Function's invocations, one line each (time,
//! event id, replica, outcome, attempt, duration, error).

use std::io::Write;

use anyhow::Result;
use clap::Args;
use futures::StreamExt;

use crate::Context;

/// Arguments of `logs`.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// The pod (or pod/NAME), or a Function as fn/NAME.
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

/// How often `logs fn/NAME -f` asks for new lines.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Runs `logs`.
pub async fn run(ctx: &Context, args: &LogsArgs) -> Result<()> {
    let function = ["fn/", "function/", "functions/"].iter().find_map(|p| args.pod.strip_prefix(p));
    if let Some(name) = function {
        return function_log(ctx, name, args).await;
    }
    let pod = args.pod.strip_prefix("pod/").or_else(|| args.pod.strip_prefix("pods/")).unwrap_or(&args.pod);
    let mut stream = ctx.client.logs(&ctx.namespace, pod, args.container.as_deref(), args.follow, args.previous, args.tail.filter(|t| *t >= 0)).await?;
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = stream.next().await {
        out.write_all(&chunk?)?;
        out.flush()?;
    }
    Ok(())
}

/// Prints a Function's invocation lines; with `-f`, then the new ones as they come.
async fn function_log(ctx: &Context, name: &str, args: &LogsArgs) -> Result<()> {
    let path = format!("/apis/{}/namespaces/{}/functions/{name}/log", api::function::API_VERSION, ctx.namespace);
    let mut since = 0u64;
    let mut first = true;
    loop {
        let answer = ctx.client.get_path(&format!("{path}?since={since}")).await?;
        let lines: Vec<(u64, String)> = answer["lines"]
            .as_array()
            .map(|a| a.iter().filter_map(|l| Some((l["n"].as_u64()?, l["line"].as_str()?.to_string()))).collect())
            .unwrap_or_default();
        let skip = match (first, args.tail) {
            (true, Some(tail)) if tail >= 0 => lines.len().saturating_sub(tail as usize),
            _ => 0,
        };
        let mut out = std::io::stdout().lock();
        for (n, line) in lines.iter().skip(skip) {
            writeln!(out, "{line}")?;
            since = since.max(*n);
        }
        if let Some((n, _)) = lines.last() {
            since = since.max(*n);
        }
        out.flush()?;
        if !args.follow {
            return Ok(());
        }
        first = false;
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}
