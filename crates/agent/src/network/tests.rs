use std::sync::Arc;

use super::*;

fn network(dir: &Path) -> (PodNetwork, Arc<FakeNetlink>) {
    let fake = Arc::new(FakeNetlink::new());
    let mut config = NetworkConfig::new(dir);
    config.cidr = "10.99.0.0/24".parse().expect("cidr");
    (PodNetwork::with_netlink(config, fake.clone()).expect("network"), fake)
}

#[test]
fn names_fit_the_kernel_limits() {
    let uid = "5f0c3a1e-7b2d-4c1e-9a3f-0123456789ab";
    assert_eq!(netns_name(uid), "flotilla-5f0c3a1e-7b2");
    let veth = host_veth_name(uid);
    assert!(veth.starts_with("fl") && veth.len() == 12, "{veth}");
    assert_eq!(veth, host_veth_name(uid), "stable");
    assert_ne!(veth, host_veth_name("another"));
}

#[tokio::test]
async fn ensure_bridge_is_idempotent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (net, fake) = network(dir.path());
    net.ensure_bridge().await.expect("first");
    net.ensure_bridge().await.expect("second");
    let bridge = fake.link(Netns::Host, "flotilla0").expect("bridge");
    assert_eq!(bridge.addrs, vec!["10.99.0.1/24".parse::<Ipv4Net>().expect("net")]);
    assert!(bridge.up && fake.forwarding());
    assert_eq!(fake.calls().iter().filter(|c| c.starts_with("add_")).count(), 2);
}

#[tokio::test]
async fn setup_wires_the_pod_and_is_idempotent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (net, fake) = network(dir.path());
    net.ensure_bridge().await.expect("bridge");
    let info = net.setup("pod-a").await.expect("setup");
    assert_eq!(info.ip, IpAddr::V4(Ipv4Addr::new(10, 99, 0, 2)));
    assert_eq!(info.gateway, IpAddr::V4(Ipv4Addr::new(10, 99, 0, 1)));
    assert_eq!(info.netns_path, Path::new("/run/netns/flotilla-pod-a"));
    let ns = Netns::Named("flotilla-pod-a");
    let eth0 = fake.link(ns, POD_INTERFACE).expect("eth0");
    assert!(eth0.up && eth0.addrs == vec!["10.99.0.2/24".parse::<Ipv4Net>().expect("net")]);
    assert!(fake.link(ns, "lo").expect("lo").up);
    assert_eq!(fake.link(Netns::Host, &info.host_veth).expect("veth").master.as_deref(), Some("flotilla0"));
    assert_eq!(fake.default_route(ns), Some(Ipv4Addr::new(10, 99, 0, 1)));

    assert_eq!(net.setup("pod-a").await.expect("again"), info);
    assert_eq!(net.allocations().expect("allocations").len(), 1);
}

#[tokio::test]
async fn setup_repairs_a_pod_whose_namespace_vanished() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (net, fake) = network(dir.path());
    net.ensure_bridge().await.expect("bridge");
    let info = net.setup("pod-b").await.expect("setup");
    fake.delete_netns("flotilla-pod-b").await.expect("someone deletes the netns");
    assert_eq!(net.setup("pod-b").await.expect("repair"), info);
    assert!(fake.link(Netns::Named("flotilla-pod-b"), POD_INTERFACE).is_some());
}

#[tokio::test]
async fn failed_first_setup_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (net, fake) = network(dir.path());
    net.ensure_bridge().await.expect("bridge");
    fake.fail_next("set_master");
    let err = net.setup("pod-c").await.expect_err("injected failure");
    assert!(err.to_string().contains("pod-c") && err.to_string().contains("wire the pod namespace"), "{err}");
    assert!(fake.netns().is_empty());
    assert_eq!(fake.links(Netns::Host), vec!["flotilla0".to_string()]);
    assert!(net.allocations().expect("allocations").is_empty());
}

#[tokio::test]
async fn teardown_removes_everything_and_is_idempotent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (net, fake) = network(dir.path());
    net.ensure_bridge().await.expect("bridge");
    net.setup("pod-d").await.expect("setup");
    net.teardown("pod-d").await.expect("teardown");
    net.teardown("pod-d").await.expect("teardown again");
    net.teardown("never-set-up").await.expect("unknown pod");
    assert!(fake.netns().is_empty());
    assert_eq!(fake.links(Netns::Host), vec!["flotilla0".to_string()]);
    assert!(net.allocations().expect("allocations").is_empty());
}

#[tokio::test]
async fn bad_uids_and_configs_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (net, fake) = network(dir.path());
    for uid in ["", "../x", "a b", "-n"] {
        assert!(matches!(net.setup(uid).await, Err(NetworkError::InvalidPodUid { .. })), "{uid:?}");
    }
    assert!(fake.calls().is_empty());
    let mut config = NetworkConfig::new(dir.path());
    config.bridge = "a-bridge-name-too-long".into();
    assert!(PodNetwork::with_netlink(config.clone(), fake.clone()).is_err());
    config.bridge = "ok0".into();
    config.cidr = "10.0.0.0/31".parse().expect("cidr");
    assert!(PodNetwork::with_netlink(config, fake).is_err());
}
