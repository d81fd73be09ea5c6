//! DNS-name egress rules (FlotillaNetworkPolicy `toFQDNs`) on a real pod through the binary: a
//! "world" outside the cluster serves on 198.18.77.10:8080 and 198.18.77.200:9090, and a DNS
//! server of the test's own (the agent's `--upstream-dns`) names them `allowed.example.test`
//! and `denied.example.test`. The client pod fetches both by name all along; its queries go
//! to the node's resolver, which relays them and lets the datapath learn what the names the
//! rules select resolved to, before the pod hears the answer.

mod common;

use std::net::{Ipv4Addr, UdpSocket};
use std::time::Duration;

use common::probes::{fetcher, flows, outcomes, uptime};
use common::world::World;
use common::Cluster;

/// Answers A queries for the two names (others: no such name) until the test ends.
fn upstream_dns() -> std::net::SocketAddr {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let address = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let Ok(query) = net::dns::parse_query(&buf[..n]) else { continue };
            let address = match query.name.as_str() {
                "allowed.example.test" => Some(Ipv4Addr::new(198, 18, 77, 10)),
                "denied.example.test" => Some(Ipv4Addr::new(198, 18, 77, 200)),
                _ => None,
            };
            let reply = match address {
                Some(a) => net::dns::answer(&query, net::dns::Rcode::NoError, &[a], 30),
                None => net::dns::answer(&query, net::dns::Rcode::NxDomain, &[], 30),
            };
            let _ = socket.send_to(&reply, from);
        }
    });
    address
}

fn policy(selector: &str, ports: &str) -> String {
    format!(
        "apiVersion: flotilla.dev/v1alpha1\nkind: FlotillaNetworkPolicy\nmetadata: {{name: client-out}}\nspec:\n  podSelector: {{matchLabels: {{app: client}}}}\n  policyTypes: [Egress]\n  egress:\n  - ports: [{{port: 53, protocol: UDP}}]\n  - toFQDNs: [{selector}]\n    ports: [{ports}]\n"
    )
}

#[test]
fn dns_name_rules_let_a_pod_reach_only_the_names_they_select() {
    let _world = World::new();
    let upstream = upstream_dns().to_string();
    let mut cluster = Cluster::split_with_agent_flags("dnspolicy", &["--upstream-dns", &upstream]);
    let targets = ["allowed.example.test:8080/".to_string(), "denied.example.test:9090/".to_string()];
    cluster.apply(&fetcher("client", None, &targets, 2));
    cluster.wait_ready("app=client", 1, Duration::from_secs(60));
    assert_eq!(outcomes(&cluster, "client", &targets, uptime()), ["ok", "ok"], "no policy: both names resolve through the node and are reached");

    cluster.apply(&policy("{matchName: allowed.example.test}", "{port: 8080}"));
    let applied = uptime();
    assert_eq!(outcomes(&cluster, "client", &targets, applied + 1.0), ["ok", "fail"], "only the name the rule selects is reached");
    let dropped = flows(&cluster, &["--pod", "default/client", "--verdict", "dropped", "--all"]);
    assert!(
        dropped.iter().any(|f| f["destination"]["ip"] == "198.18.77.200" && f["destination"]["port"] == 9090 && f["trafficDirection"] == "EGRESS"),
        "the denied name's address, dropped on the way out: {dropped:#?}"
    );

    cluster.apply(&policy("{matchPattern: '*.example.test'}", "{port: 8080}, {port: 9090}"));
    let widened = uptime();
    assert_eq!(outcomes(&cluster, "client", &targets, widened + 1.0), ["ok", "ok"], "a pattern selects both names");

    let (ok, _, stderr) = cluster.try_apply(&policy("{matchName: 'not a name'}", "{port: 8080}"));
    assert!(!ok && stderr.contains("spec.egress[1].toFQDNs[0].matchName"), "{stderr}");
}
