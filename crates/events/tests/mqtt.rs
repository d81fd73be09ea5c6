//! The MQTT source against a real mosquitto (Debian's): topic filters with `+` and `#`; with
//! QoS 1 and 2 a message that was not settled comes back when the persistent session
//! reconnects and one that was settled does not; QoS 0 carries no ack; a durable publish
//! returns once the broker has it.

use std::time::Duration;

use bytes::Bytes;
use events::mqtt::{MqttBroker, Subscription};
use events::testing::MosquittoServer;
use events::{Broker, Message, MessageStream, Settle};
use futures::StreamExt;

async fn next(stream: &mut MessageStream) -> Message {
    tokio::time::timeout(Duration::from_secs(10), stream.next()).await.expect("a message within 10 s").expect("the stream goes on")
}

async fn quiet(stream: &mut MessageStream) -> bool {
    tokio::time::timeout(Duration::from_millis(500), stream.next()).await.is_err()
}

fn subscription(topic: &str, qos: u8, client_id: &str) -> Subscription {
    Subscription { topic: topic.into(), qos, client_id: client_id.into() }
}

#[tokio::test]
async fn wildcards_and_qos0() {
    let server = MosquittoServer::start();
    let (_a, mut plus) = MqttBroker::subscribe(&server.url(), &subscription("sensors/+/motion", 0, "plus")).await.expect("subscribe");
    let (_b, mut hash) = MqttBroker::subscribe(&server.url(), &subscription("sensors/#", 0, "hash")).await.expect("subscribe");
    let publisher = MqttBroker::connect(&server.url(), "pub").await.unwrap();
    publisher.publish_durable("sensors/cam1/motion", Bytes::from_static(b"one"), &[]).await.unwrap();
    publisher.publish_durable("sensors/cam1/temp/c", Bytes::from_static(b"two"), &[]).await.unwrap();
    let m = next(&mut plus).await;
    assert_eq!((m.subject.as_str(), &m.payload[..], m.delivered), ("sensors/cam1/motion", &b"one"[..], 1));
    assert_eq!(m.source, server.url());
    assert!(m.ack.is_none(), "QoS 0 has nothing to settle");
    assert!(quiet(&mut plus).await, "+ is one level");
    let (a, b) = (next(&mut hash).await, next(&mut hash).await);
    assert_eq!((a.subject.as_str(), b.subject.as_str()), ("sensors/cam1/motion", "sensors/cam1/temp/c"));
    assert_ne!(a.id, b.id);
}

async fn unsettled_messages_return_on_reconnect(qos: u8) {
    let server = MosquittoServer::start();
    let id = format!("fn-qos{qos}");
    let (broker, mut stream) = MqttBroker::subscribe(&server.url(), &subscription("jobs/#", qos, &id))
        .await
        .unwrap_or_else(|e| panic!("subscribe: {e:?}; the broker's log: {}", server.log()));
    let publisher = MqttBroker::connect(&server.url(), "pub").await.unwrap();
    for i in 0..4 {
        publisher.publish_durable(&format!("jobs/{i}"), Bytes::from(format!("job-{i}")), &[]).await.unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next(&mut stream).await);
    }
    assert!(got.iter().all(|m| !m.ack.as_ref().unwrap().0.redelivers()), "MQTT retries are the dispatcher's");
    // job-0 and job-2 are done; job-1 is retried by the dispatcher (no ack yet); job-3 is left.
    for i in [0, 2] {
        got[i].ack.as_ref().unwrap().0.settle(Settle::Done).await.unwrap();
    }
    got[1].ack.as_ref().unwrap().0.settle(Settle::Retry(Duration::ZERO)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(stream);
    drop(broker);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // While the session is away a message arrives; the broker keeps it for the session.
    publisher.publish_durable("jobs/4", Bytes::from_static(b"job-4"), &[]).await.unwrap();
    let (_broker, mut stream) = MqttBroker::subscribe(&server.url(), &subscription("jobs/#", qos, &id)).await.expect("resume");
    let mut again = Vec::new();
    for _ in 0..3 {
        let m = next(&mut stream).await;
        again.push(String::from_utf8(m.payload.to_vec()).unwrap());
        m.ack.as_ref().unwrap().0.settle(Settle::Done).await.unwrap();
    }
    again.sort();
    assert_eq!(again, ["job-1", "job-3", "job-4"], "the unsettled two and the one kept for the session");
    assert!(quiet(&mut stream).await, "settled messages do not return: {}", server.log());
}

#[tokio::test]
async fn qos1_unsettled_messages_return_on_reconnect() {
    unsettled_messages_return_on_reconnect(1).await;
}

#[tokio::test]
async fn qos2_unsettled_messages_return_on_reconnect() {
    unsettled_messages_return_on_reconnect(2).await;
}
