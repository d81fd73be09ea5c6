//! The node's HTTP proxy for pod ports with HTTP rules (FlotillaNetworkPolicy). For each such
//! (pod, port) it listens in the pod's network namespace, and the L7 redirect (`net::redirect`)
//! hands it every new connection to the port from anything but the node, addresses kept. It
//! reads each request, asks the rules whether the client's identity may make it, and either
//! passes it on to the pod's server (connecting from the node, which the datapath always lets
//! reach its pods) and relays the answer, or answers 403 itself. Every request is reported,
//! with its method, path, status and latency, for the flow log.
//!
//! The rules are read per request, so a changed policy applies to open connections too.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use api::netpol::flotilla::{CompiledRule, Request};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use ipnet::Ipv4Net;
use net::policy::{Access, State};
use net::redirect::Redirect;
use tokio::sync::mpsc;

use crate::network::{in_netns, netns_name, POD_INTERFACE};

/// A (pod, port) whose connections are to go through the proxy.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Wanted {
    /// The pod's uid.
    pub uid: String,
    /// Its network namespace (under /run/netns).
    pub netns: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// The port with HTTP rules.
    pub port: u16,
}

/// What a peer may ask on a port, compiled.
enum Compiled {
    All,
    Rules(Vec<CompiledRule>),
}

/// Per peer identity (`None`: every peer), what it may ask on a port.
type PeerAccess = Vec<(Option<u32>, Compiled)>;

/// What the proxy decides from: the HTTP rules per (pod identity, port), and who is who.
#[derive(Default)]
pub struct Tables {
    ports: HashMap<(u32, u16), PeerAccess>,
    ipcache: BTreeMap<Ipv4Net, u32>,
}

impl Tables {
    /// The tables of the datapath state `state`.
    pub fn new(state: &State) -> Tables {
        if state.http.is_empty() {
            return Tables::default();
        }
        let ports = state
            .http
            .iter()
            .map(|(key, port)| {
                let peers = port
                    .peers
                    .iter()
                    .map(|(peer, access)| {
                        let compiled = match access {
                            Access::All => Compiled::All,
                            Access::Rules(rules) => Compiled::Rules(rules.iter().map(CompiledRule::new).collect()),
                        };
                        (*peer, compiled)
                    })
                    .collect();
                (*key, peers)
            })
            .collect();
        Tables { ports, ipcache: state.ipcache.clone() }
    }

    /// The identity of `ip`: its longest prefix in the ipcache, or the world's.
    fn identity(&self, ip: Ipv4Addr) -> u32 {
        (0..=32u8).rev().find_map(|len| Ipv4Net::new(ip, len).ok().and_then(|net| self.ipcache.get(&net.trunc())).copied()).unwrap_or(api::identity::WORLD)
    }

    /// Whether `peer` may make `request` to `local` on `port`. A port no longer in the tables
    /// has lost its HTTP rules: its connections were let in by the L3/L4 policy, which is all
    /// that applies now.
    fn allows(&self, local: u32, port: u16, peer: u32, request: &Request) -> bool {
        let Some(peers) = self.ports.get(&(local, port)) else { return true };
        peers.iter().filter(|(p, _)| p.is_none_or(|p| p == peer)).any(|(_, access)| match access {
            Compiled::All => true,
            Compiled::Rules(rules) => rules.iter().any(|rule| rule.matches(request)),
        })
    }
}

/// One request the proxy judged.
#[derive(Clone, Debug)]
pub struct Observed {
    /// When it came.
    pub time: api::jiff::Timestamp,
    /// The client.
    pub source: SocketAddrV4,
    /// The pod and port it asked.
    pub destination: SocketAddrV4,
    /// The client's identity.
    pub source_identity: u32,
    /// The pod's.
    pub destination_identity: u32,
    /// Whether the rules allowed it.
    pub allowed: bool,
    /// The request and its answer.
    pub l7: api::flow::L7,
}

/// A port being served.
struct Served {
    task: tokio::task::JoinHandle<()>,
}

