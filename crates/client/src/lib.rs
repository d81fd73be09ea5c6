//! The API client used by the agent and the CLI: kubeconfig files, typed and untyped requests,
//! watches as streams, and pod logs.
#![forbid(unsafe_code)]

pub mod kubeconfig;

use std::pin::Pin;

use api::k8s_openapi::Resource;
use api::ResourceType;
use futures::{Stream, StreamExt, TryStreamExt};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

pub use kubeconfig::Kubeconfig;

/// What a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a `Status` error.
    #[error("{message}")]
    Api {
        /// HTTP code.
        code: u16,
        /// `Status.reason`, e.g. `NotFound`.
        reason: String,
        /// `Status.message`.
        message: String,
        /// The whole `Status` body.
        status: Value,
    },
    /// The server could not be reached or the connection broke.
    #[error("cannot reach the API server at {server}: {source}")]
    Transport { server: String, source: reqwest::Error },
    /// The answer was not what the API promises.
    #[error("unexpected answer from the API server: {0}")]
    Decode(String),
    /// The client could not be configured.
    #[error("{0}")]
    Config(String),
}

impl ClientError {
    /// True for a 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Api { code: 404, .. })
    }

    /// True for a 409 (conflict or already exists).
    pub fn is_conflict(&self) -> bool {
        matches!(self, ClientError::Api { code: 409, .. })
    }
}

/// One watch event: `ADDED`, `MODIFIED`, `DELETED` (or `ERROR` with a Status), and the object.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct WatchEvent {
    /// The event type.
    #[serde(rename = "type")]
    pub type_: String,
    /// The object.
    pub object: Value,
}

/// A stream of watch events.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, ClientError>> + Send>>;

/// A streamed answer's bytes as they come.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<bytes::Bytes, ClientError>> + Send>>;

/// A connection to one API server with one identity.
#[derive(Clone)]
pub struct Client {
    server: String,
    token: String,
    http: reqwest::Client,
    print_warnings: bool,
}

/// Label and field selectors of a list or watch.
#[derive(Clone, Debug, Default)]
pub struct Selectors {
    /// `-l` / `labelSelector`.
    pub labels: Option<String>,
    /// `fieldSelector`.
    pub fields: Option<String>,
}

impl Client {
    /// A client for `server` (`https://host:port`) trusting `ca_pem`, authenticating with `token`.
    pub fn new(server: &str, ca_pem: Option<&str>, token: &str) -> Result<Client, ClientError> {
        let mut builder = reqwest::Client::builder().use_rustls_tls().tcp_nodelay(true).pool_idle_timeout(std::time::Duration::from_secs(60));
        if let Some(pem) = ca_pem {
            let cert = reqwest::Certificate::from_pem(pem.as_bytes())
                .map_err(|e| ClientError::Config(format!("the kubeconfig's CA certificate is unreadable: {e}")))?;
            builder = builder.add_root_certificate(cert).tls_built_in_root_certs(false);
        }
        let http = builder.build().map_err(|e| ClientError::Config(format!("building the HTTP client: {e}")))?;
        Ok(Client { server: server.trim_end_matches('/').to_string(), token: token.to_string(), http, print_warnings: false })
    }

    /// A client from a kubeconfig's current context.
    pub fn from_kubeconfig(config: &Kubeconfig) -> Result<Client, ClientError> {
        let (server, ca, token) = config.current().map_err(ClientError::Config)?;
        Client::new(&server, ca.as_deref(), &token)
    }

    /// Prints the server's `Warning` headers (image policy warnings, deprecations) to stderr,
    /// as kubectl does; for command-line use.
    pub fn print_warnings(mut self) -> Client {
        self.print_warnings = true;
        self
    }

    /// The same connection pool with another identity (many simulated nodes share one pool).
    pub fn with_token(&self, token: &str) -> Client {
        Client { token: token.to_string(), ..self.clone() }
    }

    /// The server URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The bearer token.
    pub fn token(&self) -> &str {
        &self.token
    }

