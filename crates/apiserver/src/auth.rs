//! Authentication by bearer token and authorization of what each kind of user may do.

use std::collections::HashMap;
use std::path::Path;
use std::sync::RwLock;

use axum::http::HeaderMap;
use rand::RngCore;

use crate::error::ApiError;
use crate::request::RequestInfo;

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    /// `admin`, `system:node:<node>`…
    pub name: String,
    /// `system:masters`, `system:nodes`…
    pub groups: Vec<String>,
}

/// The group whose members may do everything.
pub const ADMIN_GROUP: &str = "system:masters";
/// The group of node agents.
pub const NODES_GROUP: &str = "system:nodes";

/// Maps bearer tokens to users. Tokens are kept only as SHA-256 digests so the map lookup
/// does not compare secrets byte by byte.
#[derive(Default)]
pub struct Authenticator {
    tokens: RwLock<HashMap<[u8; 32], UserInfo>>,
}

fn digest(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// Why a token file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("token file {path}: {message}")]
pub struct TokenFileError {
    /// The file.
    pub path: String,
    /// What is wrong, with the line number.
    pub message: String,
}

impl Authenticator {
    /// Accepts `token` as `user`.
    pub fn add(&self, token: &str, user: UserInfo) {
        self.tokens.write().unwrap_or_else(|e| e.into_inner()).insert(digest(token), user);
    }

    /// Reads a static token file: one `token,user,uid,"group1,group2"` per line, as
    /// kube-apiserver's `--token-auth-file`.
    pub fn load_file(&self, path: &Path) -> Result<(), TokenFileError> {
        let err = |message: String| TokenFileError { path: path.display().to_string(), message };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#')) {
            let mut fields = line.splitn(4, ',');
            let (Some(token), Some(user)) = (fields.next(), fields.next()) else {
                return Err(err(format!("line {}: expected token,user,uid,\"groups\"", i + 1)));
            };
            let _uid = fields.next();
            let groups = fields.next().unwrap_or("").trim_matches('"').split(',').filter(|g| !g.is_empty()).map(str::to_string).collect();
            self.add(token.trim(), UserInfo { name: user.trim().to_string(), groups });
        }
        Ok(())
    }

    /// The user of a request's `Authorization: Bearer` header; 401 otherwise.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<UserInfo, ApiError> {
        let header = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::Unauthorized("no bearer token; pass one in the Authorization header (flotilla reads it from the kubeconfig)".into()))?;
        let token = header.strip_prefix("Bearer ").map(str::trim).ok_or_else(|| ApiError::Unauthorized("expected `Authorization: Bearer <token>`".into()))?;
        self.tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&digest(token))
            .cloned()
            .ok_or_else(|| ApiError::Unauthorized("the token is not known to this server".into()))
    }
}

/// A new random token: 32 bytes, hex.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decides whether `user` may do what `info` says. Admins may do everything. Node agents (a
/// per-node identity, `system:node:<name>`) may read cluster state (but Secrets and ConfigMaps
/// only one by one), manage their own Node and Lease, report pod status, finish pod deletion
/// and record Events; [`crate::noderestriction`] then narrows that to what is theirs. The join
/// token may only join (`POST /join`). Anyone else may do nothing (RBAC comes later).
pub fn authorize(user: &UserInfo, info: &RequestInfo) -> Result<(), ApiError> {
    if user.groups.iter().any(|g| g == ADMIN_GROUP) {
        return Ok(());
    }
    let forbidden = || {
        ApiError::Forbidden(format!(
            "User \"{}\" cannot {} resource \"{}{}\"{}",
            user.name,
            info.verb,
            info.resource,
            info.subresource.as_deref().map(|s| format!("/{s}")).unwrap_or_default(),
            info.namespace.as_deref().map(|n| format!(" in the namespace \"{n}\"")).unwrap_or_default()
        ))
    };
    let Some(own_node) = crate::noderestriction::node_of(user) else {
        return Err(forbidden());
    };
    let may_write_node = |name: Option<&str>| name.is_none_or(|n| n == own_node);
    let read = matches!(info.verb.as_str(), "get" | "list" | "watch");
    let allowed = match (info.resource.as_str(), info.subresource.as_deref()) {
        ("secrets" | "configmaps", None) => info.verb == "get",
        (_, None) if read => true,
        ("nodes", _) => matches!(info.verb.as_str(), "create" | "update" | "patch" | "get") && may_write_node(info.name.as_deref()),
        ("pods", Some("status")) => matches!(info.verb.as_str(), "update" | "patch" | "get"),
        ("pods", None) => info.verb == "delete",
        ("leases", None) => info.namespace.as_deref() == Some("kube-node-lease"),
        ("events", None) => matches!(info.verb.as_str(), "create" | "update" | "patch"),
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(forbidden())
    }
}

