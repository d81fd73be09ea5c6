//! `flotilla up`, `flotilla server` and `flotilla agent`: running the two halves of a cluster,
//! together or apart.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use sha2::{Digest, Sha256};

use crate::controlplane::{self, ControlPlaneOptions};

/// Settings of the control plane.
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Where state lives (store, PKI, tokens, images, containers, logs).
    #[arg(long, default_value = "/var/lib/flotilla", env = "FLOTILLA_DATA_DIR")]
    pub data_dir: PathBuf,
    /// HTTPS address of the API server.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// etcd endpoints (comma-separated) for a multi-server control plane; the embedded store
    /// is used when empty.
    #[arg(long, value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// Extra DNS names or IPs for the API server certificate.
    #[arg(long, value_delimiter = ',')]
    pub tls_san: Vec<String>,
    /// How the scheduler ranks nodes: spread (least allocated) or binpack (most allocated); a
    /// workload overrides it with the flotilla.dev/scheduling-strategy annotation.
    #[arg(long, default_value = "spread", value_parser = parse_strategy)]
    pub scheduling_strategy: scheduler::Strategy,
    /// How long a node may miss heartbeats before it is NotReady and tainted (e.g. 10s, 1m).
    #[arg(long, default_value = "10s", value_parser = crate::cmd::rollout::parse_duration)]
    pub node_grace: Duration,
    /// The pod network of the whole cluster; each node gets a slice of it (see
    /// --node-cidr-mask-size) unless its agent was started with a --pod-cidr of its own.
    #[arg(long, default_value = "10.88.0.0/16")]
    pub cluster_cidr: String,
    /// The prefix length of each node's slice of --cluster-cidr.
    #[arg(long, default_value_t = 24)]
    pub node_cidr_mask_size: u8,
    /// The network Services' cluster IPs are taken from (its first address is kept back).
    #[arg(long, default_value = "10.96.0.0/16")]
    pub service_cidr: String,
    /// The ports NodePort Services are given, FIRST-LAST.
    #[arg(long, default_value = "30000-32767")]
    pub service_node_port_range: String,
    /// How long an Identity no pod has any longer is kept (a pod recreated meanwhile finds its
    /// number again).
    #[arg(long, default_value = "60s", value_parser = crate::cmd::rollout::parse_duration)]
    pub identity_gc_grace: Duration,
    /// How long Events are kept (they live in memory on the embedded store, and are deleted
    /// from etcd after this long).
    #[arg(long, default_value = "1h", value_parser = crate::cmd::rollout::parse_duration)]
    pub event_ttl: Duration,
    /// Registries the image policy gate reaches over plain HTTP (to resolve tags and read
    /// signatures) besides loopback ones.
    #[arg(long, value_delimiter = ',')]
    pub policy_insecure_registry: Vec<String>,
}

fn parse_network_policy(text: &str) -> Result<bool, String> {
    match text {
        "ebpf" => Ok(true),
        "off" | "none" => Ok(false),
        other => Err(format!("\"{other}\" is not ebpf or off")),
    }
}

fn parse_strategy(text: &str) -> Result<scheduler::Strategy, String> {
    scheduler::Strategy::parse(text).ok_or_else(|| format!("\"{text}\" is not spread or binpack"))
}

fn control_plane_options(server: &ServerArgs) -> Result<ControlPlaneOptions> {
    Ok(ControlPlaneOptions {
        data_dir: server.data_dir.clone(),
        listen: server.listen,
        etcd_endpoints: server.etcd_endpoints.clone(),
        tls_sans: server.tls_san.clone(),
        controllers: controllers::ControllerOptions {
            scheduler: scheduler::SchedulerConfig { strategy: server.scheduling_strategy, ..Default::default() },
            lifecycle: controllers::nodelifecycle::LifecycleConfig { grace: server.node_grace, ..Default::default() },
            node_ipam: controllers::nodeipam::NodeIpamConfig::new(&server.cluster_cidr, server.node_cidr_mask_size).map_err(anyhow::Error::msg)?,
            identity_grace: Some(server.identity_gc_grace),
            event_ttl: Some(server.event_ttl),
            function_metrics: None,
        },
        insecure_registries: server.policy_insecure_registry.clone(),
        service_ranges: apiserver::ServiceRanges::parse(&server.service_cidr, &server.service_node_port_range).map_err(anyhow::Error::msg)?,
    })
}

