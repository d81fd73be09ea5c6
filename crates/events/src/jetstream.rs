//! NATS JetStream as a source: a durable pull consumer on a stream, with explicit acks. A
//! message stays with the server until the dispatcher settles it: acked once handled, nak'd
//! with a delay to be delivered again, terminated once dead-lettered, and delivered again by
//! the server if nothing is heard within the ack wait (a dispatcher that crashed). The
//! server's delivery count becomes the event's delivery count.

use std::time::{Duration, SystemTime};

use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::jetstream::AckKind;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::nats::{header, NatsBroker};
use crate::{Ack, Acknowledge, BrokerError, Message, MessageStream, Settle};

/// The durable consumer a Function reads a stream with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerSpec {
    /// The stream, which must exist.
    pub stream: String,
    /// The durable consumer's name: its progress survives restarts of either side.
    pub durable: String,
    /// Only messages on subjects this filter matches (empty: all of the stream).
    pub filter_subject: String,
    /// How long the server waits for an ack before it delivers again.
    pub ack_wait: Duration,
    /// Deliveries at most, as the server counts them (-1: no limit).
    pub max_deliver: i64,
    /// The waits before redeliveries after an ack wait ran out (empty: the ack wait).
    pub backoff: Vec<Duration>,
    /// Messages delivered and not yet settled at most; the server holds back the rest.
    pub max_ack_pending: i64,
}

fn consumer_error(broker: &NatsBroker, spec: &ConsumerSpec, message: String) -> BrokerError {
    BrokerError::Subscribe { url: broker.url.clone(), subject: format!("stream {} consumer {}", spec.stream, spec.durable), message }
}

impl NatsBroker {
    /// Creates (or updates) the durable consumer and streams its messages; the stream keeps
    /// going across reconnects and re-creates the consumer if it is deleted. Fails when the
    /// stream does not exist or the server refuses the consumer.
    pub async fn consume(&self, spec: &ConsumerSpec) -> Result<MessageStream, BrokerError> {
        let consumer = self.consumer(spec).await?;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (broker, spec) = (self.clone(), spec.clone());
        tokio::spawn(async move {
            let mut consumer = Some(consumer);
            loop {
                let current = match consumer.take() {
                    Some(c) => c,
                    None => match broker.consumer(&spec).await {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!(error = %e, "JetStream consumer; trying again in 1 s");
                            tokio::select! { _ = tokio::time::sleep(Duration::from_secs(1)) => continue, _ = tx.closed() => return }
                        }
                    },
                };
                let mut messages = match current.messages().await {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(stream = %spec.stream, consumer = %spec.durable, error = %e, "pulling; trying again in 1 s");
                        tokio::select! { _ = tokio::time::sleep(Duration::from_secs(1)) => continue, _ = tx.closed() => return }
                    }
                };
                loop {
                    let next = tokio::select! { next = messages.next() => next, _ = tx.closed() => return };
                    match next {
                        Some(Ok(m)) => {
                            if tx.send(broker.jetstream_message(&spec, m)).is_err() {
                                return;
                            }
                        }
                        Some(Err(e)) if matches!(e.kind(), pull::MessagesErrorKind::MissingHeartbeat) => {
                            tracing::debug!(stream = %spec.stream, error = %e, "pulling");
                        }
                        Some(Err(e)) => {
                            tracing::warn!(stream = %spec.stream, consumer = %spec.durable, error = %e, "pulling; consuming again");
                            break;
                        }
                        None => break,
                    }
                }
            }
        });
        Ok(Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx))))
    }

    async fn consumer(&self, spec: &ConsumerSpec) -> Result<async_nats::jetstream::consumer::PullConsumer, BrokerError> {
        let js = async_nats::jetstream::new(self.client.clone());
        let stream = js.get_stream(&spec.stream).await.map_err(|e| consumer_error(self, spec, format!("stream {}: {e}", spec.stream)))?;
        let config = pull::Config {
            durable_name: Some(spec.durable.clone()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: spec.ack_wait,
            max_deliver: spec.max_deliver,
            backoff: spec.backoff.clone(),
            max_ack_pending: spec.max_ack_pending,
            filter_subject: spec.filter_subject.clone(),
            ..Default::default()
        };
        stream.create_consumer(config).await.map_err(|e| consumer_error(self, spec, e.to_string()))
    }

    fn jetstream_message(&self, spec: &ConsumerSpec, m: async_nats::jetstream::Message) -> Message {
        let (delivered, sequence) = m.info().map(|i| (i.delivered, i.stream_sequence)).unwrap_or((1, 0));
        let m = m.message;
        let headers = m.headers.as_ref();
        let id = header(headers, "Nats-Msg-Id").or_else(|| header(headers, "ce-id")).unwrap_or_else(|| format!("{}-{sequence}", spec.stream));
        let ack = m.reply.as_ref().map(|reply| {
            Ack(std::sync::Arc::new(JetStreamAck { client: self.client.clone(), url: self.url.clone(), reply: reply.to_string(), ack_wait: spec.ack_wait }))
        });
        Message {
            id,
            subject: m.subject.to_string(),
            source: self.url.clone(),
            content_type: header(headers, "Content-Type").or_else(|| header(headers, "content-type")),
            payload: m.payload,
            // The reply subject of a JetStream message is its ack subject, not a requester.
            reply: None,
            time: SystemTime::now(),
            delivered: u32::try_from(delivered.max(1)).unwrap_or(u32::MAX),
            ack,
        }
    }
}

/// One JetStream message's ack subject.
struct JetStreamAck {
    client: async_nats::Client,
    url: String,
    reply: String,
    ack_wait: Duration,
}

impl JetStreamAck {
    async fn send(&self, kind: AckKind) -> Result<(), BrokerError> {
        self.client.publish(self.reply.clone(), Bytes::from(kind)).await.map_err(|e| BrokerError::Publish {
            url: self.url.clone(),
            subject: self.reply.clone(),
            message: e.to_string(),
        })
    }
}

#[async_trait::async_trait]
impl Acknowledge for JetStreamAck {
    async fn settle(&self, how: Settle) -> Result<(), BrokerError> {
        self.send(match how {
            Settle::Done => AckKind::Ack,
            Settle::Retry(wait) => AckKind::Nak(Some(wait)),
            Settle::DeadLettered => AckKind::Term,
        })
        .await
    }

    async fn progress(&self) -> Result<(), BrokerError> {
        self.send(AckKind::Progress).await
    }

    fn redelivers(&self) -> bool {
        true
    }

    fn ack_wait(&self) -> Option<Duration> {
        Some(self.ack_wait)
    }
}
