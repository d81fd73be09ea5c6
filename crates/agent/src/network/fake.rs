//! An in-memory [`Netlink`] that models namespaces, links, addresses and routes closely enough
//! to test idempotency and cleanup, and records every call.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use ipnet::Ipv4Net;

use super::netlink::{Netlink, Netns};
use super::NetworkError;

/// A link as the fake kernel sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FakeLink {
    /// `bridge` or `veth`.
    pub kind: &'static str,
    /// The bridge it is attached to.
    pub master: Option<String>,
    /// Whether it is up.
    pub up: bool,
    /// Its IPv4 addresses.
    pub addrs: Vec<Ipv4Net>,
    /// For a veth, the namespace (`None` = host) and name of the other end.
    pub peer: Option<(Option<String>, String)>,
}

#[derive(Default)]
struct State {
    netns: BTreeSet<String>,
    /// Keyed by (namespace, `None` = host; link name).
    links: BTreeMap<(Option<String>, String), FakeLink>,
    routes: BTreeMap<Option<String>, Ipv4Addr>,
    forwarding: bool,
    calls: Vec<String>,
    fail_on: Option<String>,
}

/// The recording fake.
#[derive(Default)]
pub struct FakeNetlink {
    state: Mutex<State>,
}

fn ns_key(ns: Netns<'_>) -> Option<String> {
    match ns {
        Netns::Host => None,
        Netns::Named(name) => Some(name.to_string()),
    }
}

impl FakeNetlink {
    /// An empty host: no namespaces, no links.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call so far, as `method args`.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// Named namespaces that exist.
    pub fn netns(&self) -> Vec<String> {
        self.lock().netns.iter().cloned().collect()
    }

    /// A link, if it exists.
    pub fn link(&self, ns: Netns<'_>, name: &str) -> Option<FakeLink> {
        self.lock().links.get(&(ns_key(ns), name.to_string())).cloned()
    }

    /// Names of the links in a namespace.
    pub fn links(&self, ns: Netns<'_>) -> Vec<String> {
        let key = ns_key(ns);
        self.lock().links.keys().filter(|(n, _)| *n == key).map(|(_, l)| l.clone()).collect()
    }

    /// The default route of a namespace.
    pub fn default_route(&self, ns: Netns<'_>) -> Option<Ipv4Addr> {
        self.lock().routes.get(&ns_key(ns)).copied()
    }

    /// Whether forwarding was turned on.
    pub fn forwarding(&self) -> bool {
        self.lock().forwarding
    }

    /// Makes the next call whose text starts with `prefix` fail (once).
    pub fn fail_next(&self, prefix: &str) {
        self.lock().fail_on = Some(prefix.to_string());
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn call(&self, text: String) -> Result<MutexGuard<'_, State>, NetworkError> {
        let mut state = self.lock();
        state.calls.push(text.clone());
        if state.fail_on.as_deref().is_some_and(|prefix| text.starts_with(prefix)) {
            state.fail_on = None;
            return Err(fail(&text, "injected failure"));
        }
        Ok(state)
    }
}

fn fail(command: &str, stderr: &str) -> NetworkError {
    NetworkError::Command { command: command.to_string(), status: "exit status: 2".into(), stderr: stderr.into() }
}

impl State {
    fn link_mut(&mut self, ns: Option<String>, name: &str, call: &str) -> Result<&mut FakeLink, NetworkError> {
        self.links.get_mut(&(ns, name.to_string())).ok_or_else(|| fail(call, "Cannot find device"))
    }

    fn remove_link(&mut self, ns: Option<String>, name: &str) {
        if let Some(link) = self.links.remove(&(ns, name.to_string())) {
            if let Some((peer_ns, peer)) = link.peer {
                self.links.remove(&(peer_ns, peer));
            }
        }
    }
}

#[async_trait]
impl Netlink for FakeNetlink {
    async fn netns_exists(&self, name: &str) -> Result<bool, NetworkError> {
        Ok(self.call(format!("netns_exists {name}"))?.netns.contains(name))
    }

    async fn add_netns(&self, name: &str) -> Result<(), NetworkError> {
        let call = format!("add_netns {name}");
        let mut state = self.call(call.clone())?;
        if !state.netns.insert(name.to_string()) {
            return Err(fail(&call, "File exists"));
        }
        state.links.insert((Some(name.to_string()), "lo".into()), FakeLink { kind: "loopback", ..Default::default() });
        Ok(())
    }