/// Settings of the node agent.
#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// The Node name (defaults to the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// The address the control plane reaches this node's agent at.
    #[arg(long, default_value = "127.0.0.1")]
    pub node_ip: IpAddr,
    /// The agent endpoint's port (logs); 0 picks a free one.
    #[arg(long, default_value_t = 10250)]
    pub agent_port: u16,
    /// OCI runtime: runc, crun, youki or a path.
    #[arg(long, default_value = "runc")]
    pub runtime: String,
    /// The pod network of this node (e.g. 10.88.3.0/24); by default the control plane
    /// assigns one, a slice of the server's --cluster-cidr.
    #[arg(long)]
    pub pod_cidr: Option<String>,
    /// The node bridge.
    #[arg(long, default_value = "flotilla0")]
    pub bridge: String,
    /// How pods reach pods on other nodes: vxlan (a tunnel, wherever nodes reach each other
    /// over IP), routes (a route per node via its --node-ip, for nodes on one L2 segment) or
    /// none. Nodes whose --node-ip is loopback have no peers either way.
    #[arg(long, default_value = "vxlan")]
    pub overlay: agent::network::overlay::OverlayMode,
    /// How NetworkPolicy is enforced: ebpf (tc programs on every pod's veth) or off (policies
    /// are stored but nothing is enforced on this node).
    #[arg(long, default_value = "ebpf", value_parser = parse_network_policy)]
    pub network_policy: bool,
    /// Flows this node keeps for `flotilla flows` (its datapath reports every flow it judges);
    /// 0 turns the flow log off.
    #[arg(long, default_value_t = agent::flows::DEFAULT_CAPACITY)]
    pub flow_log: usize,
    /// How Services are load-balanced: ebpf (socket programs on the cgroup tree: a connect()
    /// to a cluster IP or node port goes straight to a ready backend) or off.
    #[arg(long, default_value = "ebpf", value_parser = parse_network_policy)]
    pub service_proxy: bool,
    /// The cluster's DNS domain; the node's resolver (on the pod gateway, with the service
    /// proxy) answers `<service>.<namespace>.svc.<domain>`.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Where the node's resolver relays names outside the cluster, ADDRESS:PORT (default: the
    /// first nameserver of /etc/resolv.conf).
    #[arg(long)]
    pub upstream_dns: Option<std::net::SocketAddr>,
    /// First container restart back-off in milliseconds (doubles per crash, up to 5 minutes).
    #[arg(long, default_value_t = 10_000)]
    pub backoff_ms: u64,
    /// Registries reached over plain HTTP besides loopback ones.
    #[arg(long, value_delimiter = ',')]
    pub insecure_registry: Vec<String>,
    /// A class of device nodes advertised as the extended resource `flotilla.dev/NAME`, one
    /// unit per char or block device matching a glob: `camera=/dev/video*`,
    /// `serial=/dev/ttyUSB*,/dev/ttyACM*`. Repeat for more classes.
    #[arg(long = "device-class", value_name = "NAME=GLOB[,GLOB...]")]
    pub device_class: Vec<agent::devices::DeviceClass>,
    /// Do not look for NVIDIA GPUs (`/dev/nvidiaN`, advertised as `nvidia.com/gpu`).
    #[arg(long)]
    pub no_gpu_discovery: bool,
    /// How often to rescan for devices plugged in or removed, in milliseconds.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub device_rescan_ms: u64,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_lowercase()).unwrap_or_else(|_| "node".into())
}

