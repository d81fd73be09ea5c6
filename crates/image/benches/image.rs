//! Import and unpack timings for the busybox test image:
//! `cargo bench -p image --bench image`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use image::testing::busybox_layout;
use image::ImageStore;

fn import_and_unpack(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let layout = dir.path().join("layout");
    busybox_layout(&layout, "1");
    let mut group = c.benchmark_group("busybox");
    group.sample_size(10).measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));

    group.bench_function("import_oci_layout", |b| {
        b.iter_batched(
            || tempfile::tempdir_in(dir.path()).expect("store dir"),
            |root| {
                let store = ImageStore::open(root.path()).expect("open store");
                store.import(&layout, Some("bench/busybox:1")).expect("import");
                root
            },
            criterion::BatchSize::PerIteration,
        )
    });

    group.bench_function("prepare_layers_unpack", |b| {
        b.iter_batched(
            || {
                let root = tempfile::tempdir_in(dir.path()).expect("store dir");
                let store = ImageStore::open(root.path()).expect("open store");
                let record = store.import(&layout, Some("bench/busybox:1")).expect("import").remove(0);
                (root, store, record)
            },
            |(root, store, record)| {
                store.prepare_layers(&record).expect("unpack");
                root
            },
            criterion::BatchSize::PerIteration,
        )
    });

    group.bench_function("prepare_layers_cached", |b| {
        let root = tempfile::tempdir_in(dir.path()).expect("store dir");
        let store = ImageStore::open(root.path()).expect("open store");
        let record = store.import(&layout, Some("bench/busybox:1")).expect("import").remove(0);
        store.prepare_layers(&record).expect("unpack");
        b.iter(|| store.prepare_layers(&record).expect("cached"))
    });
    group.finish();
}

criterion_group!(benches, import_and_unpack);
criterion_main!(benches);
