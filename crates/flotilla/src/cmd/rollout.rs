//! `flotilla rollout status deployment/NAME`: waits until the deployment's pods all run the
//! current template and are available.

use std::time::Duration;

use anyhow::{bail, Result};
use api::Deployment;
use clap::{Args, Subcommand};

use crate::Context;

/// Arguments of `rollout`.
#[derive(Args, Debug)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub command: RolloutCommand,
}

/// Rollout verbs.
#[derive(Subcommand, Debug)]
pub enum RolloutCommand {
    /// Wait for a rollout to finish.
    Status {
        /// deployment/NAME.
        target: String,
        /// Give up after this long: seconds, or a duration such as 90s, 5m, 1h.
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        timeout: Duration,
    },
}

/// Where a rollout stands: `Ok(true)` when done, with a progress line.
pub fn progress(d: &Deployment) -> (bool, String) {
    let name = d.metadata.name.clone().unwrap_or_default();
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = d.status.clone().unwrap_or_default();
    let (updated, total, available) = (status.updated_replicas.unwrap_or(0), status.replicas.unwrap_or(0), status.available_replicas.unwrap_or(0));
    if status.observed_generation.unwrap_or(0) < d.metadata.generation.unwrap_or(0) {
        return (false, "Waiting for deployment spec update to be observed...".to_string());
    }
    if updated < replicas {
        return (false, format!("Waiting for deployment \"{name}\" rollout to finish: {updated} out of {replicas} new replicas have been updated..."));
    }
    if total > updated {
        return (false, format!("Waiting for deployment \"{name}\" rollout to finish: {} old replicas are pending termination...", total - updated));
    }
    if available < updated {
        return (false, format!("Waiting for deployment \"{name}\" rollout to finish: {available} of {updated} updated replicas are available..."));
    }
    (true, format!("deployment \"{name}\" successfully rolled out"))
}

/// Parses `120`, `120s`, `5m` or `1h` into a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.find(|c: char| !c.is_ascii_digit()).map_or((text, "s"), |i| text.split_at(i));
    let value: u64 = number.parse().map_err(|_| format!("\"{text}\" is not a duration: use e.g. 90s, 5m or 1h"))?;
    let seconds = match unit {
        "s" => value,
        "m" => value * 60,
        "h" => value * 3600,
        _ => return Err(format!("\"{text}\" has an unknown unit \"{unit}\": use s, m or h")),
    };
    Ok(Duration::from_secs(seconds))
}

/// Runs `rollout`.
pub async fn run(ctx: &Context, args: &RolloutArgs) -> Result<()> {
    let RolloutCommand::Status { target, timeout } = &args.command;
    let name = target.strip_prefix("deployment/").or_else(|| target.strip_prefix("deploy/")).or_else(|| target.strip_prefix("deployments/")).unwrap_or(target);
    let deadline = tokio::time::Instant::now() + *timeout;
    let mut last = String::new();
    loop {
        let d: Deployment = ctx.client.get_as(Some(&ctx.namespace), name).await?;
        let (done, line) = progress(&d);
        if line != last {
            println!("{line}");
            last = line;
        }
        if done {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting for the rollout of deployment \"{name}\"");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
