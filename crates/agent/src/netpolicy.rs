//! Network policy on this node: the eBPF datapath (`net`) on every pod's host veth, and its
//! maps kept equal to what the NetworkPolicies, Identities, Namespaces and pods of the cluster
//! compile to (`net::policy`). Pods are attached before their containers start, so no packet
//! of theirs passes unjudged; a change to a policy reaches the maps within a moment, with no
//! pod restarted.
//!
//! This node's pods are known from the pod workers at once (address, labels, ports); the
//! others' from a watch of every pod, as their agents report their addresses.
//!
//! The flows the datapath reports go into the node's [`FlowLog`], each end named as the pod
//! (namespace, name, labels) the model knows at that address; so do the HTTP requests the
//! node's proxy ([`L7Proxy`]) judged on the ports FlotillaNetworkPolicies give HTTP rules.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::identity::{Identity, IdentitySpec};
use api::netpol::flotilla::FlotillaNetworkPolicy;
use api::{NetworkPolicy, Pod, ResourceType};
use client::{Client, ClientError, Selectors};
use futures::StreamExt;
use net::flows::{FlowReader, Observed};
use net::policy::{Endpoint, Inputs, NamedPort, State};
use net::{Datapath, Protocol};
use serde_json::Value;

use crate::flows::FlowLog;
use crate::l7proxy::{L7Proxy, Tables, Wanted};

/// How long a pod start waits for its Identity where policies could select it.
pub const IDENTITY_WAIT: Duration = Duration::from_secs(5);

/// How long changes are gathered before the maps are written.
const SETTLE: Duration = Duration::from_millis(20);

/// How long an address a name resolved to stays allowed at least, whatever the record's TTL
/// (Cilium's `tofqdns-min-ttl` default): clients keep using addresses past short TTLs.
const MIN_RESOLVED_TTL: Duration = Duration::from_secs(3600);

/// The most addresses kept per name.
const MAX_ADDRESSES_PER_NAME: usize = 50;

/// A pod of this node.
struct Local {
    endpoint: Endpoint,
    name: String,
    veth: String,
}

#[derive(Default)]
struct Model {
    /// This node's pods, by uid.
    local: BTreeMap<String, Local>,
    /// Every pod with an address, by namespace/name.
    pods: BTreeMap<String, Endpoint>,
    /// The namespace/name of the pod at each address of `pods`.
    by_ip: HashMap<Ipv4Addr, String>,
    /// Identity objects by name.
    identities: BTreeMap<String, IdentitySpec>,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    policies: BTreeMap<String, NetworkPolicy>,
    http_policies: BTreeMap<String, FlotillaNetworkPolicy>,
    /// The addresses names that DNS-name rules select resolved to, each until when it counts.
    resolved: BTreeMap<String, BTreeMap<Ipv4Addr, std::time::Instant>>,
}

/// The kinds this follows.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Pods,
    Identities,
    Namespaces,
    Policies,
    HttpPolicies,
}

/// The [`NetPolicy::listed`] bits once every kind has been listed.
const ALL_LISTED: u8 = 0b11111;

impl Kind {
    fn resource(self) -> &'static ResourceType {
        match self {
            Kind::Pods => ResourceType::of::<Pod>(),
            Kind::Identities => ResourceType::of::<Identity>(),
            Kind::Namespaces => ResourceType::of::<api::Namespace>(),
            Kind::Policies => ResourceType::of::<NetworkPolicy>(),
            Kind::HttpPolicies => ResourceType::of::<FlotillaNetworkPolicy>(),
        }
    }
}

/// This node's network policy enforcement.
pub struct NetPolicy {
    datapath: Option<Mutex<Datapath>>,
    /// The flow reports, until the flow log task takes them.
    flow_reader: Mutex<Option<FlowReader>>,
    flows: Arc<FlowLog>,
    node: String,
    host: Vec<Ipv4Addr>,
    model: Mutex<Model>,
    applied: Mutex<State>,
    /// Held through each [`NetPolicy::apply`]: one change at a time, each on a fresh look.
    applying: tokio::sync::Mutex<()>,
    changed: tokio::sync::Notify,
    /// The HTTP proxy for ports with HTTP rules, and the requests it judged, until the flow
    /// log task takes them.
    proxy: Option<Arc<L7Proxy>>,
    l7_observed: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<crate::l7proxy::Observed>>>,
    /// One bit per [`Kind`] whose first list has been taken in: until all have, the
    /// model may lack policies (after an agent restart, say) and a pod is not let go.
    listed: std::sync::atomic::AtomicU8,
}

