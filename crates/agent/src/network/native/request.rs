//! The rtnetlink requests pod networking sends, each the message `ip` would send for the same
//! command, and the few facts read back from the replies.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

use ipnet::Ipv4Net;
use netlink_packet_core::{Parseable, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkExtentMask, LinkFlags, LinkHeader, LinkInfo, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::socket::{Replies, Request};

/// A link message that names its link (the kernel looks it up by name when the index is 0).
fn named_link(name: &str) -> LinkMessage {
    let mut message = LinkMessage::default();
    message.attributes.push(LinkAttribute::IfName(name.to_string()));
    message
}

/// Marks a link message as setting the link up.
fn up(mut message: LinkMessage) -> LinkMessage {
    message.header.flags = LinkFlags::Up;
    message.header.change_mask = LinkFlags::Up;
    message
}

/// Looks a link up by name (`ip link show dev NAME`); fails with `ENODEV` when there is none.
pub fn get_link(name: &str) -> Request {
    let mut message = named_link(name);
    // Only the header is read back; the counters would be most of the reply.
    message.attributes.push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    Request { message: RouteNetlinkMessage::GetLink(message), flags: NLM_F_ACK, what: format!("look up link {name}") }
}

/// `ip link add name NAME type bridge`.
pub fn add_bridge(name: &str) -> Request {
    let mut message = named_link(name);
    message.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]));
    Request { message: RouteNetlinkMessage::NewLink(message), flags: NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, what: format!("create bridge {name}") }
}

/// `ip link add HOST type veth peer name PEER netns NETNS`, the namespace given as an open
/// file of it (`IFLA_NET_NS_FD` on the peer), which must stay open until the request is sent.
pub fn add_veth(host: &str, peer: &str, peer_netns: BorrowedFd<'_>) -> Request {
    veth(host, named_link(peer), peer_netns, LinkMessage::default(), format!("create veth pair {host} / {peer}"))
}

/// [`add_veth`] with the host end up and on a bridge, in one message:
/// `ip link add HOST up master BRIDGE type veth peer name PEER netns NETNS`. Not the peer: the
/// kernel brings it up before pairing it, and a veth without its pair refuses (`ENOTCONN`).
pub fn add_veth_on_bridge(host: &str, peer: &str, peer_netns: BorrowedFd<'_>, bridge: &str, bridge_index: u32) -> Request {
    let mut host_end = up(LinkMessage::default());
    host_end.attributes.push(LinkAttribute::Controller(bridge_index));
    veth(host, named_link(peer), peer_netns, host_end, format!("create veth pair {host} / {peer} on bridge {bridge}"))
}

fn veth(host: &str, mut peer: LinkMessage, peer_netns: BorrowedFd<'_>, mut message: LinkMessage, what: String) -> Request {
    peer.attributes.push(LinkAttribute::NetNsFd(peer_netns.as_raw_fd()));
    message.attributes.insert(0, LinkAttribute::IfName(host.to_string()));
    message.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth), LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer)))]));
    Request { message: RouteNetlinkMessage::NewLink(message), flags: NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, what }
}

/// `ip link delete dev NAME`.
pub fn delete_link(name: &str) -> Request {
    Request { message: RouteNetlinkMessage::DelLink(named_link(name)), flags: NLM_F_ACK, what: format!("delete link {name}") }
}

/// `ip link set dev NAME master BRIDGE`.
pub fn set_master(name: &str, bridge: &str, bridge_index: u32) -> Request {
    let mut message = named_link(name);
    message.attributes.push(LinkAttribute::Controller(bridge_index));
    Request { message: RouteNetlinkMessage::SetLink(message), flags: NLM_F_ACK, what: format!("attach link {name} to bridge {bridge}") }
}

/// `ip link set dev NAME up`.
pub fn set_up(name: &str) -> Request {
    Request { message: RouteNetlinkMessage::SetLink(up(named_link(name))), flags: NLM_F_ACK, what: format!("set link {name} up") }
}

/// Lists the namespace's IPv4 addresses (`ip -4 addr show`).
pub fn dump_ipv4_addresses(link: &str) -> Request {
    let mut message = AddressMessage::default();
    message.header.family = AddressFamily::Inet;
    Request { message: RouteNetlinkMessage::GetAddress(message), flags: NLM_F_DUMP, what: format!("list the addresses of link {link}") }
}

/// `ip addr add ADDR brd + dev LINK`, the link given by index (addresses take no name).
pub fn add_address(link: &str, link_index: u32, addr: Ipv4Net) -> Request {
    let mut message = AddressMessage::default();
    message.header.family = AddressFamily::Inet;
    message.header.prefix_len = addr.prefix_len();
    message.header.scope = AddressScope::Universe;
    message.header.index = link_index;
    let ip = IpAddr::V4(addr.addr());
    message.attributes = vec![AddressAttribute::Local(ip), AddressAttribute::Address(ip)];
    // `brd +` sets no broadcast on /31 and /32, which have none.
    if addr.prefix_len() <= 30 {
        message.attributes.push(AddressAttribute::Broadcast(addr.broadcast()));
    }
    Request {
        message: RouteNetlinkMessage::NewAddress(message),
        flags: NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        what: format!("add address {addr} to link {link}"),
    }
}

/// `ip route replace default via GATEWAY`.
pub fn replace_default_route(gateway: Ipv4Addr) -> Request {
    let mut message = RouteMessage::default();
    message.header.address_family = AddressFamily::Inet;
    message.header.table = RouteHeader::RT_TABLE_MAIN;
    message.header.protocol = RouteProtocol::Boot;
    message.header.scope = RouteScope::Universe;
    message.header.kind = RouteType::Unicast;
    message.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
    Request {
        message: RouteNetlinkMessage::NewRoute(message),
        flags: NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        what: format!("replace the default route with one via {gateway}"),
    }
}

/// The index of the link a [`get_link`] found.
pub fn link_index(replies: &Replies) -> Result<u32, String> {
    let reply = replies.first().ok_or("the kernel answered a link lookup with no link")?;
    LinkHeader::parse(reply).map(|header| header.index).map_err(|err| err.to_string())
}

/// The IPv4 addresses on link `index` among the replies to a [`dump_ipv4_addresses`].
pub fn ipv4_addresses_of(replies: &Replies, index: u32) -> Result<Vec<Ipv4Net>, String> {
    let mut addrs = Vec::new();
    for reply in replies {
        let message = AddressMessage::parse(reply.as_slice()).map_err(|err| err.to_string())?;
        if message.header.index != index {
            continue;
        }
        let (mut local, mut address) = (None, None);
        for attribute in message.attributes {
            match attribute {
                AddressAttribute::Local(IpAddr::V4(ip)) => local = Some(ip),
                AddressAttribute::Address(IpAddr::V4(ip)) => address = Some(ip),
                _ => {}
            }
        }
        if let Some(ip) = local.or(address) {
            addrs.push(Ipv4Net::new(ip, message.header.prefix_len).map_err(|err| err.to_string())?);
        }
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests;
