//! A real one-node cluster for end-to-end tests: the built `flotilla` binary, run as a user runs
//! it, with its own data directory, API port, bridge and pod CIDR, and a check that nothing it
//! created is left on the host.

#![allow(dead_code)]

pub mod probes;
pub mod world;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// The binary under test.
pub const FLOTILLA: &str = env!("CARGO_BIN_EXE_flotilla");

/// The example image every test workload uses.
pub const IMAGE: &str = "localhost/flotilla/busybox:1.35";

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Clusters run one at a time: the timing assertions (back-off, rolling updates) need the two
/// cores, and the host checks look at host-wide state.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The example image as an OCI archive, built once per test binary by the same script the
/// README's quickstart uses.
pub fn example_image() -> &'static Path {
    static IMAGE_TAR: OnceLock<(TempDir, PathBuf)> = OnceLock::new();
    built(&IMAGE_TAR, "scripts/example-image.sh", "busybox.tar", "apt-get install busybox-static?")
}

/// The handler image of the Function tests and bench (`localhost/flotilla/fn-echo:1`, the
/// example image plus scripts/bench/echo-handler.c), built once per test binary.
pub fn function_image() -> &'static Path {
    static IMAGE_TAR: OnceLock<(TempDir, PathBuf)> = OnceLock::new();
    built(&IMAGE_TAR, "scripts/function-image.sh", "fn-echo.tar", "apt-get install build-essential?")
}

/// The archive `script` writes to `file`, made once into `cell`.
fn built<'a>(cell: &'a OnceLock<(TempDir, PathBuf)>, script: &str, file: &str, hint: &str) -> &'a Path {
    &cell
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let tar = dir.path().join(file);
            let out = Command::new(repo_root().join(script)).arg(&tar).output().unwrap();
            assert!(out.status.success(), "{script} failed ({hint}): {}", String::from_utf8_lossy(&out.stderr));
            (dir, tar)
        })
        .1
}

