//! The backend client: pooled HTTP/1.1, cleartext or over TLS, and HTTP/2 prior knowledge
//! (one multiplexed connection per endpoint and TLS setup), on hyper's connection API.
//!
//! HTTP/1.1 connections are pooled per endpoint and [`TlsKey`], so two backends share a
//! connection only when their TLS setups are equal. A connection goes back to the pool when
//! its response body has been read to the end ([`BackendBody`]). A request that finds a pooled
//! connection closed before it was written is sent again on another one (it never reached the
//! backend), and so is an idempotent request without a body whose pooled connection the
//! backend closed under it, before any response (RFC 9110 9.2.2; the race at the end of a
//! backend's keep-alive timeout). Idle HTTP/1.1 connections, and HTTP/2 connections no
//! request started on, are closed after the pool's idle timeout (so those to endpoints that
//! left the configuration do not stay open), and those of TLS setups no longer in the routing
//! table on [`Client::retain_tls`].

use std::collections::HashSet;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderValue, Response};
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
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

/// A backend connection's destination: the endpoint, and the TLS setup if any.
type ConnKey = (SocketAddr, Option<TlsKey>);

/// Connections to backends, counted where they are opened and by their connection tasks.
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

/// Backend connections kept for reuse: idle HTTP/1.1 connections by destination (the most
/// recently used last), and one multiplexed HTTP/2 connection per destination. Both close
/// after `idle_timeout` without a request.
struct Pool {
    http1: Mutex<hashbrown::HashMap<ConnKey, Vec<Idle>>>,
    h2: Mutex<hashbrown::HashMap<ConnKey, H2Conn>>,
    idle_timeout: Duration,
    /// A task closes expired connections while the pool holds any.
    reaping: AtomicBool,
}

struct Idle {
    sender: http1::SendRequest<Body>,
    since: Instant,
}

struct H2Conn {
    sender: http2::SendRequest<Body>,
    /// When a request last started on it.
    last_used: Instant,
}

impl Pool {
    fn new(idle_timeout: Duration) -> Pool {
        Pool {
            http1: Mutex::new(hashbrown::HashMap::new()),
            h2: Mutex::new(hashbrown::HashMap::new()),
            idle_timeout,
            reaping: AtomicBool::new(false),
        }
    }

    /// The most recently used open HTTP/1.1 connection to `key` that has not been idle too
    /// long.
    fn checkout(&self, key: &ConnKey) -> Option<http1::SendRequest<Body>> {
        let mut idle = self.http1.lock().ok()?;
        let list = idle.get_mut(key)?;
        let now = Instant::now();
        while let Some(c) = list.pop() {
            if now.saturating_duration_since(c.since) >= self.idle_timeout {
                // The others went idle earlier still.
                list.clear();
                return None;
            }
            if !c.sender.is_closed() {
                return Some(c.sender);
            }
        }
        None
    }

    /// Pools an HTTP/1.1 connection whose last response has been read.
    fn put(self: &Arc<Self>, key: ConnKey, sender: http1::SendRequest<Body>) {
        if sender.is_closed() || self.idle_timeout.is_zero() {
            return;
        }
        let Ok(mut idle) = self.http1.lock() else {
            return;
        };
        idle.entry(key).or_default().push(Idle {
            sender,
            since: Instant::now(),
        });
        drop(idle);
        self.reap_later();
    }

    /// The open HTTP/2 connection to `key`, marked used now.
    fn h2(&self, key: &ConnKey) -> Option<http2::SendRequest<Body>> {
        let mut h2 = self.h2.lock().ok()?;
        let c = h2.get_mut(key).filter(|c| !c.sender.is_closed())?;
        c.last_used = Instant::now();
        Some(c.sender.clone())
    }

    /// Keeps a new HTTP/2 connection to `key` (replacing a closed one).
    fn put_h2(self: &Arc<Self>, key: ConnKey, sender: http2::SendRequest<Body>) {
        let Ok(mut h2) = self.h2.lock() else {
            return;
        };
        h2.insert(
            key,
            H2Conn {
                sender,
                last_used: Instant::now(),
            },
        );
        drop(h2);
        self.reap_later();
    }

