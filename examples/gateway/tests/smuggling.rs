//! Request smuggling through `gw-gateway`, on raw sockets: every ambiguous request gets 400
//! and its connection is closed, and a raw TCP backend sees exactly the requests the client
//! sent (never a second request hidden in a body).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Gateway, free_port, http_get};

/// A raw HTTP/1.1 backend that records every request it parses (`METHOD path body`) and
/// answers `200 ok`.
struct RawBackend {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

impl RawBackend {
    fn start() -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let log = log.clone();
                std::thread::spawn(move || serve_raw(stream, &log));
            }
        });
        RawBackend { addr, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve_raw(stream: TcpStream, log: &Mutex<Vec<String>>) {
    let mut out = stream.try_clone().expect("clone");
    let mut r = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or("").to_owned(),
        );
        let (mut length, mut chunked) = (0usize, false);
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (name, value) = h.split_once(':').unwrap_or((h, ""));
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
            if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.trim().eq_ignore_ascii_case("chunked");
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let mut size = String::new();
                if r.read_line(&mut size).unwrap_or(0) == 0 {
                    return;
                }
                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0; n + 2];
                if r.read_exact(&mut chunk).is_err() {
                    return;
                }
                body.extend_from_slice(&chunk[..n]);
                if n == 0 {
                    break;
                }
            }
        } else {
            body.resize(length, 0);
            if r.read_exact(&mut body).is_err() {
                return;
            }
        }
        log.lock().unwrap().push(format!(
            "{method} {path} {}",
            String::from_utf8_lossy(&body)
        ));
        if out
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .is_err()
        {
            return;
        }
    }
}

fn config(port: u16, backend: u16) -> String {
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
{}",
        common::web_backend(backend)
    )
}

/// Sends `request` as is; the whole answer once the gateway closes (`None`: not closed
/// within 5 s).
fn raw(addr: SocketAddr, request: &[u8]) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(request).ok()?;
    let mut buf = Vec::new();
    match s.read_to_end(&mut buf) {
        Ok(_) => Some(String::from_utf8_lossy(&buf).into_owned()),
        // A reset after the answer also closes.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !buf.is_empty() => {
            Some(String::from_utf8_lossy(&buf).into_owned())
        }
        Err(_) => None,
    }
}

fn statuses(response: &str) -> Vec<u16> {
    response
        .match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| response.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: example.com\r\n\r\n";

#[test]
fn ambiguous_requests_get_400_and_close_and_nothing_is_smuggled() {
    let backend = RawBackend::start();
    let gw = Gateway::start("smuggling", "127.0.80.0/24");
    let port = free_port();
    std::fs::write(
        gw.config().join("all.yaml"),
        config(port, backend.addr.port()),
    )
    .expect("write");
    let addr: SocketAddr = format!("127.0.80.1:{port}").parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_get(addr, "example.com", "/ready").map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "never served:\n{}", gw.log());
        std::thread::sleep(Duration::from_millis(25));
    }
    let before = backend.seen().len();

    let head = "POST /a HTTP/1.1\r\nHost: example.com\r\n";
    let ambiguous: Vec<(&str, String)> = vec![
        (
            "Content-Length then Transfer-Encoding",
            format!(
                "{head}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
            ),
        ),
        (
            "Transfer-Encoding then Content-Length",
            format!(
                "{head}Transfer-Encoding: chunked\r\nContent-Length: 44\r\n\r\n0\r\n\r\n{SMUGGLED}"
            ),
        ),
        (
            "Transfer-Encoding: xchunked",
            format!("{head}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "Transfer-Encoding: chunked, identity",
            format!("{head}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "Transfer-Encoding with a space before the colon",
            format!(
                "{head}Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{SMUGGLED}"
            ),
        ),
        (
            "Transfer-Encoding as an obs-fold continuation",
            format!("{head}X-Foo: bar\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "Transfer-Encoding value folded onto the next line",
            format!("{head}Transfer-Encoding:\r\n\tchunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "two differing Content-Lengths",
            format!("{head}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello{SMUGGLED}"),
        ),
        (
            "Content-Length list",
            format!("{head}Content-Length: 5, 5\r\n\r\nhello{SMUGGLED}"),
        ),
        (
            "bare LF line endings",
            format!("POST /a HTTP/1.1\nHost: example.com\nContent-Length: 5\n\nhello{SMUGGLED}"),
        ),
        (
            "NUL in a header value",
            format!("{head}X-A: a\0b\r\nContent-Length: 0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "CR in a header value",
            format!("{head}X-A: a\rb\r\nContent-Length: 0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "HTTP/1.0 with Transfer-Encoding",
            format!(
                "POST /a HTTP/1.0\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
            ),
        ),
        (
            "two Host headers",
            format!("{head}Host: other.example\r\nContent-Length: 0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "HTTP/1.1 without Host",
            format!("POST /a HTTP/1.1\r\nContent-Length: 0\r\n\r\n{SMUGGLED}"),
        ),
    ];
    for (what, request) in &ambiguous {
        let response = raw(addr, request.as_bytes())
            .unwrap_or_else(|| panic!("{what}: the connection was not closed"));
        assert_eq!(statuses(&response), [400], "{what}: {response}");
    }
    // Body framing errors, after the head went through: 400, closed.
    let framing: Vec<(&str, String)> = vec![
        (
            "chunk size overflow",
            format!(
                "{head}Transfer-Encoding: chunked\r\n\r\n1000000000000000f\r\nabc\r\n0\r\n\r\n{SMUGGLED}"
            ),
        ),
        (
            "bare LF after a chunk size",
            format!("{head}Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "bare LF after chunk data",
            format!("{head}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n{SMUGGLED}"),
        ),
    ];
    for (what, request) in &framing {
        let response = raw(addr, request.as_bytes())
            .unwrap_or_else(|| panic!("{what}: the connection was not closed"));
        assert_eq!(statuses(&response), [400], "{what}: {response}");
    }
    // A valid request pipelined before an ambiguous one: answered, then 400 and closed.
    let response = raw(
        addr,
        format!(
            "GET /first HTTP/1.1\r\nHost: example.com\r\n\r\n{head}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
        )
        .as_bytes(),
    )
    .expect("pipelined: not closed");
    assert_eq!(statuses(&response), [200, 400], "{response}");

    // Valid requests, pipelined on one connection: OWS (tab) before chunked is fine.
    let response = raw(
        addr,
        format!(
            "{head}Content-Length: 5\r\n\r\nhello\
             {head}Transfer-Encoding:\tchunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nX-T: 1\r\n\r\n\
             GET /last HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .expect("valid requests: not closed");
    assert_eq!(statuses(&response), [200, 200, 200], "{response}");

    // A declined upgrade (the backend answers 200, not 101): inspection resumes, so the next
    // request on that connection is still checked.
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .expect("upgrade");
    let mut first = Vec::new();
    let mut byte = [0u8; 1];
    while !first.ends_with(b"\r\n\r\nok") {
        assert_eq!(s.read(&mut byte).expect("answer"), 1, "closed");
        first.push(byte[0]);
    }
    assert!(
        first.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&first)
    );
    s.write_all(
        format!("{head}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}")
            .as_bytes(),
    )
    .expect("second request");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let rest = String::from_utf8_lossy(&rest);
    assert_eq!(statuses(&rest), [400], "{rest}");

    let seen = backend.seen();
    assert_eq!(
        &seen[before..],
        [
            "GET /first ",
            "POST /a hello",
            "POST /a abcde",
            "GET /last ",
            "GET /ws "
        ],
        "the backend saw: {seen:?}\n{}",
        gw.log()
    );
}
