//! `pods/{name}/log`: proxied to the agent of the pod's node, as kube-apiserver proxies to the
//! kubelet.

use std::collections::HashMap;

use axum::body::Body;
use futures::TryStreamExt;

use crate::error::ApiError;
use crate::handlers::PodLogs;

/// Fetches logs from node agents' endpoints, authenticating with the node token.
pub struct NodeLogProxy {
    http: reqwest::Client,
    token: String,
}

impl NodeLogProxy {
    /// A proxy presenting `token` to agents. Agents serve self-signed certificates; their
    /// identity is not verified yet (the token is what they check).
    pub fn new(token: &str) -> Result<NodeLogProxy, ApiError> {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .danger_accept_invalid_certs(true)
            .no_proxy()
            .build()
            .map_err(|e| ApiError::Internal(format!("building the log proxy client: {e}")))?;
        Ok(NodeLogProxy { http, token: token.to_string() })
    }
}

#[async_trait::async_trait]
impl PodLogs for NodeLogProxy {
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
        let status = node.status.clone().unwrap_or_default();
        let ip = status.addresses.iter().flatten().find(|a| a.type_ == "InternalIP").map(|a| a.address.clone());
        let port = status.daemon_endpoints.and_then(|d| d.kubelet_endpoint).map(|k| k.port);
        let (Some(ip), Some(port)) = (ip, port) else {
            return Err(ApiError::BadRequest(format!("node {} does not report an address for its agent", node.metadata.name.as_deref().unwrap_or(""))));
        };
        let host = if ip.contains(':') { format!("[{ip}]") } else { ip };
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let url = format!("https://{host}:{port}/containerLogs/{ns}/{name}/{container}");
        let mut params: Vec<(&str, String)> = Vec::new();
        for key in ["follow", "previous", "tailLines"] {
            if let Some(v) = query.get(key) {
                params.push((key, v.clone()));
            }
        }
        let response = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .query(&params)
            .send()
            .await
            .map_err(|e| ApiError::Internal(format!("reaching the agent of node {}: {e}", node.metadata.name.as_deref().unwrap_or(""))))?;
        if !response.status().is_success() {
            let code = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            return Err(match code {
                400 | 404 => ApiError::BadRequest(text),
                _ => ApiError::Internal(format!("agent answered {code}: {text}")),
            });
        }
        Ok(Body::from_stream(response.bytes_stream().map_err(std::io::Error::other)))
    }
}