    fn forget_h2(&self, key: &ConnKey) {
        if let Ok(mut h2) = self.h2.lock() {
            h2.remove(key);
        }
    }

    /// Drops the connections whose destination fails `keep`.
    fn retain(&self, keep: impl Fn(&ConnKey) -> bool) {
        if let Ok(mut idle) = self.http1.lock() {
            idle.retain(|k, _| keep(k));
        }
        if let Ok(mut h2) = self.h2.lock() {
            h2.retain(|k, _| keep(k));
        }
    }

    /// Starts the task that closes expired connections, unless it runs already (or the
    /// timeout is zero: HTTP/1.1 connections are then not pooled, HTTP/2 ones never expire).
    fn reap_later(self: &Arc<Self>) {
        if self.idle_timeout.is_zero() || self.reaping.swap(true, Ordering::AcqRel) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(reap(Arc::downgrade(self)));
            }
            Err(_) => self.reaping.store(false, Ordering::Release),
        }
    }
}

/// Closes connections idle for longer than the pool's timeout (and drops those the backend
/// closed), waking when the oldest one expires, until the pool is dropped or holds no
/// connection.
async fn reap(pool: Weak<Pool>) {
    let mut wake = match pool.upgrade() {
        Some(p) => Instant::now() + p.idle_timeout,
        None => return,
    };
    loop {
        tokio::time::sleep_until(wake.into()).await;
        let Some(pool) = pool.upgrade() else { return };
        // Both locks (in this order, the only place that holds both): a `put` or `put_h2`
        // after this task stops sees `reaping` false and starts a new one.
        let (Ok(mut idle), Ok(mut h2)) = (pool.http1.lock(), pool.h2.lock()) else {
            return;
        };
        let now = Instant::now();
        let fresh = |since: Instant| now.saturating_duration_since(since) < pool.idle_timeout;
        let mut oldest: Option<Instant> = None;
        let mut seen = |at: Instant| oldest = Some(oldest.map_or(at, |o| o.min(at)));
        idle.retain(|_, list| {
            list.retain(|c| fresh(c.since) && !c.sender.is_closed());
            // Each list is in the order its connections went idle.
            if let Some(first) = list.first() {
                seen(first.since);
            }
            !list.is_empty()
        });
        h2.retain(|_, c| {
            let keep = fresh(c.last_used) && !c.sender.is_closed();
            if keep {
                seen(c.last_used);
            }
            keep
        });
        let Some(oldest) = oldest else {
            pool.reaping.store(false, Ordering::Release);
            return;
        };
        wake = (oldest + pool.idle_timeout).max(now + Duration::from_millis(10));
    }
}

/// The body of a backend's response. Over HTTP/1.1 it holds the connection, which goes back
/// to the pool once the body has been read to its end; a body dropped before its end closes
/// the connection (its remaining bytes are never read).
pub(crate) struct BackendBody {
    inner: Incoming,
    lease: Option<Lease>,
}

/// A pooled connection out of the pool while its response is read.
struct Lease {
    pool: Arc<Pool>,
    key: ConnKey,
    sender: http1::SendRequest<Body>,
}

impl std::fmt::Debug for BackendBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendBody")
            .field("inner", &self.inner)
            .field("pooled", &self.lease.is_some())
            .finish()
    }
}

impl BackendBody {
    fn release(&mut self) {
        if let Some(l) = self.lease.take() {
            l.pool.put(l.key, l.sender);
        }
    }
}

impl http_body::Body for BackendBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            None => this.release(),
            Some(Ok(_)) if this.inner.is_end_stream() => this.release(),
            Some(Ok(_)) => {}
            Some(Err(_)) => this.lease = None,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pub(crate) struct Client {
    pool: Arc<Pool>,
    counts: Arc<ConnCounts>,
    connect_timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("connect_timeout", &self.connect_timeout)
            .field("pool_idle_timeout", &self.pool.idle_timeout)
            .finish_non_exhaustive()
    }
}

