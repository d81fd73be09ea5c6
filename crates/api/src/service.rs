//! Services (`v1`) and their Endpoints: defaults and validation with field paths. Address and
//! port allocation is the API server's; what a Service means for packets is `net::service`'s.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{ClientIPConfig, Endpoints, Service, ServiceSpec, SessionAffinityConfig};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::field::{FieldError, FieldErrors};
use crate::netpol::is_port_name;
use crate::validation;

/// `spec.clusterIP` of a headless Service: no virtual IP, DNS names its endpoints.
pub const HEADLESS: &str = "None";

/// The default `spec.sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours, as Kubernetes).
pub const DEFAULT_AFFINITY_SECONDS: i32 = 10800;

/// The port range NodePorts are taken from unless the server is told otherwise.
pub const DEFAULT_NODE_PORTS: (u16, u16) = (30000, 32767);

/// Fills what Kubernetes fills: type ClusterIP, protocol TCP, targetPort = port, no affinity
/// (its timeout when ClientIP), one IPv4 family.
pub fn default_service(service: &mut Service) {
    let spec = service.spec.get_or_insert_with(ServiceSpec::default);
    spec.type_.get_or_insert_with(|| "ClusterIP".into());
    spec.session_affinity.get_or_insert_with(|| "None".into());
    if spec.session_affinity.as_deref() == Some("ClientIP") {
        let config = spec.session_affinity_config.get_or_insert_with(SessionAffinityConfig::default);
        let client = config.client_ip.get_or_insert_with(ClientIPConfig::default);
        client.timeout_seconds.get_or_insert(DEFAULT_AFFINITY_SECONDS);
    }
    spec.internal_traffic_policy.get_or_insert_with(|| "Cluster".into());
    if spec.type_.as_deref() == Some("NodePort") {
        spec.external_traffic_policy.get_or_insert_with(|| "Cluster".into());
    }
    spec.ip_families.get_or_insert_with(|| vec!["IPv4".into()]);
    spec.ip_family_policy.get_or_insert_with(|| "SingleStack".into());
    for port in spec.ports.iter_mut().flatten() {
        port.protocol.get_or_insert_with(|| "TCP".into());
        if port.target_port.is_none() {
            port.target_port = Some(IntOrString::Int(port.port));
        }
    }
    if let Some(ip) = spec.cluster_ip.clone().filter(|ip| !ip.is_empty()) {
        spec.cluster_ips = Some(vec![ip]);
    }
}

fn ipv4(path: &str, text: &str, errors: &mut FieldErrors) -> Option<Ipv4Addr> {
    match text.parse::<Ipv4Addr>() {
        Ok(ip) => Some(ip),
        Err(_) if text.contains(':') => {
            errors.push(FieldError::invalid(path, text, "IPv6 is not supported yet"));
            None
        }
        Err(_) => {
            errors.push(FieldError::invalid(path, text, "must be an IPv4 address"));
            None
        }
    }
}

