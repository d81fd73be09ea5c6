//! Kubernetes NetworkPolicy (`networking.k8s.io/v1`): validation with field paths. What a
//! policy means for the datapath is `net::policy`'s.

use k8s_openapi::api::networking::v1::{IPBlock, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::field::{FieldError, FieldErrors};
use crate::selector::Selector;
use crate::validation;

pub mod flotilla;
pub mod suggest;

/// The namespace label that sets a namespace to default-deny: `Ingress`, `Egress` or `all`.
/// Every pod of such a namespace is restricted in that direction as if a policy selecting it
/// with no rules existed, and only what some NetworkPolicy allows passes.
pub const DEFAULT_DENY_LABEL: &str = "flotilla.dev/default-deny";
const DEFAULT_DENY_VALUES: [&str; 3] = ["Ingress", "Egress", "all"];

/// Which directions (ingress, egress) a namespace with `labels` denies by default. A value
/// admission would refuse denies both, so a label that slipped past it fails closed.
pub fn default_deny(labels: &std::collections::BTreeMap<String, String>) -> (bool, bool) {
    match labels.get(DEFAULT_DENY_LABEL).map(String::as_str) {
        None => (false, false),
        Some("Ingress") => (true, false),
        Some("Egress") => (false, true),
        Some(_) => (true, true),
    }
}

/// Checks a Namespace: its metadata, and the default-deny label's value.
pub fn validate_namespace(namespace: &crate::Namespace) -> Result<(), FieldErrors> {
    let mut errors = FieldErrors::default();
    validation::metadata(&namespace.metadata, true, &mut errors);
    if let Some(value) = namespace.metadata.labels.as_ref().and_then(|l| l.get(DEFAULT_DENY_LABEL)) {
        if !DEFAULT_DENY_VALUES.contains(&value.as_str()) {
            errors.push(FieldError::not_supported(format!("metadata.labels[{DEFAULT_DENY_LABEL}]"), value, &DEFAULT_DENY_VALUES));
        }
    }
    errors.into_result()
}

/// An IPv4 network in the form a policy gives it: (address as a number, prefix length).
pub fn parse_cidr(text: &str) -> Result<(u32, u8), String> {
    if text.contains(':') {
        return Err("IPv6 networks are not supported yet".into());
    }
    let (addr, len) = text.split_once('/').ok_or("expected a network such as 10.0.0.0/8")?;
    let addr: std::net::Ipv4Addr = addr.parse().map_err(|_| format!("\"{addr}\" is not an IPv4 address"))?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32).ok_or_else(|| format!("\"{len}\" is not a prefix length from 0 to 32"))?;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Ok((u32::from(addr) & mask, len))
}

/// Whether `inner` lies inside `outer` and is smaller.
fn strictly_inside(inner: (u32, u8), outer: (u32, u8)) -> bool {
    let mask = if outer.1 == 0 { 0 } else { u32::MAX << (32 - outer.1) };
    inner.1 > outer.1 && inner.0 & mask == outer.0
}

/// Whether `name` is a valid named port (an IANA service name: 1 to 15 lowercase letters,
/// digits and '-', with a letter, no '-' at either end or twice in a row).
pub fn is_port_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

fn selector(path: &str, object: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>, errors: &mut FieldErrors) {
    if let Some(object) = object {
        if let Err(e) = Selector::from_object(object) {
            errors.push(FieldError::invalid(path, "selector", &e.to_string()));
        }
    }
}

fn ip_block(path: &str, block: &IPBlock, errors: &mut FieldErrors) {
    match parse_cidr(&block.cidr) {
        Err(why) => errors.push(FieldError::invalid(format!("{path}.cidr"), &block.cidr, &why)),
        Ok(outer) => {
            for (i, except) in block.except.iter().flatten().enumerate() {
                match parse_cidr(except) {
                    Err(why) => errors.push(FieldError::invalid(format!("{path}.except[{i}]"), except, &why)),
                    Ok(inner) if !strictly_inside(inner, outer) => {
                        errors.push(FieldError::invalid(format!("{path}.except[{i}]"), except, &format!("must be a smaller network inside {}", block.cidr)))
                    }
                    Ok(_) => {}
                }
            }
        }
    }
}

