//! TLS (Passthrough and Terminate), TCP and UDP listeners, served with `gw_router::l4`.
//!
//! A TCP socket whose port has a TLS listener reads the ClientHello first (without consuming
//! it), picks the listener by SNI among the port's TLS and HTTPS listeners (GEP-2643), then:
//! HTTPS hands the connection, peeked bytes replayed, back to the HTTPS server; Passthrough
//! forwards the raw bytes to the TLSRoute's backend; Terminate completes the handshake with
//! the listener's certificates and forwards the decrypted bytes. A TCP listener's connections
//! go to its oldest TCPRoute. UDP sockets relay datagrams per client session.
//!
//! The table lives in an `ArcSwap`: a reload changes where new connections and sessions go;
//! established ones keep their backend.
//!
//! Every connection is counted once by outcome (`gw_tcp_connections_total`), and every UDP
//! session and datagram (`gw_udp_*`), by gateway, listener, route and backend as far as they
//! are known (see [`crate::metrics`]). A connection or session looks its series up once; its
//! bytes are atomic additions per read or write.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use gw_model::resources::ObjectKey;
use gw_model::table::{Protocol, RouteTable};
use gw_router::l4::sni::{self, PeekConfig, PeekError, Prefixed};
use gw_router::l4::tcp::{self, TcpProxyConfig};
use gw_router::l4::udp::{Direction, SessionEnd, SessionObserver, UdpProxy, UdpProxyConfig};
use gw_router::l4::{BackendChoice, L4Routes, Listener, SelectError, TlsAction};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UdpSocket};
use tokio::task::JoinHandle;

use crate::metrics::{L4Key, L4Metrics, Outcome, TcpSeries, UdpDrop, UdpSeries};
use crate::tls;

/// How a TCP socket's connections are dispatched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The port has TLS listeners (maybe HTTPS ones too): dispatch by SNI.
    Sni,
    /// The port has a TCP listener.
    Tcp,
}

impl Mode {
    /// The mode of a port from its listeners' protocols; `None`: HTTP or HTTPS only.
    pub(crate) fn of(protocols: impl IntoIterator<Item = Protocol>) -> Option<Mode> {
        let mut mode = None;
        for p in protocols {
            match p {
                Protocol::Tcp => return Some(Mode::Tcp),
                Protocol::Tls => mode = Some(Mode::Sni),
                Protocol::Http | Protocol::Https | Protocol::Udp => {}
            }
        }
        mode
    }
}

/// What connections are routed with: the L4 listeners and the TLS configurations of the
/// terminating ones.
#[derive(Default)]
struct Table {
    routes: L4Routes,
    /// By (Gateway, listener owner, listener name).
    terminate: HashMap<(ObjectKey, ObjectKey, String), Arc<rustls::ServerConfig>>,
}

impl Table {
    fn build(
        table: &RouteTable,
        resolver: &gw_router::dns::Resolver,
        errors: &mut Vec<String>,
    ) -> Table {
        let mut terminate = HashMap::new();
        for g in &table.gateways {
            for l in &g.listeners {
                let terminating = l.protocol == Protocol::Tls
                    && l.tls
                        .as_ref()
                        .is_some_and(|t| t.mode == gw_model::resources::TlsMode::Terminate);
                if !terminating {
                    continue;
                }
                match tls::server_config(&[l]) {
                    Ok(config) => {
                        // The decrypted bytes go to a TCP backend: no ALPN is negotiated.
                        let mut config = rustls::ServerConfig::clone(&config);
                        config.alpn_protocols.clear();
                        terminate.insert(
                            (g.key.clone(), l.owner.key.clone(), l.name.clone()),
                            Arc::new(config),
                        );
                    }
                    Err(e) => errors.push(format!("Gateway {} listener {}: {e}", g.key, l.name)),
                }
            }
        }
        Table {
            routes: L4Routes::build_with(table, resolver),
            terminate,
        }
    }
}

