//! The HTTPS listener: routes, health endpoints, metrics, and the TLS accept loop.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::error::ApiError;
use crate::handlers::{api_handler, AppState};

/// How the server is run.
pub struct ServerConfig {
    /// The bound listener.
    pub listener: TcpListener,
    /// TLS settings (see [`crate::tls::server_config`]).
    pub tls: Arc<rustls::ServerConfig>,
    /// Handler state.
    pub state: AppState,
}

/// Extra Prometheus text contributed by other components (controllers, agent).
pub type MetricsSource = Arc<dyn Fn() -> String + Send + Sync>;

/// (verb, resource, HTTP code) → (requests, seconds spent).
type RequestCounters = BTreeMap<(String, String, u16), (u64, f64)>;

/// Request counters and latency sums, rendered in the Prometheus text format.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<RequestCounters>,
    sources: Mutex<Vec<MetricsSource>>,
}

impl Metrics {
    /// Counts one request.
    pub fn record(&self, verb: &str, resource: &str, code: u16, elapsed: Duration) {
        let mut map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry((verb.to_string(), resource.to_string(), code)).or_default();
        entry.0 += 1;
        entry.1 += elapsed.as_secs_f64();
    }

    /// Adds a component's metrics to `/metrics`.
    pub fn add_source(&self, source: MetricsSource) {
        self.sources.lock().unwrap_or_else(|e| e.into_inner()).push(source);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::from("# HELP apiserver_request_total Requests by verb, resource and HTTP code.\n# TYPE apiserver_request_total counter\n");
        let map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        for ((verb, resource, code), (count, _)) in map.iter() {
            let _ = writeln!(out, "apiserver_request_total{{verb=\"{verb}\",resource=\"{resource}\",code=\"{code}\"}} {count}");
        }
        out.push_str(
            "# HELP apiserver_request_duration_seconds_sum Total time spent serving requests.\n# TYPE apiserver_request_duration_seconds_sum counter\n",
        );
        for ((verb, resource, code), (_, seconds)) in map.iter() {
            let _ = writeln!(out, "apiserver_request_duration_seconds_sum{{verb=\"{verb}\",resource=\"{resource}\",code=\"{code}\"}} {seconds:.6}");
        }
        drop(map);
        for source in self.sources.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            out.push_str(&source());
        }
        out
    }
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match state.authenticate(&headers).await {
        Ok(_) => state.metrics.render().into_response(),
        Err(e) => e.into_response(),
    }
}

/// The most a join request may hold (a name, a secret and a certificate request).
const MAX_JOIN_BYTES: usize = 64 * 1024;

/// `POST /join`: the join token (or an admin) trades for a node's own identity.
async fn join(State(state): State<AppState>, headers: HeaderMap, body: axum::body::Body) -> Response {
    let result = async {
        let user = state.auth.authenticate(&headers)?;
        let may_join = user.groups.iter().any(|g| g == crate::join::BOOTSTRAP_GROUP || g == crate::auth::ADMIN_GROUP);
        if !may_join {
            return Err(ApiError::Forbidden(format!("User \"{}\" may not join nodes; use the server's node-token", user.name)));
        }
        let identities = state.identities.as_ref().ok_or_else(|| ApiError::Forbidden("this server does not issue node identities".into()))?;
        let bytes = crate::handlers::body_bytes(body, MAX_JOIN_BYTES).await?;
        let request = crate::join::parse_request(&bytes)?;
        identities.join(&state.registry, &request).await
    }
    .await;
    match result {
        Ok(response) => Json(response).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The routes of the API server.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/version", get(|| async { Json(crate::discovery::version()) }))
        .route("/metrics", get(metrics))
        .route("/cacerts", get(|State(state): State<AppState>| async move { state.ca_pem.as_str().to_string() }))
        .route("/join", post(join))
        .route("/api", any(api_handler))
        .route("/api/{*rest}", any(api_handler))
        .route("/apis", any(api_handler))
        .route("/apis/{*rest}", any(api_handler))
        .with_state(state)
}

/// Accepts TLS connections and serves HTTP/1.1 and HTTP/2 on them until the task is dropped.
pub async fn serve(config: ServerConfig) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config.tls);
    let app = router(config.state);
    loop {
        let (tcp, peer) = config.listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service = TowerToHyperService::new(app);
            if let Err(e) = auto::Builder::new(TokioExecutor::new()).serve_connection_with_upgrades(TokioIo::new(tls), service).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