fn peer(path: &str, peer: &NetworkPolicyPeer, errors: &mut FieldErrors) {
    let selectors = peer.pod_selector.is_some() || peer.namespace_selector.is_some();
    match (&peer.ip_block, selectors) {
        (Some(_), true) => {
            errors.push(FieldError::invalid(path, "ipBlock with a selector", "a peer is either an ipBlock or pod/namespace selectors, not both"))
        }
        (None, false) => errors.push(FieldError::required(path, "one of podSelector, namespaceSelector or ipBlock")),
        _ => {}
    }
    selector(&format!("{path}.podSelector"), peer.pod_selector.as_ref(), errors);
    selector(&format!("{path}.namespaceSelector"), peer.namespace_selector.as_ref(), errors);
    if let Some(block) = &peer.ip_block {
        ip_block(&format!("{path}.ipBlock"), block, errors);
    }
}

fn port(path: &str, port: &NetworkPolicyPort, errors: &mut FieldErrors) {
    if let Some(protocol) = &port.protocol {
        if !["TCP", "UDP", "SCTP"].contains(&protocol.as_str()) {
            errors.push(FieldError {
                path: format!("{path}.protocol"),
                message: format!("Unsupported value: \"{protocol}\": supported values: \"TCP\", \"UDP\", \"SCTP\""),
            });
        }
    }
    match &port.port {
        Some(IntOrString::Int(n)) if !(1..=65535).contains(n) => errors.push(FieldError::invalid(format!("{path}.port"), n, "must be from 1 to 65535")),
        Some(IntOrString::String(name)) if !is_port_name(name) => {
            errors.push(FieldError::invalid(format!("{path}.port"), name, "must be a port number or a port name (1 to 15 lowercase letters, digits and '-')"))
        }
        _ => {}
    }
    if let Some(end) = port.end_port {
        match &port.port {
            Some(IntOrString::Int(start)) if end >= *start && end <= 65535 => {}
            Some(IntOrString::Int(start)) => errors.push(FieldError::invalid(format!("{path}.endPort"), end, &format!("must be from port ({start}) to 65535"))),
            _ => errors.push(FieldError::invalid(format!("{path}.endPort"), end, "needs a numeric port to start the range")),
        }
    }
}

