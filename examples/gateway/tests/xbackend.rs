//! XBackend (ExternalHostname): routes to a backend by DNS name; a name that does not resolve
//! is a 503 for that backend and a status condition, never a stall.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{Gateway, free_port, http_get, tcp_backend};

#[test]
fn xbackends_route_by_dns_name_and_report_resolution() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let echo = rt
        .block_on(gw_echo::EchoServer::start(
            gw_echo::EchoConfig::loopback_http("external-abc-def", "default"),
        ))
        .expect("echo");
    let echo_port = echo.http_addr().expect("addr").port();
    let port = free_port();
    let gw = Gateway::start_with(
        "xbackend",
        "127.0.47.0/24",
        &["--resolve", "api.gw.test=127.0.0.1"],
    );
    let yaml = format!(
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
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackend
metadata: {{name: api, namespace: default}}
spec:
  type: ExternalHostname
  externalHostname: {{hostname: api.gw.test}}
  port: {{port: {echo_port}}}
---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackend
metadata: {{name: down, namespace: default}}
spec:
  type: ExternalHostname
  externalHostname: {{hostname: nowhere.invalid}}
  port: {{port: 80}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: external, namespace: default}}
spec:
  parentRefs: [{{name: edge}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /api}}}}]
    backendRefs: [{{group: gateway.networking.x-k8s.io, kind: XBackend, name: api}}]
  - matches: [{{path: {{type: PathPrefix, value: /down}}}}]
    backendRefs: [{{group: gateway.networking.x-k8s.io, kind: XBackend, name: down}}]
"
    );
    std::fs::write(gw.config().join("all.yaml"), yaml).expect("write");
    let addr: SocketAddr = format!("127.0.47.1:{port}").parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        match http_get(addr, "example.com", "/api/users") {
            Some((200, body)) => break body,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "never served: {other:?}\n{}",
                    gw.log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    assert!(body.contains("external-abc-def"), "{body}");
    // The route and the XBackend are accepted; the data plane reports the name's addresses.
    let status = gw.wait_until("XBackend api resolved", |s| {
        s.to_string().contains("api.gw.test resolves to 127.0.0.1")
    });
    let api = status["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "XBackend" && i["metadata"]["name"] == "api")
        .expect("XBackend api status")
        .clone();
    let conditions = api["status"]["parents"][0]["conditions"]
        .as_array()
        .unwrap();
    for type_ in ["Accepted", "ResolvedRefs", "gw.dev/HostnameResolved"] {
        let c = conditions
            .iter()
            .find(|c| c["type"] == type_)
            .unwrap_or_else(|| panic!("no {type_}: {api}"));
        assert_eq!(c["status"], "True", "{api}");
    }

    // A name that does not resolve: 503 at once for that backend, and a status condition.
    let started = Instant::now();
    let (code, body) = http_get(addr, "example.com", "/down").expect("answer");
    assert_eq!(code, 503, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let status = gw.wait_until("XBackend down reported", |s| {
        s.to_string().contains("ResolutionFailed")
    });
    assert!(
        status
            .to_string()
            .contains("nowhere.invalid does not resolve")
    );
    // The other backend is unaffected.
    assert_eq!(
        http_get(addr, "example.com", "/api").map(|r| r.0),
        Some(200)
    );
    rt.block_on(echo.shutdown());
}

/// Connects, retrying until the listener is bound.
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

// A TCPRoute to an XBackend connects to what its name resolves to (a connection that comes
// before the first answer waits for it, as an HTTP request does); a name that does not
// resolve closes the connection without a long wait.
#[test]
fn tcp_routes_to_xbackends_connect_by_dns_name() {
    let (backend_port, backend) = tcp_backend();
    let (port, gone_port) = (free_port(), free_port());
    let gw = Gateway::start_with(
        "xbackend-tcp",
        "127.0.143.0/24",
        &["--resolve", "db.gw.test=127.0.0.1"],
    );
    let yaml = format!(
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
  listeners:
  - {{name: db, port: {port}, protocol: TCP}}
  - {{name: gone, port: {gone_port}, protocol: TCP}}
---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackend
metadata: {{name: db, namespace: default}}
spec: {{type: ExternalHostname, externalHostname: {{hostname: db.gw.test}}, port: {{port: {backend_port}}}, protocol: TCP}}
---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackend
metadata: {{name: gone, namespace: default}}
spec: {{type: ExternalHostname, externalHostname: {{hostname: nowhere.invalid}}, port: {{port: 80}}, protocol: TCP}}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{name: db, namespace: default}}
spec:
  parentRefs: [{{name: edge, sectionName: db}}]
  rules: [{{backendRefs: [{{group: gateway.networking.x-k8s.io, kind: XBackend, name: db}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{name: gone, namespace: default}}
spec:
  parentRefs: [{{name: edge, sectionName: gone}}]
  rules: [{{backendRefs: [{{group: gateway.networking.x-k8s.io, kind: XBackend, name: gone}}]}}]
"
    );
    std::fs::write(gw.config().join("all.yaml"), yaml).expect("write");

    let mut s = connect(format!("127.0.143.1:{port}").parse().unwrap());
    s.write_all(b"select 1").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"pong:select 1", "{}", gw.log());
    backend.join().unwrap();

    let mut gone = connect(format!("127.0.143.1:{gone_port}").parse().unwrap());
    let started = Instant::now();
    assert!(matches!(gone.read(&mut [0u8; 8]), Ok(0) | Err(_)));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    let (_, metrics) = gw.get("/metrics").unwrap();
    let forwarded = format!(
        "gw_tcp_connections_total{{gateway=\"default/edge\",listener=\"db\",route=\"default/db\",backend=\"default/db:{backend_port}\",outcome=\"forwarded\"}} 1"
    );
    let unresolved = "gw_tcp_connections_total{gateway=\"default/edge\",listener=\"gone\",route=\"default/gone\",backend=\"default/gone:80\",outcome=\"no_backend\"} 1";
    assert!(metrics.lines().any(|l| l == forwarded), "{metrics}");
    assert!(metrics.lines().any(|l| l == unresolved), "{metrics}");
}
