use super::*;
use api::manifest::{decode_document, parse_documents};

fn policy(ns: &str, spec: &str) -> NetworkPolicy {
    let yaml = format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: {ns}}}\nspec:\n{spec}");
    let policy: NetworkPolicy = decode_document(&parse_documents(&yaml).unwrap()[0]).unwrap();
    api::netpol::validate(&policy).unwrap();
    policy
}

fn labels(app: &str) -> BTreeMap<String, String> {
    [("app".to_string(), app.to_string())].into()
}

/// shop/web (256, local, named port http=8080), shop/client (257), shop/other (258),
/// lab/client (259, namespace labelled team=a).
fn inputs(policies: Vec<NetworkPolicy>) -> Inputs {
    let endpoint = |ip: &str, ns: &str, app: &str| Endpoint {
        ip: ip.parse().unwrap(),
        namespace: ns.into(),
        labels: labels(app),
        ports: if app == "web" { vec![NamedPort { name: "http".into(), port: 8080, protocol: Protocol::Tcp }] } else { vec![] },
    };
    let spec = |ns: &str, app: &str| IdentitySpec { namespace: ns.into(), labels: labels(app) };
    Inputs {
        endpoints: vec![
            endpoint("10.0.0.2", "shop", "web"),
            endpoint("10.0.0.3", "shop", "client"),
            endpoint("10.0.1.4", "shop", "other"),
            endpoint("10.0.1.5", "lab", "client"),
        ],
        identities: [(spec("shop", "web"), 256), (spec("shop", "client"), 257), (spec("shop", "other"), 258), (spec("lab", "client"), 259)].into(),
        namespaces: [("lab".to_string(), [("team".to_string(), "a".to_string())].into()), ("shop".to_string(), BTreeMap::new())].into(),
        policies,
        http_policies: vec![],
        resolved: BTreeMap::new(),
        host: vec!["10.0.0.1".parse().unwrap()],
        local: [256, 257].into(),
    }
}

fn tcp(peer: Option<u32>, port: Option<u16>, direction: Direction) -> Rule {
    Rule { local: 256, peer, port, protocol: Protocol::Tcp, direction }
}

fn host_rules(local: u32) -> BTreeSet<Rule> {
    ALL_PROTOCOLS.iter().map(|p| Rule { local, peer: Some(HOST), port: None, protocol: *p, direction: Direction::Ingress }).collect()
}

fn without_host(state: &State) -> BTreeSet<Rule> {
    state.rules.iter().filter(|r| r.peer != Some(HOST)).copied().collect()
}

#[test]
fn without_a_policy_nothing_is_restricted_and_every_pod_has_its_identity() {
    let state = compile(&inputs(vec![]));
    assert!(state.enforced.is_empty() && state.rules.is_empty());
    assert_eq!(state.ipcache[&"10.0.0.2/32".parse().unwrap()], 256);
    assert_eq!(state.ipcache[&"10.0.1.5/32".parse().unwrap()], 259, "remote pods too");
    assert_eq!(state.ipcache[&"10.0.0.1/32".parse().unwrap()], HOST);
}

#[test]
fn a_pod_selector_peer_and_a_port() {
    let state = compile(&inputs(vec![policy(
        "shop",
        "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: client}}}]\n    ports: [{port: 8080}]\n",
    )]));
    assert_eq!(state.enforced, [(256, Direction::Ingress)].into(), "only the selected pod, only ingress");
    assert_eq!(without_host(&state), [tcp(Some(257), Some(8080), Direction::Ingress)].into(), "lab/client is another namespace");
    assert!(host_rules(256).is_subset(&state.rules), "the node may always reach its pods");
}

#[test]
fn an_empty_policy_denies_everything_but_the_node() {
    let state = compile(&inputs(vec![policy("shop", "  podSelector: {}\n  policyTypes: [Ingress, Egress]\n")]));
    assert_eq!(state.enforced, [(256, Direction::Ingress), (256, Direction::Egress), (257, Direction::Ingress), (257, Direction::Egress)].into());
    assert!(without_host(&state).is_empty());
    let other_namespace = compile(&inputs(vec![policy("lab", "  podSelector: {}\n")]));
    assert!(other_namespace.enforced.is_empty(), "lab's pods are not on this node");
}

