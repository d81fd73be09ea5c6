use super::*;
use crate::flow::FlowEndpoint;

fn pod(namespace: &str, name: &str, ip: &str, labels: &[(&str, &str)]) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": namespace, "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()},
        "status": {"podIP": ip},
    }))
    .unwrap()
}

/// A pod's namespace, name and labels.
type PodOf<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

fn end(ip: &str, port: u16, identity: u32, pod: Option<PodOf>) -> FlowEndpoint {
    FlowEndpoint {
        ip: ip.into(),
        port,
        identity,
        namespace: pod.map(|(ns, _, _)| ns.to_string()),
        pod: pod.map(|(_, name, _)| name.to_string()),
        labels: pod.map(|(_, _, labels)| labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()).unwrap_or_default(),
    }
}

fn flow(direction: TrafficDirection, verdict: Verdict, protocol: &str, source: FlowEndpoint, destination: FlowEndpoint) -> Flow {
    Flow {
        time: "2026-12-03T08:00:00Z".parse().unwrap(),
        node: "n1".into(),
        verdict,
        drop_reason: (verdict == Verdict::Dropped).then(|| "POLICY_DENIED".into()),
        traffic_direction: direction,
        protocol: protocol.into(),
        source,
        destination,
        l7: None,
    }
}

const WEB: &[(&str, &str)] = &[("app", "web")];
const CLIENT: &[(&str, &str)] = &[("app", "client")];

fn shop() -> Vec<Pod> {
    vec![
        pod("shop", "web-1", "10.42.0.10", WEB),
        pod("shop", "client", "10.42.0.11", CLIENT),
        pod("shop", "idle", "10.42.0.12", &[("app", "idle")]),
        pod("lab", "probe", "10.42.0.20", CLIENT),
    ]
}

/// client -> web:8080, seen at both ends, client -> DNS on the node, and the node's probe.
fn client_to_web() -> Vec<Flow> {
    let client = end("10.42.0.11", 40000, 300, Some(("shop", "client", CLIENT)));
    let web = end("10.42.0.10", 8080, 301, Some(("shop", "web-1", WEB)));
    let node = |port| end("10.42.0.1", port, HOST, None);
    vec![
        flow(TrafficDirection::Egress, Verdict::Forwarded, "TCP", client.clone(), web.clone()),
        flow(TrafficDirection::Ingress, Verdict::Forwarded, "TCP", client.clone(), web.clone()),
        flow(TrafficDirection::Egress, Verdict::Forwarded, "UDP", client.clone(), node(53)),
        flow(TrafficDirection::Ingress, Verdict::Forwarded, "TCP", node(51000), end("10.42.0.10", 8080, 301, Some(("shop", "web-1", WEB)))),
    ]
}

fn named<'a>(suggested: &'a [Suggested], name: &str) -> &'a Suggested {
    suggested.iter().find(|s| s.policy.metadata.name.as_deref() == Some(name)).unwrap_or_else(|| panic!("no policy {name} in {suggested:#?}"))
}

fn spec(s: &Suggested) -> &NetworkPolicySpec {
    s.policy.spec.as_ref().unwrap()
}

fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort { protocol: Some("TCP".into()), port: Some(IntOrString::Int(port)), end_port: None }
}

fn selector(labels: &[(&str, &str)]) -> LabelSelector {
    LabelSelector { match_labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()), match_expressions: None }
}