/// The L4 side of the gateway: the routing table and the UDP sockets.
pub(crate) struct L4 {
    table: Arc<ArcSwap<Table>>,
    udp: HashMap<SocketAddr, (ObjectKey, JoinHandle<()>)>,
    /// How long a client may take to send its ClientHello, and to complete a terminated TLS
    /// handshake (`--tls-handshake-timeout`).
    handshake_timeout: Duration,
    metrics: Arc<L4Metrics>,
}

impl L4 {
    pub(crate) fn new(handshake_timeout: Duration, metrics: Arc<L4Metrics>) -> L4 {
        L4 {
            table: Arc::new(ArcSwap::from_pointee(Table::default())),
            udp: HashMap::new(),
            handshake_timeout,
            metrics,
        }
    }

    /// Swaps the table in: new connections and sessions use it.
    pub(crate) fn swap(
        &self,
        table: &RouteTable,
        resolver: &gw_router::dns::Resolver,
        errors: &mut Vec<String>,
    ) {
        self.table
            .store(Arc::new(Table::build(table, resolver, errors)));
    }

    /// A TCP socket's dispatcher.
    pub(crate) fn socket(&self, mode: Mode, gateway: ObjectKey, port: u16) -> Socket {
        Socket {
            mode,
            labels: Labels::new(&gateway),
            gateway,
            port,
            table: self.table.clone(),
            handshake_timeout: self.handshake_timeout,
            metrics: self.metrics.clone(),
        }
    }

    /// Binds the UDP sockets in `desired` (address -> Gateway) that are not bound yet and
    /// closes the others. Returns what could not be bound.
    pub(crate) async fn apply_udp(
        &mut self,
        desired: HashMap<SocketAddr, ObjectKey>,
    ) -> Vec<String> {
        self.udp.retain(|addr, (gateway, task)| {
            let keep = desired.get(addr) == Some(gateway);
            if !keep {
                tracing::info!(%addr, %gateway, "closing UDP listener");
                task.abort();
            }
            keep
        });
        let mut errors = Vec::new();
        for (addr, gateway) in desired {
            if self.udp.contains_key(&addr) {
                continue;
            }
            match UdpSocket::bind(addr).await {
                Ok(socket) => {
                    tracing::info!(%addr, %gateway, "listening (UDP)");
                    let proxy = UdpProxy::new(Arc::new(socket), UdpProxyConfig::default());
                    let relay = UdpRelay {
                        table: self.table.clone(),
                        metrics: self.metrics.clone(),
                        labels: Labels::new(&gateway),
                        gateway: gateway.clone(),
                        port: addr.port(),
                    };
                    let task = tokio::spawn(async move {
                        let e = proxy
                            .run_observed(|client| relay.route(client), |_| relay.over_limit())
                            .await;
                        tracing::error!(%addr, error = %e, "UDP listener failed");
                    });
                    self.udp.insert(addr, (gateway, task));
                }
                Err(e) => {
                    tracing::error!(%addr, %gateway, error = %e, "cannot bind UDP listener");
                    errors.push(format!("{addr}/udp (Gateway {gateway}): {e}"));
                }
            }
        }
        errors
    }
}

impl Drop for L4 {
    fn drop(&mut self) {
        for (_, task) in self.udp.values() {
            task.abort();
        }
    }
}

/// Dispatches the connections of one TCP socket.
#[derive(Clone)]
pub(crate) struct Socket {
    mode: Mode,
    gateway: ObjectKey,
    port: u16,
    table: Arc<ArcSwap<Table>>,
    handshake_timeout: Duration,
    metrics: Arc<L4Metrics>,
    /// The Gateway's label, and the empty one.
    labels: Labels,
}

/// Where a TLS connection goes.
enum TlsTarget {
    Https,
    Passthrough(BackendChoice),
    Terminate(BackendChoice, Arc<rustls::ServerConfig>),
}

/// Label strings made once per socket.
#[derive(Clone)]
struct Labels {
    gateway: Arc<str>,
    empty: Arc<str>,
}