#[test]
fn namespace_selectors_with_and_without_a_pod_selector() {
    let state = compile(&inputs(vec![policy(
        "shop",
        "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {team: a}}}]\n  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: shop}}, podSelector: {matchLabels: {app: other}}}]\n    ports: [{port: 9090}]\n",
    )]));
    let rules = without_host(&state);
    assert!(rules.contains(&tcp(Some(259), None, Direction::Ingress)), "any port from team=a's pods: {rules:?}");
    assert!(rules.contains(&Rule { local: 256, peer: Some(259), port: None, protocol: Protocol::Udp, direction: Direction::Ingress }), "and any protocol");
    assert!(rules.contains(&tcp(Some(258), Some(9090), Direction::Ingress)));
    assert!(!rules.iter().any(|r| r.peer == Some(257)), "shop/client matches neither peer");
}

#[test]
fn ip_blocks_are_prefix_identities_and_except_is_left_out() {
    let state = compile(&inputs(vec![policy(
        "shop",
        "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from: [{ipBlock: {cidr: 192.168.0.0/16, except: [192.168.7.0/24]}}]\n    ports: [{port: 443}]\n",
    )]));
    let whole = state.ipcache[&"192.168.0.0/16".parse().unwrap()];
    let except = state.ipcache[&"192.168.7.0/24".parse().unwrap()];
    assert!(whole >= CIDR_IDENTITY_BASE && except >= CIDR_IDENTITY_BASE && whole != except);
    assert_eq!(without_host(&state), [tcp(Some(whole), Some(443), Direction::Ingress)].into());
}

#[test]
fn an_ip_block_of_exactly_a_node_address_leaves_the_node_its_identity() {
    let state = compile(&inputs(vec![policy("shop", "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from: [{ipBlock: {cidr: 10.0.0.1/32}}]\n")]));
    assert_eq!(state.ipcache[&"10.0.0.1/32".parse().unwrap()], HOST, "the node's probes are still the node's");
    assert!(host_rules(256).is_subset(&state.rules));
}

#[test]
fn named_ports_ranges_no_peers_and_egress() {
    let state = compile(&inputs(vec![policy(
        "shop",
        "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - ports: [{port: http}, {port: 9000, endPort: 9002, protocol: UDP}]\n  egress:\n  - to: [{podSelector: {matchLabels: {app: client}}}]\n    ports: [{port: 53, protocol: UDP}]\n",
    )]));
    assert_eq!(state.enforced, [(256, Direction::Ingress), (256, Direction::Egress)].into(), "egress rules make it an egress policy too");
    let udp = |port| Rule { local: 256, peer: None, port: Some(port), protocol: Protocol::Udp, direction: Direction::Ingress };
    let expected: BTreeSet<Rule> = [
        tcp(None, Some(8080), Direction::Ingress),
        udp(9000),
        udp(9001),
        udp(9002),
        Rule { local: 256, peer: Some(257), port: Some(53), protocol: Protocol::Udp, direction: Direction::Egress },
    ]
    .into();
    assert_eq!(without_host(&state), expected);
}

#[test]
fn several_policies_add_up() {
    let state = compile(&inputs(vec![
        policy("shop", "  podSelector: {matchLabels: {app: web}}\n  ingress: [{from: [{podSelector: {matchLabels: {app: client}}}], ports: [{port: 80}]}]\n"),
        policy("shop", "  podSelector: {matchLabels: {app: web}}\n  ingress: [{from: [{podSelector: {matchLabels: {app: other}}}], ports: [{port: 81}]}]\n"),
    ]));
    assert_eq!(without_host(&state), [tcp(Some(257), Some(80), Direction::Ingress), tcp(Some(258), Some(81), Direction::Ingress)].into());
}

#[test]
fn a_default_deny_namespace_restricts_its_pods_until_a_policy_allows() {
    let mut denied = inputs(vec![]);
    denied.namespaces.insert("shop".into(), [(api::netpol::DEFAULT_DENY_LABEL.to_string(), "Ingress".to_string())].into());
    let state = compile(&denied);
    assert_eq!(state.enforced, [(256, Direction::Ingress), (257, Direction::Ingress)].into(), "both local shop pods, ingress only");
    assert!(without_host(&state).is_empty(), "nothing but the node is allowed");
    assert!(host_rules(256).is_subset(&state.rules) && host_rules(257).is_subset(&state.rules));

    denied.policies.push(policy("shop", "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: client}}}]\n"));
    let state = compile(&denied);
    assert_eq!(state.enforced, [(256, Direction::Ingress), (257, Direction::Ingress)].into(), "the client stays restricted");
    assert!(without_host(&state).iter().all(|r| r.local == 256 && r.peer == Some(257)), "{:?}", without_host(&state));

    denied.namespaces.insert("shop".into(), [(api::netpol::DEFAULT_DENY_LABEL.to_string(), "all".to_string())].into());
    let both = compile(&denied).enforced;
    assert!(both.contains(&(257, Direction::Egress)) && both.contains(&(256, Direction::Egress)), "{both:?}");
    denied.namespaces.insert("lab".into(), [(api::netpol::DEFAULT_DENY_LABEL.to_string(), "all".to_string())].into());
    assert_eq!(compile(&denied).enforced, both, "lab's pods are not on this node");
}

