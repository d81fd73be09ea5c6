//! Real brokers for tests, killed when dropped: Debian's `nats-server` on a free loopback port
//! (JetStream on, its store in a throwaway directory) and Debian's `mosquitto` (persistence on,
//! no limit on queued messages, so a test that keeps a session away loses nothing to the
//! broker's own cap).

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where mosquitto is looked for.
pub const MOSQUITTO_BINARY: &str = "/usr/sbin/mosquitto";

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
        let log = dir.path().join("nats.log");
        let (child, port) = start_listening("nats-server", &log, |port| {
            let mut command = Command::new(NATS_SERVER_BINARY);
            command
                .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
                .arg(dir.path().join("js"))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("log file"));
            command
        });
        NatsServer { child, port, _dir: dir }
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

/// Starts `command` (given the free port it is to listen on) until something accepts
/// connections on that port; `log` is where it writes.
fn start_listening(name: &str, log: &Path, mut command: impl FnMut(u16) -> Command) -> (Child, u16) {
    for _ in 0..3 {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).expect("a free port").port();
        let mut child = command(port).spawn().unwrap_or_else(|e| panic!("run {name}: {e}"));
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            // The port was free when it was picked, not necessarily when the server bound it:
            // a test running alongside may have been handed the same one. A connection that
            // succeeds proves only that something listens; the server must own the socket.
            if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() && owns_listener(child.id(), port) {
                return (child, port);
            }
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("{name} did not start; its log: {}", std::fs::read_to_string(log).unwrap_or_default());
}

/// Whether process `pid` holds the socket listening on 127.0.0.1:`port` (from /proc/net/tcp
/// and the process's descriptors).
fn owns_listener(pid: u32, port: u16) -> bool {
    const LISTEN: &str = "0A";
    let local = format!("0100007F:{port:04X}");
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else { return false };
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() > 9 && fields[1] == local && fields[3] == LISTEN).then(|| format!("socket:[{}]", fields[9]))
        })
        .collect();
    let Ok(descriptors) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    descriptors.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str())))
}

/// A running mosquitto.
pub struct MosquittoServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl MosquittoServer {
    /// Starts one and waits until it accepts connections. Panics with what to install when
    /// the binary is missing.
    pub fn start() -> MosquittoServer {
        assert!(Path::new(MOSQUITTO_BINARY).is_file(), "{MOSQUITTO_BINARY} is missing: apt-get install mosquitto");
        let dir = tempfile::tempdir().expect("a directory for mosquitto");
        let log = dir.path().join("mosquitto.log");
        let (child, port) = start_listening("mosquitto", &log, |port| {
            let config = dir.path().join("mosquitto.conf");
            std::fs::write(
                &config,
                format!(
                    "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n\
                     max_queued_messages 0\nmax_inflight_messages 0\nlog_dest file {}\nlog_type error\nlog_type warning\n",
                    dir.path().display(),
                    log.display()
                ),
            )
            .expect("write mosquitto.conf");
            let mut command = Command::new(MOSQUITTO_BINARY);
            command.arg("-c").arg(&config).stdout(Stdio::null()).stderr(Stdio::null());
            command
        });
        MosquittoServer { child, port, dir }
    }

    /// Its URL, `mqtt://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for MosquittoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates (or keeps) the JetStream stream `name` over `subjects` on the server at `url`.
pub async fn create_stream(url: &str, name: &str, subjects: &[&str]) {
    let client = async_nats::connect(url).await.expect("connect to nats");
    let js = async_nats::jetstream::new(client);
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: name.to_string(),
        subjects: subjects.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
    .await
    .expect("create the stream");
}

/// The messages the JetStream stream `name` holds.
pub async fn stream_messages(url: &str, name: &str) -> u64 {
    let client = async_nats::connect(url).await.expect("connect to nats");
    let mut stream = async_nats::jetstream::new(client).get_stream(name).await.expect("the stream");
    stream.info().await.expect("stream info").state.messages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_is_owned_by_the_process_holding_it_only() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(owns_listener(std::process::id(), port));
        let mut other = Command::new("sleep").arg("5").spawn().unwrap();
        assert!(!owns_listener(other.id(), port), "another process does not own this test's listener");
        let _ = other.kill();
        let _ = other.wait();
        drop(listener);
        assert!(!owns_listener(std::process::id(), port), "a closed listener is nobody's");
    }
}
