//! A "world" for end-to-end tests: addresses outside the cluster, in a network namespace of
//! the test's own.

/// A "world" outside the cluster: a network namespace joined to this host by a veth pair, on
/// 198.18.77.0/24 (of the benchmarking range, which no real network uses), with two addresses, 198.18.77.10 serving on 8080 and 198.18.77.200 serving on 9090 (busybox
/// httpd), routed back through the host. Removed, with its servers, when dropped.
pub struct World {
    /// Its network namespace.
    pub netns: String,
    servers: Vec<std::process::Child>,
    _www: tempfile::TempDir,
}

impl World {
    /// Makes it; the test fails if this machine already routes the network.
    pub fn new() -> World {
        let netns = format!("flw{}", std::process::id());
        let (host, inside) = (format!("{netns}h"), format!("{netns}w"));
        let ip = |args: &[&str]| {
            let out = std::process::Command::new("ip").args(args).output().unwrap();
            assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let routes = std::process::Command::new("ip").args(["route", "show", "table", "all"]).output().unwrap();
        let routes = String::from_utf8_lossy(&routes.stdout);
        assert!(
            !routes.contains("198.18.77.") && !routes.contains("198.18.0.0/15"),
            "this machine already routes 198.18.77.0/24, the test's world network:\n{routes}"
        );
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
        World { netns, servers, _www: www }
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