impl Labels {
    fn new(gateway: &ObjectKey) -> Labels {
        Labels {
            gateway: gateway.to_string().into(),
            empty: Arc::from(""),
        }
    }

    /// The series key of a connection or datagram that got as far as `listener`, `route` and
    /// `backend`.
    fn key(
        &self,
        listener: Option<&Listener>,
        route: Option<&Arc<str>>,
        backend: Option<&BackendChoice>,
    ) -> L4Key {
        L4Key {
            gateway: self.gateway.clone(),
            listener: listener.map_or_else(|| self.empty.clone(), |l| l.label().clone()),
            route: route.unwrap_or(&self.empty).clone(),
            backend: backend.map_or_else(|| self.empty.clone(), |b| b.label().clone()),
        }
    }
}

/// Why a connection or datagram has nowhere to go, with the series it counts in.
struct Unrouted {
    key: L4Key,
    /// Boxed: a rare error keeps the common result small.
    error: Box<SelectError>,
}

/// The outcome a selection error counts as.
fn outcome(e: &SelectError) -> Outcome {
    match e {
        SelectError::NoListener { .. }
        | SelectError::UnknownServerName { .. }
        | SelectError::NoRoute { .. } => Outcome::NoRoute,
        // NoBackend, InvalidBackend, NoEndpoints, Unresolved (and any later variant).
        _ => Outcome::NoBackend,
    }
}

/// The route of `listener` for server name `sni`, and a backend of it.
fn choose(
    labels: &Labels,
    listener: &Listener,
    sni: Option<&str>,
) -> Result<(L4Key, BackendChoice), Unrouted> {
    let route = listener.route(sni).map_err(|error| Unrouted {
        key: labels.key(Some(listener), None, None),
        error: Box::new(error),
    })?;
    let backend = route.choose().map_err(|error| Unrouted {
        key: labels.key(Some(listener), Some(route.label()), None),
        error: Box::new(error),
    })?;
    Ok((
        labels.key(Some(listener), Some(route.label()), Some(&backend)),
        backend,
    ))
}

