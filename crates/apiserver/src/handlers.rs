//! HTTP handlers for every `/api` and `/apis` path: authenticate, resolve, authorize, dispatch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use api::kinds::lookup_plural;
use api::ResourceType;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::auth::{authorize, Authenticator, UserInfo};
use crate::error::ApiError;
use crate::imagegate::Review;
use crate::registry::{DeleteOptions, ListFilter, Registry};
use crate::request::{resolve, RequestInfo};
use crate::{discovery, noderestriction, watch};

/// The largest request body accepted, as in Kubernetes (3 MiB).
pub const MAX_BODY_BYTES: usize = api::manifest::MAX_MANIFEST_BYTES;

/// What the API server asks node agents for.
#[async_trait::async_trait]
pub trait NodeAgents: Send + Sync {
    /// The log of `container` of `pod` on `node`: a byte stream, following when asked.
    async fn logs(&self, node: &api::Node, pod: &api::Pod, query: &HashMap<String, String>) -> Result<Body, ApiError>;
    /// The flows of `node`'s flow log that `filter` selects, one JSON object per line.
    async fn flows(&self, node: &api::Node, filter: &api::flow::FlowFilter) -> Result<Body, ApiError>;
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Object storage.
    pub registry: Registry,
    /// Token checks.
    pub auth: Arc<Authenticator>,
    /// Node agents: pod logs and flows come from them.
    pub agents: Arc<dyn NodeAgents>,
    /// Request counters for `/metrics`.
    pub metrics: Arc<crate::server::Metrics>,
    /// The cluster CA certificate, served at `/cacerts` so joining agents can check it
    /// against the hash in their token.
    pub ca_pem: Arc<String>,
    /// Image admission (ImagePolicy); `None` admits every image.
    pub image_gate: Option<Arc<crate::imagegate::ImageGate>>,
    /// Per-node identities: joining, and their tokens; `None` accepts only static tokens.
    pub identities: Option<Arc<crate::join::NodeIdentities>>,
    /// Functions' invocation lines (`functions/<name>/log`), where the dispatchers run here.
    pub function_log: Option<FunctionLog>,
}

/// A Function's (`namespace/name`) invocation lines numbered after the given one.
pub type FunctionLog = Arc<dyn Fn(&str, u64) -> Vec<(u64, String)> + Send + Sync>;

impl AppState {
    /// The user of a request: a static token, or a node's own token.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<UserInfo, ApiError> {
        match self.auth.authenticate(headers) {
            Err(ApiError::Unauthorized(why)) => {
                let token = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
                match (token, &self.identities) {
                    (Some(token), Some(identities)) if token.starts_with("flnode:") => identities
                        .authenticate(token.trim())
                        .await
                        .ok_or_else(|| ApiError::Unauthorized("the node token is not (or no longer) valid; the agent joins again with the join token".into())),
                    _ => Err(ApiError::Unauthorized(why)),
                }
            }
            other => other,
        }
    }
}

/// The handler for every `/api…` and `/apis…` path.
pub async fn api_handler(State(state): State<AppState>, method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let query: HashMap<String, String> = Query::try_from_uri(&uri).map(|Query(q)| q).unwrap_or_default();
    let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    let info = resolve(&method, uri.path(), watch);
    let result = authorized_dispatch(&state, info.as_ref(), &uri, &query, &headers, body).await;
    let response = result.unwrap_or_else(IntoResponse::into_response);
    if let Some(info) = info {
        state.metrics.record(&info.verb, &info.resource, response.status().as_u16(), started.elapsed());
    }
    response
}

