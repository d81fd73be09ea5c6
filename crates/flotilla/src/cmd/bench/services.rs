//! `flotilla bench services`: what a connection through a Service's virtual IP costs as the
//! number of Services grows, with Flotilla's socket load balancer and with kube-proxy's
//! iptables layout measured in the same run. A "pod" (a network namespace with a veth) runs a
//! small TCP server; from the host, every connection is to a random one of the `N` Services
//! (each with its own VIP and the pod as its backend), sends a request and reads the reply.
//! The latency is that of the whole connection: connect, request, reply, close.
//!
//! The iptables baseline is kube-proxy's: a `KUBE-SERVICES` chain in the nat table (jumped to
//! from OUTPUT for the host's own connections) with one rule per Service matching its VIP and
//! port, leading to a per-Service chain and a per-endpoint chain that DNATs to the pod.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use net::service::{cgroup2_root, in_netns, netns_cookie, Backends, Balancer, Frontend, L4};

use super::podns::PodNs;

/// Settings of the service benchmark.
#[derive(Args, Debug)]
pub struct ServicesBenchArgs {
    /// Service counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,1000,10000")]
    services: Vec<u32>,
    /// Connections per measurement.
    #[arg(long, default_value_t = 3000)]
    connections: usize,
    /// Runs of every configuration (interleaved); the median of the runs' medians is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Skip the iptables baseline (where iptables is not installed).
    #[arg(long)]
    no_iptables: bool,
}

const NETNS: &str = "fltbench-svc";
const HOST_VETH: &str = "fltbench1h";
const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 125, 0, 1);
const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 125, 0, 2);
const POD_PORT: u16 = 8080;
const SERVICE_PORT: u16 = 80;
const CHAIN: &str = "FLTBENCH-SERVICES";
const REPLY: &[u8] = b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nhello\n";

/// The VIP of Service `i`: 10.240.0.0/12 holds a million.
fn vip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 240, 0, 1)) + i)
}

/// Starts the pod's server: a listener made inside the namespace, answering every connection
/// with a short reply. The client ends each connection with a reset, so no TIME_WAIT state is
/// left on either side: tens of thousands of connections to one backend would otherwise use up
/// the client's ports (and make connect() search for a free one), or meet an old connection's
/// state at the server.
fn serve_in_pod() -> Result<()> {
    let listener = in_netns(&Path::new("/run/netns").join(NETNS), || TcpListener::bind((POD_IP, POD_PORT))).context("starting the pod's server")?;
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 256];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(REPLY);
            // Until the client's reset.
            while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
        }
    });
    Ok(())
}

/// One connection to `addr`: connect, request, read the reply to the end.
fn connection(addr: SocketAddr) -> Result<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut reply = [0u8; REPLY.len()];
    stream.read_exact(&mut reply)?;
    if reply != REPLY {
        bail!("{addr} answered {:?}, not the bench pod's reply", String::from_utf8_lossy(&reply));
    }
    socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
    drop(stream);
    Ok(started.elapsed())
}

/// Latencies of `count` connections, each to a random one of `services` VIPs (or to the pod
/// itself when `services` is 0), sorted.
fn measure(services: u32, count: usize) -> Result<Vec<Duration>> {
    // xorshift: the spread over Services matters, not the quality of the randomness.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ u64::from(std::process::id());
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let addr = match services {
            0 => SocketAddr::from((POD_IP, POD_PORT)),
            n => SocketAddr::from((vip((state % u64::from(n)) as u32), SERVICE_PORT)),
        };
        latencies.push(connection(addr)?);
    }
    latencies.sort();
    Ok(latencies)
}

