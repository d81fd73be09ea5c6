//! Store hot paths on both backends: sequential creates and updates (one acknowledged, fsync'd
//! write at a time), 16 concurrent creators, and watch latency with p50/p99 printed.
//!
//! `cargo bench -p store --bench store`; etcd is started with `store::testing::EtcdServer`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::StreamExt;
use store::testing::EtcdServer;
use store::{EmbeddedStore, EtcdStore, Store};
use tokio::runtime::Runtime;

/// Value size of every write: a small pod object.
const VALUE_BYTES: usize = 1024;
const CONCURRENT_WRITERS: u64 = 16;
const LATENCY_SAMPLES: usize = 300;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime")
}

fn value() -> Vec<u8> {
    vec![b'x'; VALUE_BYTES]
}

/// Keys never used before in this process.
fn next_key(prefix: &str) -> String {
    static KEYS: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}/{}", KEYS.fetch_add(1, Ordering::Relaxed))
}

fn writes(c: &mut Criterion, rt: &Runtime, name: &str, store: &dyn Store) {
    let mut group = c.benchmark_group(format!("{name}/writes"));
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    group.bench_function("create", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    store.create(&next_key("/bench/create"), value()).await.expect("create");
                }
                started.elapsed()
            })
        })
    });
    let key = next_key("/bench/update");
    let mut revision = rt.block_on(store.create(&key, value())).expect("create the updated key");
    group.bench_function("update", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    revision = store.update(&key, value(), revision).await.expect("update");
                }
                started.elapsed()
            })
        })
    });
    group.throughput(Throughput::Elements(CONCURRENT_WRITERS));
    group.bench_function(format!("create_{CONCURRENT_WRITERS}_concurrent"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    let creates = (0..CONCURRENT_WRITERS).map(|_| {
                        let key = next_key("/bench/concurrent");
                        async move { store.create(&key, value()).await }
                    });
                    for outcome in futures::future::join_all(creates).await {
                        outcome.expect("concurrent create");
                    }
                }
                started.elapsed()
            })
        })
    });
    group.finish();
}

/// Time from starting a write to a watcher holding its change, and from the write's
/// acknowledgement to the watcher holding it (zero when the change arrived first).
fn watch_latency(rt: &Runtime, name: &str, store: &dyn Store) {
    let (end_to_end, after_ack) = rt.block_on(async {
        let prefix = next_key("/bench/watch");
        let mut watch = store.watch(&format!("{prefix}/"), store.revision().await.expect("revision")).await.expect("watch");
        let mut end_to_end = Vec::with_capacity(LATENCY_SAMPLES);
        let mut after_ack = Vec::with_capacity(LATENCY_SAMPLES);
        for _ in 0..LATENCY_SAMPLES {
            let started = Instant::now();
            let revision = store.create(&next_key(&prefix), value()).await.expect("create");
            let acknowledged = Instant::now();
            let event = watch.next().await.expect("watch open").expect("watch event");
            let arrived = Instant::now();
            assert_eq!(event.revision(), revision);
            end_to_end.push(arrived - started);
            after_ack.push(arrived.saturating_duration_since(acknowledged));
        }
        (end_to_end, after_ack)
    });
    println!(
        "{name}/watch_latency over {LATENCY_SAMPLES} writes: write start -> event p50 {:?} p99 {:?}; ack -> event p50 {:?} p99 {:?}",
        percentile(&end_to_end, 50),
        percentile(&end_to_end, 99),
        percentile(&after_ack, 50),
        percentile(&after_ack, 99),
    );
}

fn percentile(samples: &[Duration], pct: usize) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[(sorted.len() * pct / 100).min(sorted.len() - 1)]
}

fn embedded(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(&dir.path().join("bench.redb")).expect("open embedded store");
    writes(c, &rt, "embedded", &store);
    watch_latency(&rt, "embedded", &store);
    rt.block_on(async move { drop(store) });
}

fn etcd(c: &mut Criterion) {
    let rt = runtime();
    let server = EtcdServer::start();
    let store = rt.block_on(EtcdStore::connect(&server.endpoints(), "/flotilla")).expect("connect to etcd");
    writes(c, &rt, "etcd", &store);
    watch_latency(&rt, "etcd", &store);
}

criterion_group!(benches, embedded, etcd);
criterion_main!(benches);
