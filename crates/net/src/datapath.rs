//! The policy datapath (`bpf/policy.c`) loaded from Rust: its two tc programs attached to a
//! pod's host veth, and the maps the control side fills — IP → identity (the ipcache), the
//! allowed (pod identity, peer identity, port, protocol, direction) entries, and which pod
//! identities are restricted in which direction. A change to a map takes effect on the next
//! packet: nothing is re-attached and no pod is restarted.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use aya::maps::lpm_trie::{Key as LpmKey, LpmTrie};
use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::tc::{self, SchedClassifierLinkId};
use aya::programs::{SchedClassifier, TcAttachType};
use aya::Ebpf;
use ipnet::Ipv4Net;

use crate::flows::FlowReader;

/// The identity of addresses no ipcache entry covers (outside the cluster).
pub const IDENTITY_WORLD: u32 = 2;

/// The compiled programs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/policy.o"));

/// Which way a packet travels, seen from the pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// To the pod.
    Ingress = 0,
    /// From the pod.
    Egress = 1,
}

/// An IP protocol a rule names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// ICMP (no ports: its rules have none).
    Icmp = 1,
    /// TCP.
    Tcp = 6,
    /// UDP.
    Udp = 17,
    /// SCTP.
    Sctp = 132,
}

/// One allowed kind of traffic for pods of identity `local`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rule {
    /// The identity of the pods the rule is for.
    pub local: u32,
    /// The identity of the other end; `None`: any.
    pub peer: Option<u32>,
    /// The destination port; `None`: any.
    pub port: Option<u16>,
    /// The protocol.
    pub protocol: Protocol,
    /// The direction it allows.
    pub direction: Direction,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct PolicyKey {
    local_identity: u32,
    peer_identity: u32,
    port: u16,
    protocol: u8,
    direction: u8,
}

// SAFETY: plain old data with no padding (4 + 4 + 2 + 1 + 1 bytes), laid out as in policy.c.
unsafe impl aya::Pod for PolicyKey {}

impl From<&Rule> for PolicyKey {
    fn from(rule: &Rule) -> Self {
        PolicyKey {
            local_identity: rule.local,
            peer_identity: rule.peer.unwrap_or(0),
            port: rule.port.unwrap_or(0),
            protocol: rule.protocol as u8,
            direction: rule.direction as u8,
        }
    }
}

/// Why the datapath could not be set up or changed; each names the program, map or link.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    /// The kernel refused the object (no BPF, no BTF, a verifier rejection).
    #[error("loading the eBPF policy programs: {0}")]
    Load(String),
    /// A program or map is missing from the object, or has another type.
    #[error("the eBPF object has no usable {0}")]
    Missing(&'static str),
    /// tc could not take the programs on a link.
    #[error("attaching the policy programs to {link}: {reason}")]
    Attach {
        /// The link.
        link: String,
        /// What failed.
        reason: String,
    },
    /// A map update failed.
    #[error("updating the {map} map: {reason}")]
    Map {
        /// The map.
        map: &'static str,
        /// What failed.
        reason: String,
    },
}

/// The error of a failed update of `map`.
pub(crate) fn map_error(map: &'static str) -> impl Fn(aya::maps::MapError) -> DatapathError {
    move |e| DatapathError::Map { map, reason: e.to_string() }
}

/// The result of removing a key from `map`: a key that was not there is no error.
pub(crate) fn removed(result: Result<(), aya::maps::MapError>, map: &'static str) -> Result<(), DatapathError> {
    match result {
        Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        other => other.map_err(map_error(map)),
    }
}

/// The loaded programs and their maps.
pub struct Datapath {
    ebpf: Ebpf,
    ipcache: LpmTrie<MapData, u32, u32>,
    policy: BpfHashMap<MapData, PolicyKey, u8>,
    enforced: BpfHashMap<MapData, u64, u8>,
    counters: PerCpuArray<MapData, u64>,
    settings: Array<MapData, u32>,
    flows: Option<FlowReader>,
    links: HashMap<String, [SchedClassifierLinkId; 2]>,
}

