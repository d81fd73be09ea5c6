//! Flotilla's networking datapath: identity-based L3/L4 policy in eBPF (tc programs written in
//! C, compiled by clang at build time, loaded with aya), with connection tracking of its own.

pub mod datapath;
pub mod policy;

pub use datapath::{Counters, Datapath, DatapathError, Direction, Protocol, Rule, IDENTITY_WORLD};
