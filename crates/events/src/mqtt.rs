//! MQTT 3.1.1 as a source: one connection per subscription, topic filters with `+` and `#`,
//! QoS 0, 1 or 2. With QoS 1 or 2 the session is persistent (clean session off, a fixed client
//! id): the broker keeps the subscription and the unacknowledged messages while the dispatcher
//! is away and sends them again when it returns. Acks are manual: PUBACK (QoS 1) or PUBREC
//! (QoS 2) goes out only when the dispatcher settles the message, after the handler answered
//! or the dead letter was published. MQTT brokers redeliver only on reconnect, so retries are
//! the dispatcher's. MQTT 3.1.1 has no headers: an event's id is made on arrival.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, Publish, QoS, SubscribeReasonCode};
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::{Ack, Acknowledge, Broker, BrokerError, Message, MessageStream, Settle};

/// One MQTT subscription of a Function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// The topic filter (`+` one level, `#` the rest).
    pub topic: String,
    /// 0, 1 or 2.
    pub qos: u8,
    /// The client id; with QoS 1 or 2 the broker keeps the session under it.
    pub client_id: String,
}

/// How long connecting and subscribing may take before the attempt fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Durable publishes waiting for their acknowledgement.
#[derive(Default)]
struct Publishes {
    /// In the order they were handed to the client, until the client gives each a packet id.
    queued: VecDeque<oneshot::Sender<()>>,
    /// By packet id, until the broker acknowledges.
    sent: HashMap<u16, oneshot::Sender<()>>,
}

/// A connection to an MQTT broker.
#[derive(Clone)]
pub struct MqttBroker {
    url: String,
    client: AsyncClient,
    publishes: Arc<std::sync::Mutex<Publishes>>,
    /// Held across queueing a publish and handing it to the client, so ids match in order.
    order: Arc<Mutex<()>>,
}

fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// `mqtt://host[:port]` as host and port (1883 by default).
pub fn parse_url(url: &str) -> Result<(String, u16), String> {
    let rest = url.strip_prefix("mqtt://").ok_or_else(|| format!("{url:?} is not an mqtt://host:port URL"))?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
            (host, port.parse::<u16>().map_err(|_| format!("{url:?}: the port {port:?} is not a number from 1 to 65535"))?)
        }
        _ => (rest, 1883),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(['/', '@', ' ']) || port == 0 {
        return Err(format!("{url:?} is not an mqtt://host:port URL"));
    }
    Ok((host.to_string(), port))
}

impl MqttBroker {
    fn options(url: &str, client_id: &str, persistent: bool) -> Result<MqttOptions, BrokerError> {
        let (host, port) = parse_url(url).map_err(|message| BrokerError::Connect { url: url.to_string(), message })?;
        let mut options = MqttOptions::new(client_id, host, port);
        options.set_keep_alive(Duration::from_secs(15)).set_clean_session(!persistent).set_manual_acks(true).set_inflight(1024);
        options.set_max_packet_size(16 << 20, 16 << 20);
        Ok(options)
    }

    /// Connects as a publisher (clean session): for dead letters of other brokers and tests.
    pub async fn connect(url: &str, client_id: &str) -> Result<MqttBroker, BrokerError> {
        let (broker, _) = MqttBroker::start(url, Self::options(url, client_id, false)?, None).await?;
        Ok(broker)
    }

    /// Connects as `subscription.client_id`, subscribes, and returns once the broker granted
    /// the subscription; its messages follow on the stream, across reconnects.
    pub async fn subscribe(url: &str, subscription: &Subscription) -> Result<(MqttBroker, MessageStream), BrokerError> {
        let options = Self::options(url, &subscription.client_id, subscription.qos > 0)?;
        let (broker, stream) = MqttBroker::start(url, options, Some(subscription.clone())).await?;
        Ok((broker, stream.unwrap_or_else(|| Box::pin(futures::stream::empty()))))
    }

