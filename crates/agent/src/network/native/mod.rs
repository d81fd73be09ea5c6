//! [`Netlink`] without running a process: rtnetlink requests from the agent and network
//! namespaces made with `unshare`, both kept where and how `ip` keeps them.
//!
//! A request for the host namespace runs on tokio's blocking pool with a socket opened there;
//! one for a pod's namespace runs on a thread of its own that enters the namespace and opens
//! its socket there. The kernel answers rtnetlink within the `send` call, but that call waits
//! for the global rtnl lock, which deleting a link holds for tens of milliseconds (the kernel
//! waits for RCU grace periods), so no request runs on a tokio worker.

mod netns;
pub(crate) use netns::in_netns;
mod request;
mod socket;

use std::net::Ipv4Addr;
use std::os::fd::AsFd;

use async_trait::async_trait;
use ipnet::Ipv4Net;

use super::netlink::{enable_ipv4_forwarding, Netlink, Netns};
use super::NetworkError;

use socket::{Replies, RouteSocket};

/// How errors name the agent's own namespace.
const HOST: &str = "host";

/// [`Netlink`] through rtnetlink sockets and namespace syscalls.
#[derive(Debug, Default)]
pub struct NativeNetlink {
    /// Set once [`NETNS_DIR`](super::NETNS_DIR) is a shared mount point.
    netns_dir_shared: tokio::sync::OnceCell<()>,
}

impl NativeNetlink {
    /// Checks that this kernel and process can use it: a `NETLINK_ROUTE` socket opens and a
    /// thread can name its own namespace.
    pub fn new() -> Result<Self, NetworkError> {
        RouteSocket::open(HOST)?;
        netns::supported()?;
        Ok(NativeNetlink::default())
    }
}

/// Runs `work` with a socket in `ns`, off the tokio workers.
async fn with_socket<T: Send + 'static>(
    ns: Netns<'_>,
    work: impl FnOnce(&mut RouteSocket) -> Result<T, NetworkError> + Send + 'static,
) -> Result<T, NetworkError> {
    match ns {
        Netns::Host => blocking(move || work(&mut RouteSocket::open(HOST)?)).await,
        Netns::Named(name) => {
            let owned = name.to_string();
            netns::in_netns(name, move || work(&mut RouteSocket::open(&owned)?)).await
        }
    }
}

/// Runs blocking `work` on tokio's blocking pool; a panic in it resumes in the caller.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, NetworkError> + Send + 'static) -> Result<T, NetworkError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(err) => std::panic::resume_unwind(err.into_panic()),
    }
}

/// Looks a link up and returns its index.
fn index_of(socket: &mut RouteSocket, link: &str) -> Result<u32, NetworkError> {
    let lookup = request::get_link(link);
    let what = lookup.what.clone();
    let replies = socket.run_one(lookup)?;
    request::link_index(&replies).map_err(|reason| socket.decode_error(&what, reason))
}

/// Whether a lookup failed because there is no such link.
fn is_no_such_link(err: &NetworkError) -> bool {
    matches!(err, NetworkError::Netlink { source, .. } if source.raw_os_error() == Some(libc::ENODEV))
}

#[async_trait]
impl Netlink for NativeNetlink {
    async fn netns_exists(&self, name: &str) -> Result<bool, NetworkError> {
        Ok(netns::path(name).exists())
    }

    async fn add_netns(&self, name: &str) -> Result<(), NetworkError> {
        self.netns_dir_shared.get_or_try_init(|| blocking(netns::share_netns_dir)).await?;
        netns::create(name).await
    }

    async fn delete_netns(&self, name: &str) -> Result<(), NetworkError> {
        let name = name.to_string();
        blocking(move || netns::delete(&name)).await
    }

    async fn link_exists(&self, ns: Netns<'_>, link: &str) -> Result<bool, NetworkError> {
        let link = link.to_string();
        with_socket(ns, move |socket| match socket.run_one(request::get_link(&link)) {
            Ok(_) => Ok(true),
            Err(err) if is_no_such_link(&err) => Ok(false),
            Err(err) => Err(err),
        })
        .await
    }

