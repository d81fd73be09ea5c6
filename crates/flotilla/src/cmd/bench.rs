//! `flotilla bench`: the figures BENCHMARKS.md records. `pod-start` times API create → Ready
//! against a running cluster, sequentially and all at once, with raw `runc run -d` of an
//! equivalent bundle as the floor; `footprint` reads a process's resident memory and disk writes;
//! the other subcommands (scheduler, cluster, functions, node loss, policy, scan, unpack, verify) are in their own modules.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use api::ResourceType;
use clap::{Args, Subcommand};
use futures::StreamExt;
use serde_json::{json, Value};

use crate::Context;

mod cluster;
mod functions;
mod nodeloss;
mod podns;
mod policy;
mod scan;
mod scheduler;
mod services;
mod unpack;
mod verify;

/// `flotilla bench …`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Pod start latency (create → Ready), image present, against the current cluster.
    PodStart(PodStartArgs),
    /// Resident memory and disk writes of a process over an interval.
    Footprint(FootprintArgs),
    /// Scheduler placements per second over a synthetic fleet, in-process.
    Scheduler(scheduler::SchedulerBenchArgs),
    /// Pods per second end to end (API, store, scheduler) over hollow nodes, against a
    /// `flotilla server` it starts.
    Cluster(cluster::ClusterBenchArgs),
    /// Function events: warm and cold publish → handler latency and events/s through one
    /// replica, on the current cluster, against a nats-server it starts.
    Functions(functions::FunctionBenchArgs),
    /// Node loss: time until a SIGKILLed node's Deployment pods are Ready elsewhere, and until
    /// the node, back again, has stopped their duplicates; against a server and two agents it
    /// starts.
    NodeLoss(nodeloss::NodeLossBenchArgs),
    /// The eBPF policy datapath's cost: TCP throughput and new connections per second to a
    /// pod namespace with no programs, with the programs, and enforcing many rules.
    Policy(policy::PolicyBenchArgs),
    /// Connection latency through a Service's virtual IP with 1, 1,000 and 10,000 Services:
    /// the eBPF socket load balancer against kube-proxy's iptables rules, in one run.
    Services(services::ServicesBenchArgs),
    /// Vulnerability scan time: an image of ~500 packages against ~50,000 advisories.
    Scan(scan::ScanBenchArgs),
    /// Layer unpacking throughput against GNU `tar -x`, same layers, same run.
    Unpack(unpack::UnpackBenchArgs),
    /// ImagePolicy signature verification at admission, cached and uncached, against a local
    /// docker-registry it starts.
    Verify(verify::VerifyBenchArgs),
}

#[derive(Args, Debug)]
struct PodStartArgs {
    /// Pods per phase.
    #[arg(long, default_value_t = 100)]
    count: usize,
    /// The image (must be present on the node).
    #[arg(long, default_value = "localhost/flotilla/busybox:1.35")]
    image: String,
    /// The node's data directory, for the raw-runtime floor (its image store and runc).
    #[arg(long, default_value = "/var/lib/flotilla")]
    data_dir: PathBuf,
    /// Leave the concurrent phase's pods running (to measure the footprint with them).
    #[arg(long)]
    keep: bool,
    /// Also time sequential starts of a signed image under a ClusterImagePolicy that requires
    /// its signature, from a local docker-registry this bench starts (the cluster's server and
    /// node must run on this machine): the share of pod start that signature checks take.
    #[arg(long)]
    signed: bool,
}

#[derive(Args, Debug)]
struct FootprintArgs {
    /// The process to observe (e.g. `flotilla up`).
    #[arg(long)]
    pid: u32,
    /// How long to count disk writes.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
}

/// Runs `bench`.
pub async fn run(ctx: impl FnOnce() -> Result<Context>, args: &BenchArgs) -> Result<()> {
    match &args.command {
        BenchCommand::PodStart(a) => pod_start(&ctx()?, a).await,
        BenchCommand::Footprint(a) => footprint(a).await,
        BenchCommand::Scheduler(a) => scheduler::run(a),
        BenchCommand::Cluster(a) => cluster::run(a).await,
        BenchCommand::NodeLoss(a) => nodeloss::run(a).await,
        BenchCommand::Functions(a) => functions::run(&ctx()?, a).await,
        BenchCommand::Policy(a) => policy::run(a),
        BenchCommand::Services(a) => services::run(a),
        BenchCommand::Scan(a) => scan::run(a),
        BenchCommand::Unpack(a) => unpack::run(a),
        BenchCommand::Verify(a) => verify::run(a).await,
    }
}