/// Why connecting a TLS backend failed.
#[derive(Debug, thiserror::Error)]
enum TlsConnectError {
    /// The handshake failed: certificate, name or protocol (502).
    #[error("TLS handshake failed")]
    Handshake(#[source] std::io::Error),
    /// The handshake did not complete in time (502).
    #[error("TLS handshake timed out after {0:?}")]
    Timeout(Duration),
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

/// The future of [`Client::send`]: both protocols box their own.
pub(crate) struct Sending<'a>(
    Pin<Box<dyn Future<Output = Result<Response<BackendBody>, ForwardError>> + Send + 'a>>,
);

impl Future for Sending<'_> {
    type Output = Result<Response<BackendBody>, ForwardError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl Client {
    pub(crate) fn new(connect_timeout: Duration, pool_idle_timeout: Duration) -> Client {
        Client {
            pool: Arc::new(Pool::new(pool_idle_timeout)),
            counts: Arc::new(ConnCounts::default()),
            connect_timeout,
        }
    }

    /// Sends `req` to `endpoint`, over TLS when `tls` is set. For HTTP/1.1 the request line
    /// carries the URI's path and query (the `Host` header carries the request's host, or
    /// the endpoint when it has none); for HTTP/2 the URI's authority is the request's host
    /// (`:authority`) and the connection goes to `endpoint`.
    ///
    /// Not an `async fn`: the returned future is one pointer, where an `async fn` would hold
    /// the request and every path's state, and be copied with each request's future.
    pub(crate) fn send(
        &self,
        endpoint: SocketAddr,
        wire: Wire,
        tls: Option<&Arc<TlsTarget>>,
        req: http::Request<Body>,
    ) -> Sending<'_> {
        let key = (endpoint, tls.map(|t| t.key.clone()));
        match wire {
            Wire::Http1 => Sending(Box::pin(self.send_h1(key, tls.cloned(), req))),
            Wire::H2c => Sending(Box::pin(self.send_h2(key, tls.cloned(), req))),
        }
    }

