//! TLS, TCP and UDP listeners end to end: TCPRoute (oldest route wins, connections survive a
//! reload), UDPRoute, TLSRoute Passthrough and Terminate mixed with HTTPS on one port
//! (GEP-2643), unknown SNI refused, and the L4 metrics of all of them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Gateway, free_port, self_signed, tcp_backend, tls_secret as secret};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;

const CLASS: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gw}
spec: {controllerName: gw.dev/gateway}
";

/// A Service `name` with port 9000 (`protocol`) backed by 127.0.0.1:`target`.
fn service(name: &str, protocol: &str, target: u16) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec: {{ports: [{{name: p, port: 9000, protocol: {protocol}}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-1, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: p, port: {target}, protocol: {protocol}}}]
endpoints: [{{addresses: [127.0.0.1]}}]
"
    )
}

fn route(
    kind: &str,
    name: &str,
    created: &str,
    section: &str,
    extra: &str,
    backend: &str,
) -> String {
    let version = if kind == "TLSRoute" { "v1" } else { "v1alpha2" };
    format!(
        "apiVersion: gateway.networking.k8s.io/{version}
kind: {kind}
metadata: {{name: {name}, namespace: default, creationTimestamp: '{created}'}}
spec:
  parentRefs: [{{name: edge, sectionName: {section}}}]
{extra}  rules: [{{backendRefs: [{{name: {backend}, port: 9000}}]}}]
"
    )
}

fn echo(pod: &str, f: impl FnOnce(&mut gw_echo::EchoConfig)) -> gw_echo::EchoConfig {
    let mut c = gw_echo::EchoConfig {
        pod: pod.to_owned(),
        namespace: "default".to_owned(),
        ..Default::default()
    };
    f(&mut c);
    c
}

fn loopback() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// Connects, retrying until `deadline` (listeners are bound after the configuration loads).
fn connect(addr: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                return s;
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "{addr} never listened: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// A line-based session with gw-echo's TCP protocol.
struct Lines<S: Read + Write> {
    r: BufReader<S>,
}

impl<S: Read + Write> Lines<S> {
    /// Reads the welcome line.
    fn open(s: S) -> std::io::Result<Self> {
        let mut l = Lines {
            r: BufReader::new(s),
        };
        let welcome = l.line()?;
        if welcome != "Gateway API Test TCP Server" {
            return Err(std::io::Error::other(format!("welcome: {welcome:?}")));
        }
        Ok(l)
    }

    fn line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(line.trim_end().to_owned())
    }

    fn ask(&mut self, what: &str) -> std::io::Result<String> {
        writeln!(self.r.get_mut(), "{what}")?;
        self.r.get_mut().flush()?;
        self.line()
    }

    fn test(&mut self) -> Value {
        serde_json::from_str(&self.ask("TEST").expect("TEST")).expect("json")
    }
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn client(sni: &str, root: &CertificateDer<'static>, alpn: &[&[u8]]) -> rustls::ClientConnection {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    rustls::ClientConnection::new(
        Arc::new(config),
        ServerName::try_from(sni.to_owned()).unwrap(),
    )
    .unwrap()
}

fn tls(addr: SocketAddr, sni: &str, root: &CertificateDer<'static>, alpn: &[&[u8]]) -> Tls {
    rustls::StreamOwned::new(client(sni, root, alpn), connect(addr))
}

#[test]
fn tcp_and_udp_routes_oldest_tcp_route_wins_and_connections_survive_reloads() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let old = rt
        .block_on(gw_echo::EchoServer::start(echo("old-backend", |c| {
            c.tcp = loopback();
            c.udp = loopback();
        })))
        .expect("echo");
    let new = rt
        .block_on(gw_echo::EchoServer::start(echo("new-backend", |c| {
            c.tcp = loopback();
        })))
        .expect("echo");
    let port = free_port();
    let gw = Gateway::start("l4-tcp", "127.0.50.0/24");
    let gateway = format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: default}}
spec:
  gatewayClassName: gw
  listeners:
  - {{name: tcp, port: {port}, protocol: TCP}}
  - {{name: udp, port: {port}, protocol: UDP}}
