//! Data-plane listeners: binds the sockets the table asks for and serves them with gw-router.
//!
//! Every connection holds a permit of its listener's and of the global connection cap (over a
//! cap it is accepted and closed at once) and a graceful-shutdown watcher: on shutdown the
//! listeners close, HTTP connections finish their requests in flight (HTTP/1 `Connection:
//! close`, HTTP/2 GOAWAY), and the others get until the shutdown deadline.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use gw_model::resources::ObjectKey;
use gw_model::table::{ListenerTable, Protocol, RouteTable};
use gw_policy::TlsPeer;
use gw_router::{Incoming, Router, Routes, Scheme};
use http_body_util::BodyExt as _;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;

use crate::access::Recorder;
use crate::admin::{ListenerMetrics, Metrics};
use crate::guard::{Activity, GuardConfig, GuardedIo};
use crate::limits::{Limits, nonzero};
use crate::slow_body::{MinRate, RateLimited};
use crate::{l4, tls};

type TlsConfig = Arc<ArcSwap<rustls::ServerConfig>>;

struct Running {
    gateway: ObjectKey,
    /// For TLS sockets: the configuration, swapped in place when certificates change.
    tls: Option<TlsConfig>,
    /// TLS (by SNI) or TCP dispatch.
    l4: Option<l4::Mode>,
    stop: watch::Sender<bool>,
    /// The accept loop.
    task: JoinHandle<()>,
}

struct Desired {
    gateway: ObjectKey,
    tls: Option<Arc<rustls::ServerConfig>>,
    l4: Option<l4::Mode>,
}

/// The listeners currently bound, and the router that serves them.
pub(crate) struct Servers {
    router: Router,
    /// Resolves the names of external backends; shared by every table.
    resolver: gw_router::dns::Resolver,
    running: HashMap<SocketAddr, Running>,
    /// TLS, TCP and UDP listeners.
    l4: l4::L4,
    limits: Arc<Limits>,
    metrics: Arc<Metrics>,
    /// Whether requests are written to the access log.
    access_log: bool,
    /// The global connection cap.
    total: Arc<Semaphore>,
    /// Watches every connection; held by the accept loops too.
    graceful: Arc<GracefulShutdown>,
}

impl Servers {
    pub(crate) fn new(
        router: Router,
        resolver: gw_router::dns::Resolver,
        limits: Limits,
        metrics: Arc<Metrics>,
        access_log: bool,
    ) -> Self {
        Servers {
            access_log,
            router,
            resolver,
            running: HashMap::new(),
            l4: l4::L4::new(limits.tls_handshake_timeout, metrics.l4.clone()),
            total: Arc::new(Semaphore::new(limits.max_connections as usize)),
            limits: Arc::new(limits),
            metrics,
            graceful: Arc::new(GracefulShutdown::new()),
        }
    }

    /// Stops accepting on every listener, asks every HTTP connection to finish its requests
    /// in flight and close (HTTP/1 `Connection: close`, HTTP/2 GOAWAY), and waits until every
    /// connection is closed or `--shutdown-timeout` passed. Returns whether all closed in time.
    pub(crate) async fn shutdown(self) -> bool {
        let Servers {
            running,
            l4,
            graceful,
            limits,
            ..
        } = self;
        drop(l4);
        for (addr, r) in &running {
            tracing::info!(%addr, gateway = %r.gateway, "closing listener");
            let _ = r.stop.send(true);
        }
        for r in running.into_values() {
            let _ = r.task.await;
        }
        let Ok(graceful) = Arc::try_unwrap(graceful) else {
            // Unreachable: only the (finished) accept loops held it.
            tracing::warn!("connections are still being accepted; not draining");
            return false;
        };
        tracing::info!(connections = graceful.count(), "draining connections");
        tokio::time::timeout(limits.shutdown_timeout, graceful.shutdown())
            .await
            .is_ok()
    }