/// Writes `text` to `path` with mode 0600 (secrets: tokens, keys).
pub fn write_secret(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> UserInfo {
        UserInfo { name: format!("system:node:{name}"), groups: vec![NODES_GROUP.into()] }
    }

    fn info(verb: &str, resource: &str, name: Option<&str>, sub: Option<&str>) -> RequestInfo {
        RequestInfo { verb: verb.into(), resource: resource.into(), name: name.map(Into::into), subresource: sub.map(Into::into), ..Default::default() }
    }

    #[test]
    fn tokens_authenticate() {
        let auth = Authenticator::default();
        auth.add("s3cret", UserInfo { name: "admin".into(), groups: vec![ADMIN_GROUP.into()] });
        let mut headers = HeaderMap::new();
        assert!(matches!(auth.authenticate(&headers), Err(ApiError::Unauthorized(_))));
        headers.insert("authorization", "Bearer wrong".parse().unwrap());
        assert!(matches!(auth.authenticate(&headers), Err(ApiError::Unauthorized(_))));
        headers.insert("authorization", "Bearer s3cret".parse().unwrap());
        assert_eq!(auth.authenticate(&headers).unwrap().name, "admin");
    }

    #[test]
    fn nodes_may_only_do_node_things() {
        let n = node("n1");
        assert!(authorize(&n, &info("watch", "pods", None, None)).is_ok());
        assert!(authorize(&n, &info("update", "pods", Some("p"), Some("status"))).is_ok());
        assert!(authorize(&n, &info("update", "nodes", Some("n1"), Some("status"))).is_ok());
        assert!(authorize(&n, &info("update", "nodes", Some("n2"), Some("status"))).is_err());
        assert!(authorize(&n, &info("create", "deployments", None, None)).is_err());
        assert!(authorize(&n, &info("update", "pods", Some("p"), None)).is_err());
        assert!(authorize(&n, &info("get", "secrets", Some("s"), None)).is_ok(), "one by one, narrowed by noderestriction");
        assert!(authorize(&n, &info("list", "secrets", None, None)).is_err());
        assert!(authorize(&n, &info("watch", "configmaps", None, None)).is_err());
        let nobody = UserInfo { name: "x".into(), groups: vec![] };
        assert!(matches!(authorize(&nobody, &info("get", "pods", Some("p"), None)), Err(ApiError::Forbidden(_))));
        let joiner = UserInfo { name: "system:bootstrap".into(), groups: vec![crate::join::BOOTSTRAP_GROUP.into()] };
        for (verb, resource) in [("get", "pods"), ("list", "nodes"), ("create", "nodes"), ("watch", "pods")] {
            assert!(authorize(&joiner, &info(verb, resource, None, None)).is_err(), "the join token may {verb} {resource}");
        }
        let shared = UserInfo { name: "system:node".into(), groups: vec![NODES_GROUP.into()] };
        assert!(authorize(&shared, &info("update", "nodes", Some("n2"), Some("status"))).is_err(), "only per-node identities act for nodes");
    }
}
