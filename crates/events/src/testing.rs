//! A real NATS server for tests: Debian's `nats-server` on a free loopback port (JetStream on,
//! its store in a throwaway directory), killed when dropped.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where nats-server is looked for.
pub const NATS_SERVER_BINARY: &str = "/usr/sbin/nats-server";

/// A running nats-server.
pub struct NatsServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts one and waits until it accepts connections. Panics with what to install when
    /// the binary is missing: tests that need a broker must not pass without one.
    pub fn start() -> NatsServer {
        assert!(Path::new(NATS_SERVER_BINARY).is_file(), "{NATS_SERVER_BINARY} is missing: apt-get install nats-server");
        let dir = tempfile::tempdir().expect("a directory for JetStream");
        for _ in 0..3 {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).expect("a free port").port();
            let log = std::fs::File::create(dir.path().join("nats.log")).expect("log file");
            let mut child = Command::new(NATS_SERVER_BINARY)
                .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
                .arg(dir.path().join("js"))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("run nats-server");
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(10) {
                if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                    return NatsServer { child, port, _dir: dir };
                }
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("nats-server did not start; its log: {}", std::fs::read_to_string(dir.path().join("nats.log")).unwrap_or_default());
    }

    /// Its URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Its log so far.
    pub fn log(&self) -> PathBuf {
        self._dir.path().join("nats.log")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
