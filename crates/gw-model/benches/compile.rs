//! `gw_model::compile` at 500, 5,000 and 50,000 HTTPRoutes, each with its own Service and
//! EndpointSlice (loading excluded: the resources are built once), and `Compiler::compile` after
//! a one-route change (`recompile`: the route's path flips between two values; the Compiler
//! compiles that route again and reuses the others).
//!
//! Run: `cargo bench -p gw-model --bench compile`. With `GW_BENCH_QUICK=1` only 500 routes
//! (CI runs it that way, in test mode: `cargo test --benches`).

#![allow(missing_docs, clippy::unwrap_used, clippy::panic)]

use std::fmt::Write;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gw_model::resources::Resources;
use gw_model::resources::{Kind, ObjectKey};
use gw_model::{Changes, CompileOptions, Compiler, compile, load};

fn manifests(n: usize) -> String {
    let mut y = String::from(
        "apiVersion: gateway.networking.k8s.io/v1
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
  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
  - {name: wild, port: 80, protocol: HTTP, hostname: '*.example.com', allowedRoutes: {namespaces: {from: All}}}
",
    );
    for i in 0..n {
        let ns = format!("team-{}", i % 50);
        write!(
            y,
            "---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r{i}, namespace: {ns}}}
spec:
  parentRefs: [{{name: edge, namespace: default}}]
  hostnames: [s{i}.example.com]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /api/v{}}}, headers: [{{name: x-tenant, value: t{i}}}]}}]
    filters: [{{type: RequestHeaderModifier, requestHeaderModifier: {{set: [{{name: x-route, value: r{i}}}]}}}}]
    backendRefs: [{{name: svc{i}, port: 80}}]
  - matches: [{{path: {{type: Exact, value: /health}}}}]
    backendRefs: [{{name: svc{i}, port: 80}}]
---
apiVersion: v1
kind: Service
metadata: {{name: svc{i}, namespace: {ns}}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: svc{i}-1, namespace: {ns}, labels: {{kubernetes.io/service-name: svc{i}}}}}
addressType: IPv4
ports: [{{name: http, port: 8080}}]
endpoints: [{{addresses: [10.0.{}.{}]}}]
",
            i % 3,
            (i / 250) % 250,
            i % 250 + 1
        )
        .unwrap();
    }
    y
}

fn sizes() -> &'static [usize] {
    if std::env::var_os("GW_BENCH_QUICK").is_some() {
        &[500]
    } else {
        &[500, 5_000, 50_000]
    }
}

fn resources(n: usize) -> Resources {
    let loaded = load::parse("bench.yaml", &manifests(n));
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors.first());
    let mut res = Resources::new();
    res.extend(loaded.objects);
    res
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    for &n in sizes() {
        let res = resources(n);
        let options = CompileOptions::new("gw.dev/gateway");
        group.bench_with_input(BenchmarkId::from_parameter(n), &res, |b, res| {
            b.iter(|| black_box(compile(res, &options)));
        });
    }
    group.finish();

    let mut group = c.benchmark_group("recompile");
    group.sample_size(20);
    for &n in sizes() {
        let mut res = resources(n);
        let options = CompileOptions::new("gw.dev/gateway");
        let mut compiler = Compiler::default();
        compiler.compile(&res, &options, &Changes::All);
        // Route r0 in two versions, swapped in turn.
        let version = |path: &str| {
            let yaml = format!(
                "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r0, namespace: team-0}}
spec:
  parentRefs: [{{name: edge, namespace: default}}]
  hostnames: [s0.example.com]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]
    backendRefs: [{{name: svc0, port: 80}}]
"
            );
            let mut loaded = load::parse("r0.yaml", &yaml);
            assert!(loaded.errors.is_empty(), "{:?}", loaded.errors.first());
            loaded.objects.remove(0)
        };
        let versions = [version("/a"), version("/b")];
        let changes = Changes::Objects(vec![(Kind::HttpRoute, ObjectKey::new("team-0", "r0"))]);
        let mut turn = 0;
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                turn ^= 1;
                res.insert(versions[turn].clone());
                black_box(compiler.compile(&res, &options, &changes))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
