//! Per-request cost of observability in the Router: W3C trace context (parse, new span id,
//! `traceparent` header) and the `RouteInfo` response extension, on a rule the gateway answers
//! itself (a redirect: no network, the future is ready at once).
//!
//! Run: `cargo bench -p gw-router --bench observe`.

#![allow(missing_docs, clippy::unwrap_used, clippy::panic)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt as _;
use gw_router::gw_model::{self, CompileOptions, resources::ObjectKey, resources::Resources};
use gw_router::trace::TraceContext;
use gw_router::{Incoming, Router, RouterConfig, Routes, Scheme};
use tower::Service as _;

const YAML: &str = r#"
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
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: default}
spec:
  parentRefs: [{name: edge}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /old}}]
    filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}, statusCode: 301}}]
"#;

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn router(trace: bool) -> Router {
    let mut res = Resources::new();
    res.extend(gw_model::load::parse("bench.yaml", YAML).objects);
    let compiled = gw_model::compile(&res, &CompileOptions::new("gw.dev/gateway"));
    let r = Router::new(RouterConfig::default().with_trace_context(trace));
    r.swap(Routes::build(&compiled.table));
    r
}

fn request(traceparent: bool) -> http::Request<http_body_util::Empty<bytes::Bytes>> {
    let mut b = http::Request::get("/old/page")
        .header("host", "example.com")
        .extension(Incoming {
            gateway: ObjectKey::new("default", "edge"),
            port: 80,
            scheme: Scheme::Http,
            peer: None,
            sni: None,
        });
    if traceparent {
        b = b.header("traceparent", PARENT);
    }
    b.body(http_body_util::Empty::new()).unwrap()
}

fn bench(c: &mut Criterion) {
    let mut headers = http::HeaderMap::new();
    headers.insert("traceparent", PARENT.parse().unwrap());
    c.bench_function("trace_context/continue", |b| {
        b.iter(|| {
            let mut h = headers.clone();
            let t = TraceContext::continue_or_start(black_box(&h));
            t.apply(&mut h);
            h
        })
    });
    let empty = http::HeaderMap::new();
    c.bench_function("trace_context/start", |b| {
        b.iter(|| {
            let mut h = empty.clone();
            let t = TraceContext::continue_or_start(black_box(&h));
            t.apply(&mut h);
            h
        })
    });
    let mut group = c.benchmark_group("router_redirect");
    for (name, trace, parent) in [
        ("trace_off", false, false),
        ("trace_new", true, false),
        ("trace_continued", true, true),
    ] {
        let mut r = router(trace);
        group.bench_function(name, |b| {
            b.iter_batched(
                || request(parent),
                |req| {
                    let resp = r.call(req).now_or_never().unwrap().unwrap();
                    assert_eq!(resp.status(), http::StatusCode::MOVED_PERMANENTLY);
                    resp
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
