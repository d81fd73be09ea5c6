//! `flotilla bench node-loss`: how fast the fleet heals. It starts `flotilla server` and two
//! real agents (separate data directories, bridges and pod networks) as child processes, runs a
//! Deployment on one node, kills that node's agent with SIGKILL, and times until the replicas
//! are Ready on the other node; then it starts the killed agent again and times until it has
//! stopped the containers of the pods that were replaced. Rounds alternate the lost node.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use api::ResourceType;
use clap::Args;
use client::{Client, Selectors};
use serde_json::{json, Value};

use super::cluster::Server;

/// Settings of the node-loss benchmark.
#[derive(Args, Debug)]
pub struct NodeLossBenchArgs {
    /// An OCI or docker archive of the image the Deployment runs (e.g. from
    /// `scripts/example-image.sh`), imported into both nodes.
    #[arg(long)]
    image_archive: PathBuf,
    /// The image's name in the archive.
    #[arg(long, default_value = "localhost/flotilla/busybox:1.35")]
    image: String,
    /// Replicas of the Deployment.
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// Rounds (each loses one node, then brings it back).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The server's node grace (missed heartbeats before a node is NotReady).
    #[arg(long, default_value = "10s")]
    node_grace: String,
}

const NAMESPACE: &str = "flotilla-bench-nodeloss";

/// One agent child process with its own data directory, bridge and pod network.
struct Agent {
    name: String,
    dir: PathBuf,
    bridge: String,
    args: Vec<String>,
    child: Option<Child>,
}

impl Agent {
    fn new(root: &Path, index: u8, server: &str, token: &str) -> Agent {
        let name = format!("loss-{index}");
        let dir = root.join(&name);
        let bridge = format!("flloss{index}");
        let args = [
            "agent",
            "--server",
            server,
            "--token",
            token,
            "--data-dir",
            dir.to_str().unwrap_or_default(),
            "--node-name",
            &name,
            "--bridge",
            &bridge,
            "--pod-cidr",
            &format!("10.252.{index}.0/24"),
            "--agent-port",
            "0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Agent { name, dir, bridge, args, child: None }
    }

    fn start(&mut self) -> Result<()> {
        let exe = std::env::current_exe()?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("agent.log"))?;
        self.child =
            Some(Command::new(exe).args(&self.args).env("FLOTILLA_LOG", "info").stdout(Stdio::null()).stderr(log).spawn().context("starting flotilla agent")?);
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The last `lines` lines the agent logged.
    fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The runc containers of this node that still run.
    fn running_containers(&self) -> Vec<String> {
        let out = Command::new("runc").arg("--root").arg(self.dir.join("runc")).args(["list", "-f", "json"]).output();
        let list: Vec<Value> = out.ok().and_then(|o| serde_json::from_slice(&o.stdout).ok()).unwrap_or_default();
        list.iter().filter(|c| c["status"] == "running").filter_map(|c| c["id"].as_str().map(str::to_string)).collect()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
        let _ = Command::new("ip").args(["link", "delete", &self.bridge]).stderr(Stdio::null()).status();
    }
}

async fn pods(admin: &Client) -> Result<Vec<Value>> {
    Ok(admin.list(ResourceType::of::<api::Pod>(), Some(NAMESPACE), &Selectors { labels: Some("app=healer".into()), fields: None }).await?.0)
}

fn ready_on(pods: &[Value], node: &str) -> usize {
    pods.iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null() && p["spec"]["nodeName"] == node)
        .filter(|p| p["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")))
        .count()
}

