//! Data-plane listeners: binds the sockets the table asks for and serves them with gw-router.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use gw_model::resources::ObjectKey;
use gw_model::table::{ListenerTable, Protocol, RouteTable};
use gw_router::{Incoming, Router, Routes, Scheme};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt as _;

use crate::{l4, tls};

/// How long a client may take to send request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client may take to complete a TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

type TlsConfig = Arc<ArcSwap<rustls::ServerConfig>>;

struct Running {
    gateway: ObjectKey,
    /// For TLS sockets: the configuration, swapped in place when certificates change.
    tls: Option<TlsConfig>,
    /// TLS (by SNI) or TCP dispatch.
    l4: Option<l4::Mode>,
    stop: watch::Sender<bool>,
}

struct Desired {
    gateway: ObjectKey,
    tls: Option<Arc<rustls::ServerConfig>>,
    l4: Option<l4::Mode>,
}

/// The listeners currently bound, and the router that serves them.
pub(crate) struct Servers {
    router: Router,
    running: HashMap<SocketAddr, Running>,
    /// TLS, TCP and UDP listeners.
    l4: l4::L4,
}

impl Servers {
    pub(crate) fn new(router: Router) -> Self {
        Servers {
            router,
            running: HashMap::new(),
            l4: l4::L4::new(),
        }
    }

    /// Swaps the routing table in, then opens sockets for new listeners, updates TLS
    /// certificates of running ones, and closes the ones no longer configured. Requests in
    /// flight finish on the table they started with. Returns what could not be served.
    pub(crate) async fn apply(&mut self, table: &RouteTable) -> Vec<String> {
        self.router.swap(Routes::build(table));
        let mut errors = Vec::new();
        self.l4.swap(table, &mut errors);
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
                    tokio::spawn(accept_loop(
                        listener,
                        addr,
                        d.gateway.clone(),
                        self.router.clone(),
                        tls.clone(),
                        l4,
                        stopped,
                    ));
                    self.running.insert(
                        addr,
                        Running {
                            gateway: d.gateway,
                            tls,
                            l4: d.l4,
                            stop,
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

async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    gateway: ObjectKey,
    router: Router,
    tls: Option<TlsConfig>,
    l4: Option<l4::Socket>,
    mut stopped: watch::Receiver<bool>,
) {
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
        let _ = stream.set_nodelay(true);
        let incoming = Incoming {
            gateway: gateway.clone(),
            port: addr.port(),
            scheme: if tls.is_some() {
                Scheme::Https
            } else {
                Scheme::Http
            },
            peer: Some(peer),
            sni: None,
        };
        let router = router.clone();
        if let Some(l4) = &l4 {
            // TLS (by SNI) and TCP listeners; an HTTPS listener on the port gets the
            // connection back, with the bytes read so far replayed.
            let (l4, tls) = (l4.clone(), tls.clone());
            tokio::spawn(async move {
                if let Some(stream) = l4.serve(stream, peer).await
                    && let Some(config) = tls
                {
                    serve_tls(stream, config.load_full(), router, incoming).await;
                }
            });
            continue;
        }
        match &tls {
            None => {
                tokio::spawn(serve_connection(stream, router, incoming));
            }
            Some(config) => {
                tokio::spawn(serve_tls(stream, config.load_full(), router, incoming));
            }
        }
    }
}

/// Terminates TLS, then serves HTTP.
async fn serve_tls<S>(
    stream: S,
    config: Arc<rustls::ServerConfig>,
    router: Router,
    incoming: Incoming,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = incoming.peer;
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls_stream)) => {
            // GEP-3567: the router answers 421 to hosts of other listeners.
            let sni = tls_stream.get_ref().1.server_name().map(str::to_owned);
            let incoming = Incoming { sni, ..incoming };
            serve_connection(tls_stream, router, incoming).await
        }
        Ok(Err(e)) => tracing::debug!(?peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(?peer, "TLS handshake timed out"),
    }
}

async fn serve_connection<S>(stream: S, router: Router, incoming: Incoming)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = incoming.peer;
    let service =
        hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(incoming.clone());
            let router = router.clone();
            async move {
                let resp = router.oneshot(req).await;
                Ok::<_, Infallible>(match resp {
                    Ok(r) => r,
                    Err(never) => match never {},
                })
            }
        });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    if let Err(e) = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(?peer, error = %e, "connection ended with an error");
    }
}
