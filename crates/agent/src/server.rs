//! The agent's HTTPS endpoint, which the API server calls for `flotilla logs` (container logs)
//! and `flotilla flows` (the node's flow log), over mutual TLS. The endpoint serves the
//! certificate the node CA issued for this node's name, and it serves only callers presenting a
//! client certificate from the node CA, which only the API server holds.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::flows::FlowLog;
use crate::join::NodeIdentity;
use crate::logs;

#[derive(Clone)]
struct EndpointState {
    logs_dir: PathBuf,
    flows: Arc<FlowLog>,
}

fn tls_config(identity: &NodeIdentity) -> Result<Arc<rustls::ServerConfig>, String> {
    let certs =
        rustls_pemfile::certs(&mut identity.serving_cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>().map_err(|e| format!("serving certificate: {e}"))?;
    let key = rustls_pemfile::private_key(&mut identity.serving_key_pem.as_bytes()).map_err(|e| format!("serving key: {e}"))?.ok_or("no serving key")?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls_pemfile::certs(&mut identity.node_ca_pem.as_bytes()) {
        roots.add(ca.map_err(|e| format!("node CA: {e}"))?).map_err(|e| format!("node CA: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let clients =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().map_err(|e| format!("client verifier: {e}"))?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(clients)
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(config))
}

/// Binds the endpoint; returns the bound address and the task serving it.
pub async fn start(
    addr: SocketAddr,
    identity: &NodeIdentity,
    logs_dir: PathBuf,
    flows: Arc<FlowLog>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), String> {
    let tls = tls_config(identity)?;
    let listener = TcpListener::bind(addr).await.map_err(|e| format!("binding the agent endpoint on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let state = EndpointState { logs_dir, flows };
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/containerLogs/{namespace}/{pod}/{container}", get(container_logs))
        .route("/flows", get(flow_log))
        .with_state(state);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await else { return };
                let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tls), TowerToHyperService::new(app)).await;
            });
        }
    });
    Ok((bound, task))
}

/// `GET /flows?…`: the flows of this node's log that the query selects ([`api::flow`]), one
/// JSON object per line; with `follow=true`, then each new one.
async fn flow_log(State(state): State<EndpointState>, Query(query): Query<HashMap<String, String>>) -> Response {
    match api::flow::FlowFilter::from_query(&query) {
        Ok(filter) => {
            Response::builder().header("content-type", "application/x-ndjson").body(Body::from_stream(state.flows.stream(filter))).unwrap_or_default()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

async fn container_logs(
    State(state): State<EndpointState>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let prefix = format!("{namespace}_{pod}_");
    let pod_dir = std::fs::read_dir(&state.logs_dir)
        .ok()
        .and_then(|d| d.flatten().map(|e| e.path()).find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&prefix))));
    let Some(pod_dir) = pod_dir else {
        return (StatusCode::NOT_FOUND, format!("no logs for pod {namespace}/{pod} on this node")).into_response();
    };
    let flag = |name: &str| query.get(name).is_some_and(|v| v == "true" || v == "1");
    let previous = flag("previous");
    let Some(file) = logs::find_log(&pod_dir, &container, previous) else {
        let what = if previous { "previous terminated container" } else { "container" };
        return (StatusCode::BAD_REQUEST, format!("{what} \"{container}\" in pod \"{pod}\" has no logs")).into_response();
    };
    let tail = query.get("tailLines").and_then(|t| t.parse().ok());
    let watched = pod_dir.clone();
    let stop = async move {
        while watched.exists() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    Response::builder()
        .header("content-type", "text/plain")
        .body(Body::from_stream(logs::read_log(file, flag("follow") && !previous, tail, stop)))
        .unwrap_or_default()
}
