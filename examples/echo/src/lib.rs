//! An echo backend that answers like the Gateway API conformance suite's echo server
//! (`registry.k8s.io/gateway-api/echo-basic`), for gw's tests and demo.
//!
//! The conformance suite sends requests through the gateway under test to echo-basic pods
//! and checks what they report back: which pod answered, which path/host/headers arrived,
//! over which TLS connection. [`EchoServer`] reproduces those replies in-process, so a test
//! harness can run the replayable suite data against an embedded gateway without
//! Kubernetes, and the `gw-echo` binary does the same as a standalone process (reading
//! echo-basic's environment variables).
//!
//! What it serves:
//! - **HTTP** ([`EchoMode::Http`]): on the `http` listener HTTP/1.1 and h2c with prior
//!   knowledge; `/health`, `/status/NNN`, `/retry/...` (retry simulator), `/ws` (WebSocket
//!   echo) and a JSON echo of every other request (`?delay=1s` delays it,
//!   `X-Echo-Set-Header: A:1,B:2` sets reply headers). The optional `h2c` listener is
//!   echo-basic's `H2C_PORT` (HTTP/2 only), the optional `https` listener adds TLS (ALPN
//!   `h2`/`http/1.1`, optional client certificates) and a `tls` object in the echo.
//! - **gRPC** ([`EchoMode::Grpc`]): the HTTP listeners speak gRPC instead
//!   (`gateway_api_conformance.echo_basic.grpcecho.GrpcEcho`, see [`proto`]).
//! - **TCP** (`tcp`, `tcp_tls`): the tcp-backend line protocol (welcome line, `TEST`,
//!   `IS_TLS`, `PING`).
//! - **UDP** (`udp`): a JSON reply to every datagram.
//!
//! Every echoed HTTP request is logged as
//! `Echoing back request made to <path> to client (<addr>)`, like echo-basic, into the
//! [`EchoLog`] (and to stderr when [`EchoConfig::log_to_stderr`] is set), which is how the
//! suite verifies request mirroring.
//!
//! # Example
//!
//! ```
//! use gw_echo::{EchoConfig, EchoServer};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = EchoServer::start(EchoConfig {
//!     pod: "infra-backend-v1-abc-xyz".into(),
//!     namespace: "gateway-conformance-infra".into(),
//!     http: Some("127.0.0.1:0".parse()?),
//!     ..EchoConfig::default()
//! })
//! .await?;
//! let addr = server.http_addr().ok_or("no http listener")?;
//!
//! let mut conn = tokio::net::TcpStream::connect(addr).await?;
//! conn.write_all(b"GET /one?x=y HTTP/1.1\r\nHost: foo.com\r\nConnection: close\r\n\r\n")
//!     .await?;
//! let mut reply = String::new();
//! conn.read_to_string(&mut reply).await?;
//! assert!(reply.starts_with("HTTP/1.1 200 OK"));
//! assert!(reply.contains(r#""path": "/one?x=y""#));
//! assert!(reply.contains(r#""pod": "infra-backend-v1-abc-xyz""#));
//! assert_eq!(server.log().count_starting_with("Echoing back request made to /one?x=y to client"), 1);
//!
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

pub mod authz;
pub mod dns;
mod error;
mod go;
mod grpc;
mod http;
mod l4;
mod log;
mod net;
pub mod proto;
mod tls;

pub use error::EchoError;
pub use l4::TCP_WELCOME;
pub use log::{EchoLog, LOG_CAPACITY};

/// Which protocol the HTTP listeners (`http`, `h2c`, `https`) speak.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EchoMode {
    /// echo-basic's HTTP echo (default).
    #[default]
    Http,
    /// echo-basic's gRPC mode (`GRPC_ECHO_SERVER`): the `GrpcEcho` service over HTTP/2
    /// (h2c on `http`/`h2c`, TLS with ALPN `h2` on `https`).
    Grpc,
}

