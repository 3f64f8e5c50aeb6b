//! Shared test helpers: tables from YAML, requests with `Incoming`, echo backends.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;

use bytes::Bytes;
use gw_router::gw_model::{self, CompileOptions, resources::ObjectKey, resources::Resources};
use gw_router::{Body, Incoming, Router, RouterConfig, Routes, Scheme};
use http::{Request, Response};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// GatewayClass + Gateway `default/edge` with an HTTP listener on port 80.
pub const GATEWAY: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gw}
spec: {controllerName: gw.dev/gateway}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: default}
spec:
  gatewayClassName: gw
  listeners: [{name: http, port: 80, protocol: HTTP}]
"#;

pub fn gateway() -> ObjectKey {
    ObjectKey::new("default", "edge")
}

/// Compiles manifests into a table; fails the test on load errors.
pub fn table(yaml: &str) -> gw_model::table::RouteTable {
    let loaded = gw_model::load::parse("test.yaml", yaml);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let mut res = Resources::new();
    res.extend(loaded.objects);
    gw_model::compile(&res, &CompileOptions::new("gw.dev/gateway")).table
}

pub fn routes(yaml: &str) -> Routes {
    Routes::build(&table(yaml))
}

/// A Service `default/<name>` (port 8080 named `http`) whose EndpointSlice points at `addrs`.
pub fn service(name: &str, addrs: &[SocketAddr], app_protocol: Option<&str>) -> String {
    let port = addrs.first().map_or(1, |a| a.port());
    let ap = app_protocol.map_or(String::new(), |p| format!(", appProtocol: {p}"));
    let addresses: Vec<String> = addrs.iter().map(|a| format!("'{}'", a.ip())).collect();
    let endpoints = if addrs.is_empty() {
        "[]".to_owned()
    } else {
        format!("[{{addresses: [{}]}}]", addresses.join(", "))
    };
    format!(
        r#"
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  ports: [{{name: http, port: 8080{ap}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-1
  namespace: default
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: http, port: {port}}}]
endpoints: {endpoints}
"#
    )
}

/// A request on the gateway's port 80 with `Incoming` set.
pub fn req(method: &str, uri: &str, host: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("host", host)
        .extension(Incoming {
            gateway: gateway(),
            port: 80,
            scheme: Scheme::Http,
            peer: Some("192.0.2.1:4000".parse().unwrap()),
            sni: None,
        })
}

pub fn get(uri: &str, host: &str) -> Request<http_body_util::Empty<Bytes>> {
    req("GET", uri, host)
        .body(http_body_util::Empty::new())
        .unwrap()
}

pub fn router(yaml: &str) -> Router {
    let r = Router::new(RouterConfig::default());
    r.swap(routes(yaml));
    r
}

pub async fn call<B>(router: &Router, req: Request<B>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<gw_router::BoxError>,
{
    router.clone().oneshot(req).await.unwrap()
}

/// The body as bytes.
pub async fn body(resp: Response<Body>) -> (http::response::Parts, Bytes) {
    let (parts, body) = resp.into_parts();
    (parts, body.collect().await.unwrap().to_bytes())
}

/// The echo server's JSON reply.
pub async fn echoed(resp: Response<Body>) -> (http::response::Parts, serde_json::Value) {
    let (parts, bytes) = body(resp).await;
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "status {}: not an echo reply ({e}): {}",
            parts.status,
            String::from_utf8_lossy(&bytes)
        )
    });
    (parts, json)
}

/// An echo backend on 127.0.0.1 with the given pod name.
pub async fn echo(pod: &str) -> gw_echo::EchoServer {
    gw_echo::EchoServer::start(gw_echo::EchoConfig::loopback_http(pod, "default"))
        .await
        .unwrap()
}

pub fn addr(e: &gw_echo::EchoServer) -> SocketAddr {
    e.http_addr().unwrap()
}

/// The value of an echoed request header (Go-canonical name), joined with `,`.
pub fn echoed_header(json: &serde_json::Value, name: &str) -> Option<String> {
    json["headers"][name].as_array().map(|vs| {
        vs.iter()
            .filter_map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join(",")
    })
}
