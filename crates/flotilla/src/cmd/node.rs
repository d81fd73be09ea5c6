//! `flotilla cordon|uncordon|drain NODE`: keep new pods off a node, let them back, or also
//! evict the pods running there (their Deployments replace them on other nodes).

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use api::{Node, Pod, ResourceType};
use clap::Args;

use crate::Context;

/// Arguments of `cordon` and `uncordon`.
#[derive(Args, Debug)]
pub struct CordonArgs {
    /// The node.
    pub node: String,
}

/// Arguments of `drain`.
#[derive(Args, Debug)]
pub struct DrainArgs {
    /// The node.
    pub node: String,
    /// How long to wait for the evicted pods to be gone (e.g. 90s, 5m).
    #[arg(long, default_value = "5m", value_parser = crate::cmd::rollout::parse_duration)]
    pub timeout: Duration,
}

/// Sets or clears `spec.unschedulable`, retrying on conflicting writes.
pub async fn set_unschedulable(ctx: &Context, node: &str, value: bool) -> Result<()> {
    for _ in 0..5 {
        let mut n: Node = ctx.client.get_as(None, node).await?;
        if n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false) == value {
            println!("node/{node} already {}", if value { "cordoned" } else { "uncordoned" });
            return Ok(());
        }
        n.spec.get_or_insert_with(Default::default).unschedulable = value.then_some(true);
        match ctx.client.update_as(None, node, &n).await {
            Ok(_) => {
                println!("node/{node} {}", if value { "cordoned" } else { "uncordoned" });
                return Ok(());
            }
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    bail!("node \"{node}\" kept changing; try again")
}

async fn pods_on(ctx: &Context, node: &str) -> Result<Vec<Pod>> {
    let selectors = client::Selectors { labels: None, fields: Some(format!("spec.nodeName={node}")) };
    Ok(ctx.client.list_as::<Pod>(None, &selectors).await?.0)
}

/// Runs `drain`: cordon, evict every pod on the node, wait until they are gone.
pub async fn drain(ctx: &Context, args: &DrainArgs) -> Result<()> {
    set_unschedulable(ctx, &args.node, true).await?;
    let rt = ResourceType::of::<Pod>();
    for pod in pods_on(ctx, &args.node).await? {
        let (ns, name) = (pod.metadata.namespace.clone().unwrap_or_default(), pod.metadata.name.clone().unwrap_or_default());
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        match ctx.client.delete(rt, Some(&ns), &name, None).await {
            Ok(_) => println!("evicting pod {ns}/{name}"),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    let start = Instant::now();
    loop {
        let left = pods_on(ctx, &args.node).await?;
        if left.is_empty() {
            println!("node/{} drained", args.node);
            return Ok(());
        }
        if start.elapsed() > args.timeout {
            let names: Vec<String> = left.iter().filter_map(|p| p.metadata.name.clone()).collect();
            bail!("node/{}: pods still terminating after {:?}: {}", args.node, args.timeout, names.join(", "));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
