//! `Routes::resolve` + request filters at 10, 1,000, 10,000 and 50,000 HTTPRoutes (no
//! network): a typical mix of requests, the best case and the worst case.
//!
//! Routes come from realistic templates: one exact hostname per route (some with a second,
//! wildcard hostname, some wildcard-only), ~20 routes per team domain, shared path prefixes,
//! header/query/method matches, one regex rule in four routes, header modifiers and URL
//! rewrites, plus a few catch-all routes. Requests hit exact hosts, wildcard hosts and the
//! catch-all, with Exact, PathPrefix, regex and header/query-conditioned paths.
//!
//! - `typical`: that mix.
//! - `best`: `Exact /health` on an exact hostname (the first rule looked at matches).
//! - `worst`: requests that look at every candidate and fall through: a conditioned
//!   `/api/v2/items` match whose header and query conditions fail (falls back to the
//!   unconditioned rule), a deep path under a prefix shared by every route, with headers and
//!   a query string, and a regex rule.
//!
//! `rebuild`: the index built again from an unchanged table (every rule reused), as a reload
//! does for the routes it did not change.
//!
//! Run: `cargo bench -p gw-router --bench routing`. With `GW_BENCH_QUICK=1` only 10 and
//! 1,000 routes are built (CI runs it that way, in test mode: `cargo test --benches`).

#![allow(missing_docs, clippy::unwrap_used, clippy::panic)]

use std::fmt::Write;
use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use gw_router::gw_model::{self, CompileOptions, resources::ObjectKey, resources::Resources};
use gw_router::{Resolution, Routes, Scheme};

const HEAD: &str = r#"
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
  listeners: [{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}]
"#;

fn manifests(n: usize) -> String {
    let mut y = String::from(HEAD);
    for i in 0..n {
        let team = i / 20;
        let ns = format!("team-{}", team % 40);
        let hostnames = match i % 10 {
            0 => format!("[\"*.t{team}.example.com\"]"),
            9 => format!("[s{i}.t{team}.example.com, \"*.s{i}.example.org\"]"),
            _ => format!("[s{i}.t{team}.example.com]"),
        };
        let regex = if i % 4 == 0 {
            "  - matches: [{path: {type: RegularExpression, value: \"/users/[0-9]+/profile\"}}]\n    backendRefs: [{name: users, port: 80}]\n"
        } else {
            ""
        };
        write!(
            y,
            r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r{i}, namespace: {ns}}}
spec:
  parentRefs: [{{name: edge, namespace: default}}]
  hostnames: {hostnames}
  rules:
  - matches: [{{path: {{type: Exact, value: /health}}}}]
    backendRefs: [{{name: health, port: 80}}]
  - matches: [{{path: {{type: PathPrefix, value: /api/v1/s{i}}}}}, {{path: {{type: PathPrefix, value: /api/v1/items}}}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {{set: [{{name: x-route, value: r{i}}}], add: [{{name: x-team, value: t{team}}}]}}
    backendRefs: [{{name: api-v1, port: 80}}]
  - matches:
    - path: {{type: PathPrefix, value: /api/v2/items}}
      headers: [{{name: x-version, value: "2"}}]
      queryParams: [{{name: debug, value: "1"}}]
    - path: {{type: PathPrefix, value: /api/v2/items}}
      method: POST
    filters:
    - type: URLRewrite
      urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /items}}}}
    backendRefs: [{{name: api-v2, port: 80}}]
  - matches: [{{path: {{type: PathPrefix, value: /api/v2/items}}}}]
    backendRefs: [{{name: api-v2-stable, port: 80}}]
  - matches: [{{path: {{type: PathPrefix, value: /static}}, headers: [{{name: x-canary, value: "true"}}]}}]
    backendRefs: [{{name: static-canary, port: 80}}]
{regex}"#
        )
        .unwrap();
    }
    // A few catch-all routes, as most deployments have.
    for (name, path) in [
        ("default", "/"),
        ("assets", "/static"),
        ("favicon", "/favicon.ico"),
    ] {
        write!(
            y,
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  parentRefs: [{{name: edge}}]\n  rules: [{{matches: [{{path: {{type: PathPrefix, value: {path}}}}}], backendRefs: [{{name: web, port: 80}}]}}]\n"
        )
        .unwrap();
    }
    y
}

fn build(n: usize) -> (Routes, gw_model::table::RouteTable) {
    let loaded = gw_model::load::parse("bench.yaml", &manifests(n));
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors.first());
    let mut res = Resources::new();
    res.extend(loaded.objects);
    let compiled = gw_model::compile(&res, &CompileOptions::new("gw.dev/gateway"));
    (Routes::build(&compiled.table), compiled.table)
}

/// Method, URI, host, headers.
type Req = (
    &'static str,
    String,
    String,
    Vec<(&'static str, &'static str)>,
);