    /// [`send`](Self::send) over HTTP/1.1, on a pooled connection or a new one.
    async fn send_h1(
        &self,
        key: ConnKey,
        tls: Option<Arc<TlsTarget>>,
        mut req: http::Request<Body>,
    ) -> Result<Response<BackendBody>, ForwardError> {
        let endpoint = key.0;
        origin_form(&mut req, endpoint);
        let backend = |e: hyper::Error| ForwardError::Backend {
            endpoint,
            source: e.into(),
        };
        loop {
            let (mut sender, reused) = match self.pool.checkout(&key) {
                Some(s) => (s, true),
                None => (
                    Box::pin(self.connect::<Http1>(endpoint, tls.as_ref())).await?,
                    false,
                ),
            };
            // A pooled connection may still be finishing its last exchange.
            if let Err(e) = sender.ready().await {
                if reused {
                    // It closed while idle; nothing was sent on it.
                    continue;
                }
                return Err(backend(e));
            }
            // A reused connection may have been closed by the backend just as the request
            // went out (its keep-alive timeout): a request that is idempotent and has no body
            // is then sent again, as RFC 9110 9.2.2 allows.
            let replay = reused.then(|| Replay::of(&req)).flatten();
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(self.lease(resp, key, sender)),
                Err(mut e) => match (e.take_message(), replay) {
                    // The connection closed before the request was written: try another.
                    (Some(r), _) if reused => req = r,
                    (None, Some(replay)) if closed_under_request(e.error()) => {
                        tracing::debug!(%endpoint, "pooled connection closed under the request; sending it again");
                        req = replay.request();
                    }
                    _ => return Err(backend(e.into_error())),
                },
            }
        }
    }

    /// Wraps a response's body so that its connection goes back to the pool when the body
    /// has been read (at once when there is none). Upgraded connections are not pooled.
    fn lease(
        &self,
        resp: Response<Incoming>,
        key: ConnKey,
        sender: http1::SendRequest<Body>,
    ) -> Response<BackendBody> {
        let pooled = !resp.status().is_informational();
        resp.map(|inner| {
            let mut body = BackendBody {
                inner,
                lease: pooled.then(|| Lease {
                    pool: self.pool.clone(),
                    key,
                    sender,
                }),
            };
            if body.inner.is_end_stream() {
                body.release();
            }
            body
        })
    }

    /// Opens a connection to `endpoint` (over TLS when `tls` is set) and speaks `P` on it.
    async fn connect<P: Protocol>(
        &self,
        endpoint: SocketAddr,
        tls: Option<&Arc<TlsTarget>>,
    ) -> Result<P::Sender, ForwardError> {
        let stream = self.tcp_connect(endpoint).await?;
        let guard = self.counts.open();
        match tls {
            None => P::handshake(endpoint, stream, guard).await,
            Some(t) => {
                let connector = tokio_rustls::TlsConnector::from(P::tls(t).clone());
                let stream = handshake(
                    &connector,
                    t.server_name.clone(),
                    stream,
                    self.connect_timeout,
                )
                .await
                .map_err(|e| tls_error(endpoint, e))?;
                P::handshake(endpoint, stream, guard).await
            }
        }
        .map_err(|e| ForwardError::Connect {
            endpoint,
            source: e.into(),
        })
    }

    /// A TCP connection to `endpoint` within the connect timeout, with `TCP_NODELAY`.
    async fn tcp_connect(&self, endpoint: SocketAddr) -> Result<TcpStream, ForwardError> {
        let connect_err = |source: BoxError| ForwardError::Connect { endpoint, source };
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(endpoint))
            .await
            .map_err(|_| {
                connect_err(format!("connect timed out after {:?}", self.connect_timeout).into())
            })?
            .map_err(|e| connect_err(e.into()))?;
        // Nagle only delays small requests and gRPC frames.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// [`send`](Self::send) over HTTP/2 (boxed by the caller).
    async fn send_h2(
        &self,
        key: ConnKey,
        tls: Option<Arc<TlsTarget>>,
        req: http::Request<Body>,
    ) -> Result<Response<BackendBody>, ForwardError> {
        let endpoint = key.0;
        let mut sender = self.h2_sender(&key, tls.as_ref()).await?;
        let backend = |e: hyper::Error| ForwardError::Backend {
            endpoint,
            source: e.into(),
        };
        if let Err(e) = sender.ready().await {
            self.pool.forget_h2(&key);
            return Err(backend(e));
        }
        let resp = sender.send_request(req).await.map_err(backend)?;
        Ok(resp.map(|inner| BackendBody { inner, lease: None }))
    }

    /// Drops pooled connections of TLS setups not in `keep` (after a routing table swap).
    pub(crate) fn retain_tls(&self, keep: &HashSet<TlsKey>) {
        let kept = |(_, k): &ConnKey| k.as_ref().is_none_or(|k| keep.contains(k));
        self.pool.retain(kept);
    }

    /// Backend connections: (open now, opened in total).
    pub(crate) fn connection_counts(&self) -> (u64, u64) {
        self.counts.get()
    }

    async fn h2_sender(
        &self,
        key: &ConnKey,
        tls: Option<&Arc<TlsTarget>>,
    ) -> Result<http2::SendRequest<Body>, ForwardError> {
        if let Some(s) = self.pool.h2(key) {
            return Ok(s);
        }
        // Boxed: the connect and handshakes would otherwise make every request's future
        // (pooled connections included) several KiB larger, copied on each request.
        Box::pin(self.h2_connect(key, tls)).await
    }

    /// Opens, handshakes and pools a new HTTP/2 connection for `key`.
    async fn h2_connect(
        &self,
        key: &ConnKey,
        tls: Option<&Arc<TlsTarget>>,
    ) -> Result<http2::SendRequest<Body>, ForwardError> {
        let sender = self.connect::<Http2>(key.0, tls).await?;
        self.pool.put_h2(key.clone(), sender.clone());
        Ok(sender)
    }
}

fn tls_error(endpoint: SocketAddr, e: TlsConnectError) -> ForwardError {
    ForwardError::Tls {
        endpoint,
        source: e.into(),
    }
}