/// Packets the programs passed and dropped, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Passed.
    pub passed: u64,
    /// Dropped by policy.
    pub dropped: u64,
    /// Flow reports lost because the ring buffer was full.
    pub flows_lost: u64,
}

/// `SETTINGS` index of the flow log switch (`SETTING_FLOW_LOG` in policy.c).
const SETTING_FLOW_LOG: u32 = 0;

impl Datapath {
    /// Loads the programs into the kernel. An error says which step failed: on a kernel
    /// without the hooks this is where the agent learns it.
    pub fn load() -> Result<Datapath, DatapathError> {
        let mut ebpf = Ebpf::load(OBJECT).map_err(|e| DatapathError::Load(e.to_string()))?;
        for name in ["from_pod", "to_pod"] {
            classifier(&mut ebpf, name)?.load().map_err(|e| DatapathError::Load(format!("{name}: {e}")))?;
        }
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(DatapathError::Missing(name));
        let ipcache = LpmTrie::try_from(take("IPCACHE")?).map_err(map_error("IPCACHE"))?;
        let policy = BpfHashMap::try_from(take("POLICY")?).map_err(map_error("POLICY"))?;
        let enforced = BpfHashMap::try_from(take("ENFORCED")?).map_err(map_error("ENFORCED"))?;
        let counters = PerCpuArray::try_from(take("COUNTERS")?).map_err(map_error("COUNTERS"))?;
        let settings = Array::try_from(take("SETTINGS")?).map_err(map_error("SETTINGS"))?;
        let flows = Some(FlowReader::new(RingBuf::try_from(take("FLOWS")?).map_err(map_error("FLOWS"))?));
        Ok(Datapath { ebpf, ipcache, policy, enforced, counters, settings, flows, links: HashMap::new() })
    }

    /// Attaches the programs to `link`, the host end of a pod's veth (in this process's
    /// network namespace): `from_pod` on its tc ingress, `to_pod` on its egress.
    pub fn attach(&mut self, link: &str) -> Result<(), DatapathError> {
        let failed = |reason: String| DatapathError::Attach { link: link.to_string(), reason };
        ensure_clsact(link)?;
        // Filters an earlier agent left (its programs and maps live on with them) would judge
        // every packet before ours, by a policy that no longer holds.
        for (name, hook) in [("from_pod", TcAttachType::Ingress), ("to_pod", TcAttachType::Egress)] {
            let _ = tc::qdisc_detach_program(link, hook, name);
        }
        self.links.remove(link);
        let mut ids = Vec::with_capacity(2);
        for (name, hook) in [("from_pod", TcAttachType::Ingress), ("to_pod", TcAttachType::Egress)] {
            ids.push(classifier(&mut self.ebpf, name)?.attach_with_options(link, hook, netlink()).map_err(|e| failed(format!("{name}: {e}")))?);
        }
        if let Ok(ids) = <[SchedClassifierLinkId; 2]>::try_from(ids) {
            self.links.insert(link.to_string(), ids);
        }
        Ok(())
    }

    /// Detaches the programs from `link` (a link deleted with its pod takes them along).
    pub fn detach(&mut self, link: &str) -> Result<(), DatapathError> {
        let Some(ids) = self.links.remove(link) else { return Ok(()) };
        for (name, id) in ["from_pod", "to_pod"].into_iter().zip(ids) {
            classifier(&mut self.ebpf, name)?
                .detach(id)
                .map_err(|e| DatapathError::Attach { link: link.to_string(), reason: format!("detaching {name}: {e}") })?;
        }
        Ok(())
    }

    /// Forgets `link` (deleted with its pod, taking the programs along).
    pub fn forget(&mut self, link: &str) {
        self.links.remove(link);
    }

    /// Addresses in `net` belong to `identity`.
    pub fn set_identity(&mut self, net: Ipv4Net, identity: u32) -> Result<(), DatapathError> {
        self.ipcache.insert(&lpm_key(net), identity, 0).map_err(map_error("IPCACHE"))
    }