"
    );
    let services = [
        service("old", "TCP", old.tcp_addr().unwrap().port()),
        service("new", "TCP", new.tcp_addr().unwrap().port()),
        service("dns", "UDP", old.udp_addr().unwrap().port()),
    ]
    .join("---\n");
    let newer = route(
        "TCPRoute",
        "newer",
        "2024-01-02T00:00:00Z",
        "tcp",
        "",
        "new",
    );
    let older = route(
        "TCPRoute",
        "older",
        "2024-01-01T00:00:00Z",
        "tcp",
        "",
        "old",
    );
    let udp = route("UDPRoute", "udp", "2024-01-01T00:00:00Z", "udp", "", "dns");
    let write = |routes: &[&str]| {
        let yaml = [CLASS, &gateway, &services]
            .into_iter()
            .chain(routes.iter().copied())
            .collect::<Vec<_>>()
            .join("---\n");
        std::fs::write(gw.config().join("all.yaml"), yaml).expect("write");
    };
    write(&[&newer, &older, &udp]);
    let addr: SocketAddr = format!("127.0.50.1:{port}").parse().unwrap();

    // TCPRoute: the oldest route takes the listener's traffic.
    let mut kept = Lines::open(connect(addr)).unwrap_or_else(|e| panic!("{e}\n{}", gw.log()));
    assert_eq!(kept.test()["pod"], "old-backend");

    // UDPRoute: datagrams are relayed to the backend and its answers back.
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(10);
    let reply = loop {
        client.send_to(b"hello-udp", addr).unwrap();
        if let Ok((n, from)) = client.recv_from(&mut buf) {
            assert_eq!(from, addr);
            break serde_json::from_slice::<Value>(&buf[..n]).unwrap();
        }
        assert!(Instant::now() < deadline, "no UDP reply\n{}", gw.log());
    };
    assert_eq!(reply["request"], "hello-udp");
    assert_eq!(reply["pod"], "old-backend");

    // Reload without the older route: new connections go to the newer one, the established
    // connection keeps working.
    write(&[&newer, &udp]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = Lines::open(connect(addr)).unwrap();
        if s.test()["pod"] == "new-backend" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reload not applied\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(kept.ask("PING").unwrap(), "PONG");
    assert_eq!(kept.test()["pod"], "old-backend");
    // The UDP session survives the reload too.
    client.send_to(b"again", addr).unwrap();
    let (n, _) = client.recv_from(&mut buf).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&buf[..n]).unwrap()["request"],
        "again"
    );

    drop(gw);
    rt.block_on(old.shutdown());
    rt.block_on(new.shutdown());
}

#[test]
fn tls_passthrough_terminate_and_https_share_a_port_by_sni() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (pass_pem, pass_key, pass_der) = self_signed(&["pass.example.com"]);
    let (gw_pem, gw_key, gw_der) = self_signed(&["term.example.com", "www.example.com"]);
    let tls_backend = rt
        .block_on(gw_echo::EchoServer::start(echo("pass-backend", |c| {
            c.tcp_tls = Some((
                SocketAddr::from(([127, 0, 0, 1], 0)),
                gw_echo::TlsIdentity {
                    cert_pem: pass_pem.clone(),
                    key_pem: pass_key.clone(),
                },
            ));
        })))
        .expect("echo");
    let plain_backend = rt
        .block_on(gw_echo::EchoServer::start(echo("plain-backend", |c| {
            c.tcp = loopback();
            c.http = loopback();
        })))
        .expect("echo");
    let port = free_port();
    let gw = Gateway::start("l4-tls", "127.0.51.0/24");
    let yaml = [
        CLASS.to_owned(),
        format!(
            "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: default}}
spec:
  gatewayClassName: gw
  listeners:
  - {{name: pass, port: {port}, protocol: TLS, hostname: pass.example.com, tls: {{mode: Passthrough}}}}
  - {{name: term, port: {port}, protocol: TLS, hostname: term.example.com, tls: {{certificateRefs: [{{name: gw-cert}}]}}}}
  - {{name: web, port: {port}, protocol: HTTPS, hostname: www.example.com, tls: {{certificateRefs: [{{name: gw-cert}}]}}}}
"
        ),
        secret("gw-cert", &gw_pem, &gw_key),
        service("pass", "TCP", tls_backend.tcp_tls_addr().unwrap().port()),
        service("plain", "TCP", plain_backend.tcp_addr().unwrap().port()),
        service("web", "TCP", plain_backend.http_addr().unwrap().port()),
        route(
            "TLSRoute",
            "pass",
            "2024-01-01T00:00:00Z",
            "pass",
            "  hostnames: [pass.example.com]\n",
            "pass",
        ),
        route("TLSRoute", "term", "2024-01-01T00:00:00Z", "term", "", "plain"),
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: default}
spec:
  parentRefs: [{name: edge, sectionName: web}]
  rules: [{backendRefs: [{name: web, port: 9000}]}]