/// The proxy of this node.
pub struct L7Proxy {
    redirect: Mutex<Redirect>,
    /// The node's address on the pod network: its connections to a pod are not redirected.
    gateway: Ipv4Addr,
    tables: RwLock<Arc<Tables>>,
    served: tokio::sync::Mutex<HashMap<(String, Ipv4Addr, u16), Served>>,
    /// Pods whose network is gone since the last [`L7Proxy::serve`].
    forgotten: Mutex<HashSet<String>>,
    /// Pods whose eth0 carries the redirect program.
    attached: Mutex<HashSet<String>>,
    /// Whether an earlier agent's redirect could still be on some pod's eth0, and the pods
    /// already looked at for one.
    stale: bool,
    checked: Mutex<HashSet<String>>,
    observed: mpsc::UnboundedSender<Observed>,
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

impl L7Proxy {
    /// Loads the redirect; the requests judged are sent to `observed`.
    pub fn new(gateway: Ipv4Addr, observed: mpsc::UnboundedSender<Observed>) -> Result<L7Proxy, net::DatapathError> {
        let mut redirect = Redirect::load()?;
        let stale = redirect.others_loaded();
        Ok(L7Proxy {
            redirect: Mutex::new(redirect),
            gateway,
            tables: RwLock::default(),
            served: tokio::sync::Mutex::default(),
            forgotten: Mutex::default(),
            attached: Mutex::default(),
            stale,
            checked: Mutex::default(),
            observed,
        })
    }

    fn tables(&self) -> Arc<Tables> {
        self.tables.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn redirect(&self) -> std::sync::MutexGuard<'_, Redirect> {
        self.redirect.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves `wanted` (besides what it serves already), deciding by `tables` from now on;
    /// `local` are the uids of the node's pods. Returns the ports it cannot serve, and why.
    pub async fn serve(self: &Arc<Self>, wanted: &[Wanted], tables: Tables, local: &[String]) -> Vec<((Ipv4Addr, u16), String)> {
        *self.tables.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(tables);
        let mut served = self.served.lock().await;
        // A pod whose network was torn down: its listeners went with its namespace, and a new
        // sandbox (with its address, perhaps) must get its own.
        let forgotten: HashSet<String> = std::mem::take(&mut *self.forgotten.lock().unwrap_or_else(|e| e.into_inner()));
        served.retain(|key, s| {
            let keep = !forgotten.contains(&key.0);
            if !keep {
                s.task.abort();
            }
            keep
        });
        if self.stale {
            let wanted_pods: HashSet<&String> = wanted.iter().map(|w| &w.uid).collect();
            let others: Vec<String> = local.iter().filter(|uid| !wanted_pods.contains(uid)).cloned().collect();
            self.clear_stale(&others).await;
        }
        let mut by_pod: BTreeMap<String, Vec<Wanted>> = BTreeMap::new();
        for w in wanted.iter().filter(|w| !served.contains_key(&(w.uid.clone(), w.ip, w.port))) {
            by_pod.entry(w.uid.clone()).or_default().push(w.clone());
        }
        let mut failed = Vec::new();
        for (uid, ports) in by_pod {
            let listeners = match self.listen(&uid, &ports).await {
                Ok(listeners) => listeners,
                Err(e) => {
                    failed.extend(ports.iter().map(|w| ((w.ip, w.port), e.clone())));
                    continue;
                }
            };
            for (w, listener) in ports.iter().zip(listeners) {
                let proxy_port = match listener.local_addr() {
                    Ok(addr) => addr.port(),
                    Err(e) => {
                        failed.push(((w.ip, w.port), e.to_string()));
                        continue;
                    }
                };
                let task = tokio::spawn(self.clone().accept(listener, w.ip, w.port));
                if let Err(e) = self.redirect().set(w.ip, w.port, proxy_port, self.gateway) {
                    task.abort();
                    failed.push(((w.ip, w.port), e.to_string()));
                    continue;
                }
                served.insert((w.uid.clone(), w.ip, w.port), Served { task });
            }
        }
        failed
    }

    /// Stops serving what is not in `wanted`: those connections go straight to their pods.
    pub async fn retire(&self, wanted: &[Wanted]) {
        let mut served = self.served.lock().await;
        let keep: HashSet<(String, Ipv4Addr, u16)> = wanted.iter().map(|w| (w.uid.clone(), w.ip, w.port)).collect();
        let gone: Vec<(String, Ipv4Addr, u16)> = served.keys().filter(|k| !keep.contains(*k)).cloned().collect();
        for key in gone {
            // Another pod may have the address now, and its own entry.
            let taken = keep.iter().any(|(_, ip, port)| (*ip, *port) == (key.1, key.2));
            if !taken {
                if let Err(e) = self.redirect().remove(key.1, key.2) {
                    tracing::warn!(pod = %key.1, port = key.2, error = %e, "removing an L7 redirect");
                }
            }
            if let Some(s) = served.remove(&key) {
                s.task.abort();
            }
        }
    }

    /// Listening sockets for `ports` in the pod's namespace, with the redirect on its eth0.
    async fn listen(self: &Arc<Self>, uid: &str, ports: &[Wanted]) -> Result<Vec<tokio::net::TcpListener>, String> {
        let attach = !self.attached.lock().unwrap_or_else(|e| e.into_inner()).contains(uid);
        let (this, count) = (self.clone(), ports.len());
        let netns = ports.first().map(|w| w.netns.clone()).unwrap_or_else(|| netns_name(uid));
        let made = in_netns(&netns, move || {
            Ok((|| -> Result<Vec<std::net::TcpListener>, String> {
                if attach {
                    this.redirect().attach_here(POD_INTERFACE).map_err(|e| e.to_string())?;
                    // The proxy closes first, so its side of each connection would wait in
                    // TIME_WAIT; a client's next SYN from the same port is handed to the proxy's
                    // listener past that socket, which then cannot take the connection, and the
                    // client stalls until TIME_WAIT ends. The pod's namespace keeps none.
                    std::fs::write("/proc/sys/net/ipv4/tcp_max_tw_buckets", "0").map_err(|e| format!("turning TIME_WAIT off in the pod: {e}"))?;
                }
                (0..count)
                    .map(|_| {
                        let listener = std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| format!("listening in the pod: {e}"))?;
                        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
                        Ok(listener)
                    })
                    .collect()
            })())
        })
        .await
        .map_err(|e| e.to_string())??;
        self.attached.lock().unwrap_or_else(|e| e.into_inner()).insert(uid.to_string());
        made.into_iter().map(|l| tokio::net::TcpListener::from_std(l).map_err(|e| e.to_string())).collect()
    }

