//! `flotilla bench functions`: event latency and throughput of a Function on the current
//! cluster, against a nats-server the bench starts. The handler (`scripts/bench/echo-handler.c`,
//! in the image `scripts/function-image.sh` builds) answers each event with the time it
//! received it, so "publish → handler receives" is measured on one clock: warm (a replica
//! ready), cold (from zero replicas, the image present) and events per second through one
//! replica.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use api::ResourceType;
use bytes::Bytes;
use clap::Args;
use events::nats::NatsBroker;
use events::testing::NatsServer;
use events::Broker;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::Context;

/// Settings of the Function benchmark.
#[derive(Args, Debug)]
pub struct FunctionBenchArgs {
    /// The handler image (present on the node; see scripts/function-image.sh).
    #[arg(long, default_value = "localhost/flotilla/fn-echo:1")]
    image: String,
    /// Sequential events timed against a ready replica.
    #[arg(long, default_value_t = 1000)]
    warm: usize,
    /// Events sent for the throughput figure.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Requests in flight during the throughput run.
    #[arg(long, default_value_t = 256)]
    in_flight: usize,
    /// Starts from zero replicas.
    #[arg(long, default_value_t = 20)]
    cold: usize,
    /// Events in flight per replica at most (the Functions' `concurrency`).
    #[arg(long, default_value_t = 512)]
    concurrency: u32,
    /// Run the handler as one epoll thread instead of a thread per connection.
    #[arg(long)]
    epoll_handler: bool,
}

const NAMESPACE: &str = "flotilla-bench-fn";

/// How the bench's Functions run.
struct Shape<'a> {
    url: &'a str,
    image: &'a str,
    concurrency: u32,
    command: Vec<&'a str>,
}

fn function(name: &str, subject: &str, shape: &Shape, min: i32) -> Value {
    pooled(name, subject, shape, min, 0)
}

fn pooled(name: &str, subject: &str, shape: &Shape, min: i32, warm_pool: u32) -> Value {
    let (url, image, concurrency) = (shape.url, shape.image, shape.concurrency);
    json!({
        "apiVersion": "flotilla.dev/v1alpha1", "kind": "Function",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "port": 8080, "concurrency": concurrency, "timeout": "5s", "warmPool": warm_pool,
            "triggers": [{"nats": {"url": url, "subject": subject}}],
            "scaling": {"minReplicas": min, "maxReplicas": 1, "scaleDownDelay": "1s"},
            "template": {"spec": {"terminationGracePeriodSeconds": 0,
                "containers": [{"name": "handler", "image": image, "command": shape.command}]}}
        }
    })
}

fn now_ns() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or(0)
}

/// Publish → handler receives, in microseconds: the handler's receive stamp minus the send time.
async fn timed_request(broker: &NatsBroker, subject: &str, timeout: Duration) -> Result<f64> {
    let sent = now_ns();
    let answer = broker.request(subject, Bytes::from_static(b"{}"), timeout).await?;
    let received: i128 = std::str::from_utf8(&answer)?.trim().parse().with_context(|| format!("the handler answered {answer:?}, not a time"))?;
    Ok((received - sent) as f64 / 1000.0)
}

fn summary(samples: &mut [f64]) -> String {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    format!("n={:<5} p50 {:>9.1} µs   p99 {:>9.1} µs   max {:>9.1} µs", samples.len(), at(0.5), at(0.99), at(1.0))
}

async fn function_pods(ctx: &Context, name: &str) -> Result<Vec<Value>> {
    let selectors = client::Selectors { labels: Some(format!("flotilla.dev/function={name}")), fields: None };
    let (pods, _) = ctx.client.list(ResourceType::of::<api::Pod>(), Some(NAMESPACE), &selectors).await?;
    Ok(pods.into_iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).collect())
}