const NAMESPACE: &str = "flotilla-bench";

fn pods_type() -> &'static ResourceType {
    ResourceType::of::<api::Pod>()
}

fn bench_pod(name: &str, image: &str) -> Value {
    // Images from a registry (the signed phase) are pulled by the first pod; local ones never.
    let pull = if image.starts_with("127.0.0.1:") { "IfNotPresent" } else { "Never" };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"flotilla.dev/bench": "pod-start"}},
        "spec": {"terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "main", "image": image, "command": ["sleep", "3600"], "imagePullPolicy": pull}]}
    })
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// Creates `names` (all at once when `concurrent`, else one after the other, each waiting for
/// the previous to be Ready), pod `i` with image `images[i % images.len()]`, and returns each
/// pod's create → Ready latency, in the order of `names`.
async fn start_pods(ctx: &Context, names: &[String], images: &[&str], concurrent: bool) -> Result<Vec<Duration>> {
    let rt = pods_type();
    let (_, revision) = ctx.client.list(rt, Some(NAMESPACE), &Default::default()).await?;
    let selectors = client::Selectors { labels: Some("flotilla.dev/bench=pod-start".into()), fields: None };
    let mut events = ctx.client.watch(rt, Some(NAMESPACE), &selectors, &revision).await?;
    let pod = |i: usize| bench_pod(&names[i], images[i % images.len()]);
    let mut created: HashMap<String, (usize, Instant)> = HashMap::new();
    let mut latencies = vec![Duration::ZERO; names.len()];
    let mut done = std::collections::HashSet::new();
    if concurrent {
        let started = Instant::now();
        let creates = (0..names.len()).map(|i| {
            let client = ctx.client.clone();
            let pod = pod(i);
            async move { client.create(rt, Some(NAMESPACE), &pod).await }
        });
        for (i, name) in names.iter().enumerate() {
            created.insert(name.clone(), (i, started));
        }
        for result in futures::future::join_all(creates).await {
            result?;
        }
    }
    while done.len() < names.len() {
        if !concurrent && created.len() == done.len() {
            let i = created.len();
            created.insert(names[i].clone(), (i, Instant::now()));
            ctx.client.create(rt, Some(NAMESPACE), &pod(i)).await?;
        }
        let event =
            tokio::time::timeout(Duration::from_secs(120), events.next()).await.context("no pod became Ready within 120 s")?.context("the watch ended")??;
        let name = event.object["metadata"]["name"].as_str().unwrap_or("").to_string();
        if let Some((i, at)) = created.get(&name) {
            if event.type_ != "DELETED" && is_ready(&event.object) && done.insert(name) {
                latencies[*i] = at.elapsed();
            }
        }
    }
    Ok(latencies)
}

