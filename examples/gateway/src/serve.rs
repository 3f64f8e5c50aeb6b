//! Data-plane listeners: binds the sockets the table asks for and serves them with gw-router.

use std::collections::{HashMap, HashSet};
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

use crate::tls;

/// How long a client may take to send request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client may take to complete a TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

type TlsConfig = Arc<ArcSwap<rustls::ServerConfig>>;

struct Running {
    gateway: ObjectKey,
    /// For TLS sockets: the configuration, swapped in place when certificates change.
    tls: Option<TlsConfig>,
    stop: watch::Sender<bool>,
}

struct Desired {
    gateway: ObjectKey,
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// The listeners currently bound, and the router that serves them.
pub(crate) struct Servers {
    router: Router,
    running: HashMap<SocketAddr, Running>,
    warned: HashSet<(ObjectKey, String)>,
}

impl Servers {
    pub(crate) fn new(router: Router) -> Self {
        Servers {
            router,
            running: HashMap::new(),
            warned: HashSet::new(),
        }
    }

    /// Swaps the routing table in, then opens sockets for new listeners, updates TLS
    /// certificates of running ones, and closes the ones no longer configured. Requests in
    /// flight finish on the table they started with. Returns what could not be served.
    pub(crate) async fn apply(&mut self, table: &RouteTable) -> Vec<String> {
        self.router.swap(Routes::build(table));
        let mut errors = Vec::new();
        let desired = self.desired(table, &mut errors);
        self.running.retain(|addr, r| {
            let keep = desired
                .get(addr)
                .is_some_and(|d| d.gateway == r.gateway && d.tls.is_some() == r.tls.is_some());
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
                    tokio::spawn(accept_loop(
                        listener,
                        addr,
                        d.gateway.clone(),
                        self.router.clone(),
                        tls.clone(),
                        stopped,
                    ));
                    self.running.insert(
                        addr,
                        Running {
                            gateway: d.gateway,
                            tls,
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
        errors
    }

    fn desired(
        &mut self,
        table: &RouteTable,
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
                match l.protocol {
                    Protocol::Http | Protocol::Https => by_port.entry(l.port).or_default().push(l),
                    Protocol::Tls | Protocol::Tcp | Protocol::Udp => {
                        if self.warned.insert((g.key.clone(), l.name.clone())) {
                            tracing::warn!(gateway = %g.key, listener = %l.name, protocol = ?l.protocol,
                                "listener protocol is not served yet by gw-gateway");
                        }
                    }
                }
            }
            for (port, listeners) in by_port {
                let https: Vec<&ListenerTable> = listeners
                    .iter()
                    .copied()
                    .filter(|l| l.protocol == Protocol::Https)
                    .collect();
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
        };
        let router = router.clone();
        match &tls {
            None => {
                tokio::spawn(serve_connection(stream, router, incoming));
            }
            Some(config) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(config.load_full());
                tokio::spawn(async move {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls_stream)) => serve_connection(tls_stream, router, incoming).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
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