/// Checks a Service (after [`default_service`]).
pub fn validate_service(service: &Service) -> Result<(), FieldErrors> {
    let mut errors = FieldErrors::default();
    validation::metadata(&service.metadata, true, &mut errors);
    if let Some(name) = service.metadata.name.as_deref() {
        // A Service's name is a DNS label that starts with a letter (RFC 1035): it becomes
        // `<name>.<namespace>.svc.<domain>`.
        if name.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            errors.push(FieldError::invalid("metadata.name", name, "must start with a letter (it is a DNS name)"));
        }
    }
    let Some(spec) = &service.spec else {
        errors.push(FieldError::required("spec", "ports and a selector"));
        return errors.into_result();
    };
    let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
    if !["ClusterIP", "NodePort"].contains(&kind) {
        errors.push(FieldError::not_supported("spec.type", kind, &["ClusterIP", "NodePort"]));
    }
    let headless = spec.cluster_ip.as_deref() == Some(HEADLESS);
    if let Some(ip) = spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty() && *ip != HEADLESS) {
        ipv4("spec.clusterIP", ip, &mut errors);
    }
    if headless && kind == "NodePort" {
        errors.push(FieldError::invalid("spec.clusterIP", HEADLESS, "a NodePort Service needs a cluster IP"));
    }
    if let Some(ips) = &spec.cluster_ips {
        if ips.len() > 1 || ips.first().map(String::as_str) != spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty()) {
            errors.push(FieldError::invalid("spec.clusterIPs", format!("{ips:?}"), "must be [spec.clusterIP] (one IPv4 family)"));
        }
    }
    for (i, family) in spec.ip_families.iter().flatten().enumerate() {
        if family != "IPv4" {
            errors.push(FieldError::not_supported(format!("spec.ipFamilies[{i}]"), family, &["IPv4"]));
        }
    }
    match spec.session_affinity.as_deref() {
        Some("None") | None => {}
        Some("ClientIP") => {
            let timeout = spec.session_affinity_config.as_ref().and_then(|c| c.client_ip.as_ref()).and_then(|c| c.timeout_seconds);
            if let Some(t) = timeout.filter(|t| !(1..=86400).contains(t)) {
                errors.push(FieldError::invalid("spec.sessionAffinityConfig.clientIP.timeoutSeconds", t, "must be from 1 to 86400"));
            }
        }
        Some(other) => errors.push(FieldError::not_supported("spec.sessionAffinity", other, &["None", "ClientIP"])),
    }
    validation::labels(spec.selector.as_ref(), "spec.selector", &mut errors);
    let ports = spec.ports.as_deref().unwrap_or_default();
    if ports.is_empty() && !headless {
        errors.push(FieldError::required("spec.ports", "at least one port"));
    }
    let mut names = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut node_ports = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        match port.name.as_deref().filter(|n| !n.is_empty()) {
            None if ports.len() > 1 => errors.push(FieldError::required(format!("{path}.name"), "every port of a Service with several ports has a name")),
            None => {}
            Some(name) if !validation::is_dns_label(name) => {
                errors.push(FieldError::invalid(format!("{path}.name"), name, "must be a lowercase RFC 1123 label"))
            }
            Some(name) if !names.insert(name.to_string()) => errors.push(FieldError::invalid(format!("{path}.name"), name, "another port has this name")),
            Some(_) => {}
        }
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        if !["TCP", "UDP"].contains(&protocol) {
            errors.push(FieldError::not_supported(format!("{path}.protocol"), protocol, &["TCP", "UDP"]));
        }
        if !(1..=65535).contains(&port.port) {
            errors.push(FieldError::invalid(format!("{path}.port"), port.port, "must be from 1 to 65535"));
        } else if !seen.insert((port.port, protocol.to_string())) {
            errors.push(FieldError::invalid(format!("{path}.port"), port.port, &format!("another port of this Service is {}/{protocol}", port.port)));
        }
        match &port.target_port {
            Some(IntOrString::Int(n)) if !(1..=65535).contains(n) => {
                errors.push(FieldError::invalid(format!("{path}.targetPort"), n, "must be from 1 to 65535"))
            }
            Some(IntOrString::String(name)) if !is_port_name(name) => errors.push(FieldError::invalid(
                format!("{path}.targetPort"),
                name,
                "must be a port number or the name of a container port (1 to 15 lowercase letters, digits and '-')",
            )),
            _ => {}
        }
        if let Some(node_port) = port.node_port.filter(|p| *p != 0) {
            if kind != "NodePort" {
                errors.push(FieldError::invalid(format!("{path}.nodePort"), node_port, "only a Service of type NodePort has node ports"));
            } else if !(1..=65535).contains(&node_port) {
                errors.push(FieldError::invalid(format!("{path}.nodePort"), node_port, "must be from 1 to 65535"));
            } else if !node_ports.insert((node_port, protocol.to_string())) {
                errors.push(FieldError::invalid(format!("{path}.nodePort"), node_port, "another port of this Service has this node port"));
            }
        }
    }
    errors.into_result()
}

/// Checks what an update may not change: the cluster IP once given.
pub fn validate_service_update(old: &Service, new: &Service) -> Result<(), FieldErrors> {
    let ip = |s: &Service| s.spec.as_ref().and_then(|s| s.cluster_ip.clone()).filter(|ip| !ip.is_empty());
    let mut errors = FieldErrors::default();
    if let (Some(old_ip), new_ip) = (ip(old), ip(new)) {
        if new_ip.as_deref() != Some(old_ip.as_str()) {
            errors.push(FieldError::invalid("spec.clusterIP", new_ip.unwrap_or_default(), &format!("field is immutable (it is {old_ip})")));
        }
    }
    errors.into_result()
}

