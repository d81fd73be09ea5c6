//! Pod IP allocation that survives restarts: one file per allocated address, named by the
//! address and holding the pod uid, claimed atomically with `link(2)` so no address is ever
//! handed out twice, even by two processes.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use ipnet::Ipv4Net;

use super::NetworkError;

use crate::PathError;

/// Prefix of the files a claim is written to before it is linked into place.
const TEMP_PREFIX: &str = ".claim-";

/// The allocator of one pod network.
pub(crate) struct Ipam {
    dir: PathBuf,
    cidr: Ipv4Net,
    gateway: Ipv4Addr,
    state: Mutex<State>,
}

struct State {
    by_pod: HashMap<String, Ipv4Addr>,
    /// Where the next search starts, so a just-released address is not reused at once.
    next: u32,
}

impl Ipam {
    /// Opens (creating) the allocation directory and loads what is recorded there.
    pub(crate) fn open(dir: PathBuf, cidr: Ipv4Net, gateway: Ipv4Addr) -> Result<Self, NetworkError> {
        std::fs::create_dir_all(&dir).map_err(|source| io("create", &dir, source))?;
        let mut by_pod = HashMap::new();
        for (ip, pod) in read_allocations(&dir)? {
            if let Some(other) = by_pod.insert(pod.clone(), ip) {
                tracing::warn!(pod, %ip, %other, "pod holds two addresses; keeping {ip}");
            }
        }
        Ok(Ipam { dir, cidr, gateway, state: Mutex::new(State { by_pod, next: 0 }) })
    }

    /// The pod's address: the one already recorded, or a newly claimed one. The flag says
    /// whether it is new.
    pub(crate) fn allocate(&self, pod_uid: &str) -> Result<(Ipv4Addr, bool), NetworkError> {
        let mut state = self.lock();
        if let Some(ip) = state.by_pod.get(pod_uid) {
            return Ok((*ip, false));
        }
        let first = u32::from(self.cidr.network()) + 1;
        let last = u32::from(self.cidr.broadcast()).saturating_sub(1);
        let size = last.saturating_sub(first) + 1;
        if last < first {
            return Err(self.exhausted(pod_uid));
        }
        let claim = self.write_claim(pod_uid)?;
        let result =
            (0..size).map(|offset| Ipv4Addr::from(first + (state.next + offset) % size)).filter(|ip| *ip != self.gateway).find_map(
                |ip| match std::fs::hard_link(&claim, self.dir.join(ip.to_string())) {
                    Ok(()) => Some(Ok(ip)),
                    Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => None,
                    Err(source) => Some(Err(io("claim address in", &self.dir, source))),
                },
            );
        let _ = std::fs::remove_file(&claim);
        let ip = result.unwrap_or_else(|| Err(self.exhausted(pod_uid)))?;
        sync_dir(&self.dir)?;
        state.next = (u32::from(ip) - first + 1) % size;
        state.by_pod.insert(pod_uid.to_string(), ip);
        Ok((ip, true))
    }

