//! One delivery of an event to one replica: an HTTP POST in the CloudEvents binary mode, and
//! what came of it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use events::Message;
use http::HeaderValue;
use http_body_util::Full;

use super::http1::{Client, RequestError};

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

/// Where a replica's events go: its address and the request target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The replica's address and the handler's port.
    pub addr: SocketAddr,
    /// The path events are POSTed to, as a request target.
    pub path: http::Uri,
    /// The `Host` header.
    pub host: HeaderValue,
}

/// The target for a replica at `ip`.
pub fn target(ip: IpAddr, port: u16, path: &str) -> Option<Target> {
    let addr = SocketAddr::new(ip, port);
    Some(Target { addr, path: path.parse().ok()?, host: HeaderValue::from_str(&addr.to_string()).ok()? })
}

/// Posts `message` (delivery `attempt`) to `target`, waiting at most `timeout`.
pub async fn deliver(http: &Client, target: &Target, message: &Message, attempt: u32, timeout: Duration) -> Outcome {
    let mut headers = http::HeaderMap::with_capacity(10);
    headers.insert(http::header::HOST, target.host.clone());
    for (name, value) in events::cloudevents::headers(message, attempt) {
        match HeaderValue::from_str(&value) {
            Ok(value) => {
                headers.insert(name, value);
            }
            Err(_) => return Outcome::Failed(format!("the event's {name} ({value:?}) cannot be an HTTP header")),
        }
    }
    let make = || {
        let mut request = http::Request::new(Full::new(message.payload.clone()));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = target.path.clone();
        *request.headers_mut() = headers.clone();
        request
    };
    match http.send(target.addr, make, timeout).await {
        Ok((status, body)) if status.is_success() => Outcome::Acked(body),
        Ok((status, _)) => Outcome::Failed(format!("HTTP {}", status.as_u16())),
        Err(RequestError::Connect) => Outcome::NotListening,
        Err(RequestError::Timeout) => Outcome::Failed(format!("no answer within {timeout:?}")),
        Err(RequestError::Other(e)) => Outcome::Failed(e),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::SystemTime;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A server that answers every connection's first request with `answer`, and counts them.
    async fn answering(answer: &'static str) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let _ = conn.write_all(answer.as_bytes()).await;
            }
        });
        (port, count)
    }

    fn common_free_port() -> u16 {
        std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port()
    }

    fn message() -> Message {
        Message {
            id: "e-1".into(),
            subject: "a.b".into(),
            source: "nats://x".into(),
            payload: Bytes::from_static(b"{}"),
            reply: None,
            content_type: None,
            time: SystemTime::now(),
            delivered: 1,
            ack: None,
        }
    }

    #[tokio::test]
    async fn a_redirect_is_a_failed_delivery_and_is_not_followed() {
        let (elsewhere, hits) = answering("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        let redirect: &'static str =
            Box::leak(format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{elsewhere}/\r\nContent-Length: 0\r\n\r\n").into_boxed_str());
        let (port, _) = answering(redirect).await;
        let http = Client::default();
        let redirected = target(IpAddr::V4(Ipv4Addr::LOCALHOST), port, "/").unwrap();
        let outcome = deliver(&http, &redirected, &message(), 1, Duration::from_secs(5)).await;
        assert_eq!(outcome, Outcome::Failed("HTTP 307".into()));
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0, "the Location was not visited");
        let ok = target(IpAddr::V4(Ipv4Addr::LOCALHOST), elsewhere, "/").unwrap();
        assert_eq!(deliver(&http, &ok, &message(), 1, Duration::from_secs(5)).await, Outcome::Acked(Bytes::new()));
        let closed = target(IpAddr::V4(Ipv4Addr::LOCALHOST), common_free_port(), "/").unwrap();
        assert_eq!(deliver(&http, &closed, &message(), 1, Duration::from_secs(5)).await, Outcome::NotListening);
        let mut bad = message();
        bad.id = "a\nb".into();
        assert!(matches!(deliver(&http, &ok, &bad, 1, Duration::from_secs(5)).await, Outcome::Failed(why) if why.contains("ce-id")));
    }
}
