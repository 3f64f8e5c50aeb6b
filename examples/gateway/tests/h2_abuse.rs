//! HTTP/2 abuse against `gw-gateway`'s h2c listener, with frames written by hand: rapid
//! reset, CONTINUATION flood, SETTINGS / PING / empty DATA floods and an HPACK bomb. Each
//! attacker gets GOAWAY or its connection closed, the gateway's memory stays bounded, and a
//! legitimate client on its own connection keeps being served with reasonable latency
//! throughout.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Gateway, free_port, http_get};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK string literal (no Huffman), 7-bit prefixed length.
fn hpack_string(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 0x00, 7, s.len());
    out.extend_from_slice(s);
}

fn hpack_int(out: &mut Vec<u8>, first: u8, prefix: u32, mut v: usize) {
    let max = (1usize << prefix) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128 + 128) as u8);
        v /= 128;
    }
    out.push(v as u8);
}

/// GET/POST http://example.com/ as an HPACK block (static table, literal authority).
fn request_block(method_post: bool) -> Vec<u8> {
    let mut b = vec![if method_post { 0x83 } else { 0x82 }, 0x86, 0x84];
    // :authority, literal without indexing, indexed name 1.
    b.push(0x01);
    hpack_string(&mut b, b"example.com");
    b
}

/// The gateway process's resident memory in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// What the attacker saw.
#[derive(Debug, Default)]
struct Outcome {
    goaway: bool,
    closed: bool,
    frames_sent: usize,
}

/// Connects, sends the preface and an empty SETTINGS, then writes `frames()` batches until
/// the server sends GOAWAY, closes, or `budget` batches or 3 s are spent. Reads everything the
/// server sends meanwhile.
async fn attack(
    addr: SocketAddr,
    budget: usize,
    mut batch: impl FnMut(usize) -> Vec<u8>,
) -> Outcome {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = tcp.into_split();
    let goaway = Arc::new(AtomicBool::new(false));
    let closed = Arc::new(AtomicBool::new(false));
    let reader = {
        let (goaway, closed) = (goaway.clone(), closed.clone());
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = vec![0u8; 65536];
            loop {
                match rd.read(&mut chunk).await {
                    Ok(0) | Err(_) => {
                        closed.store(true, Ordering::Release);
                        return;
                    }
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                while buf.len() >= 9 {
                    let len = (usize::from(buf[0]) << 16)
                        | (usize::from(buf[1]) << 8)
                        | usize::from(buf[2]);
                    if buf.len() < 9 + len {
                        break;
                    }
                    if buf[3] == GOAWAY {
                        goaway.store(true, Ordering::Release);
                    }
                    buf.drain(..9 + len);
                }
            }
        })
    };
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    let _ = wr.write_all(&hello).await;
    let started = Instant::now();
    let mut sent = 0;
    let mut round = 0;
    while sent < budget && started.elapsed() < Duration::from_secs(3) {
        if goaway.load(Ordering::Acquire) || closed.load(Ordering::Acquire) {
            break;
        }
        let bytes = batch(round);
        round += 1;
        match tokio::time::timeout(Duration::from_millis(500), wr.write_all(&bytes)).await {
            Ok(Ok(())) => {}
            // Closed, or the server stopped reading.
            Ok(Err(_)) | Err(_) => break,
        }
        sent += 1;
    }
    // Give the server a moment to answer the last frames.
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while !goaway.load(Ordering::Acquire) && !closed.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let outcome = Outcome {
        goaway: goaway.load(Ordering::Acquire),
        closed: closed.load(Ordering::Acquire),
        frames_sent: sent,
    };
    reader.abort();
    outcome
}

fn config(port: u16, echo_port: u16) -> String {
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
        common::web_backend(echo_port)
    )
}