/// Checks a NetworkPolicy.
pub fn validate(policy: &NetworkPolicy) -> Result<(), FieldErrors> {
    let mut errors = FieldErrors::default();
    validation::metadata(&policy.metadata, false, &mut errors);
    let Some(spec) = &policy.spec else {
        errors.push(FieldError::required("spec", "a podSelector ({} for every pod of the namespace)"));
        return errors.into_result();
    };
    selector("spec.podSelector", spec.pod_selector.as_ref(), &mut errors);
    for (i, kind) in spec.policy_types.iter().flatten().enumerate() {
        if kind != "Ingress" && kind != "Egress" {
            errors.push(FieldError {
                path: format!("spec.policyTypes[{i}]"),
                message: format!("Unsupported value: \"{kind}\": supported values: \"Ingress\", \"Egress\""),
            });
        }
    }
    for (i, rule) in spec.ingress.iter().flatten().enumerate() {
        for (j, p) in rule.from.iter().flatten().enumerate() {
            peer(&format!("spec.ingress[{i}].from[{j}]"), p, &mut errors);
        }
        for (j, p) in rule.ports.iter().flatten().enumerate() {
            port(&format!("spec.ingress[{i}].ports[{j}]"), p, &mut errors);
        }
    }
    for (i, rule) in spec.egress.iter().flatten().enumerate() {
        for (j, p) in rule.to.iter().flatten().enumerate() {
            peer(&format!("spec.egress[{i}].to[{j}]"), p, &mut errors);
        }
        for (j, p) in rule.ports.iter().flatten().enumerate() {
            port(&format!("spec.egress[{i}].ports[{j}]"), p, &mut errors);
        }
    }
    errors.into_result()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{decode_document, parse_documents};

    fn policy(spec: &str) -> NetworkPolicy {
        let yaml = format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: shop}}\nspec:\n{spec}");
        decode_document(&parse_documents(&yaml).unwrap()[0]).unwrap()
    }

    #[test]
    fn good_policies_pass() {
        validate(&policy("  podSelector: {}\n  policyTypes: [Ingress]\n")).unwrap();
        validate(&policy(
            "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from:\n    - podSelector: {matchLabels: {app: client}}\n    - namespaceSelector: {matchLabels: {team: a}}\n      podSelector: {}\n    - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}\n    ports:\n    - {port: 8080}\n    - {port: http, protocol: TCP}\n    - {port: 9000, endPort: 9100, protocol: UDP}\n  egress:\n  - to: [{ipBlock: {cidr: 0.0.0.0/0}}]\n",
        ))
        .unwrap();
    }

    #[test]
    fn the_default_deny_label_is_checked_and_read() {
        let namespace = |value: &str| -> crate::Namespace {
            let yaml = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop, labels: {{flotilla.dev/default-deny: \"{value}\"}}}}\n");
            decode_document(&parse_documents(&yaml).unwrap()[0]).unwrap()
        };
        for (value, deny) in [("Ingress", (true, false)), ("Egress", (false, true)), ("all", (true, true))] {
            let ns = namespace(value);
            validate_namespace(&ns).unwrap();
            assert_eq!(default_deny(ns.metadata.labels.as_ref().unwrap()), deny, "{value}");
        }
        let wrong = namespace("yes");
        let message = validate_namespace(&wrong).unwrap_err().to_string();
        assert!(message.contains("metadata.labels[flotilla.dev/default-deny]: Unsupported value: \"yes\""), "{message}");
        assert_eq!(default_deny(wrong.metadata.labels.as_ref().unwrap()), (true, true), "an unknown value fails closed");
        assert_eq!(default_deny(&Default::default()), (false, false));
    }

    #[test]
    fn bad_policies_name_the_field() {
        for (spec, expected) in [
            ("  podSelector: {}\n  policyTypes: [Both]\n", "spec.policyTypes[0]: Unsupported value: \"Both\""),
            ("  podSelector: {}\n  ingress: [{from: [{}]}]\n", "spec.ingress[0].from[0]: Required value"),
            ("  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]\n", "spec.ingress[0].from[0]: Invalid value"),
            ("  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0}}]}]\n", "spec.ingress[0].from[0].ipBlock.cidr: Invalid value: \"10.0.0.0\""),
            ("  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: \"fd00::/8\"}}]}]\n", "IPv6 networks are not supported yet"),
            (
                "  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}}]}]\n",
                "spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: \"11.0.0.0/16\": must be a smaller network inside 10.0.0.0/8",
            ),
            ("  podSelector: {}\n  ingress: [{ports: [{port: 0}]}]\n", "spec.ingress[0].ports[0].port: Invalid value: \"0\""),
            ("  podSelector: {}\n  ingress: [{ports: [{port: Web_Port}]}]\n", "spec.ingress[0].ports[0].port: Invalid value: \"Web_Port\""),
            (
                "  podSelector: {}\n  ingress: [{ports: [{port: 9000, endPort: 8000}]}]\n",
                "spec.ingress[0].ports[0].endPort: Invalid value: \"8000\": must be from port (9000)",
            ),
            ("  podSelector: {}\n  ingress: [{ports: [{port: http, endPort: 8000}]}]\n", "needs a numeric port"),
            ("  podSelector: {}\n  egress: [{ports: [{port: 53, protocol: ICMP}]}]\n", "spec.egress[0].ports[0].protocol: Unsupported value: \"ICMP\""),
            ("  podSelector: {matchExpressions: [{key: app, operator: Near}]}\n", "spec.podSelector: Invalid value"),
        ] {
            let err = validate(&policy(spec)).unwrap_err().to_string();
            assert!(err.contains(expected), "{spec}: {err}");
        }
    }
}
