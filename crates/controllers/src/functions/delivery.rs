//! One delivery of an event to one replica: an HTTP POST in the CloudEvents binary mode, and
//! what came of it.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use events::Message;

/// How a delivery ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx: the event is done; the body is the reply.
    Acked(Bytes),
    /// Nothing listens on the replica's port yet (it is still starting): try again soon,
    /// without counting a delivery.
    NotListening,
    /// Another status, a timeout or a broken connection: a failed delivery.
    Failed(String),
}

/// The URL events for a replica at `ip` go to.
pub fn url(ip: IpAddr, port: u16, path: &str) -> Option<reqwest::Url> {
    let host = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    reqwest::Url::parse(&format!("http://{host}:{port}{path}")).ok()
}

/// Posts `message` (delivery `attempt`) to `url`, waiting at most `timeout`.
pub async fn deliver(http: &reqwest::Client, url: reqwest::Url, message: &Message, attempt: u32, timeout: Duration) -> Outcome {
    let mut request = http.post(url).timeout(timeout).body(message.payload.clone());
    for (name, value) in events::cloudevents::headers(message, attempt) {
        request = request.header(name, value);
    }
    match request.send().await {
        Ok(response) if response.status().is_success() => match response.bytes().await {
            Ok(body) => Outcome::Acked(body),
            Err(e) => Outcome::Failed(format!("reading the answer: {e}")),
        },
        Ok(response) => Outcome::Failed(format!("HTTP {}", response.status().as_u16())),
        Err(e) if e.is_connect() && !e.is_timeout() => Outcome::NotListening,
        Err(e) if e.is_timeout() => Outcome::Failed(format!("no answer within {timeout:?}")),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}
