//! NATS core as a [`Broker`]: one connection per server URL, subjects with `*` and `>`,
//! queue groups, headers, request/reply. The same connection consumes JetStream streams
//! ([`crate::jetstream`]).

use std::time::SystemTime;

use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;

use crate::{Broker, BrokerError, Message, MessageStream};

/// A connection to one NATS server.
#[derive(Clone)]
pub struct NatsBroker {
    pub(crate) url: String,
    pub(crate) client: async_nats::Client,
}

impl NatsBroker {
    /// Connects to `url` (`nats://host:port`); the client reconnects by itself after that.
    pub async fn connect(url: &str) -> Result<NatsBroker, BrokerError> {
        let client = async_nats::ConnectOptions::new()
            .name("flotilla-dispatcher")
            .retry_on_initial_connect()
            .connect(url)
            .await
            .map_err(|e| BrokerError::Connect { url: url.to_string(), message: e.to_string() })?;
        Ok(NatsBroker { url: url.to_string(), client })
    }

    /// The server URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Publishes `payload` to `subject` and waits up to `timeout` for the first answer.
    pub async fn request(&self, subject: &str, payload: Bytes, timeout: std::time::Duration) -> Result<Bytes, BrokerError> {
        let failed = |message: String| BrokerError::Publish { url: self.url.clone(), subject: subject.to_string(), message };
        let answer = tokio::time::timeout(timeout, self.client.request(subject.to_string(), payload))
            .await
            .map_err(|_| failed(format!("no answer within {timeout:?}")))?;
        answer.map(|m| m.payload).map_err(|e| failed(e.to_string()))
    }

    /// Publishes `payload` to `subject` asking for the answer on `reply` (without waiting).
    pub async fn publish_with_reply(&self, subject: &str, reply: &str, payload: Bytes) -> Result<(), BrokerError> {
        self.client.publish_with_reply(subject.to_string(), reply.to_string(), payload).await.map_err(|e| BrokerError::Publish {
            url: self.url.clone(),
            subject: subject.to_string(),
            message: e.to_string(),
        })
    }

    /// Waits until everything published so far reached the server.
    pub async fn flush(&self) -> Result<(), BrokerError> {
        self.client.flush().await.map_err(|e| BrokerError::Publish { url: self.url.clone(), subject: String::new(), message: e.to_string() })
    }
}

pub(crate) fn header(headers: Option<&HeaderMap>, name: &str) -> Option<String> {
    headers?.get(name).map(|v| v.as_str().to_string()).filter(|v| !v.is_empty())
}

fn header_map(headers: &[(&str, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.insert(*name, value.as_str());
    }
    map
}

/// A NATS message as the dispatcher sees it.
fn message(source: &str, m: async_nats::Message) -> Message {
    let headers = m.headers.as_ref();
    let id = header(headers, "Nats-Msg-Id").or_else(|| header(headers, "ce-id")).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    Message {
        id,
        subject: m.subject.to_string(),
        source: source.to_string(),
        content_type: header(headers, "Content-Type").or_else(|| header(headers, "content-type")),
        payload: m.payload,
        reply: m.reply.map(|r| r.to_string()),
        time: SystemTime::now(),
        delivered: 1,
        ack: None,
    }
}

#[async_trait::async_trait]
impl Broker for NatsBroker {
    async fn subscribe(&self, subject: &str, queue: Option<&str>) -> Result<MessageStream, BrokerError> {
        let refused = |e: async_nats::SubscribeError| BrokerError::Subscribe { url: self.url.clone(), subject: subject.to_string(), message: e.to_string() };
        let subscriber = match queue {
            Some(queue) => self.client.queue_subscribe(subject.to_string(), queue.to_string()).await.map_err(refused)?,
            None => self.client.subscribe(subject.to_string()).await.map_err(refused)?,
        };
        let source = self.url.clone();
        Ok(Box::pin(subscriber.map(move |m| message(&source, m))))
    }

    async fn publish(&self, subject: &str, payload: Bytes, headers: &[(&str, String)]) -> Result<(), BrokerError> {
        let failed = |e: async_nats::PublishError| BrokerError::Publish { url: self.url.clone(), subject: subject.to_string(), message: e.to_string() };
        if headers.is_empty() {
            return self.client.publish(subject.to_string(), payload).await.map_err(failed);
        }
        self.client.publish_with_headers(subject.to_string(), header_map(headers), payload).await.map_err(failed)
    }

    /// Publishes through JetStream and waits for the stream's acknowledgement where a stream
    /// takes the subject; elsewhere publishes on NATS core and waits for the server to have it.
    async fn publish_durable(&self, subject: &str, payload: Bytes, headers: &[(&str, String)]) -> Result<(), BrokerError> {
        let failed = |message: String| BrokerError::Publish { url: self.url.clone(), subject: subject.to_string(), message };
        let js = async_nats::jetstream::new(self.client.clone());
        if js.stream_by_subject(subject.to_string()).await.is_err() {
            self.publish(subject, payload, headers).await?;
            return self.flush().await;
        }
        let ack = js.publish_with_headers(subject.to_string(), header_map(headers), payload).await.map_err(|e| failed(e.to_string()))?;
        ack.await.map(drop).map_err(|e| failed(e.to_string()))
    }
}
