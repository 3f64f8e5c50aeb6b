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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use gw_model::resources::ObjectKey;
use gw_model::table::{Protocol, RouteTable};
use gw_router::l4::sni::{self, PeekConfig, Prefixed};
use gw_router::l4::tcp::{self, TcpProxyConfig};
use gw_router::l4::udp::{UdpProxy, UdpProxyConfig};
use gw_router::l4::{L4Routes, SelectError, TlsAction};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UdpSocket};
use tokio::task::JoinHandle;

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
}

impl L4 {
    pub(crate) fn new(handshake_timeout: Duration) -> L4 {
        L4 {
            table: Arc::new(ArcSwap::from_pointee(Table::default())),
            udp: HashMap::new(),
            handshake_timeout,
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
            gateway,
            port,
            table: self.table.clone(),
            handshake_timeout: self.handshake_timeout,
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
                    let table = self.table.clone();
                    let (gw, port) = (gateway.clone(), addr.port());
                    let task = tokio::spawn(async move {
                        let route = move |client: SocketAddr| {
                            let t = table.load();
                            let backend = t
                                .routes
                                .udp_listener(&gw, port)
                                .and_then(|l| l.route(None))
                                .and_then(|r| r.backend());
                            backend
                                .inspect_err(|e| tracing::debug!(%client, error = %e, "UDP datagram dropped"))
                                .ok()
                        };
                        let e = proxy.run(route).await;
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
}

/// Where a TLS connection goes.
enum TlsTarget {
    Https,
    Passthrough(SocketAddr),
    Terminate(SocketAddr, Arc<rustls::ServerConfig>),
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
                let backend = {
                    let t = self.table.load();
                    t.routes
                        .tcp_listener(&self.gateway, self.port)
                        .and_then(|l| l.route(None))
                        .and_then(|r| r.backend())
                };
                match backend {
                    Ok(backend) => forward(&mut stream, backend, peer, &config).await,
                    Err(e) => tracing::debug!(%peer, error = %e, "TCP connection closed"),
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
                        tracing::debug!(%peer, error = %e, "no TLS ClientHello; connection closed");
                        return None;
                    }
                };
                let target = self.tls_target(peeked.server_name.as_deref());
                let stream = peeked.into_stream(stream);
                match target {
                    Ok(TlsTarget::Https) => return Some(stream),
                    Ok(TlsTarget::Passthrough(backend)) => {
                        let mut stream = stream;
                        forward(&mut stream, backend, peer, &config).await;
                    }
                    Ok(TlsTarget::Terminate(backend, tls)) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                        match tokio::time::timeout(self.handshake_timeout, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(mut tls_stream)) => {
                                forward(&mut tls_stream, backend, peer, &config).await;
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    }
                    Err(e) => tracing::debug!(%peer, error = %e, "TLS connection closed"),
                }
                None
            }
        }
    }

    fn tls_target(&self, sni: Option<&str>) -> Result<TlsTarget, SelectError> {
        let t = self.table.load();
        let listener = t.routes.tls_listener(&self.gateway, self.port, sni)?;
        match listener.action() {
            Some(TlsAction::Passthrough) => {
                Ok(TlsTarget::Passthrough(listener.route(sni)?.backend()?))
            }
            Some(TlsAction::Terminate) => {
                let backend = listener.route(sni)?.backend()?;
                let key = (
                    self.gateway.clone(),
                    listener.owner().clone(),
                    listener.name().to_owned(),
                );
                // Without a usable certificate the listener is not served (the error was
                // reported when the table was applied).
                let Some(tls) = t.terminate.get(&key) else {
                    return Err(SelectError::NoRoute {
                        listener: listener.name().to_owned(),
                        sni: sni.map(str::to_owned),
                    });
                };
                Ok(TlsTarget::Terminate(backend, tls.clone()))
            }
            _ => Ok(TlsTarget::Https),
        }
    }
}

/// Connects to `backend` and copies both ways until both sides are done.
async fn forward<S>(client: &mut S, backend: SocketAddr, peer: SocketAddr, config: &TcpProxyConfig)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut upstream = match tcp::connect(backend, config).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "backend unreachable; connection closed");
            return;
        }
    };
    match tcp::proxy(client, &mut upstream, config).await {
        Ok((up, down)) => tracing::debug!(%peer, %backend, up, down, "connection done"),
        Err(e) => tracing::debug!(%peer, %backend, error = %e, "connection ended with an error"),
    }
}
