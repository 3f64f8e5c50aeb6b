//! XBackend (ExternalHostname): routes to a backend by DNS name; a name that does not resolve
//! is a 503 for that backend and a status condition, never a stall.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Gateway, free_port, http_get};

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
