//! The backend client: pooled HTTP/1.1 (hyper-util's legacy client), cleartext or over TLS, and
//! HTTP/2 prior knowledge (one multiplexed connection per endpoint and TLS setup).
//!
//! TLS connections are pooled per [`TlsKey`] (one legacy client each, whose pool is keyed by
//! endpoint), so two backends share a connection only when their TLS setups are equal. Clients
//! of TLS setups that are no longer in the routing table are dropped on [`Client::retain_tls`].

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::client::legacy::Client as LegacyClient;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::error::ForwardError;
use crate::backend_tls::{TlsKey, TlsTarget};
use crate::body::{Body, BoxError};

/// How to speak to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    /// HTTP/1.1 (also WebSocket and other upgrades).
    Http1,
    /// HTTP/2 with prior knowledge (h2c, gRPC; `h2` ALPN over TLS).
    H2c,
}

type H2Key = (SocketAddr, Option<TlsKey>);

/// Connections to backends, counted by the connectors (hyper-util's pool exposes no counts).
#[derive(Debug, Default)]
pub(crate) struct ConnCounts {
    open: AtomicU64,
    opened: AtomicU64,
}

impl ConnCounts {
    /// Counts a new connection; it counts as open until the guard is dropped.
    fn open(self: &Arc<Self>) -> ConnGuard {
        self.opened.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
        ConnGuard(self.clone())
    }

    /// (open now, opened in total).
    pub(crate) fn get(&self) -> (u64, u64) {
        (
            self.open.load(Ordering::Relaxed),
            self.opened.load(Ordering::Relaxed),
        )
    }
}

/// Held by an open backend connection.
#[derive(Debug)]
struct ConnGuard(Arc<ConnCounts>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connector whose connections are counted.
#[derive(Clone)]
struct Counted<C> {
    inner: C,
    counts: Arc<ConnCounts>,
}

impl<C> tower::Service<http::Uri> for Counted<C>
where
    C: tower::Service<http::Uri>,
    C::Future: Send + 'static,
{
    type Response = CountedIo<C::Response>;
    type Error = C::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, C::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connect = self.inner.call(uri);
        let counts = self.counts.clone();
        Box::pin(async move {
            let io = connect.await?;
            Ok(CountedIo {
                io,
                _guard: counts.open(),
            })
        })
    }
}

/// A counted connection.
struct CountedIo<T> {
    io: T,
    _guard: ConnGuard,
}

impl<T: Connection> Connection for CountedIo<T> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for CountedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for CountedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

pub(crate) struct Client {
    http1: LegacyClient<Counted<HttpConnector>, Body>,
    tls_http1: Mutex<HashMap<TlsKey, LegacyClient<Counted<TlsConnector>, Body>>>,
    counts: Arc<ConnCounts>,
    h2: Mutex<HashMap<H2Key, http2::SendRequest<Body>>>,
    connect_timeout: Duration,
    pool_idle_timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

fn tcp_connector(connect_timeout: Duration) -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    connector
}

fn legacy<C>(connector: C, pool_idle_timeout: Duration) -> LegacyClient<C, Body>
where
    C: hyper_util::client::legacy::connect::Connect + Clone,
{
    LegacyClient::builder(TokioExecutor::new())
        .pool_idle_timeout(pool_idle_timeout)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector)
}

