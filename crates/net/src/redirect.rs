//! The L7 redirect (`bpf/proxy.c`) loaded from Rust: its tc program on a pod's own eth0, and the
//! map of (pod address, port) → the proxy's listening port there. A SYN to a port in the map is
//! handed to the proxy's socket with its addresses kept; the node's own connections (the
//! proxy's to the server, and probes) go straight on.

use std::net::Ipv4Addr;

use aya::maps::{HashMap as BpfHashMap, MapData};
use aya::programs::{tc, SchedClassifier, TcAttachType};
use aya::Ebpf;

use crate::datapath::{map_error, removed, DatapathError};

/// The compiled program.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/proxy.o"));

const PROGRAM: &str = "to_proxy";

#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct RedirectKey {
    addr: u32,
    port: u16,
    pad: u16,
}

// SAFETY: plain old data with no implicit padding (4 + 2 + 2 bytes), laid out as in proxy.c.
unsafe impl aya::Pod for RedirectKey {}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct RedirectValue {
    proxy_port: u16,
    pad: u16,
    exempt: u32,
}

// SAFETY: plain old data with no implicit padding (2 + 2 + 4 bytes), laid out as in proxy.c.
unsafe impl aya::Pod for RedirectValue {}

fn key(pod: Ipv4Addr, port: u16) -> RedirectKey {
    RedirectKey { addr: u32::from_ne_bytes(pod.octets()), port, pad: 0 }
}

/// The loaded program and its map.
pub struct Redirect {
    ebpf: Ebpf,
    map: BpfHashMap<MapData, RedirectKey, RedirectValue>,
}

impl Redirect {
    /// Loads the program; an error names the step that failed.
    pub fn load() -> Result<Redirect, DatapathError> {
        let mut ebpf = Ebpf::load(OBJECT).map_err(|e| DatapathError::Load(format!("the L7 redirect: {e}")))?;
        program(&mut ebpf)?.load().map_err(|e| DatapathError::Load(format!("{PROGRAM}: {e}")))?;
        let map = BpfHashMap::try_from(ebpf.take_map("REDIRECT").ok_or(DatapathError::Missing("REDIRECT"))?).map_err(map_error("REDIRECT"))?;
        Ok(Redirect { ebpf, map })
    }

    /// Attaches the program to `link` on its tc ingress, in the calling thread's network
    /// namespace (a pod's, entered for this), replacing one an earlier agent left. It stays
    /// there until the link goes, with its pod.
    pub fn attach_here(&mut self, link: &str) -> Result<(), DatapathError> {
        let failed = |reason: String| DatapathError::Attach { link: link.to_string(), reason };
        crate::datapath::ensure_clsact(link)?;
        let _ = tc::qdisc_detach_program(link, TcAttachType::Ingress, PROGRAM);
        let program = program(&mut self.ebpf)?;
        let id = program.attach_with_options(link, TcAttachType::Ingress, crate::datapath::netlink()).map_err(|e| failed(format!("{PROGRAM}: {e}")))?;
        // The filter belongs to the pod's link from now on (and outlives this agent, failing
        // closed: a port with HTTP rules is not served while no proxy runs). Dropping the
        // handle would detach it through this thread's namespace, which is not the pod's later.
        let owned = program.take_link(id).map_err(|e| failed(format!("{PROGRAM}: {e}")))?;
        std::mem::forget(owned);
        Ok(())
    }

    /// Takes the program, as any agent left it, off `link` in the calling thread's network
    /// namespace: a filter of an earlier agent's keeps that agent's map, whose proxies are
    /// gone, and would close the ports it names.
    pub fn detach_here(link: &str) {
        let _ = tc::qdisc_detach_program(link, TcAttachType::Ingress, PROGRAM);
    }

    /// Whether another instance of the program is loaded on this machine (an earlier agent's,
    /// still attached to some pod; or another agent's on the same machine).
    pub fn others_loaded(&mut self) -> bool {
        let ours = program(&mut self.ebpf).ok().and_then(|p| p.info().ok()).map(|i| i.id());
        aya::programs::loaded_programs().filter_map(Result::ok).any(|p| p.name_as_str() == Some(PROGRAM) && Some(p.id()) != ours)
    }

    /// New TCP connections to `pod`:`port` go to the proxy listening on `proxy_port` in the
    /// pod's namespace, except those from `exempt` (the node).
    pub fn set(&mut self, pod: Ipv4Addr, port: u16, proxy_port: u16, exempt: Ipv4Addr) -> Result<(), DatapathError> {
        let value = RedirectValue { proxy_port, pad: 0, exempt: u32::from_ne_bytes(exempt.octets()) };
        self.map.insert(key(pod, port), value, 0).map_err(map_error("REDIRECT"))
    }

    /// Connections to `pod`:`port` go straight to the pod again.
    pub fn remove(&mut self, pod: Ipv4Addr, port: u16) -> Result<(), DatapathError> {
        removed(self.map.remove(&key(pod, port)), "REDIRECT")
    }
}

fn program(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier, DatapathError> {
    ebpf.program_mut(PROGRAM).ok_or(DatapathError::Missing(PROGRAM))?.try_into().map_err(|_| DatapathError::Missing(PROGRAM))
}