async fn delete_pods(ctx: &Context) -> Result<()> {
    let rt = pods_type();
    let selectors = client::Selectors { labels: Some("flotilla.dev/bench=pod-start".into()), fields: None };
    let (pods, _) = ctx.client.list(rt, Some(NAMESPACE), &selectors).await?;
    let deletes = pods.iter().filter_map(|p| p["metadata"]["name"].as_str()).map(|name| ctx.client.delete(rt, Some(NAMESPACE), name, Some(0)));
    for result in futures::future::join_all(deletes).await {
        if let Err(e) = result {
            if !e.is_not_found() {
                return Err(e.into());
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while !ctx.client.list(rt, Some(NAMESPACE), &selectors).await?.0.is_empty() {
        if Instant::now() > deadline {
            bail!("the benchmark's pods were not deleted within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Deletes the benchmark's pods and waits until the node has also stopped their containers
/// (`runc list` in its data dir is empty): a phase that started while the node still tore down
/// the last one's 100 pods would measure that teardown (seconds for some pods).
async fn clear(ctx: &Context, data_dir: &Path) -> Result<()> {
    delete_pods(ctx).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = tokio::process::Command::new("runc").arg("--root").arg(data_dir.join("runc")).args(["list", "-q"]).output().await?;
        if out.status.success() && out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the node still runs containers 120 s after the benchmark's pods were deleted");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `q` quantile (nearest rank) of sorted, non-empty `samples`.
fn quantile(samples: &[Duration], q: f64) -> Duration {
    samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1]
}

/// p50, p99 and max of `samples`, in milliseconds.
fn percentiles(samples: &mut [Duration]) -> String {
    samples.sort();
    let at = |q: f64| quantile(samples, q);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!("n={:<4} p50 {:>7.1} ms   p99 {:>7.1} ms   max {:>7.1} ms", samples.len(), ms(at(0.50)), ms(at(0.99)), ms(at(1.0)))
}

async fn pod_start(ctx: &Context, args: &PodStartArgs) -> Result<()> {
    let namespaces = ResourceType::of::<api::Namespace>();
    if let Err(e) = ctx.client.create(namespaces, None, &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})).await {
        if !e.is_conflict() {
            return Err(e.into());
        }
    }
    clear(ctx, &args.data_dir).await?;
    let mut floor = raw_runtime_floor(&args.data_dir, &args.image, args.count, false).await?;
    println!("floor: raw `runc run -d`, {} sequential               {}", args.count, percentiles(&mut floor));
    let mut floor = raw_runtime_floor(&args.data_dir, &args.image, args.count, true).await?;
    println!("floor: raw `runc run -d`, {} at once                  {}", args.count, percentiles(&mut floor));

    let names: Vec<String> = (0..args.count).map(|i| format!("seq-{i}")).collect();
    let mut sequential = start_pods(ctx, &names, &[&args.image], false).await?;
    println!("pod start, {} sequential (create → Ready)          {}", args.count, percentiles(&mut sequential));
    clear(ctx, &args.data_dir).await?;
    if args.signed {
        signed_pod_start(ctx, args).await?;
    }

    let names: Vec<String> = (0..args.count).map(|i| format!("par-{i}")).collect();
    let started = Instant::now();
    let mut concurrent = start_pods(ctx, &names, &[&args.image], true).await?;
    let all = started.elapsed();
    println!("pod start, {} at once (create → Ready)             {}   all Ready after {:.2} s", args.count, percentiles(&mut concurrent), all.as_secs_f64());
    if !args.keep {
        delete_pods(ctx).await?;
    }
    Ok(())
}

/// Sequential starts alternating between the local image and a signed image from a local
/// registry under a policy that requires its signature (admission resolves and verifies it and
/// pins the pod; the node re-checks before the container starts). Alternating pod by pod puts
/// the machine's drift on both alike. The first signed pod (which also pulls) is reported apart.
async fn signed_pod_start(ctx: &Context, args: &PodStartArgs) -> Result<()> {
    use trust::cosign::PrivateKey;
    let registry = tokio::task::spawn_blocking(image::testing::Registry::start).await?;
    let layout = tempfile::tempdir()?;
    image::testing::busybox_layout(layout.path(), "1");
    let image = registry.push(layout.path(), "1", "bench/busybox", "1");
    let key = PrivateKey::generate();
    verify::sign(&image, &key, trust::signatures::Format::SignatureTag).await?;
    let policies = api::kinds::lookup_kind(api::imagepolicy::API_VERSION, "ClusterImagePolicy").context("ClusterImagePolicy kind")?;
    let policy = json!({
        "apiVersion": api::imagepolicy::API_VERSION, "kind": "ClusterImagePolicy",
        "metadata": {"name": "flotilla-bench-signed"},
        "spec": {"images": ["127.0.0.1:*/bench/**"], "signatures": {"keys": [{"name": "bench", "publicKey": key.public_key().to_pem()}]}},
    });
    ctx.client.create(policies, None, &policy).await?;
    let result = async {
        let mut first = start_pods(ctx, &["signed-first".to_string()], &[&image], false).await?;
        println!("signed image, first pod (pull, uncached verify)     {}", percentiles(&mut first));
        clear(ctx, &args.data_dir).await?;
        // `count` pods in all, so that a node's pod limit (110) is not in the way.
        let names: Vec<String> = (0..args.count.max(2)).map(|i| format!("alt-{i}")).collect();
        let latencies = start_pods(ctx, &names, &[&args.image, &image], false).await?;
        let mut local: Vec<Duration> = latencies.iter().step_by(2).copied().collect();
        let mut signed: Vec<Duration> = latencies.iter().skip(1).step_by(2).copied().collect();
        println!("alternating, local unsigned image                 {}", percentiles(&mut local));
        println!("alternating, signed image under the policy        {}", percentiles(&mut signed));
        let p50 = |samples: &[Duration]| quantile(samples, 0.5).as_secs_f64() * 1000.0;
        let (with, without) = (p50(&signed), p50(&local));
        println!("signature checks' share of pod start (p50): {:.1} of {with:.1} ms = {:.1} %", with - without, (with - without) / with * 100.0);
        clear(ctx, &args.data_dir).await
    }
    .await;
    ctx.client.delete(policies, None, "flotilla-bench-signed", None).await?;
    result
}

/// Times `runc run -d` (create + start, returning once the process runs) of bundles like the
/// agent's: the same image mounted with overlayfs, `sleep 3600`, its own cgroup; one after the
/// other, or all at once (each timed from the common start). The containers are removed
/// afterwards, untimed.
async fn raw_runtime_floor(data_dir: &Path, image_ref: &str, runs: usize, concurrent: bool) -> Result<Vec<Duration>> {
    let images = image::ImageStore::open(&data_dir.join("images")).with_context(|| format!("opening the image store in {}", data_dir.display()))?;
    let record = images.resolve(image_ref)?.with_context(|| format!("image {image_ref} is not in {}; import it first", data_dir.display()))?;
    let lower = images.prepare_layers(&record)?;
    let work = tempfile::Builder::new().prefix("flotilla-bench-").tempdir_in(data_dir)?;
    let root = work.path().join("runc");
    let mut bundles = Vec::with_capacity(runs);
    let prepared: Result<()> = (|| {
        for n in 0..runs {
            let dir = work.path().join(format!("c{n}"));
            let (rootfs, upper, scratch) = (dir.join("rootfs"), dir.join("upper"), dir.join("work"));
            for d in [&rootfs, &upper, &scratch] {
                std::fs::create_dir_all(d)?;
            }
            image::mount_overlay(&lower, &upper, &scratch, &rootfs)?;
            let id = format!("flotilla-bench-{}-{n}", std::process::id());
            bundles.push((id.clone(), dir.clone(), rootfs.clone()));
            let mut spec = agent::runtime::ContainerSpec::new(vec!["sleep".into(), "3600".into()], &rootfs);
            spec.cgroups_path = agent::runtime::container_cgroups_path(&id, "main")?;
            agent::runtime::write_bundle(&dir, &spec)?;
        }
        Ok(())
    })();
    let run = |id: &str, dir: &Path| {
        let root = root.clone();
        let (id, dir) = (id.to_string(), dir.to_path_buf());
        async move {
            let status = tokio::process::Command::new("runc")
                .arg("--root")
                .arg(&root)
                .args(["run", "-d", "--bundle"])
                .arg(&dir)
                .arg(&id)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await?;
            if !status.success() {
                bail!("runc run failed for the floor container {id}");
            }
            Ok(())
        }
    };
    let timed = async {
        prepared?;
        let mut times = Vec::with_capacity(runs);
        if concurrent {
            let started = Instant::now();
            let all = bundles.iter().map(|(id, dir, _)| {
                let run = run(id, dir);
                async move { run.await.map(|()| started.elapsed()) }
            });
            for result in futures::future::join_all(all).await {
                times.push(result?);
            }
        } else {
            for (id, dir, _) in &bundles {
                let started = Instant::now();
                run(id, dir).await?;
                times.push(started.elapsed());
            }
        }
        Ok(times)
    }
    .await;
    for (id, _, rootfs) in &bundles {
        let _ = Command::new("runc").arg("--root").arg(&root).args(["delete", "--force", id]).output();
        let _ = image::unmount(rootfs);
        let _ = agent::runtime::remove_pod_cgroups(id);
    }
    timed
}

fn read_field(path: &str, field: &str) -> Result<u64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim_start_matches(':').trim().trim_end_matches(" kB").trim().parse::<u64>()))
        .with_context(|| format!("{path} has no {field}"))?
        .with_context(|| format!("{path}: {field} is not a number"))
}

async fn footprint(args: &FootprintArgs) -> Result<()> {
    let status = format!("/proc/{}/status", args.pid);
    let io = format!("/proc/{}/io", args.pid);
    let rss_kb = read_field(&status, "VmRSS")?;
    let hwm_kb = read_field(&status, "VmHWM")?;
    println!("pid {}: resident {:.1} MB (peak {:.1} MB)", args.pid, rss_kb as f64 / 1024.0, hwm_kb as f64 / 1024.0);
    let before = read_field(&io, "write_bytes")?;
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let written = read_field(&io, "write_bytes")? - before;
    let per_hour = written as f64 * 3600.0 / args.seconds as f64;
    println!("pid {}: {} bytes written to disk in {} s = {:.2} MB/hour", args.pid, written, args.seconds, per_hour / 1e6);
    Ok(())
}
