//! Node identities: a machine holding the cluster's join token trades it for an identity of its
//! own (a per-node bearer token, and a serving certificate for its agent endpoint from the node
//! CA), bound to a node secret only that machine keeps, so another holder of the join token
//! cannot take over a name that is in use. The tokens are kept in the store as digests only,
//! so every API server of a multi-server cluster knows them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use store::{Store, StoreError};

use crate::auth::{generate_token, UserInfo, NODES_GROUP};
use crate::error::ApiError;
use crate::nodepki::NodePki;
use crate::registry::Registry;

/// The group of the shared join token, which may do nothing but join.
pub const BOOTSTRAP_GROUP: &str = "system:bootstrappers";

/// Where node identities are kept: outside `/registry/`, so no API path reaches them.
const RECORD_PREFIX: &str = "/flotilla/nodeidentities/";

/// How long a verified node token is trusted before the store is asked again (a token
/// replaced through another API server stops working within this time).
const CACHE_TTL: Duration = Duration::from_secs(30);

/// What a joining node sends to `POST /join`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinRequest {
    /// The Node name it will register.
    pub node_name: String,
    /// A random secret the machine generated once and keeps; a later join of the same name
    /// must present it again.
    pub node_secret: String,
    /// A PEM certificate request for its agent endpoint's serving certificate (optional:
    /// simulated nodes have no endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_csr: Option<String>,
}

/// What `POST /join` answers.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct JoinResponse {
    /// The node's own bearer token (`flnode:<node>:<secret>`).
    pub token: String,
    /// The signed serving certificate (PEM), when a request was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_certificate: Option<String>,
    /// The node CA (PEM): the agent accepts callers whose client certificate it signed.
    pub node_ca: String,
}

/// One node's identity as stored.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct IdentityRecord {
    token_sha256: String,
    secret_sha256: String,
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Parses a join request body, naming the field at fault.
pub fn parse_request(body: &[u8]) -> Result<JoinRequest, ApiError> {
    let request: JoinRequest = serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("join request: {e}")))?;
    if !api::validation::is_dns_subdomain(&request.node_name) {
        return Err(ApiError::BadRequest(format!("join request: nodeName: Invalid value: \"{}\": must be a lowercase RFC 1123 subdomain", request.node_name)));
    }
    if !(32..=256).contains(&request.node_secret.len()) || !request.node_secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::BadRequest("join request: nodeSecret: Invalid value: must be 32 to 256 printable characters".into()));
    }
    Ok(request)
}

/// Issues and checks node identities.
pub struct NodeIdentities {
    store: Arc<dyn Store>,
    pki: Arc<NodePki>,
    verified: Mutex<HashMap<[u8; 32], (UserInfo, Instant)>>,
}

fn backend(e: StoreError) -> ApiError {
    ApiError::Internal(format!("node identities: {e}"))
}

impl NodeIdentities {
    /// Identities kept in `store`, certificates signed by `pki`.
    pub fn new(store: Arc<dyn Store>, pki: Arc<NodePki>) -> NodeIdentities {
        NodeIdentities { store, pki, verified: Mutex::default() }
    }

    /// The node CA and API server client identity.
    pub fn pki(&self) -> &NodePki {
        &self.pki
    }

    /// Joins `request.node_name`: a new name, a name whose node secret matches, or a name whose
    /// Node object no longer exists gets a fresh token (the previous one stops working) and,
    /// when asked, a serving certificate. A name in use by another machine is refused.
    pub async fn join(&self, registry: &Registry, request: &JoinRequest) -> Result<JoinResponse, ApiError> {
        let name = &request.node_name;
        let key = format!("{RECORD_PREFIX}{name}");
        let existing = self.store.get(&key).await.map_err(backend)?;
        if let Some(kv) = &existing {
            let record: IdentityRecord = serde_json::from_slice(&kv.value).map_err(|e| ApiError::Internal(format!("node identity of {name}: {e}")))?;
            let same_machine = record.secret_sha256 == sha256_hex(&request.node_secret);
            let node_exists = match registry.get(api::ResourceType::of::<api::Node>(), None, name).await {
                Ok(_) => true,
                Err(ApiError::NotFound { .. }) => false,
                Err(e) => return Err(e),
            };
            if !same_machine && node_exists {
                return Err(ApiError::Forbidden(format!(
                    "node name \"{name}\" is in use by another machine (its node secret differs); pick another --node-name, or delete the Node (flotilla delete node {name}) to let this machine take the name"
                )));
            }
        }
        let serving_certificate = match &request.serving_csr {
            Some(csr) => Some(self.pki.sign_serving(csr, name).map_err(|e| ApiError::BadRequest(format!("join request: {e}")))?),
            None => None,
        };
        let token = format!("flnode:{name}:{}", generate_token());
        let record = IdentityRecord { token_sha256: sha256_hex(&token), secret_sha256: sha256_hex(&request.node_secret) };
        let value = serde_json::to_vec(&record).map_err(|e| ApiError::Internal(e.to_string()))?;
        let written = match &existing {
            Some(kv) => self.store.update(&key, value, kv.mod_revision).await,
            None => self.store.create(&key, value).await,
        };
        match written {
            Ok(_) => {}
            Err(StoreError::Conflict { .. } | StoreError::AlreadyExists { .. } | StoreError::NotFound { .. }) => {
                return Err(ApiError::Conflict { kind: "node identity".into(), name: name.clone() });
            }
            Err(e) => return Err(backend(e)),
        }
        let user = format!("system:node:{name}");
        self.verified.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, (u, _)| u.name != user);
        tracing::info!(node = %name, "node joined");
        Ok(JoinResponse { token, serving_certificate, node_ca: self.pki.ca_pem.clone() })
    }

    /// The node a `flnode:` token belongs to, when it is that node's current token.
    pub async fn authenticate(&self, token: &str) -> Option<UserInfo> {
        let name = token.strip_prefix("flnode:")?.rsplit_once(':')?.0;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((user, at)) = self.verified.lock().unwrap_or_else(|e| e.into_inner()).get(&digest) {
            if at.elapsed() < CACHE_TTL {
                return Some(user.clone());
            }
        }
        let kv = self.store.get(&format!("{RECORD_PREFIX}{name}")).await.ok()??;
        let record: IdentityRecord = serde_json::from_slice(&kv.value).ok()?;
        if record.token_sha256 != hex::encode(digest) {
            return None;
        }
        let user = UserInfo { name: format!("system:node:{name}"), groups: vec![NODES_GROUP.to_string()] };
        self.verified.lock().unwrap_or_else(|e| e.into_inner()).insert(digest, (user.clone(), Instant::now()));
        Some(user)
    }
}

#[cfg(test)]
mod tests;
