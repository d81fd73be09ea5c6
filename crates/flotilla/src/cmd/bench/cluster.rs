//! `flotilla bench cluster`: pods per second end to end through the API and the store. It
//! starts `flotilla server` (embedded store, throwaway data directory) as a child process,
//! registers hollow nodes against it (`agent::hollow`: real API traffic, no containers),
//! creates pods through the API, and times until every pod is bound and reported Running.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use api::ResourceType;
use clap::Args;
use client::{Client, Kubeconfig, Selectors};
use futures::StreamExt;
use serde_json::{json, Value};

use super::{percentiles, read_field};

/// Settings of the end-to-end benchmark.
#[derive(Args, Debug)]
pub struct ClusterBenchArgs {
    /// Hollow nodes.
    #[arg(long, default_value_t = 1000)]
    nodes: u32,
    /// Pods created through the API.
    #[arg(long, default_value_t = 20_000)]
    pods: usize,
    /// Create requests in flight at once.
    #[arg(long, default_value_t = 64)]
    creators: usize,
    /// Lease renewal period of the hollow nodes (the real agent's default is 2 s).
    #[arg(long, default_value = "2s", value_parser = crate::cmd::rollout::parse_duration)]
    heartbeat: Duration,
    /// Give up after this long.
    #[arg(long, default_value = "300s", value_parser = crate::cmd::rollout::parse_duration)]
    timeout: Duration,
}

const NAMESPACE: &str = "flotilla-bench-cluster";

/// The server child process, stopped and its data removed when dropped.
pub(super) struct Server {
    child: Child,
    data: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `flotilla server` with `extra` flags on a free loopback port and a throwaway data
    /// directory; returns once it wrote the admin kubeconfig.
    pub(super) fn start(extra: &[&str]) -> Result<(Server, Kubeconfig)> {
        let data = tempfile::Builder::new().prefix("flotilla-bench-").tempdir().context("creating a data directory")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let exe = std::env::current_exe().context("finding the flotilla binary")?;
        let child = Command::new(exe)
            .arg("server")
            .arg("--data-dir")
            .arg(data.path())
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting flotilla server")?;
        let mut server = Server { child, data };
        let path = server.data.path().join("kubeconfig");
        let started = Instant::now();
        loop {
            if let Ok(kubeconfig) = Kubeconfig::load(&path) {
                return Ok((server, kubeconfig));
            }
            if let Some(status) = server.child.try_wait()? {
                bail!("flotilla server exited at start: {status}");
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("flotilla server wrote no kubeconfig within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(super) fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// CPU seconds (user + system) the server has used.
    fn cpu_seconds(&self) -> Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        // Fields after the command name (which may hold spaces) start at ") ".
        let fields: Vec<&str> = stat.rsplit_once(") ").map(|(_, rest)| rest.split(' ').collect()).unwrap_or_default();
        let ticks: f64 = [11, 12].iter().filter_map(|i| fields.get(*i)?.parse::<f64>().ok()).sum();
        Ok(ticks / clock_ticks())
    }

    fn resident_mb(&self) -> Result<(f64, f64)> {
        let status = format!("/proc/{}/status", self.child.id());
        Ok((read_field(&status, "VmRSS")? as f64 / 1024.0, read_field(&status, "VmHWM")? as f64 / 1024.0))
    }
}

fn clock_ticks() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().map(|t| t as f64).unwrap_or(100.0)
}

fn hollow_node(index: u32, heartbeat: Duration) -> agent::hollow::HollowNode {
    let labels: BTreeMap<String, String> = [
        ("topology.kubernetes.io/region".to_string(), format!("region-{}", index % 3)),
        ("topology.kubernetes.io/zone".to_string(), format!("zone-{}", index % 12)),
    ]
    .into();
    agent::hollow::HollowNode { name: format!("hollow-{index:05}"), index, cpus: 32, memory: "128Gi".into(), max_pods: 110, labels, heartbeat }
}

fn bench_pod(index: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("p-{index:06}"), "namespace": NAMESPACE, "labels": {"app": format!("app-{}", index % 200)}},
        "spec": {"terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "main", "image": "localhost/flotilla/busybox:1.35", "command": ["sleep", "3600"],
                                 "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}
    })
}