/// Whether a request failed because the backend closed the connection (before any response):
/// a close or a reset while it was written or its answer awaited.
fn closed_under_request(e: &hyper::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    e.is_incomplete_message()
        || std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some_and(|io| {
                matches!(
                    io.kind(),
                    ConnectionReset | BrokenPipe | ConnectionAborted | UnexpectedEof
                )
            })
}

/// What it takes to send a bodyless idempotent request again.
struct Replay {
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
}

impl Replay {
    fn of(req: &http::Request<Body>) -> Option<Replay> {
        use http_body::Body as _;
        (req.method().is_idempotent() && req.body().is_end_stream()).then(|| Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers: req.headers().clone(),
        })
    }

    fn request(self) -> http::Request<Body> {
        let mut req = http::Request::new(crate::body::empty());
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.headers_mut() = self.headers;
        req
    }
}

/// Puts an HTTP/1.1 request's URI in origin form (path and query: the request line of a
/// request to an origin server, RFC 9112 3.2.1), and gives it a `Host` header from the
/// URI's authority, or the endpoint, when it has none (RFC 9112 3.2).
fn origin_form(req: &mut http::Request<Body>, endpoint: SocketAddr) {
    if !req.headers().contains_key(HOST) {
        let host = req
            .uri()
            .authority()
            .map_or_else(|| endpoint.to_string(), |a| a.as_str().to_owned());
        if let Ok(v) = HeaderValue::try_from(host) {
            req.headers_mut().insert(HOST, v);
        }
    }
    let uri = req.uri_mut();
    if uri.scheme().is_some() || uri.authority().is_some() {
        // `Uri::default()` is `/`.
        *uri = std::mem::take(uri)
            .into_parts()
            .path_and_query
            .map(http::Uri::from)
            .unwrap_or_default();
    }
}

/// A connected byte stream to a backend: TCP, or TLS over TCP.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Stream for S {}

/// An HTTP version's side of a new backend connection.
trait Protocol {
    type Sender;

    /// The TLS configuration that offers this protocol (ALPN).
    fn tls(t: &TlsTarget) -> &Arc<rustls::ClientConfig>;

    /// The handshake on a connected stream; the connection task, which holds `guard`, is
    /// spawned.
    fn handshake<S: Stream>(
        endpoint: SocketAddr,
        stream: S,
        guard: ConnGuard,
    ) -> impl Future<Output = Result<Self::Sender, hyper::Error>> + Send;
}

/// Spawns a backend connection's task; `guard` counts it open until it ends.
fn drive<C>(endpoint: SocketAddr, conn: C, guard: ConnGuard)
where
    C: Future<Output = Result<(), hyper::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%endpoint, error = %e, "backend connection closed");
        }
        drop(guard);
    });
}

/// HTTP/1.1; the connection task serves upgrades.
struct Http1;

/// HTTP/2 with prior knowledge (or `h2` by ALPN).
struct Http2;

impl Protocol for Http1 {
    type Sender = http1::SendRequest<Body>;

    fn tls(t: &TlsTarget) -> &Arc<rustls::ClientConfig> {
        &t.http1
    }

    async fn handshake<S: Stream>(
        endpoint: SocketAddr,
        stream: S,
        guard: ConnGuard,
    ) -> Result<Self::Sender, hyper::Error> {
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await?;
        drive(endpoint, conn.with_upgrades(), guard);
        Ok(sender)
    }
}

impl Protocol for Http2 {
    type Sender = http2::SendRequest<Body>;

    fn tls(t: &TlsTarget) -> &Arc<rustls::ClientConfig> {
        &t.h2
    }

    async fn handshake<S: Stream>(
        endpoint: SocketAddr,
        stream: S,
        guard: ConnGuard,
    ) -> Result<Self::Sender, hyper::Error> {
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(stream))
            .await?;
        drive(endpoint, conn, guard);
        Ok(sender)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// How the test backend answers each request on a connection.
    #[derive(Clone, Copy)]
    enum Answer {
        /// `200 ok`, and the connection stays open.
        KeepAlive,
        /// `200 ok` with `Connection: close`, then closes.
        Close,
        /// `200 ok` without saying so, then closes (an idle timeout on the backend's side).
        Drop,
        /// `200 ok` to a connection's first request; its second request is read and the
        /// connection closed without an answer (an idle timeout as the request arrives).
        CloseOnSecond,
    }

