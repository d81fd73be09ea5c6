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
