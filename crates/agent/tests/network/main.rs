//! Real-kernel tests of pod networking: namespaces, veths, a bridge and IPAM, driven the way the
//! agent drives them (`PodNetwork::new`, native netlink), and a runc container joining a pod
//! network; `native.rs` beside this file checks the native implementation against iproute2.
//! Needs root, `ip` (Debian `iproute2`), busybox (Debian `busybox-static`) and runc (Debian
//! `runc`). Every test uses its own bridge and 10.199.<n>.0/24, and removes what it created.

mod native;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::network::{host_veth_name, netns_name, Netlink, NetworkConfig, NetworkError, PodNetwork};
use agent::runtime::{become_subreaper, container_cgroups_path, remove_pod_cgroups, stop, write_bundle, ContainerRuntime, ContainerSpec, OciRuntime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BUSYBOX: &str = "/bin/busybox";

/// A private bridge, CIDR and state dir; tears down every pod it set up, and the bridge.
struct TestNet {
    net: PodNetwork,
    dir: tempfile::TempDir,
    bridge: String,
    subnet: u8,
    pods: Vec<String>,
}

impl TestNet {
    /// Through `PodNetwork::new`, as the agent does.
    fn new(subnet: u8) -> Self {
        Self::open(subnet, PodNetwork::new)
    }

    /// Through the given implementation.
    fn with_netlink(subnet: u8, netlink: Arc<dyn Netlink>) -> Self {
        Self::open(subnet, |config| PodNetwork::with_netlink(config, netlink))
    }

    fn open(subnet: u8, open: impl FnOnce(NetworkConfig) -> Result<PodNetwork, NetworkError>) -> Self {
        assert!(nix::unistd::geteuid().is_root(), "network tests need root");
        let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].iter().any(|p| Path::new(p).is_file());
        assert!(ip, "`ip` is missing: apt-get install iproute2");
        assert!(Path::new(BUSYBOX).is_file(), "{BUSYBOX} is missing: apt-get install busybox-static");
        let dir = tempfile::tempdir().expect("tempdir");
        let bridge = format!("flt{subnet}x{}", std::process::id() % 10_000);
        let mut config = NetworkConfig::new(dir.path());
        config.bridge = bridge.clone();
        config.cidr = format!("10.199.{subnet}.0/24").parse().expect("cidr");
        // Forwarding is a host-wide switch; pods on one bridge and the host need none.
        config.enable_ip_forward = false;
        let net = open(config).expect("pod network");
        TestNet { net, dir, bridge, subnet, pods: Vec::new() }
    }

    /// A pod uid whose first 12 characters (the netns name) are unique to this test run.
    fn pod_uid(&mut self, n: usize) -> String {
        let uid = format!("n{}{n:03}-{}", self.subnet, uuid::Uuid::new_v4().simple());
        self.pods.push(uid.clone());
        uid
    }

    fn reopen(&self) -> PodNetwork {
        PodNetwork::new(self.net.config().clone()).expect("reopen")
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for uid in &self.pods {
            let _ = ip(&["link", "delete", "dev", &host_veth_name(uid)]);
            let _ = ip(&["netns", "delete", &netns_name(uid)]);
        }
        let _ = ip(&["link", "delete", "dev", &self.bridge]);
    }
}

fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip").args(args).output().map_err(|err| err.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn in_netns(ns: &str, args: &[&str]) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", ns, BUSYBOX]).args(args);
    command
}

fn netns_list() -> String {
    ip(&["netns", "list"]).expect("ip netns list")
}

/// Serves `body` over HTTP on port 8080 inside the netns; killed on drop.
struct Httpd(std::process::Child);

impl Httpd {
    fn start(ns: &str, root: &Path, body: &str) -> Self {
        std::fs::create_dir_all(root).expect("www dir");
        std::fs::write(root.join("index.html"), body).expect("index.html");
        let root = root.to_str().expect("utf-8 path");
        let child = in_netns(ns, &["httpd", "-f", "-p", "8080", "-h", root]).stdout(Stdio::null()).spawn().expect("start busybox httpd");
        Httpd(child)
    }
}

