//! Slow and idle clients against `gw-gateway`: a trickled request body (slow POST) gets 408
//! and is closed, a client that does not read its response is closed at the write stall
//! timeout, idle HTTP/1 and HTTP/2 connections are closed at their idle timeouts, the
//! gateway's file descriptors return to their baseline, and legitimate requests are served
//! throughout.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::{Gateway, free_port, http_get};

/// A backend that answers every request with `size` bytes, written as fast as the gateway
/// takes them.
fn big_backend(size: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut head = [0u8; 4096];
                let _ = stream.read(&mut head);
                let _ = write!(stream, "HTTP/1.1 200 OK\r\ncontent-length: {size}\r\n\r\n");
                let chunk = vec![b'z'; 1 << 16];
                let mut left = size;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if stream.write_all(&chunk[..n]).is_err() {
                        return;
                    }
                    left -= n;
                }
            });
        }
    });
    addr
}

/// A backend that reads each request's whole `Content-Length` body before answering 200.
fn sink_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_end, length) = loop {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (end + 4, length);
                    }
                };
                let mut got = buf.len() - head_end;
                while got < length {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got += n,
                    }
                }
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            });
        }
    });
    addr
}

fn config(port: u16, echo_port: u16, big_port: u16) -> String {
    config_with_sink(port, echo_port, big_port, 1)
}

fn config_with_sink(port: u16, echo_port: u16, big_port: u16, sink_port: u16) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: gw}}
spec: {{controllerName: gw.dev/gateway}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: default}}
spec:
  gatewayClassName: gw
  listeners: [{{name: http, port: {port}, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: default}}
spec:
  parentRefs: [{{name: edge}}]
  hostnames: [example.com]
  rules:
  - backendRefs: [{{name: web, port: 80}}]
  - matches: [{{path: {{type: PathPrefix, value: /big}}}}]
    backendRefs: [{{name: big, port: 80}}]
  - matches: [{{path: {{type: PathPrefix, value: /upload}}}}]
    backendRefs: [{{name: sink, port: 80}}]
---
{}
---
apiVersion: v1
kind: Service
metadata: {{name: sink, namespace: default}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: sink-1, namespace: default, labels: {{kubernetes.io/service-name: sink}}}}
addressType: IPv4
ports: [{{name: http, port: {sink_port}}}]
endpoints: [{{addresses: [127.0.0.1]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: big, namespace: default}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: big-1, namespace: default, labels: {{kubernetes.io/service-name: big}}}}
addressType: IPv4
ports: [{{name: http, port: {big_port}}}]
endpoints: [{{addresses: [127.0.0.1]}}]
",
        common::web_backend(echo_port)
    )
}

/// The gateway's file descriptors that are not pooled connections to a backend (whose
/// remote port is in `backends`), and how many of them are client connections accepted on
/// `listener`.
fn fds(pid: u32, listener: u16, backends: &[u16]) -> (usize, usize) {
    // inode -> (local port, remote port), from the process's network namespace.
    let mut ports = std::collections::HashMap::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let port = |c: &str| {
                c.rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            };
            if let (Some(local), Some(remote), Some(inode)) =
                (cols.get(1), cols.get(2), cols.get(9))
                && let (Some(l), Some(r)) = (port(local), port(remote))
            {
                ports.insert((*inode).to_owned(), (l, r));
            }
        }
    }
    let (mut other, mut clients) = (0, 0);
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .flatten()
    {
        let target = std::fs::read_link(fd.path()).unwrap_or_default();
        let target = target.to_string_lossy();
        let inode = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'));
        match inode.and_then(|i| ports.get(i)) {
            Some((_, remote)) if backends.contains(remote) => {}
            Some((local, remote)) if *local == listener && *remote != 0 => {
                clients += 1;
                other += 1;
            }
            _ => other += 1,
        }
    }
    (other, clients)
}

/// Reads until the peer closes; the time it took, or `None` if still open after `limit`.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut buf = vec![0u8; 1 << 16];
    while started.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