    /// Swaps the routing table in, then opens sockets for new listeners, updates TLS
    /// certificates of running ones, and closes the ones no longer configured. Requests in
    /// flight finish on the table they started with. Returns what could not be served.
    pub(crate) async fn apply(&mut self, table: &RouteTable) -> Vec<String> {
        // Rules whose entries did not change are reused, not built again.
        let routes = Routes::rebuild(&self.router.routes(), table, &self.resolver);
        self.router.swap(routes);
        let mut errors = Vec::new();
        self.l4.swap(table, &self.resolver, &mut errors);
        let mut udp = HashMap::new();
        let desired = self.desired(table, &mut udp, &mut errors);
        self.running.retain(|addr, r| {
            let keep = desired.get(addr).is_some_and(|d| {
                d.gateway == r.gateway && d.tls.is_some() == r.tls.is_some() && d.l4 == r.l4
            });
            if !keep {
                tracing::info!(%addr, gateway = %r.gateway, "closing listener");
                let _ = r.stop.send(true);
            }
            keep
        });
        for (addr, d) in desired {
            if let Some(r) = self.running.get(&addr) {
                if let (Some(current), Some(new)) = (&r.tls, d.tls) {
                    current.store(new);
                }
                continue;
            }
            match TcpListener::bind(addr).await {
                Ok(listener) => {
                    tracing::info!(%addr, gateway = %d.gateway, tls = d.tls.is_some(), "listening");
                    let (stop, stopped) = watch::channel(false);
                    let tls = d.tls.map(|c| Arc::new(ArcSwap::new(c)));
                    let l4 =
                        d.l4.map(|mode| self.l4.socket(mode, d.gateway.clone(), addr.port()));
                    let accept = Accept {
                        addr,
                        gateway: d.gateway.clone(),
                        router: self.router.clone(),
                        tls: tls.clone(),
                        l4,
                        limits: self.limits.clone(),
                        total: self.total.clone(),
                        listener: Arc::new(Semaphore::new(
                            self.limits.max_connections_per_listener as usize,
                        )),
                        metrics: self
                            .metrics
                            .listener(addr.to_string(), d.gateway.to_string()),
                        recorder: Recorder::new(
                            self.metrics.requests.clone(),
                            d.gateway.to_string().into(),
                            self.access_log,
                        ),
                        graceful: self.graceful.clone(),
                    };
                    let task = tokio::spawn(accept.run(listener, stopped));
                    self.running.insert(
                        addr,
                        Running {
                            gateway: d.gateway,
                            tls,
                            l4: d.l4,
                            stop,
                            task,
                        },
                    );
                }
                Err(e) => {
                    tracing::error!(%addr, gateway = %d.gateway, error = %e, "cannot bind listener");
                    errors.push(format!("{addr} (Gateway {}): {e}", d.gateway));
                }
            }
        }
        errors.extend(self.l4.apply_udp(udp).await);
        errors
    }

