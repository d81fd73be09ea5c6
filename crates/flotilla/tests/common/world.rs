//! A "world" for end-to-end tests: addresses outside the cluster, in a network namespace of
//! the test's own.

/// A "world" outside the cluster: a network namespace joined to this host by a veth pair, on
/// 198.18.77.0/24 (of the benchmarking range, which no real network uses), with two addresses, 198.18.77.10 serving on 8080 and 198.18.77.200 serving on 9090 (busybox
/// httpd), routed back through the host. Removed, with its servers, when dropped.
pub struct World {
    /// Its network namespace.
    pub netns: String,
    /// One world at a time per test binary: they share the network and the namespace's name.
    _one: std::sync::MutexGuard<'static, ()>,
    servers: Vec<std::process::Child>,
    _www: tempfile::TempDir,
}

impl World {
    /// Makes it; the test fails if this machine already routes the network.
    pub fn new() -> World {
        static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let one = ONE.lock().unwrap_or_else(|e| e.into_inner());
        let netns = format!("flw{}", std::process::id());
        let (host, inside) = (format!("{netns}h"), format!("{netns}w"));
        let ip = |args: &[&str]| {
            let out = std::process::Command::new("ip").args(args).output().unwrap();
            assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        // A world just dropped takes a moment to go: the kernel frees a namespace's links later.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let routes = std::process::Command::new("ip").args(["route", "show", "table", "all"]).output().unwrap();
            let routes = String::from_utf8_lossy(&routes.stdout).into_owned();
            if !routes.contains("198.18.77.") && !routes.contains("198.18.0.0/15") {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "this machine already routes 198.18.77.0/24, the test's world network:\n{routes}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = std::process::Command::new("ip").args(["netns", "del", &netns]).output();
        ip(&["netns", "add", &netns]);
        ip(&["link", "add", &host, "type", "veth", "peer", "name", &inside, "netns", &netns]);
        ip(&["addr", "add", "198.18.77.1/24", "dev", &host]);
        ip(&["link", "set", &host, "up"]);
        for args in [
            vec!["addr", "add", "198.18.77.10/24", "dev", &inside],
            vec!["addr", "add", "198.18.77.200/24", "dev", &inside],
            vec!["link", "set", &inside, "up"],
            vec!["link", "set", "lo", "up"],
            vec!["route", "add", "default", "via", "198.18.77.1"],
        ] {
            ip(&[&["-n", &netns][..], &args[..]].concat());
        }
        let www = tempfile::tempdir().unwrap();
        std::fs::write(www.path().join("index.html"), "world\n").unwrap();
        let root = www.path().to_str().unwrap();
        let servers = ["198.18.77.10:8080", "198.18.77.200:9090"]
            .iter()
            .map(|listen| std::process::Command::new("ip").args(["netns", "exec", &netns, "busybox", "httpd", "-f", "-p", listen, "-h", root]).spawn().unwrap())
            .collect();
        World { netns, _one: one, servers, _www: www }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for server in &mut self.servers {
            let _ = server.kill();
            let _ = server.wait();
        }
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.netns]).output();
    }
}

impl World {
    /// Whether an HTTP GET from `source` (one of its addresses) to `ip`:`port` is answered
    /// within a second.
    pub fn fetch_from(&self, source: &str, ip: &str, port: u16) -> bool {
        use std::io::{Read, Write};
        let (netns, source, to) = (self.netns.clone(), source.to_string(), format!("{ip}:{port}"));
        std::thread::spawn(move || -> std::io::Result<bool> {
            let file = std::fs::File::open(format!("/run/netns/{netns}"))?;
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)?;
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            socket.bind(&format!("{source}:0").parse::<std::net::SocketAddr>().unwrap().into())?;
            socket.connect_timeout(&to.parse::<std::net::SocketAddr>().unwrap().into(), std::time::Duration::from_secs(1))?;
            let mut stream: std::net::TcpStream = socket.into();
            stream.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
            stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer)?;
            Ok(answer.starts_with(b"HTTP/1."))
        })
        .join()
        .unwrap_or(Ok(false))
        .unwrap_or(false)
    }
}