/// (method, uri, host, headers) — the same mix at every size, spread over the routes.
fn requests(n: usize) -> Vec<Req> {
    let mut out = Vec::new();
    for k in 0..16 {
        let i = (k * n / 16 + 1).min(n - 1);
        let i = if i.is_multiple_of(10) { i + 1 } else { i }.min(n - 1);
        let team = i / 20;
        let host = format!("s{i}.t{team}.example.com");
        out.push(("GET", "/health".to_owned(), host.clone(), vec![]));
        out.push((
            "GET",
            format!("/api/v1/s{i}/orders/7"),
            host.clone(),
            vec![],
        ));
        out.push((
            "GET",
            "/api/v2/items/42?debug=1".to_owned(),
            host.clone(),
            vec![("x-version", "2")],
        ));
        out.push(("GET", "/api/v2/items/42".to_owned(), host.clone(), vec![]));
        // Only routes whose index is a multiple of 4 have the regex rule.
        let j = i - i % 4;
        let j = if j.is_multiple_of(10) { j + 4 } else { j };
        out.push((
            "GET",
            "/users/123/profile".to_owned(),
            format!("s{j}.t{}.example.com", j / 20),
            vec![],
        ));
        out.push((
            "GET",
            format!("/api/v1/s{}/x", team * 20),
            format!("web.t{team}.example.com"),
            vec![],
        ));
        out.push((
            "GET",
            "/static/app.js".to_owned(),
            "unknown.example.net".to_owned(),
            vec![],
        ));
    }
    out
}

/// The best case: the first rule looked at matches.
fn best(n: usize) -> Vec<Req> {
    (0..16)
        .map(|k| {
            let i = (k * n / 16 + 1).min(n - 1);
            let i = if i.is_multiple_of(10) { i + 1 } else { i }.min(n - 1);
            (
                "GET",
                "/health".to_owned(),
                format!("s{i}.t{}.example.com", i / 20),
                vec![],
            )
        })
        .collect()
}

/// The worst cases: every candidate is looked at before the match.
fn worst(n: usize) -> Vec<Req> {
    let mut out = Vec::new();
    for k in 0..16 {
        let i = (k * n / 16 + 1).min(n - 1);
        let i = if i.is_multiple_of(10) { i + 1 } else { i }.min(n - 1);
        let host = format!("s{i}.t{}.example.com", i / 20);
        out.push((
            "GET",
            "/api/v2/items/42?debug=0&x=1&y=2".to_owned(),
            host.clone(),
            vec![("x-version", "3"), ("x-canary", "false")],
        ));
        out.push((
            "GET",
            "/api/v1/items/a/b/c/d/e/f/g/h/i/j?x=1&y=2&z=3".to_owned(),
            host.clone(),
            vec![("x-version", "3"), ("x-canary", "false")],
        ));
        let j = i - i % 4;
        let j = if j.is_multiple_of(10) { j + 4 } else { j };
        out.push((
            "GET",
            "/users/1234567890/profile".to_owned(),
            format!("s{j}.t{}.example.com", j / 20),
            vec![],
        ));
    }
    out
}

fn sizes() -> Vec<usize> {
    if std::env::var_os("GW_BENCH_QUICK").is_some() {
        vec![10, 1_000]
    } else {
        vec![10, 1_000, 10_000, 50_000]
    }
}

fn bench(c: &mut Criterion) {
    for n in sizes() {
        let (routes, table) = build(n);
        bench_rebuild(c, n, &routes, &table);
        for (name, reqs) in [
            ("typical", requests(n)),
            ("best", best(n)),
            ("worst", worst(n)),
        ] {
            bench_requests(c, name, n, &routes, &reqs);
        }
    }
}

/// `Routes::rebuild` from a table whose entries did not change: every rule is reused, and the
/// index (precedence order, hostname and path maps) is built again. What a reload pays for the
/// routes it did not change.
fn bench_rebuild(
    c: &mut Criterion,
    n: usize,
    routes: &Routes,
    table: &gw_model::table::RouteTable,
) {
    let resolver = gw_router::dns::Resolver::shared();
    let mut group = c.benchmark_group("rebuild");
    group.sample_size(20);
    group.bench_function(BenchmarkId::from_parameter(n), |b| {
        b.iter(|| black_box(Routes::rebuild(routes, table, &resolver)));
    });
    group.finish();
}

fn bench_requests(c: &mut Criterion, name: &str, n: usize, routes: &Routes, reqs: &[Req]) {
    let gateway = ObjectKey::new("default", "edge");
    let mut group = c.benchmark_group(format!("resolve_and_filters/{name}"));
    {
        // Every request must match, at every size.
        for (m, uri, host, hs) in reqs {
            let mut b = http::Request::builder()
                .method(*m)
                .uri(uri)
                .header("host", host);
            for (k, v) in hs {
                b = b.header(*k, *v);
            }
            let req = b.body(()).unwrap();
            assert!(
                matches!(routes.resolve(&gateway, 80, &req), Resolution::Matched(_)),
                "{name} {n}: {uri} {host}"
            );
        }
        let mut next = 0usize;
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_batched(
                || {
                    let (m, uri, host, hs) = &reqs[next % reqs.len()];
                    next += 1;
                    let mut b = http::Request::builder()
                        .method(*m)
                        .uri(uri)
                        .header("host", host);
                    for (k, v) in hs {
                        b = b.header(*k, *v);
                    }
                    b.body(()).unwrap().into_parts().0
                },
                |mut parts| {
                    // What the Router does before any I/O: resolve, then the rule's filters.
                    let route = match routes.resolve(&gateway, 80, &parts) {
                        Resolution::Matched(m) => m.to_route(),
                        _ => unreachable!(),
                    };
                    black_box(
                        route
                            .apply_request_filters(&mut parts, Scheme::Http, 80)
                            .is_ok(),
                    )
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
