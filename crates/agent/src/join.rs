//! Joining the cluster: on its first start a node trades the shared join token for an identity
//! of its own (a bearer token that acts for this node only, and a serving certificate for its
//! endpoint from the node CA), bound to a node secret it generates and keeps. The identity is
//! kept under the agent's data directory (secrets with mode 0600) and used on later starts; a
//! token the server no longer accepts is replaced by joining again with the same secret.

use std::path::{Path, PathBuf};

use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::PathError;

/// What a node is to the control plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeIdentity {
    /// The node's own bearer token.
    pub token: String,
    /// Its endpoint's serving certificate (PEM), issued by the node CA for its name.
    pub serving_cert_pem: String,
    /// The certificate's private key (PEM), made on this node.
    pub serving_key_pem: String,
    /// The node CA (PEM): callers of the endpoint must present a client certificate it signed.
    pub node_ca_pem: String,
}

/// Why the node could not join.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// A file of the identity could not be read or written.
    #[error(transparent)]
    Io(#[from] PathError),
    /// The server could not be reached.
    #[error("joining {server}: {message}")]
    Unreachable {
        /// The API server.
        server: String,
        /// What went wrong.
        message: String,
    },
    /// The server refused the join.
    #[error("the server refused to let node \"{node}\" join ({status}): {message}")]
    Refused {
        /// The node.
        node: String,
        /// The HTTP status.
        status: u16,
        /// The server's explanation.
        message: String,
    },
    /// A certificate request could not be made.
    #[error("making the serving certificate request: {0}")]
    Certificate(#[from] rcgen::Error),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JoinRequest<'a> {
    node_name: &'a str,
    node_secret: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    serving_csr: Option<String>,
}

/// What the server answers to a join.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Joined {
    /// The node's own bearer token.
    pub token: String,
    /// The signed serving certificate, when one was asked for.
    #[serde(default)]
    pub serving_certificate: Option<String>,
    /// The node CA.
    pub node_ca: String,
}

/// The API server a node joins, and how it trusts it.
#[derive(Clone, Debug)]
pub struct JoinTarget<'a> {
    /// Its URL.
    pub server: &'a str,
    /// The cluster CA (PEM), already checked against the join token.
    pub ca_pem: &'a str,
    /// The shared join token.
    pub join_token: &'a str,
}

fn http(target: &JoinTarget<'_>) -> Result<reqwest::Client, JoinError> {
    let unreachable = |message: String| JoinError::Unreachable { server: target.server.to_string(), message };
    let ca = reqwest::Certificate::from_pem(target.ca_pem.as_bytes()).map_err(|e| unreachable(format!("the cluster CA: {e}")))?;
    reqwest::Client::builder().use_rustls_tls().tls_built_in_root_certs(false).add_root_certificate(ca).build().map_err(|e| unreachable(e.to_string()))
}

/// Joins as `node` with `secret`, asking for a serving certificate when `csr` is given.
pub async fn join(target: &JoinTarget<'_>, node: &str, secret: &str, csr: Option<String>) -> Result<Joined, JoinError> {
    let unreachable = |e: reqwest::Error| JoinError::Unreachable { server: target.server.to_string(), message: e.to_string() };
    let response = http(target)?
        .post(format!("{}/join", target.server))
        .bearer_auth(target.join_token)
        .json(&JoinRequest { node_name: node, node_secret: secret, serving_csr: csr })
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status().as_u16();
    if status != 200 {
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&body).ok().and_then(|v| v["message"].as_str().map(str::to_string)).unwrap_or(body);
        return Err(JoinError::Refused { node: node.to_string(), status, message });
    }
    response.json().await.map_err(unreachable)
}

/// A new random secret: 32 bytes, hex.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A private key and a certificate request for `node`'s serving certificate.
fn serving_request(node: &str) -> Result<(String, String), rcgen::Error> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec![node.to_string()])?;
    params.distinguished_name.push(rcgen::DnType::CommonName, format!("system:node:{node}"));
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

struct Files {
    dir: PathBuf,
}

impl Files {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn read(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.path(name)).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
    }

    fn write(&self, name: &str, text: &str, secret: bool) -> Result<(), PathError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.path(name);
        let io = |action, source| PathError { action, path: path.clone(), source };
        std::fs::create_dir_all(&self.dir).map_err(|source| PathError { action: "create", path: self.dir.clone(), source })?;
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(if secret { 0o600 } else { 0o644 })
            .open(&tmp)
            .map_err(|e| io("create", e))?;
        file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(|e| io("write", e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io("rename", e))
    }
}

/// Whether the server takes `token` as this node (a 401 means it does not).
async fn accepted(target: &JoinTarget<'_>, node: &str, token: &str) -> Result<bool, JoinError> {
    let url = format!("{}/api/v1/namespaces/kube-node-lease/leases/{node}", target.server);
    let response = http(target)?
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| JoinError::Unreachable { server: target.server.to_string(), message: e.to_string() })?;
    Ok(response.status().as_u16() != 401)
}

/// The identity of `node` kept in `dir`, or a new one from joining `target`.
pub async fn identity(target: &JoinTarget<'_>, node: &str, dir: &Path) -> Result<NodeIdentity, JoinError> {
    let files = Files { dir: dir.to_path_buf() };
    let secret = match files.read("node-secret") {
        Some(secret) => secret,
        None => {
            let secret = new_secret();
            files.write("node-secret", &secret, true)?;
            secret
        }
    };
    let saved = (files.read("node-token"), files.read("serving.crt"), files.read("serving.key"), files.read("node-ca.crt"));
    if let (Some(token), Some(cert), Some(key), Some(ca)) = saved {
        let ours = token.strip_prefix("flnode:").and_then(|t| t.rsplit_once(':')).is_some_and(|(name, _)| name == node);
        if ours && accepted(target, node, &token).await? {
            return Ok(NodeIdentity { token, serving_cert_pem: format!("{cert}\n"), serving_key_pem: format!("{key}\n"), node_ca_pem: format!("{ca}\n") });
        }
        tracing::info!(node, "the saved node identity is not accepted; joining again");
    }
    let (key, csr) = serving_request(node)?;
    let joined = join(target, node, &secret, Some(csr)).await?;
    let cert = joined.serving_certificate.ok_or_else(|| JoinError::Refused {
        node: node.to_string(),
        status: 200,
        message: "the server issued no serving certificate".into(),
    })?;
    files.write("serving.key", &key, true)?;
    files.write("serving.crt", &cert, false)?;
    files.write("node-ca.crt", &joined.node_ca, false)?;
    files.write("node-token", &joined.token, true)?;
    tracing::info!(node, dir = %dir.display(), "joined the cluster with a node identity of its own");
    Ok(NodeIdentity { token: joined.token, serving_cert_pem: cert, serving_key_pem: key, node_ca_pem: joined.node_ca })
}
