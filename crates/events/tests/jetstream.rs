//! The JetStream source against a real nats-server with JetStream on: a durable consumer
//! delivers what the stream holds, a message comes back until it is settled (nak with a delay,
//! an ack wait that runs out), the server's delivery count travels with it, a terminated
//! message never returns, and the consumer's progress outlives the connection.

use std::time::{Duration, Instant};

use bytes::Bytes;
use events::jetstream::ConsumerSpec;
use events::nats::NatsBroker;
use events::testing::{create_stream, stream_messages, NatsServer};
use events::{Broker, Message, MessageStream, Settle};
use futures::StreamExt;

fn spec(durable: &str) -> ConsumerSpec {
    ConsumerSpec {
        stream: "SENSORS".into(),
        durable: durable.into(),
        filter_subject: "sensors.>".into(),
        ack_wait: Duration::from_millis(800),
        max_deliver: -1,
        backoff: Vec::new(),
        max_ack_pending: 100,
    }
}

async fn next(stream: &mut MessageStream) -> Message {
    tokio::time::timeout(Duration::from_secs(10), stream.next()).await.expect("a message within 10 s").expect("the stream goes on")
}

async fn settle(message: &Message, how: Settle) {
    message.ack.as_ref().expect("a JetStream message carries its ack").0.settle(how).await.expect("settle");
}

#[tokio::test]
async fn messages_come_back_until_settled_with_the_servers_delivery_count() {
    let server = NatsServer::start();
    create_stream(&server.url(), "SENSORS", &["sensors.>"]).await;
    let broker = NatsBroker::connect(&server.url()).await.unwrap();
    for (i, subject) in ["sensors.a", "sensors.b", "sensors.c"].iter().enumerate() {
        broker.publish_durable(subject, Bytes::from(format!("m{i}")), &[("Nats-Msg-Id", format!("id-{i}"))]).await.expect("stored");
    }
    assert_eq!(stream_messages(&server.url(), "SENSORS").await, 3, "publish_durable returns once the stream has it");

    let mut stream = broker.consume(&spec("fn")).await.expect("consume");
    let mut first = Vec::new();
    for _ in 0..3 {
        first.push(next(&mut stream).await);
    }
    let ids: Vec<&str> = first.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["id-0", "id-1", "id-2"], "the publisher's ids, in stream order");
    assert!(first.iter().all(|m| m.delivered == 1 && m.reply.is_none()), "first deliveries, and the ack subject is no reply: {first:?}");
    assert!(first[0].ack.as_ref().unwrap().0.redelivers());

    // id-0 is done, id-1 asks to come back after 200 ms, id-2 is left unsettled.
    settle(&first[0], Settle::Done).await;
    let nak = Instant::now();
    settle(&first[1], Settle::Retry(Duration::from_millis(200))).await;
    let again = next(&mut stream).await;
    assert_eq!((again.id.as_str(), again.delivered), ("id-1", 2), "the nak'd message, counted by the server");
    assert!(nak.elapsed() >= Duration::from_millis(180), "not before its delay: {:?}", nak.elapsed());
    settle(&again, Settle::DeadLettered).await;
    let late = next(&mut stream).await;
    assert_eq!((late.id.as_str(), late.delivered), ("id-2", 2), "an unsettled message returns after the ack wait");

    // Progress holds it: it does not come back while worked on.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        late.ack.as_ref().unwrap().0.progress().await.unwrap();
    }
    assert!(tokio::time::timeout(Duration::from_millis(300), stream.next()).await.is_err(), "nothing is delivered again while in progress");
    drop(stream);

    // A new connection resumes the durable consumer: id-2 (never acked) returns, the settled
    // ones do not.
    drop(broker);
    let broker = NatsBroker::connect(&server.url()).await.unwrap();
    let mut stream = broker.consume(&spec("fn")).await.expect("consume again");
    let resumed = next(&mut stream).await;
    assert_eq!(resumed.id, "id-2");
    settle(&resumed, Settle::Done).await;
    broker.publish_durable("sensors.d", Bytes::from_static(b"m3"), &[]).await.unwrap();
    let fresh = next(&mut stream).await;
    assert_eq!((fresh.id.as_str(), &fresh.payload[..]), ("SENSORS-4", &b"m3"[..]), "without Nats-Msg-Id the id is stream-sequence");
    settle(&fresh, Settle::Done).await;
    assert!(tokio::time::timeout(Duration::from_millis(1500), stream.next()).await.is_err(), "settled messages stay settled");
}

#[tokio::test]
async fn a_missing_stream_is_named_and_a_subject_without_a_stream_still_publishes() {
    let server = NatsServer::start();
    let broker = NatsBroker::connect(&server.url()).await.unwrap();
    let error = broker.consume(&spec("fn")).await.err().expect("no stream SENSORS").to_string();
    assert!(error.contains("stream SENSORS"), "{error}");
    let mut plain = broker.subscribe("dead.letters", None).await.unwrap();
    broker.flush().await.unwrap();
    broker.publish_durable("dead.letters", Bytes::from_static(b"x"), &[]).await.expect("no stream: a core publish");
    assert_eq!(&next(&mut plain).await.payload[..], b"x");
}
