//! `FlotillaNetworkPolicy` (`flotilla.dev/v1alpha1`, namespaced): a NetworkPolicy whose ingress
//! rules may also say which HTTP requests their peers may make on their ports, and whose egress
//! rules may name their peers by DNS name. The L3/L4 part means exactly what the same
//! NetworkPolicy means; a rule with `http` then lets through only the requests one of its HTTP
//! rules matches, and the node's proxy answers any other with 403. An egress rule with
//! `toFQDNs` allows the addresses the node's resolver saw the names resolve to (for the pods'
//! own queries, which need a rule allowing DNS).
//!
//! ```yaml
//! apiVersion: flotilla.dev/v1alpha1
//! kind: FlotillaNetworkPolicy
//! metadata: {name: web-api, namespace: shop}
//! spec:
//!   podSelector: {matchLabels: {app: web}}
//!   ingress:
//!   - from: [{podSelector: {matchLabels: {app: client}}}]
//!     ports: [{port: 8080}]
//!     http:
//!     - method: GET            # a regular expression the whole method must match
//!       path: /public/.*       # the whole path (without the query)
//!     - method: POST
//!       path: /orders
//!       host: shop\.example    # the Host header, without its port
//!       headers: [{name: x-token, value: s3cret}]   # present (and equal, where a value is given)
//!   egress:
//!   - ports: [{port: 53, protocol: UDP}]            # the pods' DNS queries
//!   - toFQDNs: [{matchName: api.example.com}, {matchPattern: "*.cdn.example.com"}]
//!     ports: [{port: 443}]
//! ```

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Deserialize, Serialize};

use crate::field::{FieldError, FieldErrors};
use crate::ObjectMeta;

/// A FlotillaNetworkPolicy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlotillaNetworkPolicy {
    /// `flotilla.dev/v1alpha1`.
    #[serde(default)]
    pub api_version: String,
    /// `FlotillaNetworkPolicy`.
    #[serde(default)]
    pub kind: String,
    /// Name and namespace.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What it allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<FlotillaNetworkPolicySpec>,
}

/// What a FlotillaNetworkPolicy allows: NetworkPolicy's fields, HTTP rules on ingress.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlotillaNetworkPolicySpec {
    /// The pods of the namespace it applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// `Ingress`, `Egress`, or both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_types: Option<Vec<String>>,
    /// What may come in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<IngressRule>>,
    /// What may go out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<EgressRule>>,
}

/// An egress rule: NetworkPolicy's, or one naming its peers by DNS name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EgressRule {
    /// The peers (all, where absent and no `toFQDNs` is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<NetworkPolicyPeer>>,
    /// The ports (all, where absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<NetworkPolicyPort>>,
    /// The peers by name: the addresses these names were seen to resolve to.
    #[serde(default, rename = "toFQDNs", skip_serializing_if = "Option::is_none")]
    pub to_fqdns: Option<Vec<FqdnSelector>>,
}

/// DNS names, exactly or by a pattern.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FqdnSelector {
    /// This name (without regard to case or a final dot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_name: Option<String>,
    /// Names this pattern matches: `*` stands for any characters of one label
    /// (`*.example.com` matches `api.example.com`, not `a.b.example.com`); `*` alone matches
    /// every name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_pattern: Option<String>,
}

impl FqdnSelector {
    /// Whether it selects `name`.
    pub fn matches(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(exact) = &self.match_name {
            return exact.trim_end_matches('.').eq_ignore_ascii_case(&name);
        }
        match self.match_pattern.as_deref().map(|p| p.trim_end_matches('.').to_ascii_lowercase()) {
            Some(pattern) if pattern == "*" => true,
            Some(pattern) => {
                let (labels, names): (Vec<&str>, Vec<&str>) = (pattern.split('.').collect(), name.split('.').collect());
                labels.len() == names.len() && labels.iter().zip(&names).all(|(p, n)| label_matches(p, n))
            }
            None => false,
        }
    }
}

/// Whether one label of a pattern (with `*` for any run of characters) matches `label`, in
/// time linear in their lengths' product at worst (the label comes from a pod's query).
fn label_matches(pattern: &str, label: &str) -> bool {
    let (p, l) = (pattern.as_bytes(), label.as_bytes());
    let (mut i, mut j) = (0, 0);
    // The last star seen, and where in the label its run ends for now.
    let mut star: Option<(usize, usize)> = None;
    while j < l.len() {
        if i < p.len() && p[i] == b'*' {
            star = Some((i, j));
            i += 1;
        } else if i < p.len() && p[i] == l[j] {
            i += 1;
            j += 1;
        } else if let Some((s, run)) = star {
            i = s + 1;
            j = run + 1;
            star = Some((s, run + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|b| *b == b'*')
}

/// Whether `name` may be a selector's name or (with `*`) pattern: labels of letters, digits,
/// '-' and '_', separated by dots, 253 characters at most.
fn is_dns_name(name: &str, wildcards: bool) -> bool {
    let name = name.trim_end_matches('.');
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty() && label.len() <= 63 && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (wildcards && b == b'*'))
        })
}

