//! A "pod" for the network benchmarks: a network namespace with its end of a veth pair, the
//! host end addressed on a /30; removed when dropped.

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{bail, Context as _, Result};

/// Runs `ip` with `args`; an error carries its stderr.
pub fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("running ip (apt-get install iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// The namespace and its veth.
pub struct PodNs {
    /// The namespace's name (under /run/netns).
    pub netns: &'static str,
    /// The host end of the veth.
    pub host_veth: &'static str,
}

impl PodNs {
    /// Creates `netns` (replacing a leftover of an earlier run) with `eth0` at `pod_ip`/30,
    /// its peer `host_veth` at `host_ip`/30 on the host.
    pub fn create(netns: &'static str, host_veth: &'static str, host_ip: Ipv4Addr, pod_ip: Ipv4Addr) -> Result<PodNs> {
        let _ = ip(&["link", "delete", host_veth]);
        let _ = ip(&["netns", "delete", netns]);
        ip(&["netns", "add", netns])?;
        let pod = PodNs { netns, host_veth };
        ip(&["link", "add", host_veth, "type", "veth", "peer", "name", "eth0", "netns", netns])?;
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", host_veth])?;
        ip(&["link", "set", host_veth, "up"])?;
        ip(&["-n", netns, "addr", "add", &format!("{pod_ip}/30"), "dev", "eth0"])?;
        ip(&["-n", netns, "link", "set", "eth0", "up"])?;
        ip(&["-n", netns, "link", "set", "lo", "up"])?;
        Ok(pod)
    }
}

impl Drop for PodNs {
    fn drop(&mut self) {
        let _ = ip(&["link", "delete", self.host_veth]);
        let _ = ip(&["netns", "delete", self.netns]);
    }
}
