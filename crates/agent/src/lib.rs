//! The node agent: registers its Node, runs the pods bound to it through an OCI runtime and a
//! pod network, probes them, keeps their logs, and reports their status through the API.

pub mod config;
pub mod devices;
pub mod dns;
pub mod flows;
pub mod hollow;
pub mod join;
pub mod l7proxy;
pub mod logs;
pub mod netpolicy;
pub mod network;
pub mod node;
mod path_error;
pub mod pods;
pub mod policies;
pub mod probes;
pub mod runtime;
pub mod server;
pub mod services;

use std::net::SocketAddr;
use std::sync::Arc;

use client::Client;

use image::ImageStore;
pub use path_error::PathError;

use config::AgentConfig;
use devices::{DeviceManager, DiscoveryConfig};
use network::{NetworkConfig, PodNetwork};
use runtime::{ContainerRuntime, OciRuntime};

/// What every part of the agent shares.
pub struct AgentContext {
    /// The API client (the node's identity).
    pub client: Client,
    /// Settings.
    pub config: AgentConfig,
    /// The OCI runtime.
    pub runtime: Arc<dyn ContainerRuntime>,
    /// The pod network.
    pub network: Arc<PodNetwork>,
    /// The image store.
    pub images: Arc<ImageStore>,
    /// The node's devices and who holds them.
    pub devices: Arc<DeviceManager>,
    /// The node's cpu, memory and pod slots and the admitted pods holding them.
    pub resources: pods::resources::NodeResources,
    /// Image policy re-checks before containers start.
    pub image_policy: Arc<trust::enforce::Evaluator>,
    /// The image policies those re-checks apply, kept by a watch.
    pub policies: Arc<policies::PolicyCache>,
    /// Network policy enforcement on the pods' veths.
    pub netpolicy: Arc<netpolicy::NetPolicy>,
    /// Service load balancing for this node and its pods.
    pub services: Arc<services::ServiceProxy>,
    /// The node's cluster resolver, at the pod gateway; `None` without the service proxy.
    pub dns: Option<Arc<dns::ClusterDns>>,
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The OCI runtime is unusable.
    #[error("OCI runtime: {0}; install runc (apt-get install runc) or choose another with --runtime")]
    Runtime(#[from] runtime::RuntimeError),
    /// The pod network could not be set up.
    #[error("pod network: {0}")]
    Network(#[from] network::NetworkError),
    /// The image store could not be opened.
    #[error("image store: {0}")]
    Image(#[from] image::ImageError),
    /// Device configuration or the device allocation file is unusable.
    #[error("devices: {0}")]
    Devices(#[from] devices::DeviceError),
    /// The API server refused or could not be reached.
    #[error("registering the node: {0}")]
    Api(#[from] client::ClientError),
    /// Anything else at start-up.
    #[error("{0}")]
    Setup(String),
}

fn parse_pod_cidr(text: &str) -> Result<ipnet::Ipv4Net, AgentError> {
    text.parse().map_err(|e| AgentError::Setup(format!("pod CIDR \"{text}\": {e}")))
}

/// Starts the agent with the node's identity (`client` authenticates with its token); returns
/// once it is registered, with its running tasks.
pub async fn start(config: AgentConfig, client: Client, identity: &join::NodeIdentity) -> Result<tokio::task::JoinSet<()>, AgentError> {
    runtime::become_subreaper().map_err(|e| AgentError::Setup(format!("becoming a child subreaper: {e}")))?;
    std::fs::create_dir_all(&config.data_dir).map_err(|e| AgentError::Setup(format!("{}: {e}", config.data_dir.display())))?;
    let runtime = OciRuntime::new(&config.runtime, config.runtime_root())?;
    if !config.pod_cidr.is_empty() {
        parse_pod_cidr(&config.pod_cidr)?;
    }
    let images = ImageStore::open(&config.images_dir())?;
    let discovery =
        DiscoveryConfig { dev_root: config.dev_root.clone(), classes: config.device_classes.clone(), nvidia: config.gpu_discovery, nvidia_smi: None };
    let devices_dir = config.devices_dir();
    let devices = tokio::task::spawn_blocking(move || DeviceManager::open(&devices_dir, discovery))
        .await
        .map_err(|e| AgentError::Setup(format!("scanning devices: {e}")))??;
    let flows = flows::FlowLog::new(if config.network_policy { config.flow_log } else { 0 });
    let (bound, server) =
        server::start(SocketAddr::new(config.node_ip, config.port), identity, config.logs_dir(), flows.clone()).await.map_err(AgentError::Setup)?;
    node::register(&client, node::describe(&config, bound.port(), &devices.node_devices())).await?;
    let mut net_config = NetworkConfig::new(config.ipam_dir());
    net_config.bridge = config.bridge.clone();
    let pod_cidr = parse_pod_cidr(&node::pod_network(&client, &config).await?)?;
    net_config.cidr = pod_cidr;
    let network = PodNetwork::new(net_config)?;
    network.ensure_bridge().await?;
    let overlay = network::overlay::Overlay::new(config.overlay, &config.bridge, config.node_ip, pod_cidr)?;
    let netpolicy = Arc::new(match config.network_policy {
        true => netpolicy::NetPolicy::new(&config.node_name, network.gateway(), flows).map_err(|e| {
            AgentError::Setup(format!(
                "network policy: {e}; this kernel cannot run the eBPF datapath (start the agent with --network-policy off to run without enforcement)"
            ))
        })?,
        false => netpolicy::NetPolicy::disabled(),
    });
    let services = match (config.service_proxy, config.node_ip) {
        (true, std::net::IpAddr::V4(node_ip)) => services::ServiceProxy::new(node_ip).map_err(|e| {
            AgentError::Setup(format!(
                "service load balancer: {e}; this kernel cannot run the eBPF socket programs (start the agent with --service-proxy off to run without Services)"
            ))
        })?,
        (true, std::net::IpAddr::V6(_)) => return Err(AgentError::Setup("service load balancer: IPv6 node addresses are not supported yet".into())),
        (false, _) => services::ServiceProxy::disabled(),
    };
    let (dns, dns_socket) = if config.service_proxy {
        let upstream = config.upstream_dns.or_else(|| dns::upstream_of(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()));
        let resolver = Arc::new(dns::ClusterDns::new(&config.cluster_domain, upstream).with_learner(netpolicy.clone()));
        match tokio::net::UdpSocket::bind((network.gateway(), 53)).await {
            Ok(socket) => (Some(resolver), Some(socket)),
            Err(e) => {
                tracing::warn!(error = %e, gateway = %network.gateway(), "the cluster resolver cannot listen on the pod gateway; pods get the node's resolv.conf");
                (None, None)
            }
        }
    } else {
        (None, None)
    };
    let services = services.with_dns(dns.clone());
    let image_policy = Arc::new(trust::enforce::Evaluator::new(trust::enforce::EvaluatorConfig {
        insecure_registries: config.insecure_registries.clone(),
        image_store: Some(images.clone()),
        vulndb: Some(config.data_dir.join("vulndb").join("osv.db")),
        site: "node",
        vulndb_optional: true,
    }));
    let ctx = Arc::new(AgentContext {
        client,
        config,
        runtime: Arc::new(runtime),
        network: Arc::new(network),
        images: Arc::new(images),
        devices: Arc::new(devices),
        resources: {
            let (cpus, memory) = node::machine_capacity();
            pods::resources::NodeResources::for_machine(cpus, memory, node::MAX_PODS)
        },
        image_policy,
        policies: Arc::default(),
        netpolicy,
        services: Arc::new(services),
        dns: dns.clone(),
    });
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(ctx.policies.clone().run(ctx.client.clone()));
    tasks.spawn(ctx.netpolicy.clone().run(ctx.client.clone()));
    tasks.spawn(ctx.services.clone().run(ctx.client.clone()));
    if let (Some(dns), Some(socket)) = (dns, dns_socket) {
        tasks.spawn(dns.serve(socket));
    }
    if let Some(overlay) = overlay {
        tasks.spawn(network::overlay::run(ctx.client.clone(), ctx.config.node_name.clone(), overlay));
    }
    tasks.spawn(async move {
        let _ = server.await;
    });
    let heartbeat = ctx.clone();
    tasks.spawn(async move {
        let mut lease = node::Heartbeat::default();
        loop {
            if let Err(e) = lease.renew(&heartbeat.client, &heartbeat.config.node_name).await {
                tracing::warn!(error = %e, "renewing the node lease");
            }
            tokio::time::sleep(heartbeat.config.heartbeat).await;
        }
    });
    let rotation = ctx.clone();
    tasks.spawn(async move {
        loop {
            logs::rotate_all(&rotation.config.logs_dir(), rotation.config.log_max_bytes);
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        }
    });
    tasks.spawn(devices::run(ctx.clone()));
    tasks.spawn(pods::run(ctx));
    Ok(tasks)
}
