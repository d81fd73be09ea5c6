//! `flotilla bench policy`: what the eBPF policy datapath costs. A "pod" (a network namespace
//! with its end of a veth pair) runs an iperf3 server and an HTTP server; from the host side
//! this measures TCP throughput (iperf3) and new connections per second (one request each,
//! so every connection's first packet is judged) with no programs on the veth, with the
//! programs attached and nothing enforced, and with ingress enforced over `--rules` entries
//! (the one that allows the traffic among others for other identities and ports), and the
//! same with the flow log on (a report per judged flow on the ring buffer, read by a thread
//! as the agent reads it). The configurations are interleaved run by run, and the median of
//! the runs is reported. A fifth configuration gives the HTTP port HTTP rules: its connections
//! go through the node's proxy (the L7 redirect on the pod's eth0 and the agent's proxy, which
//! judges each request and passes it on), from a second client address, as the proxy's own
//! connections to the pod come from the node's.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use net::datapath::host_net;
use net::{Datapath, Direction, Protocol, Rule};

use super::podns::PodNs;

/// Settings of the policy benchmark.
#[derive(Args, Debug)]
pub struct PolicyBenchArgs {
    /// Policy entries when enforcing.
    #[arg(long, default_value_t = 10_000)]
    rules: u32,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Runs of every configuration (interleaved); the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

const NETNS: &str = "fltbench-pod";
const HOST_VETH: &str = "fltbench0h";
const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 124, 0, 1);
const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 124, 0, 2);
/// The client's address when the proxy is in the path (the proxy connects from `HOST_IP`).
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 124, 0, 5);
const CLIENT: u32 = 300;
const POD: u32 = 400;
const HTTP_PORT: u16 = 8080;
const IPERF_PORT: u16 = 5201;

/// The namespace and its servers; removed when dropped (the servers first).
struct Pod {
    servers: Vec<Child>,
    www: tempfile::TempDir,
    _ns: PodNs,
}

