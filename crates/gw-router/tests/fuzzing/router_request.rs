//! Whole requests through the [`Router`](gw_router::Router), in memory: the fuzz target
//! `router_request` and the regression replay test share this harness.
//!
//! The input is read as an HTTP request, one field per line: method, request target, Host,
//! then `name: value` header lines, then an empty line and the body. Fields that `http`
//! rejects are left out (hyper would refuse such a request before the router sees it). Every
//! rule of the configuration ends inside the gateway (redirects, URL rewrites and header
//! filters in front of a Service without endpoints, a missing backend, CORS preflights, gRPC
//! without backends, 404 and 421), so no request leaves the process.

#![allow(dead_code, unreachable_pub)]

use std::sync::OnceLock;

use bytes::Bytes;
use gw_router::gw_model::{self, CompileOptions, resources::ObjectKey, resources::Resources};
use gw_router::{Incoming, Router, RouterConfig, Routes, Scheme};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

const CONFIG: &str = r#"
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
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - {name: shop, port: 80, protocol: HTTP, hostname: "*.shop.example.com"}
---
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: default}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: main, namespace: default}
spec:
  parentRefs: [{name: edge}]
  hostnames: [a.example.com, "*.wild.example.com", "x.shop.example.com"]
  rules:
  - matches: [{path: {type: Exact, value: /redirect}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https, hostname: b.example.com, statusCode: 301}
  - matches: [{path: {type: PathPrefix, value: /moved}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /new/place}, port: 8443}
  - matches:
    - path: {type: PathPrefix, value: /rewrite/}
      headers: [{name: x-variant, value: b}]
      queryParams: [{type: RegularExpression, name: q, value: "^[a-z]+$"}]
    filters:
    - type: URLRewrite
      urlRewrite: {hostname: rewritten.example.com, path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: x-set, value: one}]
        add: [{name: x-add, value: two}]
        remove: [x-remove, accept]
    - type: ResponseHeaderModifier
      responseHeaderModifier: {add: [{name: x-resp, value: three}]}
    backendRefs: [{name: empty, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /rewrite}, method: POST}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /posted}}
    backendRefs: [{name: empty, port: 80}]
  - matches: [{path: {type: RegularExpression, value: "/re/[a-z]+/[0-9]{1,4}"}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /full}}
    backendRefs: [{name: empty, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /cors}}]
    filters:
    - type: CORS
      cors:
        allowOrigins: ["https://*.example.com", "http://localhost:3000"]
        allowMethods: [GET, PUT]
        allowHeaders: [x-custom]
        exposeHeaders: [x-exposed]
        allowCredentials: true
        maxAge: 600
    backendRefs: [{name: empty, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /missing}}]
    backendRefs: [{name: nowhere, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: fallback, namespace: default}
spec:
  parentRefs: [{name: edge, sectionName: http}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}, headers: [{type: RegularExpression, name: x-any, value: ".+"}]}]
    backendRefs: [{name: empty, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /static}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /assets}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpc, namespace: default}
spec:
  parentRefs: [{name: edge}]
  hostnames: [grpc.example.com]
  rules:
  - matches: [{method: {service: echo.Echo, method: Say}}]
    backendRefs: [{name: empty, port: 80}]
  - matches: [{method: {type: RegularExpression, service: "echo\\..*"}}]
    backendRefs: [{name: nowhere, port: 80}]
"#;

struct Harness {
    runtime: tokio::runtime::Runtime,
    router: Router,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let loaded = gw_model::load::parse("fuzz.yaml", CONFIG);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let mut resources = Resources::new();
        resources.extend(loaded.objects);
        let compiled = gw_model::compile(&resources, &CompileOptions::new("gw.dev/gateway"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime");
        let router = runtime.block_on(async {
            let router = Router::new(RouterConfig::default());
            router.swap(Routes::build(&compiled.table));
            router
        });
        Harness { runtime, router }
    })
}

/// Decodes `data` into a request (see the module docs); `None` when there is no usable
/// method or request target.
pub fn request(data: &[u8]) -> Option<http::Request<http_body_util::Full<Bytes>>> {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let mut lines = head.split(|b| *b == b'\n');
    let method = http::Method::from_bytes(lines.next()?).ok()?;
    let uri = http::Uri::try_from(lines.next()?).ok()?;
    let mut builder = http::Request::builder().method(method).uri(uri);
    if let Some(host) = lines.next()
        && let Ok(v) = http::HeaderValue::from_bytes(host)
    {
        builder = builder.header(http::header::HOST, v);
    }
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii_start();
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(&line[..colon]),
            http::HeaderValue::from_bytes(value),
        ) {
            builder = builder.header(n, v);
        }
    }
    let body = http_body_util::Full::new(Bytes::copy_from_slice(body));
    let mut req = builder.body(body).ok()?;
    req.extensions_mut().insert(Incoming {
        gateway: ObjectKey::new("default", "edge"),
        port: 80,
        scheme: Scheme::Http,
        peer: Some(std::net::SocketAddr::from(([192, 0, 2, 7], 50123))),
        sni: None,
    });
    Some(req)
}

/// Routes one input; returns the response status and body (`None`: not a request).
/// Panics only if the router does: that is what the fuzz target looks for.
pub fn run(data: &[u8]) -> Option<(http::StatusCode, Bytes)> {
    let req = request(data)?;
    let h = harness();
    let router = h.router.clone();
    h.runtime.block_on(async move {
        let response = match router.oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        Some((status, body))
    })
}