"
        .to_owned(),
    ]
    .join("---\n");
    std::fs::write(gw.config().join("all.yaml"), yaml).expect("write");
    let addr: SocketAddr = format!("127.0.51.1:{port}").parse().unwrap();

    // Passthrough: the backend terminates TLS itself and sees the client's SNI.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pass = loop {
        match Lines::open(tls(addr, "pass.example.com", &pass_der, &[])) {
            Ok(l) => break l,
            Err(e) => {
                assert!(Instant::now() < deadline, "{e}\n{}", gw.log());
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    let seen = pass.test();
    assert_eq!(seen["pod"], "pass-backend");
    assert_eq!(seen["isTLS"], true);
    assert_eq!(seen["tls"]["serverName"], "pass.example.com");

    // Terminate: the gateway's certificate, then plaintext to the backend.
    let mut term = Lines::open(tls(addr, "term.example.com", &gw_der, &[]))
        .unwrap_or_else(|e| panic!("{e}\n{}", gw.log()));
    assert_eq!(term.ask("IS_TLS").unwrap(), "false");
    assert_eq!(term.test()["pod"], "plain-backend");

    // HTTPS on the same port: handed to the HTTP router after the SNI peek.
    let mut web = tls(addr, "www.example.com", &gw_der, &[b"http/1.1"]);
    write!(
        web,
        "GET /x HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = Vec::new();
    let _ = web.read_to_end(&mut body);
    let body = String::from_utf8_lossy(&body);
    assert!(body.starts_with("HTTP/1.1 200"), "{body}\n{}", gw.log());
    assert!(body.contains("plain-backend"), "{body}");

    // An SNI no listener accepts is closed before any backend is reached.
    for sni in ["nope.example.com", "example.com"] {
        let mut unknown = tls(addr, sni, &gw_der, &[]);
        let handshake = unknown.conn.complete_io(&mut unknown.sock);
        assert!(handshake.is_err(), "{sni}: {handshake:?}");
    }

    // A ClientHello sent one byte at a time, in separate TCP segments, routes the same.
    let mut conn = client("pass.example.com", &pass_der, &[]);
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    let mut sock = connect(addr);
    sock.set_nodelay(true).unwrap();
    for (i, b) in hello.iter().enumerate() {
        sock.write_all(&[*b]).unwrap();
        if i % 64 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let mut trickled = Lines::open(rustls::StreamOwned::new(conn, sock))
        .unwrap_or_else(|e| panic!("{e}\n{}", gw.log()));
    assert_eq!(trickled.test()["tls"]["serverName"], "pass.example.com");
    // Not TLS at all: closed.
    let mut plain = connect(addr);
    plain.write_all(b"TEST\n\r\n\r\n").unwrap();
    let mut buf = [0u8; 64];
    assert!(matches!(plain.read(&mut buf), Ok(0) | Err(_)));

    drop(gw);
    rt.block_on(tls_backend.shutdown());
    rt.block_on(plain_backend.shutdown());
}

/// The value of the sample whose series (name and every label, in order) is exactly `series`.
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (s, v) = line.rsplit_once(' ')?;
        (s == series).then(|| v.parse().ok()).flatten()
    })
}

/// A UDP backend that answers `n` datagrams with `echo:` and the datagram.
fn udp_backend(n: usize) -> (u16, std::thread::JoinHandle<()>) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let port = s.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        for _ in 0..n {
            let Ok((len, from)) = s.recv_from(&mut buf) else {
                return;
            };
            let _ = s.send_to(&[b"echo:".as_slice(), &buf[..len]].concat(), from);
        }
    });
    (port, t)
}