fn agent_config(args: &AgentArgs, data_dir: &std::path::Path) -> agent::config::AgentConfig {
    let mut config = agent::config::AgentConfig::new(&args.node_name.clone().unwrap_or_else(hostname), data_dir);
    config.node_ip = args.node_ip;
    config.port = args.agent_port;
    config.runtime = args.runtime.clone();
    config.pod_cidr = args.pod_cidr.clone().unwrap_or_default();
    config.bridge = args.bridge.clone();
    config.overlay = args.overlay;
    config.network_policy = args.network_policy;
    config.flow_log = args.flow_log;
    config.service_proxy = args.service_proxy;
    config.cluster_domain = args.cluster_domain.clone();
    config.upstream_dns = args.upstream_dns;
    config.backoff_base = Duration::from_millis(args.backoff_ms);
    config.insecure_registries = args.insecure_registry.clone();
    config.device_classes = args.device_class.clone();
    config.gpu_discovery = !args.no_gpu_discovery;
    config.device_rescan = Duration::from_millis(args.device_rescan_ms);
    config
}

fn home_kubeconfig() -> PathBuf {
    client::kubeconfig::default_path(None)
}

async fn wait_for_shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
    }
    eprintln!("stopping the control plane and agent; containers keep running and the next start adopts them");
}

/// `flotilla up`: control plane and agent in one process.
pub async fn up(server: ServerArgs, agent_args: AgentArgs) -> Result<()> {
    let cp = controlplane::start(control_plane_options(&server)?).await?;
    let home = home_kubeconfig();
    cp.kubeconfig.save(&home).map_err(anyhow::Error::msg)?;
    let config = agent_config(&agent_args, &server.data_dir);
    let node = config.node_name.clone();
    let target = agent::join::JoinTarget { server: &cp.server_url, ca_pem: &cp.ca_pem, join_token: &cp.node_token };
    let identity = agent::join::identity(&target, &node, &config.identity_dir()).await?;
    let node_client = client::Client::new(&cp.server_url, Some(&cp.ca_pem), &identity.token)?;
    let _agent = agent::start(config, node_client, &identity).await?;
    eprintln!("flotilla is up: API server {} , node \"{node}\"", cp.server_url);
    eprintln!("kubeconfig: {} and {}", server.data_dir.join("kubeconfig").display(), home.display());
    eprintln!("try: flotilla apply -f examples/web.yaml && flotilla get pods -o wide");
    wait_for_shutdown().await;
    Ok(())
}

/// `flotilla server`: the control plane alone.
pub async fn server(server: ServerArgs) -> Result<()> {
    let cp = controlplane::start(control_plane_options(&server)?).await?;
    eprintln!("flotilla server is up at {}", cp.server_url);
    eprintln!("admin kubeconfig: {}", server.data_dir.join("kubeconfig").display());
    eprintln!("join agents with: flotilla agent --server {} --token $(cat {})", cp.server_url, server.data_dir.join("node-token").display());
    wait_for_shutdown().await;
    Ok(())
}

/// Fetches the server's CA and checks it against the hash carried in a `K10<hash>::…` token.
async fn trusted_ca(server: &str, token: &str) -> Result<String> {
    let Some(hash) = token.strip_prefix("K10").and_then(|t| t.split("::").next()) else {
        bail!("the token does not have the form K10<ca-hash>::node:<secret>; use the content of <server data dir>/node-token");
    };
    let http = reqwest::Client::builder().use_rustls_tls().danger_accept_invalid_certs(true).build()?;
    let ca = http.get(format!("{server}/cacerts")).send().await.with_context(|| format!("reaching {server}"))?.text().await?;
    let actual = hex::encode(Sha256::digest(ca.as_bytes()));
    if actual != hash {
        bail!("the CA served by {server} does not match the token (expected {hash}, got {actual}); refusing to join");
    }
    Ok(ca)
}

