//! `flotilla functions [-A]`: every Function with its triggers, replicas, backlog and rates,
//! as its dispatcher last reported them (at most a second old).

use anyhow::Result;
use api::function::{triggers_summary, Function};
use clap::Args;
use client::Selectors;

use crate::output::{age, table};
use crate::Context;

/// Arguments of `functions`.
#[derive(Args, Debug)]
pub struct FunctionsArgs {
    /// Functions of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

/// The table row of one Function.
fn row(f: &Function) -> Vec<String> {
    let status = f.status.clone().unwrap_or_default();
    let scaling = f.spec.scaling.clone().unwrap_or_default();
    vec![
        f.metadata.name.clone().unwrap_or_default(),
        triggers_summary(&f.spec),
        format!("{}/{}", status.ready_replicas, status.replicas),
        format!("{}-{}", scaling.min_replicas.unwrap_or(0), scaling.max_replicas.unwrap_or(10)),
        status.backlog.to_string(),
        status.in_flight.to_string(),
        format!("{:.1}", status.received_per_second),
        format!("{:.1}", status.acked_per_second),
        status.received.to_string(),
        status.dead_lettered.to_string(),
        status.cold_starts.to_string(),
        age(f.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()).as_deref()),
    ]
}

/// Runs `functions`.
pub async fn run(ctx: &Context, args: &FunctionsArgs) -> Result<()> {
    let ns = (!args.all_namespaces).then_some(ctx.namespace.as_str());
    let (functions, _) = ctx.client.list_as::<Function>(ns, &Selectors::default()).await?;
    if functions.is_empty() {
        match ns {
            Some(ns) => eprintln!("No functions found in {ns} namespace."),
            None => eprintln!("No functions found"),
        }
        return Ok(());
    }
    let mut rows =
        vec![["NAME", "TRIGGERS", "READY", "SCALE", "BACKLOG", "IN-FLIGHT", "EVENTS/S", "ACKED/S", "RECEIVED", "DEAD-LETTERED", "COLD-STARTS", "AGE"]
            .map(String::from)
            .to_vec()];
    for f in &functions {
        let mut r = row(f);
        if args.all_namespaces {
            r.insert(0, f.metadata.namespace.clone().unwrap_or_default());
        }
        rows.push(r);
    }
    if args.all_namespaces {
        rows[0].insert(0, "NAMESPACE".into());
    }
    table(&rows);
    Ok(())
}