/// Why connecting a TLS backend failed.
#[derive(Debug, thiserror::Error)]
enum TlsConnectError {
    /// The TCP connection failed (503, like cleartext backends).
    #[error("TCP connection failed")]
    Tcp(#[source] BoxError),
    /// The handshake failed: certificate, name or protocol (502).
    #[error("TLS handshake failed")]
    Handshake(#[source] std::io::Error),
    /// The handshake did not complete in time (502).
    #[error("TLS handshake timed out after {0:?}")]
    Timeout(Duration),
}

impl TlsConnectError {
    fn into_forward(self, endpoint: SocketAddr) -> ForwardError {
        match self {
            TlsConnectError::Tcp(source) => ForwardError::Connect { endpoint, source },
            e @ (TlsConnectError::Handshake(_) | TlsConnectError::Timeout(_)) => {
                ForwardError::Tls {
                    endpoint,
                    source: e.into(),
                }
            }
        }
    }
}

/// Connects over TCP, then TLS with a fixed configuration and server name (one per [`TlsKey`]).
#[derive(Clone)]
struct TlsConnector {
    tcp: HttpConnector,
    tls: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
    timeout: Duration,
}

impl tower::Service<http::Uri> for TlsConnector {
    type Response = TlsConn;
    type Error = TlsConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<TlsConn, TlsConnectError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.tcp
            .poll_ready(cx)
            .map_err(|e| TlsConnectError::Tcp(e.into()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let tcp = self.tcp.call(uri);
        let tls = self.tls.clone();
        let name = self.server_name.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let stream = tcp
                .await
                .map_err(|e| TlsConnectError::Tcp(e.into()))?
                .into_inner();
            let stream = handshake(&tls, name, stream, timeout).await?;
            Ok(TlsConn(TokioIo::new(stream)))
        })
    }
}

async fn handshake(
    tls: &tokio_rustls::TlsConnector,
    name: ServerName<'static>,
    stream: TcpStream,
    timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, TlsConnectError> {
    tokio::time::timeout(timeout, tls.connect(name, stream))
        .await
        .map_err(|_| TlsConnectError::Timeout(timeout))?
        .map_err(TlsConnectError::Handshake)
}

/// A TLS connection to a backend, as hyper-util's pool wants it.
struct TlsConn(TokioIo<tokio_rustls::client::TlsStream<TcpStream>>);

impl Connection for TlsConn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
}

/// Maps a legacy-client error: connect failures are 503 (TCP) or 502 (TLS), the rest 502.
fn legacy_error(endpoint: SocketAddr, e: hyper_util::client::legacy::Error) -> ForwardError {
    if !e.is_connect() {
        return ForwardError::Backend {
            endpoint,
            source: e.into(),
        };
    }
    let tls = std::error::Error::source(&e)
        .and_then(|s| s.downcast_ref::<TlsConnectError>())
        .map(|t| match t {
            TlsConnectError::Tcp(_) => false,
            TlsConnectError::Handshake(_) | TlsConnectError::Timeout(_) => true,
        });
    match tls {
        Some(true) => ForwardError::Tls {
            endpoint,
            source: e.into(),
        },
        Some(false) | None => ForwardError::Connect {
            endpoint,
            source: e.into(),
        },
    }
}

/// The future of [`Client::send`].
pub(crate) struct Sending<'a> {
    endpoint: SocketAddr,
    state: SendState<'a>,
}

type H2Send<'a> =
    Pin<Box<dyn Future<Output = Result<http::Response<Incoming>, ForwardError>> + Send + 'a>>;

enum SendState<'a> {
    Http1(hyper_util::client::legacy::ResponseFuture),
    H2(H2Send<'a>),
}

impl Future for Sending<'_> {
    type Output = Result<http::Response<Incoming>, ForwardError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match &mut this.state {
            SendState::Http1(f) => Pin::new(f)
                .poll(cx)
                .map_err(|e| legacy_error(this.endpoint, e)),
            SendState::H2(f) => f.as_mut().poll(cx),
        }
    }
}

impl Client {
    pub(crate) fn new(connect_timeout: Duration, pool_idle_timeout: Duration) -> Client {
        let counts = Arc::new(ConnCounts::default());
        Client {
            http1: legacy(
                Counted {
                    inner: tcp_connector(connect_timeout),
                    counts: counts.clone(),
                },
                pool_idle_timeout,
            ),
            tls_http1: Mutex::new(HashMap::new()),
            counts,
            h2: Mutex::new(HashMap::new()),
            connect_timeout,
            pool_idle_timeout,
        }
    }

