//! `flotilla scale deployment/NAME --replicas N`.

use anyhow::Result;
use api::Deployment;
use clap::Args;

use crate::Context;

/// Arguments of `scale`.
#[derive(Args, Debug)]
pub struct ScaleArgs {
    /// deployment/NAME.
    pub target: String,
    /// The new replica count.
    #[arg(long)]
    pub replicas: i32,
}

/// Runs `scale`.
pub async fn run(ctx: &Context, args: &ScaleArgs) -> Result<()> {
    let name = args.target.strip_prefix("deployment/").or_else(|| args.target.strip_prefix("deploy/")).unwrap_or(&args.target);
    for _ in 0..5 {
        let mut d: Deployment = ctx.client.get_as(Some(&ctx.namespace), name).await?;
        d.spec.get_or_insert_with(Default::default).replicas = Some(args.replicas);
        match ctx.client.update_as(Some(&ctx.namespace), name, &d).await {
            Ok(_) => {
                println!("deployment.apps/{name} scaled");
                return Ok(());
            }
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("deployment \"{name}\" kept changing; try again")
}