impl Drop for Httpd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GETs / from the host, retrying until the server is listening or 10 s have passed.
async fn http_get(ip: IpAddr) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::net::TcpStream::connect((ip, 8080)).await {
            Ok(mut stream) => {
                stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await.expect("send request");
                let mut response = String::new();
                stream.read_to_string(&mut response).await.expect("read response");
                return response;
            }
            Err(err) if Instant::now() < deadline => {
                let _ = err;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("cannot reach {ip}:8080 from the host: {err}"),
        }
    }
}

#[tokio::test]
async fn two_pods_reach_each_other_and_the_host_reaches_both() {
    let mut t = TestNet::new(11);
    t.net.ensure_bridge().await.expect("bridge");
    t.net.ensure_bridge().await.expect("bridge again");
    let (uid_a, uid_b) = (t.pod_uid(1), t.pod_uid(2));
    let a = t.net.setup(&uid_a).await.expect("setup a");
    let b = t.net.setup(&uid_b).await.expect("setup b");
    assert_ne!(a.ip, b.ip);
    assert_eq!(a.gateway, IpAddr::V4(Ipv4Addr::new(10, 199, 11, 1)));
    let (ns_a, ns_b) = (netns_name(&uid_a), netns_name(&uid_b));
    assert_eq!(a.netns_path, Path::new("/run/netns").join(&ns_a));

    let ping = in_netns(&ns_a, &["ping", "-c", "1", "-W", "5", &b.ip.to_string()]).output().expect("ping");
    assert!(ping.status.success(), "a cannot ping b: {}", String::from_utf8_lossy(&ping.stdout));

    let _server_a = Httpd::start(&ns_a, &t.dir.path().join("www-a"), "hello from a");
    let _server_b = Httpd::start(&ns_b, &t.dir.path().join("www-b"), "hello from b");
    assert!(http_get(a.ip).await.ends_with("hello from a"));
    assert!(http_get(b.ip).await.ends_with("hello from b"));
    let url = format!("http://{}:8080/", a.ip);
    let fetched = in_netns(&ns_b, &["wget", "-q", "-O", "-", &url]).output().expect("wget");
    assert_eq!(String::from_utf8_lossy(&fetched.stdout), "hello from a", "b → a over the bridge");

    let routes = Command::new("ip").args(["-n", &ns_a, "route", "show", "default"]).output().expect("route");
    assert!(String::from_utf8_lossy(&routes.stdout).contains("via 10.199.11.1"));
}

#[tokio::test]
async fn hundred_concurrent_setups_get_distinct_addresses_and_teardown_leaves_nothing() {
    let mut t = TestNet::new(12);
    t.net.ensure_bridge().await.expect("bridge");
    let uids: Vec<String> = (0..100).map(|n| t.pod_uid(n)).collect();
    let started = Instant::now();
    let infos = futures::future::join_all(uids.iter().map(|uid| t.net.setup(uid))).await;
    eprintln!("100 concurrent setups took {:?}", started.elapsed());
    let ips: HashSet<IpAddr> = infos.into_iter().map(|info| info.expect("setup").ip).collect();
    assert_eq!(ips.len(), 100, "an address was handed out twice");
    let reserved = ["10.199.12.0", "10.199.12.1", "10.199.12.255"].map(|ip| ip.parse::<IpAddr>().expect("ip"));
    assert!(reserved.iter().all(|ip| !ips.contains(ip)));
    assert_eq!(t.net.allocations().expect("allocations").len(), 100);
    let listed = netns_list();
    assert!(uids.iter().all(|uid| listed.contains(&netns_name(uid))));
    let ports = ip(&["-o", "link", "show", "master", &t.bridge]).expect("bridge ports");
    assert_eq!(ports.lines().count(), 100);

    let results = futures::future::join_all(uids.iter().map(|uid| t.net.teardown(uid))).await;
    results.into_iter().for_each(|result| result.expect("teardown"));
    assert_leaves_nothing(&t, &uids);
}

