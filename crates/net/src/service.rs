//! The service load balancer (`bpf/service.c`) loaded from Rust: its socket programs attached
//! to the cgroup v2 root, and the maps that say which virtual addresses exist and which
//! backends stand behind each. A change takes effect on the next connect(): connections
//! already made keep their backend, so a backend taken out stops getting new ones while its
//! open ones finish.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray};
use aya::programs::{CgroupAttachMode, CgroupSockAddr};
use aya::Ebpf;

use crate::datapath::{map_error, removed, DatapathError};

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/service.o"));

const PROGRAMS: [&str; 4] = ["lb_connect4", "lb_sendmsg4", "lb_recvmsg4", "lb_getpeername4"];

/// A virtual address clients connect to: a cluster IP and port, or a node address and node port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Frontend {
    /// The address.
    pub addr: Ipv4Addr,
    /// The port.
    pub port: u16,
    /// TCP or UDP.
    pub protocol: L4,
}

/// The transport a frontend serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum L4 {
    /// TCP.
    Tcp = 6,
    /// UDP.
    Udp = 17,
}

/// What stands behind a frontend.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Backends {
    /// The backends' addresses (ready pods).
    pub addrs: Vec<SocketAddrV4>,
    /// ClientIP session affinity: a client keeps its backend for this long after its last
    /// connection. A client is a network namespace (a pod, or the node itself).
    pub affinity: Option<Duration>,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct SvcKey {
    addr: u32,
    port: u16,
    protocol: u8,
    pad: u8,
    slot: u16,
    pad2: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct SvcValue {
    backend: u32,
    count: u16,
    flags: u8,
    pad: u8,
    affinity_seconds: u32,
    id: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct Backend {
    addr: u32,
    port: u16,
    pad: u16,
}

// SAFETY: plain old data laid out as in service.c, padding fields explicit and zeroed.
unsafe impl aya::Pod for SvcKey {}
// SAFETY: as above.
unsafe impl aya::Pod for SvcValue {}
// SAFETY: as above.
unsafe impl aya::Pod for Backend {}

fn key(frontend: &Frontend, slot: u16) -> SvcKey {
    SvcKey { addr: u32::from(frontend.addr).to_be(), port: frontend.port, protocol: frontend.protocol as u8, pad: 0, slot, pad2: 0 }
}

struct Installed {
    id: u32,
    /// Backend address → its id, in slot order.
    backends: Vec<(SocketAddrV4, u32)>,
}

/// The loaded programs, their maps, and what was written to them.
pub struct Balancer {
    _ebpf: Ebpf,
    services: BpfHashMap<MapData, SvcKey, SvcValue>,
    backends: BpfHashMap<MapData, u32, Backend>,
    netns: BpfHashMap<MapData, u64, u8>,
    counters: PerCpuArray<MapData, u64>,
    installed: HashMap<Frontend, Installed>,
    next_id: u32,
}

/// Connections the programs translated and refused, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LbCounters {
    /// Sent to a backend.
    pub translated: u64,
    /// Refused: the service had no backend.
    pub refused: u64,
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup` on a unified host,
/// `/sys/fs/cgroup/unified` on a hybrid one).
pub fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mounts.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        Some(PathBuf::from(left.split_whitespace().nth(4)?))
    })
}

impl Balancer {
    /// Loads the programs and attaches them to the cgroup v2 hierarchy at `cgroup` (every
    /// process below it, host and pods alike). An error names the step: on a kernel without
    /// socket hooks this is where the agent learns it.
    pub fn load(cgroup: &Path) -> Result<Balancer, DatapathError> {
        let mut ebpf = Ebpf::load(OBJECT).map_err(|e| DatapathError::Load(format!("the service load balancer: {e}")))?;
        let dir = std::fs::File::open(cgroup).map_err(|e| DatapathError::Attach { link: cgroup.display().to_string(), reason: e.to_string() })?;
        for name in PROGRAMS {
            let program: &mut CgroupSockAddr = ebpf
                .program_mut(name)
                .ok_or(DatapathError::Missing("service program"))?
                .try_into()
                .map_err(|_| DatapathError::Missing("cgroup socket program"))?;
            program.load().map_err(|e| DatapathError::Load(format!("{name}: {e}")))?;
            // A bpf_link (kernel 5.7 and later) takes no flags: links on a cgroup always stand
            // beside each other, so other agents on this machine (test "hosts") keep theirs,
            // and ours goes when this process does.
            program
                .attach(&dir, CgroupAttachMode::Single)
                .map_err(|e| DatapathError::Attach { link: cgroup.display().to_string(), reason: format!("{name}: {e}") })?;
        }
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(DatapathError::Missing(name));
        let services = BpfHashMap::try_from(take("SERVICES")?).map_err(map_error("SERVICES"))?;
        let backends = BpfHashMap::try_from(take("BACKENDS")?).map_err(map_error("BACKENDS"))?;
        let netns = BpfHashMap::try_from(take("NETNS")?).map_err(map_error("NETNS"))?;
        let counters = PerCpuArray::try_from(take("LB_COUNTERS")?).map_err(map_error("LB_COUNTERS"))?;
        Ok(Balancer { _ebpf: ebpf, services, backends, netns, counters, installed: HashMap::new(), next_id: 1 })
    }

    /// Serves the sockets of the network namespace with `cookie` (see [`netns_cookie`]).
    pub fn serve_netns(&mut self, cookie: u64) -> Result<(), DatapathError> {
        self.netns.insert(cookie, 1, 0).map_err(map_error("NETNS"))
    }

    /// Stops serving a network namespace (its pod is gone).
    pub fn forget_netns(&mut self, cookie: u64) -> Result<(), DatapathError> {
        removed(self.netns.remove(&cookie), "NETNS")
    }

    fn allocate_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }

    /// Puts `backends` behind `frontend` (creating it). Written so that a connect() racing the
    /// update always finds a backend of the old or the new set, never a missing one.
    pub fn set(&mut self, frontend: Frontend, backends: &Backends) -> Result<(), DatapathError> {
        let mut addrs = backends.addrs.clone();
        addrs.sort();
        addrs.dedup();
        addrs.truncate(usize::from(u16::MAX - 1));
        let existing = self.installed.remove(&frontend);
        let id = match &existing {
            Some(e) => e.id,
            None => self.allocate_id(),
        };
        let old: BTreeMap<SocketAddrV4, u32> = existing.as_ref().map(|e| e.backends.iter().copied().collect()).unwrap_or_default();
        let mut now = Vec::with_capacity(addrs.len());
        for addr in &addrs {
            let backend_id = match old.get(addr) {
                Some(id) => *id,
                None => {
                    let backend_id = self.allocate_id();
                    let value = Backend { addr: u32::from(*addr.ip()).to_be(), port: addr.port(), pad: 0 };
                    self.backends.insert(backend_id, value, 0).map_err(map_error("BACKENDS"))?;
                    backend_id
                }
            };
            now.push((*addr, backend_id));
        }
        for (slot, (_, backend_id)) in now.iter().enumerate() {
            let slot = slot as u16 + 1;
            let unchanged = existing.as_ref().and_then(|e| e.backends.get(usize::from(slot) - 1)).is_some_and(|(_, b)| b == backend_id);
            if !unchanged {
                self.services.insert(key(&frontend, slot), SvcValue { backend: *backend_id, ..Default::default() }, 0).map_err(map_error("SERVICES"))?;
            }
        }
        let affinity_seconds = backends.affinity.map(|d| d.as_secs().clamp(1, u64::from(u32::MAX)) as u32).unwrap_or(0);
        let master = SvcValue { backend: 0, count: now.len() as u16, flags: u8::from(backends.affinity.is_some()), pad: 0, affinity_seconds, id };
        self.services.insert(key(&frontend, 0), master, 0).map_err(map_error("SERVICES"))?;
        let old_count = existing.as_ref().map_or(0, |e| e.backends.len());
        for slot in now.len() + 1..=old_count {
            removed(self.services.remove(&key(&frontend, slot as u16)), "SERVICES")?;
        }
        let kept: std::collections::BTreeSet<u32> = now.iter().map(|(_, b)| *b).collect();
        for backend_id in old.values().filter(|b| !kept.contains(b)) {
            removed(self.backends.remove(backend_id), "BACKENDS")?;
        }
        self.installed.insert(frontend, Installed { id, backends: now });
        Ok(())
    }

    /// Removes `frontend`: connecting to it reaches whatever the address is without the balancer.
    pub fn remove(&mut self, frontend: &Frontend) -> Result<(), DatapathError> {
        let Some(existing) = self.installed.remove(frontend) else { return Ok(()) };
        removed(self.services.remove(&key(frontend, 0)), "SERVICES")?;
        for (slot, (_, backend_id)) in existing.backends.iter().enumerate() {
            removed(self.services.remove(&key(frontend, slot as u16 + 1)), "SERVICES")?;
            removed(self.backends.remove(backend_id), "BACKENDS")?;
        }
        Ok(())
    }

    /// The frontends installed.
    pub fn frontends(&self) -> Vec<Frontend> {
        self.installed.keys().copied().collect()
    }

    /// Connections translated and refused so far.
    pub fn counters(&self) -> Result<LbCounters, DatapathError> {
        let sum = |index: u32| self.counters.get(&index, 0).map(|values| values.iter().sum::<u64>()).map_err(map_error("LB_COUNTERS"));
        Ok(LbCounters { translated: sum(0)?, refused: sum(1)? })
    }
}

/// Runs `make` on a thread that has entered the network namespace at `path` (a file under
/// `/run/netns`, or `/proc/self/ns/net`). A socket it creates stays in that namespace when
/// handed back, so a caller can listen or connect there from any thread.
pub fn in_netns<T: Send>(path: &Path, make: impl FnOnce() -> std::io::Result<T> + Send) -> std::io::Result<T> {
    let file = std::fs::File::open(path)?;
    // setns() changes the calling thread only: do it on a thread of its own, which ends after.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns on a descriptor we own, changing only this thread's namespace.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                make()
            })
            .join()
            .map_err(|_| std::io::Error::other("the network namespace thread panicked"))?
    })
}

/// The cookie the kernel gives the network namespace at `path` (see [`in_netns`]).
pub fn netns_cookie(path: &Path) -> std::io::Result<u64> {
    in_netns(path, || {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").or_else(|_| std::net::UdpSocket::bind("127.0.0.1:0"))?;
        let mut cookie: u64 = 0;
        let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
        // SAFETY: getsockopt into a u64 of the stated length, on a socket we own.
        let rc = unsafe { libc::getsockopt(socket.as_raw_fd(), libc::SOL_SOCKET, libc::SO_NETNS_COOKIE, (&mut cookie as *mut u64).cast(), &mut len) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(cookie)
    })
}
