//! Flows (`flotilla flows`): what a node's policy datapath saw, one record per judged flow
//! (a new connection, or a dropped packet), with both ends as pods, namespaces, labels and
//! identities. Agents keep the recent ones in a ring buffer; the API server streams them from
//! every node at `/apis/flotilla.dev/v1alpha1/flows` (one JSON object per line).
//!
//! Query parameters, all optional, as `flotilla flows` sends them: `namespace` (either end is
//! in it), `pod` (`[namespace/]name`, either end), `verdict` (`FORWARDED` or `DROPPED`),
//! `node`, `last` (at most this many of the buffered flows, the newest) and `follow`.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::field::FieldError;

/// The path the flows are served at.
pub const PATH: &str = "/apis/flotilla.dev/v1alpha1/flows";

/// What happened to a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    /// Let through.
    Forwarded,
    /// Dropped.
    Dropped,
}

impl Verdict {
    /// The name as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Forwarded => "FORWARDED",
            Verdict::Dropped => "DROPPED",
        }
    }
}

/// Which way the flow went, seen from the pod whose datapath judged it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TrafficDirection {
    /// Into the pod.
    Ingress,
    /// Out of the pod.
    Egress,
}

/// One end of a flow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowEndpoint {
    /// Its address.
    pub ip: String,
    /// Its port (0 for protocols without ports).
    pub port: u16,
    /// Its security identity (1: the node, 2: outside the cluster).
    pub identity: u32,
    /// The pod's namespace, where the address is a pod's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The pod's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The pod's labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl FlowEndpoint {
    /// `namespace/pod`, or the address for an end that is no pod.
    pub fn name(&self) -> String {
        match (&self.namespace, &self.pod) {
            (Some(ns), Some(pod)) => format!("{ns}/{pod}"),
            _ => self.ip.clone(),
        }
    }
}

/// One judged flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Flow {
    /// When it was judged.
    pub time: jiff::Timestamp,
    /// The node that judged it.
    pub node: String,
    /// Forwarded or dropped.
    pub verdict: Verdict,
    /// Why it was dropped (`POLICY_DENIED`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_reason: Option<String>,
    /// Which way it went, seen from the judging pod.
    pub traffic_direction: TrafficDirection,
    /// `TCP`, `UDP`, `ICMP`, `SCTP` or the protocol number.
    pub protocol: String,
    /// The end that sent the packet.
    pub source: FlowEndpoint,
    /// The end it went to.
    pub destination: FlowEndpoint,
    /// For an HTTP request the node's proxy judged: the request and its answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l7: Option<L7>,
}

/// What the node's proxy saw of one request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L7 {
    /// From the request to the answer's headers, in nanoseconds.
    pub latency_ns: u64,
    /// The HTTP request and answer.
    pub http: HttpFlow,
}

/// An HTTP request and the status it was answered with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpFlow {
    /// The method.
    pub method: String,
    /// The path and query asked for.
    pub url: String,
    /// The Host header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The status answered (403 where the policy denied it; 502 where the server could not be
    /// reached).
    pub code: u16,
}

/// The name of IP protocol `number`.
pub fn protocol_name(number: u8) -> String {
    match number {
        1 => "ICMP".into(),
        6 => "TCP".into(),
        17 => "UDP".into(),
        132 => "SCTP".into(),
        other => other.to_string(),
    }
}

/// Which flows a reader wants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowFilter {
    /// Either end is in this namespace.
    pub namespace: Option<String>,
    /// Either end is this pod (`namespace`, or `default`, where the name has none).
    pub pod: Option<(String, String)>,
    /// Only this verdict.
    pub verdict: Option<Verdict>,
    /// Only flows judged on this node.
    pub node: Option<String>,
    /// At most this many buffered flows (the newest).
    pub last: Option<usize>,
    /// Keep streaming new flows.
    pub follow: bool,
}

impl FlowFilter {
    /// Reads a filter from query parameters; a bad value is an error naming its parameter.
    pub fn from_query(query: &HashMap<String, String>) -> Result<FlowFilter, FieldError> {
        let namespace = query.get("namespace").filter(|n| !n.is_empty()).cloned();
        if let Some(ns) = namespace.as_ref().filter(|ns| !crate::validation::is_dns_label(ns)) {
            return Err(FieldError::invalid("namespace", ns, "a namespace is a DNS label"));
        }
        let pod = match query.get("pod").filter(|p| !p.is_empty()) {
            Some(pod) => {
                let (ns, name) = match pod.split_once('/') {
                    Some((ns, name)) => (ns.to_string(), name.to_string()),
                    None => (namespace.clone().unwrap_or_else(|| "default".into()), pod.clone()),
                };
                if !crate::validation::is_dns_label(&ns) || !crate::validation::is_dns_subdomain(&name) {
                    return Err(FieldError::invalid("pod", pod, "a pod is NAME or NAMESPACE/NAME"));
                }
                Some((ns, name))
            }
            None => None,
        };
        let verdict = match query.get("verdict").map(|v| v.to_ascii_uppercase()) {
            None => None,
            Some(v) if v == "FORWARDED" => Some(Verdict::Forwarded),
            Some(v) if v == "DROPPED" => Some(Verdict::Dropped),
            Some(v) => return Err(FieldError::not_supported("verdict", &v, &["FORWARDED", "DROPPED"])),
        };
        let last = match query.get("last") {
            None => None,
            Some(n) => Some(n.parse::<usize>().map_err(|_| FieldError::invalid("last", n, "must be a count of flows"))?),
        };
        let follow = match query.get("follow").map(String::as_str) {
            None | Some("false" | "0") => false,
            Some("true" | "1") => true,
            Some(other) => return Err(FieldError::invalid("follow", other, "must be true or false")),
        };
        Ok(FlowFilter { namespace, pod, verdict, node: query.get("node").filter(|n| !n.is_empty()).cloned(), last, follow })
    }

