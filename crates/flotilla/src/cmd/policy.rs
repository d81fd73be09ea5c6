//! `flotilla policy suggest [-n NS] [--node N]`: writes, from the flows the nodes still hold,
//! NetworkPolicies for the namespace that allow exactly what its pods were seen doing and deny
//! the rest, as YAML to review and `flotilla apply -f` (learn, then enforce).

use anyhow::{bail, Result};
use api::flow::FlowFilter;
use api::Pod;
use clap::{Args, Subcommand};

use crate::Context;

/// Arguments of `policy`.
#[derive(Args, Debug)]
pub struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Write NetworkPolicies allowing exactly the flows seen in the namespace (-n), for review.
    Suggest(SuggestArgs),
}

/// Arguments of `policy suggest`.
#[derive(Args, Debug)]
pub struct SuggestArgs {
    /// Learn only from the flows judged on this node.
    #[arg(long)]
    pub node: Option<String>,
}

/// Runs `policy`.
pub async fn run(ctx: &Context, args: &PolicyArgs) -> Result<()> {
    match &args.command {
        PolicyCommand::Suggest(suggest) => self::suggest(ctx, suggest).await,
    }
}

async fn suggest(ctx: &Context, args: &SuggestArgs) -> Result<()> {
    // Dropped flows are read too, only to be counted: what was denied is not learned.
    let filter = FlowFilter { namespace: Some(ctx.namespace.clone()), node: args.node.clone(), last: None, ..Default::default() };
    let (flows, unavailable) = crate::cmd::flows::collect(ctx, &filter).await?;
    let pods: Vec<Pod> = ctx.client.list_as(None, &client::Selectors::default()).await?.0;
    let (suggested, summary) = api::netpol::suggest::suggest(&ctx.namespace, &pods, &flows);
    if suggested.is_empty() {
        bail!("namespace {} has no pods and no flows: nothing to suggest", ctx.namespace);
    }
    if summary.used == 0 {
        eprintln!("warning: no forwarded flow of {} was seen ({} dropped): every policy below denies everything", ctx.namespace, summary.dropped);
    }
    let mut yaml = api::netpol::suggest::to_yaml(&ctx.namespace, &suggested, &summary)?;
    if !unavailable.is_empty() {
        // Said first: what those nodes saw is missing, and these policies would deny it.
        let missing: Vec<String> = unavailable.iter().map(|(node, why)| format!("{node} ({why})")).collect();
        yaml.insert_str(0, &format!("# WARNING: the flows of these nodes could not be read, and what they saw is not allowed below: {}\n", missing.join(", ")));
    }
    print!("{yaml}");
    Ok(())
}
