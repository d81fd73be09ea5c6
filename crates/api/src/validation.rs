//! Validation of objects at admission. Every error carries the path of the field at fault.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{Container, PodSpec, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::field::{index, join, FieldError, FieldErrors};
use crate::selector::Selector;
use crate::{quantity, Deployment, ObjectMeta, Pod};

/// Checks a DNS-1123 label (`web-1`): lower-case alphanumerics and `-`, at most 63.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') && !s.starts_with('-') && !s.ends_with('-')
}

/// Checks a DNS-1123 subdomain (`web.example-1`): labels joined by dots, at most 253.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Validates metadata: the name (a DNS subdomain, or a label when `label_name`), labels.
pub fn metadata(meta: &ObjectMeta, label_name: bool, errors: &mut FieldErrors) {
    match meta.name.as_deref() {
        None | Some("") if meta.generate_name.as_deref().is_some_and(|g| !g.is_empty()) => {}
        None | Some("") => errors.push(FieldError::required("metadata.name", "name or generateName is required")),
        Some(name) => {
            let ok = if label_name { is_dns_label(name) } else { is_dns_subdomain(name) };
            if !ok {
                let rule = if label_name { "a lowercase RFC 1123 label" } else { "a lowercase RFC 1123 subdomain" };
                errors.push(FieldError::invalid("metadata.name", name, &format!("must be {rule} (e.g. 'web-1')")));
            }
        }
    }
    if let Some(ns) = meta.namespace.as_deref() {
        if !is_dns_label(ns) {
            errors.push(FieldError::invalid("metadata.namespace", ns, "must be a lowercase RFC 1123 label"));
        }
    }
    labels(meta.labels.as_ref(), "metadata.labels", errors);
}

pub(crate) fn labels(labels: Option<&BTreeMap<String, String>>, path: &str, errors: &mut FieldErrors) {
    for (k, v) in labels.into_iter().flatten() {
        let (prefix, name) = k.rsplit_once('/').map(|(p, n)| (Some(p), n)).unwrap_or((None, k.as_str()));
        let name_ok = !name.is_empty() && name.len() <= 63 && qualified_chars(name);
        if !name_ok || prefix.is_some_and(|p| !is_dns_subdomain(p)) {
            errors.push(FieldError::invalid(path, k, "label keys are [prefix/]name, name ≤ 63 alphanumerics, '-', '_', '.'"));
        }
        if v.len() > 63 || (!v.is_empty() && !qualified_chars(v)) {
            errors.push(FieldError::invalid(format!("{path}[{k}]"), v, "label values are ≤ 63 alphanumerics, '-', '_', '.'"));
        }
    }
}

fn qualified_chars(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
        && s.as_bytes().last().is_some_and(u8::is_ascii_alphanumeric)
}

/// Validates a pod.
pub fn pod(pod: &Pod) -> Result<(), FieldErrors> {
    let mut errors = FieldErrors::default();
    metadata(&pod.metadata, false, &mut errors);
    match pod.spec.as_ref() {
        None => errors.push(FieldError::required("spec", "a pod needs a spec with containers")),
        Some(spec) => pod_spec(spec, "spec", &mut errors),
    }
    errors.into_result()
}

