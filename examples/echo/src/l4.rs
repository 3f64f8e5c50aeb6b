//! echo-basic's layer-4 modes: the line-based TCP echo (`tcpserver`, optionally over TLS)
//! and the UDP JSON echo (`udpechoserver`).

use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_rustls::TlsAcceptor;

use crate::tls::TlsInfo;
use crate::{Shared, go, net};

/// The first line the TCP echo sends on every connection.
pub const TCP_WELCOME: &str = "Gateway API Test TCP Server\n";

/// Go's `bufio.Scanner` default limit: longer lines end the connection.
const MAX_LINE: usize = 64 * 1024;

/// Largest UDP payload read (larger datagrams are truncated).
const UDP_BUFFER: usize = 64 * 1024;

pub(crate) struct TcpEcho {
    pub(crate) shared: Arc<Shared>,
    pub(crate) tcp_port: String,
    pub(crate) tls_port: String,
}

#[derive(Serialize)]
struct TcpAssertions<'a> {
    namespace: &'a str,
    ingress: &'a str,
    service: &'a str,
    pod: &'a str,
    tcpport: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    tlsport: &'a str,
    #[serde(rename = "isTLS")]
    is_tls: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<TcpTlsAssertions<'a>>,
}

#[derive(Serialize)]
struct TcpTlsAssertions<'a> {
    version: String,
    #[serde(rename = "serverName")]
    server_name: &'a str,
    #[serde(rename = "negotiatedProtocol", skip_serializing_if = "str::is_empty")]
    negotiated_protocol: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    curves: &'a str,
    #[serde(rename = "cipherSuite")]
    cipher_suite: &'a str,
}

impl TcpEcho {
    fn payload(&self, tls: Option<&TlsInfo>) -> String {
        let s = &self.shared;
        let assertions = TcpAssertions {
            namespace: &s.namespace,
            ingress: &s.ingress,
            service: &s.service,
            pod: &s.pod,
            tcpport: &self.tcp_port,
            tlsport: &self.tls_port,
            is_tls: tls.is_some(),
            tls: tls.map(|t| TcpTlsAssertions {
                version: t.version_go_name(),
                server_name: &t.server_name,
                negotiated_protocol: &t.negotiated_protocol,
                curves: &t.curve,
                cipher_suite: &t.cipher_suite,
            }),
        };
        go::marshal(&assertions).unwrap_or_default()
    }
}

pub(crate) async fn serve_tcp(listener: TcpListener, echo: Arc<TcpEcho>, tls: Option<TlsAcceptor>) {
    let shutdown = echo.shared.shutdown.clone();
    net::accept_loop(listener, shutdown, move |stream, remote| {
        tcp_conn(stream, remote, echo.clone(), tls.clone())
    })
    .await;
}

async fn tcp_conn(
    stream: TcpStream,
    remote: SocketAddr,
    echo: Arc<TcpEcho>,
    tls: Option<TlsAcceptor>,
) {
    let result = match tls {
        None => {
            let payload = echo.payload(None);
            line_session(stream, &payload, false).await
        }
        Some(acceptor) => {
            match tokio::time::timeout(net::TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => {
                    let info = TlsInfo::from_connection(tls_stream.get_ref().1);
                    let payload = echo.payload(Some(&info));
                    line_session(tls_stream, &payload, true).await
                }
                Ok(Err(e)) => Err(e),
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "TLS handshake timed out",
                )),
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(%remote, error = %e, "tcp echo connection ended with an error");
    }
}

/// echo-basic's TCP protocol: welcome line, then per line `TEST` -> JSON line,
/// `IS_TLS` -> `true`/`false`, `PING` -> `PONG`; other lines are ignored.
async fn line_session<S>(mut stream: S, payload: &str, is_tls: bool) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream.write_all(TCP_WELCOME.as_bytes()).await?;
    stream.flush().await?;
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            answer(&mut stream, &line[..line.len() - 1], payload, is_tls).await?;
        }
        if buf.len() >= MAX_LINE {
            return Ok(());
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            if !buf.is_empty() {
                answer(&mut stream, &buf, payload, is_tls).await?;
            }
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn answer<S>(stream: &mut S, line: &[u8], payload: &str, is_tls: bool) -> std::io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let reply = match line {
        b"TEST" => format!("{payload}\n"),
        b"IS_TLS" => format!("{is_tls}\n"),
        b"PING" => "PONG\n".to_owned(),
        _ => return Ok(()),
    };
    stream.write_all(reply.as_bytes()).await?;
    stream.flush().await
}

#[derive(Serialize)]
struct UdpReply<'a> {
    request: &'a str,
    namespace: &'a str,
    ingress: &'a str,
    service: &'a str,
    pod: &'a str,
}

/// echo-basic's UDP echo: every datagram is answered with
/// `{"request","namespace","ingress","service","pod"}`.
pub(crate) async fn serve_udp(socket: UdpSocket, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    let mut buf = vec![0u8; UDP_BUFFER];
    loop {
        let received = tokio::select! {
            () = net::wait_shutdown(&mut shutdown) => return,
            r = socket.recv_from(&mut buf) => r,
        };
        let (n, peer) = match received {
            Ok(r) => r,
            Err(e) => {
                // E.g. ICMP port unreachable reported for an earlier reply.
                tracing::debug!(error = %e, "udp receive failed");
                continue;
            }
        };
        let request = String::from_utf8_lossy(&buf[..n]).into_owned();
        shared
            .log
            .push(format!("Received UDP {request} from {peer}"));
        let reply = UdpReply {
            request: &request,
            namespace: &shared.namespace,
            ingress: &shared.ingress,
            service: &shared.service,
            pod: &shared.pod,
        };
        let Ok(json) = go::marshal(&reply) else {
            continue;
        };
        if let Err(e) = socket.send_to(json.as_bytes(), peer).await {
            tracing::debug!(%peer, error = %e, "udp reply failed");
        }
    }
}
