//! Wires the control plane together: store, PKI, tokens, API server, controllers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use apiserver::auth::{generate_token, write_secret, Authenticator, ADMIN_GROUP};
use apiserver::handlers::AppState;
use apiserver::imagegate::ImageGate;
use apiserver::join::{NodeIdentities, BOOTSTRAP_GROUP};
use apiserver::server::{Metrics, ServerConfig};
use apiserver::Registry;
use client::Kubeconfig;
use sha2::{Digest, Sha256};
use store::Store;
use tokio::task::JoinSet;
use trust::enforce::EvaluatorConfig;

/// Where the control plane keeps its state and how it listens.
pub struct ControlPlaneOptions {
    /// Data directory.
    pub data_dir: PathBuf,
    /// HTTPS listen address.
    pub listen: SocketAddr,
    /// etcd endpoints; empty means the embedded store.
    pub etcd_endpoints: Vec<String>,
    /// Extra names and addresses for the serving certificate.
    pub tls_sans: Vec<String>,
    /// Controller settings (scheduling strategy, node grace).
    pub controllers: controllers::ControllerOptions,
    /// Registries the image policy gate reaches over plain HTTP besides loopback ones.
    pub insecure_registries: Vec<String>,
    /// Where Services' cluster IPs and node ports come from.
    pub service_ranges: apiserver::ServiceRanges,
}

/// A running control plane.
pub struct ControlPlane {
    /// The URL clients use.
    pub server_url: String,
    /// The admin kubeconfig.
    pub kubeconfig: Kubeconfig,
    /// The token agents join with.
    pub node_token: String,
    /// The cluster CA (PEM) clients verify the API server with.
    pub ca_pem: String,
    /// Background tasks; dropping them stops the control plane.
    pub _tasks: JoinSet<()>,
}

/// The user the shared join token authenticates as; it may only join (`POST /join`).
const JOIN_USER: &str = "system:bootstrap";

