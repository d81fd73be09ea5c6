//! Real-kernel tests of `NativeNetlink` checked with iproute2: what `ip` sees of the namespaces,
//! links, addresses and routes it makes, that teardown leaves no file, mount or link, that a
//! second setup repairs what was removed, and that pods made by one implementation are taken
//! over by the other (the fallback, or an agent restarted with the other one).

use std::net::Ipv4Addr;

use agent::network::{IpRoute2, NativeNetlink, Netns};

use super::*;

fn native() -> Arc<dyn Netlink> {
    Arc::new(NativeNetlink::new().expect("native netlink"))
}

fn iproute2() -> Arc<dyn Netlink> {
    Arc::new(IpRoute2::new().expect("iproute2"))
}

/// Whether anything is mounted on the namespace's file, in this process's mount table.
fn netns_mounted(name: &str) -> bool {
    let file = format!("/run/netns/{name}");
    let table = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    table.lines().any(|line| line.split(' ').nth(4) == Some(file.as_str()))
}

/// The flags `ip -o link show` prints between `<` and `>`.
fn link_flags(ns: Option<&str>, link: &str) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    args.extend(["-o", "link", "show", "dev", link]);
    let line = ip(&args).unwrap_or_else(|err| panic!("ip {}: {err}", args.join(" ")));
    let flags = line.split_once('<').and_then(|(_, rest)| rest.split_once('>')).map_or("", |(flags, _)| flags);
    flags.split(',').map(String::from).collect()
}

/// Checks, with `ip`, everything a set-up pod should have.
fn assert_wired(t: &TestNet, uid: &str, info: &agent::network::PodNetworkInfo) {
    let ns = netns_name(uid);
    assert!(netns_list().lines().any(|line| line.split_whitespace().next() == Some(ns.as_str())), "ip netns list lacks {ns}");
    assert!(netns_mounted(&ns), "nothing mounted on /run/netns/{ns}");
    let addr = ip(&["-n", &ns, "-4", "-o", "addr", "show", "dev", "eth0"]).expect("ip -n addr");
    let want = format!("inet {}/24 brd 10.199.{}.255 scope global eth0", info.ip, t.subnet);
    assert!(addr.contains(&want), "ip -n {ns} addr: {addr}");
    assert!(link_flags(Some(&ns), "eth0").contains(&"UP".to_string()), "eth0 down");
    assert!(link_flags(Some(&ns), "lo").contains(&"UP".to_string()), "lo down");
    let route = ip(&["-n", &ns, "route", "show", "default"]).expect("ip -n route");
    assert!(route.contains(&format!("default via 10.199.{}.1 dev eth0", t.subnet)), "{route}");
    let host = ip(&["-o", "link", "show", "dev", &info.host_veth]).expect("host veth");
    assert!(host.contains(&format!("master {}", t.bridge)) && link_flags(None, &info.host_veth).contains(&"UP".to_string()), "{host}");
}

fn assert_pod_gone(uid: &str) {
    let ns = netns_name(uid);
    assert!(!Path::new("/run/netns").join(&ns).exists(), "/run/netns/{ns} left behind");
    assert!(!netns_mounted(&ns), "/run/netns/{ns} still mounted");
    assert!(ip(&["link", "show", "dev", &host_veth_name(uid)]).is_err(), "veth of {uid} left behind");
}

fn ping(ns: &str, to: &str) {
    let out = in_netns(ns, &["ping", "-c", "1", "-W", "5", to]).output().expect("ping");
    assert!(out.status.success(), "{ns} cannot ping {to}: {}", String::from_utf8_lossy(&out.stdout));
}

#[tokio::test]
async fn ip_sees_what_native_setup_makes_and_nothing_after_teardown() {
    let mut t = TestNet::with_netlink(21, native());
    t.net.ensure_bridge().await.expect("bridge");
    let uid = t.pod_uid(1);
    let info = t.net.setup(&uid).await.expect("setup");
    assert_wired(&t, &uid, &info);
    ping(&netns_name(&uid), "10.199.21.1");

    t.net.teardown(&uid).await.expect("teardown");
    assert_pod_gone(&uid);
    assert_leaves_nothing(&t, &[uid]);
}

