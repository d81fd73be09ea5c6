//! `flotilla`: the one binary. It parses arguments and wires the crates together; every verb
//! lives in its own module under `cmd`.

mod cmd;
mod controlplane;
mod output;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use cmd::run::{AgentArgs, ServerArgs};

/// mimalloc instead of the C library's allocator: the API server builds and drops many small
/// JSON trees per request, and with it a busy control plane spends about a third less CPU (see
/// BENCHMARKS.md, end to end).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A secure-by-default container platform for fleets of machines.
#[derive(Parser, Debug)]
#[command(name = "flotilla", version, about, propagate_version = true)]
struct Cli {
    /// The client configuration (default: $FLOTILLA_KUBECONFIG, then ~/.flotilla/kubeconfig).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// The namespace (default: the kubeconfig's, then "default").
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a one-node cluster: API server, controllers, agent and embedded store.
    Up {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        agent: AgentArgs,
    },
    /// Run the control plane only.
    Server {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Run a node agent that joins a control plane.
    Agent {
        /// The API server URL, e.g. https://10.0.0.1:6443.
        #[arg(long)]
        server: String,
        /// The join token (the server's <data-dir>/node-token).
        #[arg(long, env = "FLOTILLA_TOKEN")]
        token: String,
        /// Where the agent keeps images, containers and logs.
        #[arg(long, default_value = "/var/lib/flotilla", env = "FLOTILLA_DATA_DIR")]
        data_dir: PathBuf,
        #[command(flatten)]
        agent: AgentArgs,
    },
    /// Create or update objects from manifest files (YAML or JSON, several documents each).
    Apply(cmd::apply::ApplyArgs),
    /// List or show objects.
    Get(cmd::get::GetArgs),
    /// Show an object in detail, with its events.
    Describe(cmd::describe::DescribeArgs),
    /// Delete objects by file or by name.
    Delete(cmd::delete::DeleteArgs),
    /// Print a pod's container log, or a Function's invocations (fn/NAME).
    Logs(cmd::logs::LogsArgs),
    /// Print the flows the nodes' policy datapaths judged (forwarded and dropped).
    Flows(cmd::flows::FlowsArgs),
    /// Learn network policy from the flows seen: `policy suggest -n NS`.
    Policy(cmd::policy::PolicyArgs),
    /// List Functions with their triggers, replicas, backlog and event rates.
    Functions(cmd::functions::FunctionsArgs),
    /// Follow a rollout.
    Rollout(cmd::rollout::RolloutArgs),
    /// Set a deployment's replica count.
    Scale(cmd::scale::ScaleArgs),
    /// Keep new pods off a node.
    Cordon(cmd::node::CordonArgs),
    /// Let new pods onto a cordoned node again.
    Uncordon(cmd::node::CordonArgs),
    /// Cordon a node and evict its pods (their Deployments replace them elsewhere).
    Drain(cmd::node::DrainArgs),
    /// Manage this node's images.
    Image(cmd::image::ImageArgs),
    /// Manage the offline vulnerability database (OSV advisories).
    Vulndb(cmd::vulndb::VulnDbArgs),
    /// Measure pod start latency and the footprint (see BENCHMARKS.md).
    Bench(cmd::bench::BenchArgs),
    /// Print client and server versions.
    Version,
}

/// What every client verb needs: an API client and the namespace to use.
pub struct Context {
    /// The API client.
    pub client: client::Client,
    /// The namespace from -n, the kubeconfig, or "default".
    pub namespace: String,
    /// True when -n was given explicitly.
    pub namespace_given: bool,
}

fn context(cli: &Cli) -> Result<Context> {
    let path = client::kubeconfig::default_path(cli.kubeconfig.as_deref());
    let config = client::Kubeconfig::load(&path).map_err(anyhow::Error::msg)?;
    let client = client::Client::from_kubeconfig(&config)?.print_warnings();
    let namespace = cli.namespace.clone().or_else(|| config.namespace()).unwrap_or_else(|| "default".into());
    Ok(Context { client, namespace, namespace_given: cli.namespace.is_some() })
}

#[tokio::main]
async fn main() {
    // Like other command-line tools, end quietly when the reader of our output goes away
    // (`flotilla get pods | head -1`) instead of failing on the broken pipe.
    // SAFETY: SIG_DFL installs no handler code, and nothing else in the process has set one for
    // SIGPIPE, so no handler is replaced while it could run.
    unsafe {
        let _ = nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl);
    }
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLOTILLA_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    if let Err(e) = run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Up { server, agent } => cmd::run::up(server.clone(), agent.clone()).await,
        Command::Server { server } => cmd::run::server(server.clone()).await,
        Command::Agent { server, token, data_dir, agent } => cmd::run::agent(server.clone(), token.clone(), data_dir.clone(), agent.clone()).await,
        Command::Image(args) => cmd::image::run(args).await,
        Command::Vulndb(args) => cmd::vulndb::run(args).await,
        Command::Version => {
            println!("Client Version: v{}", env!("CARGO_PKG_VERSION"));
            if let Ok(ctx) = context(&cli) {
                match ctx.client.get_path("/version").await {
                    Ok(v) => println!("Server Version: {}", v.get("gitVersion").and_then(|g| g.as_str()).unwrap_or("unknown")),
                    Err(e) => println!("Server Version: unreachable ({e})"),
                }
            }
            Ok(())
        }
        Command::Apply(args) => cmd::apply::run(&context(&cli)?, args).await,
        Command::Get(args) => cmd::get::run(&context(&cli)?, args).await,
        Command::Describe(args) => cmd::describe::run(&context(&cli)?, args).await,
        Command::Delete(args) => cmd::delete::run(&context(&cli)?, args).await,
        Command::Logs(args) => cmd::logs::run(&context(&cli)?, args).await,
        Command::Flows(args) => cmd::flows::run(&context(&cli)?, args).await,
        Command::Policy(args) => cmd::policy::run(&context(&cli)?, args).await,
        Command::Functions(args) => cmd::functions::run(&context(&cli)?, args).await,
        Command::Rollout(args) => cmd::rollout::run(&context(&cli)?, args).await,
        Command::Scale(args) => cmd::scale::run(&context(&cli)?, args).await,
        Command::Cordon(args) => cmd::node::set_unschedulable(&context(&cli)?, &args.node, true).await,
        Command::Uncordon(args) => cmd::node::set_unschedulable(&context(&cli)?, &args.node, false).await,
        Command::Drain(args) => cmd::node::drain(&context(&cli)?, args).await,
        Command::Bench(args) => cmd::bench::run(|| context(&cli), args).await,
    }
}
