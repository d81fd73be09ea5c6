//! Broker connectors that feed Functions: subscriptions deliver [`Message`]s, and the
//! dispatcher publishes dead letters and replies back. [`Broker`] is the narrow trait; NATS is
//! its first implementation. [`cloudevents`] maps a message to the CloudEvents HTTP binary mode.
#![forbid(unsafe_code)]

pub mod cloudevents;
pub mod nats;
#[cfg(feature = "testing")]
pub mod testing;

use std::pin::Pin;
use std::time::SystemTime;

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
}

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
}