impl Socket {
    /// Serves one connection to its end. Returns it, with the bytes read so far replayed,
    /// when an HTTPS listener takes it.
    pub(crate) async fn serve(
        self,
        mut stream: TcpStream,
        peer: SocketAddr,
    ) -> Option<Prefixed<TcpStream>> {
        let config = TcpProxyConfig::default();
        match self.mode {
            Mode::Tcp => {
                let chosen = {
                    let t = self.table.load();
                    t.routes
                        .tcp_listener(&self.gateway, self.port)
                        .map_err(|error| Unrouted {
                            key: self.labels.key(None, None, None),
                            error: Box::new(error),
                        })
                        .and_then(|l| choose(&self.labels, l, None))
                };
                match chosen {
                    Ok((key, backend)) => {
                        if let Some(addr) = self.resolve(&key, &backend, peer).await {
                            self.forward(&mut stream, addr, &key, peer, &config).await;
                        }
                    }
                    Err(u) => self.unrouted(u, peer),
                }
                None
            }
            Mode::Sni => {
                let peeked = match sni::peek(
                    &mut stream,
                    PeekConfig::default().timeout(self.handshake_timeout),
                )
                .await
                {
                    Ok(p) => p,
                    Err(e) => {
                        let outcome = match e {
                            PeekError::Timeout(_) => Outcome::PeekTimeout,
                            PeekError::Eof | PeekError::Io(_) => Outcome::ClientClosed,
                            // Parse, TooLarge (and any later variant).
                            _ => Outcome::InvalidClientHello,
                        };
                        self.count(&self.labels.key(None, None, None), outcome);
                        tracing::debug!(%peer, error = %e, "no TLS ClientHello; connection closed");
                        return None;
                    }
                };
                let target = self.tls_target(peeked.server_name.as_deref());
                let stream = peeked.into_stream(stream);
                match target {
                    Ok((key, TlsTarget::Https)) => {
                        self.count(&key, Outcome::Https);
                        return Some(stream);
                    }
                    Ok((key, TlsTarget::Passthrough(backend))) => {
                        let mut stream = stream;
                        if let Some(addr) = self.resolve(&key, &backend, peer).await {
                            self.forward(&mut stream, addr, &key, peer, &config).await;
                        }
                    }
                    Ok((key, TlsTarget::Terminate(backend, tls))) => {
                        let addr = self.resolve(&key, &backend, peer).await?;
                        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                        match tokio::time::timeout(self.handshake_timeout, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(mut tls_stream)) => {
                                self.forward(&mut tls_stream, addr, &key, peer, &config)
                                    .await;
                            }
                            Ok(Err(e)) => {
                                self.count(&key, Outcome::TlsHandshakeError);
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            }
                            Err(_) => {
                                self.count(&key, Outcome::TlsHandshakeError);
                                tracing::debug!(%peer, "TLS handshake timed out");
                            }
                        }
                    }
                    Err(u) => self.unrouted(u, peer),
                }
                None
            }
        }
    }

    fn tls_target(&self, sni: Option<&str>) -> Result<(L4Key, TlsTarget), Unrouted> {
        let t = self.table.load();
        let listener = t
            .routes
            .tls_listener(&self.gateway, self.port, sni)
            .map_err(|error| Unrouted {
                key: self.labels.key(None, None, None),
                error: Box::new(error),
            })?;
        match listener.action() {
            Some(TlsAction::Passthrough) => {
                let (key, backend) = choose(&self.labels, listener, sni)?;
                Ok((key, TlsTarget::Passthrough(backend)))
            }
            Some(TlsAction::Terminate) => {
                let tls_key = (
                    self.gateway.clone(),
                    listener.owner().clone(),
                    listener.name().to_owned(),
                );
                // Without a usable certificate the listener is not served (the error was
                // reported when the table was applied).
                let Some(tls) = t.terminate.get(&tls_key) else {
                    return Err(Unrouted {
                        key: self.labels.key(Some(listener), None, None),
                        error: Box::new(SelectError::NoRoute {
                            listener: listener.name().to_owned(),
                            sni: sni.map(str::to_owned),
                        }),
                    });
                };
                let (key, backend) = choose(&self.labels, listener, sni)?;
                Ok((key, TlsTarget::Terminate(backend, tls.clone())))
            }
            _ => Ok((
                self.labels.key(Some(listener), None, None),
                TlsTarget::Https,
            )),
        }
    }

    fn count(&self, key: &L4Key, outcome: Outcome) {
        self.metrics.tcp(key).count(outcome);
    }

    fn unrouted(&self, u: Unrouted, peer: SocketAddr) {
        self.count(&u.key, outcome(&u.error));
        tracing::debug!(%peer, error = %u.error, "connection closed");
    }

    /// The backend's endpoint, waiting (boundedly) for the first DNS answer of an external
    /// backend; `None` (counted) when there is none.
    async fn resolve(
        &self,
        key: &L4Key,
        backend: &BackendChoice,
        peer: SocketAddr,
    ) -> Option<SocketAddr> {
        match backend.resolve().await {
            Ok(addr) => Some(addr),
            Err(error) => {
                self.unrouted(
                    Unrouted {
                        key: key.clone(),
                        error: Box::new(error),
                    },
                    peer,
                );
                None
            }
        }
    }

    /// Connects to `backend` and copies both ways until both sides are done.
    async fn forward<S>(
        &self,
        client: &mut S,
        backend: SocketAddr,
        key: &L4Key,
        peer: SocketAddr,
        config: &TcpProxyConfig,
    ) where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let series = self.metrics.tcp(key);
        let mut upstream = match tcp::connect(backend, config).await {
            Ok(s) => s,
            Err(e) => {
                series.count(Outcome::BackendConnectError);
                tracing::debug!(%peer, error = %e, "backend unreachable; connection closed");
                return;
            }
        };
        series.count(Outcome::Forwarded);
        let _open = series.open();
        let started = Instant::now();
        let mut client = Counted {
            inner: client,
            series: &series,
        };
        let result = tcp::proxy(&mut client, &mut upstream, config).await;
        series.observe_duration(started.elapsed());
        match result {
            Ok((up, down)) => tracing::debug!(%peer, %backend, up, down, "connection done"),
            Err(e) => {
                tracing::debug!(%peer, %backend, error = %e, "connection ended with an error")
            }
        }
    }
}