/// Authenticates and authorizes a request, then serves it.
async fn authorized_dispatch(
    state: &AppState,
    info: Option<&RequestInfo>,
    uri: &Uri,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let checked = async {
        let user = state.authenticate(headers).await?;
        let info = info.ok_or_else(|| ApiError::NotFound { kind: "path".into(), name: uri.path().to_string() })?;
        authorize(&user, info)?;
        let node = noderestriction::node_of(&user).map(str::to_string);
        if let Some(node) = &node {
            noderestriction::check(&state.registry, node, info).await?;
        }
        Ok::<_, ApiError>((info, node))
    }
    .await;
    match checked {
        Ok((info, node)) => dispatch(state, info, node.as_deref(), query, headers, body).await,
        Err(e) => {
            // Read what the client is still sending before refusing: over HTTP/2 a response
            // that ends while the request body is unread resets the stream, and clients (curl)
            // report a framing error instead of the 401 or 403.
            let _ = body_bytes(body, MAX_BODY_BYTES).await;
            Err(e)
        }
    }
}

/// `GET …/functions/<name>/log[?since=N]`: the invocation lines numbered after `since`, as
/// `{"lines": [{"n": 1, "line": "…"}]}`.
async fn function_log(state: &AppState, rt: &ResourceType, ns: &str, name: &str, query: &HashMap<String, String>) -> Result<Response, ApiError> {
    state.registry.get(rt, Some(ns), name).await?;
    let since = match query.get("since") {
        Some(text) => text.parse::<u64>().map_err(|_| ApiError::BadRequest(format!("since \"{text}\" is not a line number")))?,
        None => 0,
    };
    let source = state.function_log.as_ref().ok_or_else(|| ApiError::NotFound { kind: "function log".into(), name: format!("{ns}/{name}") })?;
    let lines: Vec<Value> = source(&format!("{ns}/{name}"), since).into_iter().map(|(n, line)| json!({"n": n, "line": line})).collect();
    Ok(Json(json!({ "lines": lines })).into_response())
}

/// Serves an authorized request; `node` is the node a node agent's request speaks for.
async fn dispatch(
    state: &AppState,
    info: &RequestInfo,
    node: Option<&str>,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if info.resource.is_empty() {
        let doc = match (info.group.as_str(), info.version.as_str()) {
            ("", "") => Some(discovery::core_versions()),
            ("*", "") => Some(discovery::groups()),
            (g, v) if !v.is_empty() => discovery::resources(g, v),
            _ => None,
        };
        return doc.map(|d| Json(d).into_response()).ok_or_else(|| ApiError::NotFound { kind: "group".into(), name: info.group.clone() });
    }
    if info.group == "flotilla.dev" && info.resource == "flows" {
        return crate::flows::serve(state, info, node, query).await;
    }
    let rt = lookup_plural(&info.group, &info.version, &info.resource).ok_or_else(|| ApiError::NotFound {
        kind: "resource".into(),
        name: format!("{} in {}", info.resource, if info.group.is_empty() { info.version.clone() } else { format!("{}/{}", info.group, info.version) }),
    })?;
    let ns = if rt.namespaced { info.namespace.as_deref() } else { None };
    if rt.namespaced && info.name.is_some() && ns.is_none() {
        return Err(ApiError::BadRequest(format!("{} are namespaced: use /namespaces/<namespace>/{}/<name>", rt.plural, rt.plural)));
    }
    let registry = &state.registry;
    match (info.verb.as_str(), info.name.as_deref(), info.subresource.as_deref()) {
        ("get", Some(name), None | Some("status")) => Ok(Json(registry.get(rt, ns, name).await?).into_response()),
        ("get", Some(name), Some("log")) if rt.kind == "Pod" => pod_log(state, ns.unwrap_or("default"), name, query).await,
        ("get", Some(name), Some("log")) if rt.kind == "Function" => function_log(state, rt, ns.unwrap_or("default"), name, query).await,
        ("list", None, None) => {
            let filter = ListFilter::parse(query.get("labelSelector").map(String::as_str), query.get("fieldSelector").map(String::as_str))?;
            let (items, revision) = registry.list(rt, ns, &filter).await?;
            Ok(Json(json!({
                "kind": rt.list_kind(), "apiVersion": rt.api_version(),
                "metadata": {"resourceVersion": revision.to_string()}, "items": items,
            }))
            .into_response())
        }
        ("watch", None, None) => watch::serve(registry, rt, ns, query).await,
        ("create", None, None) => {
            let mut value = read_body(headers, body).await?;
            if let Some(node) = node {
                noderestriction::check_create(node, rt, &value)?;
            }
            let review = review_images(state, rt, ns, &mut value, None).await?;
            let created = registry.create(rt, ns, value).await?;
            Ok(with_warnings((StatusCode::CREATED, Json(created)).into_response(), &review))
        }
        ("update", Some(name), sub @ (None | Some("status"))) => {
            let mut value = read_body(headers, body).await?;
            let review = if sub.is_none() { review_images(state, rt, ns, &mut value, Some(name)).await? } else { Review::default() };
            let updated = match node {
                Some(node) if rt.kind == "Pod" => {
                    registry.update_guarded(rt, ns, name, value, sub.is_some(), &|old| noderestriction::pod_is_bound_to(node, "update", old)).await?
                }
                _ => registry.update(rt, ns, name, value, sub.is_some()).await?,
            };
            Ok(with_warnings(Json(updated).into_response(), &review))
        }
        ("delete", Some(name), None) => {
            if rt.kind == "Namespace" && ["default", "kube-system", "kube-node-lease"].contains(&name) {
                return Err(ApiError::Forbidden(format!("namespace \"{name}\" is a system namespace and may not be deleted")));
            }
            let mut opts = delete_options(headers, body).await?;
            if let Some(grace) = query.get("gracePeriodSeconds") {
                opts.grace_period_seconds = Some(grace.parse().map_err(|_| ApiError::BadRequest(format!("gracePeriodSeconds \"{grace}\" is not an integer")))?);
            }
            Ok(Json(registry.delete(rt, ns, name, &opts).await?).into_response())
        }
        (verb, _, sub) => Err(ApiError::MethodNotAllowed(format!("{verb} {}{}", rt.plural, sub.map(|s| format!("/{s}")).unwrap_or_default()))),
    }
}

