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

/// The HTTP client deliveries use: kept-alive connections, no proxy, and no redirects (a 3xx
/// is a failed delivery; following one would let a handler send the control plane anywhere).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .unwrap_or_default()
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
        let target = url(IpAddr::V4(Ipv4Addr::LOCALHOST), port, "/").unwrap();
        let outcome = deliver(&client(), target, &message(), 1, Duration::from_secs(5)).await;
        assert_eq!(outcome, Outcome::Failed("HTTP 307".into()));
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0, "the Location was not visited");
        let ok = url(IpAddr::V4(Ipv4Addr::LOCALHOST), elsewhere, "/").unwrap();
        assert_eq!(deliver(&client(), ok, &message(), 1, Duration::from_secs(5)).await, Outcome::Acked(Bytes::new()));
    }
}
