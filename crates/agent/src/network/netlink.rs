//! The narrow set of link and namespace operations pod networking needs, and the implementation
//! through iproute2's `ip` command that stands in when the native one cannot start.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use ipnet::Ipv4Net;
use serde::Deserialize;

use super::NetworkError;

use crate::PathError;

/// Where `ip netns` keeps named network namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// How long one `ip` invocation may take.
const IP_TIMEOUT: Duration = Duration::from_secs(20);

/// The network namespace an operation runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Netns<'a> {
    /// The agent's own (host) namespace.
    Host,
    /// A namespace created with [`Netlink::add_netns`].
    Named(&'a str),
}

/// Link and namespace operations, each a single kernel change. Callers make them idempotent by
/// checking first; implementations report failures as they are.
#[async_trait]
pub trait Netlink: Send + Sync {
    /// Whether the named network namespace exists.
    async fn netns_exists(&self, name: &str) -> Result<bool, NetworkError>;
    /// Creates a named network namespace (mounted under [`NETNS_DIR`]).
    async fn add_netns(&self, name: &str) -> Result<(), NetworkError>;
    /// Removes a named network namespace and, with it, the links inside.
    async fn delete_netns(&self, name: &str) -> Result<(), NetworkError>;
    /// Whether a link exists in a namespace.
    async fn link_exists(&self, ns: Netns<'_>, link: &str) -> Result<bool, NetworkError>;
    /// Creates a bridge in the host namespace.
    async fn add_bridge(&self, name: &str) -> Result<(), NetworkError>;
    /// Creates a veth pair: `host` in the host namespace, `peer` directly inside `peer_netns`.
    async fn add_veth(&self, host: &str, peer: &str, peer_netns: &str) -> Result<(), NetworkError>;
    /// Deletes a host link (a veth's peer goes with it).
    async fn delete_link(&self, link: &str) -> Result<(), NetworkError>;
    /// Attaches a host link to a bridge.
    async fn set_master(&self, link: &str, bridge: &str) -> Result<(), NetworkError>;
    /// Sets a link up.
    async fn set_up(&self, ns: Netns<'_>, link: &str) -> Result<(), NetworkError>;
    /// The IPv4 addresses on a link.
    async fn addresses(&self, ns: Netns<'_>, link: &str) -> Result<Vec<Ipv4Net>, NetworkError>;
    /// Adds an IPv4 address (with its broadcast address) to a link.
    async fn add_address(&self, ns: Netns<'_>, link: &str, addr: Ipv4Net) -> Result<(), NetworkError>;
    /// Sets the namespace's default route to `gateway`, replacing any other.
    async fn replace_default_route(&self, ns: Netns<'_>, gateway: Ipv4Addr) -> Result<(), NetworkError>;
    /// Turns on IPv4 forwarding in the host namespace.
    async fn enable_ipv4_forwarding(&self) -> Result<(), NetworkError>;

    /// Wires a pod into a namespace created just now, which has nothing in it yet: the veth
    /// pair (`host` on `bridge`, `peer` in `netns`), both ends and `lo` up, `addr` on the peer
    /// and the default route via `gateway`. Implementations may do it in fewer round trips
    /// than the single operations; this default runs them one by one.
    async fn wire_new_pod(&self, host: &str, peer: &str, netns: &str, bridge: &str, addr: Ipv4Net, gateway: Ipv4Addr) -> Result<(), NetworkError> {
        let ns = Netns::Named(netns);
        self.add_veth(host, peer, netns).await?;
        self.set_master(host, bridge).await?;
        self.set_up(Netns::Host, host).await?;
        self.set_up(ns, "lo").await?;
        self.add_address(ns, peer, addr).await?;
        self.set_up(ns, peer).await?;
        self.replace_default_route(ns, gateway).await
    }
}

/// [`Netlink`] through iproute2's `ip` command.
#[derive(Clone, Debug)]
pub struct IpRoute2 {
    binary: PathBuf,
}

impl IpRoute2 {
    /// Finds `ip` in `PATH` or the sbin directories.
    pub fn new() -> Result<Self, NetworkError> {
        Self::find("ip")
    }

    /// Finds iproute2's `bridge` (forwarding database entries), which takes the same `-batch`.
    pub fn bridge() -> Result<Self, NetworkError> {
        Self::find("bridge")
    }

    fn find(tool: &'static str) -> Result<Self, NetworkError> {
        let path_var = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path_var)
            .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
            .map(|dir| dir.join(tool))
            .find(|candidate| candidate.is_file())
            .map(|binary| IpRoute2 { binary })
            .ok_or(NetworkError::ToolNotFound { tool, package: "iproute2" })
    }

    /// Uses a specific `ip` binary.
    pub fn with_binary(binary: impl Into<PathBuf>) -> Self {
        IpRoute2 { binary: binary.into() }
    }

    pub(super) async fn ip(&self, ns: Netns<'_>, args: &[&str]) -> Result<Vec<u8>, NetworkError> {
        self.try_ip(ns, args, None).await?
    }

    /// Runs several `ip` commands (one per line, without the leading `ip`) in one process with
    /// `ip -batch -`; it stops at the first that fails.
    pub(super) async fn batch(&self, ns: Netns<'_>, lines: &[String]) -> Result<(), NetworkError> {
        let script = lines.join("\n") + "\n";
        self.try_ip(ns, &["-batch", "-"], Some(script)).await?.map(drop)
    }

    /// Runs `ip`; the inner result is the command's own failure, the outer one a failure to run.
    async fn try_ip(&self, ns: Netns<'_>, args: &[&str], stdin: Option<String>) -> Result<Result<Vec<u8>, NetworkError>, NetworkError> {
        let mut all: Vec<&str> = Vec::with_capacity(args.len() + 2);
        if let Netns::Named(name) = ns {
            all.extend(["-n", name]);
        }
        all.extend_from_slice(args);
        let mut line = format!("{} {}", self.binary.display(), all.join(" "));
        if let Some(script) = &stdin {
            line = format!("{line} <<< {script:?}");
        }
        let binary = self.binary.clone();
        let args: Vec<String> = all.iter().map(|a| a.to_string()).collect();
        let output = async move {
            let mut child = tokio::process::Command::new(&binary)
                .args(&args)
                .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()?;
            if let (Some(script), Some(mut pipe)) = (stdin, child.stdin.take()) {
                use tokio::io::AsyncWriteExt;
                pipe.write_all(script.as_bytes()).await?;
            }
            child.wait_with_output().await
        };
        let output = tokio::time::timeout(IP_TIMEOUT, output)
            .await
            .map_err(|_| NetworkError::CommandTimeout { command: line.clone(), timeout: IP_TIMEOUT })?
            .map_err(|source| NetworkError::Io(PathError { action: "run", path: self.binary.clone(), source }))?;
        if output.status.success() {
            return Ok(Ok(output.stdout));
        }
        Ok(Err(NetworkError::Command { command: line, status: output.status.to_string(), stderr: String::from_utf8_lossy(&output.stderr).trim().to_string() }))
    }
}

/// The link names of a `/proc/<pid>/net/dev` listing.
pub(super) fn links_in_proc(dev: &str) -> impl Iterator<Item = &str> {
    dev.lines().skip(2).filter_map(|l| l.split_once(':').map(|(name, _)| name.trim()))
}

#[async_trait]
impl Netlink for IpRoute2 {
    async fn netns_exists(&self, name: &str) -> Result<bool, NetworkError> {
        Ok(Path::new(NETNS_DIR).join(name).exists())
    }

    async fn add_netns(&self, name: &str) -> Result<(), NetworkError> {
        self.ip(Netns::Host, &["netns", "add", name]).await.map(drop)
    }

    async fn delete_netns(&self, name: &str) -> Result<(), NetworkError> {
        self.ip(Netns::Host, &["netns", "delete", name]).await.map(drop)
    }

    async fn link_exists(&self, ns: Netns<'_>, link: &str) -> Result<bool, NetworkError> {
        if ns == Netns::Host {
            // The agent's own namespace's links, with no process to start. Not sysfs: that
            // shows the namespace it was mounted in, which is not the agent's when the agent
            // was started in a network namespace of its own (`nsenter --net`).
            return Ok(links_in_proc(&std::fs::read_to_string("/proc/self/net/dev").unwrap_or_default()).any(|l| l == link));
        }
        match self.try_ip(ns, &["link", "show", "dev", link], None).await? {
            Ok(_) => Ok(true),
            Err(NetworkError::Command { stderr, .. }) if stderr.contains("does not exist") => Ok(false),
            Err(err) => Err(err),
        }
    }

    async fn add_bridge(&self, name: &str) -> Result<(), NetworkError> {
        self.ip(Netns::Host, &["link", "add", "name", name, "type", "bridge"]).await.map(drop)
    }

    async fn add_veth(&self, host: &str, peer: &str, peer_netns: &str) -> Result<(), NetworkError> {
        let args = ["link", "add", host, "type", "veth", "peer", "name", peer, "netns", peer_netns];
        self.ip(Netns::Host, &args).await.map(drop)
    }

    async fn delete_link(&self, link: &str) -> Result<(), NetworkError> {
        self.ip(Netns::Host, &["link", "delete", "dev", link]).await.map(drop)
    }

    async fn set_master(&self, link: &str, bridge: &str) -> Result<(), NetworkError> {
        self.ip(Netns::Host, &["link", "set", "dev", link, "master", bridge]).await.map(drop)
    }

    async fn set_up(&self, ns: Netns<'_>, link: &str) -> Result<(), NetworkError> {
        self.ip(ns, &["link", "set", "dev", link, "up"]).await.map(drop)
    }

    async fn addresses(&self, ns: Netns<'_>, link: &str) -> Result<Vec<Ipv4Net>, NetworkError> {
        let stdout = self.ip(ns, &["-j", "-4", "addr", "show", "dev", link]).await?;
        parse_addresses(&stdout).map_err(|reason| NetworkError::Parse { command: format!("ip -j -4 addr show dev {link}"), reason })
    }

    async fn add_address(&self, ns: Netns<'_>, link: &str, addr: Ipv4Net) -> Result<(), NetworkError> {
        let addr = addr.to_string();
        self.ip(ns, &["addr", "add", &addr, "brd", "+", "dev", link]).await.map(drop)
    }

    async fn replace_default_route(&self, ns: Netns<'_>, gateway: Ipv4Addr) -> Result<(), NetworkError> {
        let gateway = gateway.to_string();
        self.ip(ns, &["route", "replace", "default", "via", &gateway]).await.map(drop)
    }

    async fn wire_new_pod(&self, host: &str, peer: &str, netns: &str, bridge: &str, addr: Ipv4Net, gateway: Ipv4Addr) -> Result<(), NetworkError> {
        self.batch(
            Netns::Host,
            &[
                format!("link add {host} type veth peer name {peer} netns {netns}"),
                format!("link set dev {host} master {bridge}"),
                format!("link set dev {host} up"),
            ],
        )
        .await?;
        self.batch(
            Netns::Named(netns),
            &[
                "link set dev lo up".to_string(),
                format!("addr add {addr} brd + dev {peer}"),
                format!("link set dev {peer} up"),
                format!("route replace default via {gateway}"),
            ],
        )
        .await
    }

    async fn enable_ipv4_forwarding(&self) -> Result<(), NetworkError> {
        enable_ipv4_forwarding().await
    }
}

/// Turns on IPv4 forwarding in the agent's namespace, which needs no netlink.
pub(super) async fn enable_ipv4_forwarding() -> Result<(), NetworkError> {
    let path = Path::new("/proc/sys/net/ipv4/ip_forward");
    tokio::fs::write(path, b"1").await.map_err(|source| NetworkError::Io(PathError { action: "write", path: path.into(), source }))
}

/// Parses `ip -j -4 addr show`: `[{"addr_info":[{"family":"inet","local":…,"prefixlen":…}]}]`.
fn parse_addresses(json: &[u8]) -> Result<Vec<Ipv4Net>, String> {
    #[derive(Deserialize)]
    struct Link {
        #[serde(default)]
        addr_info: Vec<AddrInfo>,
    }
    #[derive(Deserialize)]
    struct AddrInfo {
        family: Option<String>,
        local: Option<Ipv4Addr>,
        prefixlen: Option<u8>,
    }
    if json.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let links: Vec<Link> = serde_json::from_slice(json).map_err(|err| err.to_string())?;
    let mut addrs = Vec::new();
    for info in links.into_iter().flat_map(|link| link.addr_info) {
        if let (Some("inet"), Some(local), Some(prefix)) = (info.family.as_deref(), info.local, info.prefixlen) {
            addrs.push(Ipv4Net::new(local, prefix).map_err(|err| err.to_string())?);
        }
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_json_addresses() {
        let json = br#"[{"ifindex":5,"ifname":"eth0","addr_info":[{"family":"inet","local":"10.88.0.7","prefixlen":16,"broadcast":"10.88.255.255"}]},{"addr_info":[{}]}]"#;
        assert_eq!(parse_addresses(json).expect("parse"), vec!["10.88.0.7/16".parse::<Ipv4Net>().expect("net")]);
        assert_eq!(parse_addresses(b"\n").expect("empty"), Vec::<Ipv4Net>::new());
        assert!(parse_addresses(b"{").is_err());
    }

    #[test]
    fn reads_link_names_from_proc_net_dev() {
        let dev = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1234      10    0    0    0     0          0         0     1234      10    0    0    0     0       0          0
fte2x7:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
  eth0: 99 1 0 0 0 0 0 0 99 1 0 0 0 0 0 0
";
        assert_eq!(links_in_proc(dev).collect::<Vec<_>>(), ["lo", "fte2x7", "eth0"]);
    }
}
