//! The layer-4 clients of the live replay (conformance/utils/tcp, tls, udp): the tcp-backend
//! line protocol over TCP or over TLS, and one UDP datagram with its JSON reply. The exchanges
//! only collect what the echo said; [`super::expect`] judges it.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::UdpSocket;

use super::expect::truncate;

/// echo-basic's `tcpserver.WelcomeMessage`.
pub const WELCOME: &str = gw_echo::TCP_WELCOME;

/// The TCP echo's `TEST` reply (Go `tcpserver.TCPAssertions`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct TcpAssertions {
    /// `NAMESPACE`.
    pub namespace: String,
    /// `SERVICE_NAME`.
    pub service: String,
    /// `POD_NAME`.
    pub pod: String,
    /// Whether the backend connection is TLS.
    #[serde(rename = "isTLS")]
    pub is_tls: bool,
    /// What the backend's TLS server saw.
    pub tls: Option<TcpTls>,
}

/// `TCPAssertions.tls`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct TcpTls {
    /// `tls.VersionName` (`TLS 1.3`).
    pub version: String,
    /// SNI the backend saw.
    #[serde(rename = "serverName")]
    pub server_name: String,
    /// ALPN protocol.
    #[serde(rename = "negotiatedProtocol")]
    pub negotiated_protocol: String,
}

/// What a full tcp-backend session returned (Go `WaitForValidTCPResponse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSession {
    /// The `IS_TLS` answer, without the newline.
    pub is_tls: String,
    /// The `TEST` answer.
    pub assertions: TcpAssertions,
}

async fn read_line<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    what: &str,
) -> Result<String, String> {
    let mut line = String::new();
    let n = reader
        .read_line(&mut line)
        .await
        .map_err(|e| format!("reading the {what}: {e}"))?;
    if n == 0 || !line.ends_with('\n') {
        return Err(format!(
            "the connection closed before the {what} (got {:?})",
            truncate(&line, 100)
        ));
    }
    Ok(line)
}

async fn send<S: AsyncWrite + Unpin>(stream: &mut S, line: &str) -> Result<(), String> {
    stream
        .write_all(line.as_bytes())
        .await
        .map_err(|e| format!("writing {:?}: {e}", line.trim_end()))?;
    stream
        .flush()
        .await
        .map_err(|e| format!("writing {:?}: {e}", line.trim_end()))
}

async fn welcome<S: AsyncRead + Unpin>(reader: &mut BufReader<S>) -> Result<(), String> {
    let line = read_line(reader, "welcome message").await?;
    if line != WELCOME {
        return Err(format!(
            "TCP server welcome message does not match: got {:?}",
            truncate(&line, 100)
        ));
    }
    Ok(())
}

fn parse_assertions(line: &str) -> Result<TcpAssertions, String> {
    serde_json::from_str(line).map_err(|e| {
        format!(
            "TEST reply is not the echo JSON ({e}): {}",
            truncate(line, 200)
        )
    })
}

/// Go `WaitForValidTCPResponse`, one attempt: welcome line, `PING` -> `PONG`, `IS_TLS`, `TEST`.
pub async fn tcp_session<S>(stream: S) -> Result<TcpSession, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut reader = BufReader::new(stream);
    welcome(&mut reader).await?;
    send(reader.get_mut(), "PING\n").await?;
    let pong = read_line(&mut reader, "PING reply").await?;
    if pong != "PONG\n" {
        return Err(format!(
            "TCP server PING response does not match: got {:?}",
            truncate(&pong, 100)
        ));
    }
    send(reader.get_mut(), "IS_TLS\n").await?;
    let is_tls = read_line(&mut reader, "IS_TLS reply").await?;
    send(reader.get_mut(), "TEST\n").await?;
    let test = read_line(&mut reader, "TEST reply").await?;
    Ok(TcpSession {
        is_tls: is_tls.trim_end_matches('\n').to_owned(),
        assertions: parse_assertions(&test)?,
    })
}

/// Go `tcp.EchoSendOnce`: welcome line, `TEST`, one JSON line.
pub async fn tcp_echo_once<S>(stream: S) -> Result<TcpAssertions, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut reader = BufReader::new(stream);
    welcome(&mut reader).await?;
    send(reader.get_mut(), "TEST\n").await?;
    let test = read_line(&mut reader, "TEST reply").await?;
    parse_assertions(&test)
}

/// Reads whatever the server sends first within `wait`: `Ok(Some(line))` when a line (or some
/// bytes) arrived, `Ok(None)` when the connection was closed or reset (a rejection).
pub async fn first_line<S>(stream: S, wait: Duration) -> Option<String>
where
    S: AsyncRead + Unpin,
{
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    match tokio::time::timeout(wait, reader.read_line(&mut line)).await {
        Ok(Ok(n)) if n > 0 => Some(line),
        Ok(_) => None,
        // Nothing within `wait` but still open: not a rejection either.
        Err(_) => Some(String::new()),
    }
}

