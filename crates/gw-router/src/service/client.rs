//! The backend client: pooled HTTP/1.1 (hyper-util's legacy client) and HTTP/2 prior knowledge
//! (one multiplexed connection per endpoint).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::client::legacy::Client as LegacyClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::error::ForwardError;
use crate::body::Body;

/// How to speak to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    /// HTTP/1.1 (also WebSocket and other upgrades).
    Http1,
    /// HTTP/2 with prior knowledge (h2c, gRPC).
    H2c,
}

pub(crate) struct Client {
    http1: LegacyClient<HttpConnector, Body>,
    h2: Mutex<HashMap<SocketAddr, http2::SendRequest<Body>>>,
    connect_timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub(crate) fn new(connect_timeout: Duration, pool_idle_timeout: Duration) -> Client {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        let http1 = LegacyClient::builder(TokioExecutor::new())
            .pool_idle_timeout(pool_idle_timeout)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Client {
            http1,
            h2: Mutex::new(HashMap::new()),
            connect_timeout,
        }
    }

    /// Sends `req` to `endpoint`. For HTTP/1.1 the URI's authority must be the endpoint (the
    /// `Host` header carries the request's host); for HTTP/2 it is the request's host
    /// (`:authority`) and the connection goes to `endpoint`.
    pub(crate) async fn send(
        &self,
        endpoint: SocketAddr,
        wire: Wire,
        req: http::Request<Body>,
    ) -> Result<http::Response<Incoming>, ForwardError> {
        match wire {
            Wire::Http1 => self.http1.request(req).await.map_err(|e| {
                if e.is_connect() {
                    ForwardError::Connect {
                        endpoint,
                        source: e.into(),
                    }
                } else {
                    ForwardError::Backend {
                        endpoint,
                        source: e.into(),
                    }
                }
            }),
            Wire::H2c => {
                let mut sender = self.h2_sender(endpoint).await?;
                let backend = |e: hyper::Error| ForwardError::Backend {
                    endpoint,
                    source: e.into(),
                };
                if let Err(e) = sender.ready().await {
                    self.forget(endpoint);
                    return Err(backend(e));
                }
                sender.send_request(req).await.map_err(backend)
            }
        }
    }

    fn forget(&self, endpoint: SocketAddr) {
        if let Ok(mut pool) = self.h2.lock() {
            pool.remove(&endpoint);
        }
    }

    async fn h2_sender(
        &self,
        endpoint: SocketAddr,
    ) -> Result<http2::SendRequest<Body>, ForwardError> {
        if let Ok(pool) = self.h2.lock()
            && let Some(s) = pool.get(&endpoint)
            && !s.is_closed()
        {
            return Ok(s.clone());
        }
        let connect_err =
            |source: crate::body::BoxError| ForwardError::Connect { endpoint, source };
        let stream = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect(endpoint),
        )
        .await
        .map_err(|_| {
            connect_err(format!("connect timed out after {:?}", self.connect_timeout).into())
        })?
        .map_err(|e| connect_err(e.into()))?;
        // Nagle only delays small gRPC frames.
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| connect_err(e.into()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%endpoint, error = %e, "h2c backend connection closed");
            }
        });
        if let Ok(mut pool) = self.h2.lock() {
            pool.insert(endpoint, sender.clone());
        }
        Ok(sender)
    }
}
