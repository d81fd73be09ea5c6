//! Services on this node: the socket load balancer (`net::service`) attached to the cgroup
//! tree, its maps kept equal to the cluster's Services and Endpoints. Every Service port is a
//! frontend at its cluster IP; a NodePort Service's ports are also frontends at the node's
//! address and loopback. Only ready endpoints are backends; a pod that stops being ready or
//! starts terminating stops getting new connections at once, while its open ones finish.
//!
//! The balancer serves this node's own network namespace and its pods' (each registered
//! before its containers start), and no other.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::{Endpoints, ResourceType, Service};
use client::{Client, ClientError, Selectors};
use futures::StreamExt;
use net::service::{Backends, Balancer, Frontend, L4};
use serde_json::Value;

/// How long changes are gathered before the maps are written.
const SETTLE: Duration = Duration::from_millis(10);

#[derive(Default)]
struct Model {
    services: BTreeMap<String, Service>,
    endpoints: BTreeMap<String, Endpoints>,
}

/// This node's service load balancing.
pub struct ServiceProxy {
    balancer: Option<Mutex<Balancer>>,
    /// The addresses NodePorts are served at.
    node_addrs: Vec<Ipv4Addr>,
    model: Mutex<Model>,
    applied: Mutex<HashMap<Frontend, Backends>>,
    /// Pod uid → its network namespace's cookie.
    pods: Mutex<HashMap<String, u64>>,
    changed: tokio::sync::Notify,
    /// The node's resolver, told the Services' names.
    dns: Option<Arc<crate::dns::ClusterDns>>,
}

fn protocol(name: Option<&str>) -> L4 {
    match name {
        Some("UDP") => L4::Udp,
        _ => L4::Tcp,
    }
}

/// The frontends of the cluster's Services and the ready backends behind each.
fn frontends(model: &Model, node_addrs: &[Ipv4Addr]) -> HashMap<Frontend, Backends> {
    let mut out = HashMap::new();
    for (key, service) in &model.services {
        let Some(spec) = &service.spec else { continue };
        let Some(vip) = spec.cluster_ip.as_deref().and_then(|ip| ip.parse::<Ipv4Addr>().ok()) else { continue };
        let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            let seconds = spec.session_affinity_config.as_ref().and_then(|c| c.client_ip.as_ref()).and_then(|c| c.timeout_seconds);
            Duration::from_secs(seconds.unwrap_or(api::service::DEFAULT_AFFINITY_SECONDS).max(1) as u64)
        });
        let endpoints = model.endpoints.get(key);
        for port in spec.ports.iter().flatten() {
            let l4 = protocol(port.protocol.as_deref());
            let name = port.name.clone().unwrap_or_default();
            let mut addrs = Vec::new();
            for subset in endpoints.iter().flat_map(|e| e.subsets.iter().flatten()) {
                let Some(target) = subset.ports.iter().flatten().find(|p| p.name.clone().unwrap_or_default() == name && protocol(p.protocol.as_deref()) == l4)
                else {
                    continue;
                };
                let Ok(target) = u16::try_from(target.port) else { continue };
                for address in subset.addresses.iter().flatten() {
                    if let Ok(ip) = address.ip.parse::<Ipv4Addr>() {
                        addrs.push(SocketAddrV4::new(ip, target));
                    }
                }
            }
            let backends = Backends { addrs, affinity };
            let Ok(service_port) = u16::try_from(port.port) else { continue };
            out.insert(Frontend { addr: vip, port: service_port, protocol: l4 }, backends.clone());
            if spec.type_.as_deref() == Some("NodePort") {
                if let Some(node_port) = port.node_port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0) {
                    for addr in node_addrs {
                        out.insert(Frontend { addr: *addr, port: node_port, protocol: l4 }, backends.clone());
                    }
                }
            }
        }
    }
    out
}