/// A PEM certificate chain and private key.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsIdentity {
    /// PEM certificate chain, leaf first.
    pub cert_pem: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_pem: String,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("cert_pem", &format_args!("<{} bytes>", self.cert_pem.len()))
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// The TLS listener (echo-basic's `HTTPS_PORT`).
#[derive(Clone, PartialEq, Eq)]
pub struct HttpsConfig {
    /// Address to listen on.
    pub addr: SocketAddr,
    /// PEM certificate chain (`TLS_SERVER_CERT`).
    pub cert_pem: String,
    /// PEM private key (`TLS_SERVER_PRIVKEY`).
    pub key_pem: String,
    /// PEM CA certificates (`TLS_CLIENT_CACERTS`). When set, the server asks for a client
    /// certificate and verifies it against these if one is sent, but also accepts clients
    /// without one (Go's `tls.VerifyClientCertIfGiven`).
    pub client_ca_pem: Option<String>,
}

impl fmt::Debug for HttpsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpsConfig")
            .field("addr", &self.addr)
            .field("cert_pem", &format_args!("<{} bytes>", self.cert_pem.len()))
            .field("key_pem", &"<redacted>")
            .field(
                "client_ca_pem",
                &self.client_ca_pem.as_ref().map(|c| c.len()),
            )
            .finish()
    }
}

/// What an [`EchoServer`] reports and where it listens. Every listener is optional (at
/// least one must be set); port 0 picks a free port, see [`EchoServer::http_addr`] etc.
#[derive(Clone, Debug, Default)]
pub struct EchoConfig {
    /// Pod name reported in every reply (`POD_NAME`). The suite checks it starts with the
    /// backend's Deployment name, e.g. `infra-backend-v1-5d7f9c6b8-abcde`.
    pub pod: String,
    /// Namespace reported (`NAMESPACE`).
    pub namespace: String,
    /// Service name reported (`SERVICE_NAME`).
    pub service: String,
    /// Ingress name reported (`INGRESS_NAME`), usually empty.
    pub ingress: String,
    /// HTTP echo or gRPC echo on the HTTP listeners.
    pub mode: EchoMode,
    /// HTTP/1.1 + h2c prior-knowledge listener (echo-basic's `HTTP_PORT`).
    pub http: Option<SocketAddr>,
    /// echo-basic's `H2C_PORT` listener: echoes every path, answers `400 Expected h2c
    /// request` to HTTP/1 requests without `Upgrade: h2c`.
    pub h2c: Option<SocketAddr>,
    /// TLS listener (echo-basic's `HTTPS_PORT`).
    pub https: Option<HttpsConfig>,
    /// Plain TCP echo (tcp-backend's `TCP_PORT`).
    pub tcp: Option<SocketAddr>,
    /// TCP echo over TLS (tcp-backend's `TLS_PORT`).
    pub tcp_tls: Option<(SocketAddr, TlsIdentity)>,
    /// UDP echo (`UDP_PORT`).
    pub udp: Option<SocketAddr>,
    /// DNS responder standing in for the corpus's `coredns` backend ([`dns`]).
    pub dns: Option<SocketAddr>,
    /// Value of `httpPort` in HTTP echo replies. Default: the bound port of `http`
    /// (echo-basic reports its `HTTP_PORT` on every listener).
    pub http_port: Option<String>,
    /// Also print every [`EchoLog`] line to stderr (the binary does).
    pub log_to_stderr: bool,
}

impl EchoConfig {
    /// A configuration with only the `http` listener on `127.0.0.1:<free port>`.
    pub fn loopback_http(pod: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self {
            pod: pod.into(),
            namespace: namespace.into(),
            http: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            ..Self::default()
        }
    }

    fn has_listener(&self) -> bool {
        self.http.is_some()
            || self.h2c.is_some()
            || self.https.is_some()
            || self.tcp.is_some()
            || self.tcp_tls.is_some()
            || self.udp.is_some()
            || self.dns.is_some()
    }
}

