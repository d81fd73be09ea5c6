//! The socket load balancer on this machine's kernel: the programs on the cgroup v2 root,
//! this process's network namespace served, TCP and UDP servers on loopback as the backends,
//! and a virtual address no route knows. Needs root.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::time::Duration;

use net::service::{cgroup2_root, netns_cookie, Backends, Balancer, Frontend, L4};

/// A loopback address nothing listens on: a connection the balancer leaves alone is refused
/// at once and never leaves the machine.
const VIP: Ipv4Addr = Ipv4Addr::new(127, 80, 0, 80);

/// A TCP server on loopback that answers every connection with its own port.
fn tcp_backend() -> SocketAddrV4 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let SocketAddr::V4(addr) = listener.local_addr().unwrap() else { unreachable!() };
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(format!("{}\n", addr.port()).as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Which backend answered a connection to `port` of the VIP, and the peer the socket reports.
fn ask(port: u16) -> std::io::Result<(u16, SocketAddr, TcpStream)> {
    let mut stream = TcpStream::connect_timeout(&SocketAddr::from((VIP, port)), Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let backend = exchange(&mut stream)?;
    Ok((backend, stream.peer_addr()?, stream))
}

fn exchange(stream: &mut TcpStream) -> std::io::Result<u16> {
    stream.write_all(b"?")?;
    let mut buf = [0u8; 16];
    let n = stream.read(&mut buf)?;
    String::from_utf8_lossy(&buf[..n]).trim().parse().map_err(std::io::Error::other)
}

#[test]
fn virtual_addresses_reach_only_current_backends() {
    assert!(unsafe { libc::geteuid() } == 0, "the load balancer test attaches eBPF programs to the cgroup root: run it as root");
    let root = cgroup2_root().expect("a cgroup v2 hierarchy is mounted");
    let mut lb = Balancer::load(&root).expect("the socket programs load and attach on this kernel");
    let own = netns_cookie(Path::new("/proc/self/ns/net")).expect("SO_NETNS_COOKIE");
    let web = Frontend { addr: VIP, port: 80, protocol: L4::Tcp };
    let (a, b) = (tcp_backend(), tcp_backend());
    lb.set(web, &Backends { addrs: vec![a, b], affinity: None }).unwrap();

    // Until this namespace is served, the address is left alone (and nothing answers it).
    assert_eq!(ask(80).unwrap_err().kind(), std::io::ErrorKind::ConnectionRefused, "an unserved namespace's connect() is not translated");
    lb.serve_netns(own).unwrap();

    let mut seen = BTreeSet::new();
    for _ in 0..40 {
        let (backend, peer, _) = ask(80).expect("the VIP answers");
        assert_eq!(peer, SocketAddr::from((VIP, 80)), "getpeername() reports the virtual address");
        seen.insert(backend);
    }
    assert_eq!(seen, BTreeSet::from([a.port(), b.port()]), "connections spread over both backends");

    // Graceful removal: an open connection to b goes on; new ones go only to a.
    let open = loop {
        let (backend, _, stream) = ask(80).unwrap();
        if backend == b.port() {
            break stream;
        }
    };
    lb.set(web, &Backends { addrs: vec![a], affinity: None }).unwrap();
    for _ in 0..20 {
        assert_eq!(ask(80).unwrap().0, a.port(), "no new connection goes to a removed backend");
    }
    let mut open = open;
    assert_eq!(exchange(&mut open).unwrap(), b.port(), "the connection made before the removal still works");

    // ClientIP affinity: every connection of this client goes to the backend it got first.
    let c = tcp_backend();
    lb.set(web, &Backends { addrs: vec![a, b, c], affinity: Some(Duration::from_secs(60)) }).unwrap();
    let first = ask(80).unwrap().0;
    for _ in 0..20 {
        assert_eq!(ask(80).unwrap().0, first, "session affinity holds");
    }
    // Its backend taken out, the client moves to another and stays there.
    let rest: Vec<SocketAddrV4> = [a, b, c].into_iter().filter(|s| s.port() != first).collect();
    lb.set(web, &Backends { addrs: rest.clone(), affinity: Some(Duration::from_secs(60)) }).unwrap();
    let second = ask(80).unwrap().0;
    assert_ne!(second, first);
    for _ in 0..10 {
        assert_eq!(ask(80).unwrap().0, second);
    }

    // No backend: refused at connect(), not left to time out.
    lb.set(web, &Backends::default()).unwrap();
    let refused = ask(80).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::PermissionDenied, "{refused}");
    let counters = lb.counters().unwrap();
    assert!(counters.translated >= 90 && counters.refused >= 1, "{counters:?}");

    // UDP: an unconnected sendto() reaches the backend; the reply seems to come from the VIP.
    let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
    let SocketAddr::V4(echo_addr) = echo.local_addr().unwrap() else { unreachable!() };
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = echo.recv_from(&mut buf) {
            let _ = echo.send_to(&buf[..n], from);
        }
    });
    let dns = Frontend { addr: VIP, port: 53, protocol: L4::Udp };
    lb.set(dns, &Backends { addrs: vec![echo_addr], affinity: None }).unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    client.send_to(b"ping", (VIP, 53)).unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = client.recv_from(&mut buf).expect("the UDP backend replies");
    assert_eq!((&buf[..n], from), (&b"ping"[..], SocketAddr::from((VIP, 53))));

    // Removed: the address is the plain, unrouted one again.
    lb.remove(&web).unwrap();
    assert_eq!(ask(80).unwrap_err().kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(lb.frontends() == vec![dns]);
}
