use std::os::fd::AsFd;

use netlink_packet_core::Emitable;

use super::*;

fn link_message(request: &Request) -> &LinkMessage {
    match &request.message {
        RouteNetlinkMessage::NewLink(message) | RouteNetlinkMessage::SetLink(message) | RouteNetlinkMessage::GetLink(message) => message,
        other => panic!("not a link message: {other:?}"),
    }
}

fn emitted(message: &impl Emitable) -> Vec<u8> {
    let mut bytes = vec![0; message.buffer_len()];
    message.emit(&mut bytes);
    bytes
}

#[test]
fn a_veth_on_a_bridge_is_one_message_with_the_peer_in_the_namespace_and_down() {
    let netns = std::fs::File::open("/dev/null").expect("a file to stand for the namespace");
    let request = add_veth_on_bridge("fl0123456789", "eth0", netns.as_fd(), "flotilla0", 7);
    assert_eq!(request.flags, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
    let host = link_message(&request);
    assert_eq!((host.header.flags, host.header.change_mask), (LinkFlags::Up, LinkFlags::Up));
    assert!(host.attributes.contains(&LinkAttribute::IfName("fl0123456789".into())));
    assert!(host.attributes.contains(&LinkAttribute::Controller(7)));
    let peer = host.attributes.iter().find_map(|attribute| match attribute {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|info| match info {
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))) => Some(peer),
            _ => None,
        }),
        _ => None,
    });
    let peer = peer.expect("a peer");
    assert_eq!(peer.header.flags, LinkFlags::empty(), "a veth set up before it is paired refuses with ENOTCONN");
    assert!(peer.attributes.contains(&LinkAttribute::IfName("eth0".into())));
    assert!(peer.attributes.contains(&LinkAttribute::NetNsFd(netns.as_raw_fd())));
}

#[test]
fn set_up_names_the_link_and_changes_only_the_up_flag() {
    let message = link_message(&set_up("eth0")).clone();
    assert_eq!((message.header.index, message.header.flags, message.header.change_mask), (0, LinkFlags::Up, LinkFlags::Up));
    assert_eq!(message.attributes, vec![LinkAttribute::IfName("eth0".into())]);
}

#[test]
fn an_address_carries_its_broadcast_like_brd_plus() {
    let with = |addr: &str| match add_address("eth0", 3, addr.parse().expect("net")).message {
        RouteNetlinkMessage::NewAddress(message) => message,
        other => panic!("not an address: {other:?}"),
    };
    let message = with("10.88.0.7/16");
    assert_eq!((message.header.index, message.header.prefix_len), (3, 16));
    assert!(message.attributes.contains(&AddressAttribute::Local(IpAddr::V4(Ipv4Addr::new(10, 88, 0, 7)))));
    assert!(message.attributes.contains(&AddressAttribute::Broadcast(Ipv4Addr::new(10, 88, 255, 255))));
    assert!(!with("10.88.0.7/31").attributes.iter().any(|attribute| matches!(attribute, AddressAttribute::Broadcast(_))));
}

#[test]
fn reads_the_link_index_and_the_addresses_of_one_link() {
    let mut link = LinkMessage::default();
    link.header.index = 42;
    link.attributes.push(LinkAttribute::IfName("eth0".into()));
    assert_eq!(link_index(&vec![emitted(&link)]), Ok(42));
    assert!(link_index(&Vec::new()).is_err());

    let address = |index, ip: Ipv4Addr, prefix_len| {
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.index = index;
        message.header.prefix_len = prefix_len;
        message.attributes = vec![AddressAttribute::Address(IpAddr::V4(ip)), AddressAttribute::Local(IpAddr::V4(ip))];
        emitted(&message)
    };
    let dump = vec![address(1, Ipv4Addr::LOCALHOST, 8), address(42, Ipv4Addr::new(10, 88, 0, 7), 16)];
    assert_eq!(ipv4_addresses_of(&dump, 42), Ok(vec!["10.88.0.7/16".parse().expect("net")]));
    assert_eq!(ipv4_addresses_of(&dump, 9), Ok(vec![]));
    assert!(ipv4_addresses_of(&vec![vec![1, 2]], 42).is_err());
}