    /// A backend on 127.0.0.1 that counts connections and answers every request the same way.
    async fn backend(answer: Answer) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    let mut served = 0;
                    loop {
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                        buf.drain(..end);
                        served += 1;
                        if matches!(answer, Answer::CloseOnSecond) && served == 2 {
                            return;
                        }
                        let close = match answer {
                            Answer::KeepAlive | Answer::Drop | Answer::CloseOnSecond => "",
                            Answer::Close => "connection: close\r\n",
                        };
                        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n{close}\r\nok");
                        if s.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        if matches!(answer, Answer::Drop | Answer::Close) {
                            return;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    fn get(path: &str) -> http::Request<Body> {
        http::Request::get(path)
            .header(HOST, "example.com")
            .body(crate::body::empty())
            .unwrap()
    }

    async fn call(client: &Client, addr: SocketAddr) -> String {
        let resp = client
            .send(addr, Wire::Http1, None, get("/"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_response_is_read() {
        let (addr, accepted) = backend(Answer::KeepAlive).await;
        let client = Client::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..5 {
            assert_eq!(call(&client, addr).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(client.connection_counts(), (1, 1));
    }

    #[tokio::test]
    async fn a_response_still_being_read_holds_its_connection() {
        let (addr, accepted) = backend(Answer::KeepAlive).await;
        let client = Client::new(Duration::from_secs(1), Duration::from_secs(60));
        let first = client
            .send(addr, Wire::Http1, None, get("/"))
            .await
            .unwrap();
        // The first body is unread: the second request needs a connection of its own.
        assert_eq!(call(&client, addr).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        let body = first.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
        for _ in 0..3 {
            call(&client, addr).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_body_dropped_unread_closes_its_connection() {
        let (addr, accepted) = backend(Answer::KeepAlive).await;
        let client = Client::new(Duration::from_secs(1), Duration::from_secs(60));
        let resp = client
            .send(addr, Wire::Http1, None, get("/"))
            .await
            .unwrap();
        drop(resp);
        call(&client, addr).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn connection_close_is_honoured() {
        // RFC 9112 9.6: no further request on a connection whose response said `close`.
        let (addr, accepted) = backend(Answer::Close).await;
        let client = Client::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..3 {
            assert_eq!(call(&client, addr).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_connection_the_backend_closed_while_idle_is_not_used() {
        let (addr, accepted) = backend(Answer::Drop).await;
        let client = Client::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..3 {
            assert_eq!(call(&client, addr).await, "ok");
            // Let the connection task see the close.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
        assert_eq!(client.connection_counts(), (0, 3));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bodyless_get_is_sent_again_when_its_pooled_connection_closes_under_it() {
        // The backend closes each connection right after its response, without saying so:
        // the next request may go out on the pooled connection as the close arrives (as at
        // the end of a keep-alive timeout). RFC 9110 9.2.2: idempotent requests may be
        // retried automatically; without a body, gw has all it needs to do so.
        let (addr, _) = backend(Answer::Drop).await;
        let client = Client::new(Duration::from_secs(1), Duration::from_secs(60));
        for i in 0..200 {
            let resp = client.send(addr, Wire::Http1, None, get("/")).await;
            let resp = resp.unwrap_or_else(|e| panic!("request {i}: {e:?}"));
            assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok");
        }
    }

    #[tokio::test]
    async fn a_request_the_backend_closed_under_is_sent_again_only_if_idempotent_and_bodyless() {
        let (addr, accepted) = backend(Answer::CloseOnSecond).await;
        let client = Client::new(Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(call(&client, addr).await, "ok");
        // The pooled connection takes the next GET and closes: sent again on a new one.
        assert_eq!(call(&client, addr).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        // The same for a POST with a body: the backend may have acted on it, so it fails.
        let post = http::Request::post("/")
            .header(HOST, "example.com")
            .body(crate::body::full(Bytes::from_static(b"x")))
            .unwrap();
        let err = client
            .send(addr, Wire::Http1, None, post)
            .await
            .unwrap_err();
        assert!(matches!(err, ForwardError::Backend { .. }), "{err:?}");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn only_bodyless_idempotent_requests_are_replayed() {
        assert!(Replay::of(&get("/")).is_some());
        let with_body = |method: http::Method| {
            http::Request::builder()
                .method(method)
                .body(crate::body::full(Bytes::from_static(b"x")))
                .unwrap()
        };
        assert!(Replay::of(&with_body(http::Method::PUT)).is_none());
        assert!(Replay::of(&with_body(http::Method::GET)).is_none());
        let post = http::Request::post("/").body(crate::body::empty()).unwrap();
        assert!(Replay::of(&post).is_none());
    }

    #[tokio::test]
    async fn idle_connections_are_closed_after_the_idle_timeout() {
        let (addr, accepted) = backend(Answer::KeepAlive).await;
        let client = Client::new(Duration::from_secs(1), Duration::from_millis(100));
        call(&client, addr).await;
        assert_eq!(client.connection_counts(), (1, 1));
        // The reaper wakes when the connection expires.
        let mut open = 1;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            open = client.connection_counts().0;
            if open == 0 {
                break;
            }
        }
        assert_eq!(open, 0, "the idle connection is still open");
        call(&client, addr).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    /// An HTTP/2 (h2c) backend on 127.0.0.1 that answers `200 ok`.
    async fn h2_backend() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let ok = hyper::service::service_fn(|_| async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(crate::body::full(
                            Bytes::from_static(b"ok"),
                        )))
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(s), ok)
                        .await;
                });
            }
        });
        addr
    }

    async fn call_h2(client: &Client, addr: SocketAddr) {
        let req = http::Request::get(format!("http://{addr}/"))
            .version(http::Version::HTTP_2)
            .body(crate::body::empty())
            .unwrap();
        let resp = client.send(addr, Wire::H2c, None, req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
    }

    #[tokio::test]
    async fn an_http2_connection_closes_after_the_idle_timeout_without_requests() {
        let addr = h2_backend().await;
        let client = Client::new(Duration::from_secs(1), Duration::from_millis(300));
        // Requests closer together than the timeout share one connection.
        for _ in 0..4 {
            call_h2(&client, addr).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(client.connection_counts(), (1, 1));
        let mut open = 1;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            open = client.connection_counts().0;
            if open == 0 {
                break;
            }
        }
        assert_eq!(open, 0, "the idle HTTP/2 connection is still open");
        call_h2(&client, addr).await;
        assert_eq!(client.connection_counts(), (1, 2));
    }

    #[tokio::test]
    async fn a_zero_idle_timeout_turns_pooling_off() {
        let (addr, accepted) = backend(Answer::KeepAlive).await;
        let client = Client::new(Duration::from_secs(1), Duration::ZERO);
        for _ in 0..3 {
            assert_eq!(call(&client, addr).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn the_request_line_is_in_origin_form_with_a_host() {
        // RFC 9112 3.2.1: origin form to an origin server; 3.2: a Host field in every request.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
            }
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(buf).unwrap().to_ascii_lowercase()
        });
        let client = Client::new(Duration::from_secs(1), Duration::from_secs(60));
        let req = http::Request::get(format!("http://{addr}/a?b=c"))
            .body(crate::body::empty())
            .unwrap();
        let resp = client.send(addr, Wire::Http1, None, req).await.unwrap();
        assert_eq!(resp.status(), 204);
        let head = seen.await.unwrap();
        assert!(head.starts_with("get /a?b=c http/1.1\r\n"), "{head}");
        assert!(head.contains(&format!("host: {addr}\r\n")), "{head}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let client = Client::new(Duration::from_secs(1), Duration::from_secs(60));
        let err = client
            .send(addr, Wire::Http1, None, get("/"))
            .await
            .unwrap_err();
        assert!(matches!(err, ForwardError::Connect { .. }), "{err:?}");
        assert_eq!(client.connection_counts(), (0, 0));
    }
}