/// The Services' DNS names: `<name>.<namespace>.svc.<domain>` → the cluster IP, or for a
/// headless Service its ready endpoints' addresses.
fn names(model: &Model, domain: &str) -> HashMap<String, Vec<Ipv4Addr>> {
    let mut out = HashMap::new();
    for (key, service) in &model.services {
        let (ns, name) = key.split_once('/').unwrap_or(("default", key));
        let ip = service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref());
        let addresses = match ip {
            Some(api::service::HEADLESS) => {
                let subsets = model.endpoints.get(key).into_iter().flat_map(|e| e.subsets.iter().flatten());
                let mut ips: Vec<Ipv4Addr> = subsets.flat_map(|s| s.addresses.iter().flatten()).filter_map(|a| a.ip.parse().ok()).collect();
                ips.sort();
                ips.dedup();
                ips
            }
            Some(ip) => ip.parse().into_iter().collect(),
            None => Vec::new(),
        };
        out.insert(format!("{name}.{ns}.svc.{domain}"), addresses);
    }
    out
}

impl ServiceProxy {
    /// Loads the balancer for a node reached at `node_ip`, serving this process's network
    /// namespace. A kernel that cannot take the programs is an error naming what failed.
    pub fn new(node_ip: Ipv4Addr) -> Result<ServiceProxy, String> {
        let root = net::service::cgroup2_root().ok_or("no cgroup v2 hierarchy is mounted (the socket load balancer attaches to it)")?;
        let mut balancer = Balancer::load(&root).map_err(|e| e.to_string())?;
        let own = net::service::netns_cookie(Path::new("/proc/self/ns/net")).map_err(|e| format!("reading this network namespace's cookie: {e}"))?;
        balancer.serve_netns(own).map_err(|e| e.to_string())?;
        let mut node_addrs = vec![node_ip, Ipv4Addr::LOCALHOST];
        node_addrs.dedup();
        Ok(ServiceProxy {
            balancer: Some(Mutex::new(balancer)),
            node_addrs,
            model: Mutex::default(),
            applied: Mutex::default(),
            pods: Mutex::default(),
            changed: tokio::sync::Notify::new(),
            dns: None,
        })
    }

    /// A node without service load balancing (`--service-proxy off`).
    pub fn disabled() -> ServiceProxy {
        ServiceProxy {
            balancer: None,
            node_addrs: Vec::new(),
            model: Mutex::default(),
            applied: Mutex::default(),
            pods: Mutex::default(),
            changed: tokio::sync::Notify::new(),
            dns: None,
        }
    }

    /// This proxy, keeping `dns` told the Services' names.
    pub fn with_dns(mut self, dns: Option<Arc<crate::dns::ClusterDns>>) -> ServiceProxy {
        self.dns = dns;
        self
    }

