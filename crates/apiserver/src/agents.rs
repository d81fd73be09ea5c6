//! What the API server fetches from node agents, as kube-apiserver proxies to the kubelet:
//! `pods/{name}/log` from the agent of the pod's node, and the flows of each node's flow log.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use axum::body::Body;
use futures::TryStreamExt;

use crate::error::ApiError;
use crate::handlers::NodeAgents;
use crate::nodepki::NodePki;

/// Reaches node agents' endpoints over mutual TLS: the agent must present a serving
/// certificate the node CA issued for the node's own name, and the proxy presents the API
/// server's client certificate, which agents require.
pub struct AgentProxy {
    ca: reqwest::Certificate,
    identity: reqwest::Identity,
    /// One client per node, for the address it was built for.
    clients: Mutex<HashMap<String, (SocketAddr, reqwest::Client)>>,
}

impl AgentProxy {
    /// A proxy trusting the node CA of `pki` and presenting its API server client certificate.
    pub fn new(pki: &NodePki) -> Result<AgentProxy, ApiError> {
        let internal = |e: reqwest::Error| ApiError::Internal(format!("building the agent proxy client: {e}"));
        let ca = reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).map_err(internal)?;
        let identity = reqwest::Identity::from_pem(format!("{}{}", pki.client_cert_pem, pki.client_key_pem).as_bytes()).map_err(internal)?;
        Ok(AgentProxy { ca, identity, clients: Mutex::default() })
    }

    /// A client that reaches `node` at `addr` and accepts only the certificate issued for it:
    /// the URL names the node, and the name resolves to its address.
    fn client(&self, node: &str, addr: SocketAddr) -> Result<reqwest::Client, ApiError> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, client)) = clients.get(node) {
            if *at == addr {
                return Ok(client.clone());
            }
        }
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(self.ca.clone())
            .identity(self.identity.clone())
            .resolve(node, addr)
            .no_proxy()
            .build()
            .map_err(|e| ApiError::Internal(format!("building the agent proxy client: {e}")))?;
        clients.insert(node.to_string(), (addr, client.clone()));
        Ok(client)
    }

    /// GETs `path` (with `params`) from the agent of `node`: its answer as a byte stream, or
    /// the agent's refusal as the error.
    async fn get(&self, node: &api::Node, path: &str, params: &[(&str, String)]) -> Result<Body, ApiError> {
        let node_name = node.metadata.name.clone().unwrap_or_default();
        let status = node.status.clone().unwrap_or_default();
        let ip = status.addresses.iter().flatten().find(|a| a.type_ == "InternalIP").map(|a| a.address.clone());
        let port = status.daemon_endpoints.and_then(|d| d.kubelet_endpoint).map(|k| k.port);
        let (Some(ip), Some(port)) = (ip, port) else {
            return Err(ApiError::BadRequest(format!("node {node_name} does not report an address for its agent")));
        };
        let ip: IpAddr = ip.parse().map_err(|_| ApiError::BadRequest(format!("node {node_name} reports an invalid address {ip:?}")))?;
        let port = u16::try_from(port).map_err(|_| ApiError::BadRequest(format!("node {node_name} reports an invalid agent port {port}")))?;
        let response = self
            .client(&node_name, SocketAddr::new(ip, port))?
            .get(format!("https://{node_name}:{port}{path}"))
            .query(params)
            .send()
            .await
            .map_err(|e| ApiError::Internal(format!("reaching the agent of node {node_name}: {e}")))?;
        if !response.status().is_success() {
            let code = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            return Err(match code {
                400 | 404 => ApiError::BadRequest(text),
                _ => ApiError::Internal(format!("the agent of node {node_name} answered {code}: {text}")),
            });
        }
        Ok(Body::from_stream(response.bytes_stream().map_err(std::io::Error::other)))
    }
}

#[async_trait::async_trait]
impl NodeAgents for AgentProxy {
    async fn logs(&self, node: &api::Node, pod: &api::Pod, query: &HashMap<String, String>) -> Result<Body, ApiError> {
        let spec = pod.spec.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let container = match query.get("container") {
            Some(c) if spec.containers.iter().chain(spec.init_containers.iter().flatten()).any(|x| &x.name == c) => c.clone(),
            Some(c) => return Err(ApiError::BadRequest(format!("container {c} is not valid for pod {name}"))),
            None if spec.containers.len() == 1 => spec.containers[0].name.clone(),
            None => {
                let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
                return Err(ApiError::BadRequest(format!("a container name must be specified for pod {name}, choose one of: [{}]", names.join(" "))));
            }
        };
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let params: Vec<(&str, String)> = ["follow", "previous", "tailLines"].into_iter().filter_map(|key| Some((key, query.get(key)?.clone()))).collect();
        self.get(node, &format!("/containerLogs/{ns}/{name}/{container}"), &params).await
    }

    async fn flows(&self, node: &api::Node, filter: &api::flow::FlowFilter) -> Result<Body, ApiError> {
        self.get(node, "/flows", &filter.to_query()).await
    }
}