/// Validates a pod spec found at `path`.
pub fn pod_spec(spec: &PodSpec, path: &str, errors: &mut FieldErrors) {
    if spec.containers.is_empty() {
        errors.push(FieldError::required(join(path, "containers"), "at least one container"));
    }
    let mut names = HashSet::new();
    let all = spec.containers.iter().map(|c| ("containers", c)).chain(spec.init_containers.iter().flatten().map(|c| ("initContainers", c)));
    let mut counters: BTreeMap<&str, usize> = BTreeMap::new();
    for (list, c) in all {
        let i = counters.entry(list).or_default();
        let cpath = index(&join(path, list), *i);
        *i += 1;
        if !names.insert(c.name.clone()) {
            errors.push(FieldError::invalid(join(&cpath, "name"), &c.name, "duplicate container name"));
        }
        container(c, &cpath, errors);
        match (list, c.restart_policy.as_deref()) {
            (_, None) => {}
            ("initContainers", Some("Always")) => {}
            ("initContainers", Some(other)) => errors.push(FieldError::not_supported(join(&cpath, "restartPolicy"), other, &["Always"])),
            (_, Some(other)) => errors.push(FieldError::invalid(join(&cpath, "restartPolicy"), other, "may be set only on init containers (sidecars)")),
        }
        let sidecar = list == "initContainers" && c.restart_policy.as_deref() == Some("Always");
        if list == "initContainers" && !sidecar {
            // An init container runs to completion: probing it means nothing (sidecars may be probed).
            for (name, probe) in [("livenessProbe", &c.liveness_probe), ("readinessProbe", &c.readiness_probe), ("startupProbe", &c.startup_probe)] {
                if probe.is_some() {
                    errors.push(FieldError::invalid(join(&cpath, name), "set", "may not be set for init containers without restartPolicy: Always"));
                }
            }
        }
    }
    if let Some(policy) = spec.restart_policy.as_deref() {
        if !["Always", "OnFailure", "Never"].contains(&policy) {
            errors.push(FieldError::not_supported(join(path, "restartPolicy"), policy, &["Always", "OnFailure", "Never"]));
        }
    }
    if let Some(grace) = spec.termination_grace_period_seconds {
        if grace < 0 {
            errors.push(FieldError::invalid(join(path, "terminationGracePeriodSeconds"), grace, "must be ≥ 0"));
        }
    }
    labels(spec.node_selector.as_ref(), &join(path, "nodeSelector"), errors);
}

/// Variable names Kubernetes accepts (since its relaxed validation): printable ASCII but `=`.
pub fn is_env_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b'=')
}

/// The pod fields an env `fieldRef` may name, besides `metadata.labels['…']` and
/// `metadata.annotations['…']`.
pub const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

/// The resources an env `resourceFieldRef` may name.
pub const ENV_RESOURCE_FIELDS: &[&str] =
    &["limits.cpu", "limits.memory", "limits.ephemeral-storage", "requests.cpu", "requests.memory", "requests.ephemeral-storage"];

fn env(c: &Container, path: &str, errors: &mut FieldErrors) {
    for (i, var) in c.env.iter().flatten().enumerate() {
        let vpath = index(&join(path, "env"), i);
        if !is_env_name(&var.name) {
            errors.push(FieldError::invalid(join(&vpath, "name"), &var.name, "a valid environment variable name is printable ASCII without '='"));
        }
        let Some(from) = var.value_from.as_ref() else { continue };
        let fpath = join(&vpath, "valueFrom");
        if var.value.as_deref().is_some_and(|v| !v.is_empty()) {
            errors.push(FieldError::invalid(join(&vpath, "valueFrom"), "", "may not be specified when `value` is not empty"));
        }
        let sources = [from.field_ref.is_some(), from.resource_field_ref.is_some(), from.config_map_key_ref.is_some(), from.secret_key_ref.is_some()];
        match sources.iter().filter(|s| **s).count() {
            0 => errors.push(FieldError::required(&fpath, "one of fieldRef, resourceFieldRef, configMapKeyRef or secretKeyRef")),
            1 => {}
            _ => errors.push(FieldError::invalid(&fpath, "", "may not have more than one field specified at a time")),
        }
        if let Some(field) = &from.field_ref {
            let map_ref = ["metadata.labels['", "metadata.annotations['"].iter().any(|p| field.field_path.starts_with(p) && field.field_path.ends_with("']"));
            if !map_ref && !ENV_FIELD_PATHS.contains(&field.field_path.as_str()) {
                errors.push(FieldError::not_supported(join(&fpath, "fieldRef.fieldPath"), &field.field_path, ENV_FIELD_PATHS));
            }
        }
        if let Some(resource) = &from.resource_field_ref {
            if !ENV_RESOURCE_FIELDS.contains(&resource.resource.as_str()) {
                errors.push(FieldError::not_supported(join(&fpath, "resourceFieldRef.resource"), &resource.resource, ENV_RESOURCE_FIELDS));
            }
        }
        let key_refs = [
            ("configMapKeyRef", from.config_map_key_ref.as_ref().map(|r| (&r.name, &r.key))),
            ("secretKeyRef", from.secret_key_ref.as_ref().map(|r| (&r.name, &r.key))),
        ];
        for (field, reference) in key_refs {
            let Some((name, key)) = reference else { continue };
            if !is_dns_subdomain(name) {
                errors.push(FieldError::invalid(join(&fpath, &format!("{field}.name")), name, "must be a lowercase RFC 1123 subdomain"));
            }
            if !crate::configdata::is_config_key(key) {
                errors.push(FieldError::invalid(
                    join(&fpath, &format!("{field}.key")),
                    key,
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                ));
            }
        }
    }
    for (i, from) in c.env_from.iter().flatten().enumerate() {
        let fpath = index(&join(path, "envFrom"), i);
        match (&from.config_map_ref, &from.secret_ref) {
            (Some(_), Some(_)) => errors.push(FieldError::invalid(&fpath, "", "may not have more than one field specified at a time")),
            (None, None) => errors.push(FieldError::required(&fpath, "configMapRef or secretRef")),
            _ => {}
        }
        if let Some(prefix) = from.prefix.as_deref().filter(|p| !p.is_empty() && !is_env_name(p)) {
            errors.push(FieldError::invalid(join(&fpath, "prefix"), prefix, "a valid environment variable name is printable ASCII without '='"));
        }
    }
}