fn key_of(value: &Value) -> String {
    let meta = &value["metadata"];
    match meta["namespace"].as_str() {
        Some(ns) => format!("{ns}/{}", meta["name"].as_str().unwrap_or("")),
        None => meta["name"].as_str().unwrap_or("").to_string(),
    }
}

/// A pod as the policies see it, at `ip`.
fn endpoint(pod: &Pod, ip: Ipv4Addr) -> Endpoint {
    let ports = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let protocol = match p.protocol.as_deref() {
                Some("UDP") => Protocol::Udp,
                Some("SCTP") => Protocol::Sctp,
                _ => Protocol::Tcp,
            };
            Some(NamedPort { name: p.name.clone()?, port: u16::try_from(p.container_port).ok()?, protocol })
        })
        .collect();
    Endpoint {
        ip,
        namespace: pod.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        ports,
    }
}

impl NetPolicy {
    /// Loads the datapath, for node `node` whose pod gateway is `gateway`, reporting flows to
    /// `flows` where it is enabled. A kernel that cannot take the programs is an error naming
    /// what failed.
    pub fn new(node: &str, gateway: Ipv4Addr, flows: Arc<FlowLog>) -> Result<NetPolicy, net::DatapathError> {
        let mut datapath = Datapath::load()?;
        let flow_reader = datapath.take_flows().filter(|_| flows.enabled());
        datapath.set_flow_log(flow_reader.is_some())?;
        let (observed, l7_observed) = tokio::sync::mpsc::unbounded_channel();
        let proxy = L7Proxy::new(gateway, observed)?;
        Ok(NetPolicy {
            datapath: Some(Mutex::new(datapath)),
            flow_reader: Mutex::new(flow_reader),
            flows,
            node: node.to_string(),
            host: vec![gateway],
            model: Mutex::default(),
            applied: Mutex::default(),
            applying: tokio::sync::Mutex::new(()),
            changed: tokio::sync::Notify::new(),
            proxy: Some(Arc::new(proxy)),
            l7_observed: Mutex::new(Some(l7_observed)),
            listed: Default::default(),
        })
    }

    /// A node without enforcement (`--network-policy off`).
    pub fn disabled() -> NetPolicy {
        NetPolicy {
            datapath: None,
            flow_reader: Mutex::new(None),
            flows: FlowLog::new(0),
            node: String::new(),
            host: Vec::new(),
            model: Mutex::default(),
            applied: Mutex::default(),
            applying: tokio::sync::Mutex::new(()),
            changed: tokio::sync::Notify::new(),
            proxy: None,
            l7_observed: Mutex::new(None),
            listed: Default::default(),
        }
    }

