//! Production hardening of `gw-gateway`, end to end: graceful shutdown on SIGTERM, request
//! limits (header count and bytes, URI length), connection caps, the header-read timeout
//! against slowloris, and the connection metrics.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::http_get;

/// A GatewayClass, a Gateway `edge` on `port`, and a route from `/` to an echo backend.
fn config(port: u16, echo_port: u16) -> String {
    let web_backend = common::web_backend(echo_port);
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
---
{web_backend}
"
    )
}

fn setup(name: &str, pool_prefix: &str, args: &[&str]) -> common::Setup {
    common::setup(name, pool_prefix, args, config, "/")
}

/// Sends `request` as is and reads until the server closes; `None` if it never closes
/// (5 s) or the connection fails.
fn raw(addr: SocketAddr, request: &[u8]) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(request).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

fn status(response: &str) -> Option<u16> {
    response.split(' ').nth(1)?.parse().ok()
}

fn get_with_headers(addr: SocketAddr, host: &str, path: &str, extra: &str) -> Option<String> {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}\r\n")
            .as_bytes(),
    )
}

#[test]
fn sigterm_finishes_requests_in_flight_refuses_new_connections_and_exits_0() {
    let mut s = setup("shutdown", "127.0.70", &["--shutdown-timeout", "10s"]);
    let addr = s.addr;
    // A keep-alive request that takes a second: the gateway must answer it and then close.
    let slow = std::thread::spawn(move || {
        raw(
            addr,
            b"GET /slow?delay=1s HTTP/1.1\r\nHost: example.com\r\n\r\n",
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    let killed = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(s.gw.pid().to_string())
        .status()
        .expect("kill");
    assert!(killed.success());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "a new connection was accepted during shutdown"
    );
    let response = slow.join().expect("slow request");
    let log = s.gw.log();
    let response = response.unwrap_or_else(|| panic!("the slow request failed:\n{log}"));
    assert_eq!(status(&response), Some(200), "{response}");
    let exit = s.gw.wait_exit(Duration::from_secs(10));
    assert!(
        exit.is_some_and(|e| e.success()),
        "exit status {exit:?}; log:\n{}",
        s.gw.log()
    );
}

#[test]
fn header_count_header_bytes_and_uri_length_are_limited() {
    let s = setup("limits", "127.0.71", &[]);
    // Host, Connection and 98 more: 100 headers pass (to the gateway's own 404: the backend
    // would see the forwarding headers too, over its own limit of 100).
    let ok: String = (0..98).map(|i| format!("x-h{i}: v\r\n")).collect();
    let r = get_with_headers(s.addr, "unrouted.test", "/", &ok).expect("100 headers");
    assert_eq!(status(&r), Some(404), "{r}");
    // 101 headers: hyper answers 431 and closes.
    let too_many: String = (0..99).map(|i| format!("x-h{i}: v\r\n")).collect();
    let r = get_with_headers(s.addr, "unrouted.test", "/", &too_many).expect("101 headers");
    assert_eq!(status(&r), Some(431), "{r}");

    // 48 KiB of headers pass; 70 KiB do not.
    let big = format!("x-big: {}\r\n", "a".repeat(48 * 1024));
    let r = get_with_headers(s.addr, "example.com", "/", &big).expect("48 KiB header");
    assert_eq!(status(&r), Some(200), "{}", &r[..r.len().min(200)]);
    let huge = format!("x-big: {}\r\n", "a".repeat(70 * 1024));
    let r = get_with_headers(s.addr, "example.com", "/", &huge).expect("70 KiB header");
    assert_eq!(status(&r), Some(431), "{}", &r[..r.len().min(200)]);

    // A URI of 8 KiB passes; longer: 414, before routing.
    let path = format!("/{}", "p".repeat(8191));
    let r = get_with_headers(s.addr, "example.com", &path, "").expect("8 KiB URI");
    assert_eq!(status(&r), Some(200), "{}", &r[..r.len().min(200)]);
    let path = format!("/{}", "p".repeat(8192));
    let r = get_with_headers(s.addr, "example.com", &path, "").expect("long URI");
    assert_eq!(status(&r), Some(414), "{r}");

    // Still serving.
    assert_eq!(http_get(s.addr, "example.com", "/").map(|r| r.0), Some(200));
}

#[test]
fn connections_over_the_cap_are_closed_and_counted() {
    let s = setup(
        "conncap",
        "127.0.72",
        &["--max-connections-per-listener", "3"],
    );
    // setup's requests are done; wait until their connections are released.
    std::thread::sleep(Duration::from_millis(200));
    let idle: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(s.addr).expect("idle connection"))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = TcpStream::connect(s.addr).expect("connect");
    extra
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let _ = extra.write_all(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n");
    let mut buf = [0u8; 64];
    match extra.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the connection over the cap was served: {other:?}"),
    }
    let (_, metrics) = s.gw.get("/metrics").expect("metrics");
    let line = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{listener=\"{}\"", s.addr)))
            .unwrap_or_else(|| panic!("no {name} for {}:\n{metrics}", s.addr))
            .to_owned()
    };
    assert!(
        line("gw_listener_connections_rejected_total").ends_with(" 1"),
        "{metrics}"
    );
    assert!(
        line("gw_listener_connections_active").ends_with(" 3"),
        "{metrics}"
    );
    let accepted = line("gw_listener_connections_accepted_total");
    let accepted: u64 = accepted
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("count");
    assert!(accepted >= 4, "{metrics}");

    // Once the idle connections close, new ones are served again.
    drop(idle);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(http_get(s.addr, "example.com", "/").map(|r| r.0), Some(200));
}