fn iptables(args: &[&str]) -> Result<()> {
    let out = Command::new("iptables").args(["-w", "-t", "nat"]).args(args).output().context("running iptables (apt-get install iptables)")?;
    if !out.status.success() {
        bail!("iptables -t nat {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// kube-proxy's iptables rules for `services` Services; removed when dropped.
struct IptablesServices;

impl IptablesServices {
    fn install(services: u32) -> Result<IptablesServices> {
        IptablesServices::remove();
        let mut rules = String::from("*nat\n");
        rules.push_str(&format!(":{CHAIN} - [0:0]\n"));
        for i in 0..services {
            rules.push_str(&format!(":FLTB-SVC-{i} - [0:0]\n:FLTB-SEP-{i} - [0:0]\n"));
        }
        for i in 0..services {
            rules.push_str(&format!("-A {CHAIN} -d {}/32 -p tcp -m tcp --dport {SERVICE_PORT} -j FLTB-SVC-{i}\n", vip(i)));
            rules.push_str(&format!("-A FLTB-SVC-{i} -j FLTB-SEP-{i}\n"));
            rules.push_str(&format!("-A FLTB-SEP-{i} -p tcp -m tcp -j DNAT --to-destination {POD_IP}:{POD_PORT}\n"));
        }
        rules.push_str("COMMIT\n");
        let mut restore = Command::new("iptables-restore")
            .args(["-w", "--noflush"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running iptables-restore (apt-get install iptables)")?;
        restore.stdin.take().context("iptables-restore's stdin")?.write_all(rules.as_bytes())?;
        let out = restore.wait_with_output()?;
        if !out.status.success() {
            bail!("iptables-restore: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        iptables(&["-I", "OUTPUT", "-j", CHAIN])?;
        Ok(IptablesServices)
    }

    fn remove() {
        let _ = iptables(&["-D", "OUTPUT", "-j", CHAIN]);
        let Ok(out) = Command::new("iptables-save").args(["-t", "nat"]).output() else { return };
        let chains: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix(':').and_then(|l| l.split(' ').next()).filter(|c| c.starts_with("FLTB-") || *c == CHAIN).map(str::to_string))
            .collect();
        if chains.is_empty() {
            return;
        }
        let mut rules = String::from("*nat\n");
        for chain in &chains {
            rules.push_str(&format!("-F {chain}\n"));
        }
        for chain in &chains {
            rules.push_str(&format!("-X {chain}\n"));
        }
        rules.push_str("COMMIT\n");
        if let Ok(mut restore) = Command::new("iptables-restore").args(["-w", "--noflush"]).stdin(Stdio::piped()).spawn() {
            if let Some(mut stdin) = restore.stdin.take() {
                let _ = stdin.write_all(rules.as_bytes());
            }
            let _ = restore.wait();
        }
    }
}

impl Drop for IptablesServices {
    fn drop(&mut self) {
        IptablesServices::remove();
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Setup {
    Direct,
    Ebpf(u32),
    Iptables(u32),
}

impl Setup {
    fn label(self) -> String {
        match self {
            Setup::Direct => "pod IP, no service".into(),
            Setup::Ebpf(n) => format!("eBPF socket LB, {n} services"),
            Setup::Iptables(n) => format!("iptables (kube-proxy), {n} services"),
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    sorted[index].as_secs_f64() * 1e6
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// Runs the benchmark and prints its figures.
pub fn run(args: &ServicesBenchArgs) -> Result<()> {
    let _ns = PodNs::create(NETNS, HOST_VETH, HOST_IP, POD_IP)?;
    // The VIPs route to the pod's veth (routes go with it): the host picks its veth address as
    // the source, as for a cluster network, and a connection left untranslated stays on this
    // machine instead of leaving by the default route.
    super::podns::ip(&["route", "add", "10.240.0.0/12", "dev", HOST_VETH])?;
    serve_in_pod()?;
    let backend = SocketAddrV4::new(POD_IP, POD_PORT);
    let root = cgroup2_root().context("no cgroup v2 hierarchy is mounted")?;
    let own = netns_cookie(Path::new("/proc/self/ns/net")).context("reading this network namespace's cookie")?;
    let mut setups = vec![Setup::Direct];
    setups.extend(args.services.iter().map(|n| Setup::Ebpf(*n)));
    if !args.no_iptables {
        setups.extend(args.services.iter().map(|n| Setup::Iptables(*n)));
    }
    let mut p50s: Vec<Vec<f64>> = vec![Vec::new(); setups.len()];
    let mut p99s: Vec<Vec<f64>> = vec![Vec::new(); setups.len()];
    for run in 0..args.runs {
        for (i, setup) in setups.iter().enumerate() {
            let (_balancer, _iptables, services) = match *setup {
                Setup::Direct => (None, None, 0),
                Setup::Ebpf(n) => {
                    let mut balancer = Balancer::load(&root)?;
                    balancer.serve_netns(own)?;
                    for s in 0..n {
                        balancer.set(Frontend { addr: vip(s), port: SERVICE_PORT, protocol: L4::Tcp }, &Backends { addrs: vec![backend], affinity: None })?;
                    }
                    (Some(balancer), None, n)
                }
                Setup::Iptables(n) => (None, Some(IptablesServices::install(n)?), n),
            };
            // Warm up (ARP, caches), then measure.
            measure(services, 200)?;
            let latencies = measure(services, args.connections)?;
            let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
            println!("run {}: {:<40} p50 {p50:>7.1} µs  p99 {p99:>7.1} µs", run + 1, setup.label());
            p50s[i].push(p50);
            p99s[i].push(p99);
        }
    }
    println!("median of {} runs, {} connections each (connect + request + reply + close):", args.runs, args.connections);
    for (i, setup) in setups.iter().enumerate() {
        let (p50, p99) = (median(&mut p50s[i]), median(&mut p99s[i]));
        println!("  {:<40} p50 {p50:>7.1} µs  p99 {p99:>7.1} µs", setup.label());
    }
    let growth = |pick: fn(u32) -> Setup| -> Option<f64> {
        let (first, last) = (args.services.first()?, args.services.last()?);
        let at = |n: u32| setups.iter().position(|s| *s == pick(n)).map(|i| median(&mut p50s[i].clone()));
        Some((at(*last)? / at(*first)? - 1.0) * 100.0)
    };
    if let (Some(first), Some(last)) = (args.services.first(), args.services.last()) {
        if let Some(g) = growth(Setup::Ebpf) {
            println!("p50 growth from {first} to {last} services: eBPF {g:+.1}%");
        }
        if let Some(g) = growth(Setup::Iptables) {
            println!("p50 growth from {first} to {last} services: iptables {g:+.1}%");
        }
    }
    Ok(())
}
