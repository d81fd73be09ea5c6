//! `flotilla bench unpack`: layer unpacking throughput of the hardened unpacker against GNU
//! `tar -x` on the same layers, in the same run. Each source directory of the host becomes one
//! layer (uncompressed and gzip), and every round unpacks it into a fresh directory with both.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use image::{ImageStore, Limits};

/// Arguments of `bench unpack`.
#[derive(Args, Debug)]
pub struct UnpackBenchArgs {
    /// A host directory to turn into a layer; repeat for several layers. The defaults are one of
    /// many small files (headers) and one of large ones (shared libraries).
    #[arg(long = "source", default_values = ["/usr/include", "/usr/lib/x86_64-linux-gnu"])]
    sources: Vec<PathBuf>,
    /// At most this many MiB of file content per layer (files beyond it are left out).
    #[arg(long, default_value_t = 256)]
    max_mib: u64,
    /// Timed rounds of each unpacker per layer.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Scratch directory (layers and unpacked trees); a temporary one under /var/tmp by default.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Builds an uncompressed layer of `source` (regular files, directories and symlinks, in sorted
/// order, under the source's own path) holding at most `max_bytes` of file content.
fn build_layer(source: &Path, max_bytes: u64) -> Result<(Vec<u8>, u64)> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    let mut content = 0u64;
    let mut stack = vec![source.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let name = dir.strip_prefix("/").unwrap_or(&dir);
        builder.append_path_with_name(&dir, name).with_context(|| format!("adding {}", dir.display()))?;
        let mut children: Vec<_> = fs::read_dir(&dir)?.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        children.sort();
        for child in children.into_iter().rev() {
            let meta = fs::symlink_metadata(&child)?;
            if meta.is_dir() {
                stack.push(child);
            } else if meta.is_symlink() || (meta.is_file() && content + meta.len() <= max_bytes) {
                content += if meta.is_file() { meta.len() } else { 0 };
                let name = child.strip_prefix("/").unwrap_or(&child);
                builder.append_path_with_name(&child, name).with_context(|| format!("adding {}", child.display()))?;
            }
        }
    }
    Ok((builder.into_inner()?, content))
}

/// One way of unpacking a layer into the given directory, timing itself.
type Unpacker<'a> = Box<dyn Fn(&Path) -> Result<Duration> + 'a>;

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Times `f`, which unpacks into `dest`.
fn timed(f: impl FnOnce() -> Result<()>) -> Result<Duration> {
    let started = Instant::now();
    f()?;
    Ok(started.elapsed())
}

fn gnu_tar(args: &[&str], archive: &Path, dest: &Path) -> Result<()> {
    let status = Command::new("tar").args(args).arg(archive).arg("-C").arg(dest).status().context("running GNU tar")?;
    if !status.success() {
        bail!("tar {args:?} {} failed: {status}", archive.display());
    }
    Ok(())
}

/// Flushes dirty pages and pending discards, so that no round pays for the one before it.
fn settle() {
    nix::unistd::sync();
}

/// Runs `bench unpack`.
pub fn run(args: &UnpackBenchArgs) -> Result<()> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let scratch = match &args.dir {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir_in("/var/tmp")?,
    };
    let tar_version = Command::new("tar").arg("--version").output().context("GNU tar is needed as the anchor")?;
    println!("anchor: {}", String::from_utf8_lossy(&tar_version.stdout).lines().next().unwrap_or("tar"));
    println!("median of {} interleaved rounds, sources in the page cache, no fsync by either; MB/s counts file content", args.runs);
    println!("{:<28} {:>9} {:>8}  {:<26} {:>9} {:>7}", "layer", "content", "entries", "unpacker", "time", "MB/s");
    for (i, source) in args.sources.iter().enumerate() {
        let (layer, content) = build_layer(source, args.max_mib << 20)?;
        let layout = scratch.path().join(format!("layout-{i}"));
        image::testing::write_layout(&layout, "1", std::slice::from_ref(&layer), &["sh"]);
        let plain = scratch.path().join(format!("layer-{i}.tar"));
        fs::write(&plain, &layer)?;
        drop(layer);
        let store = ImageStore::open(&scratch.path().join(format!("store-{i}")))?;
        let record = store.import(&layout, Some("bench/unpack:1"))?.remove(0);
        let gz = store.blobs().path(&store.manifest(&record)?.layers[0].digest);
        let limits = Limits::default();
        let ours = |archive: &Path, dest: &Path| timed(|| Ok(image::unpack_layer(fs::File::open(archive)?, dest, &limits).map(drop)?));
        let entries = {
            let probe = scratch.path().join("probe");
            fs::create_dir(&probe)?;
            let stats = image::unpack_layer(fs::File::open(&plain)?, &probe, &limits)?;
            fs::remove_dir_all(&probe)?;
            stats.entries
        };
        // The agent's path: the stored blob's digest and size, and the diff id, verified while
        // unpacking into a new snapshot (the import before it is not timed).
        let store_path = |dest: &Path| {
            let fresh = ImageStore::open(dest)?;
            let record = fresh.import(&layout, Some("bench/unpack:1"))?.remove(0);
            settle();
            timed(|| Ok(fresh.prepare_layers(&record).map(drop)?))
        };
        let unpackers: Vec<(&str, Unpacker)> = vec![
            ("flotilla tar", Box::new(|d: &Path| ours(&plain, d))),
            ("GNU tar -x", Box::new(|d: &Path| timed(|| gnu_tar(&["-xf"], &plain, d)))),
            ("flotilla tar+gzip", Box::new(|d: &Path| ours(&gz, d))),
            ("GNU tar -xz", Box::new(|d: &Path| timed(|| gnu_tar(&["-xzf"], &gz, d)))),
            ("flotilla store (verified)", Box::new(store_path)),
        ];
        // Rounds interleave the unpackers, so that drift in the machine's file-creation cost
        // (it varies several-fold here) falls on all of them alike.
        let mut samples = vec![Vec::with_capacity(args.runs); unpackers.len()];
        for _ in 0..args.runs {
            for ((_, unpack), times) in unpackers.iter().zip(&mut samples) {
                let dest = scratch.path().join("round");
                fs::create_dir(&dest)?;
                settle();
                times.push(unpack(&dest)?);
                fs::remove_dir_all(&dest)?;
            }
        }
        let timings: Vec<(&str, Duration)> = unpackers.iter().zip(&mut samples).map(|((name, _), times)| (*name, median(times))).collect();
        let label = source.display().to_string();
        for (name, time) in timings {
            println!(
                "{label:<28} {:>6.1} MB {entries:>8}  {name:<26} {:>6.0} ms {:>7.0}",
                content as f64 / 1e6,
                time.as_secs_f64() * 1e3,
                content as f64 / 1e6 / time.as_secs_f64()
            );
        }
    }
    Ok(())
}