    /// The TCP sockets to serve, and in `udp` the UDP ones (address -> Gateway).
    fn desired(
        &mut self,
        table: &RouteTable,
        udp: &mut HashMap<SocketAddr, ObjectKey>,
        errors: &mut Vec<String>,
    ) -> HashMap<SocketAddr, Desired> {
        let mut desired: HashMap<SocketAddr, Desired> = HashMap::new();
        for g in &table.gateways {
            let ips: Vec<IpAddr> = if g.addresses.is_empty() {
                vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)]
            } else {
                g.addresses.clone()
            };
            let mut by_port: HashMap<u16, Vec<&ListenerTable>> = HashMap::new();
            for l in &g.listeners {
                if l.protocol == Protocol::Udp {
                    for ip in &ips {
                        let addr = SocketAddr::new(*ip, l.port);
                        match udp.get(&addr) {
                            Some(other) if *other != g.key => errors.push(format!(
                                "{addr}/udp: Gateways {other} and {} both ask for this address",
                                g.key
                            )),
                            _ => {
                                udp.insert(addr, g.key.clone());
                            }
                        }
                    }
                } else {
                    by_port.entry(l.port).or_default().push(l);
                }
            }
            for (port, listeners) in by_port {
                let https: Vec<&ListenerTable> = listeners
                    .iter()
                    .copied()
                    .filter(|l| l.protocol == Protocol::Https)
                    .collect();
                let l4 = l4::Mode::of(listeners.iter().map(|l| l.protocol));
                let tls = if https.is_empty() {
                    None
                } else {
                    match tls::server_config(&https) {
                        Ok(c) => Some(c),
                        Err(e) => {
                            errors.push(format!("Gateway {} port {port}: {e}", g.key));
                            continue;
                        }
                    }
                };
                for ip in &ips {
                    let addr = SocketAddr::new(*ip, port);
                    if let Some(other) = desired.get(&addr) {
                        errors.push(format!(
                            "{addr}: Gateways {} and {} both ask for this address",
                            other.gateway, g.key
                        ));
                        continue;
                    }
                    desired.insert(
                        addr,
                        Desired {
                            gateway: g.key.clone(),
                            tls: tls.clone(),
                            l4,
                        },
                    );
                }
            }
        }
        desired
    }
}

/// One listener socket's accept loop and what its connections need.
struct Accept {
    addr: SocketAddr,
    gateway: ObjectKey,
    router: Router,
    tls: Option<TlsConfig>,
    l4: Option<l4::Socket>,
    limits: Arc<Limits>,
    /// The global connection cap.
    total: Arc<Semaphore>,
    /// This listener's connection cap.
    listener: Arc<Semaphore>,
    metrics: Arc<ListenerMetrics>,
    /// Access log and request metrics.
    recorder: Recorder,
    graceful: Arc<GracefulShutdown>,
}

/// Held by a connection for its lifetime: its places under the connection caps, and its
/// count in the active gauge.
struct ConnectionGuard {
    _permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
    metrics: Arc<ListenerMetrics>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.metrics.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Accept {
    /// A place for one more connection, if both caps allow it.
    fn admit(&self) -> Option<ConnectionGuard> {
        let total = self.total.clone().try_acquire_owned().ok()?;
        let listener = self.listener.clone().try_acquire_owned().ok()?;
        self.metrics.accepted.fetch_add(1, Ordering::Relaxed);
        self.metrics.active.fetch_add(1, Ordering::Relaxed);
        Some(ConnectionGuard {
            _permits: (total, listener),
            metrics: self.metrics.clone(),
        })
    }

    async fn run(self, listener: TcpListener, mut stopped: watch::Receiver<bool>) {
        let addr = self.addr;
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stopped.changed() => return,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%addr, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let Some(guard) = self.admit() else {
                self.metrics.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%addr, %peer, "connection cap reached; connection closed");
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let incoming = Incoming {
                gateway: self.gateway.clone(),
                port: addr.port(),
                scheme: if self.tls.is_some() {
                    Scheme::Https
                } else {
                    Scheme::Http
                },
                peer: Some(peer),
                sni: None,
            };
            let conn = Connection {
                router: self.router.clone(),
                recorder: self.recorder.clone(),
                limits: self.limits.clone(),
                watcher: self.graceful.watcher(),
                _guard: guard,
            };
            if let Some(l4) = &self.l4 {
                // TLS (by SNI) and TCP listeners; an HTTPS listener on the port gets the
                // connection back, with the bytes read so far replayed.
                let (l4, tls) = (l4.clone(), self.tls.clone());
                tokio::spawn(async move {
                    if let Some(stream) = l4.serve(stream, peer).await
                        && let Some(config) = tls
                    {
                        conn.serve_tls(stream, config.load_full(), incoming).await;
                    }
                });
                continue;
            }
            match &self.tls {
                None => {
                    tokio::spawn(conn.serve(stream, incoming, None));
                }
                Some(config) => {
                    tokio::spawn(conn.serve_tls(stream, config.load_full(), incoming));
                }
            }
        }
    }
}