/// The admin token and the node join token, created at first start (mode 0600). A file from
/// before per-node identities, where the join token acted as every node, is rewritten so that
/// the same token may now only join.
fn tokens(data_dir: &Path, ca_pem: &str) -> Result<(String, String)> {
    let path = data_dir.join("tokens.csv");
    let (mut admin, mut node) = (None, None);
    if path.exists() {
        let text = std::fs::read_to_string(&path)?;
        for line in text.lines() {
            let fields: Vec<&str> = line.splitn(4, ',').collect();
            match fields.get(1) {
                Some(&"admin") => admin = fields.first().map(|s| s.to_string()),
                Some(&JOIN_USER) | Some(&"system:node") => node = fields.first().map(|s| s.to_string()),
                _ => {}
            }
        }
    }
    let ca_hash = hex::encode(Sha256::digest(ca_pem.as_bytes()));
    let admin = admin.unwrap_or_else(generate_token);
    let node = node.unwrap_or_else(|| format!("K10{ca_hash}::node:{}", generate_token()));
    let text = format!("{admin},admin,admin,\"{ADMIN_GROUP}\"\n{node},{JOIN_USER},bootstrap,\"{BOOTSTRAP_GROUP}\"\n");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        write_secret(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok((admin, node))
}

/// Starts the store, the API server and the controllers.
pub async fn start(opts: ControlPlaneOptions) -> Result<ControlPlane> {
    std::fs::create_dir_all(&opts.data_dir).with_context(|| format!("creating {}", opts.data_dir.display()))?;
    let store: Arc<dyn Store> = if opts.etcd_endpoints.is_empty() {
        let path = opts.data_dir.join("store.redb");
        // Node heartbeats (Leases) live in memory: they are renewed every few seconds, are
        // re-created by their agents after a restart, and would otherwise be most of what an
        // idle cluster writes to its (often SD-card) disk. Events too: they are a diagnostic
        // record kept for an hour (`--event-ttl`), and a crash-looping or probe-failing pod
        // would otherwise write to the disk all day; a restart of `up` forgets them.
        let volatile_prefixes = vec![api::ResourceType::of::<api::Lease>().key_prefix(), api::ResourceType::of::<api::Event>().key_prefix()];
        let options = store::EmbeddedOptions { volatile_prefixes, ..Default::default() };
        Arc::new(store::embedded::EmbeddedStore::open_with(&path, options).with_context(|| format!("opening the store at {}", path.display()))?)
    } else {
        Arc::new(store::etcd::EtcdStore::connect(&opts.etcd_endpoints, "/flotilla").await.context("connecting to etcd")?)
    };
    let registry = Registry::new(store.clone()).with_service_ranges(opts.service_ranges);
    for ns in ["default", "kube-system", "kube-node-lease"] {
        let body = serde_json::json!({"metadata": {"name": ns}});
        match registry.create(api::ResourceType::of::<api::Namespace>(), None, body).await {
            Ok(_) | Err(apiserver::ApiError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e).context("creating system namespaces"),
        }
    }
    let mut sans: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "kubernetes".into(), "kubernetes.default".into()];
    if !opts.listen.ip().is_unspecified() && !sans.contains(&opts.listen.ip().to_string()) {
        sans.push(opts.listen.ip().to_string());
    }
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        sans.push(host.trim().to_string());
    }
    sans.extend(opts.tls_sans.iter().cloned());
    sans.dedup();
    let pki = apiserver::tls::ensure_pki(&opts.data_dir.join("pki"), &sans)?;
    let (admin_token, node_token) = tokens(&opts.data_dir, &pki.ca_pem)?;
    let auth = Arc::new(Authenticator::default());
    auth.load_file(&opts.data_dir.join("tokens.csv"))?;
    let node_pki = Arc::new(apiserver::nodepki::ensure_node_pki(&opts.data_dir.join("pki"))?);
    let agents = Arc::new(apiserver::agents::AgentProxy::new(&node_pki)?);
    let identities = Arc::new(NodeIdentities::new(store, node_pki));
    let metrics = Arc::new(Metrics::default());
    let image_store = image::ImageStore::open(&opts.data_dir.join("images")).context("opening the image store for the image policy gate")?;
    let gate = Arc::new(ImageGate::new(EvaluatorConfig {
        insecure_registries: opts.insecure_registries.clone(),
        image_store: Some(image_store),
        vulndb: Some(crate::cmd::vulndb::default_path(&opts.data_dir)),
        site: "server",
        vulndb_optional: false,
    }));
    let gate_metrics = gate.clone();
    let rescanner = (gate.clone(), registry.clone());
    metrics.add_source(Arc::new(move || gate_metrics.metrics()));
    let function_metrics = Arc::new(controllers::functions::FunctionMetrics::default());
    let rendered = function_metrics.clone();
    metrics.add_source(Arc::new(move || rendered.render()));
    let invocations = function_metrics.clone();
    let state = AppState {
        registry: registry.clone(),
        auth,
        agents,
        metrics,
        ca_pem: Arc::new(pki.ca_pem.clone()),
        image_gate: Some(gate),
        identities: Some(identities),
        function_log: Some(Arc::new(move |function: &str, since: u64| invocations.lines_since(function, since))),
    };
    let tls = apiserver::tls::server_config(&pki.cert_path, &pki.key_path)?;
    let listener = tokio::net::TcpListener::bind(opts.listen).await.with_context(|| format!("listening on {}", opts.listen))?;
    let bound = listener.local_addr()?;
    let host = if bound.ip().is_unspecified() { "127.0.0.1".to_string() } else { bound.ip().to_string() };
    let server_url = format!("https://{host}:{}", bound.port());
    let mut tasks = JoinSet::new();
    tasks.spawn(async move {
        if let Err(e) = apiserver::serve(ServerConfig { listener, tls, state }).await {
            tracing::error!(error = %e, "API server stopped");
        }
    });
    tasks.spawn(async move { rescanner.0.rescan_on_update(rescanner.1).await });
    let controller_options = controllers::ControllerOptions { function_metrics: Some(function_metrics), ..opts.controllers.clone() };
    let mut controllers = controllers::start_all(registry, controller_options).await;
    tasks.spawn(async move { while controllers.join_next().await.is_some() {} });
    let kubeconfig = Kubeconfig::single("flotilla", &server_url, &pki.ca_pem, &admin_token);
    kubeconfig.save(&opts.data_dir.join("kubeconfig")).map_err(anyhow::Error::msg)?;
    write_secret(&opts.data_dir.join("node-token"), &format!("{node_token}\n"))?;
    Ok(ControlPlane { server_url, kubeconfig, node_token, ca_pem: pki.ca_pem.clone(), _tasks: tasks })
}