/// Runs the image gate on a Pod or Deployment being created, or updated with different images.
async fn review_images(state: &AppState, rt: &ResourceType, ns: Option<&str>, value: &mut Value, updating: Option<&str>) -> Result<Review, ApiError> {
    let Some(gate) = &state.image_gate else {
        return Ok(Review::default());
    };
    if !crate::imagegate::GATED_KINDS.contains(&rt.kind) {
        return Ok(Review::default());
    }
    let ns = ns.unwrap_or("default");
    if let Some(name) = updating {
        let old = state.registry.get(rt, Some(ns), name).await?;
        if crate::imagegate::same_images(rt.kind, &old, value) {
            return Ok(Review::default());
        }
    }
    gate.review(&state.registry, rt, ns, value).await
}

/// Adds a `Warning: 299 - "..."` header per warning, as the Kubernetes API server does.
fn with_warnings(mut response: Response, review: &Review) -> Response {
    for warning in &review.warnings {
        let text = warning.replace(['"', '\\'], "'").replace(|c: char| c.is_control(), " ");
        if let Ok(value) = axum::http::HeaderValue::from_str(&format!("299 - \"{text}\"")) {
            response.headers_mut().append(axum::http::header::WARNING, value);
        }
    }
    response
}

async fn pod_log(state: &AppState, ns: &str, name: &str, query: &HashMap<String, String>) -> Result<Response, ApiError> {
    let pod: api::Pod = state.registry.get_as(Some(ns), name).await?;
    let node_name = api::pod::node_name(&pod).ok_or_else(|| ApiError::BadRequest(format!("pod \"{name}\" is not scheduled to a node yet; it has no logs")))?;
    let node: api::Node = state.registry.get_as(None, node_name).await?;
    let body = state.agents.logs(&node, &pod, query).await?;
    Ok(Response::builder().header("content-type", "text/plain").body(body).unwrap_or_default())
}