    fn model(&self) -> std::sync::MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts the programs on `pod`'s host veth and writes what its identity is allowed,
    /// before any of its containers starts.
    /// When a policy of the pod's namespace could select it, or the namespace is default-deny,
    /// this waits (up to [`IDENTITY_WAIT`]) for the pod's Identity, which the control plane
    /// allocates as the pod is created: without it the pod could not be told apart from the
    /// world.
    pub async fn attach(&self, uid: &str, pod: &Pod, ip: IpAddr, veth: &str) -> Result<(), String> {
        let Some(datapath) = &self.datapath else { return Ok(()) };
        let IpAddr::V4(ip) = ip else { return Err("IPv6 pod addresses are not supported by the policy datapath".into()) };
        datapath.lock().unwrap_or_else(|e| e.into_inner()).attach(veth).map_err(|e| e.to_string())?;
        let endpoint = endpoint(pod, ip);
        let spec = api::identity::spec_for(&endpoint.namespace, Some(&endpoint.labels));
        let name = pod.metadata.name.clone().unwrap_or_default();
        self.model().local.insert(uid.to_string(), Local { endpoint, name, veth: veth.to_string() });
        let started = std::time::Instant::now();
        loop {
            let listed = self.listed.load(std::sync::atomic::Ordering::Acquire) == ALL_LISTED;
            let ready = listed && {
                let model = self.model();
                let in_namespace = |ns: Option<&str>| ns == Some(spec.namespace.as_str());
                let restricted = model.policies.values().any(|p| in_namespace(p.metadata.namespace.as_deref()))
                    || model.http_policies.values().any(|p| in_namespace(p.metadata.namespace.as_deref()))
                    || model.namespaces.get(&spec.namespace).is_some_and(|labels| api::netpol::default_deny(labels) != (false, false));
                !restricted || model.identities.values().any(|s| *s == spec)
            };
            if ready {
                break;
            }
            if started.elapsed() > IDENTITY_WAIT {
                tracing::warn!(pod = uid, listed, "the pod's Identity or the cluster's policies are not known yet; it starts unrestricted until they arrive");
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.apply().await
    }

    /// Takes a local pod's labels as they are now (a relabelled pod changes identity).
    pub fn update(&self, uid: &str, pod: &Pod) {
        let mut model = self.model();
        let Some(Local { endpoint: current, .. }) = model.local.get_mut(uid) else { return };
        let now = endpoint(pod, current.ip);
        if *current != now {
            *current = now;
            drop(model);
            self.changed.notify_one();
        }
    }

    /// Forgets a pod whose network is gone.
    pub fn forget(&self, uid: &str) {
        let Some(datapath) = &self.datapath else { return };
        if let Some(Local { veth, .. }) = self.model().local.remove(uid) {
            datapath.lock().unwrap_or_else(|e| e.into_inner()).forget(&veth);
            if let Some(proxy) = &self.proxy {
                proxy.forget(uid);
            }
            self.changed.notify_one();
        }
    }

    /// Brings the HTTP proxy and the maps in line with the model, one change at a time (each
    /// on a fresh look at the model), in the order that never opens more than the old or the
    /// new policy allows: the proxy takes the ports that get HTTP rules before the maps let
    /// their peers in, and gives up those that lose them only after. A port the proxy cannot
    /// serve stays closed to the pod's identity (an error says why).
    async fn apply(&self) -> Result<(), String> {
        let Some(datapath) = &self.datapath else { return Ok(()) };
        let _one_at_a_time = self.applying.lock().await;
        let mut wanted = net::policy::compile(&self.inputs());
        let plan = self.http_plan(&wanted);
        let failed = match &self.proxy {
            Some(proxy) => proxy.serve(&plan.wanted, plan.tables, &plan.local).await,
            None => Vec::new(),
        };
        let closed: Vec<(u32, u16)> = failed.iter().filter_map(|((ip, port), _)| Some((*wanted.ipcache.get(&ipnet::Ipv4Net::from(*ip))?, *port))).collect();
        wanted.rules.retain(|r| {
            let serves_http = closed.iter().any(|(id, port)| r.local == *id && r.port.is_none_or(|p| p == *port));
            !(serves_http && r.direction == net::Direction::Ingress && r.protocol == Protocol::Tcp && r.peer != Some(api::identity::HOST))
        });
        self.write(datapath, wanted).map_err(|e| format!("writing network policy to the datapath: {e}"))?;
        if let Some(proxy) = &self.proxy {
            proxy.retire(&plan.wanted).await;
        }
        if failed.is_empty() {
            Ok(())
        } else {
            let what: Vec<String> = failed.iter().map(|((ip, port), why)| format!("{ip}:{port}: {why}")).collect();
            Err(format!("the HTTP proxy cannot serve {} (closed until it can)", what.join("; ")))
        }
    }

    /// What the model compiles from now.
    fn inputs(&self) -> Inputs {
        let model = self.model();
        let identities = api::identity::in_use(model.identities.iter().filter_map(|(name, spec)| Some((name.parse().ok()?, spec))));
        let locals: BTreeSet<Ipv4Addr> = model.local.values().map(|l| l.endpoint.ip).collect();
        let mut endpoints: Vec<Endpoint> = model.local.values().map(|l| l.endpoint.clone()).collect();
        endpoints.extend(model.pods.values().filter(|e| !locals.contains(&e.ip)).cloned());
        let local =
            model.local.values().filter_map(|l| identities.get(&api::identity::spec_for(&l.endpoint.namespace, Some(&l.endpoint.labels))).copied()).collect();
        Inputs {
            endpoints,
            identities,
            namespaces: model.namespaces.clone(),
            policies: model.policies.values().cloned().collect(),
            http_policies: model.http_policies.values().cloned().collect(),
            resolved: {
                let now = std::time::Instant::now();
                model
                    .resolved
                    .iter()
                    .map(|(name, addresses)| (name.clone(), addresses.iter().filter(|(_, until)| **until > now).map(|(a, _)| *a).collect::<BTreeSet<_>>()))
                    .filter(|(_, addresses)| !addresses.is_empty())
                    .collect()
            },
            host: self.host.clone(),
            local,
        }
    }

    /// Writes the maps to hold `wanted`.
    fn write(&self, datapath: &Mutex<Datapath>, wanted: State) -> Result<(), net::DatapathError> {
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        let mut dp = datapath.lock().unwrap_or_else(|e| e.into_inner());
        // What opens first, what closes last: no packet meets a half-written policy that
        // denies more than either the old or the new one.
        for (net, id) in &wanted.ipcache {
            if applied.ipcache.get(net) != Some(id) {
                dp.set_identity(*net, *id)?;
            }
        }
        for rule in wanted.rules.difference(&applied.rules) {
            dp.allow(rule)?;
        }
        for (id, direction) in wanted.enforced.difference(&applied.enforced) {
            dp.enforce(*id, *direction, true)?;
        }
        for (id, direction) in applied.enforced.difference(&wanted.enforced) {
            dp.enforce(*id, *direction, false)?;
        }
        for rule in applied.rules.difference(&wanted.rules) {
            dp.revoke(rule)?;
        }
        for net in applied.ipcache.keys().filter(|n| !wanted.ipcache.contains_key(*n)) {
            dp.remove_identity(*net)?;
        }
        *applied = wanted;
        Ok(())
    }

    /// The pod ports of this node `state` gives HTTP rules.
    fn http_plan(&self, state: &State) -> HttpPlan {
        let model = self.model();
        let local = model.local.keys().cloned().collect();
        if state.http.is_empty() {
            return HttpPlan { local, ..Default::default() };
        }
        let mut wanted = Vec::new();
        for (uid, local) in &model.local {
            let Some(&identity) = state.ipcache.get(&ipnet::Ipv4Net::from(local.endpoint.ip)) else { continue };
            for &(_, port) in state.http.range((identity, 0)..=(identity, u16::MAX)).map(|(k, _)| k) {
                wanted.push(Wanted { uid: uid.clone(), netns: crate::network::netns_name(uid), ip: local.endpoint.ip, port });
            }
        }
        HttpPlan { wanted, tables: Tables::new(state), local }
    }

    /// Follows the cluster's policies, identities, namespaces and pods for as long as the
    /// agent runs, and keeps the maps current.
    pub async fn run(self: Arc<Self>, client: Client) {
        if self.datapath.is_none() {
            return;
        }
        let reader = self.flow_reader.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(reader) = reader {
            tokio::spawn(self.clone().log_flows(reader));
        }
        let observed = self.l7_observed.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(observed) = observed.filter(|_| self.flows.enabled()) {
            tokio::spawn(self.clone().log_requests(observed));
        }
        for kind in [Kind::Pods, Kind::Identities, Kind::Namespaces, Kind::Policies, Kind::HttpPolicies] {
            let (this, client) = (self.clone(), client.clone());
            tokio::spawn(async move {
                loop {
                    if let Err(e) = this.follow(&client, kind).await {
                        tracing::debug!(?kind, error = %e, "network policy watch ended; listing again");
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
        }
        loop {
            self.changed.notified().await;
            tokio::time::sleep(SETTLE).await;
            if let Err(e) = self.apply().await {
                tracing::warn!(error = %e, "network policy not in place; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.changed.notify_one();
            }
        }
    }

    /// Reads the datapath's flow reports for as long as the agent runs, into the flow log.
    async fn log_flows(self: Arc<Self>, reader: FlowReader) {
        // SAFETY: the reader owns the ring buffer map's descriptor, which stays open and the
        // same for as long as the reader lives, and the AsyncFd owns the reader.
        let registered = unsafe { tokio::io::unix::AsyncFd::register_with_interest(reader, tokio::io::Interest::READABLE) };
        let mut reader = match registered {
            Ok(reader) => reader,
            Err(e) => {
                tracing::warn!(error = %e, "the flow reports cannot be read; the flow log stays empty");
                return;
            }
        };
        let mut batch = Vec::new();
        loop {
            let Ok(mut ready) = reader.readable_mut().await else { return };
            ready.get_inner_mut().drain(|observed| batch.push(observed));
            ready.clear_ready();
            if !batch.is_empty() {
                let flows: Vec<api::flow::Flow> = {
                    let model = self.model();
                    batch.drain(..).map(|o| self.describe(&model, &o)).collect()
                };
                self.flows.extend(flows);
            }
        }
    }

    /// Reads the HTTP proxy's judged requests for as long as the agent runs, into the flow log.
    async fn log_requests(self: Arc<Self>, mut observed: tokio::sync::mpsc::UnboundedReceiver<crate::l7proxy::Observed>) {
        let mut batch = Vec::new();
        while observed.recv_many(&mut batch, 256).await > 0 {
            let flows: Vec<api::flow::Flow> = {
                let model = self.model();
                batch
                    .drain(..)
                    .map(|o| api::flow::Flow {
                        time: o.time,
                        node: self.node.clone(),
                        verdict: if o.allowed { api::flow::Verdict::Forwarded } else { api::flow::Verdict::Dropped },
                        drop_reason: (!o.allowed).then(|| "POLICY_DENIED".to_string()),
                        traffic_direction: api::flow::TrafficDirection::Ingress,
                        protocol: "TCP".into(),
                        source: end(&model, o.source, o.source_identity),
                        destination: end(&model, o.destination, o.destination_identity),
                        l7: Some(o.l7),
                    })
                    .collect()
            };
            self.flows.extend(flows);
        }
    }

    /// A reported flow with its ends named as the pods at their addresses.
    fn describe(&self, model: &Model, observed: &Observed) -> api::flow::Flow {
        let (verdict, drop_reason) = match observed.verdict {
            net::flows::Verdict::Forwarded => (api::flow::Verdict::Forwarded, None),
            net::flows::Verdict::Dropped => (
                api::flow::Verdict::Dropped,
                Some(match observed.reason {
                    Some(net::flows::DropReason::Other(code)) => format!("UNKNOWN_{code}"),
                    _ => "POLICY_DENIED".to_string(),
                }),
            ),
        };
        api::flow::Flow {
            time: api::jiff::Timestamp::try_from(observed.time).unwrap_or_else(|_| api::jiff::Timestamp::now()),
            node: self.node.clone(),
            verdict,
            drop_reason,
            traffic_direction: match observed.direction {
                net::Direction::Ingress => api::flow::TrafficDirection::Ingress,
                net::Direction::Egress => api::flow::TrafficDirection::Egress,
            },
            protocol: api::flow::protocol_name(observed.protocol),
            source: end(model, observed.source, observed.source_identity),
            destination: end(model, observed.destination, observed.destination_identity),
            l7: None,
        }
    }

    async fn follow(&self, client: &Client, kind: Kind) -> Result<(), ClientError> {
        let rt = kind.resource();
        let (items, revision) = client.list(rt, None, &Selectors::default()).await?;
        {
            let mut model = self.model();
            match kind {
                Kind::Pods => {
                    model.pods.clear();
                    model.by_ip.clear();
                }
                Kind::Identities => model.identities.clear(),
                Kind::Namespaces => model.namespaces.clear(),
                Kind::Policies => model.policies.clear(),
                Kind::HttpPolicies => model.http_policies.clear(),
            }
            for item in items {
                apply(&mut model, kind, false, item);
            }
        }
        self.listed.fetch_or(1 << kind as u8, std::sync::atomic::Ordering::Release);
        self.changed.notify_one();
        let mut events = client.watch(rt, None, &Selectors::default(), &revision).await?;
        while let Some(event) = events.next().await {
            let event = event?;
            match event.type_.as_str() {
                "ADDED" | "MODIFIED" => apply(&mut self.model(), kind, false, event.object),
                "DELETED" => apply(&mut self.model(), kind, true, event.object),
                "ERROR" => return Ok(()),
                _ => continue,
            }
            self.changed.notify_one();
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl crate::dns::DnsLearner for NetPolicy {
    /// Where a DNS-name rule selects the name, its new addresses are written to the datapath
    /// before the pod hears them.
    async fn learned(&self, resolved: &net::dns::Resolved) {
        if self.datapath.is_none() || resolved.addresses.is_empty() {
            return;
        }
        let fresh = {
            let mut model = self.model();
            let selected =
                model.http_policies.values().any(|p| p.egress_fqdns().iter().any(|(selectors, _)| selectors.iter().any(|s| s.matches(&resolved.name))));
            if !selected {
                return;
            }
            let now = std::time::Instant::now();
            model.resolved.retain(|_, addresses| {
                addresses.retain(|_, until| *until > now);
                !addresses.is_empty()
            });
            let until = now + Duration::from_secs(u64::from(resolved.ttl)).max(MIN_RESOLVED_TTL);
            let known = model.resolved.entry(resolved.name.clone()).or_default();
            let mut fresh = false;
            for address in &resolved.addresses {
                fresh |= known.insert(*address, until).is_none();
            }
            // A name that keeps resolving to new addresses keeps the newest (as Cilium's
            // `tofqdns-endpoint-max-ip-per-hostname`): each is an identity and rules.
            while known.len() > MAX_ADDRESSES_PER_NAME {
                let Some(oldest) = known.iter().min_by_key(|(_, until)| **until).map(|(a, _)| *a) else { break };
                known.remove(&oldest);
            }
            fresh
        };
        if fresh {
            if let Err(e) = self.apply().await {
                tracing::warn!(name = %resolved.name, error = %e, "writing the addresses a name resolved to; the run loop tries again");
                self.changed.notify_one();
            }
        }
    }
}

/// One end of a flow, named as the pod the model knows at its address.
fn end(model: &Model, at: std::net::SocketAddrV4, identity: u32) -> api::flow::FlowEndpoint {
    let ip = *at.ip();
    // The watch knows every pod with an address; a pod of this node is known before its
    // address is reported, so those are looked through only when the watch has none.
    let watched = model.by_ip.get(&ip).and_then(|key| Some((model.pods.get(key)?, key.split_once('/')?.1.to_string())));
    let pod = watched.or_else(|| model.local.values().find(|l| l.endpoint.ip == ip).map(|l| (&l.endpoint, l.name.clone())));
    api::flow::FlowEndpoint {
        ip: ip.to_string(),
        port: at.port(),
        identity,
        namespace: pod.as_ref().map(|(e, _)| e.namespace.clone()),
        labels: pod.as_ref().map(|(e, _)| e.labels.clone()).unwrap_or_default(),
        pod: pod.map(|(_, name)| name),
    }
}

/// The pod ports the HTTP proxy is to serve, and the tables it decides by.
#[derive(Default)]
struct HttpPlan {
    wanted: Vec<Wanted>,
    tables: Tables,
    /// The uids of the node's pods.
    local: Vec<String>,
}

/// Takes one object (or its deletion) into the model; one that does not decode is left out.
fn apply(model: &mut Model, kind: Kind, deleted: bool, value: Value) {
    let key = key_of(&value);
    match kind {
        Kind::Pods => {
            let ip = value.pointer("/status/podIP").and_then(Value::as_str).and_then(|ip| ip.parse::<Ipv4Addr>().ok());
            let pod = if deleted { None } else { serde_json::from_value::<Pod>(value).ok() };
            let old = match (pod, ip) {
                (Some(pod), Some(ip)) => {
                    model.by_ip.insert(ip, key.clone());
                    model.pods.insert(key.clone(), endpoint(&pod, ip)).filter(|old| old.ip != ip)
                }
                _ => model.pods.remove(&key),
            };
            // The address it had, unless another pod has it now.
            if let Some(old) = old {
                if model.by_ip.get(&old.ip) == Some(&key) {
                    model.by_ip.remove(&old.ip);
                }
            }
        }
        Kind::Identities => match (deleted, serde_json::from_value::<Identity>(value)) {
            (false, Ok(identity)) => {
                model.identities.insert(key, identity.spec);
            }
            _ => {
                model.identities.remove(&key);
            }
        },
        Kind::Namespaces => {
            let labels: BTreeMap<String, String> = value.pointer("/metadata/labels").and_then(|l| serde_json::from_value(l.clone()).ok()).unwrap_or_default();
            if deleted {
                model.namespaces.remove(&key);
            } else {
                model.namespaces.insert(key, labels);
            }
        }
        Kind::Policies => upsert(&mut model.policies, key, deleted, value),
        Kind::HttpPolicies => upsert(&mut model.http_policies, key, deleted, value),
    }
}

/// Keeps `value` under `key`, or forgets the key when the object was deleted or does not decode.
fn upsert<T: serde::de::DeserializeOwned>(objects: &mut BTreeMap<String, T>, key: String, deleted: bool, value: Value) {
    match (deleted, serde_json::from_value::<T>(value)) {
        (false, Ok(object)) => {
            objects.insert(key, object);
        }
        _ => {
            objects.remove(&key);
        }
    }
}
