//! A real etcd for tests: Debian's `/usr/bin/etcd` on free loopback ports with a throwaway data
//! directory, killed when dropped.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Where etcd is looked for unless `FLOTILLA_ETCD` names another binary.
pub const DEFAULT_ETCD_BINARY: &str = "/usr/bin/etcd";

/// How long etcd gets to become healthy.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Attempts at starting etcd: a port found free may be taken before etcd binds it.
const START_ATTEMPTS: usize = 3;

/// Why a test etcd could not be started.
#[derive(Debug, thiserror::Error)]
pub enum EtcdServerError {
    /// The etcd binary is not installed.
    #[error("etcd binary {} not found: install it with `apt-get install etcd-server` (or set FLOTILLA_ETCD to an etcd binary)", path.display())]
    Missing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// Preparing the data directory, log file or ports failed.
    #[error("cannot prepare a test etcd: {action}: {source}")]
    Setup {
        /// What was being prepared.
        action: &'static str,
        /// The IO failure.
        source: std::io::Error,
    },
    /// The binary could not be run.
    #[error("cannot run {}: {source}", path.display())]
    Spawn {
        /// The binary.
        path: PathBuf,
        /// The IO failure.
        source: std::io::Error,
    },
    /// etcd exited during startup.
    #[error("etcd at {endpoint} exited with {status} during startup; its log ends with:\n{log_tail}")]
    Exited {
        /// Its client URL.
        endpoint: String,
        /// How it exited.
        status: ExitStatus,
        /// The end of its log.
        log_tail: String,
    },
    /// etcd ran but never reported itself healthy.
    #[error("etcd at {endpoint} was not healthy after {waited:?}; its log ends with:\n{log_tail}")]
    Unhealthy {
        /// Its client URL.
        endpoint: String,
        /// How long it was given.
        waited: Duration,
        /// The end of its log.
        log_tail: String,
    },
}

/// A single-member etcd cluster on loopback, for tests. Dropping it kills etcd and removes its
/// data.
pub struct EtcdServer {
    /// The client URL, e.g. `http://127.0.0.1:41234`.
    pub endpoint: String,
    child: Child,
    dir: TempDir,
}

impl EtcdServer {
    /// Starts etcd and waits until it is healthy.
    ///
    /// # Panics
    ///
    /// When etcd cannot be started, with the reason: a missing binary says to
    /// `apt-get install etcd-server`. Tests needing etcd fail rather than skip.
    pub fn start() -> EtcdServer {
        Self::try_start().unwrap_or_else(|error| panic!("{error}"))
    }

    /// Starts etcd and waits until it is healthy.
    pub fn try_start() -> Result<EtcdServer, EtcdServerError> {
        let binary = std::env::var_os("FLOTILLA_ETCD").map_or_else(|| PathBuf::from(DEFAULT_ETCD_BINARY), PathBuf::from);
        if !binary.is_file() {
            return Err(EtcdServerError::Missing { path: binary });
        }
        let mut attempt = 1;
        loop {
            match Self::launch(&binary) {
                Err(EtcdServerError::Exited { .. }) if attempt < START_ATTEMPTS => attempt += 1,
                outcome => return outcome,
            }
        }
    }

    /// The endpoints in the form [`crate::EtcdStore::connect`] takes.
    pub fn endpoints(&self) -> Vec<String> {
        vec![self.endpoint.clone()]
    }

    /// etcd's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn launch(binary: &Path) -> Result<EtcdServer, EtcdServerError> {
        let setup = |action| move |source| EtcdServerError::Setup { action, source };
        let dir = tempfile::Builder::new().prefix("flotilla-etcd-").tempdir().map_err(setup("create a data directory"))?;
        let log = File::create(dir.path().join("etcd.log")).map_err(setup("create the log file"))?;
        let log_err = log.try_clone().map_err(setup("share the log file"))?;
        let client = free_port().map_err(setup("find a free client port"))?;
        let peer = free_port().map_err(setup("find a free peer port"))?;
        let endpoint = format!("http://{client}");
        let peer_url = format!("http://{peer}");
        let child = Command::new(binary)
            .arg("--name=flotilla-test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=flotilla-test={peer_url}"))
            .arg("--initial-cluster-state=new")
            .args(["--logger=zap", "--log-outputs=stderr", "--log-level=warn"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|source| EtcdServerError::Spawn { path: binary.to_path_buf(), source })?;
        let mut server = EtcdServer { endpoint, child, dir };
        server.wait_healthy(client)?;
        Ok(server)
    }

    fn wait_healthy(&mut self, client: SocketAddr) -> Result<(), EtcdServerError> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(EtcdServerError::Exited { endpoint: self.endpoint.clone(), status, log_tail: self.log_tail() });
            }
            if is_healthy(client) {
                return Ok(());
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                return Err(EtcdServerError::Unhealthy { endpoint: self.endpoint.clone(), waited: STARTUP_TIMEOUT, log_tail: self.log_tail() });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The last lines of etcd's log.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        // Already exited is fine; there is nothing else to do about a failed kill in a drop.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> std::io::Result<SocketAddr> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()
}

/// Whether etcd's `/health` endpoint at `client` says it is healthy.
fn is_healthy(client: SocketAddr) -> bool {
    let check = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&client, Duration::from_millis(200))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        write!(stream, "GET /health HTTP/1.0\r\nHost: {client}\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response.contains("\"health\":\"true\""))
    };
    check().unwrap_or(false)
}
