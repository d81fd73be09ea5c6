use super::*;
use crate::manifest::{decode_document, parse_documents};

fn policy(spec: &str) -> FlotillaNetworkPolicy {
    let yaml = format!("apiVersion: flotilla.dev/v1alpha1\nkind: FlotillaNetworkPolicy\nmetadata: {{name: p, namespace: shop}}\nspec:\n{spec}");
    decode_document(&parse_documents(&yaml).unwrap()[0]).unwrap()
}

const WEB_API: &str = "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: client}}}]\n    ports: [{port: 8080}]\n    http:\n    - {method: GET, path: /public/.*}\n    - {method: POST, path: /orders, host: 'shop\\.example', headers: [{name: X-Token, value: s3cret}]}\n";

fn request<'a>(method: &'a str, path: &'a str, host: &'a str, headers: &'a BTreeMap<String, Vec<String>>) -> Request<'a> {
    Request { method, path, host, headers }
}

#[test]
fn its_network_policy_part_means_the_same_and_http_rules_keep_their_order() {
    let p = policy(WEB_API);
    validate(&p).unwrap();
    let np = p.network_policy();
    crate::netpol::validate(&np).unwrap();
    let rule = &np.spec.as_ref().unwrap().ingress.as_ref().unwrap()[0];
    assert_eq!(rule.ports.as_ref().unwrap()[0].port, Some(IntOrString::Int(8080)));
    let http = p.ingress_http();
    assert_eq!(http.len(), 1);
    assert_eq!(http[0][1].path.as_deref(), Some("/orders"));
}

#[test]
fn requests_match_a_rule_only_when_every_field_given_does() {
    let p = policy(WEB_API);
    let rules: Vec<CompiledRule> = p.ingress_http()[0].iter().map(CompiledRule::new).collect();
    let none = BTreeMap::new();
    let token: BTreeMap<String, Vec<String>> = [("x-token".to_string(), vec!["s3cret".to_string()])].into();
    let allowed = |r: &Request| rules.iter().any(|rule| rule.matches(r));
    assert!(allowed(&request("GET", "/public/a.html", "web", &none)));
    assert!(!allowed(&request("GET", "/public", "web", &none)), "the whole path must match");
    assert!(!allowed(&request("GET", "/private/public/x", "web", &none)), "anchored at the start");
    assert!(!allowed(&request("DELETE", "/public/a", "web", &none)));
    assert!(allowed(&request("POST", "/orders", "shop.example", &token)));
    assert!(!allowed(&request("POST", "/orders", "shopxexample", &token)), "the host is a regular expression, its dot escaped");
    assert!(!allowed(&request("POST", "/orders", "shop.example", &none)), "the header is required");
    let wrong: BTreeMap<String, Vec<String>> = [("x-token".to_string(), vec!["guess".to_string()])].into();
    assert!(!allowed(&request("POST", "/orders", "shop.example", &wrong)), "and its value");
}

#[test]
fn bad_rules_are_refused_naming_the_field() {
    let refused = |spec: &str| validate(&policy(spec)).unwrap_err().to_string();
    let e = refused("  podSelector: {}\n  ingress:\n  - ports: [{port: 80}]\n    http: [{path: '/a(['}]\n");
    assert!(e.contains("spec.ingress[0].http[0].path") && e.contains("regular expression"), "{e}");
    let e = refused("  podSelector: {}\n  ingress:\n  - http: [{method: GET}]\n");
    assert!(e.contains("spec.ingress[0].ports"), "{e}");
    let e = refused("  podSelector: {}\n  ingress:\n  - ports: [{port: 53, protocol: UDP}]\n    http: [{method: GET}]\n");
    assert!(e.contains("spec.ingress[0].ports[0].protocol"), "{e}");
    let e = refused("  podSelector: {}\n  ingress:\n  - ports: [{port: 80, endPort: 90}]\n    http: [{method: GET}]\n");
    assert!(e.contains("spec.ingress[0].ports[0].endPort"), "{e}");
    let e = refused("  podSelector: {}\n  ingress:\n  - ports: [{port: 80}]\n    http: [{headers: [{name: 'bad name'}]}]\n");
    assert!(e.contains("spec.ingress[0].http[0].headers[0].name"), "{e}");
    let e = refused("  podSelector: {}\n  ingress:\n  - from: [{ipBlock: {cidr: 10.0.0.0/33}}]\n    ports: [{port: 80}]\n");
    assert!(e.contains("spec.ingress[0].from[0].ipBlock.cidr"), "the NetworkPolicy part is checked as one: {e}");
}