/// The handler image's name.
pub const FUNCTION_IMAGE: &str = "localhost/flotilla/fn-echo:1";

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `check` every 50 ms until it returns `Some`, panicking with `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How a cluster's processes are run.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One `flotilla up` process.
    Up,
    /// `flotilla server` and `flotilla agent` as two processes.
    Split,
}

/// A one-node cluster on this host.
pub struct Cluster {
    /// The data directory (store, PKI, images, containers, logs).
    pub data: TempDir,
    /// Where the user's `~/.flotilla` goes.
    pub home: TempDir,
    /// The API server's port.
    pub port: u16,
    /// The node bridge.
    pub bridge: String,
    /// The pod CIDR.
    pub pod_cidr: String,
    /// The node name.
    pub node: String,
    /// First restart back-off in milliseconds.
    pub backoff_ms: u64,
    mode: Mode,
    /// Extra flags of `up` or `server` (e.g. `--etcd-endpoints`).
    server_flags: Vec<String>,
    /// Extra flags of the agent (`up`, or `agent` of a split cluster).
    agent_extra: Vec<String>,
    server: Option<Child>,
    agent: Option<Child>,
    /// Every pod uid seen, for the host checks.
    pub pod_uids: BTreeSet<String>,
    _serial: MutexGuard<'static, ()>,
}

impl Cluster {
    /// Starts `flotilla up` with the example image imported, and waits for the node to be Ready.
    pub fn up(name: &str) -> Cluster {
        Cluster::start(name, Mode::Up)
    }

    /// Starts a cluster in `mode`.
    pub fn start(name: &str, mode: Mode) -> Cluster {
        Cluster::start_with(name, mode, &[])
    }

    /// Starts a cluster in `mode` whose `up` or `server` also gets `server_flags`.
    pub fn start_with(name: &str, mode: Mode, server_flags: &[&str]) -> Cluster {
        Cluster::start_with_images(name, mode, server_flags, &[])
    }

    /// Starts `flotilla up` with the example image and `images` (OCI archives) imported.
    pub fn up_with_images(name: &str, images: &[&Path]) -> Cluster {
        Cluster::start_with_images(name, Mode::Up, &[], images)
    }

    /// Starts a split cluster whose agent also gets `agent_flags` (e.g. `--device-class`).
    pub fn split_with_agent_flags(name: &str, agent_flags: &[&str]) -> Cluster {
        Cluster::build(name, Mode::Split, &[], agent_flags, &[])
    }

    fn start_with_images(name: &str, mode: Mode, server_flags: &[&str], images: &[&Path]) -> Cluster {
        Cluster::build(name, mode, server_flags, &[], images)
    }

    fn build(name: &str, mode: Mode, server_flags: &[&str], agent_flags: &[&str], images: &[&Path]) -> Cluster {
        let serial = serial();
        // A per-test bridge and CIDR derived from the name keep leftovers of one test from
        // disturbing another.
        let slot = name.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32)) % 200;
        let mut cluster = Cluster {
            data: tempfile::Builder::new().prefix("flotilla-e2e-").tempdir().unwrap(),
            home: tempfile::tempdir().unwrap(),
            port: free_port(),
            bridge: format!("fte2e{slot}"),
            pod_cidr: format!("10.{}.{}.0/24", 100 + slot / 100, slot % 100 + 1),
            node: format!("e2e-{name}"),
            backoff_ms: 300,
            mode,
            server_flags: server_flags.iter().map(|f| f.to_string()).collect(),
            agent_extra: agent_flags.iter().map(|f| f.to_string()).collect(),
            server: None,
            agent: None,
            pod_uids: BTreeSet::new(),
            _serial: serial,
        };
        let agent_dir = cluster.agent_dir();
        let out = cluster.run_ok(&["image", "import", "--data-dir", agent_dir.to_str().unwrap(), example_image().to_str().unwrap()]);
        assert!(out.contains(IMAGE), "image import did not name the image: {out}");
        for image in images {
            cluster.run_ok(&["image", "import", "--data-dir", agent_dir.to_str().unwrap(), image.to_str().unwrap()]);
        }
        cluster.start_processes();
        cluster
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// The kubeconfig `up` wrote.
    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir().join("kubeconfig")
    }

    fn agent_flags(&self) -> Vec<String> {
        ["--node-name", &self.node, "--agent-port", "0", "--bridge", &self.bridge, "--pod-cidr", &self.pod_cidr, "--backoff-ms", &self.backoff_ms.to_string()]
            .iter()
            .map(|s| s.to_string())
            .chain(self.agent_extra.iter().cloned())
            .collect()
    }

    fn spawn(&self, args: &[String], log: &str) -> Child {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.data_dir().join(log)).unwrap();
        Command::new(FLOTILLA).args(args).env("HOME", self.home.path()).env("FLOTILLA_LOG", "info").stdout(Stdio::null()).stderr(log).spawn().unwrap()
    }

    /// Starts the cluster's processes (again) and waits for the node to be Ready.
    pub fn start_processes(&mut self) {
        let data = self.data_dir().to_str().unwrap().to_string();
        let listen = format!("127.0.0.1:{}", self.port);
        match self.mode {
            Mode::Up => {
                let mut args: Vec<String> = ["up", "--data-dir", &data, "--listen", &listen].iter().map(|s| s.to_string()).collect();
                args.extend(self.agent_flags());
                args.extend(self.server_flags.iter().cloned());
                self.server = Some(self.spawn(&args, "up.log"));
            }
            Mode::Split => {
                if self.server.is_none() {
                    // Agents in network namespaces of their own (`ExtraAgent`) reach the
                    // server through the hub bridge's address.
                    let listen = format!("0.0.0.0:{}", self.port);
                    let mut args: Vec<String> =
                        ["server", "--data-dir", &data, "--listen", &listen, "--tls-san", HUB_ADDRESS].iter().map(|s| s.to_string()).collect();
                    args.extend(self.server_flags.iter().cloned());
                    self.server = Some(self.spawn(&args, "server.log"));
                }
                let token_file = self.data_dir().join("node-token");
                wait_for(Duration::from_secs(30), "the server's node token", || token_file.exists().then_some(()));
                self.start_agent();
            }
        }
        wait_for(Duration::from_secs(60), "the node to be Ready", || {
            self.check_processes();
            let out = self.try_run(&["get", "nodes", "-o", "json"]).ok()?;
            let nodes: Value = serde_json::from_str(&out).ok()?;
            nodes["items"].as_array()?.iter().any(|n| n["metadata"]["name"] == self.node.as_str() && node_ready(n)).then_some(())
        });
    }

    /// Starts the agent process of a split cluster.
    pub fn start_agent(&mut self) {
        assert!(self.mode == Mode::Split);
        let token = std::fs::read_to_string(self.data_dir().join("node-token")).unwrap();
        let agent_data = self.data_dir().join("agent").to_str().unwrap().to_string();
        let mut args: Vec<String> = ["agent", "--server", &format!("https://127.0.0.1:{}", self.port), "--token", token.trim(), "--data-dir", &agent_data]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(self.agent_flags());
        self.agent = Some(self.spawn(&args, "agent.log"));
    }

    /// Where the agent keeps its state.
    pub fn agent_dir(&self) -> PathBuf {
        match self.mode {
            Mode::Up => self.data_dir().to_path_buf(),
            Mode::Split => self.data_dir().join("agent"),
        }
    }

    fn check_processes(&mut self) {
        let exited = [self.server.as_mut(), self.agent.as_mut()].into_iter().flatten().find_map(|c| c.try_wait().ok().flatten());
        if let Some(status) = exited {
            panic!("a flotilla process exited with {status}; its log (in {}):\n{}", self.data.path().display(), self.logs());
        }
    }

    /// The processes' logs, for failure messages, with how any of them that has ended ended.
    pub fn logs(&self) -> String {
        let mut logs = ["up.log", "server.log", "agent.log"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(self.data_dir().join(f)).ok())
            .map(|s| s.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n"))
            .collect::<Vec<_>>()
            .join("\n---\n");
        for child in [self.server.as_ref(), self.agent.as_ref()].into_iter().flatten() {
            if let Some(ended) = ended(child.id()) {
                logs.push_str(&format!("\n--- flotilla process {} {ended}", child.id()));
            }
        }
        logs
    }

    /// Kills the agent (split) or `up` process with SIGKILL.
    pub fn kill_agent(&mut self) {
        let child = match self.mode {
            Mode::Up => self.server.take(),
            Mode::Split => self.agent.take(),
        };
        if let Some(mut c) = child {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Kills every process of the cluster with SIGKILL.
    pub fn kill_all(&mut self) {
        for child in [self.agent.take(), self.server.take()].into_iter().flatten() {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs the CLI with this cluster's kubeconfig.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(FLOTILLA);
        command.env("HOME", self.home.path()).env("FLOTILLA_KUBECONFIG", self.kubeconfig()).args(args);
        command
    }

    /// Runs the CLI and returns its output, whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs the CLI and returns stdout, or stderr as the error.
    pub fn try_run(&self, args: &[&str]) -> Result<String, String> {
        let out = self.run(args);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
        }
    }

    /// Runs the CLI, asserting success; returns stdout.
    pub fn run_ok(&self, args: &[&str]) -> String {
        self.try_run(args).unwrap_or_else(|e| panic!("flotilla {} failed: {e}\n{}", args.join(" "), self.logs()))
    }

    /// Applies a manifest given as text.
    pub fn apply(&self, manifest: &str) -> String {
        let (ok, stdout, stderr) = self.try_apply(manifest);
        assert!(ok, "apply failed: {stderr}");
        stdout
    }

    /// Applies a manifest given as text; returns success, stdout and stderr.
    pub fn try_apply(&self, manifest: &str) -> (bool, String, String) {
        let mut child = self.command(&["apply", "-f", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(manifest.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// The API server's `/metrics` text, fetched with the admin token.
    pub fn metrics(&self) -> String {
        let tokens = std::fs::read_to_string(self.data_dir().join("tokens.csv")).unwrap();
        let admin = tokens.split(',').next().unwrap();
        let out = Command::new("curl")
            .args(["-sfk", "-H", &format!("Authorization: Bearer {admin}"), &format!("https://127.0.0.1:{}/metrics", self.port)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The pods (all namespaces), as JSON objects; remembers their uids for the host checks.
    pub fn pods(&mut self, selector: Option<&str>) -> Vec<Value> {
        let mut args = vec!["get", "pods", "-A", "-o", "json"];
        if let Some(s) = selector {
            args.extend(["-l", s]);
        }
        let list: Value = serde_json::from_str(&self.run_ok(&args)).unwrap();
        let pods = list["items"].as_array().cloned().unwrap_or_default();
        for pod in &pods {
            if let Some(uid) = pod["metadata"]["uid"].as_str() {
                self.pod_uids.insert(uid.to_string());
            }
        }
        pods
    }

    /// One object as JSON.
    pub fn get(&self, kind: &str, name: &str) -> Value {
        serde_json::from_str(&self.run_ok(&["get", kind, name, "-o", "json"])).unwrap()
    }

    /// Waits until `count` pods matching `selector` are Running and Ready (and no others exist).
    pub fn wait_ready(&mut self, selector: &str, count: usize, timeout: Duration) -> Vec<Value> {
        let what = format!("{count} ready pods with {selector}");
        let deadline = Instant::now() + timeout;
        loop {
            let pods = self.pods(Some(selector));
            let ready = pods.iter().filter(|p| pod_ready(p) && p["metadata"]["deletionTimestamp"].is_null()).count();
            if ready == count && pods.len() == count {
                return pods;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; pods: {}\n{}", summary(&pods), self.logs());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The runc container ids running on the node, with their pids.
    pub fn containers(&self) -> Vec<(String, i64, String)> {
        containers_in(&self.agent_dir())
    }

    /// Everything this cluster's pods could have left on the host; empty when clean.
    pub fn leftovers(&self) -> Vec<String> {
        leftovers_of(&self.agent_dir(), &self.pod_uids, None)
    }

    /// Asserts, within a few seconds, that the host holds nothing of this cluster's pods.
    pub fn assert_host_clean(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = self.leftovers();
            if left.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "left behind on the host:\n{}\n{}", left.join("\n"), self.logs());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Deletes every workload object and waits until the host holds nothing of them.
    pub fn delete_everything(&mut self) {
        self.pods(None);
        for kind in ["deployments", "pods"] {
            let list: Value = serde_json::from_str(&self.run_ok(&["get", kind, "-A", "-o", "json"])).unwrap();
            for item in list["items"].as_array().cloned().unwrap_or_default() {
                let ns = item["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
                let name = item["metadata"]["name"].as_str().unwrap().to_string();
                let _ = self.try_run(&["delete", kind, &name, "-n", &ns, "--wait=false"]);
            }
        }
        wait_for(Duration::from_secs(60), "all pods to be gone", || self.pods(None).is_empty().then_some(()));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Clean up even after a failed assertion, so that one failing test leaves nothing
        // behind for the next; the asserting cleanup checks belong to the tests themselves.
        self.force_cleanup();
    }
}

impl Cluster {
    fn force_cleanup(&mut self) {
        self.kill_all();
        force_clean(&self.agent_dir(), &self.bridge, &mut self.pod_uids, None);
    }
}

/// One more node for a split cluster: an agent in a network namespace of its own (reaching
/// the server over a veth on the hub bridge), with its own data directory, node name, bridge
/// and pod CIDR.
pub struct ExtraAgent {
    /// Its data directory.
    pub data: TempDir,
    /// Its node name.
    pub node: String,
    /// Its node bridge (inside its network namespace).
    pub bridge: String,
    /// Its `--pod-cidr`; `None` lets the control plane assign one.
    pod_cidr: Option<String>,
    /// More agent flags.
    flags: Vec<String>,
    /// Its network namespace (`/run/netns/<netns>`).
    pub netns: String,
    /// Its address on the hub bridge.
    address: String,
    child: Option<Child>,
    /// Every pod uid it ran, for the host checks.
    pub pod_uids: BTreeSet<String>,
}

/// The host's address on the bridge joining the agents' network namespaces.
pub const HUB_ADDRESS: &str = "10.98.0.1";
const HUB_BRIDGE: &str = "fte2hub";

fn ip(args: &[&str]) {
    let out = ip_in(None, args);
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Creates network namespace `netns` joined to the hub bridge with `address`/24.
fn join_hub(netns: &str, veth: &str, address: &str) {
    ip_in(None, &["netns", "delete", netns]);
    ip_in(None, &["link", "delete", veth]);
    if !ip_in(None, &["link", "show", HUB_BRIDGE]).status.success() {
        ip(&["link", "add", HUB_BRIDGE, "type", "bridge"]);
        ip(&["addr", "add", &format!("{HUB_ADDRESS}/24"), "dev", HUB_BRIDGE]);
        ip(&["link", "set", HUB_BRIDGE, "up"]);
    }
    ip(&["netns", "add", netns]);
    ip(&["link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns]);
    ip(&["link", "set", veth, "master", HUB_BRIDGE, "up"]);
    ip(&["-n", netns, "addr", "add", &format!("{address}/24"), "dev", "eth0"]);
    ip(&["-n", netns, "link", "set", "eth0", "up"]);
    ip(&["-n", netns, "link", "set", "lo", "up"]);
    ip(&["-n", netns, "route", "add", "default", "via", HUB_ADDRESS]);
}

/// Removes `netns`, its veth, and the hub bridge once no namespace is joined to it.
fn leave_hub(netns: &str, veth: &str) {
    ip_in(None, &["netns", "delete", netns]);
    ip_in(None, &["link", "delete", veth]);
    let members = ip_in(None, &["-o", "link", "show", "master", HUB_BRIDGE]);
    if members.status.success() && members.stdout.is_empty() {
        ip_in(None, &["link", "delete", HUB_BRIDGE]);
    }
}

impl ExtraAgent {
    /// Imports the example image for, and starts, an agent named `<cluster node>-<suffix>`
    /// joining `cluster`'s server, and waits for its node to be Ready.
    pub fn join(cluster: &Cluster, suffix: &str, slot: u32) -> ExtraAgent {
        ExtraAgent::join_with(cluster, suffix, slot, Some(&format!("10.99.{slot}.0/24")), &[])
    }

    /// [`ExtraAgent::join`] with `pod_cidr` (`None`: assigned by the control plane) and more
    /// agent `flags`.
    pub fn join_with(cluster: &Cluster, suffix: &str, slot: u32, pod_cidr: Option<&str>, flags: &[&str]) -> ExtraAgent {
        assert!(cluster.mode == Mode::Split, "extra agents join a split cluster");
        let mut agent = ExtraAgent {
            data: tempfile::Builder::new().prefix("flotilla-e2e-agent-").tempdir().unwrap(),
            node: format!("{}-{suffix}", cluster.node),
            bridge: format!("fte2x{slot}"),
            pod_cidr: pod_cidr.map(str::to_string),
            flags: flags.iter().map(|f| f.to_string()).collect(),
            netns: format!("fte2n{slot}"),
            address: format!("10.98.0.{}", 10 + slot),
            child: None,
            pod_uids: BTreeSet::new(),
        };
        join_hub(&agent.netns, &agent.veth(), &agent.address);
        let out = cluster.run_ok(&["image", "import", "--data-dir", agent.data.path().to_str().unwrap(), example_image().to_str().unwrap()]);
        assert!(out.contains(IMAGE), "image import did not name the image: {out}");
        agent.start(cluster);
        agent
    }

    /// Starts (or restarts) the agent process and waits for its node to be Ready.
    pub fn start(&mut self, cluster: &Cluster) {
        let token = std::fs::read_to_string(cluster.data_dir().join("node-token")).unwrap();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.data.path().join("agent.log")).unwrap();
        let netns = format!("--net=/run/netns/{}", self.netns);
        let server = format!("https://{HUB_ADDRESS}:{}", cluster.port);
        let mut args: Vec<&str> = vec![
            &netns,
            FLOTILLA,
            "agent",
            "--server",
            &server,
            "--node-ip",
            &self.address,
            "--token",
            token.trim(),
            "--data-dir",
            self.data.path().to_str().unwrap(),
            "--node-name",
            &self.node,
            "--agent-port",
            "0",
            "--bridge",
            &self.bridge,
        ];
        if let Some(cidr) = &self.pod_cidr {
            args.extend(["--pod-cidr", cidr]);
        }
        args.extend(self.flags.iter().map(String::as_str));
        self.child = Some(
            Command::new("nsenter").args(args).env("HOME", cluster.home.path()).env("FLOTILLA_LOG", "info").stdout(Stdio::null()).stderr(log).spawn().unwrap(),
        );
        wait_for(Duration::from_secs(60), "the extra node to be Ready", || {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("the agent of {} exited with {status}; its log:\n{}", self.node, self.log());
            }
            let nodes: Value = serde_json::from_str(&cluster.try_run(&["get", "nodes", "-o", "json"]).ok()?).ok()?;
            nodes["items"].as_array()?.iter().any(|n| n["metadata"]["name"] == self.node.as_str() && node_ready(n)).then_some(())
        });
    }

    fn veth(&self) -> String {
        format!("{}h", self.netns)
    }

    /// Its address on the hub bridge.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// `ip ARGS` in its network namespace: the output, which must succeed.
    pub fn ip(&self, args: &[&str]) -> String {
        let out = ip_in(Some(&self.netns), args);
        assert!(out.status.success(), "ip -n {} {args:?}: {}", self.netns, String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The tail of its log, for failure messages.
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.data.path().join("agent.log")).unwrap_or_default();
        text.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Kills the agent with SIGKILL; its containers keep running.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Its runc containers.
    pub fn containers(&self) -> Vec<(String, i64, String)> {
        containers_in(self.data.path())
    }

    /// Asserts, within a few seconds, that the host holds nothing of its pods.
    pub fn assert_host_clean(&mut self) {
        if let Ok(entries) = std::fs::read_dir(self.data.path().join("pods")) {
            self.pod_uids.extend(entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()));
        }
        wait_for(Duration::from_secs(10), "the extra agent's host state to be clean", || {
            leftovers_of(self.data.path(), &self.pod_uids, Some(&self.netns)).is_empty().then_some(())
        });
    }
}

impl Drop for ExtraAgent {
    fn drop(&mut self) {
        self.kill();
        force_clean(self.data.path(), &self.bridge, &mut self.pod_uids, Some(&self.netns));
        leave_hub(&self.netns, &self.veth());
    }
}

/// The runc containers of the agent keeping its state in `agent_dir`: id, pid, status.
pub fn containers_in(agent_dir: &Path) -> Vec<(String, i64, String)> {
    let out = Command::new("runc").arg("--root").arg(agent_dir.join("runc")).args(["list", "--format", "json"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let list: Value = serde_json::from_str(if text.trim().is_empty() || text.trim() == "null" { "[]" } else { &text }).unwrap_or(Value::Null);
    list.as_array()
        .map(|a| {
            a.iter()
                .map(|c| (c["id"].as_str().unwrap_or("").to_string(), c["pid"].as_i64().unwrap_or(0), c["status"].as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// `ip` with `args`, in network namespace `netns` when given.
fn ip_in(netns: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut command = Command::new("ip");
    if let Some(ns) = netns {
        command.args(["-n", ns]);
    }
    command.args(args).output().unwrap()
}

/// Everything the pods `pod_uids` of the agent in `agent_dir` (running in network namespace
/// `netns`, or the host's) could have left on the host.
pub fn leftovers_of(agent_dir: &Path, pod_uids: &BTreeSet<String>, netns: Option<&str>) -> Vec<String> {
    let mut found = Vec::new();
    for (id, _, status) in containers_in(agent_dir) {
        found.push(format!("runc container {id} ({status})"));
    }
    for point in mounts_under(agent_dir) {
        found.push(format!("mount {point}"));
    }
    let namespaces: BTreeSet<String> =
        std::fs::read_dir("/run/netns").map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
    let links = ip_in(netns, &["-o", "link", "show"]);
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    let cgroup_roots = cgroup_roots();
    for uid in pod_uids {
        let ns = agent::network::netns_name(uid);
        if namespaces.contains(&ns) {
            found.push(format!("netns {ns}"));
        }
        let veth = agent::network::host_veth_name(uid);
        if links.contains(&format!(" {veth}@")) || links.contains(&format!(" {veth}:")) {
            found.push(format!("veth {veth}"));
        }
        let cgroup = agent::runtime::pod_cgroups_path(uid).unwrap();
        for root in &cgroup_roots {
            let dir = root.join(cgroup.trim_start_matches('/'));
            if dir.exists() {
                found.push(format!("cgroup {}", dir.display()));
            }
        }
    }
    for sub in ["ipam", "containers", "pods", "logs"] {
        for entry in walk_files(&agent_dir.join(sub)) {
            found.push(format!("file {}", entry.display()));
        }
    }
    found
}

/// Removes by force whatever an agent's pods left: containers, mounts, netns, veths, cgroups
/// and the bridge (after a failed assertion too, so one failing test leaves nothing behind).
pub fn force_clean(agent_dir: &Path, bridge: &str, pod_uids: &mut BTreeSet<String>, netns: Option<&str>) {
    let root = agent_dir.join("runc");
    for (id, _, _) in containers_in(agent_dir) {
        let _ = Command::new("runc").arg("--root").arg(&root).args(["delete", "--force", &id]).output();
    }
    if let Ok(entries) = std::fs::read_dir(agent_dir.join("pods")) {
        for e in entries.flatten() {
            pod_uids.insert(e.file_name().to_string_lossy().into_owned());
        }
    }
    let mut points = mounts_under(agent_dir);
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").arg("-l").arg(p).output();
    }
    for uid in pod_uids.iter() {
        ip_in(None, &["netns", "delete", &agent::network::netns_name(uid)]);
        let _ = ip_in(netns, &["link", "delete", &agent::network::host_veth_name(uid)]);
        let _ = agent::runtime::remove_pod_cgroups(uid);
    }
    let _ = ip_in(netns, &["link", "delete", bridge]);
}

/// The mount points at or below `dir`.
fn mounts_under(dir: &Path) -> Vec<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo.lines().filter_map(|l| l.split(' ').nth(4)).filter(|p| Path::new(p).starts_with(dir)).map(str::to_string).collect()
}

fn cgroup_roots() -> Vec<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() > 2 && (f[2] == "cgroup" || f[2] == "cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .collect()
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                files.extend(walk_files(&p));
            } else {
                files.push(p);
            }
        }
    }
    files
}

/// True when a Node has condition Ready=True.
pub fn node_ready(node: &Value) -> bool {
    condition(node, "Ready")
}

/// True when a Pod has condition Ready=True.
pub fn pod_ready(pod: &Value) -> bool {
    condition(pod, "Ready")
}

fn condition(object: &Value, kind: &str) -> bool {
    object["status"]["conditions"].as_array().map(|cs| cs.iter().any(|c| c["type"] == kind && c["status"] == "True")).unwrap_or(false)
}

/// One line per pod: name, phase, readiness, restarts, for failure messages.
pub fn summary(pods: &[Value]) -> String {
    pods.iter()
        .map(|p| {
            format!(
                "{} phase={} ready={} deleting={} statuses={}",
                p["metadata"]["name"].as_str().unwrap_or("?"),
                p["status"]["phase"],
                pod_ready(p),
                !p["metadata"]["deletionTimestamp"].is_null(),
                p["status"]["containerStatuses"]
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A plain HTTP/1.0 GET of `http://ip:port/path` from the host; the body, or an error.
pub fn http_get(ip: &str, port: u16, path: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&format!("{ip}:{port}").parse().unwrap(), Duration::from_secs(3)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| e.to_string())?;
    if !response.starts_with("HTTP/1.0 200") && !response.starts_with("HTTP/1.1 200") {
        return Err(format!("not 200: {}", response.lines().next().unwrap_or("")));
    }
    Ok(response.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
}

/// How process `pid`, a child not yet waited for, ended: `None` while it runs. A process that
/// died without a word in its log (a signal) says so here: the kernel keeps a zombie's wait
/// status in /proc/<pid>/stat (field 52).
pub fn ended(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split(' ').collect();
    if fields.first() != Some(&"Z") {
        return None;
    }
    let code: i32 = fields.last()?.trim().parse().ok()?;
    Some(match code & 0x7f {
        0 => format!("exited with status {}", (code >> 8) & 0xff),
        signal => format!("was killed by signal {signal}{}", if code & 0x80 != 0 { " (core dumped)" } else { "" }),
    })
}