#[tokio::test]
async fn setup_again_repairs_a_deleted_veth_and_a_flushed_address() {
    let mut t = TestNet::with_netlink(22, native());
    t.net.ensure_bridge().await.expect("bridge");
    let uid = t.pod_uid(1);
    let ns = netns_name(&uid);
    let info = t.net.setup(&uid).await.expect("setup");

    ip(&["link", "delete", "dev", &info.host_veth]).expect("delete the veth");
    assert!(ip(&["-n", &ns, "link", "show", "dev", "eth0"]).is_err(), "eth0 outlived its pair");
    assert_eq!(t.net.setup(&uid).await.expect("repair the veth"), info);
    assert_wired(&t, &uid, &info);

    ip(&["-n", &ns, "addr", "flush", "dev", "eth0"]).expect("flush the address");
    assert_eq!(ip(&["-n", &ns, "route", "show", "default"]).expect("route"), "", "the route went with the address");
    assert_eq!(t.net.setup(&uid).await.expect("repair the address"), info);
    assert_wired(&t, &uid, &info);
    ping(&ns, "10.199.22.1");

    t.net.teardown(&uid).await.expect("teardown");
    assert_pod_gone(&uid);
    assert_leaves_nothing(&t, &[uid]);
}

#[tokio::test]
async fn iproute2_and_native_take_over_each_others_pods() {
    let mut t = TestNet::with_netlink(23, iproute2());
    t.net.ensure_bridge().await.expect("bridge");
    let (a, b, c) = (t.pod_uid(1), t.pod_uid(2), t.pod_uid(3));
    let info_a = t.net.setup(&a).await.expect("setup a with ip");
    t.net.setup(&b).await.expect("setup b with ip");

    // Opened after the allocations it takes over, as after a restart.
    let native_net = PodNetwork::with_netlink(t.net.config().clone(), native()).expect("native pod network");
    assert_eq!(native_net.setup(&a).await.expect("native setup of a pod ip made"), info_a);
    native_net.teardown(&b).await.expect("native teardown of a pod ip made");
    assert_pod_gone(&b);
    let info_c = native_net.setup(&c).await.expect("setup c natively");
    assert_wired(&t, &c, &info_c);

    let ip_net = PodNetwork::with_netlink(t.net.config().clone(), iproute2()).expect("iproute2 pod network");
    assert_eq!(ip_net.setup(&c).await.expect("ip setup of a native pod"), info_c);
    ping(&netns_name(&a), &info_c.ip.to_string());
    for uid in [&a, &c] {
        ip_net.teardown(uid).await.expect("ip teardown");
        assert_pod_gone(uid);
    }
    assert_leaves_nothing(&t, &[a, b, c]);
}

/// Deletes a namespace a test made directly, even when it fails halfway.
struct NetnsGuard(String);

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = ip(&["netns", "delete", &self.0]);
    }
}

#[tokio::test]
async fn native_operations_report_what_is_there_and_name_what_failed() {
    let nl = NativeNetlink::new().expect("native netlink");
    let name = format!("flotilla-nl{}", std::process::id());
    let _guard = NetnsGuard(name.clone());
    let ns = Netns::Named(&name);
    nl.add_netns(&name).await.expect("add netns");
    assert!(nl.netns_exists(&name).await.expect("exists") && netns_mounted(&name));
    assert!(nl.link_exists(ns, "lo").await.expect("lo"));
    assert!(!nl.link_exists(ns, "eth0").await.expect("eth0"));
    assert!(!nl.link_exists(Netns::Host, "flnothere0").await.expect("host link"));
    assert!(nl.link_exists(Netns::Host, "lo").await.expect("host lo"));
    assert_eq!(nl.addresses(ns, "lo").await.expect("addresses of lo down"), vec![]);
    nl.set_up(ns, "lo").await.expect("lo up");
    assert_eq!(nl.addresses(ns, "lo").await.expect("addresses of lo"), vec!["127.0.0.1/8".parse().expect("net")]);

    let again = nl.add_netns(&name).await.expect_err("a second add").to_string();
    assert!(again.contains(&name) && again.contains("exists"), "{again}");
    let missing = nl.add_address(ns, "eth9", "10.0.0.2/24".parse().expect("net")).await.expect_err("no eth9").to_string();
    assert!(missing.contains("eth9") && missing.contains(&name), "{missing}");
    let unreachable = nl.replace_default_route(ns, Ipv4Addr::new(10, 0, 0, 1)).await.expect_err("no route to the gateway").to_string();
    assert!(unreachable.contains("via 10.0.0.1") && unreachable.contains(&name), "{unreachable}");
    let nowhere = nl.link_exists(Netns::Named("flotilla-nosuchns"), "lo").await.expect_err("no namespace").to_string();
    assert!(nowhere.contains("flotilla-nosuchns"), "{nowhere}");

    nl.delete_netns(&name).await.expect("delete netns");
    assert!(!nl.netns_exists(&name).await.expect("exists") && !netns_mounted(&name));
    assert!(!netns_list().contains(&name));
}
