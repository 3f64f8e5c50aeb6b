//! Per-request cost of CEL transformations (`cargo bench -p gw-policy --bench transform`).

#![allow(missing_docs)]

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use gw_policy::ClientAddr;
use gw_policy::jwt::JwtClaims;
use gw_policy::transform::{TransformConfig, TransformLayer};
use http::{Request, Response};
use tower::{Layer, ServiceExt, service_fn};

fn request() -> Request<String> {
    let mut req = Request::get("/orders/42?page=2")
        .header("host", "acme.example.com")
        .header("user-agent", "bench")
        .header("accept", "application/json")
        .body(String::new())
        .unwrap_or_default();
    req.extensions_mut()
        .insert(ClientAddr(std::net::SocketAddr::from((
            [192, 0, 2, 1],
            4000,
        ))));
    req.extensions_mut().insert(JwtClaims(Arc::new(
        serde_json::json!({"sub": "alice", "tenant": "acme", "groups": ["a", "b"]}),
    )));
    req
}

fn bench(c: &mut Criterion) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    let backend = service_fn(|_req: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let mut group = c.benchmark_group("transform");
    let cases = [
        ("none", TransformConfig::new()),
        (
            "one_header_request_only",
            TransformConfig::new().set_request_header("x-user", "jwt.sub"),
        ),
        (
            "three_headers_and_path",
            TransformConfig::new()
                .set_request_header("x-user", "jwt.sub")
                .set_request_header("x-client", "source.address")
                .add_request_header("x-tenant", "request.host.split('.')[0]")
                .rewrite_path("'/v2' + request.path"),
        ),
        (
            "request_and_response",
            TransformConfig::new()
                .set_request_header("x-user", "jwt.sub")
                .set_response_header("x-status", "string(response.code)"),
        ),
    ];
    for (name, config) in cases {
        let Ok(compiled) = config.compile() else {
            continue;
        };
        let svc = TransformLayer::new(compiled).layer(backend);
        group.bench_function(name, |b| {
            b.iter(|| rt.block_on(svc.clone().oneshot(black_box(request()))))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
