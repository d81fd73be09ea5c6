//! The node's cluster resolver: a DNS server on the pod gateway address (UDP 53) that answers
//! `<service>.<namespace>.svc.<cluster-domain>` with the Service's cluster IP (a headless
//! Service's with its ready endpoints' addresses), says NXDOMAIN for other names in the
//! cluster domain, and relays the rest to the node's own resolver (or `--upstream-dns`). Pods get
//! it as their nameserver, with Kubernetes' search path, unless their `dnsPolicy` is `Default`.
//! What a relayed answer says a name resolves to is handed to a [`DnsLearner`] before the pod
//! gets it: DNS-name egress rules allow those addresses, and must before the pod connects.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use net::dns::{answer, error_answer, parse_query, parse_response, DnsError, Rcode, Resolved};
use tokio::net::UdpSocket;

/// Seconds a cluster answer may be cached (Kubernetes' CoreDNS default is 5 too).
const TTL: u32 = 5;

/// How long an upstream resolver is given.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// What is told the names that resolved outside the cluster, and their addresses.
#[async_trait::async_trait]
pub trait DnsLearner: Send + Sync {
    /// `resolved` was relayed; returns once what depends on it (the datapath's rules) is
    /// in place.
    async fn learned(&self, resolved: &Resolved);
}

/// The resolver's names and where it relays the others.
pub struct ClusterDns {
    domain: String,
    records: RwLock<HashMap<String, Vec<Ipv4Addr>>>,
    upstream: Option<SocketAddr>,
    learner: Option<Arc<dyn DnsLearner>>,
}

/// The first IPv4 nameserver of a resolv.conf, the node's resolver.
pub fn upstream_of(resolv_conf: &str) -> Option<SocketAddr> {
    resolv_conf.lines().find_map(|line| {
        let address = line.trim().strip_prefix("nameserver")?.trim();
        Some(SocketAddr::from((address.parse::<Ipv4Addr>().ok()?, 53)))
    })
}

/// What a name resolves to in the cluster.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolution {
    /// A cluster name with these addresses (none: it exists, without addresses now).
    Cluster(Vec<Ipv4Addr>),
    /// In the cluster domain, but no such name.
    NoSuchName,
    /// Not a cluster name.
    Outside,
}

impl ClusterDns {
    /// A resolver for `domain` (e.g. `cluster.local`) relaying to `upstream`.
    pub fn new(domain: &str, upstream: Option<SocketAddr>) -> ClusterDns {
        ClusterDns { domain: domain.trim_matches('.').to_ascii_lowercase(), records: RwLock::default(), upstream, learner: None }
    }

    /// Tells `learner` what relayed answers said.
    pub fn with_learner(mut self, learner: Arc<dyn DnsLearner>) -> ClusterDns {
        self.learner = Some(learner);
        self
    }

    /// The cluster domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Replaces the cluster's names: full names (`web.shop.svc.cluster.local`) → addresses.
    pub fn set_records(&self, records: HashMap<String, Vec<Ipv4Addr>>) {
        *self.records.write().unwrap_or_else(|e| e.into_inner()) = records;
    }

    /// Resolves `name` (lowercase, no final dot).
    pub fn resolve(&self, name: &str) -> Resolution {
        let inside = name == self.domain || name.strip_suffix(&self.domain).is_some_and(|rest| rest.ends_with('.'));
        if !inside {
            return Resolution::Outside;
        }
        match self.records.read().unwrap_or_else(|e| e.into_inner()).get(name) {
            Some(addresses) => Resolution::Cluster(addresses.clone()),
            None => Resolution::NoSuchName,
        }
    }

    /// The answer to one message from a pod; `None` when there is nothing to answer.
    async fn reply(&self, message: &[u8]) -> Option<Vec<u8>> {
        let query = match parse_query(message) {
            Ok(query) => query,
            Err(DnsError::TooShort(_)) => return None,
            Err(DnsError::Unanswerable { id, rcode, .. }) => return Some(error_answer(id, rcode)),
        };
        match self.resolve(&query.name) {
            Resolution::Cluster(addresses) => Some(answer(&query, Rcode::NoError, &addresses, TTL)),
            Resolution::NoSuchName => Some(answer(&query, Rcode::NxDomain, &[], TTL)),
            Resolution::Outside => match self.upstream {
                None => Some(answer(&query, Rcode::Refused, &[], 0)),
                Some(upstream) => match relay(upstream, message).await {
                    Some(reply) => {
                        // Learned under the name asked, from an answer to that question only:
                        // an answer for another name (spoofed, or a confused upstream) teaches
                        // nothing.
                        let resolved = parse_response(&reply).filter(|r| r.name == query.name && query.qtype == net::dns::TYPE_A && reply[3] & 0x0f == 0);
                        if let (Some(learner), Some(resolved)) = (&self.learner, resolved) {
                            learner.learned(&resolved).await;
                        }
                        Some(reply)
                    }
                    None => Some(answer(&query, Rcode::ServFail, &[], 0)),
                },
            },
        }
    }