#[test]
fn l4_metrics_count_connections_bytes_sessions_and_datagrams_exactly() {
    let (tcp_port, tcp_thread) = tcp_backend();
    let (udp_port, udp_thread) = udp_backend(2);
    let closed = free_port();
    let (port, tls_port, down_port) = (free_port(), free_port(), free_port());
    let gw = Gateway::start_with(
        "l4-metrics",
        "127.0.142.0/24",
        &["--tls-handshake-timeout", "300ms"],
    );
    let (_, _, der) = self_signed(&["pass.example.com"]);
    let yaml = [
        CLASS.to_owned(),
        format!(
            "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: default}}
spec:
  gatewayClassName: gw
  listeners:
  - {{name: tcp, port: {port}, protocol: TCP}}
  - {{name: udp, port: {port}, protocol: UDP}}
  - {{name: down, port: {down_port}, protocol: TCP}}
  - {{name: pass, port: {tls_port}, protocol: TLS, hostname: pass.example.com, tls: {{mode: Passthrough}}}}
  - {{name: bare, port: {tls_port}, protocol: TLS, hostname: bare.example.com, tls: {{mode: Passthrough}}}}
"
        ),
        service("raw", "TCP", tcp_port),
        service("dns", "UDP", udp_port),
        service("closed", "TCP", closed),
        route("TCPRoute", "raw", "2024-01-01T00:00:00Z", "tcp", "", "raw"),
        route("UDPRoute", "dns", "2024-01-01T00:00:00Z", "udp", "", "dns"),
        route("TCPRoute", "down", "2024-01-01T00:00:00Z", "down", "", "closed"),
        route(
            "TLSRoute",
            "pass",
            "2024-01-01T00:00:00Z",
            "pass",
            "  hostnames: [pass.example.com]\n",
            "raw",
        ),
    ]
    .join("---\n");
    std::fs::write(gw.config().join("all.yaml"), yaml).expect("write");
    let ip = "127.0.142.1";
    let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    let tls_addr: SocketAddr = format!("{ip}:{tls_port}").parse().unwrap();

    // TCP: 5 bytes up, 10 down, then both sides close.
    let mut s = connect(addr);
    s.write_all(b"hello").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"pong:hello", "{}", gw.log());
    tcp_thread.join().unwrap();

    // A backend that refuses connections.
    let mut refused = connect(format!("{ip}:{down_port}").parse().unwrap());
    assert!(matches!(refused.read(&mut [0u8; 8]), Ok(0) | Err(_)));

    // TLS: a server name no listener accepts, one the listener accepts but no route claims,
    // something that is not TLS, and a client that sends nothing.
    for sni in ["nope.example.com", "bare.example.com"] {
        let mut unknown = tls(tls_addr, sni, &der, &[]);
        assert!(
            unknown.conn.complete_io(&mut unknown.sock).is_err(),
            "{sni}"
        );
    }
    let mut plain = connect(tls_addr);
    plain.write_all(b"TEST\n\r\n\r\n").unwrap();
    assert!(matches!(plain.read(&mut [0u8; 8]), Ok(0) | Err(_)));
    let mut silent = connect(tls_addr);
    let started = Instant::now();
    assert!(matches!(silent.read(&mut [0u8; 8]), Ok(0) | Err(_)));
    assert!(started.elapsed() < Duration::from_secs(3));

    // UDP, once the socket is bound (UDP sockets are bound after the TCP ones): two
    // datagrams of one client, one session.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw.log().contains("listening (UDP)") {
        assert!(Instant::now() < deadline, "{}", gw.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 64];
    for (msg, want) in [(&b"abc"[..], &b"echo:abc"[..]), (b"defg", b"echo:defg")] {
        client.send_to(msg, addr).unwrap();
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], want);
    }
    udp_thread.join().unwrap();

    let l = |listener: &str, route: &str, backend: &str| {
        format!(
            "gateway=\"default/edge\",listener=\"{listener}\",route=\"{route}\",backend=\"{backend}\""
        )
    };
    let raw = l("tcp", "default/raw", "default/raw:9000");
    let dns = l("udp", "default/dns", "default/dns:9000");
    let none = l("", "", "");
    let expected = [
        format!("gw_tcp_connections_total{{{raw},outcome=\"forwarded\"}}"),
        format!("gw_tcp_connections_open{{{raw}}}"),
        format!("gw_tcp_bytes_total{{{raw},direction=\"received\"}}"),
        format!("gw_tcp_bytes_total{{{raw},direction=\"sent\"}}"),
        format!("gw_tcp_connection_duration_seconds_count{{{raw}}}"),
        format!(
            "gw_tcp_connections_total{{{},outcome=\"backend_connect_error\"}}",
            l("down", "default/down", "default/closed:9000")
        ),
        format!("gw_tcp_connections_total{{{none},outcome=\"no_route\"}}"),
        format!(
            "gw_tcp_connections_total{{{},outcome=\"no_route\"}}",
            l("bare", "", "")
        ),
        format!("gw_tcp_connections_total{{{none},outcome=\"invalid_client_hello\"}}"),
        format!("gw_tcp_connections_total{{{none},outcome=\"peek_timeout\"}}"),
        format!("gw_udp_sessions_total{{{dns}}}"),
        format!("gw_udp_sessions_open{{{dns}}}"),
        format!("gw_udp_sessions_expired_total{{{dns}}}"),
        format!("gw_udp_datagrams_total{{{dns},direction=\"received\"}}"),
        format!("gw_udp_datagrams_total{{{dns},direction=\"sent\"}}"),
        format!("gw_udp_bytes_total{{{dns},direction=\"received\"}}"),
        format!("gw_udp_bytes_total{{{dns},direction=\"sent\"}}"),
    ];
    let want = [
        1.0, 0.0, 5.0, 10.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 2.0, 2.0, 7.0, 17.0,
    ];
    // The gateway records a connection's end just after the client sees it: poll briefly.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (code, metrics) = gw.get("/metrics").unwrap();
        assert_eq!(code, 200);
        let got: Vec<Option<f64>> = expected.iter().map(|e| value(&metrics, e)).collect();
        if got == want.map(Some) {
            // The passthrough listener never got a connection: no series of its own.
            assert!(!metrics.contains("listener=\"pass\""), "{metrics}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}\n{metrics}",
            expected
                .iter()
                .zip(&got)
                .zip(want)
                .filter(|((_, g), w)| **g != Some(*w))
                .map(|((e, g), w)| format!("{e}: got {g:?}, want {w}\n"))
                .collect::<String>()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}
