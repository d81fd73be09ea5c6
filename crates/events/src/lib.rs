//! Broker connectors that feed Functions: subscriptions deliver [`Message`]s, and the
//! dispatcher publishes dead letters and replies back. [`Broker`] is the narrow trait; NATS core
//! and JetStream ([`nats`], [`jetstream`]) and MQTT 3.1.1 ([`mqtt`]) implement it. A message
//! from a broker that keeps it until told (JetStream, MQTT QoS 1 and 2) carries an [`Ack`]: the
//! dispatcher settles it only once the event is handled or dead-lettered, so a crash anywhere
//! before that means a redelivery, never a loss. [`cloudevents`] maps a message to the
//! CloudEvents HTTP binary mode.
#![forbid(unsafe_code)]

pub mod cloudevents;
pub mod jetstream;
pub mod mqtt;
pub mod nats;
#[cfg(feature = "testing")]
pub mod testing;

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::Stream;

/// One message from a broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Its id: the publisher's (`Nats-Msg-Id` or `ce-id` header) or one made on arrival.
    pub id: String,
    /// The subject (or topic) it was published to.
    pub subject: String,
    /// Where it came from, as a URI: `nats://host:port`.
    pub source: String,
    /// The body.
    pub payload: Bytes,
    /// Where the publisher waits for an answer (NATS request/reply).
    pub reply: Option<String>,
    /// The body's media type, when the publisher said.
    pub content_type: Option<String>,
    /// When it arrived.
    pub time: SystemTime,
    /// Which delivery of it this is, as the broker counts (1 where it does not count).
    pub delivered: u32,
    /// How to settle it with the broker, where the broker waits for that.
    pub ack: Option<Ack>,
}

/// How a message ends, as told to the broker that holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settle {
    /// Handled (or dead-lettered): the broker forgets it.
    Done,
    /// Not handled: deliver it again after the wait (only where [`Acknowledge::redelivers`]).
    Retry(Duration),
    /// Failed for good and published to the dead-letter destination: never deliver it again.
    DeadLettered,
}

/// The broker's side of one message held until it is settled.
#[async_trait::async_trait]
pub trait Acknowledge: Send + Sync {
    /// Settles the message.
    async fn settle(&self, how: Settle) -> Result<(), BrokerError>;
    /// Says the message is still being worked on, so the broker's wait for the ack starts over.
    async fn progress(&self) -> Result<(), BrokerError> {
        Ok(())
    }
    /// True when the broker delivers the message again after [`Settle::Retry`] (JetStream);
    /// false when the dispatcher has to retry it itself (MQTT redelivers only on reconnect).
    fn redelivers(&self) -> bool;
    /// How long the broker waits for the ack before it delivers again, where it does.
    fn ack_wait(&self) -> Option<Duration> {
        None
    }
}

/// A handle to settle one message.
#[derive(Clone)]
pub struct Ack(pub Arc<dyn Acknowledge>);

impl fmt::Debug for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ack")
    }
}

impl PartialEq for Ack {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for Ack {}

/// What can go wrong talking to a broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The broker could not be reached.
    #[error("connecting to {url}: {message}")]
    Connect {
        /// The broker.
        url: String,
        /// What the client said.
        message: String,
    },
    /// A subscription was refused.
    #[error("subscribing to {subject} on {url}: {message}")]
    Subscribe {
        /// The broker.
        url: String,
        /// The subject.
        subject: String,
        /// What the client said.
        message: String,
    },
    /// A publish failed.
    #[error("publishing to {subject} on {url}: {message}")]
    Publish {
        /// The broker.
        url: String,
        /// The subject.
        subject: String,
        /// What the client said.
        message: String,
    },
}

/// Messages of one subscription, in arrival order; it ends when the subscription does.
pub type MessageStream = Pin<Box<dyn Stream<Item = Message> + Send>>;

/// A message broker the dispatcher subscribes to and publishes on.
#[async_trait::async_trait]
pub trait Broker: Send + Sync {
    /// Subscribes to `subject` (with the broker's wildcards); with `queue`, subscribers of the
    /// same queue group share the messages.
    async fn subscribe(&self, subject: &str, queue: Option<&str>) -> Result<MessageStream, BrokerError>;
    /// Publishes `payload` to `subject` with `headers`.
    async fn publish(&self, subject: &str, payload: Bytes, headers: &[(&str, String)]) -> Result<(), BrokerError>;
    /// Publishes and returns once the broker has taken the message for good (JetStream: the
    /// stream stored it; MQTT: QoS 1 on the connection the source message came by); dead
    /// letters go this way before the message they replace is settled.
    async fn publish_durable(&self, subject: &str, payload: Bytes, headers: &[(&str, String)]) -> Result<(), BrokerError>;
}