#[test]
fn slow_and_idle_clients_are_closed_and_descriptors_return_to_baseline() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let echo = rt
        .block_on(gw_echo::EchoServer::start(
            gw_echo::EchoConfig::loopback_http("web-abc-def", "default"),
        ))
        .expect("echo");
    let echo_port = echo.http_addr().expect("echo addr").port();
    let big = big_backend(256 << 20);
    let sink = sink_backend();
    let gw = Gateway::start_with(
        "slowclients",
        "127.0.83.0/24",
        &[
            "--request-body-min-rate",
            "1000",
            "--request-body-grace",
            "1s",
            "--write-stall-timeout",
            "1s",
            "--http1-idle-timeout",
            "1s",
            "--http2-idle-timeout",
            "1s",
        ],
    );
    let port = free_port();
    std::fs::write(
        gw.config().join("all.yaml"),
        config_with_sink(port, echo_port, big.port(), sink.port()),
    )
    .expect("write");
    let addr: SocketAddr = format!("127.0.83.1:{port}").parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_get(addr, "example.com", "/").map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "never served:\n{}", gw.log());
        std::thread::sleep(Duration::from_millis(25));
    }
    let pid = gw.pid();
    let backends = [echo_port, big.port(), sink.port()];
    std::thread::sleep(Duration::from_millis(300));
    let (baseline, clients) = fds(pid, port, &backends);
    assert_eq!(clients, 0);

    // Slow POST: the headers, then one byte every 100 ms (10 B/s, under 1000 B/s).
    let mut slow_post = TcpStream::connect(addr).expect("connect");
    slow_post
        .write_all(b"POST /upload HTTP/1.1\r\nHost: example.com\r\nContent-Length: 100000\r\n\r\n")
        .expect("head");
    let mut trickle = slow_post.try_clone().expect("clone");
    let trickler = std::thread::spawn(move || {
        for _ in 0..60 {
            if trickle.write_all(b"x").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });

    // Slow read: asks for 256 MiB and never reads.
    let mut slow_read = TcpStream::connect(addr).expect("connect");
    slow_read
        .write_all(b"GET /big HTTP/1.1\r\nHost: example.com\r\n\r\n")
        .expect("request");

    // Idle: an HTTP/1 connection after one keep-alive request, and one that sends nothing.
    let mut keep_alive = TcpStream::connect(addr).expect("connect");
    keep_alive
        .write_all(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
        .expect("request");
    let mut silent = TcpStream::connect(addr).expect("connect");

    // An idle HTTP/2 connection after one request.
    let h2_closed = rt.spawn(async move {
        use http_body_util::Empty;
        use hyper_util::rt::{TokioExecutor, TokioIo};
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .expect("h2c handshake");
        let conn = tokio::spawn(conn);
        let req = http::Request::get("http://example.com/")
            .body(Empty::<bytes::Bytes>::new())
            .expect("request");
        let status = send.send_request(req).await.expect("response").status();
        let idle_from = Instant::now();
        let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
        (status, ended.is_ok(), idle_from.elapsed())
    });

    // Legitimate requests are served meanwhile.
    for _ in 0..5 {
        assert_eq!(http_get(addr, "example.com", "/").map(|r| r.0), Some(200));
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut response = String::new();
    slow_post
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = slow_post.read_to_string(&mut response);
    assert!(
        response.starts_with("HTTP/1.1 408 "),
        "slow POST answered {response:?}"
    );
    let _ = trickler.join();

    let took = closed_within(&mut slow_read, Duration::from_secs(8));
    assert!(took.is_some(), "the slow reader was not closed");
    let took = closed_within(&mut keep_alive, Duration::from_secs(4));
    assert!(
        took.is_some(),
        "the idle keep-alive connection was not closed"
    );
    let took = closed_within(&mut silent, Duration::from_secs(4));
    assert!(took.is_some(), "the silent connection was not closed");
    let (status, ended, idle) = rt.block_on(h2_closed).expect("h2 client");
    assert_eq!(status, 200);
    assert!(ended, "the idle HTTP/2 connection was not closed");
    assert!(
        idle >= Duration::from_millis(800) && idle < Duration::from_secs(4),
        "HTTP/2 idle connection closed after {idle:?}"
    );

    // Every descriptor the clients cost is released (pooled backend connections aside).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (open, clients) = fds(pid, port, &backends);
        if open <= baseline && clients == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open} descriptors open ({clients} clients), baseline {baseline}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(http_get(addr, "example.com", "/").map(|r| r.0), Some(200));
}

#[test]
fn idle_http1_connection_closes_at_its_timeout_not_before() {
    let gw = Gateway::start_with(
        "idle1",
        "127.0.84.0/24",
        &[
            "--http1-idle-timeout",
            "1500ms",
            "--header-read-timeout",
            "10s",
        ],
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let echo = rt
        .block_on(gw_echo::EchoServer::start(
            gw_echo::EchoConfig::loopback_http("web-abc-def", "default"),
        ))
        .expect("echo");
    let port = free_port();
    std::fs::write(
        gw.config().join("all.yaml"),
        config(port, echo.http_addr().expect("echo").port(), 1),
    )
    .expect("write");
    let addr: SocketAddr = format!("127.0.84.1:{port}").parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_get(addr, "example.com", "/").map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "never served:\n{}", gw.log());
        std::thread::sleep(Duration::from_millis(25));
    }
    let mut s = TcpStream::connect(addr).expect("connect");
    let started = Instant::now();
    let took = closed_within(&mut s, Duration::from_secs(5)).expect("not closed");
    assert!(
        took >= Duration::from_millis(1300) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );
    let _ = started;
}

#[test]
fn an_upgraded_websocket_is_not_closed_as_idle() {
    let gw = Gateway::start_with("idlews", "127.0.88.0/24", &["--http1-idle-timeout", "1s"]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let echo = rt
        .block_on(gw_echo::EchoServer::start(
            gw_echo::EchoConfig::loopback_http("web-abc-def", "default"),
        ))
        .expect("echo");
    let port = free_port();
    std::fs::write(
        gw.config().join("all.yaml"),
        config(port, echo.http_addr().expect("echo").port(), 1),
    )
    .expect("write");
    let addr: SocketAddr = format!("127.0.88.1:{port}").parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_get(addr, "example.com", "/").map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "never served:\n{}", gw.log());
        std::thread::sleep(Duration::from_millis(25));
    }
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .expect("upgrade");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut byte).expect("101"),
            1,
            "closed during the upgrade"
        );
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // Quiet for longer than the idle timeout, then a masked text frame "hi".
    std::thread::sleep(Duration::from_millis(1600));
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | 2];
    frame.extend_from_slice(&mask);
    frame.extend(b"hi".iter().zip(mask).map(|(b, m)| b ^ m));
    s.write_all(&frame).expect("frame");
    let mut echoed = [0u8; 4];
    s.read_exact(&mut echoed).expect("echoed frame");
    assert_eq!(echoed, [0x81, 2, b'h', b'i']);
}
