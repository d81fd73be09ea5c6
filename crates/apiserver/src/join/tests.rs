use std::sync::Arc;

use api::ResourceType;
use serde_json::json;

use super::*;
use crate::noderestriction;
use crate::request::RequestInfo;

struct Fixture {
    registry: Registry,
    identities: NodeIdentities,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(store::embedded::EmbeddedStore::open(&dir.path().join("store.redb")).unwrap());
    let registry = Registry::new(store.clone());
    for ns in ["default", "kube-node-lease"] {
        registry.create(ResourceType::of::<api::Namespace>(), None, json!({"metadata": {"name": ns}})).await.unwrap();
    }
    let pki = Arc::new(crate::nodepki::ensure_node_pki(dir.path()).unwrap());
    Fixture { registry, identities: NodeIdentities::new(store, pki), _dir: dir }
}

fn request(node: &str, secret: char) -> JoinRequest {
    JoinRequest { node_name: node.into(), node_secret: secret.to_string().repeat(40), serving_csr: None }
}

#[tokio::test]
async fn a_join_gives_a_node_a_token_of_its_own_that_a_rejoin_replaces() {
    let f = fixture().await;
    let first = f.identities.join(&f.registry, &request("edge-1", 'a')).await.unwrap();
    assert!(first.token.starts_with("flnode:edge-1:"));
    assert_eq!(first.node_ca, f.identities.pki().ca_pem);
    let user = f.identities.authenticate(&first.token).await.expect("the new token is valid");
    assert_eq!((user.name.as_str(), user.groups.as_slice()), ("system:node:edge-1", &[NODES_GROUP.to_string()][..]));
    assert!(f.identities.authenticate(&first.token.replace("edge-1", "edge-2")).await.is_none(), "a token names its own node only");
    assert!(f.identities.authenticate(&format!("{}0", first.token)).await.is_none());

    // The same machine (same secret) joins again: the old token stops working at once.
    let second = f.identities.join(&f.registry, &request("edge-1", 'a')).await.unwrap();
    assert_ne!(second.token, first.token);
    assert!(f.identities.authenticate(&first.token).await.is_none());
    assert!(f.identities.authenticate(&second.token).await.is_some());
}

#[tokio::test]
async fn another_machine_cannot_take_a_name_whose_node_exists() {
    let f = fixture().await;
    f.identities.join(&f.registry, &request("edge-1", 'a')).await.unwrap();
    f.registry.create(ResourceType::of::<api::Node>(), None, json!({"metadata": {"name": "edge-1"}})).await.unwrap();
    let err = f.identities.join(&f.registry, &request("edge-1", 'b')).await.unwrap_err();
    assert!(matches!(&err, ApiError::Forbidden(m) if m.contains("in use by another machine")), "{err}");
    f.registry.delete(ResourceType::of::<api::Node>(), None, "edge-1", &Default::default()).await.unwrap();
    f.identities.join(&f.registry, &request("edge-1", 'b')).await.expect("the name is free once its Node is deleted");
}

#[tokio::test]
async fn a_serving_certificate_is_issued_for_a_valid_request_only() {
    let f = fixture().await;
    let (_key, csr) = crate::nodepki::serving_request("edge-1").unwrap();
    let joined = f.identities.join(&f.registry, &JoinRequest { serving_csr: Some(csr), ..request("edge-1", 'a') }).await.unwrap();
    assert!(joined.serving_certificate.is_some_and(|c| c.contains("BEGIN CERTIFICATE")));
    let err = f.identities.join(&f.registry, &JoinRequest { serving_csr: Some("garbage".into()), ..request("edge-2", 'a') }).await.unwrap_err();
    assert!(matches!(&err, ApiError::BadRequest(m) if m.contains("servingCsr")), "{err}");
}

#[test]
fn join_requests_are_checked_field_by_field() {
    let ok = br#"{"nodeName": "edge-1", "nodeSecret": "0123456789abcdef0123456789abcdef"}"#;
    assert_eq!(parse_request(ok).unwrap().node_name, "edge-1");
    let cases: [(&[u8], &str); 4] = [
        (br#"{"nodeName": "Edge_1", "nodeSecret": "0123456789abcdef0123456789abcdef"}"#, "nodeName: Invalid value"),
        (br#"{"nodeName": "edge-1", "nodeSecret": "short"}"#, "nodeSecret: Invalid value"),
        (br#"{"nodeName": "edge-1", "nodeSecret": "0123456789abcdef0123456789abcdef", "admin": true}"#, "unknown field `admin`"),
        (b"not json", "join request"),
    ];
    for (body, expected) in cases {
        let err = parse_request(body).unwrap_err().to_string();
        assert!(err.contains(expected), "{}: {err}", String::from_utf8_lossy(body));
    }
}

fn info(verb: &str, resource: &str, ns: &str, name: &str, sub: Option<&str>) -> RequestInfo {
    RequestInfo {
        verb: verb.into(),
        resource: resource.into(),
        namespace: Some(ns.into()),
        name: Some(name.into()),
        subresource: sub.map(Into::into),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_node_touches_only_its_own_pods_lease_and_the_secrets_they_use() {
    let f = fixture().await;
    let pods = ResourceType::of::<api::Pod>();
    let pod = |name: &str, node: &str, secret: &str| {
        json!({"metadata": {"name": name}, "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox",
            "env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": secret, "key": "pw"}}}]}]}})
    };
    f.registry.create(pods, Some("default"), pod("mine", "edge-1", "db")).await.unwrap();
    f.registry.create(pods, Some("default"), pod("theirs", "edge-2", "vault")).await.unwrap();
    let check = |i: RequestInfo| {
        let registry = f.registry.clone();
        async move { noderestriction::check(&registry, "edge-1", &i).await }
    };
    let theirs = f.registry.get(pods, Some("default"), "theirs").await.unwrap();
    let guard = |old: &serde_json::Value| noderestriction::pod_is_bound_to("edge-1", "update", old);
    let err = f.registry.update_guarded(pods, Some("default"), "theirs", theirs.clone(), true, &guard).await.unwrap_err();
    assert!(matches!(&err, ApiError::Forbidden(m) if m.contains("update pod default/theirs: it is bound to edge-2")), "{err}");
    let mine = f.registry.get(pods, Some("default"), "mine").await.unwrap();
    f.registry.update_guarded(pods, Some("default"), "mine", mine, true, &guard).await.expect("a node updates its own pod");
    assert!(check(info("delete", "pods", "default", "theirs", None)).await.is_err());
    assert!(check(info("delete", "pods", "default", "mine", None)).await.is_ok());
    assert!(check(info("get", "secrets", "default", "db", None)).await.is_ok());
    let err = check(info("get", "secrets", "default", "vault", None)).await.unwrap_err();
    assert!(matches!(&err, ApiError::Forbidden(m) if m.contains("secret default/vault")), "{err}");
    assert!(check(info("get", "configmaps", "default", "db", None)).await.is_err(), "a secret reference is not a ConfigMap reference");
    assert!(check(info("update", "leases", "kube-node-lease", "edge-1", None)).await.is_ok());
    assert!(check(info("update", "leases", "kube-node-lease", "edge-2", None)).await.is_err());
}