/// An ingress rule: NetworkPolicy's, and the HTTP requests allowed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressRule {
    /// The peers (all, where absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<NetworkPolicyPeer>>,
    /// The ports (all, where absent; required with `http`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<NetworkPolicyPort>>,
    /// Where given, only the requests one of these matches pass on the rule's ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<Vec<HttpRule>>,
}

/// Which HTTP requests a rule allows: every field given must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRule {
    /// A regular expression the whole method must match (`GET`, `GET|HEAD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// A regular expression the whole path must match (`/api/v1/.*`); the query is not part
    /// of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A regular expression the whole Host header (without its port) must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Headers the request must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Vec<HeaderMatch>>,
}

/// A header a request must carry.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderMatch {
    /// Its name (matched without regard to case).
    pub name: String,
    /// Its value, exactly; any value where absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl k8s_openapi::Resource for FlotillaNetworkPolicy {
    type Scope = k8s_openapi::NamespaceResourceScope;
    const API_VERSION: &'static str = crate::identity::API_VERSION;
    const GROUP: &'static str = "flotilla.dev";
    const KIND: &'static str = "FlotillaNetworkPolicy";
    const VERSION: &'static str = "v1alpha1";
    const URL_PATH_SEGMENT: &'static str = "flotillanetworkpolicies";
}

impl k8s_openapi::Metadata for FlotillaNetworkPolicy {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl FlotillaNetworkPolicy {
    /// Its L3/L4 part, as the NetworkPolicy that means the same.
    pub fn network_policy(&self) -> NetworkPolicy {
        self.as_network_policy(false)
    }

    /// As a NetworkPolicy; with `every_egress_rule`, the rules with DNS names stay in, as
    /// peerless rules, so that checking it checks their ports under their own indices.
    fn as_network_policy(&self, every_egress_rule: bool) -> NetworkPolicy {
        NetworkPolicy {
            metadata: self.metadata.clone(),
            spec: self.spec.as_ref().map(|spec| NetworkPolicySpec {
                pod_selector: spec.pod_selector.clone(),
                ingress: spec
                    .ingress
                    .as_ref()
                    .map(|rules| rules.iter().map(|r| NetworkPolicyIngressRule { from: r.from.clone(), ports: r.ports.clone() }).collect()),
                // The rules with DNS names allow only the addresses learned for them: they are
                // not peerless rules, which would allow everything.
                egress: spec.egress.as_ref().map(|rules| {
                    rules
                        .iter()
                        .filter(|r| every_egress_rule || r.to_fqdns.is_none())
                        .map(|r| NetworkPolicyEgressRule { to: r.to.clone(), ports: r.ports.clone() })
                        .collect()
                }),
                policy_types: Some(spec.policy_types.clone().unwrap_or_else(|| {
                    let mut types = vec!["Ingress".to_string()];
                    if spec.egress.as_ref().is_some_and(|e| !e.is_empty()) {
                        types.push("Egress".into());
                    }
                    types
                })),
            }),
        }
    }

    /// The egress rules that name their peers by DNS name: the selectors and the ports.
    pub fn egress_fqdns(&self) -> Vec<(Vec<FqdnSelector>, Option<Vec<NetworkPolicyPort>>)> {
        self.spec.iter().flat_map(|s| s.egress.iter().flatten()).filter_map(|r| Some((r.to_fqdns.clone()?, r.ports.clone()))).collect()
    }