/// What serving one accepted connection needs.
struct Connection {
    router: Router,
    recorder: Recorder,
    limits: Arc<Limits>,
    /// Asks the connection to close gracefully on shutdown; shutdown waits until it is dropped.
    watcher: Watcher,
    _guard: ConnectionGuard,
}

impl Connection {
    /// Terminates TLS, then serves HTTP.
    async fn serve_tls<S>(self, stream: S, config: Arc<rustls::ServerConfig>, incoming: Incoming)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let peer = incoming.peer;
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let accept = tls::handshake(acceptor.accept(stream));
        match tokio::time::timeout(self.limits.tls_handshake_timeout, accept).await {
            Ok((Ok(tls_stream), verified)) => {
                let session = tls_stream.get_ref().1;
                // GEP-3567: the router answers 421 to hosts of other listeners.
                let sni = session.server_name().map(str::to_owned);
                // The client's identity for CEL and ExternalAuth: only a verified certificate.
                // Without one, the router adds the SNI-only peer itself, and only for requests
                // that a policy or an auth check looks at.
                let peer = session
                    .peer_certificates()
                    .and_then(<[_]>::first)
                    .filter(|_| verified)
                    .map(|c| Arc::new(gw_router::tls_peer(sni.as_deref(), Some(c.as_ref()))));
                let incoming = Incoming { sni, ..incoming };
                self.serve(tls_stream, incoming, peer).await
            }
            Ok((Err(e), _)) => tracing::debug!(?peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(?peer, "TLS handshake timed out"),
        }
    }

    /// Serves HTTP/1 or HTTP/2 on `stream` with the configured limits, behind the
    /// connection [guard](crate::guard).
    async fn serve<S>(self, stream: S, incoming: Incoming, tls_peer: Option<Arc<TlsPeer>>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let peer = incoming.peer;
        let Connection {
            router,
            recorder,
            limits,
            watcher,
            _guard,
        } = self;
        let (max_headers, max_uri) = (
            limits.max_request_headers as usize,
            limits.max_uri_bytes as usize,
        );
        let min_rate = MinRate {
            rate: limits.request_body_min_rate,
            grace: limits.request_body_grace,
        };
        let activity = Activity::new();
        let io = GuardedIo::new(
            stream,
            GuardConfig {
                header_read_timeout: limits.header_read_timeout,
                http1_idle_timeout: limits.http1_idle_timeout,
                http2_idle_timeout: limits.http2_idle_timeout,
                write_stall_timeout: limits.write_stall_timeout,
                max_header_bytes: limits.max_header_bytes as usize,
                max_headers,
                http2_max_control_frames: limits.http2_max_control_frames,
            },
            activity.clone(),
        );
        let service =
            hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let in_flight = activity.request();
                let refused = check_request(&req, max_headers, max_uri);
                let record = recorder.start(&req, peer);
                let version = req.version();
                let wants_upgrade = req.method() == http::Method::CONNECT
                    || req.headers().contains_key(http::header::UPGRADE);
                let tripped = Arc::new(AtomicBool::new(false));
                let mut req = req.map(|b| RateLimited::new(b, min_rate, tripped.clone()));
                req.extensions_mut().insert(incoming.clone());
                if let Some(peer) = &tls_peer {
                    req.extensions_mut().insert(TlsPeer::clone(peer));
                }
                // Routed here, from the shared router: `oneshot` would need a clone of it per
                // request.
                let routed = match refused {
                    None => Ok(router.handle(req)),
                    Some(status) => Err(status),
                };
                let framing = activity.clone();
                async move {
                    let resp = match routed {
                        Ok(_) if framing.framing_error() => {
                            status_response(http::StatusCode::BAD_REQUEST)
                        }
                        Ok(routed) => match routed.await {
                            Ok(r) => r,
                            Err(never) => match never {},
                        },
                        Err(status) => status_response(status),
                    };
                    let failed = if framing.framing_error() {
                        // Invalid chunked framing: 400 and close.
                        Some(http::StatusCode::BAD_REQUEST)
                    } else if tripped.load(Ordering::Acquire) {
                        // The client was too slow to send its body: 408 and close.
                        Some(http::StatusCode::REQUEST_TIMEOUT)
                    } else {
                        None
                    };
                    let resp = if let Some(status) = failed {
                        let mut r = status_response(status);
                        if version < http::Version::HTTP_2 {
                            r.headers_mut().insert(
                                http::header::CONNECTION,
                                http::HeaderValue::from_static("close"),
                            );
                        }
                        r
                    } else {
                        resp
                    };
                    if wants_upgrade {
                        framing
                            .set_upgraded(resp.status() == http::StatusCode::SWITCHING_PROTOCOLS);
                    }
                    let resp = record.respond(resp);
                    // The request counts as in flight until its response body is sent.
                    let resp = resp.map(|body| Tracked {
                        inner: body,
                        _in_flight: in_flight,
                    });
                    Ok::<_, Infallible>(resp)
                }
            });
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        // The header read timeout of HTTP/1 is the guard's (from the first byte of a head).
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_headers(max_headers)
            .max_buf_size(limits.max_header_bytes as usize);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(limits.max_header_bytes)
            .max_concurrent_streams(limits.http2_max_concurrent_streams)
            .max_pending_accept_reset_streams(
                limits.http2_max_pending_accept_reset_streams as usize,
            )
            .max_local_error_reset_streams(limits.http2_max_local_error_reset_streams as usize)
            .max_send_buf_size(limits.http2_max_send_buf_size as usize)
            .keep_alive_interval(nonzero(limits.http2_keep_alive_interval))
            .keep_alive_timeout(limits.http2_keep_alive_timeout);
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        if let Err(e) = watcher.watch(conn.into_owned()).await {
            tracing::debug!(?peer, error = %e, "connection ended with an error");
        }
    }
}

