//! `GET /apis/flotilla.dev/v1alpha1/[namespaces/NS/]flows`: the flows of every node's flow log
//! (or one node's, with `node=`), merged into one stream of JSON lines ([`api::flow`]). A node
//! whose agent cannot be reached is one line `{"node": NAME, "unavailable": WHY}`, and the
//! others' flows still come, as Hubble Relay reports the nodes it could not read.

use std::collections::HashMap;
use std::time::Duration;

use api::flow::FlowFilter;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use crate::error::ApiError;
use crate::handlers::AppState;
use crate::registry::ListFilter;
use crate::request::RequestInfo;

/// How long a node's agent may take to start answering.
const AGENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest line an agent may send: a longer one ends that agent's stream.
const MAX_LINE: usize = 64 * 1024;

type Lines = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// Serves a flows request; `node_user` is the node a node agent's request speaks for.
pub async fn serve(state: &AppState, info: &RequestInfo, node_user: Option<&str>, query: &HashMap<String, String>) -> Result<Response, ApiError> {
    if node_user.is_some() {
        return Err(ApiError::Forbidden("nodes may not read the cluster's flows".into()));
    }
    if info.verb != "list" || info.subresource.is_some() {
        return Err(ApiError::MethodNotAllowed(format!("{} flows: flows can only be listed (GET, with follow=true to stream)", info.verb)));
    }
    let mut query = query.clone();
    if let Some(ns) = &info.namespace {
        match query.get("namespace") {
            Some(other) if other != ns => {
                return Err(ApiError::BadRequest(format!("namespace: the query names \"{other}\" but the path \"{ns}\"")));
            }
            _ => query.insert("namespace".into(), ns.clone()),
        };
    }
    let filter = FlowFilter::from_query(&query).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let (nodes, _) = state.registry.list_as::<api::Node>(None, &ListFilter::default()).await?;
    let nodes: Vec<api::Node> = nodes.into_iter().filter(|n| filter.node.as_ref().is_none_or(|want| n.metadata.name.as_ref() == Some(want))).collect();
    if let (Some(node), true) = (&filter.node, nodes.is_empty()) {
        return Err(ApiError::NotFound { kind: "nodes".into(), name: node.clone() });
    }
    let opened = futures::future::join_all(nodes.iter().map(|node| open(state, node, &filter))).await;
    Ok(Response::builder().header("content-type", "application/x-ndjson").body(Body::from_stream(stream::select_all(opened))).unwrap_or_default())
}

/// The lines of one node's flows, or the one line saying it could not be read.
async fn open(state: &AppState, node: &api::Node, filter: &FlowFilter) -> Lines {
    let name = node.metadata.name.clone().unwrap_or_default();
    let why = match tokio::time::timeout(AGENT_TIMEOUT, state.agents.flows(node, filter)).await {
        Ok(Ok(body)) => return lines(body),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("its agent did not answer within {} s", AGENT_TIMEOUT.as_secs()),
    };
    let mut line = serde_json::to_vec(&serde_json::json!({"node": name, "unavailable": why})).unwrap_or_default();
    line.push(b'\n');
    stream::once(async move { Ok(Bytes::from(line)) }).boxed()
}

/// `body` cut into whole lines, so that lines of different nodes never interleave; an
/// unfinished last line is left out.
fn lines(body: Body) -> Lines {
    stream::unfold((body.into_data_stream(), Vec::new()), |(mut body, mut pending)| async move {
        loop {
            if let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                return Some((Ok(Bytes::from(line)), (body, pending)));
            }
            if pending.len() > MAX_LINE {
                tracing::warn!("a node agent sent a flow line longer than {MAX_LINE} bytes; its stream is cut");
                return None;
            }
            match body.next().await {
                Some(Ok(chunk)) => pending.extend_from_slice(&chunk),
                Some(Err(_)) | None => return None,
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chunks_become_whole_lines() {
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            vec![Ok(Bytes::from("{\"a\":")), Ok(Bytes::from("1}\n{\"b\":2}\n{\"c\"")), Ok(Bytes::from(":3}\n{\"unfinished\""))];
        let out: Vec<Bytes> = lines(Body::from_stream(stream::iter(chunks))).map(Result::unwrap).collect().await;
        assert_eq!(out, vec![Bytes::from("{\"a\":1}\n"), Bytes::from("{\"b\":2}\n"), Bytes::from("{\"c\":3}\n")]);
    }

    #[tokio::test]
    async fn an_endless_line_is_cut() {
        let chunks = stream::iter(std::iter::repeat_with(|| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 8192]))).take(100));
        let out: Vec<_> = lines(Body::from_stream(chunks)).collect().await;
        assert!(out.is_empty());
    }
}
