//! The L7 redirect on this machine's kernel, with real connections: a "pod" (a network
//! namespace with its end of a veth pair) whose eth0 carries the program, a server inside it on
//! 8080, and a stand-in proxy listening on another port in the same namespace. Needs root.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use net::redirect::Redirect;

const NETNS: &str = "fltl7-pod";
const HOST_VETH: &str = "fltl70h";
const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 124, 0, 1);
const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 124, 0, 2);
const ELSEWHERE: Ipv4Addr = Ipv4Addr::new(10, 124, 9, 9);

fn ip_ok(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

struct Pod {
    server: Child,
}

impl Pod {
    fn create() -> Pod {
        let _ = Command::new("ip").args(["netns", "delete", NETNS]).output();
        let _ = Command::new("ip").args(["link", "delete", HOST_VETH]).output();
        ip_ok(&["netns", "add", NETNS]);
        ip_ok(&["link", "add", HOST_VETH, "type", "veth", "peer", "name", "eth0", "netns", NETNS]);
        ip_ok(&["addr", "add", &format!("{HOST_IP}/24"), "dev", HOST_VETH]);
        ip_ok(&["link", "set", HOST_VETH, "up"]);
        ip_ok(&["-n", NETNS, "addr", "add", &format!("{POD_IP}/24"), "dev", "eth0"]);
        ip_ok(&["-n", NETNS, "link", "set", "eth0", "up"]);
        ip_ok(&["-n", NETNS, "link", "set", "lo", "up"]);
        let www = std::env::temp_dir().join("fltl7-www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("index.html"), "from the server\n").unwrap();
        let server = Command::new("ip")
            .args(["netns", "exec", NETNS, "busybox", "httpd", "-f", "-p", "8080", "-h"])
            .arg(&www)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("busybox httpd (apt-get install busybox-static)");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !get().is_ok_and(|r| r.contains("from the server")) {
            assert!(Instant::now() < deadline, "the pod's server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Pod { server }
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = Command::new("ip").args(["link", "delete", HOST_VETH]).output();
        let _ = Command::new("ip").args(["netns", "delete", NETNS]).output();
    }
}

/// An HTTP GET from the host to the pod's 8080: the response, or why not.
fn get() -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&SocketAddr::from((POD_IP, 8080)), Duration::from_millis(700)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    write!(stream, "GET / HTTP/1.0\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| e.to_string())?;
    Ok(response)
}

/// Runs `work` on a thread that entered the pod's namespace.
fn in_pod<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let netns = std::fs::File::open(format!("/var/run/netns/{NETNS}")).unwrap();
                // SAFETY: setns on a valid namespace fd changes only this thread, which ends here.
                assert_eq!(unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "entering {NETNS}");
                work()
            })
            .join()
            .unwrap()
    })
}

/// A stand-in proxy: answers each connection with its own addresses as it accepted them.
fn proxy(listener: TcpListener) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut request = [0u8; 512];
            let _ = conn.read(&mut request);
            let line = format!("proxy local={} peer={}\n", conn.local_addr().unwrap(), conn.peer_addr().unwrap());
            let _ = conn.write_all(line.as_bytes());
            if request.starts_with(b"STOP") {
                return;
            }
        }
    })
}

#[test]
fn new_connections_to_a_redirected_port_reach_the_proxy_with_their_addresses_kept() {
    let _pod = Pod::create();
    let mut redirect = Redirect::load().expect("the L7 redirect loads on this kernel");
    let listener = in_pod(|| {
        redirect.attach_here("eth0").expect("attaching to the pod's eth0");
        TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap()
    });
    let proxy_port = listener.local_addr().unwrap().port();
    let stopper = listener.try_clone().unwrap();
    let proxy = proxy(listener);
    assert!(get().unwrap().contains("from the server"), "no entry: straight to the server");

    redirect.set(POD_IP, 8080, proxy_port, ELSEWHERE).unwrap();
    let response = get().unwrap();
    assert_eq!(response, format!("proxy local={POD_IP}:8080 peer={HOST_IP}:{}\n", response.rsplit(':').next().unwrap().trim()), "{response}");

    redirect.set(POD_IP, 8080, proxy_port, HOST_IP).unwrap();
    assert!(get().unwrap().contains("from the server"), "the exempt source (the node) goes straight on");

    redirect.set(POD_IP, 8080, proxy_port, ELSEWHERE).unwrap();
    {
        let mut stop = TcpStream::connect((POD_IP, 8080)).unwrap();
        stop.write_all(b"STOP").unwrap();
        let mut out = String::new();
        stop.read_to_string(&mut out).unwrap();
    }
    proxy.join().unwrap();
    drop(stopper);
    assert!(get().is_err(), "with the proxy gone, the port is closed, not served without its rules");

    redirect.remove(POD_IP, 8080).unwrap();
    assert!(get().unwrap().contains("from the server"), "the entry removed: straight to the server again");
}