    async fn add_bridge(&self, name: &str) -> Result<(), NetworkError> {
        let name = name.to_string();
        with_socket(Netns::Host, move |socket| socket.run_one(request::add_bridge(&name)).map(drop)).await
    }

    async fn add_veth(&self, host: &str, peer: &str, peer_netns: &str) -> Result<(), NetworkError> {
        let (host, peer, peer_netns) = (host.to_string(), peer.to_string(), peer_netns.to_string());
        with_socket(Netns::Host, move |socket| {
            let netns = netns::open(&peer_netns)?;
            socket.run_one(request::add_veth(&host, &peer, netns.as_fd())).map(drop)
        })
        .await
    }

    async fn delete_link(&self, link: &str) -> Result<(), NetworkError> {
        let link = link.to_string();
        with_socket(Netns::Host, move |socket| socket.run_one(request::delete_link(&link)).map(drop)).await
    }

    async fn set_master(&self, link: &str, bridge: &str) -> Result<(), NetworkError> {
        let (link, bridge) = (link.to_string(), bridge.to_string());
        with_socket(Netns::Host, move |socket| {
            let bridge_index = index_of(socket, &bridge)?;
            socket.run_one(request::set_master(&link, &bridge, bridge_index)).map(drop)
        })
        .await
    }

    async fn set_up(&self, ns: Netns<'_>, link: &str) -> Result<(), NetworkError> {
        let link = link.to_string();
        with_socket(ns, move |socket| socket.run_one(request::set_up(&link)).map(drop)).await
    }

    async fn addresses(&self, ns: Netns<'_>, link: &str) -> Result<Vec<Ipv4Net>, NetworkError> {
        let link = link.to_string();
        with_socket(ns, move |socket| {
            let index = index_of(socket, &link)?;
            let dump = request::dump_ipv4_addresses(&link);
            let what = dump.what.clone();
            let replies: Replies = socket.run_one(dump)?;
            request::ipv4_addresses_of(&replies, index).map_err(|reason| socket.decode_error(&what, reason))
        })
        .await
    }

    async fn add_address(&self, ns: Netns<'_>, link: &str, addr: Ipv4Net) -> Result<(), NetworkError> {
        let link = link.to_string();
        with_socket(ns, move |socket| {
            let index = index_of(socket, &link)?;
            socket.run_one(request::add_address(&link, index, addr)).map(drop)
        })
        .await
    }

    async fn replace_default_route(&self, ns: Netns<'_>, gateway: Ipv4Addr) -> Result<(), NetworkError> {
        with_socket(ns, move |socket| socket.run_one(request::replace_default_route(gateway)).map(drop)).await
    }

    async fn enable_ipv4_forwarding(&self) -> Result<(), NetworkError> {
        enable_ipv4_forwarding().await
    }

    /// Four round trips: the bridge's index; the veth pair, the host end up and on the bridge
    /// and the peer inside the namespace (one message); then, inside, `lo` and the peer up and
    /// the peer's index (addresses name links by index); the address and the default route.
    async fn wire_new_pod(&self, host: &str, peer: &str, netns: &str, bridge: &str, addr: Ipv4Net, gateway: Ipv4Addr) -> Result<(), NetworkError> {
        let (host, peer_name, netns_name, bridge) = (host.to_string(), peer.to_string(), netns.to_string(), bridge.to_string());
        with_socket(Netns::Host, move |socket| {
            let bridge_index = index_of(socket, &bridge)?;
            let netns = netns::open(&netns_name)?;
            socket.run_one(request::add_veth_on_bridge(&host, &peer_name, netns.as_fd(), &bridge, bridge_index)).map(drop)
        })
        .await?;
        let peer = peer.to_string();
        with_socket(Netns::Named(netns), move |socket| {
            let lookup = request::get_link(&peer);
            let what = lookup.what.clone();
            let mut replies = socket.run(vec![request::set_up("lo"), request::set_up(&peer), lookup])?;
            let index = request::link_index(&replies.pop().unwrap_or_default()).map_err(|reason| socket.decode_error(&what, reason))?;
            socket.run(vec![request::add_address(&peer, index, addr), request::replace_default_route(gateway)]).map(drop)
        })
        .await
    }
}