#[test]
fn slowloris_is_closed_at_the_header_read_timeout() {
    let s = setup("slowloris", "127.0.73", &["--header-read-timeout", "1s"]);
    let mut stream = TcpStream::connect(s.addr).expect("connect");
    let mut reader = stream.try_clone().expect("clone");
    reader
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let started = Instant::now();
    let writer = std::thread::spawn(move || {
        for b in b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaa" {
            if stream.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    });
    let mut buf = Vec::new();
    let read = reader.read_to_end(&mut buf);
    let elapsed = started.elapsed();
    assert!(
        !matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
            || e.kind() == std::io::ErrorKind::TimedOut),
        "the slow client was not closed: {read:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4),
        "closed after {elapsed:?}"
    );
    let _ = writer.join();
    // Legitimate requests are still served.
    assert_eq!(http_get(s.addr, "example.com", "/").map(|r| r.0), Some(200));
}

#[test]
fn http2_has_the_same_header_and_uri_limits() {
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let s = setup("h2limits", "127.0.74", &[]);
    let addr = s.addr;
    s.rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .expect("h2c handshake");
        tokio::spawn(conn);
        let mut status = async |host: &str, path: &str, headers: usize, value: usize| {
            let mut req = http::Request::builder().uri(format!("http://{host}{path}"));
            for i in 0..headers {
                req = req.header(format!("x-h{i}"), "v".repeat(value));
            }
            let req = req.body(Empty::<bytes::Bytes>::new()).expect("request");
            send.ready().await.expect("ready");
            send.send_request(req).await.map(|r| r.status().as_u16())
        };
        // 100 headers pass (to the gateway's own 404); 101: 431, before routing.
        assert_eq!(status("unrouted.test", "/", 100, 1).await.ok(), Some(404));
        assert_eq!(status("unrouted.test", "/", 101, 1).await.ok(), Some(431));
        // 48 KiB of headers pass; 70 KiB: 431 from the HTTP/2 layer.
        assert_eq!(
            status("unrouted.test", "/", 1, 48 * 1024).await.ok(),
            Some(404)
        );
        assert_eq!(
            status("unrouted.test", "/", 1, 70 * 1024).await.ok(),
            Some(431)
        );
        // 414 for a long URI, on HTTP/2 too.
        let path = format!("/{}", "p".repeat(8192));
        assert_eq!(status("example.com", &path, 0, 0).await.ok(), Some(414));
        // The connection still serves.
        assert_eq!(status("example.com", "/", 0, 0).await.ok(), Some(200));
    });
}