async fn wait(what: &str, timeout: Duration, mut done: impl AsyncFnMut() -> Result<bool>) -> Result<()> {
    let started = Instant::now();
    while !done().await? {
        if started.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Runs the benchmark and prints its figures.
pub async fn run(ctx: &Context, args: &FunctionBenchArgs) -> Result<()> {
    let nats = tokio::task::spawn_blocking(NatsServer::start).await?;
    let broker = NatsBroker::connect(&nats.url()).await?;
    let functions = api::kinds::lookup_kind(api::function::API_VERSION, "Function").context("the Function kind")?;
    let _ = ctx.client.create(ResourceType::of::<api::Namespace>(), None, &json!({"metadata": {"name": NAMESPACE}})).await;
    let url = nats.url();
    let mut command = vec!["/bin/echo-handler", "8080"];
    if args.epoll_handler {
        command.push("--epoll");
    }
    let shape = Shape { url: &url, image: &args.image, concurrency: args.concurrency, command };
    ctx.client.create(functions, Some(NAMESPACE), &function("warm", "bench.warm", &shape, 1)).await?;
    ctx.client.create(functions, Some(NAMESPACE), &function("cold", "bench.cold", &shape, 0)).await?;
    ctx.client.create(functions, Some(NAMESPACE), &pooled("pool", "bench.pool", &shape, 0, 1)).await?;

    // A ready replica, and a few events to open its connections.
    for _ in 0..20 {
        timed_request(&broker, "bench.warm", Duration::from_secs(60)).await?;
    }
    let mut warm = Vec::with_capacity(args.warm);
    for _ in 0..args.warm {
        warm.push(timed_request(&broker, "bench.warm", Duration::from_secs(5)).await?);
    }
    println!("warm: publish → handler receives              {}", summary(&mut warm));

    let started = Instant::now();
    let results: Vec<Result<f64>> = futures::stream::iter((0..args.events).map(|_| timed_request(&broker, "bench.warm", Duration::from_secs(30))))
        .buffer_unordered(args.in_flight)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let failed = results.iter().filter(|r| r.is_err()).count();
    println!(
        "throughput: {} requests, {} in flight, one replica: {:.0} events/s ({failed} failed)",
        args.events,
        args.in_flight,
        (args.events - failed) as f64 / elapsed.as_secs_f64()
    );

    // The same events published at once, each asking for its answer on one subject: the
    // dispatcher buffers the burst and keeps the replica at its concurrency.
    let mut answers = broker.subscribe("bench.answers", None).await?;
    broker.flush().await?;
    let started = Instant::now();
    for _ in 0..args.events {
        broker.publish_with_reply("bench.warm", "bench.answers", Bytes::from_static(b"{}")).await?;
    }
    broker.flush().await?;
    for n in 0..args.events {
        tokio::time::timeout(Duration::from_secs(30), answers.next()).await.with_context(|| format!("{n} of {} answers", args.events))?;
    }
    println!("throughput: {} events published at once, one replica: {:.0} events/s", args.events, args.events as f64 / started.elapsed().as_secs_f64());
    drop(answers);

    let mut cold = Vec::with_capacity(args.cold);
    for _ in 0..args.cold {
        wait("the cold function to be at zero", Duration::from_secs(60), async || Ok(function_pods(ctx, "cold").await?.is_empty())).await?;
        cold.push(timed_request(&broker, "bench.cold", Duration::from_secs(30)).await?);
    }
    println!("cold (from zero, image present): publish → handler receives {}", summary(&mut cold));

    // From zero with warmPool 1: the event thaws the frozen pool pod instead of starting one.
    let mut thawed = Vec::with_capacity(args.cold);
    for _ in 0..args.cold {
        wait("the pool function at zero with a frozen pod", Duration::from_secs(60), async || {
            let pods = function_pods(ctx, "pool").await?;
            let warm = |p: &&Value| p["metadata"]["labels"][api::function::WARM_LABEL] == "true";
            Ok(pods.len() == 1 && pods.iter().all(|p| warm(&p) && api_ready(p)))
        })
        .await?;
        // The agent freezes the pod right after its container starts; give it that moment.
        tokio::time::sleep(Duration::from_millis(300)).await;
        thawed.push(timed_request(&broker, "bench.pool", Duration::from_secs(30)).await?);
    }
    println!("cold with warmPool 1 (thaw):  publish → handler receives {}", summary(&mut thawed));

    for name in ["warm", "cold", "pool"] {
        let _ = ctx.client.delete(functions, Some(NAMESPACE), name, None).await;
    }
    wait("the benchmark's pods to be gone", Duration::from_secs(60), async || {
        Ok(function_pods(ctx, "warm").await?.is_empty() && function_pods(ctx, "cold").await?.is_empty() && function_pods(ctx, "pool").await?.is_empty())
    })
    .await?;
    Ok(())
}

fn api_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}