async fn wait(what: &str, timeout: Duration, mut done: impl AsyncFnMut() -> Result<bool>) -> Result<Duration> {
    let started = Instant::now();
    while !done().await? {
        if started.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(started.elapsed())
}

async fn cordon(admin: &Client, node: &str, on: bool) -> Result<()> {
    let nodes = ResourceType::of::<api::Node>();
    for _ in 0..10 {
        let mut object = admin.get(nodes, None, node).await?;
        object["spec"]["unschedulable"] = json!(on);
        match admin.update(nodes, None, node, &object).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    bail!("could not cordon {node}: the Node kept changing")
}

/// Runs the benchmark and prints its figures.
pub async fn run(args: &NodeLossBenchArgs) -> Result<()> {
    let (server, kubeconfig) = Server::start(&["--node-grace", &args.node_grace])?;
    let admin = Client::from_kubeconfig(&kubeconfig)?;
    let (url, _, _) = kubeconfig.current().map_err(anyhow::Error::msg)?;
    let token = std::fs::read_to_string(server.data_dir().join("node-token")).context("reading the join token")?;
    let mut agents = [Agent::new(server.data_dir(), 0, &url, token.trim()), Agent::new(server.data_dir(), 1, &url, token.trim())];
    let exe = std::env::current_exe()?;
    for agent in agents.iter_mut() {
        let imported = Command::new(&exe).args(["image", "import", "--data-dir"]).arg(&agent.dir).arg(&args.image_archive).output()?;
        if !imported.status.success() {
            bail!("importing {} into {}: {}", args.image_archive.display(), agent.name, String::from_utf8_lossy(&imported.stderr));
        }
        agent.start()?;
    }
    let names: Vec<String> = agents.iter().map(|a| a.name.clone()).collect();
    wait("both nodes to be Ready", Duration::from_secs(60), async || {
        let (nodes, _) = admin.list(ResourceType::of::<api::Node>(), None, &Selectors::default()).await?;
        let ready = |n: &&Value| n["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
        Ok(nodes.iter().filter(ready).count() == 2)
    })
    .await?;
    admin.create(ResourceType::of::<api::Namespace>(), None, &json!({"metadata": {"name": NAMESPACE}})).await?;
    // Everything starts on the first node: the second is cordoned until the Deployment runs.
    cordon(&admin, &names[1], true).await?;
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "healer", "namespace": NAMESPACE},
        "spec": {"replicas": args.replicas, "selector": {"matchLabels": {"app": "healer"}},
                 "template": {"metadata": {"labels": {"app": "healer"}},
                              "spec": {"terminationGracePeriodSeconds": 1,
                                       "containers": [{"name": "main", "image": args.image, "command": ["sleep", "3600"]}]}}}
    });
    admin.create(ResourceType::of::<api::Deployment>(), Some(NAMESPACE), &deployment).await?;
    let replicas = args.replicas;
    let first = names[0].clone();
    wait("the replicas to run on the first node", Duration::from_secs(60), async || Ok(ready_on(&pods(&admin).await?, &first) == replicas)).await?;
    cordon(&admin, &names[1], false).await?;

    println!("== node loss: {replicas} replicas, node grace {}, {} rounds", args.node_grace, args.rounds);
    let (mut healed, mut stopped) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let (lost, other) = if round % 2 == 0 { (0, 1) } else { (1, 0) };
        let (lost_name, other_name) = (names[lost].clone(), names[other].clone());
        agents[lost].kill();
        let killed = Instant::now();
        let (mut not_ready, mut evicted) = (None, None);
        let replaced = wait("the replacements to be Ready", Duration::from_secs(120), async || {
            if not_ready.is_none() {
                let node = admin.get(ResourceType::of::<api::Node>(), None, &lost_name).await?;
                let ready = node["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
                not_ready = (!ready).then(|| killed.elapsed());
            }
            let pods = pods(&admin).await?;
            if evicted.is_none() && pods.iter().any(|p| p["spec"]["nodeName"] == lost_name.as_str() && !p["metadata"]["deletionTimestamp"].is_null()) {
                evicted = Some(killed.elapsed());
            }
            Ok(ready_on(&pods, &other_name) == replicas)
        })
        .await?;
        let secs = |d: Option<Duration>| d.map_or("?".to_string(), |d| format!("{:.2}", d.as_secs_f64()));
        agents[lost].start()?;
        let lost_agent = &agents[lost];
        let duplicates_gone =
            wait("the returned node to stop the replaced containers", Duration::from_secs(120), async || Ok(lost_agent.running_containers().is_empty()))
                .await
                .with_context(|| format!("{}'s log ends:\n{}", lost_agent.name, lost_agent.log_tail(30)))?;
        println!(
            "round {}: {lost_name} SIGKILLed; NotReady after {} s, pods evicted after {} s, replicas Ready on {other_name} after {:.2} s; \
             duplicates stopped {:.2} s after the agent returned",
            round + 1,
            secs(not_ready),
            secs(evicted),
            replaced.as_secs_f64(),
            duplicates_gone.as_secs_f64()
        );
        healed.push(replaced);
        stopped.push(duplicates_gone);
        let lost_node = lost_name.clone();
        wait("the returned node to be Ready", Duration::from_secs(60), async || {
            let node = admin.get(ResourceType::of::<api::Node>(), None, &lost_node).await?;
            Ok(node["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")))
        })
        .await?;
    }
    healed.sort();
    stopped.sort();
    let median = |v: &[Duration]| v[v.len() / 2].as_secs_f64();
    println!(
        "replacement Ready after SIGKILL: median {:.2} s, max {:.2} s; duplicates stopped after return: median {:.2} s, max {:.2} s",
        median(&healed),
        healed.last().map_or(0.0, Duration::as_secs_f64),
        median(&stopped),
        stopped.last().map_or(0.0, Duration::as_secs_f64)
    );
    let _ = admin.delete(ResourceType::of::<api::Namespace>(), None, NAMESPACE, None).await;
    wait("the benchmark's pods to be gone", Duration::from_secs(60), async || Ok(agents.iter().all(|a| a.running_containers().is_empty()))).await?;
    Ok(())
}