/// Waits until `count` nodes are Ready as the API reports them.
async fn wait_nodes_ready(admin: &Client, count: usize, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        let (nodes, _) = admin.list(ResourceType::of::<api::Node>(), None, &Selectors::default()).await?;
        let ready = nodes
            .iter()
            .filter(|n| n["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")))
            .count();
        if ready >= count {
            return Ok(());
        }
        if started.elapsed() > timeout {
            bail!("only {ready} of {count} hollow nodes became Ready within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs the benchmark and prints its figures.
pub async fn run(args: &ClusterBenchArgs) -> Result<()> {
    let (server, kubeconfig) = Server::start(&[])?;
    let admin = Client::from_kubeconfig(&kubeconfig)?;
    let (url, ca, _) = kubeconfig.current().map_err(anyhow::Error::msg)?;
    let node_token = std::fs::read_to_string(server.data_dir().join("node-token")).context("reading the node token")?;
    let nodes_client = Client::new(&url, ca.as_deref(), node_token.trim())?;
    let ca_pem = ca.clone().unwrap_or_default();

    let setup = Instant::now();
    let mut fleet = tokio::task::JoinSet::new();
    for index in 0..args.nodes {
        let node = hollow_node(index, args.heartbeat);
        let (pool, url, ca_pem, join_token) = (nodes_client.clone(), url.clone(), ca_pem.clone(), node_token.trim().to_string());
        fleet.spawn(async move {
            // Each hollow node joins for a token of its own, as a real node does (without a
            // serving certificate: it has no endpoint); all share one connection pool.
            let target = agent::join::JoinTarget { server: &url, ca_pem: &ca_pem, join_token: &join_token };
            let client = match agent::join::join(&target, &node.name, &agent::join::new_secret(), None).await {
                Ok(joined) => pool.with_token(&joined.token),
                Err(e) => return tracing::error!(node = %node.name, error = %e, "hollow node failed to join"),
            };
            if let Err(e) = agent::hollow::run(client, node.clone()).await {
                tracing::error!(node = %node.name, error = %e, "hollow node failed to register");
            }
        });
    }
    wait_nodes_ready(&admin, args.nodes as usize, Duration::from_secs(120)).await?;
    let server_cpu_setup = server.cpu_seconds()?;
    println!("{} hollow nodes Ready in {:.2} s", args.nodes, setup.elapsed().as_secs_f64());

    admin.create(ResourceType::of::<api::Namespace>(), None, &json!({"metadata": {"name": NAMESPACE}})).await?;
    let pods = ResourceType::of::<api::Pod>();
    let (_, revision) = admin.list(pods, Some(NAMESPACE), &Selectors::default()).await?;
    let mut events = admin.watch(pods, Some(NAMESPACE), &Selectors::default(), &revision).await?;

    let started = Instant::now();
    let cpu_before = server.cpu_seconds()?;
    let creator = admin.clone();
    let total = args.pods;
    let creators = args.creators;
    let creating = tokio::spawn(async move {
        let results: Vec<Result<(), client::ClientError>> = futures::stream::iter((0..total).map(|i| {
            let client = creator.clone();
            async move { client.create(pods, Some(NAMESPACE), &bench_pod(i)).await.map(|_| ()) }
        }))
        .buffer_unordered(creators)
        .collect()
        .await;
        (results.into_iter().collect::<Result<Vec<()>, _>>(), started.elapsed())
    });

    let mut bound: HashMap<String, Duration> = HashMap::with_capacity(total);
    let mut running: HashMap<String, Duration> = HashMap::with_capacity(total);
    let mut per_node: HashMap<String, usize> = HashMap::new();
    while running.len() < total {
        let left = args.timeout.saturating_sub(started.elapsed());
        let event = match tokio::time::timeout(left, events.next()).await {
            Ok(Some(event)) => event?,
            Ok(None) => bail!("the pod watch ended after {} of {total} pods were Running", running.len()),
            Err(_) => bail!("after {:?}: {} pods bound, {} Running of {total}", args.timeout, bound.len(), running.len()),
        };
        let name = event.object["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let at = started.elapsed();
        if let Some(node) = event.object["spec"]["nodeName"].as_str() {
            if !bound.contains_key(&name) {
                bound.insert(name.clone(), at);
                *per_node.entry(node.to_string()).or_default() += 1;
            }
        }
        if event.object["status"]["phase"] == "Running" {
            running.entry(name).or_insert(at);
        }
    }
    let all_running = started.elapsed();
    let server_cpu = server.cpu_seconds()? - cpu_before;
    let (created, create_time) = creating.await?;
    created.context("creating pods")?;
    let all_bound = bound.values().max().copied().unwrap_or_default();
    let (rss, peak) = server.resident_mb()?;

    let mut latencies: Vec<Duration> = running.values().copied().collect();
    let most = per_node.values().max().copied().unwrap_or(0);
    let least = if per_node.len() < args.nodes as usize { 0 } else { per_node.values().min().copied().unwrap_or(0) };
    println!("{total} pods, {} hollow nodes, {} creators in flight", args.nodes, args.creators);
    println!("  created  in {:>6.2} s = {:>7.0} pods/s", create_time.as_secs_f64(), total as f64 / create_time.as_secs_f64());
    println!("  bound    in {:>6.2} s = {:>7.0} pods/s", all_bound.as_secs_f64(), total as f64 / all_bound.as_secs_f64());
    println!("  Running  in {:>6.2} s = {:>7.0} pods/s   (end to end)", all_running.as_secs_f64(), total as f64 / all_running.as_secs_f64());
    println!("  time from the start to each pod's Running: {}", percentiles(&mut latencies));
    println!("  pods per node: {least}–{most}");
    println!(
        "  server: {server_cpu:.1} CPU-seconds for the pods ({:.0} µs per pod), {server_cpu_setup:.1} to register the fleet; resident {rss:.0} MB (peak {peak:.0} MB)",
        server_cpu * 1e6 / total as f64
    );
    if most > 110 {
        bail!("a node got {most} pods, more than its 110");
    }
    fleet.abort_all();
    Ok(())
}