    async fn send(&self, method: Method, path: &str, query: &[(&str, String)], body: Option<&Value>) -> Result<reqwest::Response, ClientError> {
        let mut request = self.http.request(method, format!("{}{}", self.server, path)).bearer_auth(&self.token).query(query);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|source| ClientError::Transport { server: self.server.clone(), source })?;
        if response.status().is_success() {
            if self.print_warnings {
                for warning in response.headers().get_all(reqwest::header::WARNING) {
                    let text = warning.to_str().unwrap_or("");
                    let text = text.strip_prefix("299 - ").unwrap_or(text).trim_matches('"');
                    eprintln!("Warning: {text}");
                }
            }
            return Ok(response);
        }
        let code = response.status();
        let text = response.text().await.unwrap_or_default();
        Err(status_error(code, &text))
    }

    async fn json(&self, method: Method, path: &str, query: &[(&str, String)], body: Option<&Value>) -> Result<Value, ClientError> {
        let response = self.send(method, path, query, body).await?;
        response.json().await.map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// GET of any path, e.g. `/version`.
    pub async fn get_path(&self, path: &str) -> Result<Value, ClientError> {
        self.json(Method::GET, path, &[], None).await
    }

    /// One object.
    pub async fn get(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> Result<Value, ClientError> {
        self.json(Method::GET, &rt.object_path(ns, name), &[], None).await
    }

    /// Objects of a type in `ns` (all namespaces when `None`) and the list's resourceVersion.
    pub async fn list(&self, rt: &ResourceType, ns: Option<&str>, selectors: &Selectors) -> Result<(Vec<Value>, String), ClientError> {
        let mut query = Vec::new();
        if let Some(l) = selectors.labels.as_ref() {
            query.push(("labelSelector", l.clone()));
        }
        if let Some(f) = selectors.fields.as_ref() {
            query.push(("fieldSelector", f.clone()));
        }
        let list = self.json(Method::GET, &rt.collection_path(ns), &query, None).await?;
        let rv = list.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("").to_string();
        let items = list.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
        Ok((items, rv))
    }

    /// Creates an object.
    pub async fn create(&self, rt: &ResourceType, ns: Option<&str>, object: &Value) -> Result<Value, ClientError> {
        self.json(Method::POST, &rt.collection_path(ns), &[], Some(object)).await
    }

    /// Replaces an object.
    pub async fn update(&self, rt: &ResourceType, ns: Option<&str>, name: &str, object: &Value) -> Result<Value, ClientError> {
        self.json(Method::PUT, &rt.object_path(ns, name), &[], Some(object)).await
    }

    /// Replaces an object's status.
    pub async fn update_status(&self, rt: &ResourceType, ns: Option<&str>, name: &str, object: &Value) -> Result<Value, ClientError> {
        self.json(Method::PUT, &format!("{}/status", rt.object_path(ns, name)), &[], Some(object)).await
    }

    /// Deletes an object; `grace` overrides its termination grace period.
    pub async fn delete(&self, rt: &ResourceType, ns: Option<&str>, name: &str, grace: Option<i64>) -> Result<Value, ClientError> {
        let query: Vec<(&str, String)> = grace.map(|g| vec![("gracePeriodSeconds", g.to_string())]).unwrap_or_default();
        self.json(Method::DELETE, &rt.object_path(ns, name), &query, None).await
    }

    /// Watches a type from `resource_version` (empty: the current state first, as ADDED).
    pub async fn watch(&self, rt: &ResourceType, ns: Option<&str>, selectors: &Selectors, resource_version: &str) -> Result<EventStream, ClientError> {
        let mut query = vec![("watch", "true".to_string()), ("resourceVersion", resource_version.to_string())];
        if let Some(l) = selectors.labels.as_ref() {
            query.push(("labelSelector", l.clone()));
        }
        if let Some(f) = selectors.fields.as_ref() {
            query.push(("fieldSelector", f.clone()));
        }
        let response = self.send(Method::GET, &rt.collection_path(ns), &query, None).await?;
        Ok(Box::pin(json_lines(response).map(|line| {
            let line = line?;
            let event: WatchEvent = serde_json::from_slice(&line).map_err(|e| ClientError::Decode(format!("watch event: {e}")))?;
            if event.type_ == "ERROR" {
                let message = event.object.get("message").and_then(Value::as_str).unwrap_or("watch error").to_string();
                let code = event.object.get("code").and_then(Value::as_u64).unwrap_or(500) as u16;
                let reason = event.object.get("reason").and_then(Value::as_str).unwrap_or("").to_string();
                return Err(ClientError::Api { code, reason, message, status: event.object });
            }
            Ok(event)
        })))
    }

    /// A pod's log as a byte stream.
    pub async fn logs(&self, ns: &str, pod: &str, container: Option<&str>, follow: bool, previous: bool, tail: Option<i64>) -> Result<ByteStream, ClientError> {
        let mut query = vec![("follow", follow.to_string()), ("previous", previous.to_string())];
        if let Some(c) = container {
            query.push(("container", c.to_string()));
        }
        if let Some(t) = tail {
            query.push(("tailLines", t.to_string()));
        }
        self.get_stream(&format!("/api/v1/namespaces/{ns}/pods/{pod}/log"), &query).await
    }

    /// The flows the cluster's nodes logged that `filter` selects ([`api::flow`]), one JSON
    /// object per line; following, for as long as the stream is read.
    pub async fn flows(&self, filter: &api::flow::FlowFilter) -> Result<ByteStream, ClientError> {
        self.get_stream(api::flow::PATH, &filter.to_query()).await
    }

    /// A GET of `path` whose answer is read as it comes.
    pub async fn get_stream(&self, path: &str, query: &[(&str, String)]) -> Result<ByteStream, ClientError> {
        let response = self.send(Method::GET, path, query, None).await?;
        let server = self.server.clone();
        Ok(Box::pin(response.bytes_stream().map_err(move |source| ClientError::Transport { server: server.clone(), source })))
    }
}

/// Typed conveniences over the untyped calls.
impl Client {
    /// One typed object.
    pub async fn get_as<K: Resource + DeserializeOwned>(&self, ns: Option<&str>, name: &str) -> Result<K, ClientError> {
        decode(self.get(ResourceType::of::<K>(), ns, name).await?)
    }

    /// Typed objects.
    pub async fn list_as<K: Resource + DeserializeOwned>(&self, ns: Option<&str>, selectors: &Selectors) -> Result<(Vec<K>, String), ClientError> {
        let (items, rv) = self.list(ResourceType::of::<K>(), ns, selectors).await?;
        Ok((items.into_iter().map(decode).collect::<Result<_, _>>()?, rv))
    }

    /// Creates a typed object.
    pub async fn create_as<K: Resource + Serialize + DeserializeOwned>(&self, ns: Option<&str>, object: &K) -> Result<K, ClientError> {
        decode(self.create(ResourceType::of::<K>(), ns, &encode(object)?).await?)
    }

    /// Replaces a typed object.
    pub async fn update_as<K: Resource + Serialize + DeserializeOwned>(&self, ns: Option<&str>, name: &str, object: &K) -> Result<K, ClientError> {
        decode(self.update(ResourceType::of::<K>(), ns, name, &encode(object)?).await?)
    }

    /// Replaces a typed object's status.
    pub async fn update_status_as<K: Resource + Serialize + DeserializeOwned>(&self, ns: Option<&str>, name: &str, object: &K) -> Result<K, ClientError> {
        decode(self.update_status(ResourceType::of::<K>(), ns, name, &encode(object)?).await?)
    }
}

/// Decodes a JSON object into a type.
pub fn decode<K: DeserializeOwned>(value: Value) -> Result<K, ClientError> {
    serde_json::from_value(value).map_err(|e| ClientError::Decode(e.to_string()))
}

fn encode<K: Serialize>(object: &K) -> Result<Value, ClientError> {
    serde_json::to_value(object).map_err(|e| ClientError::Decode(e.to_string()))
}

fn status_error(code: StatusCode, text: &str) -> ClientError {
    let status: Value = serde_json::from_str(text).unwrap_or_else(|_| serde_json::json!({"message": text}));
    let message = status.get("message").and_then(Value::as_str).filter(|m| !m.is_empty()).unwrap_or(text).to_string();
    let reason = status.get("reason").and_then(Value::as_str).unwrap_or("").to_string();
    ClientError::Api { code: code.as_u16(), reason, message, status }
}

/// Splits a streaming body into newline-terminated lines.
fn json_lines(response: reqwest::Response) -> impl Stream<Item = Result<Vec<u8>, ClientError>> + Send {
    let server = response.url().to_string();
    let bytes = response.bytes_stream();
    futures::stream::unfold((bytes, Vec::<u8>::new(), server), |(mut bytes, mut buffer, server)| async move {
        loop {
            if let Some(pos) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=pos).collect();
                if line.len() > 1 {
                    return Some((Ok(line), (bytes, buffer, server)));
                }
                continue;
            }
            match bytes.next().await {
                Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                Some(Err(source)) => return Some((Err(ClientError::Transport { server: server.clone(), source }), (bytes, Vec::new(), server))),
                None => return None,
            }
        }
    })
}