/// State shared by all listeners of one server.
pub(crate) struct Shared {
    pub(crate) namespace: String,
    pub(crate) ingress: String,
    pub(crate) service: String,
    pub(crate) pod: String,
    pub(crate) http_port: String,
    pub(crate) log: EchoLog,
    /// `/retry/` simulator: attempts seen per `uuid`.
    pub(crate) retries: Mutex<HashMap<String, u64>>,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// The addresses an [`EchoServer`] is bound to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct BoundAddrs {
    http: Option<SocketAddr>,
    h2c: Option<SocketAddr>,
    https: Option<SocketAddr>,
    tcp: Option<SocketAddr>,
    tcp_tls: Option<SocketAddr>,
    udp: Option<SocketAddr>,
    dns: Option<SocketAddr>,
}

/// A running echo server. Dropping it also stops it (without waiting); prefer
/// [`EchoServer::shutdown`].
#[derive(Debug)]
pub struct EchoServer {
    addrs: BoundAddrs,
    log: EchoLog,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

async fn bind_tcp(
    listener: &'static str,
    addr: Option<SocketAddr>,
) -> Result<Option<TcpListener>, EchoError> {
    match addr {
        None => Ok(None),
        Some(addr) => TcpListener::bind(addr)
            .await
            .map(Some)
            .map_err(|source| EchoError::Bind {
                listener,
                addr,
                source,
            }),
    }
}

fn local_addr<T>(
    listener: &'static str,
    socket: Option<&T>,
    get: impl Fn(&T) -> std::io::Result<SocketAddr>,
) -> Result<Option<SocketAddr>, EchoError> {
    socket
        .map(get)
        .transpose()
        .map_err(|source| EchoError::Io { listener, source })
}

impl EchoServer {
    /// Validates the configuration, binds every configured listener and starts serving.
    /// When this returns, all listeners accept connections.
    ///
    /// # Errors
    ///
    /// [`EchoError::NoListener`] if no listener is configured, [`EchoError::Tls`] for
    /// unusable PEM material, [`EchoError::Bind`] if an address cannot be bound.
    pub async fn start(config: EchoConfig) -> Result<EchoServer, EchoError> {
        if !config.has_listener() {
            return Err(EchoError::NoListener);
        }
        let alpn: &[&[u8]] = match config.mode {
            EchoMode::Http => &[b"h2", b"http/1.1"],
            EchoMode::Grpc => &[b"h2"],
        };
        let https_tls = config
            .https
            .as_ref()
            .map(|h| {
                tls::server_config(
                    "https",
                    &h.cert_pem,
                    &h.key_pem,
                    h.client_ca_pem.as_deref(),
                    alpn,
                )
            })
            .transpose()?;
        let tcp_tls_config = config
            .tcp_tls
            .as_ref()
            .map(|(_, id)| tls::server_config("tcp-tls", &id.cert_pem, &id.key_pem, None, &[]))
            .transpose()?;

        let http = bind_tcp("http", config.http).await?;
        let h2c = bind_tcp("h2c", config.h2c).await?;
        let https = bind_tcp("https", config.https.as_ref().map(|h| h.addr)).await?;
        let tcp = bind_tcp("tcp", config.tcp).await?;
        let tcp_tls = bind_tcp("tcp-tls", config.tcp_tls.as_ref().map(|(a, _)| *a)).await?;
        let udp = match config.udp {
            None => None,
            Some(addr) => Some(
                UdpSocket::bind(addr)
                    .await
                    .map_err(|source| EchoError::Bind {
                        listener: "udp",
                        addr,
                        source,
                    })?,
            ),
        };

        let dns = match config.dns {
            None => None,
            Some(addr) => Some(
                UdpSocket::bind(addr)
                    .await
                    .map_err(|source| EchoError::Bind {
                        listener: "dns",
                        addr,
                        source,
                    })?,
            ),
        };

        let addrs = BoundAddrs {
            http: local_addr("http", http.as_ref(), TcpListener::local_addr)?,
            h2c: local_addr("h2c", h2c.as_ref(), TcpListener::local_addr)?,
            https: local_addr("https", https.as_ref(), TcpListener::local_addr)?,
            tcp: local_addr("tcp", tcp.as_ref(), TcpListener::local_addr)?,
            tcp_tls: local_addr("tcp-tls", tcp_tls.as_ref(), TcpListener::local_addr)?,
            udp: local_addr("udp", udp.as_ref(), UdpSocket::local_addr)?,
            dns: local_addr("dns", dns.as_ref(), UdpSocket::local_addr)?,
        };

        let port_string =
            |a: Option<SocketAddr>| a.map(|a| a.port().to_string()).unwrap_or_default();
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let log = EchoLog::new(config.log_to_stderr);
        let shared = Arc::new(Shared {
            namespace: config.namespace,
            ingress: config.ingress,
            service: config.service,
            pod: config.pod,
            http_port: config.http_port.unwrap_or_else(|| port_string(addrs.http)),
            log: log.clone(),
            retries: Mutex::new(HashMap::new()),
            shutdown: shutdown_rx,
        });

        let mut tasks = Vec::new();
        let http_listeners = [
            (http, http::ListenerKind::Plain, None),
            (h2c, http::ListenerKind::H2c, None),
            (
                https,
                http::ListenerKind::Tls,
                https_tls.map(TlsAcceptor::from),
            ),
        ];
        for (listener, kind, tls) in http_listeners {
            if let Some(listener) = listener {
                let l = Arc::new(http::HttpListener {
                    kind,
                    tls,
                    mode: config.mode,
                    shared: shared.clone(),
                });
                tasks.push(tokio::spawn(http::serve(listener, l)));
            }
        }
        if tcp.is_some() || tcp_tls.is_some() {
            let echo = Arc::new(l4::TcpEcho {
                shared: shared.clone(),
                tcp_port: port_string(addrs.tcp),
                tls_port: port_string(addrs.tcp_tls),
            });
            if let Some(listener) = tcp {
                tasks.push(tokio::spawn(l4::serve_tcp(listener, echo.clone(), None)));
            }
            if let Some(listener) = tcp_tls {
                let acceptor = tcp_tls_config.map(TlsAcceptor::from);
                tasks.push(tokio::spawn(l4::serve_tcp(listener, echo, acceptor)));
            }
        }
        if let Some(socket) = udp {
            tasks.push(tokio::spawn(l4::serve_udp(socket, shared.clone())));
        }
        if let Some(socket) = dns {
            tasks.push(tokio::spawn(dns::serve(socket, shared.clone())));
        }

        Ok(EchoServer {
            addrs,
            log,
            shutdown: shutdown_tx,
            tasks,
        })
    }

    /// Bound address of the HTTP (or gRPC) listener.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.addrs.http
    }

    /// Bound address of the h2c-only listener.
    pub fn h2c_addr(&self) -> Option<SocketAddr> {
        self.addrs.h2c
    }

    /// Bound address of the TLS listener.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.addrs.https
    }

    /// Bound address of the plain TCP echo.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.addrs.tcp
    }

    /// Bound address of the TCP-over-TLS echo.
    pub fn tcp_tls_addr(&self) -> Option<SocketAddr> {
        self.addrs.tcp_tls
    }

    /// Bound address of the UDP echo.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.addrs.udp
    }

    /// The bound DNS responder address.
    pub fn dns_addr(&self) -> Option<SocketAddr> {
        self.addrs.dns
    }

    /// The server's log (a cheap handle that stays usable after shutdown).
    pub fn log(&self) -> EchoLog {
        self.log.clone()
    }

    /// Stops all listeners, aborts open connections (including WebSocket sessions) and
    /// waits until every task has ended.
    pub async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}