fn http_policy(spec: &str) -> FlotillaNetworkPolicy {
    let yaml = format!("apiVersion: flotilla.dev/v1alpha1\nkind: FlotillaNetworkPolicy\nmetadata: {{name: h, namespace: shop}}\nspec:\n{spec}");
    let policy: FlotillaNetworkPolicy = decode_document(&parse_documents(&yaml).unwrap()[0]).unwrap();
    api::netpol::flotilla::validate(&policy).unwrap();
    policy
}

#[test]
fn http_rules_send_their_port_through_the_proxy_and_say_what_each_peer_may_ask() {
    let mut with = inputs(vec![policy(
        "shop",
        "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: other}}}]\n    ports: [{port: 8080}]\n",
    )]);
    with.http_policies = vec![http_policy(
        "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: client}}}]\n    ports: [{port: http}]\n    http: [{method: GET, path: /public/.*}]\n  - from: [{ipBlock: {cidr: 198.18.0.0/15}}]\n    ports: [{port: 9090}]\n",
    )];
    let state = compile(&with);
    let block = state.ipcache[&"198.18.0.0/15".parse().unwrap()];
    assert_eq!(
        without_host(&state),
        [tcp(Some(257), Some(8080), Direction::Ingress), tcp(Some(258), Some(8080), Direction::Ingress), tcp(Some(block), Some(9090), Direction::Ingress)]
            .into(),
        "the L3/L4 part allows as a NetworkPolicy would; the ipBlock of a FlotillaNetworkPolicy is a prefix too"
    );
    assert_eq!(state.http.keys().copied().collect::<Vec<_>>(), vec![(256, 8080)], "only the port with HTTP rules, its named port resolved");
    let port = &state.http[&(256, 8080)];
    let rule = HttpRule { method: Some("GET".into()), path: Some("/public/.*".into()), ..Default::default() };
    assert_eq!(port.access(257), vec![&Access::Rules([rule].into())], "the client may ask what the HTTP rules allow");
    assert_eq!(port.access(258), vec![&Access::All], "a NetworkPolicy rule lets the other pod ask anything on the port");
    assert!(port.access(259).is_empty(), "lab/client is allowed nothing");
}

#[test]
fn dns_name_rules_allow_the_addresses_their_names_resolved_to() {
    let mut with = inputs(vec![]);
    with.http_policies = vec![http_policy(
        "  podSelector: {matchLabels: {app: web}}\n  egress:\n  - ports: [{port: 53, protocol: UDP}]\n  - toFQDNs: [{matchPattern: '*.example.test'}]\n    ports: [{port: 443}]\n",
    )];
    let nothing_yet = compile(&with);
    assert!(nothing_yet.enforced.contains(&(256, Direction::Egress)), "egress is restricted before any name resolved");
    assert_eq!(without_host(&nothing_yet), [Rule { local: 256, peer: None, port: Some(53), protocol: Protocol::Udp, direction: Direction::Egress }].into());

    with.resolved = [
        ("api.example.test".to_string(), ["198.18.77.10".parse().unwrap(), "198.18.77.11".parse().unwrap()].into()),
        ("other.example.org".to_string(), ["198.18.77.200".parse().unwrap()].into()),
    ]
    .into();
    let state = compile(&with);
    let id = |ip: &str| state.ipcache[&format!("{ip}/32").parse().unwrap()];
    let (a, b) = (id("198.18.77.10"), id("198.18.77.11"));
    assert!(a >= CIDR_IDENTITY_BASE && b >= CIDR_IDENTITY_BASE && a != b, "each address is an identity of its own");
    assert!(!state.ipcache.contains_key(&"198.18.77.200/32".parse().unwrap()), "a name no rule selects is not learned");
    let egress: BTreeSet<Rule> = without_host(&state).into_iter().filter(|r| r.port == Some(443)).collect();
    assert_eq!(egress, [a, b].iter().map(|p| tcp(Some(*p), Some(443), Direction::Egress)).collect());
}
