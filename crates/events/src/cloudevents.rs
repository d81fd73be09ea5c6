//! A broker message as a CloudEvents 1.0 event in the HTTP binary content mode: the attributes
//! travel as `ce-` headers, the message payload is the body unchanged.

use crate::Message;

/// The `type` of events made from broker messages.
pub const EVENT_TYPE: &str = "dev.flotilla.message";

/// The extension that says which delivery of the event this is (1 for the first).
pub const DELIVERY_HEADER: &str = "ce-deliverycount";

/// The HTTP headers of delivery `attempt` (1-based) of `message`.
pub fn headers(message: &Message, attempt: u32) -> Vec<(&'static str, String)> {
    let time = chrono::DateTime::<chrono::Utc>::from(message.time).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    vec![
        ("ce-specversion", "1.0".to_string()),
        ("ce-id", message.id.clone()),
        ("ce-source", message.source.clone()),
        ("ce-type", EVENT_TYPE.to_string()),
        ("ce-subject", message.subject.clone()),
        ("ce-time", time),
        (DELIVERY_HEADER, attempt.to_string()),
        ("content-type", message.content_type.clone().unwrap_or_else(|| "application/octet-stream".to_string())),
    ]
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn binary_mode_headers_carry_every_required_attribute() {
        let message = Message {
            id: "m-1".into(),
            subject: "sensors.cam1.motion".into(),
            source: "nats://127.0.0.1:4222".into(),
            payload: bytes::Bytes::from_static(b"{}"),
            reply: None,
            content_type: Some("application/json".into()),
            time: UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456),
            delivered: 1,
            ack: None,
        };
        let h = headers(&message, 2);
        let get = |name: &str| h.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("ce-specversion"), Some("1.0"));
        assert_eq!(get("ce-id"), Some("m-1"));
        assert_eq!(get("ce-source"), Some("nats://127.0.0.1:4222"));
        assert_eq!(get("ce-type"), Some(EVENT_TYPE));
        assert_eq!(get("ce-subject"), Some("sensors.cam1.motion"));
        assert_eq!(get("ce-time"), Some("2023-11-14T22:13:20.123456Z"));
        assert_eq!(get(DELIVERY_HEADER), Some("2"));
        assert_eq!(get("content-type"), Some("application/json"));
    }
}