/// Checks an Endpoints object (written by the endpoints controller, or by hand for a Service
/// without a selector).
pub fn validate_endpoints(endpoints: &Endpoints) -> Result<(), FieldErrors> {
    let mut errors = FieldErrors::default();
    validation::metadata(&endpoints.metadata, false, &mut errors);
    for (i, subset) in endpoints.subsets.iter().flatten().enumerate() {
        for (field, addresses) in [("addresses", &subset.addresses), ("notReadyAddresses", &subset.not_ready_addresses)] {
            for (j, address) in addresses.iter().flatten().enumerate() {
                ipv4(&format!("subsets[{i}].{field}[{j}].ip"), &address.ip, &mut errors);
            }
        }
        for (j, port) in subset.ports.iter().flatten().enumerate() {
            let path = format!("subsets[{i}].ports[{j}]");
            if !(1..=65535).contains(&port.port) {
                errors.push(FieldError::invalid(format!("{path}.port"), port.port, "must be from 1 to 65535"));
            }
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            if !["TCP", "UDP"].contains(&protocol) {
                errors.push(FieldError::not_supported(format!("{path}.protocol"), protocol, &["TCP", "UDP"]));
            }
        }
    }
    errors.into_result()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{decode_document, parse_documents};

    fn service(spec: &str) -> Service {
        let yaml = format!("apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: shop}}\nspec:\n{spec}");
        let mut service: Service = decode_document(&parse_documents(&yaml).unwrap()[0]).unwrap();
        default_service(&mut service);
        service
    }

    #[test]
    fn defaults_fill_what_kubernetes_fills() {
        let s = service("  selector: {app: web}\n  sessionAffinity: ClientIP\n  ports: [{port: 80}]\n");
        validate_service(&s).unwrap();
        let spec = s.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        let port = &spec.ports.unwrap()[0];
        assert_eq!((port.protocol.as_deref(), port.target_port.clone()), (Some("TCP"), Some(IntOrString::Int(80))));
        assert_eq!(spec.session_affinity_config.unwrap().client_ip.unwrap().timeout_seconds, Some(DEFAULT_AFFINITY_SECONDS));
    }

    #[test]
    fn bad_services_name_the_field() {
        for (spec, expected) in [
            ("  ports: []\n", "spec.ports: Required value"),
            ("  type: LoadBalancer\n  ports: [{port: 80}]\n", "spec.type: Unsupported value: \"LoadBalancer\""),
            ("  ports: [{port: 80}, {port: 81}]\n", "spec.ports[0].name: Required value"),
            ("  ports: [{name: a, port: 80}, {name: a, port: 81}]\n", "spec.ports[1].name: Invalid value: \"a\""),
            ("  ports: [{name: a, port: 80}, {name: b, port: 80}]\n", "spec.ports[1].port: Invalid value: \"80\": another port of this Service is 80/TCP"),
            ("  ports: [{port: 70000}]\n", "spec.ports[0].port: Invalid value: \"70000\""),
            ("  ports: [{port: 80, protocol: SCTP}]\n", "spec.ports[0].protocol: Unsupported value: \"SCTP\""),
            ("  ports: [{port: 80, targetPort: Web_Port}]\n", "spec.ports[0].targetPort: Invalid value: \"Web_Port\""),
            ("  ports: [{port: 80, nodePort: 30080}]\n", "spec.ports[0].nodePort: Invalid value: \"30080\": only a Service of type NodePort"),
            ("  clusterIP: 10.96.0.300\n  ports: [{port: 80}]\n", "spec.clusterIP: Invalid value: \"10.96.0.300\""),
            ("  clusterIP: \"fd00::1\"\n  ports: [{port: 80}]\n", "IPv6 is not supported yet"),
            ("  sessionAffinity: Sticky\n  ports: [{port: 80}]\n", "spec.sessionAffinity: Unsupported value: \"Sticky\""),
            (
                "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}\n  ports: [{port: 80}]\n",
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: \"0\"",
            ),
            ("  selector: {\"bad key!\": x}\n  ports: [{port: 80}]\n", "spec.selector: Invalid value: \"bad key!\""),
        ] {
            let err = validate_service(&service(spec)).unwrap_err().to_string();
            assert!(err.contains(expected), "{spec}: {err}");
        }
        validate_service(&service("  clusterIP: None\n  selector: {app: web}\n")).unwrap();
    }

    #[test]
    fn the_cluster_ip_is_immutable() {
        let old = service("  clusterIP: 10.96.0.5\n  ports: [{port: 80}]\n");
        validate_service_update(&old, &old).unwrap();
        let moved = service("  clusterIP: 10.96.0.6\n  ports: [{port: 80}]\n");
        assert!(validate_service_update(&old, &moved).unwrap_err().to_string().contains("spec.clusterIP: Invalid value: \"10.96.0.6\": field is immutable"));
    }
}