#[test]
fn dns_names_select_exactly_or_by_pattern() {
    let name = |n: &str| FqdnSelector { match_name: Some(n.into()), match_pattern: None };
    let pattern = |p: &str| FqdnSelector { match_name: None, match_pattern: Some(p.into()) };
    assert!(name("api.example.com").matches("API.example.com."));
    assert!(!name("api.example.com").matches("x.api.example.com"));
    assert!(pattern("*.example.com").matches("api.example.com"));
    assert!(!pattern("*.example.com").matches("a.b.example.com"), "* stays within one label");
    assert!(!pattern("*.example.com").matches("example.com"));
    assert!(pattern("api-*.example.com").matches("api-eu1.example.com"));
    assert!(!pattern("api-*.example.com").matches("web-eu1.example.com"));
    assert!(pattern("*").matches("anything.at.all"));
}

#[test]
fn rules_with_dns_names_are_no_peerless_rules_and_keep_egress_restricted() {
    let p = policy("  podSelector: {matchLabels: {app: client}}\n  egress:\n  - ports: [{port: 53, protocol: UDP}]\n  - toFQDNs: [{matchName: api.example.com}]\n    ports: [{port: 443}]\n");
    validate(&p).unwrap();
    let np = p.network_policy();
    let spec = np.spec.unwrap();
    assert_eq!(spec.policy_types, Some(vec!["Ingress".to_string(), "Egress".to_string()]), "egress is restricted by the policy");
    assert_eq!(spec.egress.as_ref().map(Vec::len), Some(1), "only the DNS rule: the toFQDNs rule allows learned addresses alone");
    let fqdns = p.egress_fqdns();
    assert_eq!(fqdns.len(), 1);
    assert_eq!(fqdns[0].0[0].match_name.as_deref(), Some("api.example.com"));
    let only_names = policy("  podSelector: {}\n  egress:\n  - toFQDNs: [{matchPattern: '*.example.com'}]\n");
    assert_eq!(only_names.network_policy().spec.unwrap().policy_types, Some(vec!["Ingress".to_string(), "Egress".to_string()]));
}

#[test]
fn bad_dns_name_rules_are_refused_naming_the_field() {
    let refused = |spec: &str| validate(&policy(spec)).unwrap_err().to_string();
    let e = refused("  podSelector: {}\n  egress:\n  - toFQDNs: [{matchName: 'bad name'}]\n");
    assert!(e.contains("spec.egress[0].toFQDNs[0].matchName"), "{e}");
    let e = refused("  podSelector: {}\n  egress:\n  - toFQDNs: [{matchName: a.com, matchPattern: '*.a.com'}]\n");
    assert!(e.contains("spec.egress[0].toFQDNs[0]"), "{e}");
    let e = refused("  podSelector: {}\n  egress:\n  - toFQDNs: [{}]\n");
    assert!(e.contains("spec.egress[0].toFQDNs[0]"), "{e}");
    let e = refused("  podSelector: {}\n  egress:\n  - toFQDNs: []\n");
    assert!(e.contains("spec.egress[0].toFQDNs"), "{e}");
    let e = refused("  podSelector: {}\n  egress:\n  - to: [{podSelector: {}}]\n    toFQDNs: [{matchName: a.com}]\n");
    assert!(e.contains("spec.egress[0].to"), "{e}");
    let e = refused("  podSelector: {}\n  egress:\n  - toFQDNs: [{matchPattern: 'a.*?.com'}]\n");
    assert!(e.contains("matchPattern"), "{e}");
    let e = refused("  podSelector: {}\n  egress:\n  - ports: [{port: 53}]\n  - toFQDNs: [{matchName: a.com}]\n    ports: [{port: 70000}]\n");
    assert!(e.contains("spec.egress[1].ports[0].port"), "a toFQDNs rule's ports are checked under its own index: {e}");
}

#[test]
fn patterns_match_in_linear_time() {
    let pattern = FqdnSelector { match_name: None, match_pattern: Some(format!("{}b.example.com", "*a".repeat(20))) };
    let started = std::time::Instant::now();
    assert!(!pattern.matches(&format!("{}.example.com", "a".repeat(63))));
    assert!(started.elapsed() < std::time::Duration::from_millis(50), "no backtracking blow-up: {:?}", started.elapsed());
    assert!(pattern.matches(&format!("{}b.example.com", "a".repeat(40))));
}