    /// Frees the pod's address; a pod without one is not an error. A file that names another
    /// pod is left alone.
    pub(crate) fn release(&self, pod_uid: &str) -> Result<Option<Ipv4Addr>, NetworkError> {
        let mut state = self.lock();
        let Some(ip) = state.by_pod.remove(pod_uid) else {
            return Ok(None);
        };
        let path = self.dir.join(ip.to_string());
        match std::fs::read_to_string(&path) {
            Ok(owner) if owner.trim() == pod_uid => {
                std::fs::remove_file(&path).map_err(|source| io("remove", &path, source))?;
                sync_dir(&self.dir)?;
            }
            Ok(owner) => {
                tracing::warn!(pod_uid, %ip, owner, "address file names another pod; kept")
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(io("read", &path, source)),
        }
        Ok(Some(ip))
    }

    /// Every recorded allocation, read from disk.
    pub(crate) fn allocations(&self) -> Result<Vec<(Ipv4Addr, String)>, NetworkError> {
        let _state = self.lock();
        read_allocations(&self.dir)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes the pod uid to a private, fsync'd file that [`Self::allocate`] links into place.
    fn write_claim(&self, pod_uid: &str) -> Result<PathBuf, NetworkError> {
        let path = self.dir.join(format!("{TEMP_PREFIX}{}-{pod_uid}", std::process::id()));
        let mut file = File::create(&path).map_err(|source| io("create", &path, source))?;
        file.write_all(pod_uid.as_bytes()).map_err(|source| io("write", &path, source))?;
        file.sync_all().map_err(|source| io("sync", &path, source))?;
        Ok(path)
    }

    fn exhausted(&self, pod_uid: &str) -> NetworkError {
        NetworkError::PoolExhausted { cidr: self.cidr, pod_uid: pod_uid.to_string() }
    }
}

/// Reads `<ip>` files; leftovers of interrupted claims are removed.
fn read_allocations(dir: &Path) -> Result<Vec<(Ipv4Addr, String)>, NetworkError> {
    let mut allocations = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|source| io("read", dir, source))? {
        let entry = entry.map_err(|source| io("read", dir, source))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(TEMP_PREFIX) {
            // A claim older than this process can no longer be linked by anyone.
            if !name.starts_with(&format!("{TEMP_PREFIX}{}-", std::process::id())) {
                let _ = std::fs::remove_file(entry.path());
            }
            continue;
        }
        let Ok(ip) = name.parse::<Ipv4Addr>() else {
            continue;
        };
        let owner = std::fs::read_to_string(entry.path()).map_err(|source| io("read", &entry.path(), source))?;
        allocations.push((ip, owner.trim().to_string()));
    }
    allocations.sort();
    Ok(allocations)
}

fn sync_dir(dir: &Path) -> Result<(), NetworkError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|source| io("sync", dir, source))
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> NetworkError {
    NetworkError::Io(PathError { action, path: path.into(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipam(dir: &Path, cidr: &str) -> Ipam {
        let cidr: Ipv4Net = cidr.parse().expect("cidr");
        let gateway = Ipv4Addr::from(u32::from(cidr.network()) + 1);
        Ipam::open(dir.join("ipam"), cidr, gateway).expect("open")
    }

    #[test]
    fn never_hands_out_gateway_network_or_broadcast_and_reports_exhaustion() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ipam = ipam(dir.path(), "10.1.2.0/29"); // .1 gateway, .2-.6 pods, .7 broadcast
        let ips: Vec<_> = (0..5).map(|n| ipam.allocate(&format!("pod{n}")).expect("allocate").0).collect();
        let expected: Vec<Ipv4Addr> = (2..=6).map(|host| Ipv4Addr::new(10, 1, 2, host)).collect();
        assert_eq!(ips, expected);
        let err = ipam.allocate("pod5").expect_err("pool is full");
        assert!(err.to_string().contains("10.1.2.0/29"), "{err}");
        assert_eq!(ipam.allocate("pod3").expect("idempotent"), (Ipv4Addr::new(10, 1, 2, 5), false));
    }

    #[test]
    fn release_frees_and_restart_remembers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = ipam(dir.path(), "10.1.3.0/24");
        let (a, _) = first.allocate("a").expect("a");
        let (b, _) = first.allocate("b").expect("b");
        assert_eq!(first.release("a").expect("release"), Some(a));
        assert_eq!(first.release("a").expect("again"), None);
        drop(first);
        let reopened = ipam(dir.path(), "10.1.3.0/24");
        assert_eq!(reopened.allocate("b").expect("known"), (b, false));
        assert_eq!(reopened.allocations().expect("list"), vec![(b, "b".to_string())]);
    }

    #[test]
    fn two_allocators_on_one_directory_never_share_an_address() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (x, y) = (ipam(dir.path(), "10.1.4.0/24"), ipam(dir.path(), "10.1.4.0/24"));
        let mut all: Vec<Ipv4Addr> = Vec::new();
        std::thread::scope(|scope| {
            let hx = scope.spawn(|| (0..50).map(|n| x.allocate(&format!("x{n}")).expect("x").0).collect::<Vec<_>>());
            let hy = scope.spawn(|| (0..50).map(|n| y.allocate(&format!("y{n}")).expect("y").0).collect::<Vec<_>>());
            all.extend(hx.join().expect("x thread"));
            all.extend(hy.join().expect("y thread"));
        });
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 100);
    }
}