/// How much of an oversized body is still read, and for how long, before the 413 goes out.
const DRAIN_BYTES: usize = 4 * MAX_BODY_BYTES;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads a request body of at most `limit` bytes. A larger one is refused with 413, but only
/// after the rest of it has been read (at most [`DRAIN_BYTES`] more, for at most
/// [`DRAIN_TIME`]): a server that answers and closes while the client is still writing makes
/// the client see a broken pipe or a reset stream instead of the 413.
pub async fn body_bytes(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    // The chunks as they came: most bodies are one, returned without a copy.
    let (mut chunks, mut len) = (Vec::new(), 0);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("the request body could not be read: {e}")))?;
        len += chunk.len();
        if len > limit {
            let drain = async {
                let mut drained = 0;
                while let Some(Ok(chunk)) = stream.next().await {
                    drained += chunk.len();
                    if drained > DRAIN_BYTES {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
            return Err(ApiError::TooLarge { limit });
        }
        chunks.push(chunk);
    }
    Ok(match chunks.len() {
        1 => chunks.remove(0),
        _ => chunks.concat().into(),
    })
}

/// Reads a JSON or YAML request body, at most [`MAX_BODY_BYTES`].
pub async fn read_body(headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
    let bytes = body_bytes(body, MAX_BODY_BYTES).await?;
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let media = content_type.split(';').next().unwrap_or("").trim();
    match media {
        "application/json" | "" | "*/*" => serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}"))),
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            serde_yaml::from_slice(&bytes).map_err(|e| ApiError::BadRequest(format!("the body is not valid YAML: {e}")))
        }
        other => Err(ApiError::UnsupportedMediaType(other.to_string())),
    }
}

async fn delete_options(headers: &HeaderMap, body: Body) -> Result<DeleteOptions, ApiError> {
    let bytes = body_bytes(body, MAX_BODY_BYTES).await?;
    if bytes.is_empty() {
        return Ok(DeleteOptions::default());
    }
    let _ = headers;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest(format!("DeleteOptions is not valid JSON: {e}")))?;
    Ok(DeleteOptions {
        grace_period_seconds: value.get("gracePeriodSeconds").and_then(Value::as_i64),
        precondition_uid: value.pointer("/preconditions/uid").and_then(Value::as_str).map(str::to_string),
    })
}

/// The registry type of a request, for callers outside this module.
pub fn resource_type(info: &RequestInfo) -> Option<&'static ResourceType> {
    lookup_plural(&info.group, &info.version, &info.resource)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::StreamExt;

    use super::*;

    /// A body of `chunks` chunks of 64 KiB, counting how many were read.
    fn counted(chunks: usize) -> (Body, Arc<AtomicUsize>) {
        let read = Arc::new(AtomicUsize::new(0));
        let counter = read.clone();
        let stream = futures::stream::iter(0..chunks).map(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 64 << 10]))
        });
        (Body::from_stream(stream), read)
    }

    #[tokio::test]
    async fn an_oversized_body_is_read_to_its_end_before_the_413() {
        let (body, read) = counted(80); // 5 MiB against a 3 MiB limit
        let error = body_bytes(body, MAX_BODY_BYTES).await.unwrap_err();
        assert!(matches!(error, ApiError::TooLarge { limit: MAX_BODY_BYTES }), "{error}");
        assert_eq!(read.load(Ordering::SeqCst), 80, "the rest of the body was left unread");
    }

    #[tokio::test]
    async fn draining_stops_after_its_bound() {
        let (body, read) = counted(1 << 20); // 64 GiB, endless in practice
        let error = body_bytes(body, MAX_BODY_BYTES).await.unwrap_err();
        assert!(matches!(error, ApiError::TooLarge { .. }), "{error}");
        let limit_chunks = (MAX_BODY_BYTES + DRAIN_BYTES) / (64 << 10);
        assert!(read.load(Ordering::SeqCst) <= limit_chunks + 2, "read {} chunks", read.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_returned_whole() {
        let (body, _) = counted(3);
        assert_eq!(body_bytes(body, MAX_BODY_BYTES).await.unwrap().len(), 3 * (64 << 10));
    }
}
