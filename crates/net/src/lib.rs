//! Flotilla's networking datapath: identity-based L3/L4 policy in eBPF (tc programs written in
//! C, compiled by clang at build time, loaded with aya), with connection tracking of its own and
//! a report of every flow it judges, and service load balancing at the socket (cgroup
//! connect/sendmsg programs).

pub mod datapath;
pub mod dns;
pub mod flows;
pub mod policy;
pub mod redirect;
pub mod service;

pub use datapath::{Counters, Datapath, DatapathError, Direction, Protocol, Rule, IDENTITY_WORLD};
