//! The flow reports of the policy datapath: one per flow the tc programs judged (the packet
//! that made a conntrack entry, or one they dropped), read from its `FLOWS` ring buffer.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, SystemTime};

use aya::maps::{MapData, RingBuf};

use crate::Direction;

/// What the datapath did with a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let through.
    Forwarded,
    /// Dropped.
    Dropped,
}

/// Why a flow was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// No policy allows it.
    PolicyDenied,
    /// A code this build does not know.
    Other(u8),
}

/// One flow as the datapath saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observed {
    /// When the packet was judged.
    pub time: SystemTime,
    /// The packet's source.
    pub source: SocketAddrV4,
    /// Its destination.
    pub destination: SocketAddrV4,
    /// The IP protocol number.
    pub protocol: u8,
    /// The way it went, seen from the pod whose veth judged it.
    pub direction: Direction,
    /// The identity of the source.
    pub source_identity: u32,
    /// The identity of the destination.
    pub destination_identity: u32,
    /// Forwarded or dropped.
    pub verdict: Verdict,
    /// Why it was dropped.
    pub reason: Option<DropReason>,
}

/// A report as the programs write it (`struct flow_event` in `bpf/policy.c`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct FlowRecord {
    time_ns: u64,
    saddr: u32,
    daddr: u32,
    sport: u16,
    dport: u16,
    local_identity: u32,
    peer_identity: u32,
    protocol: u8,
    direction: u8,
    verdict: u8,
    reason: u8,
}

const RECORD_BYTES: usize = std::mem::size_of::<FlowRecord>();
const _: () = assert!(RECORD_BYTES == 32, "FlowRecord must match struct flow_event");

/// Reads the reports.
pub struct FlowReader {
    ring: RingBuf<MapData>,
}

impl FlowReader {
    pub(crate) fn new(ring: RingBuf<MapData>) -> FlowReader {
        FlowReader { ring }
    }

    /// Hands every report waiting now to `each`; returns how many there were.
    pub fn drain(&mut self, mut each: impl FnMut(Observed)) -> usize {
        let clock = Clock::now();
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            if let Some(observed) = decode(&item, &clock) {
                each(observed);
            }
            n += 1;
        }
        n
    }
}

/// Readable when reports are waiting (for epoll, or tokio's `AsyncFd`).
impl AsRawFd for FlowReader {
    fn as_raw_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}

/// Turns the datapath's monotonic times into wall-clock ones.
struct Clock {
    wall: SystemTime,
    monotonic_ns: u64,
}

impl Clock {
    fn now() -> Clock {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes the timespec it is given and nothing else.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        let monotonic_ns = (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64);
        Clock { wall: SystemTime::now(), monotonic_ns }
    }

    fn wall(&self, monotonic_ns: u64) -> SystemTime {
        self.wall - Duration::from_nanos(self.monotonic_ns.saturating_sub(monotonic_ns))
    }
}

/// A report's bytes as an [`Observed`] flow; `None` for a short or malformed one.
fn decode(bytes: &[u8], clock: &Clock) -> Option<Observed> {
    let bytes: &[u8; RECORD_BYTES] = bytes.get(..RECORD_BYTES)?.try_into().ok()?;
    // SAFETY: FlowRecord is plain old data of exactly these many bytes; read_unaligned copes
    // with any alignment of the ring's memory.
    let r: FlowRecord = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    let direction = match r.direction {
        0 => Direction::Ingress,
        1 => Direction::Egress,
        _ => return None,
    };
    let (verdict, reason) = match (r.verdict, r.reason) {
        (0, _) => (Verdict::Forwarded, None),
        (1, 1) => (Verdict::Dropped, Some(DropReason::PolicyDenied)),
        (1, other) => (Verdict::Dropped, Some(DropReason::Other(other))),
        _ => return None,
    };
    // The pod's own end is the destination of what comes in and the source of what goes out.
    let (source_identity, destination_identity) = match direction {
        Direction::Ingress => (r.peer_identity, r.local_identity),
        Direction::Egress => (r.local_identity, r.peer_identity),
    };
    Some(Observed {
        time: clock.wall(r.time_ns),
        source: SocketAddrV4::new(Ipv4Addr::from(u32::from_be(r.saddr)), r.sport),
        destination: SocketAddrV4::new(Ipv4Addr::from(u32::from_be(r.daddr)), r.dport),
        protocol: r.protocol,
        direction,
        source_identity,
        destination_identity,
        verdict,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of(r: FlowRecord) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&r.time_ns.to_ne_bytes());
        out.extend_from_slice(&r.saddr.to_ne_bytes());
        out.extend_from_slice(&r.daddr.to_ne_bytes());
        out.extend_from_slice(&r.sport.to_ne_bytes());
        out.extend_from_slice(&r.dport.to_ne_bytes());
        out.extend_from_slice(&r.local_identity.to_ne_bytes());
        out.extend_from_slice(&r.peer_identity.to_ne_bytes());
        out.extend_from_slice(&[r.protocol, r.direction, r.verdict, r.reason]);
        out
    }

    fn record(direction: u8, verdict: u8, reason: u8) -> FlowRecord {
        FlowRecord {
            time_ns: 1_000_000_000,
            saddr: u32::from(Ipv4Addr::new(10, 42, 0, 5)).to_be(),
            daddr: u32::from(Ipv4Addr::new(10, 42, 0, 6)).to_be(),
            sport: 40000,
            dport: 80,
            local_identity: 300,
            peer_identity: 400,
            protocol: 6,
            direction,
            verdict,
            reason,
        }
    }

    #[test]
    fn a_report_decodes_with_identities_on_the_right_ends() {
        let clock = Clock { wall: SystemTime::UNIX_EPOCH + Duration::from_secs(100), monotonic_ns: 3_000_000_000 };
        let out = decode(&bytes_of(record(1, 0, 0)), &clock).expect("decodes");
        assert_eq!(out.source, "10.42.0.5:40000".parse().unwrap());
        assert_eq!(out.destination, "10.42.0.6:80".parse().unwrap());
        assert_eq!((out.source_identity, out.destination_identity), (300, 400), "egress: the pod is the source");
        assert_eq!(out.verdict, Verdict::Forwarded);
        assert_eq!(out.reason, None);
        assert_eq!(out.time, SystemTime::UNIX_EPOCH + Duration::from_secs(98), "two seconds before the clock was read");
        let dropped = decode(&bytes_of(record(0, 1, 1)), &clock).expect("decodes");
        assert_eq!((dropped.source_identity, dropped.destination_identity), (400, 300), "ingress: the pod is the destination");
        assert_eq!((dropped.verdict, dropped.reason), (Verdict::Dropped, Some(DropReason::PolicyDenied)));
    }

    #[test]
    fn a_short_or_unknown_report_is_left_out() {
        let clock = Clock::now();
        assert!(decode(&bytes_of(record(1, 0, 0))[..31], &clock).is_none());
        assert!(decode(&bytes_of(record(2, 0, 0)), &clock).is_none(), "no such direction");
        assert!(decode(&bytes_of(record(0, 7, 0)), &clock).is_none(), "no such verdict");
        let other = decode(&bytes_of(record(0, 1, 9)), &clock).expect("a new reason still decodes");
        assert_eq!(other.reason, Some(DropReason::Other(9)));
    }
}