/// `flotilla agent`: a node joining a control plane.
pub async fn agent(server: String, token: String, data_dir: PathBuf, agent_args: AgentArgs) -> Result<()> {
    let ca = trusted_ca(&server, &token).await?;
    let config = agent_config(&agent_args, &data_dir);
    let node = config.node_name.clone();
    let target = agent::join::JoinTarget { server: &server, ca_pem: &ca, join_token: &token };
    let identity = agent::join::identity(&target, &node, &config.identity_dir()).await?;
    let node_client = client::Client::new(&server, Some(&ca), &identity.token)?;
    let _agent = agent::start(config, node_client, &identity).await?;
    eprintln!("flotilla agent for node \"{node}\" joined {server}");
    wait_for_shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        agent: AgentArgs,
    }

    #[derive(Parser)]
    struct ServerFlags {
        #[command(flatten)]
        server: ServerArgs,
    }

    #[test]
    fn scheduling_strategy_and_node_grace_reach_the_controllers() {
        let flags = ServerFlags::try_parse_from(["flotilla", "--scheduling-strategy", "binpack", "--node-grace", "30s"]).expect("valid flags");
        let opts = control_plane_options(&flags.server).unwrap();
        assert_eq!(opts.controllers.scheduler.strategy, scheduler::Strategy::MostAllocated);
        assert_eq!(opts.controllers.lifecycle.grace, Duration::from_secs(30));
        let defaults = control_plane_options(&ServerFlags::try_parse_from(["flotilla"]).expect("no flags").server).unwrap();
        assert_eq!(defaults.controllers.scheduler.strategy, scheduler::Strategy::LeastAllocated);
        assert_eq!(defaults.controllers.lifecycle.grace, Duration::from_secs(10));
        let err = ServerFlags::try_parse_from(["flotilla", "--scheduling-strategy", "random"]).err().expect("refused").to_string();
        assert!(err.contains("--scheduling-strategy") && err.contains("\"random\" is not spread or binpack"), "{err}");
        let flags = ServerFlags::try_parse_from(["flotilla", "--cluster-cidr", "10.50.0.0/16", "--node-cidr-mask-size", "26"]).expect("valid flags");
        let ipam = control_plane_options(&flags.server).unwrap().controllers.node_ipam;
        assert_eq!((ipam.cluster_cidr.to_string(), ipam.node_mask), ("10.50.0.0/16".to_string(), 26));
        let flags = ServerFlags::try_parse_from(["flotilla", "--cluster-cidr", "10.50.0.0/16", "--node-cidr-mask-size", "12"]).expect("parses");
        let err = control_plane_options(&flags.server).err().expect("refused").to_string();
        assert!(err.contains("--node-cidr-mask-size 12"), "{err}");
    }

    #[test]
    fn device_flags_reach_the_agent_config() {
        let flags = Flags::try_parse_from([
            "flotilla",
            "--device-class",
            "camera=/dev/video*",
            "--device-class=serial=/dev/ttyUSB*,/dev/ttyACM*",
            "--no-gpu-discovery",
            "--device-rescan-ms",
            "500",
        ])
        .expect("valid flags");
        let config = agent_config(&flags.agent, std::path::Path::new("/tmp/flotilla-test"));
        let classes: Vec<String> = config.device_classes.iter().map(|c| c.to_string()).collect();
        assert_eq!(classes, ["camera=/dev/video*", "serial=/dev/ttyUSB*,/dev/ttyACM*"]);
        assert!(!config.gpu_discovery);
        assert_eq!(config.device_rescan, Duration::from_millis(500));

        let defaults = agent_config(&Flags::try_parse_from(["flotilla"]).expect("no flags").agent, std::path::Path::new("/tmp/x"));
        assert!(defaults.device_classes.is_empty() && defaults.gpu_discovery);
        assert_eq!(defaults.device_rescan, Duration::from_secs(2));
    }

    #[test]
    fn a_bad_device_class_names_the_value_and_the_reason() {
        let err = Flags::try_parse_from(["flotilla", "--device-class", "Camera=/dev/video*"]).err().expect("refused").to_string();
        assert!(err.contains("Camera=/dev/video*") && err.contains("lower-case"), "{err}");
        let err = Flags::try_parse_from(["flotilla", "--device-class", "camera"]).err().expect("refused").to_string();
        assert!(err.contains("NAME=GLOB"), "{err}");
    }
}
