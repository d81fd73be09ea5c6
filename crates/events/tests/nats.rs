//! The NATS connector against a real nats-server (Debian's `nats-server`).

use std::time::Duration;

use bytes::Bytes;
use events::nats::NatsBroker;
use events::testing::NatsServer;
use events::Broker;
use futures::StreamExt;

#[tokio::test]
async fn wildcard_subscriptions_see_messages_with_their_ids_and_replies() {
    let server = NatsServer::start();
    let broker = NatsBroker::connect(&server.url()).await.expect("connect");
    let mut motion = broker.subscribe("sensors.*.motion", None).await.unwrap();
    let mut everything = broker.subscribe("sensors.>", None).await.unwrap();
    broker.flush().await.unwrap();

    let publisher = NatsBroker::connect(&server.url()).await.unwrap();
    publisher.publish("sensors.cam1.motion", Bytes::from_static(b"one"), &[("Nats-Msg-Id", "abc".to_string())]).await.unwrap();
    publisher.publish("sensors.cam1.temperature", Bytes::from_static(b"two"), &[]).await.unwrap();
    publisher.flush().await.unwrap();

    let first = tokio::time::timeout(Duration::from_secs(5), motion.next()).await.unwrap().unwrap();
    assert_eq!((first.id.as_str(), first.subject.as_str(), &first.payload[..]), ("abc", "sensors.cam1.motion", &b"one"[..]));
    assert_eq!(first.source, server.url());
    let a = tokio::time::timeout(Duration::from_secs(5), everything.next()).await.unwrap().unwrap();
    let b = tokio::time::timeout(Duration::from_secs(5), everything.next()).await.unwrap().unwrap();
    assert_eq!((a.subject.as_str(), b.subject.as_str()), ("sensors.cam1.motion", "sensors.cam1.temperature"));
    assert_ne!(b.id, "", "a message without an id gets one");
    assert!(tokio::time::timeout(Duration::from_millis(200), motion.next()).await.is_err(), "temperature is not motion");
}
