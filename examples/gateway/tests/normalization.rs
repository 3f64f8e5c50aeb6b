//! Path normalization and host handling through `gw-gateway`, on raw sockets: the canonical
//! path is matched and forwarded, encoded slashes and backslashes are refused (or redirected
//! with `--path-encoded-slash redirect`), hosts are matched without port and case, a repeated
//! or conflicting host is 400, an absolute-form target wins over `Host`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

fn config(port: u16, echo_port: u16) -> String {
    let rule = |name: &str| {
        format!(
            "    filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier: {{set: [{{name: x-rule, value: {name}}}]}}
    backendRefs: [{{name: web, port: 80}}]"
        )
    };
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
  - matches: [{{path: {{type: PathPrefix, value: /public}}}}]
{}
  - matches: [{{path: {{type: Exact, value: /admin}}}}]
{}
  - matches: [{{path: {{type: Exact, value: /multi}}, headers: [{{name: x-multi, value: 'a,b'}}]}}]
{}
---
{}",
        rule("public"),
        rule("admin"),
        rule("multi"),
        common::web_backend(echo_port)
    )
}

fn setup(name: &str, pool_prefix: &str, args: &[&str]) -> common::Setup {
    common::setup(name, pool_prefix, args, config, "/public")
}

/// One raw request (`Connection: close` is added); (status, x-rule, echoed path, echoed host,
/// location).
fn send(addr: SocketAddr, target: &str, headers: &str) -> (u16, String, String, String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        s,
        "GET {target} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n"
    )
    .expect("write");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let header = |name: &str| {
        text.lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
            .unwrap_or_default()
    };
    let json: serde_json::Value = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or_default();
    (
        status,
        header("x-rule"),
        json["path"].as_str().unwrap_or_default().to_owned(),
        json["host"].as_str().unwrap_or_default().to_owned(),
        header("location"),
    )
}

const HOST: &str = "Host: example.com\r\n";

#[test]
fn the_canonical_path_is_matched_and_forwarded_and_encoded_separators_are_refused() {
    let s = setup("normpath", "127.0.85", &[]);
    for (target, rule, forwarded) in [
        ("/public/x", "public", "/public/x"),
        ("/public/../admin", "admin", "/admin"),
        ("/public/%2e%2e/admin", "admin", "/admin"),
        ("/public/%2E%2E/./admin", "admin", "/admin"),
        ("//admin", "admin", "/admin"),
        ("/%61dmin", "admin", "/admin"),
        ("/public//a/./b%3a?q=%2F", "public", "/public/a/b%3A?q=%2F"),
    ] {
        let (status, got_rule, path, _, _) = send(s.addr, target, HOST);
        assert_eq!(
            (status, got_rule.as_str(), path.as_str()),
            (200, rule, forwarded),
            "{target}"
        );
    }
    for target in [
        "/public/%2F..%2Fadmin",
        "/public/%2f",
        "/public/%5C..%5Cadmin",
        "/public\\..\\admin",
        "/public/%zz",
    ] {
        assert_eq!(send(s.addr, target, HOST).0, 400, "{target}");
    }
    drop(s.gw);
}

#[test]
fn encoded_separators_can_be_redirected() {
    let s = setup(
        "normredirect",
        "127.0.86",
        &[
            "--path-encoded-slash",
            "redirect",
            "--path-backslash",
            "redirect",
        ],
    );
    let (status, _, _, _, location) = send(s.addr, "/public/%2F..%2Fadmin?x=1", HOST);
    assert_eq!((status, location.as_str()), (308, "/admin?x=1"));
    let (status, _, _, _, location) = send(s.addr, "/public\\a", HOST);
    assert_eq!((status, location.as_str()), (308, "/public/a"));
    drop(s.gw);
}

#[test]
fn host_port_case_duplicates_absolute_form_and_repeated_headers() {
    let s = setup("normhost", "127.0.87", &[]);
    // Port ignored, case folded; the backend sees the Host as sent.
    let (status, rule, _, host, _) = send(s.addr, "/admin", "Host: EXAMPLE.com:9999\r\n");
    assert_eq!(
        (status, rule.as_str(), host.as_str()),
        (200, "admin", "EXAMPLE.com:9999")
    );
    // Duplicate Host: 400 (RFC 9112 3.2).
    let (status, ..) = send(
        s.addr,
        "/admin",
        "Host: example.com\r\nHost: other.test\r\n",
    );
    assert_eq!(status, 400);
    // Absolute form wins over Host (RFC 9112 3.2.2), and is forwarded as Host.
    let (status, rule, path, host, _) =
        send(s.addr, "http://example.com/admin", "Host: other.test\r\n");
    assert_eq!(
        (status, rule.as_str(), path.as_str(), host.as_str()),
        (200, "admin", "/admin", "example.com")
    );
    let (status, ..) = send(s.addr, "http://other.test/admin", HOST);
    assert_eq!(status, 404);
    // A repeated request header is matched as its values joined with ",".
    let (status, rule, ..) = send(
        s.addr,
        "/multi",
        "Host: example.com\r\nx-multi: a\r\nx-multi: b\r\n",
    );
    assert_eq!((status, rule.as_str()), (200, "multi"));
    let (status, ..) = send(s.addr, "/multi", "Host: example.com\r\nx-multi: a\r\n");
    assert_eq!(status, 404);

    // HTTP/2: Host must name the :authority's host.
    let addr = s.addr;
    s.rt.block_on(async move {
        use http_body_util::Empty;
        use hyper_util::rt::{TokioExecutor, TokioIo};
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .expect("h2c handshake");
        tokio::spawn(conn);
        for (host, want) in [
            (None, 200),
            (Some("Example.com"), 200),
            (Some("other.test"), 400),
        ] {
            let mut req = http::Request::get("http://example.com/admin");
            if let Some(h) = host {
                req = req.header("host", h);
            }
            let req = req.body(Empty::<bytes::Bytes>::new()).expect("request");
            send.ready().await.expect("ready");
            let status = send.send_request(req).await.expect("response").status();
            assert_eq!(status.as_u16(), want, "Host {host:?}");
        }
    });
    drop(s.gw);
}
