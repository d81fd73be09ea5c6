//! Reads what a request is about from its path and method, as kube-apiserver's request-info
//! resolver does: group, version, namespace, resource, name, subresource and verb.

use axum::http::Method;

/// What a request under `/api` or `/apis` addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// API group; empty for core.
    pub group: String,
    /// API version; empty for discovery of `/api` or `/apis`.
    pub version: String,
    /// Namespace, when the path has one.
    pub namespace: Option<String>,
    /// The resource plural; empty for discovery paths.
    pub resource: String,
    /// The object name, when the path addresses one object.
    pub name: Option<String>,
    /// `status`, `log`, `scale`…
    pub subresource: Option<String>,
    /// get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
}

/// Parses `path` (without query) and the method; `watch` is the `?watch=` flag.
pub fn resolve(method: &Method, path: &str, watch: bool) -> Option<RequestInfo> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').filter(|p| !p.is_empty()).collect();
    let mut info = RequestInfo::default();
    let rest = match parts.as_slice() {
        ["api"] => return Some(RequestInfo { verb: "get".into(), ..Default::default() }),
        ["apis"] => return Some(RequestInfo { verb: "get".into(), group: "*".into(), ..Default::default() }),
        ["api", version, rest @ ..] => {
            info.version = version.to_string();
            rest
        }
        ["apis", group, version, rest @ ..] => {
            info.group = group.to_string();
            info.version = version.to_string();
            rest
        }
        ["apis", group] => return Some(RequestInfo { verb: "get".into(), group: group.to_string(), ..Default::default() }),
        _ => return None,
    };
    let rest: &[&str] = match rest {
        ["namespaces", ns, resource, tail @ ..] => {
            info.namespace = Some(ns.to_string());
            info.resource = resource.to_string();
            tail
        }
        ["namespaces", tail @ ..] => {
            info.resource = "namespaces".into();
            tail
        }
        [resource, tail @ ..] => {
            info.resource = resource.to_string();
            tail
        }
        [] => &[],
    };
    match rest {
        [] => {}
        [name] => info.name = Some(name.to_string()),
        [name, sub] => {
            info.name = Some(name.to_string());
            info.subresource = Some(sub.to_string());
        }
        _ => return None,
    }
    info.verb = match (method.as_str(), info.name.is_some()) {
        ("GET" | "HEAD", true) => "get",
        ("GET" | "HEAD", false) if watch => "watch",
        ("GET" | "HEAD", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
    .to_string();
    Some(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_kubernetes_paths() {
        let i = resolve(&Method::GET, "/api/v1/namespaces/default/pods/web/log", false).unwrap();
        assert_eq!((i.resource.as_str(), i.name.as_deref(), i.subresource.as_deref(), i.verb.as_str()), ("pods", Some("web"), Some("log"), "get"));
        assert_eq!(i.namespace.as_deref(), Some("default"));
        let i = resolve(&Method::GET, "/apis/apps/v1/deployments", true).unwrap();
        assert_eq!((i.group.as_str(), i.resource.as_str(), i.verb.as_str()), ("apps", "deployments", "watch"));
        let i = resolve(&Method::DELETE, "/api/v1/namespaces/team-a", false).unwrap();
        assert_eq!((i.resource.as_str(), i.name.as_deref(), i.namespace.as_deref()), ("namespaces", Some("team-a"), None));
        let i = resolve(&Method::PUT, "/api/v1/nodes/n1/status", false).unwrap();
        assert_eq!((i.verb.as_str(), i.subresource.as_deref()), ("update", Some("status")));
        assert!(resolve(&Method::GET, "/other", false).is_none());
        assert!(resolve(&Method::GET, "/api/v1/namespaces/a/pods/b/c/d", false).is_none());
    }
}