fn container(c: &Container, path: &str, errors: &mut FieldErrors) {
    env(c, path, errors);
    if c.name.is_empty() {
        errors.push(FieldError::required(join(path, "name"), ""));
    } else if !is_dns_label(&c.name) {
        errors.push(FieldError::invalid(join(path, "name"), &c.name, "must be a lowercase RFC 1123 label"));
    }
    if c.image.as_deref().is_none_or(|i| i.trim().is_empty()) {
        errors.push(FieldError::required(join(path, "image"), "the image to run, e.g. busybox:1.35"));
    }
    for (i, port) in c.ports.iter().flatten().enumerate() {
        let ppath = index(&join(path, "ports"), i);
        if !(1..=65535).contains(&port.container_port) {
            errors.push(FieldError::invalid(join(&ppath, "containerPort"), port.container_port, "must be between 1 and 65535"));
        }
        if let Some(proto) = port.protocol.as_deref() {
            if !["TCP", "UDP", "SCTP"].contains(&proto) {
                errors.push(FieldError::not_supported(join(&ppath, "protocol"), proto, &["TCP", "UDP", "SCTP"]));
            }
        }
    }
    if let Some(resources) = c.resources.as_ref() {
        let rpath = join(path, "resources");
        for (section, map) in [("requests", &resources.requests), ("limits", &resources.limits)] {
            for (name, q) in map.iter().flatten() {
                let qpath = format!("{}[{}]", join(&rpath, section), name);
                let parsed = if name == "cpu" { quantity::millis(&q.0) } else { quantity::units(&q.0) };
                match parsed {
                    Err(e) => errors.push(FieldError::invalid(qpath, &q.0, e.why)),
                    Ok(v) if v < 0 => errors.push(FieldError::invalid(qpath, &q.0, "must be ≥ 0")),
                    Ok(_) => {}
                }
            }
        }
        for (name, limit) in resources.limits.iter().flatten() {
            let request = resources.requests.as_ref().and_then(|r| r.get(name));
            let parse = |s: &str| if name == "cpu" { quantity::millis(s) } else { quantity::units(s) };
            if let (Some(req), Ok(lim)) = (request, parse(&limit.0)) {
                if parse(&req.0).is_ok_and(|r| r > lim) {
                    let qpath = format!("{}[{}]", join(&rpath, "requests"), name);
                    errors.push(FieldError::invalid(qpath, &req.0, &format!("must be less than or equal to {name} limit {}", limit.0)));
                }
            }
        }
    }
    for (name, probe) in [("livenessProbe", &c.liveness_probe), ("readinessProbe", &c.readiness_probe), ("startupProbe", &c.startup_probe)] {
        if let Some(p) = probe {
            probe_handler(p, &join(path, name), errors);
        }
    }
}