#[test]
fn each_identity_gets_a_policy_allowing_what_was_seen() {
    let (suggested, summary) = suggest("shop", &shop(), &client_to_web());
    assert_eq!(suggested.len(), 3, "web, client and idle; lab's pods are not shop's");
    assert_eq!(summary.used, 4);

    let web = named(&suggested, "suggested-web");
    assert_eq!(spec(web).pod_selector, Some(selector(WEB)));
    assert_eq!(spec(web).policy_types.as_deref(), Some(&["Ingress".to_string(), "Egress".to_string()][..]));
    let ingress = spec(web).ingress.as_ref().unwrap();
    assert_eq!(ingress.len(), 1, "the node's probe needs no rule: {ingress:#?}");
    assert_eq!(ingress[0].from.as_ref().unwrap()[0].pod_selector, Some(selector(CLIENT)));
    assert_eq!(ingress[0].from.as_ref().unwrap()[0].namespace_selector, None, "the same namespace");
    assert_eq!(ingress[0].ports, Some(vec![tcp(8080)]));
    assert_eq!(spec(web).egress, Some(vec![]), "web was not seen sending");

    let client = named(&suggested, "suggested-client");
    assert_eq!(spec(client).ingress, Some(vec![]));
    let egress = spec(client).egress.as_ref().unwrap();
    assert_eq!(egress.len(), 2, "{egress:#?}");
    let dns = egress.iter().find(|r| r.to.is_none()).expect("a port-only rule for the node");
    assert_eq!(dns.ports, Some(vec![NetworkPolicyPort { protocol: Some("UDP".into()), port: Some(IntOrString::Int(53)), end_port: None }]));
    assert!(client.notes.iter().any(|n| n.contains("53/UDP") && n.contains("cannot name the node")), "{:?}", client.notes);
    let to_web = egress.iter().find(|r| r.to.is_some()).unwrap();
    assert_eq!(to_web.to.as_ref().unwrap()[0].pod_selector, Some(selector(WEB)));
    assert_eq!(to_web.ports, Some(vec![tcp(8080)]));

    let idle = named(&suggested, "suggested-idle");
    assert_eq!((spec(idle).ingress.as_deref(), spec(idle).egress.as_deref()), (Some(&[][..]), Some(&[][..])), "never seen: deny all");
    assert!(idle.notes.iter().any(|n| n.contains("No flow")));
}

#[test]
fn selectors_are_exact_where_label_sets_nest() {
    let mut pods = shop();
    pods.push(pod("shop", "web-canary", "10.42.0.13", &[("app", "web"), ("track", "canary")]));
    let (suggested, _) = suggest("shop", &pods, &client_to_web());
    let web = named(&suggested, "suggested-web");
    let selector = spec(web).pod_selector.as_ref().unwrap();
    assert_eq!(selector.match_labels, Some([("app".to_string(), "web".to_string())].into()));
    assert_eq!(
        selector.match_expressions,
        Some(vec![LabelSelectorRequirement { key: "track".into(), operator: "DoesNotExist".into(), values: None }]),
        "the canary is not web's"
    );
    let canary = named(&suggested, "suggested-web-2");
    assert_eq!(spec(canary).pod_selector.as_ref().unwrap().match_expressions, None);
    assert_eq!(spec(canary).ingress, Some(vec![]), "the canary was never reached");
}

#[test]
fn peers_in_other_namespaces_and_outside_the_cluster() {
    let web = end("10.42.0.10", 8080, 301, Some(("shop", "web-1", WEB)));
    let lab = end("10.42.0.20", 41000, 310, Some(("lab", "probe", CLIENT)));
    let flows = vec![
        flow(TrafficDirection::Ingress, Verdict::Forwarded, "TCP", lab, web.clone()),
        flow(TrafficDirection::Ingress, Verdict::Forwarded, "TCP", end("198.18.77.5", 42000, 2, None), web.clone()),
        // The client's first packet, before its identity reached the node: judged as the world's,
        // named by nothing, but its address is the client's.
        flow(TrafficDirection::Ingress, Verdict::Forwarded, "TCP", end("10.42.0.11", 43000, 2, None), web.clone()),
        flow(
            TrafficDirection::Ingress,
            Verdict::Dropped,
            "TCP",
            end("198.18.77.6", 42000, 2, None),
            end("10.42.0.10", 9090, 301, Some(("shop", "web-1", WEB))),
        ),
        flow(TrafficDirection::Ingress, Verdict::Forwarded, "TCP", end("not an address", 1, 2, None), web.clone()),
    ];
    let (suggested, summary) = suggest("shop", &shop(), &flows);
    assert_eq!((summary.used, summary.dropped, summary.unusable), (3, 1, 1));
    let ingress = spec(named(&suggested, "suggested-web")).ingress.clone().unwrap();
    assert_eq!(ingress.len(), 1, "every peer was seen on 8080 alone: one rule");
    let from = ingress[0].from.clone().unwrap();
    assert_eq!(from.len(), 3, "{from:#?}");
    assert!(from.contains(&NetworkPolicyPeer { pod_selector: Some(selector(CLIENT)), ..Default::default() }), "the early client flow is the client's");
    assert!(from.contains(&NetworkPolicyPeer {
        pod_selector: Some(selector(CLIENT)),
        namespace_selector: Some(selector(&[("kubernetes.io/metadata.name", "lab")])),
        ip_block: None
    }));
    assert!(from.contains(&NetworkPolicyPeer { ip_block: Some(IPBlock { cidr: "198.18.77.5/32".into(), except: None }), ..Default::default() }));
    assert!(!format!("{from:?}").contains("198.18.77.6"), "a dropped flow allows nothing");
}