impl Pod {
    fn create() -> Result<Pod> {
        let ns = PodNs::create(NETNS, HOST_VETH, HOST_IP, POD_IP)?;
        super::podns::ip(&["addr", "add", &format!("{CLIENT_IP}/32"), "dev", HOST_VETH])?;
        super::podns::ip(&["-n", NETNS, "route", "add", &format!("{CLIENT_IP}/32"), "dev", "eth0"])?;
        let mut pod = Pod { servers: Vec::new(), www: tempfile::tempdir()?, _ns: ns };
        std::fs::write(pod.www.path().join("index.html"), "hello\n")?;
        let spawn = |args: &[&str], what: &str| -> Result<Child> {
            Command::new("ip")
                .args(["netns", "exec", NETNS])
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("starting {what}"))
        };
        let www = pod.www.path().to_string_lossy().into_owned();
        pod.servers.push(spawn(&["busybox", "httpd", "-f", "-p", &HTTP_PORT.to_string(), "-h", &www], "busybox httpd (apt-get install busybox-static)")?);
        pod.servers.push(spawn(&["iperf3", "-s", "-p", &IPERF_PORT.to_string()], "iperf3 (apt-get install iperf3)")?);
        let started = Instant::now();
        while request(None).is_err() || TcpStream::connect_timeout(&SocketAddr::from((POD_IP, IPERF_PORT)), Duration::from_millis(200)).is_err() {
            if started.elapsed() > Duration::from_secs(5) {
                bail!("the servers in the bench namespace did not start (is iperf3 installed? apt-get install iperf3)");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(pod)
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        for server in &mut self.servers {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

/// One HTTP/1.0 request on a new connection, from `source` where given.
fn request(source: Option<Ipv4Addr>) -> std::io::Result<()> {
    let to = SocketAddr::from((POD_IP, HTTP_PORT));
    let mut stream = match source {
        None => TcpStream::connect_timeout(&to, Duration::from_secs(1))?,
        Some(source) => {
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            socket.bind(&SocketAddr::from((source, 0)).into())?;
            socket.connect_timeout(&to.into(), Duration::from_secs(1))?;
            socket.into()
        }
    };
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut response = Vec::with_capacity(256);
    stream.read_to_end(&mut response)?;
    if !response.starts_with(b"HTTP/1.") {
        return Err(std::io::Error::other("not an HTTP response"));
    }
    Ok(())
}

/// New connections (one request each, from `source` where given) per second over `seconds`.
fn connection_rate(seconds: u64, source: Option<Ipv4Addr>) -> Result<f64> {
    let started = Instant::now();
    let mut done = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        request(source).context("a request to the bench pod failed")?;
        done += 1;
    }
    Ok(done as f64 / started.elapsed().as_secs_f64())
}

/// iperf3's received throughput in Gbit/s over `seconds`.
fn throughput(seconds: u64) -> Result<f64> {
    let out = Command::new("iperf3")
        .args(["-c", &POD_IP.to_string(), "-p", &IPERF_PORT.to_string(), "-t", &seconds.to_string(), "-J"])
        .output()
        .context("running iperf3 (apt-get install iperf3)")?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).context("iperf3's JSON report")?;
    report["end"]["sum_received"]["bits_per_second"].as_f64().map(|b| b / 1e9).with_context(|| format!("no throughput in iperf3's report: {report}"))
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Setup {
    Bare,
    Attached,
    Enforcing,
    FlowLog,
    Http,
}

impl Setup {
    fn label(self, rules: u32) -> String {
        match self {
            Setup::Bare => "no programs".into(),
            Setup::Attached => "programs, no policy".into(),
            Setup::Enforcing => format!("ingress enforced, {rules} rules"),
            Setup::FlowLog => format!("{rules} rules, flow log on"),
            Setup::Http => format!("{rules} rules, HTTP rules (proxy)"),
        }
    }
}

/// Fills the maps: the two identities, ingress enforced for the pod, the rules that allow the
/// bench's traffic, and `rules - 2` more for other identities and ports.
fn enforce(datapath: &mut Datapath, rules: u32) -> Result<()> {
    datapath.set_identity(host_net(HOST_IP), CLIENT)?;
    datapath.set_identity(host_net(CLIENT_IP), CLIENT)?;
    datapath.set_identity(host_net(POD_IP), POD)?;
    let rule = |local, peer, port| Rule { local, peer: Some(peer), port: Some(port), protocol: Protocol::Tcp, direction: Direction::Ingress };
    datapath.allow(&rule(POD, CLIENT, HTTP_PORT))?;
    datapath.allow(&rule(POD, CLIENT, IPERF_PORT))?;
    for i in 0..rules.saturating_sub(2) {
        datapath.allow(&rule(1000 + i % 500, 5000 + i / 500, 1024 + (i % 50_000) as u16))?;
    }
    datapath.enforce(POD, Direction::Ingress, true)?;
    Ok(())
}

/// A thread reading the flow reports as they come, as the agent's flow log task does.
struct FlowDrain {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl FlowDrain {
    fn start(mut reader: net::flows::FlowReader) -> FlowDrain {
        use std::os::fd::AsRawFd;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut flows = std::collections::VecDeque::with_capacity(agent::flows::DEFAULT_CAPACITY);
            let mut reported = 0u64;
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                let mut fd = libc::pollfd { fd: reader.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                // SAFETY: one valid pollfd, for the reader's open descriptor.
                unsafe { libc::poll(&mut fd, 1, 100) };
                reader.drain(|flow| {
                    if flows.len() == agent::flows::DEFAULT_CAPACITY {
                        flows.pop_front();
                    }
                    flows.push_back(flow);
                    reported += 1;
                });
            }
            reported
        });
        FlowDrain { stop, thread }
    }

    /// Stops the thread; the flows it read.
    fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

/// The node's HTTP proxy serving the pod's HTTP port, with one rule allowing the client's GETs.
/// It runs on a thread and runtime of its own: the bench's client blocks the thread it
/// measures on, and a runtime may be neither run nor dropped from within another.
struct Proxy {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<Result<u64>>,
}

impl Proxy {
    fn start() -> Result<Proxy> {
        let (ready, started) = std::sync::mpsc::channel::<()>();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || -> Result<u64> {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
            runtime.block_on(async move {
                let (observed, mut requests) = tokio::sync::mpsc::unbounded_channel();
                let proxy = std::sync::Arc::new(agent::l7proxy::L7Proxy::new(HOST_IP, observed)?);
                let counting = tokio::spawn(async move {
                    let mut judged = 0u64;
                    while let Some(request) = requests.recv().await {
                        let request: agent::l7proxy::Observed = request;
                        judged += u64::from(request.allowed);
                    }
                    judged
                });
                let mut state = net::policy::State::default();
                state.ipcache.insert(host_net(CLIENT_IP), CLIENT);
                state.ipcache.insert(host_net(POD_IP), POD);
                let rule = api::netpol::flotilla::HttpRule { method: Some("GET".into()), path: Some("/.*".into()), ..Default::default() };
                let mut port = net::policy::HttpPort::default();
                port.peers.insert(Some(CLIENT), net::policy::Access::Rules([rule].into()));
                state.http.insert((POD, HTTP_PORT), port);
                let wanted = [agent::l7proxy::Wanted { uid: "bench".into(), netns: NETNS.into(), ip: POD_IP, port: HTTP_PORT }];
                let failed = proxy.serve(&wanted, agent::l7proxy::Tables::new(&state), &[]).await;
                if let Some((_, why)) = failed.first() {
                    bail!("the HTTP proxy cannot serve the bench pod: {why}");
                }
                let _ = ready.send(());
                let _ = tokio::task::spawn_blocking(move || stopped.recv()).await;
                proxy.retire(&[]).await;
                drop(proxy);
                // The proxy's tasks hold the sender while they run; count what came so far.
                Ok(tokio::time::timeout(Duration::from_millis(200), counting).await.ok().and_then(Result::ok).unwrap_or(0))
            })
        });
        if started.recv().is_err() {
            return Err(thread
                .join()
                .map_err(|_| anyhow::anyhow!("the proxy's thread panicked"))?
                .err()
                .unwrap_or_else(|| anyhow::anyhow!("the proxy did not start")));
        }
        Ok(Proxy { stop, thread })
    }

    /// Stops serving and takes the redirect off the pod (the other configurations run without
    /// it); the requests it judged and let through.
    fn stop(self) -> Result<u64> {
        let _ = self.stop.send(());
        let judged = self.thread.join().map_err(|_| anyhow::anyhow!("the proxy's thread panicked"))??;
        std::thread::spawn(|| -> Result<()> {
            let netns = std::fs::File::open(format!("/run/netns/{NETNS}"))?;
            nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET)?;
            net::redirect::Redirect::detach_here("eth0");
            Ok(())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the thread taking the redirect off panicked"))??;
        Ok(judged)
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// Runs the benchmark and prints its figures.
pub fn run(args: &PolicyBenchArgs) -> Result<()> {
    let _pod = Pod::create()?;
    let setups = [Setup::Bare, Setup::Attached, Setup::Enforcing, Setup::FlowLog, Setup::Http];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); setups.len()];
    let mut gbits: Vec<Vec<f64>> = vec![Vec::new(); setups.len()];
    for run in 0..args.runs {
        for (i, setup) in setups.iter().enumerate() {
            // A fresh load per measurement: no conntrack entries or rules carried over.
            let mut datapath = match setup {
                Setup::Bare => None,
                _ => {
                    let mut datapath = Datapath::load()?;
                    datapath.attach(HOST_VETH)?;
                    if matches!(setup, Setup::Enforcing | Setup::FlowLog | Setup::Http) {
                        enforce(&mut datapath, args.rules)?;
                    }
                    Some(datapath)
                }
            };
            let reader = match (setup, &mut datapath) {
                (Setup::FlowLog, Some(datapath)) => {
                    datapath.set_flow_log(true)?;
                    Some(FlowDrain::start(datapath.take_flows().context("the flow reader")?))
                }
                _ => None,
            };
            let proxy = if *setup == Setup::Http { Some(Proxy::start()?) } else { None };
            let rate = connection_rate(args.seconds, (*setup == Setup::Http).then_some(CLIENT_IP))?;
            let gbit = throughput(args.seconds)?;
            if let Some(proxy) = proxy {
                let judged = proxy.stop()?;
                if judged == 0 {
                    bail!("the HTTP proxy judged no request: it is not on the path");
                }
                println!("       HTTP proxy: {judged} requests judged and passed on");
            }
            if let Some(reader) = reader {
                let reported = reader.stop();
                let lost = datapath.as_ref().map(|d| d.counters()).transpose()?.map(|c| c.flows_lost).unwrap_or(0);
                if reported == 0 {
                    bail!("the flow log was on but no flow was reported");
                }
                println!("       flow log: {reported} flows reported, {lost} lost to a full ring buffer");
            }
            if let Some(datapath) = &datapath {
                let counters = datapath.counters()?;
                if counters.dropped > 0 {
                    bail!("the datapath dropped {} packets of the bench's allowed traffic", counters.dropped);
                }
                if counters.passed == 0 {
                    bail!("the datapath judged no packets: it is not on the path");
                }
            }
            println!("run {}: {:<32} {rate:>8.0} connections/s  {gbit:>6.2} Gbit/s", run + 1, setup.label(args.rules));
            rates[i].push(rate);
            gbits[i].push(gbit);
            if let Some(mut datapath) = datapath {
                datapath.detach(HOST_VETH)?;
            }
        }
    }
    println!("median of {} runs, {} s each:", args.runs, args.seconds);
    let (base_rate, base_gbit) = (median(&mut rates[0].clone()), median(&mut gbits[0].clone()));
    for (i, setup) in setups.iter().enumerate() {
        let (rate, gbit) = (median(&mut rates[i]), median(&mut gbits[i]));
        println!(
            "  {:<32} {rate:>8.0} connections/s ({:+.1}%)  {gbit:>6.2} Gbit/s ({:+.1}%)",
            setup.label(args.rules),
            (rate / base_rate - 1.0) * 100.0,
            (gbit / base_gbit - 1.0) * 100.0
        );
    }
    Ok(())
}
