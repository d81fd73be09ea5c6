//! The HTTP/1.1 client deliveries use: kept-alive connections per replica address, straight on
//! hyper's connection API. At ten thousand events a second the general client's layers (URL
//! parsing, redirect handling, proxy matching, its pool's bookkeeping) cost more than the
//! request itself; this one does a POST and nothing else. It never follows redirects.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

/// Idle connections kept per address at most.
const IDLE_PER_ADDRESS: usize = 1024;

/// Why a request got no answer.
#[derive(Debug)]
pub enum RequestError {
    /// No connection could be made: nothing listens there (yet).
    Connect,
    /// No answer within the time.
    Timeout,
    /// Anything else: a broken connection, a malformed answer.
    Other(String),
}

/// Kept-alive HTTP/1.1 connections, by address.
#[derive(Default)]
pub struct Client {
    idle: Mutex<HashMap<SocketAddr, Vec<SendRequest<Full<Bytes>>>>>,
}

impl Client {
    fn take(&self, addr: SocketAddr) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let pool = idle.get_mut(&addr)?;
        while let Some(sender) = pool.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        idle.remove(&addr);
        None
    }

    fn put(&self, addr: SocketAddr, sender: SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let pool = idle.entry(addr).or_default();
        if pool.len() < IDLE_PER_ADDRESS {
            pool.push(sender);
        }
    }

    async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, RequestError> {
        let stream = tokio::net::TcpStream::connect(addr).await.map_err(|_| RequestError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.map_err(|e| RequestError::Other(e.to_string()))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// Sends the request `make` builds to `addr` and reads the whole answer, within `timeout`.
    /// A kept-alive connection the replica closed meanwhile gets the request again on a new one.
    pub async fn send(
        &self,
        addr: SocketAddr,
        make: impl Fn() -> http::Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<(http::StatusCode, Bytes), RequestError> {
        tokio::time::timeout(timeout, self.exchange(addr, make)).await.unwrap_or(Err(RequestError::Timeout))
    }

    async fn exchange(&self, addr: SocketAddr, make: impl Fn() -> http::Request<Full<Bytes>>) -> Result<(http::StatusCode, Bytes), RequestError> {
        let (mut sender, mut reused) = match self.take(addr) {
            Some(sender) => (sender, true),
            None => (Self::connect(addr).await?, false),
        };
        let response = loop {
            let sent = match sender.ready().await {
                Ok(()) => sender.send_request(make()).await,
                Err(e) => Err(e),
            };
            match sent {
                Ok(response) => break response,
                Err(e) if reused && (e.is_canceled() || e.is_closed() || e.is_incomplete_message()) => {
                    sender = Self::connect(addr).await?;
                    reused = false;
                }
                Err(e) => return Err(RequestError::Other(e.to_string())),
            }
        };
        let status = response.status();
        let body = response.into_body().collect().await.map_err(|e| RequestError::Other(format!("reading the answer: {e}")))?.to_bytes();
        self.put(addr, sender);
        Ok((status, body))
    }
}