#[tokio::test]
async fn allocations_survive_a_restart_and_teardown_is_idempotent() {
    let mut t = TestNet::new(13);
    t.net.ensure_bridge().await.expect("bridge");
    let uids: Vec<String> = (0..3).map(|n| t.pod_uid(n)).collect();
    let mut infos = Vec::new();
    for uid in &uids {
        infos.push(t.net.setup(uid).await.expect("setup"));
    }
    let before = t.net.allocations().expect("allocations");

    let restarted = t.reopen();
    assert_eq!(restarted.allocations().expect("allocations"), before);
    for (uid, info) in uids.iter().zip(&infos) {
        assert_eq!(&restarted.setup(uid).await.expect("setup after restart"), info);
    }
    let newcomer = t.pod_uid(3);
    let fresh = restarted.setup(&newcomer).await.expect("new pod after restart");
    assert!(infos.iter().all(|info| info.ip != fresh.ip));

    for uid in uids.iter().chain([&newcomer]) {
        restarted.teardown(uid).await.expect("teardown");
        restarted.teardown(uid).await.expect("teardown again");
    }
    assert_leaves_nothing(&t, &uids);
    assert!(t.reopen().allocations().expect("allocations").is_empty());
}

fn assert_leaves_nothing(t: &TestNet, uids: &[String]) {
    let listed = netns_list();
    let links = ip(&["-o", "link", "show"]).expect("ip link");
    for uid in uids {
        assert!(!listed.contains(&netns_name(uid)), "netns of {uid} left behind");
        assert!(!links.contains(&format!(" {}@", host_veth_name(uid))), "veth of {uid} left behind");
    }
    assert_eq!(ip(&["-o", "link", "show", "master", &t.bridge]).expect("bridge ports"), "");
    assert!(t.net.allocations().expect("allocations").is_empty());
    let leftovers: Vec<_> = std::fs::read_dir(t.dir.path().join("ipam")).expect("ipam dir").flatten().collect();
    assert!(leftovers.is_empty(), "state dir not empty: {leftovers:?}");
}

#[tokio::test]
async fn container_in_a_pod_network_serves_the_host() {
    let mut t = TestNet::new(14);
    become_subreaper().expect("subreaper");
    let runtime = OciRuntime::new("runc", t.dir.path().join("runc")).unwrap_or_else(|err| panic!("runc is required: apt-get install runc ({err})"));
    t.net.ensure_bridge().await.expect("bridge");
    let uid = t.pod_uid(1);
    let info = t.net.setup(&uid).await.expect("pod network setup");

    let rootfs = t.dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).expect("rootfs");
    std::fs::create_dir_all(rootfs.join("www")).expect("www");
    std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).expect("busybox");
    for applet in ["sh", "httpd"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).expect("applet");
    }
    std::fs::write(rootfs.join("www/index.html"), "served from a container").expect("index");
    let mut spec = ContainerSpec::new(["httpd", "-f", "-p", "8080", "-h", "/www"].map(String::from).to_vec(), &rootfs);
    spec.netns = Some(info.netns_path.clone());
    spec.cgroups_path = container_cgroups_path(&uid, "web").expect("cgroups path");
    let bundle = t.dir.path().join("bundle");
    write_bundle(&bundle, &spec).expect("bundle");
    let id = format!("{}-web", &uid[..12]);
    let pid = runtime.start(&id, &bundle, &t.dir.path().join("web.log")).await.expect("start");

    let _kill_on_failure = ContainerGuard(&runtime, &id);
    let response = http_get(info.ip).await;
    assert!(response.ends_with("served from a container"), "{response}");
    stop(&runtime, &id, pid, Duration::from_millis(500)).await.expect("stop");
    remove_pod_cgroups(&uid).expect("remove cgroups");
    t.net.teardown(&uid).await.expect("teardown");
    assert_leaves_nothing(&t, &[uid]);
}

/// Force-deletes a container when a failed assertion unwinds past it.
struct ContainerGuard<'a>(&'a OciRuntime, &'a str);

impl Drop for ContainerGuard<'_> {
    fn drop(&mut self) {
        let root = format!("--root={}", self.0.root().display());
        let _ = Command::new(self.0.binary()).args([root.as_str(), "delete", "--force", self.1]).output();
    }
}