/// A client stream that adds the bytes read from it and written to it to its series.
struct Counted<'a, S> {
    inner: &'a mut S,
    series: &'a TcpSeries,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut *self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        if n > 0 {
            self.series.received.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut *self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.series.sent.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

/// Routes the new clients of one UDP socket and counts their datagrams.
struct UdpRelay {
    table: Arc<ArcSwap<Table>>,
    metrics: Arc<L4Metrics>,
    labels: Labels,
    gateway: ObjectKey,
    port: u16,
}

impl UdpRelay {
    /// The backend of a new client, with its session's counters; `None` (counted) drops its
    /// datagram. UDP does not wait for DNS: a datagram for an external backend whose name
    /// has not been answered yet is dropped (`no_backend`), and the client's next one opens
    /// the session once it is.
    fn route(&self, client: SocketAddr) -> Option<(SocketAddr, UdpSession)> {
        let chosen = {
            let t = self.table.load();
            t.routes
                .udp_listener(&self.gateway, self.port)
                .map_err(|error| Unrouted {
                    key: self.labels.key(None, None, None),
                    error: Box::new(error),
                })
                .and_then(|l| choose(&self.labels, l, None))
                .and_then(|(key, backend)| match backend.endpoint() {
                    Ok(addr) => Ok((key, addr)),
                    Err(error) => Err(Unrouted {
                        key,
                        error: Box::new(error),
                    }),
                })
        };
        match chosen {
            Ok((key, addr)) => Some((
                addr,
                UdpSession {
                    series: self.metrics.udp(&key),
                    opened: AtomicBool::new(false),
                },
            )),
            Err(u) => {
                let why = match outcome(&u.error) {
                    Outcome::NoRoute => UdpDrop::NoRoute,
                    _ => UdpDrop::NoBackend,
                };
                self.metrics.udp(&u.key).drop_datagram(why);
                tracing::debug!(%client, error = %u.error, "UDP datagram dropped");
                None
            }
        }
    }

    /// Counts a new client's datagram dropped at the session limit.
    fn over_limit(&self) {
        let key = {
            let t = self.table.load();
            let listener = t.routes.udp_listener(&self.gateway, self.port).ok();
            self.labels.key(listener, None, None)
        };
        self.metrics.udp(&key).drop_datagram(UdpDrop::SessionLimit);
    }
}

/// The counters of one UDP session.
struct UdpSession {
    series: Arc<UdpSeries>,
    opened: AtomicBool,
}

impl SessionObserver for UdpSession {
    fn opened(&self) {
        self.opened.store(true, Ordering::Relaxed);
        self.series.sessions.fetch_add(1, Ordering::Relaxed);
        self.series.open.fetch_add(1, Ordering::Relaxed);
    }

    fn relayed(&self, direction: Direction, bytes: usize) {
        let (datagrams, total) = match direction {
            Direction::ToBackend => (&self.series.received_datagrams, &self.series.received_bytes),
            // ToClient (and any later direction).
            _ => (&self.series.sent_datagrams, &self.series.sent_bytes),
        };
        datagrams.fetch_add(1, Ordering::Relaxed);
        total.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn dropped(&self, _: Direction) {
        self.series.drop_datagram(UdpDrop::SendError);
    }

    fn closed(&self, end: SessionEnd) {
        if end == SessionEnd::Idle {
            self.series.expired.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for UdpSession {
    /// The session ended, or the listener closed.
    fn drop(&mut self) {
        if self.opened.load(Ordering::Relaxed) {
            self.series.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