    /// Sends `req` to `endpoint`, over TLS when `tls` is set. For HTTP/1.1 the URI's
    /// authority must be the endpoint (the `Host` header carries the request's host); for
    /// HTTP/2 it is the request's host (`:authority`) and the connection goes to `endpoint`.
    ///
    /// Not an `async fn`: the returned future is a few words (both clients box their own),
    /// where an `async fn` would hold the request and every path's state, and be copied with
    /// each request's future.
    pub(crate) fn send(
        &self,
        endpoint: SocketAddr,
        wire: Wire,
        tls: Option<&Arc<TlsTarget>>,
        req: http::Request<Body>,
    ) -> Sending<'_> {
        let state = match (wire, tls) {
            (Wire::Http1, None) => SendState::Http1(self.http1.request(req)),
            (Wire::Http1, Some(t)) => SendState::Http1(self.tls_client(t).request(req)),
            (Wire::H2c, tls) => {
                let key = (endpoint, tls.map(|t| t.key.clone()));
                SendState::H2(Box::pin(self.send_h2(key, tls.cloned(), req)))
            }
        };
        Sending { endpoint, state }
    }

    /// [`send`](Self::send) over HTTP/2 (boxed by the caller, as the legacy client boxes
    /// HTTP/1.1).
    async fn send_h2(
        &self,
        key: H2Key,
        tls: Option<Arc<TlsTarget>>,
        req: http::Request<Body>,
    ) -> Result<http::Response<Incoming>, ForwardError> {
        let endpoint = key.0;
        let mut sender = self.h2_sender(&key, tls.as_ref()).await?;
        let backend = |e: hyper::Error| ForwardError::Backend {
            endpoint,
            source: e.into(),
        };
        if let Err(e) = sender.ready().await {
            self.forget(&key);
            return Err(backend(e));
        }
        sender.send_request(req).await.map_err(backend)
    }

    /// Drops pooled connections of TLS setups not in `keep` (after a routing table swap).
    pub(crate) fn retain_tls(&self, keep: &HashSet<TlsKey>) {
        if let Ok(mut clients) = self.tls_http1.lock() {
            clients.retain(|k, _| keep.contains(k));
        }
        if let Ok(mut h2) = self.h2.lock() {
            h2.retain(|(_, k), _| k.as_ref().is_none_or(|k| keep.contains(k)));
        }
    }

    /// Backend connections: (open now, opened in total).
    pub(crate) fn connection_counts(&self) -> (u64, u64) {
        self.counts.get()
    }

    fn tls_client(&self, t: &TlsTarget) -> LegacyClient<Counted<TlsConnector>, Body> {
        let make = || {
            let connector = TlsConnector {
                tcp: {
                    let mut c = tcp_connector(self.connect_timeout);
                    c.enforce_http(false);
                    c
                },
                tls: tokio_rustls::TlsConnector::from(t.http1.clone()),
                server_name: t.server_name.clone(),
                timeout: self.connect_timeout,
            };
            let counted = Counted {
                inner: connector,
                counts: self.counts.clone(),
            };
            legacy(counted, self.pool_idle_timeout)
        };
        match self.tls_http1.lock() {
            Ok(mut clients) => clients.entry(t.key.clone()).or_insert_with(make).clone(),
            // A poisoned lock only loses pooling.
            Err(_) => make(),
        }
    }

    fn forget(&self, key: &H2Key) {
        if let Ok(mut pool) = self.h2.lock() {
            pool.remove(key);
        }
    }

    async fn h2_sender(
        &self,
        key: &H2Key,
        tls: Option<&Arc<TlsTarget>>,
    ) -> Result<http2::SendRequest<Body>, ForwardError> {
        if let Ok(pool) = self.h2.lock()
            && let Some(s) = pool.get(key)
            && !s.is_closed()
        {
            return Ok(s.clone());
        }
        // Boxed: the connect and handshakes would otherwise make every request's future
        // (pooled connections included) several KiB larger, copied on each request.
        Box::pin(self.h2_connect(key, tls)).await
    }

    /// Opens, handshakes and pools a new HTTP/2 connection for `key`.
    async fn h2_connect(
        &self,
        key: &H2Key,
        tls: Option<&Arc<TlsTarget>>,
    ) -> Result<http2::SendRequest<Body>, ForwardError> {
        let endpoint = key.0;
        let connect_err = |source: BoxError| ForwardError::Connect { endpoint, source };
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(endpoint))
            .await
            .map_err(|_| {
                connect_err(format!("connect timed out after {:?}", self.connect_timeout).into())
            })?
            .map_err(|e| connect_err(e.into()))?;
        // Nagle only delays small gRPC frames.
        let _ = stream.set_nodelay(true);
        let guard = self.counts.open();
        let sender = match tls {
            None => h2_handshake(endpoint, stream, guard).await,
            Some(t) => {
                let connector = tokio_rustls::TlsConnector::from(t.h2.clone());
                let stream = handshake(
                    &connector,
                    t.server_name.clone(),
                    stream,
                    self.connect_timeout,
                )
                .await
                .map_err(|e| e.into_forward(endpoint))?;
                h2_handshake(endpoint, stream, guard).await
            }
        }
        .map_err(|e| connect_err(e.into()))?;
        if let Ok(mut pool) = self.h2.lock() {
            pool.insert(key.clone(), sender.clone());
        }
        Ok(sender)
    }
}

/// The HTTP/2 handshake on a connected stream; the connection task is spawned.
async fn h2_handshake<S>(
    endpoint: SocketAddr,
    stream: S,
    guard: ConnGuard,
) -> Result<http2::SendRequest<Body>, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%endpoint, error = %e, "HTTP/2 backend connection closed");
        }
        drop(guard);
    });
    Ok(sender)
}
