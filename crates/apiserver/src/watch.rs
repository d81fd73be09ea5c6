//! `?watch=true`: a stream of `{"type": ..., "object": ...}` lines, starting with the current
//! state when no resourceVersion (or "0") is given, ending after `timeoutSeconds`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use api::ResourceType;
use axum::body::{Body, Bytes};
use axum::response::Response;
use futures::{stream, StreamExt};
use serde_json::Value;

use crate::error::{status_json, ApiError};
use crate::registry::{ListFilter, ObjectEvent, Registry};

/// How long a watch lasts when the client does not say (Kubernetes picks 30–60 minutes).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

fn line(type_: &str, object: &Value) -> Result<Bytes, Infallible> {
    Ok(framed(type_, &serde_json::to_vec(object).unwrap_or_default()))
}

/// A watch line around an object already encoded.
fn framed(type_: &str, object: &[u8]) -> Bytes {
    let mut text = Vec::with_capacity(object.len() + 32);
    text.extend_from_slice(b"{\"type\":\"");
    text.extend_from_slice(type_.as_bytes());
    text.extend_from_slice(b"\",\"object\":");
    text.extend_from_slice(object);
    text.extend_from_slice(b"}\n");
    Bytes::from(text)
}

/// Answers a watch request.
pub async fn serve(registry: &Registry, rt: &ResourceType, ns: Option<&str>, query: &HashMap<String, String>) -> Result<Response, ApiError> {
    let filter = ListFilter::parse(query.get("labelSelector").map(String::as_str), query.get("fieldSelector").map(String::as_str))?;
    let timeout = match query.get("timeoutSeconds") {
        Some(t) => Duration::from_secs(t.parse().map_err(|_| ApiError::BadRequest(format!("timeoutSeconds \"{t}\" is not an integer")))?),
        None => DEFAULT_TIMEOUT,
    };
    let from = query.get("resourceVersion").map(String::as_str).unwrap_or("");
    let (initial, after) = if from.is_empty() || from == "0" {
        let (items, revision) = registry.list(rt, ns, &filter).await?;
        (items, revision)
    } else {
        let after = from.parse().map_err(|_| ApiError::BadRequest(format!("resourceVersion \"{from}\" is not a revision number")))?;
        (Vec::new(), after)
    };
    let events = registry.watch(rt, ns, filter, after).await?;
    let initial = stream::iter(initial.into_iter().map(|o| line("ADDED", &o)));
    let live = events.scan(false, |failed, event| {
        let out = match (*failed, event) {
            (true, _) => None,
            (false, Ok(ObjectEvent { type_, object, encoded })) => {
                let json = encoded.get_or_init(|| Bytes::from(serde_json::to_vec(&*object).unwrap_or_default()));
                Some(Ok(framed(type_, json)))
            }
            (false, Err(e)) => {
                *failed = true;
                Some(line("ERROR", &status_json(&e.status())))
            }
        };
        futures::future::ready(out)
    });
    let deadline = tokio::time::sleep(timeout);
    let body = initial.chain(live).take_until(deadline);
    Ok(Response::builder().header("content-type", "application/json").header("cache-control", "no-cache").body(Body::from_stream(body)).unwrap_or_default())
}