#[test]
fn http2_floods_are_cut_off_and_legitimate_clients_keep_being_served() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let echo = rt
        .block_on(gw_echo::EchoServer::start(
            gw_echo::EchoConfig::loopback_http("web-abc-def", "default"),
        ))
        .expect("echo");
    let echo_port = echo.http_addr().expect("echo addr").port();
    let gw = Gateway::start("h2abuse", "127.0.81.0/24");
    let port = free_port();
    std::fs::write(gw.config().join("all.yaml"), config(port, echo_port)).expect("write");
    let addr: SocketAddr = format!("127.0.81.1:{port}").parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_get(addr, "example.com", "/").map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "never served:\n{}", gw.log());
        std::thread::sleep(Duration::from_millis(25));
    }
    let pid = gw.pid();

    rt.block_on(async move {
        // The legitimate client: one h2c connection, a request every 20 ms throughout.
        let stop = Arc::new(AtomicBool::new(false));
        let legit = {
            let stop = stop.clone();
            tokio::spawn(async move {
                use http_body_util::Empty;
                use hyper_util::rt::{TokioExecutor, TokioIo};
                let tcp = TcpStream::connect(addr).await.expect("connect");
                let (mut send, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                        .await
                        .expect("h2c handshake");
                tokio::spawn(conn);
                let (mut served, mut failed, mut worst) = (0u32, 0u32, Duration::ZERO);
                while !stop.load(Ordering::Acquire) {
                    let req = http::Request::get("http://example.com/legit")
                        .body(Empty::<bytes::Bytes>::new())
                        .expect("request");
                    let t = Instant::now();
                    let ok = async {
                        send.ready().await.ok()?;
                        send.send_request(req).await.ok()
                    };
                    match tokio::time::timeout(Duration::from_secs(5), ok).await {
                        Ok(Some(r)) if r.status() == 200 => served += 1,
                        _ => failed += 1,
                    }
                    worst = worst.max(t.elapsed());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (served, failed, worst)
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let baseline = rss_kib(pid);

        // Rapid reset (CVE-2023-44487): open a stream and reset it at once, in bulk.
        let block = request_block(false);
        let rapid = attack(addr, 100_000, |round| {
            let mut out = Vec::new();
            for i in 0..100u32 {
                let id = 1 + 2 * (round as u32 * 100 + i);
                out.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, &block));
                out.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
            }
            out
        })
        .await;
        assert!(rapid.frames_sent > 0);
        assert!(rapid.goaway || rapid.closed, "rapid reset: {rapid:?}");

        // CONTINUATION flood (CVE-2024-27316 family): a header block that never ends.
        let cont = attack(addr, 100_000, |round| {
            let mut out = Vec::new();
            if round == 0 {
                out.extend(frame(HEADERS, END_STREAM, 1, &request_block(false)));
            }
            let mut field = vec![0x00];
            hpack_string(&mut field, b"x-flood");
            hpack_string(&mut field, &[b'a'; 1000]);
            for _ in 0..16 {
                out.extend(frame(CONTINUATION, 0, 1, &field));
            }
            out
        })
        .await;
        assert!(cont.goaway || cont.closed, "CONTINUATION flood: {cont:?}");

        // HPACK bomb: a 4 KiB header in the dynamic table, then blocks that reference it
        // hundreds of times (a few bytes on the wire, megabytes decoded).
        let bomb = attack(addr, 2_000, |round| {
            let id = 1 + 2 * round as u32;
            let mut b = request_block(false);
            if round == 0 {
                // Literal with incremental indexing, new name.
                b.push(0x40);
                hpack_string(&mut b, b"x-bomb");
                hpack_string(&mut b, &[b'b'; 4000]);
            }
            for _ in 0..500 {
                b.push(0x80 | 62); // indexed: the first dynamic entry
            }
            frame(HEADERS, END_HEADERS | END_STREAM, id, &b)
        })
        .await;
        assert!(bomb.goaway || bomb.closed, "HPACK bomb: {bomb:?}");

        // SETTINGS and PING floods, without ever reading the ACKs: bounded, or cut off.
        let settings = attack(addr, 20_000, |_| {
            let mut out = Vec::new();
            for _ in 0..100 {
                out.extend(frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]));
            }
            out
        })
        .await;
        let ping = attack(addr, 20_000, |_| {
            let mut out = Vec::new();
            for _ in 0..100 {
                out.extend(frame(PING, 0, 0, &[7; 8]));
            }
            out
        })
        .await;
        // Empty DATA frames on an open stream.
        let empty = attack(addr, 20_000, |round| {
            let mut out = Vec::new();
            if round == 0 {
                out.extend(frame(HEADERS, END_HEADERS, 1, &request_block(true)));
            }
            for _ in 0..100 {
                out.extend(frame(DATA, 0, 1, &[]));
            }
            out
        })
        .await;

        for (what, o) in [("SETTINGS", &settings), ("PING", &ping), ("empty DATA", &empty)] {
            assert!(o.goaway || o.closed, "{what} flood: {o:?}");
        }
        // The legitimate client goes on for a while after the attacks.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = rss_kib(pid);
        stop.store(true, Ordering::Release);
        let (served, failed, worst) = legit.await.expect("legit client");
        eprintln!(
            "rapid {rapid:?}\ncontinuation {cont:?}\nbomb {bomb:?}\nsettings {settings:?}\nping {ping:?}\nempty data {empty:?}\nRSS {baseline} KiB -> {after} KiB; legit served {served}, failed {failed}, worst {worst:?}"
        );
        assert!(
            after < baseline + 64 * 1024,
            "RSS grew from {baseline} KiB to {after} KiB"
        );
        assert_eq!(failed, 0, "legitimate requests failed");
        assert!(served >= 10, "only {served} legitimate requests served");
        assert!(worst < Duration::from_secs(2), "worst latency {worst:?}");
    });
    // Still serving after all of it.
    assert_eq!(http_get(addr, "example.com", "/").map(|r| r.0), Some(200));
}