    /// Forgets the identity of `net`.
    pub fn remove_identity(&mut self, net: Ipv4Net) -> Result<(), DatapathError> {
        removed(self.ipcache.remove(&lpm_key(net)), "IPCACHE")
    }

    /// Allows what `rule` describes.
    pub fn allow(&mut self, rule: &Rule) -> Result<(), DatapathError> {
        self.policy.insert(PolicyKey::from(rule), 1, 0).map_err(map_error("POLICY"))
    }

    /// Takes back `rule`; connections it let through go on, new ones are judged without it.
    pub fn revoke(&mut self, rule: &Rule) -> Result<(), DatapathError> {
        removed(self.policy.remove(&PolicyKey::from(rule)), "POLICY")
    }

    /// Restricts pods of `identity` in `direction` to what rules allow (`true`), or lifts it.
    pub fn enforce(&mut self, identity: u32, direction: Direction, on: bool) -> Result<(), DatapathError> {
        let key = (u64::from(identity) << 1) | direction as u64;
        if on {
            return self.enforced.insert(key, 1, 0).map_err(map_error("ENFORCED"));
        }
        removed(self.enforced.remove(&key), "ENFORCED")
    }

    /// Packets passed and dropped so far.
    pub fn counters(&self) -> Result<Counters, DatapathError> {
        let sum = |index: u32| self.counters.get(&index, 0).map(|values| values.iter().sum::<u64>()).map_err(map_error("COUNTERS"));
        Ok(Counters { passed: sum(0)?, dropped: sum(1)?, flows_lost: sum(2)? })
    }

    /// Turns the flow reports on or off (off when loaded).
    pub fn set_flow_log(&mut self, on: bool) -> Result<(), DatapathError> {
        self.settings.set(SETTING_FLOW_LOG, u32::from(on), 0).map_err(map_error("SETTINGS"))
    }

    /// The reader of the flow reports; there is one, and the first call takes it.
    pub fn take_flows(&mut self) -> Option<FlowReader> {
        self.flows.take()
    }
}

/// The tc program `name` of the object.
impl Drop for Datapath {
    /// Leaves the filters on the pods' links: an agent that stops (or restarts) leaves its
    /// pods under the last policy it wrote, and the next agent replaces the filters.
    fn drop(&mut self) {
        for (_, ids) in self.links.drain() {
            for (name, id) in ["from_pod", "to_pod"].into_iter().zip(ids) {
                if let Ok(link) = classifier(&mut self.ebpf, name).and_then(|p| p.take_link(id).map_err(|_| DatapathError::Missing("link"))) {
                    std::mem::forget(link);
                }
            }
        }
    }
}

/// Adds the clsact qdisc, which tc programs hang from, to `link` where it has none.
pub(crate) fn ensure_clsact(link: &str) -> Result<(), DatapathError> {
    match tc::qdisc_add_clsact(link) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(DatapathError::Attach { link: link.to_string(), reason: format!("adding the clsact qdisc: {e}") })
        }
        _ => Ok(()),
    }
}

/// Attach as tc filters through netlink, not as TCX links (aya's default on Linux 6.6 and
/// later): a filter holds its program and maps itself, so the pods stay under the last policy
/// written while the agent is down or restarting, instead of losing it with the agent's
/// descriptors; the next agent replaces the filters by name.
pub(crate) fn netlink() -> tc::TcAttachOptions {
    tc::TcAttachOptions::Netlink(tc::NlOptions::default())
}

fn classifier<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut SchedClassifier, DatapathError> {
    ebpf.program_mut(name).ok_or(DatapathError::Missing("program"))?.try_into().map_err(|_| DatapathError::Missing("tc program"))
}

fn lpm_key(net: Ipv4Net) -> LpmKey<u32> {
    let net = net.trunc();
    // The trie compares the address bytes in network order.
    LpmKey::new(u32::from(net.prefix_len()), u32::from(net.network()).to_be())
}

/// The address as the datapath keys it (for tests and logs).
pub fn host_net(ip: Ipv4Addr) -> Ipv4Net {
    Ipv4Net::new(ip, 32).unwrap_or_default()
}