    /// The HTTP rules of each ingress rule, in order (empty for a rule without).
    pub fn ingress_http(&self) -> Vec<Vec<HttpRule>> {
        self.spec.iter().flat_map(|s| s.ingress.iter().flatten()).map(|r| r.http.clone().unwrap_or_default()).collect()
    }
}

/// The anchored form of a rule's regular expression: it must match the whole text.
pub fn anchored(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$")).size_limit(1 << 20).build()
}

/// Whether `name` is an HTTP header name (an RFC 9110 token).
fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Checks a FlotillaNetworkPolicy: its NetworkPolicy part as a NetworkPolicy is checked, its
/// HTTP rules' expressions and headers, and that a rule with HTTP rules names TCP ports.
pub fn validate(policy: &FlotillaNetworkPolicy) -> Result<(), FieldErrors> {
    let mut errors = match super::validate(&policy.as_network_policy(true)) {
        Ok(()) => FieldErrors::default(),
        Err(errors) => errors,
    };
    for (i, rule) in policy.spec.iter().flat_map(|s| s.ingress.iter().flatten()).enumerate() {
        let Some(http) = &rule.http else { continue };
        let ports = rule.ports.as_deref().unwrap_or_default();
        if ports.is_empty() {
            errors.push(FieldError::required(format!("spec.ingress[{i}].ports"), "the ports the HTTP rules apply to"));
        }
        for (j, port) in ports.iter().enumerate() {
            let path = format!("spec.ingress[{i}].ports[{j}]");
            if port.protocol.as_deref().is_some_and(|p| p != "TCP") {
                errors.push(FieldError::invalid(format!("{path}.protocol"), port.protocol.as_deref().unwrap_or(""), "HTTP rules apply to TCP ports"));
            }
            if port.port.is_none() {
                errors.push(FieldError::required(format!("{path}.port"), "a port number or name: HTTP rules apply to one port"));
            }
            if let (Some(end), Some(IntOrString::Int(_))) = (port.end_port, &port.port) {
                errors.push(FieldError::invalid(format!("{path}.endPort"), end, "HTTP rules apply to single ports, not ranges"));
            }
        }
        for (j, rule) in http.iter().enumerate() {
            let path = format!("spec.ingress[{i}].http[{j}]");
            for (field, pattern) in [("method", &rule.method), ("path", &rule.path), ("host", &rule.host)] {
                if let Some(Err(e)) = pattern.as_deref().map(anchored) {
                    errors.push(FieldError::invalid(format!("{path}.{field}"), pattern.as_deref().unwrap_or(""), &format!("not a regular expression: {e}")));
                }
            }
            for (k, header) in rule.headers.iter().flatten().enumerate() {
                if !is_header_name(&header.name) {
                    errors.push(FieldError::invalid(format!("{path}.headers[{k}].name"), &header.name, "must be an HTTP header name"));
                }
                if header.value.as_deref().is_some_and(|v| v.bytes().any(|b| b.is_ascii_control() && b != b'\t')) {
                    errors.push(FieldError::invalid(
                        format!("{path}.headers[{k}].value"),
                        header.value.as_deref().unwrap_or(""),
                        "must not hold control characters",
                    ));
                }
            }
        }
    }
    for (i, rule) in policy.spec.iter().flat_map(|s| s.egress.iter().flatten()).enumerate() {
        let Some(selectors) = &rule.to_fqdns else { continue };
        if rule.to.is_some() {
            errors.push(FieldError::invalid(format!("spec.egress[{i}].to"), "with toFQDNs", "a rule names its peers either by selector or by DNS name"));
        }
        if selectors.is_empty() {
            errors.push(FieldError::required(format!("spec.egress[{i}].toFQDNs"), "at least one matchName or matchPattern"));
        }
        for (j, selector) in selectors.iter().enumerate() {
            let path = format!("spec.egress[{i}].toFQDNs[{j}]");
            match (&selector.match_name, &selector.match_pattern) {
                (Some(name), None) if !is_dns_name(name, false) => errors.push(FieldError::invalid(format!("{path}.matchName"), name, "must be a DNS name")),
                (None, Some(pattern)) if !is_dns_name(pattern, true) => {
                    errors.push(FieldError::invalid(format!("{path}.matchPattern"), pattern, "must be a DNS name, with * for any characters of a label"))
                }
                (Some(_), Some(_)) => errors.push(FieldError::invalid(path, "matchName and matchPattern", "give one of them")),
                (None, None) => errors.push(FieldError::required(path, "matchName or matchPattern")),
                _ => {}
            }
        }
    }
    errors.into_result()
}

/// An HTTP request as the rules see it.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// Its method.
    pub method: &'a str,
    /// Its path, without the query.
    pub path: &'a str,
    /// Its Host header (or the authority of its target), without the port.
    pub host: &'a str,
    /// Its headers, names in lowercase.
    pub headers: &'a BTreeMap<String, Vec<String>>,
}

/// [`HttpRule`]s compiled for matching requests.
#[derive(Clone, Debug)]
pub struct CompiledRule {
    method: Option<regex::Regex>,
    path: Option<regex::Regex>,
    host: Option<regex::Regex>,
    headers: Vec<(String, Option<String>)>,
}

impl CompiledRule {
    /// Compiles a validated rule; an expression that does not compile matches nothing.
    pub fn new(rule: &HttpRule) -> CompiledRule {
        let never = || regex::Regex::new("[^\\s\\S]").expect("a valid expression");
        let compile = |p: &Option<String>| p.as_deref().map(|p| anchored(p).unwrap_or_else(|_| never()));
        CompiledRule {
            method: compile(&rule.method),
            path: compile(&rule.path),
            host: compile(&rule.host),
            headers: rule.headers.iter().flatten().map(|h| (h.name.to_ascii_lowercase(), h.value.clone())).collect(),
        }
    }

    /// Whether `request` is one the rule allows.
    pub fn matches(&self, request: &Request) -> bool {
        let field = |re: &Option<regex::Regex>, text: &str| re.as_ref().is_none_or(|re| re.is_match(text));
        field(&self.method, request.method)
            && field(&self.path, request.path)
            && field(&self.host, request.host)
            && self
                .headers
                .iter()
                .all(|(name, value)| request.headers.get(name).is_some_and(|values| value.as_ref().is_none_or(|v| values.iter().any(|have| have == v))))
    }
}

#[cfg(test)]
mod tests;