    /// The filter as query parameters (what [`FlowFilter::from_query`] reads back).
    pub fn to_query(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(ns) = &self.namespace {
            out.push(("namespace", ns.clone()));
        }
        if let Some((ns, name)) = &self.pod {
            out.push(("pod", format!("{ns}/{name}")));
        }
        if let Some(v) = self.verdict {
            out.push(("verdict", v.as_str().to_string()));
        }
        if let Some(node) = &self.node {
            out.push(("node", node.clone()));
        }
        if let Some(n) = self.last {
            out.push(("last", n.to_string()));
        }
        if self.follow {
            out.push(("follow", "true".into()));
        }
        out
    }

    /// Whether `flow` is one the reader wants.
    pub fn matches(&self, flow: &Flow) -> bool {
        let ends = [&flow.source, &flow.destination];
        let in_namespace = |ns: &str| ends.iter().any(|e| e.namespace.as_deref() == Some(ns));
        self.namespace.as_deref().is_none_or(in_namespace)
            && self.pod.as_ref().is_none_or(|(ns, name)| ends.iter().any(|e| e.namespace.as_deref() == Some(ns) && e.pod.as_deref() == Some(name)))
            && self.verdict.is_none_or(|v| flow.verdict == v)
            && self.node.as_ref().is_none_or(|n| *n == flow.node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(ns: &str, pod: &str, ip: &str, port: u16) -> FlowEndpoint {
        FlowEndpoint { ip: ip.into(), port, identity: 300, namespace: Some(ns.into()), pod: Some(pod.into()), labels: BTreeMap::new() }
    }

    fn flow(verdict: Verdict) -> Flow {
        Flow {
            time: "2026-12-03T08:00:00.5Z".parse().unwrap(),
            node: "n1".into(),
            verdict,
            drop_reason: (verdict == Verdict::Dropped).then(|| "POLICY_DENIED".into()),
            traffic_direction: TrafficDirection::Ingress,
            protocol: "TCP".into(),
            source: end("shop", "client", "10.42.0.5", 40000),
            destination: end("db", "pg", "10.42.1.6", 5432),
            l7: None,
        }
    }

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_filter_selects_by_either_end_verdict_and_node() {
        let f = FlowFilter::from_query(&query(&[("namespace", "db")])).unwrap();
        assert!(f.matches(&flow(Verdict::Forwarded)), "the destination is in db");
        let f = FlowFilter::from_query(&query(&[("pod", "shop/client"), ("verdict", "dropped")])).unwrap();
        assert!(f.matches(&flow(Verdict::Dropped)));
        assert!(!f.matches(&flow(Verdict::Forwarded)));
        let f = FlowFilter::from_query(&query(&[("pod", "client")])).unwrap();
        assert_eq!(f.pod, Some(("default".into(), "client".into())), "a bare name is in the default namespace");
        assert!(!f.matches(&flow(Verdict::Forwarded)));
        let f = FlowFilter::from_query(&query(&[("namespace", "db"), ("pod", "pg")])).unwrap();
        assert!(f.matches(&flow(Verdict::Forwarded)), "a bare name takes the namespace given");
        assert!(!FlowFilter::from_query(&query(&[("node", "n2")])).unwrap().matches(&flow(Verdict::Forwarded)));
    }

    #[test]
    fn a_filter_reads_back_what_it_writes() {
        let f = FlowFilter {
            namespace: Some("db".into()),
            pod: Some(("db".into(), "pg".into())),
            verdict: Some(Verdict::Dropped),
            node: Some("n1".into()),
            last: Some(20),
            follow: true,
        };
        let q: HashMap<String, String> = f.to_query().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        assert_eq!(FlowFilter::from_query(&q).unwrap(), f);
    }

    #[test]
    fn bad_parameters_are_named() {
        for (pairs, field) in [
            (&[("verdict", "maybe")][..], "verdict"),
            (&[("pod", "a/b/c")][..], "pod"),
            (&[("pod", "/x")][..], "pod"),
            (&[("pod", "Web")][..], "pod"),
            (&[("namespace", "a/b"), ("pod", "web")][..], "namespace"),
            (&[("last", "-1")][..], "last"),
            (&[("follow", "yes")][..], "follow"),
        ] {
            let e = FlowFilter::from_query(&query(pairs)).expect_err("refused");
            assert!(e.to_string().contains(field), "{e}");
        }
    }

    #[test]
    fn a_flow_is_one_json_object_with_the_api_names() {
        let text = serde_json::to_string(&flow(Verdict::Dropped)).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["verdict"], "DROPPED");
        assert_eq!(value["dropReason"], "POLICY_DENIED");
        assert_eq!(value["trafficDirection"], "INGRESS");
        assert_eq!(value["source"]["pod"], "client");
        assert_eq!(value["time"], "2026-12-03T08:00:00.5Z");
        assert_eq!(serde_json::from_str::<Flow>(&text).unwrap(), flow(Verdict::Dropped));
    }
}