/// The limits hyper does not enforce on every protocol, checked before routing: the URI
/// length (414) and, for HTTP/2, the header count (431; hyper enforces it on HTTP/1).
fn check_request<B>(
    req: &http::Request<B>,
    max_headers: usize,
    max_uri: usize,
) -> Option<http::StatusCode> {
    let uri = req.uri();
    let uri_len = uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > max_uri {
        return Some(http::StatusCode::URI_TOO_LONG);
    }
    if req.headers().len() > max_headers {
        return Some(http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    None
}

/// An empty response with `status`.
fn status_response(status: http::StatusCode) -> http::Response<gw_router::Body> {
    let body = http_body_util::Empty::<bytes::Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut resp = http::Response::new(body);
    *resp.status_mut() = status;
    resp
}

/// A response body that keeps its request counted as in flight until it is sent. It keeps the
/// body's exact size, so a known length is still sent as `Content-Length`.
struct Tracked<B> {
    inner: B,
    _in_flight: crate::guard::InFlight,
}

impl<B: http_body::Body + Unpin> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, headers: usize) -> http::Request<()> {
        let mut b = http::Request::builder().uri(uri);
        for i in 0..headers {
            b = b.header(format!("x-{i}"), "v");
        }
        b.body(()).unwrap_or_default()
    }

    #[test]
    fn uri_length_and_header_count_are_checked() {
        assert_eq!(check_request(&req("/abc", 2), 2, 4), None);
        assert_eq!(
            check_request(&req("/abcd", 0), 2, 4),
            Some(http::StatusCode::URI_TOO_LONG)
        );
        assert_eq!(
            check_request(&req("http://a.b/c", 0), 2, 4),
            Some(http::StatusCode::URI_TOO_LONG)
        );
        assert_eq!(
            check_request(&req("/", 3), 2, 4),
            Some(http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
    }
}