fn probe_handler(p: &Probe, path: &str, errors: &mut FieldErrors) {
    let handlers = [p.exec.is_some(), p.http_get.is_some(), p.tcp_socket.is_some(), p.grpc.is_some()].iter().filter(|h| **h).count();
    if handlers != 1 {
        errors.push(FieldError::invalid(path, format!("{handlers} handlers"), "must specify exactly one of exec, httpGet, tcpSocket"));
    }
    if p.grpc.is_some() {
        errors.push(FieldError::not_supported(join(path, "grpc"), "grpc", &["exec", "httpGet", "tcpSocket"]));
    }
    let port_ok = |port: &IntOrString| match port {
        IntOrString::Int(n) => (1..=65535).contains(n),
        IntOrString::String(s) => is_dns_label(s) && s.len() <= 15,
    };
    if let Some(h) = p.http_get.as_ref() {
        if !port_ok(&h.port) {
            errors.push(FieldError::invalid(join(path, "httpGet.port"), format!("{:?}", h.port), "must be 1-65535 or a named port"));
        }
    }
    if let Some(t) = p.tcp_socket.as_ref() {
        if !port_ok(&t.port) {
            errors.push(FieldError::invalid(join(path, "tcpSocket.port"), format!("{:?}", t.port), "must be 1-65535 or a named port"));
        }
    }
    if p.exec.as_ref().is_some_and(|e| e.command.as_ref().is_none_or(Vec::is_empty)) {
        errors.push(FieldError::required(join(path, "exec.command"), ""));
    }
}