    /// Takes an earlier agent's redirect off the pods in `local` (which need none now) this one
    /// has not attached its own to, once per pod. Runs under the `served` lock, so no attach of
    /// ours races it; a pod that needs a redirect has the earlier one replaced by its own.
    async fn clear_stale(&self, local: &[String]) {
        let unchecked: Vec<String> = {
            let attached = self.attached.lock().unwrap_or_else(|e| e.into_inner());
            let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
            local.iter().filter(|uid| !attached.contains(*uid) && checked.insert((*uid).clone())).cloned().collect()
        };
        let clearing = unchecked.iter().map(|uid| async move {
            in_netns(&netns_name(uid), || {
                Redirect::detach_here(POD_INTERFACE);
                Ok(())
            })
            .await
        });
        for (uid, outcome) in unchecked.iter().zip(futures::future::join_all(clearing).await) {
            if let Err(e) = outcome {
                tracing::warn!(pod = uid, error = %e, "an earlier agent's L7 redirect could not be looked for; trying again");
                self.checked.lock().unwrap_or_else(|e| e.into_inner()).remove(uid);
            }
        }
    }

    /// Forgets a pod whose namespace is gone (its eth0 took the program along).
    pub fn forget(&self, uid: &str) {
        self.attached.lock().unwrap_or_else(|e| e.into_inner()).remove(uid);
        self.checked.lock().unwrap_or_else(|e| e.into_inner()).remove(uid);
        self.forgotten.lock().unwrap_or_else(|e| e.into_inner()).insert(uid.to_string());
    }