    /// Answers queries on `socket` until the agent stops.
    pub async fn serve(self: Arc<Self>, socket: UdpSocket) {
        let socket = Arc::new(socket);
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, from) = match socket.recv_from(&mut buf).await {
                Ok(received) => received,
                Err(e) => {
                    tracing::debug!(error = %e, "cluster DNS receive");
                    continue;
                }
            };
            let message = buf[..n].to_vec();
            let (this, socket) = (self.clone(), socket.clone());
            // A relayed query waits on the upstream: each is answered on a task of its own.
            tokio::spawn(async move {
                if let Some(reply) = this.reply(&message).await {
                    let _ = socket.send_to(&reply, from).await;
                }
            });
        }
    }
}

/// Asks `upstream` and returns its answer to the same id, or `None` on timeout.
async fn relay(upstream: SocketAddr, message: &[u8]) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await.ok()?;
    // Connected: the kernel drops datagrams from anywhere but the upstream.
    socket.connect(upstream).await.ok()?;
    socket.send(message).await.ok()?;
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + UPSTREAM_TIMEOUT;
    loop {
        let (n, from) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await.ok()?.ok()?;
        if from == upstream && n >= 2 && buf[..2] == message[..2] {
            return Some(buf[..n].to_vec());
        }
    }
}

/// A pod's resolv.conf with the cluster resolver at `nameserver`, for a pod in `namespace`.
pub fn resolv_conf(nameserver: Ipv4Addr, namespace: &str, domain: &str) -> String {
    format!("search {namespace}.svc.{domain} svc.{domain} {domain}\nnameserver {nameserver}\noptions ndots:5\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_the_cluster_domain_are_answered_and_others_are_outside() {
        let dns = ClusterDns::new("cluster.local.", None);
        dns.set_records([("web.shop.svc.cluster.local".to_string(), vec![Ipv4Addr::new(10, 96, 0, 7)])].into());
        assert_eq!(dns.resolve("web.shop.svc.cluster.local"), Resolution::Cluster(vec![Ipv4Addr::new(10, 96, 0, 7)]));
        assert_eq!(dns.resolve("db.shop.svc.cluster.local"), Resolution::NoSuchName);
        assert_eq!(dns.resolve("example.com"), Resolution::Outside);
        assert_eq!(dns.resolve("notcluster.local"), Resolution::Outside, "a suffix match must be a whole label");
        assert_eq!(upstream_of("# x\nsearch lan\nnameserver fe80::1\nnameserver 192.0.2.53\n"), Some("192.0.2.53:53".parse().unwrap()));
        assert_eq!(
            resolv_conf(Ipv4Addr::new(10, 88, 0, 1), "shop", "cluster.local"),
            "search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.88.0.1\noptions ndots:5\n"
        );
    }

    #[derive(Default)]
    struct Recorder(std::sync::Mutex<Vec<Resolved>>);

    #[async_trait::async_trait]
    impl DnsLearner for Recorder {
        async fn learned(&self, resolved: &Resolved) {
            self.0.lock().unwrap().push(resolved.clone());
        }
    }

    fn query(name: &str) -> Vec<u8> {
        let mut m = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        m
    }

    #[tokio::test]
    async fn a_relayed_answer_is_learned_before_the_pod_gets_it() {
        let upstream = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let address = upstream.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (n, from) = upstream.recv_from(&mut buf).await.unwrap();
            let asked = parse_query(&buf[..n]).unwrap();
            upstream.send_to(&answer(&asked, Rcode::NoError, &[Ipv4Addr::new(198, 18, 77, 10)], 30), from).await.unwrap();
        });
        let learner = Arc::new(Recorder::default());
        let dns = ClusterDns::new("cluster.local", Some(address)).with_learner(learner.clone());
        let reply = dns.reply(&query("api.example.test")).await.unwrap();
        assert_eq!(&reply[reply.len() - 4..], &[198, 18, 77, 10], "the pod gets the upstream's answer");
        let learned = learner.0.lock().unwrap().clone();
        assert_eq!(learned, [Resolved { name: "api.example.test".into(), addresses: vec![Ipv4Addr::new(198, 18, 77, 10)], ttl: 30 }]);
        dns.reply(&query("web.shop.svc.cluster.local")).await.unwrap();
        assert_eq!(learner.0.lock().unwrap().len(), 1, "cluster names are not relayed, so not learned");
    }
}