    async fn start(url: &str, options: MqttOptions, subscription: Option<Subscription>) -> Result<(MqttBroker, Option<MessageStream>), BrokerError> {
        let (client, eventloop) = AsyncClient::new(options, 1024);
        let broker = MqttBroker { url: url.to_string(), client, publishes: Arc::default(), order: Arc::default() };
        let (ready_tx, ready_rx) = oneshot::channel();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let wants_messages = subscription.is_some();
        tokio::spawn(broker.clone().drive(eventloop, subscription, ready_tx, tx));
        let connect_failed = |message: String| BrokerError::Connect { url: url.to_string(), message };
        match tokio::time::timeout(CONNECT_TIMEOUT, ready_rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(e),
            Ok(Err(_)) => return Err(connect_failed("the connection ended".into())),
            Err(_) => return Err(connect_failed(format!("no answer within {CONNECT_TIMEOUT:?}"))),
        }
        let stream: Option<MessageStream> = wants_messages.then(|| Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx))) as MessageStream);
        Ok((broker, stream))
    }

    /// Polls the connection until the message stream is dropped (or, for a publisher, until
    /// every handle is): reconnects after errors, subscribes again on a new session, and
    /// passes messages and acknowledgements on.
    async fn drive(
        self,
        mut eventloop: EventLoop,
        subscription: Option<Subscription>,
        ready: oneshot::Sender<Result<(), BrokerError>>,
        tx: mpsc::UnboundedSender<Message>,
    ) {
        let mut ready = Some(ready);
        let publisher_only = subscription.is_none();
        let mut unused = tokio::time::interval(Duration::from_secs(1));
        loop {
            let event = tokio::select! {
                event = eventloop.poll() => event,
                _ = tx.closed(), if !publisher_only => {
                    let _ = self.client.try_disconnect();
                    return;
                }
                // Only this task holds the publisher: nobody can publish any more.
                _ = unused.tick(), if publisher_only => {
                    if Arc::strong_count(&self.order) == 1 {
                        let _ = self.client.try_disconnect();
                        return;
                    }
                    continue;
                }
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(connack))) => match &subscription {
                    // A resumed session still has the subscription; a new one needs it again.
                    Some(s) if !connack.session_present || ready.is_some() => {
                        if let Err(e) = self.client.try_subscribe(s.topic.clone(), qos(s.qos)) {
                            tracing::warn!(url = %self.url, topic = %s.topic, error = %e, "MQTT subscribe");
                        }
                    }
                    Some(_) => {}
                    None => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(Ok(()));
                        }
                    }
                },
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    let refused = ack.return_codes.iter().any(|c| matches!(c, SubscribeReasonCode::Failure));
                    let topic = subscription.as_ref().map(|s| s.topic.clone()).unwrap_or_default();
                    if let Some(r) = ready.take() {
                        let result = if refused {
                            Err(BrokerError::Subscribe { url: self.url.clone(), subject: topic, message: "the broker refused the subscription".into() })
                        } else {
                            Ok(())
                        };
                        let failed = result.is_err();
                        let _ = r.send(result);
                        if failed {
                            return;
                        }
                    } else if refused {
                        tracing::warn!(url = %self.url, topic = %topic, "the broker refused the subscription after a reconnect");
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    if tx.send(self.message(publish)).is_err() {
                        return;
                    }
                }
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    let mut p = self.publishes.lock().unwrap_or_else(|e| e.into_inner());
                    // A packet sent again after a reconnect keeps its id and its waiter.
                    if !p.sent.contains_key(&pkid) {
                        if let Some(waiter) = p.queued.pop_front() {
                            p.sent.insert(pkid, waiter);
                        }
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => self.acknowledged(ack.pkid),
                Ok(Event::Incoming(Packet::PubComp(comp))) => self.acknowledged(comp.pkid),
                Ok(_) => {}
                Err(e) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(Err(BrokerError::Connect { url: self.url.clone(), message: e.to_string() }));
                        return;
                    }
                    tracing::warn!(url = %self.url, error = %e, "MQTT connection; reconnecting in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn acknowledged(&self, pkid: u16) {
        let waiter = self.publishes.lock().unwrap_or_else(|e| e.into_inner()).sent.remove(&pkid);
        if let Some(w) = waiter {
            let _ = w.send(());
        }
    }

    fn message(&self, publish: Publish) -> Message {
        let ack = (publish.qos != QoS::AtMostOnce).then(|| {
            let handle = Publish { payload: Bytes::new(), topic: String::new(), ..publish.clone() };
            Ack(Arc::new(MqttAck { client: self.client.clone(), url: self.url.clone(), publish: handle }))
        });
        Message {
            id: uuid::Uuid::new_v4().to_string(),
            subject: publish.topic,
            source: self.url.clone(),
            payload: publish.payload,
            reply: None,
            content_type: None,
            time: SystemTime::now(),
            // DUP says a delivery may have happened before, not that a handler saw it: the
            // event gets all its deliveries here.
            delivered: 1,
            ack,
        }
    }

    /// Hands a QoS 1 publish to the client; the receiver fires when the broker has it.
    async fn send(&self, topic: &str, payload: Bytes) -> Result<oneshot::Receiver<()>, BrokerError> {
        let (done, wait) = oneshot::channel();
        let _order = self.order.lock().await;
        self.publishes.lock().unwrap_or_else(|e| e.into_inner()).queued.push_back(done);
        if let Err(e) = self.client.publish(topic, QoS::AtLeastOnce, false, payload.to_vec()).await {
            self.publishes.lock().unwrap_or_else(|e| e.into_inner()).queued.pop_back();
            return Err(BrokerError::Publish { url: self.url.clone(), subject: topic.to_string(), message: e.to_string() });
        }
        Ok(wait)
    }
}

