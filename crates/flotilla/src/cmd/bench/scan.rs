//! `flotilla bench scan`: vulnerability scan time for an image of ~500 packages against a
//! database of ~50,000 synthetic OSV advisories, written as files and imported the way a user
//! imports an advisory dump.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use trust::rootfs::Rootfs;
use trust::vulndb::VulnDb;

/// Arguments of `bench scan`.
#[derive(Args, Debug)]
pub struct ScanBenchArgs {
    /// Packages in the image (four fifths Debian, one fifth npm).
    #[arg(long, default_value_t = 500)]
    packages: usize,
    /// Advisories in the database.
    #[arg(long, default_value_t = 50_000)]
    advisories: usize,
    /// Timed repetitions of each phase.
    #[arg(long, default_value_t = 20)]
    runs: usize,
}

/// A deterministic xorshift generator: the same database every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

const ECOSYSTEMS: [(&str, usize); 6] = [("Debian:12", 40), ("npm", 20), ("PyPI", 15), ("crates.io", 10), ("Go", 10), ("Alpine:v3.19", 5)];

fn advisory(id: usize, ecosystem: &str, name: &str, fixed: &str) -> String {
    let severity =
        ["CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", "CVSS:3.1/AV:L/AC:H/PR:L/UI:N/S:U/C:H/I:N/A:N"]
            [id % 3];
    format!(
        r#"{{"schema_version": "1.6.0", "id": "BENCH-{id}", "modified": "2026-11-01T00:00:00Z", "summary": "synthetic advisory {id}", "aliases": ["CVE-2026-{id}"], "severity": [{{"type": "CVSS_V3", "score": "{severity}"}}], "affected": [{{"package": {{"ecosystem": "{ecosystem}", "name": "{name}"}}, "ranges": [{{"type": "ECOSYSTEM", "events": [{{"introduced": "0"}}, {{"fixed": "{fixed}"}}]}}]}}]}}"#
    )
}

/// Writes the advisory files and an image root.
fn generate(args: &ScanBenchArgs, advisories: &Path, root: &Path) -> Result<()> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let debs = args.packages * 4 / 5;
    let npms = args.packages - debs;
    // Advisory names are drawn from fifty times as many names as the image has: each image
    // package has about two advisories filed against it, some fixed in its version, some not.
    let universe = |eco: &str| if eco == "npm" { npms.max(1) * 50 } else { (debs / 2).max(1) * 50 };
    for i in 0..args.advisories {
        let mut pick = rng.below(100);
        let eco = ECOSYSTEMS
            .iter()
            .find(|(_, share)| {
                if pick < *share {
                    true
                } else {
                    pick -= share;
                    false
                }
            })
            .map_or("Debian:12", |(e, _)| e);
        let k = rng.below(universe(eco));
        let (name, fixed) = match eco {
            "Debian:12" => (format!("src{k}"), format!("1.{}.0-1", rng.below(20))),
            "Alpine:v3.19" => (format!("src{k}"), format!("1.{}.0-r1", rng.below(20))),
            "npm" => (format!("npm{k}"), format!("2.{}.0", rng.below(10))),
            _ => (format!("lib{k}"), format!("3.{}.0", rng.below(10))),
        };
        let shard = advisories.join(format!("{:02}", i % 64));
        if i < 64 {
            fs::create_dir_all(&shard)?;
        }
        fs::write(shard.join(format!("BENCH-{i}.json")), advisory(i, eco, &name, &fixed))?;
    }
    fs::create_dir_all(root.join("etc"))?;
    fs::write(root.join("etc/os-release"), "ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n")?;
    let mut status = String::new();
    for i in 0..debs {
        // Two binary packages per source package, as Debian builds them.
        let _ = write!(
            status,
            "Package: pkg{i}\nStatus: install ok installed\nPriority: optional\nSection: libs\nInstalled-Size: 1234\nMaintainer: Debian <debian@example.org>\nArchitecture: amd64\nSource: src{}\nVersion: 1.{}.{}-1+deb12u1\nDepends: libc6 (>= 2.34)\nDescription: synthetic package {i}\n a package for the benchmark\n\n",
            i / 2,
            i % 20,
            i % 7
        );
    }
    fs::create_dir_all(root.join("var/lib/dpkg"))?;
    fs::write(root.join("var/lib/dpkg/status"), status)?;
    let packages: Vec<String> = (0..npms).map(|i| format!(r#""node_modules/npm{i}": {{"version": "2.{}.0"}}"#, i % 10)).collect();
    fs::create_dir_all(root.join("srv/app"))?;
    fs::write(root.join("srv/app/package-lock.json"), format!(r#"{{"lockfileVersion": 3, "packages": {{{}}}}}"#, packages.join(",")))?;
    Ok(())
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Runs `bench scan`.
pub fn run(args: &ScanBenchArgs) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (advisories, root, db_path) = (dir.path().join("advisories"), dir.path().join("rootfs"), dir.path().join("osv.db"));
    let started = Instant::now();
    generate(args, &advisories, &root)?;
    println!("generated {} advisories and a {}-package image in {:.1} s", args.advisories, args.packages, started.elapsed().as_secs_f64());

    let started = Instant::now();
    let report = trust::vulndb::import(&db_path, std::slice::from_ref(&advisories), chrono::Utc::now())?;
    let import = started.elapsed();
    let size = fs::metadata(&db_path)?.len();
    println!(
        "import: {} advisories ({} entries) in {:.2} s, {:.0} advisories/s; database {:.1} MB",
        report.meta.advisories,
        report.meta.entries,
        import.as_secs_f64(),
        report.meta.advisories as f64 / import.as_secs_f64(),
        size as f64 / 1e6
    );

    let rootfs = Rootfs::from_dir(&root);
    let (mut open, mut catalog, mut matching, mut total) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut last = None;
    for _ in 0..args.runs {
        let t0 = Instant::now();
        let db = VulnDb::open(&db_path)?;
        let t1 = Instant::now();
        let sbom = trust::sbom::catalog(&rootfs)?;
        let t2 = Instant::now();
        let found = trust::scan::scan(&sbom, &db)?;
        let t3 = Instant::now();
        open.push(t1 - t0);
        catalog.push(t2 - t1);
        matching.push(t3 - t2);
        total.push(t3 - t0);
        last = Some((sbom.packages.len(), found));
    }
    let (packages, found) = last.expect("at least one run");
    println!("image: {packages} packages; {} findings, {} undecided", found.findings.len(), found.undecided.len());
    println!("phase                          p50        p99   (over {} runs, page cache warm)", args.runs);
    for (name, samples) in [("open database (index only)", &mut open), ("inventory (SBOM)", &mut catalog), ("match", &mut matching), ("scan total", &mut total)]
    {
        println!("{name:<28} {:>10} {:>10}", ms(percentile(samples, 0.5)), ms(percentile(samples, 0.99)));
    }
    Ok(())
}