/// Validates a deployment.
pub fn deployment(d: &Deployment) -> Result<(), FieldErrors> {
    let mut errors = FieldErrors::default();
    metadata(&d.metadata, false, &mut errors);
    let Some(spec) = d.spec.as_ref() else {
        errors.push(FieldError::required("spec", "a deployment needs selector and template"));
        return errors.into_result();
    };
    if spec.replicas.is_some_and(|r| r < 0) {
        errors.push(FieldError::invalid("spec.replicas", spec.replicas.unwrap_or(0), "must be ≥ 0"));
    }
    match Selector::from_object(&spec.selector) {
        Err(e) => errors.push(FieldError::invalid("spec.selector", &e.text, &e.why)),
        Ok(sel) if sel.is_empty() => errors.push(FieldError::required("spec.selector", "matchLabels or matchExpressions")),
        Ok(sel) => {
            let template_labels = spec.template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
            if !sel.matches(&template_labels) {
                errors.push(FieldError::invalid(
                    "spec.template.metadata.labels",
                    format!("{template_labels:?}"),
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
    if let Some(meta) = spec.template.metadata.as_ref() {
        labels(meta.labels.as_ref(), "spec.template.metadata.labels", &mut errors);
    }
    match spec.template.spec.as_ref() {
        None => errors.push(FieldError::required("spec.template.spec", "the pod template")),
        Some(ps) => {
            pod_spec(ps, "spec.template.spec", &mut errors);
            if ps.restart_policy.as_deref().is_some_and(|p| p != "Always") {
                errors.push(FieldError::not_supported("spec.template.spec.restartPolicy", ps.restart_policy.as_deref().unwrap_or(""), &["Always"]));
            }
        }
    }
    if let Some(strategy) = spec.strategy.as_ref() {
        let type_ = strategy.type_.as_deref().unwrap_or("RollingUpdate");
        if !["RollingUpdate", "Recreate"].contains(&type_) {
            errors.push(FieldError::not_supported("spec.strategy.type", type_, &["RollingUpdate", "Recreate"]));
        }
        if let Some(r) = strategy.rolling_update.as_ref() {
            let surge = crate::defaults::scaled_value(r.max_surge.as_ref(), 100, true);
            let unavailable = crate::defaults::scaled_value(r.max_unavailable.as_ref(), 100, false);
            for (name, v) in [("maxSurge", &r.max_surge), ("maxUnavailable", &r.max_unavailable)] {
                if let Some(IntOrString::String(s)) = v {
                    let pct_ok = s.strip_suffix('%').and_then(|n| n.parse::<u32>().ok()).is_some_and(|n| n <= 100);
                    if !pct_ok {
                        errors.push(FieldError::invalid(format!("spec.strategy.rollingUpdate.{name}"), s, "must be an integer or a percentage 0%-100%"));
                    }
                }
            }
            if surge == 0 && unavailable == 0 {
                errors.push(FieldError::invalid("spec.strategy.rollingUpdate.maxUnavailable", 0, "may not be 0 when maxSurge is 0"));
            }
        }
    }
    errors.into_result()
}

/// Validates an update of a pod: only container images may change, and a bound pod may not move.
pub fn pod_update(old: &Pod, new: &Pod) -> Result<(), FieldErrors> {
    pod(new)?;
    let (Some(old_spec), Some(new_spec)) = (old.spec.as_ref(), new.spec.as_ref()) else { return Ok(()) };
    let mut comparable = new_spec.clone();
    for (c, o) in comparable.containers.iter_mut().zip(old_spec.containers.iter()) {
        c.image = o.image.clone();
    }
    if old_spec.node_name.is_none() {
        comparable.node_name = None;
    }
    // Tolerations may be added, never removed or changed.
    let old_tolerations = old_spec.tolerations.as_deref().unwrap_or_default();
    if comparable.tolerations.as_deref().unwrap_or_default().starts_with(old_tolerations) {
        comparable.tolerations = old_spec.tolerations.clone();
    }
    if &comparable != old_spec {
        let mut errors = FieldErrors::default();
        errors.push(FieldError::invalid("spec", "changed", "pod updates may only change spec.containers[*].image; delete and recreate the pod instead"));
        return Err(errors);
    }
    Ok(())
}

/// A Node's `spec.podCIDR`: an IPv4 network (`10.88.3.0/24`, host bits clear), the first of
/// `spec.podCIDRs` when both are given, and, once set, never changed: pods already hold
/// addresses from it (Kubernetes makes it immutable for the same reason).
pub fn node_pod_cidr(node: &crate::Node, old: Option<&crate::Node>, errors: &mut FieldErrors) {
    let spec = node.spec.as_ref();
    let cidr = spec.and_then(|s| s.pod_cidr.as_deref()).filter(|c| !c.is_empty());
    let cidrs = spec.and_then(|s| s.pod_cidrs.as_deref()).unwrap_or_default();
    if let Some(cidr) = cidr {
        if let Err(why) = parse_ipv4_network(cidr) {
            errors.push(FieldError::invalid("spec.podCIDR", cidr, &why));
        }
        if cidrs.first().is_some_and(|first| first != cidr) {
            errors.push(FieldError::invalid("spec.podCIDRs[0]", &cidrs[0], "must equal spec.podCIDR"));
        }
    } else if !cidrs.is_empty() {
        errors.push(FieldError::required("spec.podCIDR", "spec.podCIDRs is set; spec.podCIDR must be its first entry"));
    }
    let before = old.and_then(|o| o.spec.as_ref()).and_then(|s| s.pod_cidr.as_deref()).filter(|c| !c.is_empty());
    if let Some(before) = before {
        if cidr != Some(before) {
            errors.push(FieldError::invalid("spec.podCIDR", cidr.unwrap_or("(none)"), &format!("may not change once set (it is {before})")));
        }
    }
}

/// Parses `a.b.c.d/n` with the host bits clear: (network, prefix length).
pub fn parse_ipv4_network(text: &str) -> Result<(std::net::Ipv4Addr, u8), String> {
    let (addr, len) = text.split_once('/').ok_or("expected an IPv4 network such as 10.88.0.0/24")?;
    let addr: std::net::Ipv4Addr = addr.parse().map_err(|_| format!("\"{addr}\" is not an IPv4 address"))?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32).ok_or_else(|| format!("\"{len}\" is not a prefix length from 0 to 32"))?;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    if u32::from(addr) & !mask != 0 {
        return Err(format!("host bits are set; the network is {}/{len}", std::net::Ipv4Addr::from(u32::from(addr) & mask)));
    }
    Ok((addr, len))
}

#[cfg(test)]
mod tests;