    fn balancer(&self) -> Option<std::sync::MutexGuard<'_, Balancer>> {
        self.balancer.as_ref().map(|b| b.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Serves the pod `uid`, whose network namespace is at `netns`, before its containers start.
    pub fn register(&self, uid: &str, netns: &Path) -> Result<(), String> {
        let Some(mut balancer) = self.balancer() else { return Ok(()) };
        let cookie = net::service::netns_cookie(netns).map_err(|e| format!("reading the cookie of {}: {e}", netns.display()))?;
        balancer.serve_netns(cookie).map_err(|e| e.to_string())?;
        self.pods.lock().unwrap_or_else(|e| e.into_inner()).insert(uid.to_string(), cookie);
        Ok(())
    }

    /// Forgets a pod whose network is gone.
    pub fn forget(&self, uid: &str) {
        let Some(mut balancer) = self.balancer() else { return };
        if let Some(cookie) = self.pods.lock().unwrap_or_else(|e| e.into_inner()).remove(uid) {
            if let Err(e) = balancer.forget_netns(cookie) {
                tracing::debug!(pod = uid, error = %e, "forgetting a pod's network namespace");
            }
        }
    }

    /// Writes the maps to match the model now.
    fn reconcile(&self) -> Result<(), net::DatapathError> {
        let Some(mut balancer) = self.balancer() else { return Ok(()) };
        let (wanted, names) = {
            let model = self.model.lock().unwrap_or_else(|e| e.into_inner());
            (frontends(&model, &self.node_addrs), self.dns.as_ref().map(|dns| names(&model, dns.domain())))
        };
        if let (Some(dns), Some(names)) = (&self.dns, names) {
            dns.set_records(names);
        }
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        for (frontend, backends) in &wanted {
            if applied.get(frontend) != Some(backends) {
                balancer.set(*frontend, backends)?;
                applied.insert(*frontend, backends.clone());
            }
        }
        let gone: Vec<Frontend> = applied.keys().filter(|f| !wanted.contains_key(f)).copied().collect();
        for frontend in gone {
            balancer.remove(&frontend)?;
            applied.remove(&frontend);
        }
        Ok(())
    }

    /// Follows the cluster's Services and Endpoints for as long as the agent runs.
    pub async fn run(self: Arc<Self>, client: Client) {
        if self.balancer.is_none() {
            return;
        }
        for endpoints in [false, true] {
            let (this, client) = (self.clone(), client.clone());
            tokio::spawn(async move {
                loop {
                    if let Err(e) = this.follow(&client, endpoints).await {
                        tracing::debug!(endpoints, error = %e, "service watch ended; listing again");
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
        }
        loop {
            self.changed.notified().await;
            tokio::time::sleep(SETTLE).await;
            if let Err(e) = self.reconcile() {
                tracing::warn!(error = %e, "writing services to the load balancer; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.changed.notify_one();
            }
        }
    }

    async fn follow(&self, client: &Client, endpoints: bool) -> Result<(), ClientError> {
        let rt = if endpoints { ResourceType::of::<Endpoints>() } else { ResourceType::of::<Service>() };
        let (items, revision) = client.list(rt, None, &Selectors::default()).await?;
        {
            let mut model = self.model.lock().unwrap_or_else(|e| e.into_inner());
            if endpoints {
                model.endpoints.clear();
            } else {
                model.services.clear();
            }
            for item in items {
                apply(&mut model, endpoints, false, item);
            }
        }
        self.changed.notify_one();
        let mut events = client.watch(rt, None, &Selectors::default(), &revision).await?;
        while let Some(event) = events.next().await {
            let event = event?;
            let deleted = match event.type_.as_str() {
                "ADDED" | "MODIFIED" => false,
                "DELETED" => true,
                "ERROR" => return Ok(()),
                _ => continue,
            };
            apply(&mut self.model.lock().unwrap_or_else(|e| e.into_inner()), endpoints, deleted, event.object);
            self.changed.notify_one();
        }
        Ok(())
    }
}

/// Takes one object (or its deletion) into the model; one that does not decode is left out.
fn apply(model: &mut Model, endpoints: bool, deleted: bool, value: Value) {
    let meta = &value["metadata"];
    let key = format!("{}/{}", meta["namespace"].as_str().unwrap_or("default"), meta["name"].as_str().unwrap_or(""));
    if endpoints {
        match (deleted, serde_json::from_value::<Endpoints>(value)) {
            (false, Ok(e)) => model.endpoints.insert(key, e),
            _ => model.endpoints.remove(&key),
        };
    } else {
        match (deleted, serde_json::from_value::<Service>(value)) {
            (false, Ok(s)) => model.services.insert(key, s),
            _ => model.services.remove(&key),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frontends_carry_only_ready_backends_of_the_matching_port() {
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "sessionAffinity": "ClientIP",
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080},
                               {"name": "dns", "port": 53, "protocol": "UDP"}]}
        }))
        .unwrap();
        let endpoints: Endpoints = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "subsets": [{"addresses": [{"ip": "10.88.0.2"}], "notReadyAddresses": [{"ip": "10.88.0.3"}],
                         "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 5353, "protocol": "UDP"}]}]
        }))
        .unwrap();
        let model = Model { services: [("shop/web".into(), service)].into(), endpoints: [("shop/web".into(), endpoints)].into() };
        let got = frontends(&model, &[Ipv4Addr::new(192, 0, 2, 1)]);
        let vip = Ipv4Addr::new(10, 96, 0, 10);
        let http = &got[&Frontend { addr: vip, port: 80, protocol: L4::Tcp }];
        assert_eq!(http.addrs, vec!["10.88.0.2:8080".parse().unwrap()]);
        assert_eq!(http.affinity, Some(Duration::from_secs(10800)));
        assert_eq!(got[&Frontend { addr: vip, port: 53, protocol: L4::Udp }].addrs, vec!["10.88.0.2:5353".parse().unwrap()]);
        assert_eq!(got[&Frontend { addr: Ipv4Addr::new(192, 0, 2, 1), port: 30080, protocol: L4::Tcp }], *http);
        assert_eq!(got.len(), 3);
        let names = names(&model, "cluster.local");
        assert_eq!(names["web.shop.svc.cluster.local"], vec![vip]);
    }
}
