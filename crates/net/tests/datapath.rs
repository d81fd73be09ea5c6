//! The policy datapath on this machine's kernel, with real packets: a "pod" (a network
//! namespace with its end of a veth pair) whose host end carries the programs, a client on the
//! host side, and servers on both sides. Needs root.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use net::datapath::host_net;
use net::flows::{DropReason, Verdict};
use net::{Datapath, Direction, Protocol, Rule};

const NETNS: &str = "fltbpf-pod";
const HOST_VETH: &str = "fltbpf0h";
const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 123, 0, 1);
const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 123, 0, 2);
const CLIENT: u32 = 300;
const POD: u32 = 400;

fn ip(args: &[&str]) -> std::process::Output {
    Command::new("ip").args(args).output().expect("run ip")
}

fn ip_ok(args: &[&str]) {
    let out = ip(args);
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The pod's namespace and veth, and HTTP servers on 8080 and 9090 inside it; removed when
/// dropped.
struct Pod {
    servers: Vec<Child>,
}

impl Pod {
    fn create() -> Pod {
        let _ = ip(&["netns", "delete", NETNS]);
        let _ = ip(&["link", "delete", HOST_VETH]);
        ip_ok(&["netns", "add", NETNS]);
        ip_ok(&["link", "add", HOST_VETH, "type", "veth", "peer", "name", "eth0", "netns", NETNS]);
        ip_ok(&["addr", "add", &format!("{HOST_IP}/30"), "dev", HOST_VETH]);
        ip_ok(&["link", "set", HOST_VETH, "up"]);
        ip_ok(&["-n", NETNS, "addr", "add", &format!("{POD_IP}/30"), "dev", "eth0"]);
        ip_ok(&["-n", NETNS, "link", "set", "eth0", "up"]);
        ip_ok(&["-n", NETNS, "link", "set", "lo", "up"]);
        let www = std::env::temp_dir().join("fltbpf-www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("index.html"), "hello from the pod\n").unwrap();
        let servers = ["8080", "9090"]
            .iter()
            .map(|port| {
                Command::new("ip")
                    .args(["netns", "exec", NETNS, "busybox", "httpd", "-f", "-p", port, "-h"])
                    .arg(&www)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("busybox httpd (apt-get install busybox-static)")
            })
            .collect();
        let pod = Pod { servers };
        for port in [8080, 9090] {
            let deadline = Instant::now() + Duration::from_secs(5);
            while get(port).is_err() {
                assert!(Instant::now() < deadline, "the pod's server on {port} did not start");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        pod
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        for server in &mut self.servers {
            let _ = server.kill();
            let _ = server.wait();
        }
        let _ = ip(&["link", "delete", HOST_VETH]);
        let _ = ip(&["netns", "delete", NETNS]);
    }
}

/// An HTTP GET from the host to the pod: the body, or why not (a dropped SYN is a timeout).
fn get(port: u16) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&SocketAddr::from((POD_IP, port)), Duration::from_millis(700)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    write!(stream, "GET / HTTP/1.0\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| e.to_string())?;
    Ok(response)
}

/// A connection the pod opens to a server on the host: whether it got the reply.
fn pod_fetches_from_host(port: u16) -> bool {
    let listener = TcpListener::bind((HOST_IP, port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let server = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok((mut conn, _)) = listener.accept() {
                conn.set_nonblocking(false).unwrap();
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(b"HTTP/1.0 200 OK\r\n\r\nhello from the host\n");
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let out = Command::new("ip")
        .args(["netns", "exec", NETNS, "busybox", "timeout", "2", "busybox", "wget", "-q", "-O", "-", &format!("http://{HOST_IP}:{port}/")])
        .output()
        .unwrap();
    let _ = server.join();
    String::from_utf8_lossy(&out.stdout).contains("hello from the host")
}

fn rule(peer: Option<u32>, port: Option<u16>, direction: Direction) -> Rule {
    Rule { local: POD, peer, port, protocol: Protocol::Tcp, direction }
}

#[test]
fn identity_policy_drops_what_no_rule_allows_and_replies_pass() {
    assert!(nix_is_root(), "the datapath test loads eBPF programs and creates a network namespace: run it as root");
    let _pod = Pod::create();
    let mut datapath = Datapath::load().expect("the eBPF programs load on this kernel");
    datapath.attach(HOST_VETH).expect("attach to the pod's host veth");

    let mut flows = datapath.take_flows().expect("the flow reader");
    assert!(datapath.take_flows().is_none(), "there is one reader");

    // Nothing enforced: everything flows. The flow log is off until turned on.
    assert!(get(8080).unwrap().contains("hello from the pod"));
    assert!(get(9090).is_ok());
    assert_eq!(flows.drain(|_| ()), 0, "no reports while the flow log is off");
    datapath.set_flow_log(true).unwrap();

    datapath.set_identity(host_net(HOST_IP), CLIENT).unwrap();
    datapath.set_identity(host_net(POD_IP), POD).unwrap();
    datapath.enforce(POD, Direction::Ingress, true).unwrap();
    datapath.allow(&rule(Some(CLIENT), Some(8080), Direction::Ingress)).unwrap();
    let before = datapath.counters().unwrap();
    let response = get(8080).expect("the allowed port answers, and its replies pass");
    assert!(response.starts_with("HTTP/1.") && response.contains("hello from the pod"), "{response}");
    let denied = get(9090).expect_err("no rule allows 9090");
    assert!(denied.contains("timed out") || denied.contains("Resource temporarily unavailable"), "the SYN is dropped, not refused: {denied}");
    assert!(datapath.counters().unwrap().dropped > before.dropped, "the drop is counted");

    // Each judged flow is reported once, with its verdict and both ends' identities; the
    // packets conntrack passes (the rest of the allowed connection, its replies) are not.
    let started = SystemTime::now() - Duration::from_secs(10);
    let mut seen = Vec::new();
    flows.drain(|f| seen.push(f));
    let forwarded: Vec<_> = seen.iter().filter(|f| f.destination.port() == 8080).collect();
    assert_eq!(forwarded.len(), 1, "one report for the allowed connection: {seen:?}");
    let f = forwarded[0];
    assert_eq!((*f.source.ip(), *f.destination.ip()), (HOST_IP, POD_IP));
    assert_eq!((f.source_identity, f.destination_identity), (CLIENT, POD));
    assert_eq!((f.verdict, f.reason, f.direction, f.protocol), (Verdict::Forwarded, None, Direction::Ingress, 6));
    assert!(f.time > started && f.time <= SystemTime::now(), "the report's time is now: {:?}", f.time);
    let dropped: Vec<_> = seen.iter().filter(|f| f.destination.port() == 9090).collect();
    assert!(!dropped.is_empty(), "the denied SYN is reported: {seen:?}");
    assert!(dropped.iter().all(|f| f.verdict == Verdict::Dropped && f.reason == Some(DropReason::PolicyDenied) && f.destination_identity == POD));
    assert_eq!(seen.len(), forwarded.len() + dropped.len(), "nothing else was judged: {seen:?}");
    assert_eq!(datapath.counters().unwrap().flows_lost, 0);

    // Ingress is restricted, egress not: the pod's own connection out, and its reply, pass.
    assert!(pod_fetches_from_host(7070), "a connection the pod opens gets its reply back in");

    // Egress restricted with no rule: the pod's connection is dropped; a rule lets it out.
    datapath.enforce(POD, Direction::Egress, true).unwrap();
    assert!(!pod_fetches_from_host(7071), "egress is denied");
    datapath.allow(&rule(Some(CLIENT), Some(7072), Direction::Egress)).unwrap();
    assert!(pod_fetches_from_host(7072), "the egress rule allows it, and the reply comes back in");
    // Replies to allowed ingress still leave although egress is now restricted.
    assert!(get(8080).is_ok(), "replies of allowed inbound connections pass egress enforcement");

    // Wildcards: any peer on 9090; a rule taken back stops new connections at once.
    datapath.allow(&rule(None, Some(9090), Direction::Ingress)).unwrap();
    assert!(get(9090).is_ok(), "any peer may reach 9090 now");
    datapath.revoke(&rule(Some(CLIENT), Some(8080), Direction::Ingress)).unwrap();
    assert!(get(8080).is_err(), "8080 is closed again");
    // An address outside the ipcache is WORLD: a rule for another peer does not cover it.
    datapath.remove_identity(host_net(HOST_IP)).unwrap();
    datapath.revoke(&rule(None, Some(9090), Direction::Ingress)).unwrap();
    datapath.allow(&rule(Some(CLIENT), Some(9090), Direction::Ingress)).unwrap();
    assert!(get(9090).is_err(), "the client is WORLD now, and only identity 300 may connect");
    datapath.allow(&rule(Some(net::IDENTITY_WORLD), Some(9090), Direction::Ingress)).unwrap();
    assert!(get(9090).is_ok(), "a rule for WORLD lets it in");

    // Lifting enforcement restores default allow.
    datapath.enforce(POD, Direction::Ingress, false).unwrap();
    assert!(get(8080).is_ok());
    datapath.detach(HOST_VETH).unwrap();
    datapath.enforce(POD, Direction::Ingress, true).unwrap();
    assert!(get(8080).is_ok(), "detached: no program judges the link");
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