#[test]
fn icmp_has_no_ports_and_says_so() {
    let client = end("10.42.0.11", 0, 300, Some(("shop", "client", CLIENT)));
    let web = end("10.42.0.10", 0, 301, Some(("shop", "web-1", WEB)));
    let (suggested, _) = suggest("shop", &shop(), &[flow(TrafficDirection::Ingress, Verdict::Forwarded, "ICMP", client, web)]);
    let web = named(&suggested, "suggested-web");
    assert_eq!(spec(web).ingress.as_ref().unwrap()[0].ports, None);
    assert!(web.notes.iter().any(|n| n.contains("no ICMP rule")), "{:?}", web.notes);
}

#[test]
fn the_yaml_reads_back_as_valid_policies() {
    let (suggested, summary) = suggest("shop", &shop(), &client_to_web());
    let yaml = to_yaml("shop", &suggested, &summary).unwrap();
    assert!(yaml.starts_with("# Suggested by `flotilla policy suggest -n shop` from 4 forwarded flows"), "{yaml}");
    let documents = crate::manifest::parse_documents(&yaml).unwrap();
    assert_eq!(documents.len(), 3);
    for (document, s) in documents.iter().zip(&suggested) {
        let policy: NetworkPolicy = crate::manifest::decode_document(document).unwrap();
        crate::netpol::validate(&policy).unwrap();
        assert_eq!(&policy, &s.policy);
    }
}

#[test]
fn names_are_dns_labels_and_unique() {
    let mut taken = BTreeSet::new();
    let odd: BTreeMap<String, String> = [("app".to_string(), "Web_Front.End".to_string())].into();
    assert_eq!(unique_name(&odd, &mut taken), "suggested-web-front-end");
    assert_eq!(unique_name(&odd, &mut taken), "suggested-web-front-end-2");
    assert_eq!(unique_name(&BTreeMap::new(), &mut taken), "suggested-unlabelled");
    let other: BTreeMap<String, String> = [("tier".to_string(), "db".to_string()), ("zone".to_string(), "a".to_string())].into();
    assert_eq!(unique_name(&other, &mut taken), "suggested-db-a");
}

#[test]
fn icmp_to_the_node_is_left_out_rather_than_allowing_everything() {
    let client = end("10.42.0.11", 0, 300, Some(("shop", "client", CLIENT)));
    let node = end("10.42.0.1", 0, HOST, None);
    let (suggested, _) = suggest("shop", &shop(), &[flow(TrafficDirection::Egress, Verdict::Forwarded, "ICMP", client, node)]);
    let client = named(&suggested, "suggested-client");
    assert_eq!(spec(client).egress, Some(vec![]), "no rule: a port-only rule without ports would allow all egress");
    assert!(client.notes.iter().any(|n| n.contains("ICMP")), "{:?}", client.notes);
}

#[test]
fn ports_the_proxy_judged_are_left_to_their_http_rules() {
    let client = end("10.42.0.11", 40000, 300, Some(("shop", "client", CLIENT)));
    let web = end("10.42.0.10", 8080, 301, Some(("shop", "web-1", WEB)));
    let mut l7 = flow(TrafficDirection::Ingress, Verdict::Dropped, "TCP", client.clone(), web.clone());
    l7.l7 = Some(crate::flow::L7 { latency_ns: 1, http: crate::flow::HttpFlow { method: "GET".into(), url: "/private".into(), host: None, code: 403 } });
    let mut served = l7.clone();
    served.verdict = Verdict::Forwarded;
    served.drop_reason = None;
    let flows = vec![flow(TrafficDirection::Ingress, Verdict::Forwarded, "TCP", client, web), l7, served];
    let (suggested, _) = suggest("shop", &shop(), &flows);
    let web = named(&suggested, "suggested-web");
    assert_eq!(spec(web).ingress, Some(vec![]), "no plain rule on 8080, which would let the client ask anything there");
    assert!(web.notes.iter().any(|n| n.contains("8080") && n.contains("HTTP rules")), "{:?}", web.notes);
}