#[async_trait::async_trait]
impl Broker for MqttBroker {
    async fn subscribe(&self, subject: &str, _queue: Option<&str>) -> Result<MessageStream, BrokerError> {
        Err(BrokerError::Subscribe {
            url: self.url.clone(),
            subject: subject.to_string(),
            message: "an MQTT subscription has a connection of its own: use MqttBroker::subscribe".into(),
        })
    }

    /// Publishes at QoS 1 (MQTT 3.1.1 has no headers: they are dropped).
    async fn publish(&self, subject: &str, payload: Bytes, _headers: &[(&str, String)]) -> Result<(), BrokerError> {
        self.send(subject, payload).await.map(drop)
    }

    async fn publish_durable(&self, subject: &str, payload: Bytes, _headers: &[(&str, String)]) -> Result<(), BrokerError> {
        let wait = self.send(subject, payload).await?;
        match tokio::time::timeout(CONNECT_TIMEOUT, wait).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(BrokerError::Publish { url: self.url.clone(), subject: subject.to_string(), message: "the broker did not acknowledge it".into() }),
        }
    }
}

/// One QoS 1 or 2 message's acknowledgement.
struct MqttAck {
    client: AsyncClient,
    url: String,
    publish: Publish,
}

#[async_trait::async_trait]
impl Acknowledge for MqttAck {
    async fn settle(&self, how: Settle) -> Result<(), BrokerError> {
        if let Settle::Retry(_) = how {
            // The dispatcher retries; an ack now would lose the message.
            return Ok(());
        }
        self.client.ack(&self.publish).await.map_err(|e| BrokerError::Publish {
            url: self.url.clone(),
            subject: format!("ack of packet {}", self.publish.pkid),
            message: e.to_string(),
        })
    }

    fn redelivers(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_host_and_port() {
        assert_eq!(parse_url("mqtt://10.0.0.5:1884"), Ok(("10.0.0.5".into(), 1884)));
        assert_eq!(parse_url("mqtt://broker.lan"), Ok(("broker.lan".into(), 1883)));
        assert_eq!(parse_url("mqtt://[::1]:1883"), Ok(("::1".into(), 1883)));
        for bad in ["tcp://x:1", "mqtt://", "mqtt://x:port", "mqtt://x:0", "mqtt://u@x:1", "mqtt://x:70000"] {
            assert!(parse_url(bad).is_err(), "{bad} must be refused");
        }
    }
}