/// The UDP echo's reply (Go `udp.echoResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct UdpReply {
    /// The datagram the backend received.
    pub request: String,
    /// `NAMESPACE`.
    pub namespace: String,
    /// `SERVICE_NAME`.
    pub service: String,
    /// `POD_NAME`.
    pub pod: String,
}

/// One datagram to `addr` from a connected socket (replies from other addresses are dropped
/// by the kernel) and the first datagram back, within `timeout`.
pub async fn udp_exchange(
    addr: SocketAddr,
    payload: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let bind: SocketAddr = if addr.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let socket = UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("binding a UDP socket: {e}"))?;
    socket
        .connect(addr)
        .await
        .map_err(|e| format!("UDP connect {addr}: {e}"))?;
    socket
        .send(payload)
        .await
        .map_err(|e| format!("sending the UDP datagram to {addr}: {e}"))?;
    let mut buf = vec![0u8; 64 * 1024];
    match tokio::time::timeout(timeout, socket.recv(&mut buf)).await {
        Ok(Ok(n)) => {
            buf.truncate(n);
            Ok(buf)
        }
        Ok(Err(e)) => Err(format!("no UDP reply from {addr}: {e}")),
        Err(_) => Err(format!("no UDP reply from {addr} within {timeout:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A scripted tcp-backend: the welcome line, then answers as echo-basic does.
    async fn serve(mut server: tokio::io::DuplexStream, is_tls: bool, payload: &str) {
        let _ = server.write_all(WELCOME.as_bytes()).await;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 256];
        loop {
            let Ok(n) = server.read(&mut chunk).await else {
                return;
            };
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let reply = match &line[..line.len() - 1] {
                    b"PING" => "PONG\n".to_owned(),
                    b"IS_TLS" => format!("{is_tls}\n"),
                    b"TEST" => format!("{payload}\n"),
                    _ => continue,
                };
                let _ = server.write_all(reply.as_bytes()).await;
            }
        }
    }

    const PAYLOAD: &str = r#"{"namespace":"ns","service":"svc","pod":"tcp-backend-a-b","tcpport":"3000","isTLS":true,"tls":{"version":"TLS 1.3","serverName":"abc.example.com","cipherSuite":"X"}}"#;

    #[tokio::test]
    async fn a_full_session_collects_is_tls_and_the_assertions() {
        let (client, server) = tokio::io::duplex(4096);
        tokio::spawn(serve(server, true, PAYLOAD));
        let session = tcp_session(client).await.unwrap();
        assert_eq!(session.is_tls, "true");
        assert_eq!(session.assertions.pod, "tcp-backend-a-b");
        assert!(session.assertions.is_tls);
        let tls = session.assertions.tls.unwrap();
        assert_eq!(tls.server_name, "abc.example.com");
        assert_eq!(tls.version, "TLS 1.3");
    }

    #[tokio::test]
    async fn echo_once_needs_the_welcome_line() {
        let (client, server) = tokio::io::duplex(4096);
        tokio::spawn(serve(server, false, PAYLOAD));
        assert_eq!(tcp_echo_once(client).await.unwrap().service, "svc");

        let (client, mut server) = tokio::io::duplex(4096);
        tokio::spawn(async move {
            let _ = server.write_all(b"HTTP/1.1 400 Bad Request\r\n").await;
        });
        let err = tcp_echo_once(client).await.unwrap_err();
        assert!(err.contains("welcome"), "{err}");
    }

    #[tokio::test]
    async fn a_closed_connection_is_a_rejection() {
        let (client, server) = tokio::io::duplex(64);
        drop(server);
        assert_eq!(first_line(client, Duration::from_secs(1)).await, None);
        let (client, mut server) = tokio::io::duplex(64);
        tokio::spawn(async move {
            let _ = server.write_all(WELCOME.as_bytes()).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        });
        assert_eq!(
            first_line(client, Duration::from_secs(1)).await.as_deref(),
            Some(WELCOME)
        );
    }

    #[tokio::test]
    async fn udp_exchange_reads_the_reply_of_the_peer() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 100];
            let (n, peer) = server.recv_from(&mut buf).await.unwrap();
            let reply = format!(
                r#"{{"request":{:?},"pod":"p"}}"#,
                String::from_utf8_lossy(&buf[..n])
            );
            server.send_to(reply.as_bytes(), peer).await.unwrap();
        });
        let reply = udp_exchange(addr, b"hi", Duration::from_secs(2))
            .await
            .unwrap();
        let parsed: UdpReply = serde_json::from_slice(&reply).unwrap();
        assert_eq!(parsed.request, "hi");
        assert_eq!(parsed.pod, "p");
    }
}
