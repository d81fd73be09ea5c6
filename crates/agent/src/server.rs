//! The agent's HTTPS endpoint, which the API server calls for `flotilla logs`: container logs,
//! authenticated with the node's token.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::logs;

#[derive(Clone)]
struct LogState {
    logs_dir: PathBuf,
    token: Arc<String>,
}

/// A self-signed serving certificate for the agent endpoint, created once.
fn tls_config(dir: &Path, ip: std::net::IpAddr) -> Result<Arc<rustls::ServerConfig>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (cert_path, key_path) = (dir.join("agent.crt"), dir.join("agent.key"));
    if !cert_path.exists() || !key_path.exists() {
        let cert = rcgen::generate_simple_self_signed(vec![ip.to_string(), "localhost".to_string()]).map_err(|e| e.to_string())?;
        std::fs::write(&cert_path, cert.cert.pem()).map_err(|e| e.to_string())?;
        let key = cert.key_pair.serialize_pem();
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&key_path).map_err(|e| e.to_string())?;
        f.write_all(key.as_bytes()).map_err(|e| e.to_string())?;
    }
    let cert_pem = std::fs::read(&cert_path).map_err(|e| e.to_string())?;
    let key_pem = std::fs::read(&key_path).map_err(|e| e.to_string())?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice()).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice()).map_err(|e| e.to_string())?.ok_or("no key")?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(config))
}

/// Binds the endpoint; returns the bound address and the task serving it.
pub async fn start(addr: SocketAddr, tls_dir: &Path, logs_dir: PathBuf, token: String) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), String> {
    let tls = tls_config(tls_dir, addr.ip())?;
    let listener = TcpListener::bind(addr).await.map_err(|e| format!("binding the agent endpoint on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let state = LogState { logs_dir, token: Arc::new(token) };
    let app =
        Router::new().route("/healthz", get(|| async { "ok" })).route("/containerLogs/{namespace}/{pod}/{container}", get(container_logs)).with_state(state);
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

async fn container_logs(
    State(state): State<LogState>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")) == Some(state.token.as_str());
    if !authorized {
        return (StatusCode::UNAUTHORIZED, "unauthorized").into_response();
    }
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
