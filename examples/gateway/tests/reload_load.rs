//! Reloads under load: a valid, an invalid and another valid configuration are written while
//! many clients send requests in a loop. No request fails, and the invalid configuration is
//! reported in `/status` with its file, document and field while the last good one serves.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Gateway, free_port, http_get};

/// A Gateway on `port`, a route for `example.com` with a response header naming `version`,
/// and the echo backend.
fn config(port: u16, echo_port: u16, version: &str) -> String {
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
  - filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier: {{set: [{{name: x-config, value: {version}}}]}}
    backendRefs: [{{name: web, port: 80}}]
---
{}",
        common::web_backend(echo_port)
    )
}

/// The value of `x-config` in a plain GET's response, if it was a 200.
fn version(addr: SocketAddr) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    if !text.starts_with("HTTP/1.1 200 ") {
        return None;
    }
    text.lines()
        .find_map(|l| l.strip_prefix("x-config: "))
        .map(|v| v.trim().to_owned())
}

#[test]
fn reloads_under_load_fail_no_request_and_report_the_invalid_configuration() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let echo = rt
        .block_on(gw_echo::EchoServer::start(
            gw_echo::EchoConfig::loopback_http("web-abc-def", "default"),
        ))
        .expect("echo");
    let echo_port = echo.http_addr().expect("echo addr").port();
    let gw = Gateway::start("reloadload", "127.0.82.0/24");
    let port = free_port();
    let file = gw.config().join("all.yaml");
    std::fs::write(&file, config(port, echo_port, "v1")).expect("write");
    let addr: SocketAddr = format!("127.0.82.1:{port}").parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_get(addr, "example.com", "/").map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "never served:\n{}", gw.log());
        std::thread::sleep(Duration::from_millis(25));
    }

    // 16 clients in a loop, each request on a new connection.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Acquire) {
                    match version(addr) {
                        Some(v) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            if seen.last() != Some(&v) {
                                seen.push(v);
                            }
                        }
                        None => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                seen
            })
        })
        .collect();
    let wait_for = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while version(addr).as_deref() != Some(want) {
            assert!(
                Instant::now() < deadline,
                "{want} never served:\n{}",
                gw.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };

    std::thread::sleep(Duration::from_millis(200));
    std::fs::write(&file, config(port, echo_port, "v2")).expect("write v2");
    wait_for("v2");
    std::thread::sleep(Duration::from_millis(200));

    // Invalid: an unknown path match type in the route (document 2 of the file).
    let invalid = config(port, echo_port, "v3").replace(
        "  rules:\n",
        "  rules:\n  - matches: [{path: {type: Prefix, value: /}}]\n",
    );
    std::fs::write(&file, invalid).expect("write invalid");
    let s = gw.wait_until("the error to be reported", |s| {
        s["errors"].as_array().is_some_and(|e| !e.is_empty())
    });
    let error = s["errors"][0].as_str().unwrap_or_default().to_owned();
    assert!(error.contains("all.yaml (document 2)"), "{error}");
    assert!(
        error.contains("spec.rules[0].matches[0].path.type"),
        "{error}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        version(addr).as_deref(),
        Some("v2"),
        "the last good config serves"
    );

    std::fs::write(&file, config(port, echo_port, "v3")).expect("write v3");
    wait_for("v3");
    gw.wait_until("the error to clear", |s| {
        s["errors"].as_array().is_some_and(Vec::is_empty)
    });
    std::thread::sleep(Duration::from_millis(200));

    stop.store(true, Ordering::Release);
    let histories: Vec<Vec<String>> = clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .collect();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("{ok} requests served, {failed} failed");
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    assert!(ok >= 100, "only {ok} requests");
    // Every client saw the versions in order, never the invalid one.
    for h in &histories {
        let mut sorted = h.clone();
        sorted.sort();
        assert_eq!(h, &sorted, "versions out of order: {h:?}");
        assert!(
            h.iter().all(|v| v == "v1" || v == "v2" || v == "v3"),
            "{h:?}"
        );
    }
}