    async fn accept(self: Arc<Self>, listener: tokio::net::TcpListener, pod: Ipv4Addr, port: u16) {
        loop {
            match listener.accept().await {
                Ok((stream, SocketAddr::V4(peer))) => {
                    tokio::spawn(self.clone().connection(stream, peer, SocketAddrV4::new(pod, port)));
                }
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(%pod, port, error = %e, "the HTTP proxy could not accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Serves one client connection; its requests go to the server on one connection of its
    /// own, made at the first allowed request.
    async fn connection(self: Arc<Self>, stream: tokio::net::TcpStream, peer: SocketAddrV4, pod: SocketAddrV4) {
        let upstream: Arc<tokio::sync::Mutex<Option<SendRequest<Incoming>>>> = Arc::default();
        let service = hyper::service::service_fn(move |request| {
            let (this, upstream) = (self.clone(), upstream.clone());
            async move { Ok::<_, Infallible>(this.request(request, peer, pod, &upstream).await) }
        });
        if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
            tracing::debug!(%peer, %pod, error = %e, "an HTTP connection through the proxy ended");
        }
    }

    async fn request(
        &self,
        request: hyper::Request<Incoming>,
        peer: SocketAddrV4,
        pod: SocketAddrV4,
        upstream: &tokio::sync::Mutex<Option<SendRequest<Incoming>>>,
    ) -> hyper::Response<ProxyBody> {
        let started = Instant::now();
        let time = api::jiff::Timestamp::now();
        let tables = self.tables();
        let (local, client) = (tables.identity(*pod.ip()), tables.identity(*peer.ip()));
        let host_header = request
            .headers()
            .get(hyper::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| request.uri().authority().map(|a| a.to_string()));
        let host = host_header.as_deref().map(without_port).unwrap_or("");
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in request.headers() {
            headers.entry(name.as_str().to_string()).or_default().push(String::from_utf8_lossy(value.as_bytes()).into_owned());
        }
        let method = request.method().as_str().to_string();
        let url = request.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
        let asked = Request { method: &method, path: request.uri().path(), host, headers: &headers };
        // A path the server could read as another than the rules saw (`/public/../admin`), or
        // two Host headers, is refused outright: the rules allow only, so a request that cannot
        // be judged for sure is not passed on.
        let unclear = ambiguous_path(asked.path) || request.headers().get_all(hyper::header::HOST).iter().count() > 1;
        let allowed = !unclear && tables.allows(local, pod.port(), client, &asked);
        let response = if unclear {
            plain(hyper::StatusCode::BAD_REQUEST, "Bad request: ambiguous path or host\n")
        } else if allowed {
            match forward(request, pod, upstream).await {
                Ok(response) => response.map(|body| body.boxed()),
                Err(e) => {
                    tracing::debug!(%pod, error = %e, "the proxy could not reach the pod's server");
                    plain(hyper::StatusCode::BAD_GATEWAY, "Bad gateway\n")
                }
            }
        } else {
            plain(hyper::StatusCode::FORBIDDEN, "Access denied\n")
        };
        let l7 = api::flow::L7 {
            latency_ns: u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
            http: api::flow::HttpFlow { method, url, host: host_header, code: response.status().as_u16() },
        };
        let _ = self.observed.send(Observed { time, source: peer, destination: pod, source_identity: client, destination_identity: local, allowed, l7 });
        response
    }
}

/// Passes `request` on to the pod's server and returns its answer.
async fn forward(
    request: hyper::Request<Incoming>,
    pod: SocketAddrV4,
    upstream: &tokio::sync::Mutex<Option<SendRequest<Incoming>>>,
) -> Result<hyper::Response<Incoming>, String> {
    let mut sender = upstream.lock().await;
    if sender.as_ref().is_none_or(|s| s.is_closed()) {
        let stream = tokio::net::TcpStream::connect(pod).await.map_err(|e| e.to_string())?;
        let (send, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        *sender = Some(send);
    }
    let Some(send) = sender.as_mut() else { return Err("no connection to the server".into()) };
    send.ready().await.map_err(|e| e.to_string())?;
    send.send_request(request).await.map_err(|e| e.to_string())
}

fn plain(status: hyper::StatusCode, text: &'static str) -> hyper::Response<ProxyBody> {
    let mut response = hyper::Response::new(Full::new(Bytes::from_static(text.as_bytes())).map_err(|never| match never {}).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain"));
    response
}

/// Whether `path` has a dot segment, an empty segment, a backslash, or an encoded dot, slash
/// or backslash: forms a server may resolve to a path other than the one matched.
fn ambiguous_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.contains('\\')
        || ["%2e", "%2f", "%5c"].iter().any(|encoded| lower.contains(encoded))
        || path
            .split('/')
            .skip(1)
            .enumerate()
            .any(|(i, segment)| segment == "." || segment == ".." || (segment.is_empty() && i + 1 < path.split('/').count() - 1))
}

/// A Host header without its port (`[::1]:80` → `[::1]`).
fn without_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.ends_with(':') => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests;
