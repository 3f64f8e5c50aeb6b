//! End-to-end: HTTPRoute `ExternalAuth` filters (GEP-1494) in YAML, served by `gw-gateway`,
//! with in-process auth services: one over HTTP, one over the Envoy `ext_authz` gRPC protocol.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Gateway, free_port};
use gw_echo::authz::{AuthServer, TOKEN};

/// A Service `default/<name>` on port 80 whose endpoint is `addr`.
fn service(name: &str, addr: SocketAddr) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-1, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: http, port: {}}}]
endpoints: [{{addresses: ['{}']}}]
",
        addr.port(),
        addr.ip()
    )
}

/// A GET with optional `Authorization`; the status and the whole response text.
fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: shop.example.com\r\n{auth}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.split(' ').nth(1)?.parse().ok()?;
    Some((code, text))
}

#[test]
fn external_auth_filters_over_http_and_grpc() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let echo = rt
        .block_on(gw_echo::EchoServer::start(
            gw_echo::EchoConfig::loopback_http("web-abc-def", "default"),
        ))
        .expect("echo");
    let http_auth = rt.block_on(AuthServer::http()).expect("http auth");
    let grpc_auth = rt.block_on(AuthServer::grpc()).expect("grpc auth");
    let gw = Gateway::start("ext-authz", "127.0.46.0/24");
    let port = free_port();
    let config = format!(
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
metadata: {{name: shop, namespace: default}}
spec:
  parentRefs: [{{name: edge}}]
  hostnames: [shop.example.com]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /account}}}}]
    filters:
    - type: ExternalAuth
      externalAuth:
        protocol: HTTP
        backendRef: {{name: auth-http, port: 80}}
        http: {{path: /verify, allowedResponseHeaders: [x-auth-user]}}
    backendRefs: [{{name: web, port: 80}}]
  - matches: [{{path: {{type: PathPrefix, value: /api}}}}]
    filters:
    - type: ExternalAuth
      externalAuth:
        protocol: GRPC
        backendRef: {{name: auth-grpc, port: 80}}
        grpc: {{allowedHeaders: [authorization]}}
    backendRefs: [{{name: web, port: 80}}]
---
{}---
{}---
{}",
        common::web_backend(echo.http_addr().expect("echo addr").port()),
        service("auth-http", http_auth.addr()),
        service("auth-grpc", grpc_auth.addr()),
    );
    std::fs::write(gw.config().join("all.yaml"), config).expect("write");
    let addr: SocketAddr = format!("127.0.46.1:{port}").parse().expect("addr");

    // Wait until the route serves (the denial proves the auth filter is in place).
    let deadline = Instant::now() + Duration::from_secs(10);
    let denied = loop {
        match get(addr, "/account/orders", None) {
            Some((302, text)) => break text,
            other => assert!(
                Instant::now() < deadline,
                "the route never served: {other:?}\n{}",
                gw.log()
            ),
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    // HTTP: the sign-in redirect reaches the client as the auth service sent it.
    let lower = denied.to_ascii_lowercase();
    assert!(
        lower.contains("location: https://login.example.com/signin"),
        "{denied}"
    );
    assert!(lower.contains("set-cookie: auth_state=1"), "{denied}");
    assert!(denied.ends_with("sign in first"), "{denied}");
    assert_eq!(http_auth.seen().last_path, "/verify/account/orders");

    // HTTP: allowed, with the auth service's header on the upstream request.
    let (code, text) = get(addr, "/account/orders", Some(TOKEN)).expect("allowed");
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("\"pod\": \"web-abc-def\""), "{text}");
    assert!(text.contains("\"X-Auth-User\""), "{text}");

    // gRPC ext_authz: a denial with its status, header and body; then an allowed request.
    let (code, text) = get(addr, "/api/items", Some("Bearer nope")).expect("denied");
    assert_eq!(code, 401, "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("www-authenticate: bearer realm=\"gw\""),
        "{text}"
    );
    assert!(text.ends_with("token required"), "{text}");
    let (code, text) = get(addr, "/api/items", Some(TOKEN)).expect("allowed");
    assert_eq!(code, 200, "{text}");
    assert!(
        text.to_ascii_lowercase().contains("x-auth-checked: grpc"),
        "{text}"
    );
    assert!(text.contains("\"X-Auth-User\""), "{text}");
    let seen = grpc_auth.seen();
    assert_eq!(seen.checks, 2);
    assert_eq!(seen.last_path, "/api/items");

    // The auth service goes away: fail closed.
    rt.block_on(http_auth.stop());
    let (code, _) = get(addr, "/account/orders", Some(TOKEN)).expect("answer");
    assert_eq!(code, 403);
    drop(grpc_auth);
}