    async fn delete_netns(&self, name: &str) -> Result<(), NetworkError> {
        let call = format!("delete_netns {name}");
        let mut state = self.call(call.clone())?;
        if !state.netns.remove(name) {
            return Err(fail(&call, "No such file or directory"));
        }
        let inside: Vec<String> = state.links.keys().filter(|(ns, _)| ns.as_deref() == Some(name)).map(|(_, l)| l.clone()).collect();
        for link in inside {
            state.remove_link(Some(name.to_string()), &link);
        }
        state.routes.remove(&Some(name.to_string()));
        Ok(())
    }

    async fn link_exists(&self, ns: Netns<'_>, link: &str) -> Result<bool, NetworkError> {
        let state = self.call(format!("link_exists {ns:?} {link}"))?;
        Ok(state.links.contains_key(&(ns_key(ns), link.to_string())))
    }

    async fn add_bridge(&self, name: &str) -> Result<(), NetworkError> {
        let call = format!("add_bridge {name}");
        let mut state = self.call(call.clone())?;
        if state.links.contains_key(&(None, name.to_string())) {
            return Err(fail(&call, "File exists"));
        }
        state.links.insert((None, name.to_string()), FakeLink { kind: "bridge", ..Default::default() });
        Ok(())
    }

    async fn add_veth(&self, host: &str, peer: &str, peer_netns: &str) -> Result<(), NetworkError> {
        let call = format!("add_veth {host} {peer} {peer_netns}");
        let mut state = self.call(call.clone())?;
        let ns = Some(peer_netns.to_string());
        if !state.netns.contains(peer_netns) {
            return Err(fail(&call, "Invalid \"netns\" value"));
        }
        if state.links.contains_key(&(None, host.to_string())) || state.links.contains_key(&(ns.clone(), peer.to_string())) {
            return Err(fail(&call, "File exists"));
        }
        let host_end = FakeLink { kind: "veth", peer: Some((ns.clone(), peer.to_string())), ..Default::default() };
        let peer_end = FakeLink { kind: "veth", peer: Some((None, host.to_string())), ..Default::default() };
        state.links.insert((None, host.to_string()), host_end);
        state.links.insert((ns, peer.to_string()), peer_end);
        Ok(())
    }

    async fn delete_link(&self, link: &str) -> Result<(), NetworkError> {
        let call = format!("delete_link {link}");
        let mut state = self.call(call.clone())?;
        state.link_mut(None, link, &call)?;
        state.remove_link(None, link);
        Ok(())
    }

    async fn set_master(&self, link: &str, bridge: &str) -> Result<(), NetworkError> {
        let call = format!("set_master {link} {bridge}");
        let mut state = self.call(call.clone())?;
        state.link_mut(None, bridge, &call)?;
        state.link_mut(None, link, &call)?.master = Some(bridge.to_string());
        Ok(())
    }

    async fn set_up(&self, ns: Netns<'_>, link: &str) -> Result<(), NetworkError> {
        let call = format!("set_up {ns:?} {link}");
        self.call(call.clone())?.link_mut(ns_key(ns), link, &call)?.up = true;
        Ok(())
    }

    async fn addresses(&self, ns: Netns<'_>, link: &str) -> Result<Vec<Ipv4Net>, NetworkError> {
        let call = format!("addresses {ns:?} {link}");
        Ok(self.call(call.clone())?.link_mut(ns_key(ns), link, &call)?.addrs.clone())
    }

    async fn add_address(&self, ns: Netns<'_>, link: &str, addr: Ipv4Net) -> Result<(), NetworkError> {
        let call = format!("add_address {ns:?} {link} {addr}");
        let mut state = self.call(call.clone())?;
        let target = state.link_mut(ns_key(ns), link, &call)?;
        if target.addrs.contains(&addr) {
            return Err(fail(&call, "RTNETLINK answers: File exists"));
        }
        target.addrs.push(addr);
        Ok(())
    }

    async fn replace_default_route(&self, ns: Netns<'_>, gateway: Ipv4Addr) -> Result<(), NetworkError> {
        let call = format!("replace_default_route {ns:?} {gateway}");
        let mut state = self.call(call.clone())?;
        let key = ns_key(ns);
        let reachable = state.links.iter().any(|((n, _), link)| *n == key && link.up && link.addrs.iter().any(|a| a.contains(&gateway)));
        if !reachable {
            return Err(fail(&call, "Error: Nexthop has invalid gateway."));
        }
        state.routes.insert(key, gateway);
        Ok(())
    }

    async fn enable_ipv4_forwarding(&self) -> Result<(), NetworkError> {
        self.call("enable_ipv4_forwarding".into())?.forwarding = true;
        Ok(())
    }
}
