//! Heap held by each stage of a configuration at N HTTPRoutes, each with its own Service and
//! EndpointSlice (the load harness's scale configuration): the loaded `Resources`, the
//! compiled `RouteTable` and `StatusReport`, and the `Routes` index the router serves from.
//! Bytes are counted by dhat's allocator (live heap bytes after each stage is built, and the
//! peak while building), so the figures are exact and repeatable on a noisy machine.
//!
//! Run: `cargo bench -p gw-router --bench memory` (`-- 500` for another route count; with
//! `GW_BENCH_QUICK=1`, 200 routes: CI runs it that way through `cargo test --benches`).
//! With `GW_DHAT_OUT=FILE`, dhat also writes its profile to FILE, with every stage still alive
//! at exit: the `eb` ("bytes at end") of each allocation site is then what that site holds
//! (open it in dhat's viewer, `dh_view.html`, sorted by "At t-end").

#![allow(missing_docs, clippy::unwrap_used, clippy::panic, clippy::print_stdout)]

use std::fmt::Write;

use gw_router::Routes;
use gw_router::gw_model::{self, CompileOptions, resources::Resources};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn manifests(n: usize) -> String {
    let mut y = String::from(
        "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gw-bench}
spec: {controllerName: gw.dev/gateway}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: scale, namespace: bench}
spec:
  gatewayClassName: gw-bench
  addresses: [{type: IPAddress, value: 127.0.90.3}]
  listeners:
  - {name: http, port: 8080, protocol: HTTP}
",
    );
    for i in 0..n {
        write!(
            y,
            "---
apiVersion: v1
kind: Service
metadata: {{name: svc-{i}, namespace: bench}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: svc-{i}-1, namespace: bench, labels: {{kubernetes.io/service-name: svc-{i}}}}}
addressType: IPv4
ports: [{{name: http, port: 3000}}]
endpoints: [{{addresses: [127.0.90.10]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: route-{i}, namespace: bench}}
spec:
  parentRefs: [{{name: scale}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /r/{i}}}}}]
    backendRefs: [{{name: svc-{i}, port: 80}}]
"
        )
        .unwrap();
    }
    y
}

fn live() -> u64 {
    dhat::HeapStats::get().curr_bytes as u64
}

struct Row {
    stage: &'static str,
    bytes: u64,
    peak: u64,
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(if std::env::var_os("GW_BENCH_QUICK").is_some() {
            200
        } else {
            5_000
        });
    let out = std::env::var_os("GW_DHAT_OUT");
    let _profiler = match &out {
        Some(f) => dhat::Profiler::builder().file_name(f).build(),
        None => dhat::Profiler::builder().testing().build(),
    };
    let text = manifests(n);
    let mut rows = Vec::new();

    let base = live();
    let loaded = gw_model::load::parse("bench.yaml", &text);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors.first());
    let mut resources = Resources::new();
    resources.extend(loaded.objects);
    let peak = dhat::HeapStats::get().max_bytes as u64;
    rows.push(Row {
        stage: "Resources (parsed objects)",
        bytes: live() - base,
        peak,
    });

    let before = live();
    let compiled = gw_model::compile(&resources, &CompileOptions::new("gw.dev/gateway"));
    let after = live();
    let peak = dhat::HeapStats::get().max_bytes as u64;
    // The report's own bytes: what dropping it frees (a clone would be sized exactly and
    // miss the headroom of Vecs grown by pushing).
    let gw_model::Compiled { table, status, .. } = compiled;
    drop(status);
    let status_bytes = after - live();
    rows.push(Row {
        stage: "RouteTable (compiled)",
        bytes: after - before - status_bytes,
        peak,
    });
    rows.push(Row {
        stage: "StatusReport",
        bytes: status_bytes,
        peak,
    });

    let before = live();
    let routes = Routes::build(&table);
    rows.push(Row {
        stage: "Routes (router index)",
        bytes: live() - before,
        peak: dhat::HeapStats::get().max_bytes as u64,
    });

    // gw-gateway compiles with a Compiler, which keeps each route's compiled rules for the
    // next reload. Its entries are shared with the table it compiled: what it holds beyond a
    // table and report of its own (measured with them alive, as in the gateway).
    let before = live();
    let mut compiler = gw_model::Compiler::default();
    let again = compiler.compile(
        &resources,
        &CompileOptions::new("gw.dev/gateway"),
        &gw_model::Changes::All,
    );
    let with_output = live() - before;
    drop(again);
    // The plain compile's table and report, measured above.
    let plain: u64 = rows[1].bytes + rows[2].bytes;
    rows.push(Row {
        stage: "Compiler (beyond the table and report it compiled)",
        bytes: with_output.saturating_sub(plain),
        peak: dhat::HeapStats::get().max_bytes as u64,
    });
    drop(compiler);

    println!("heap by stage at {n} HTTPRoutes (each with a Service and an EndpointSlice)");
    println!("| stage | live bytes | bytes per route | peak heap so far |");
    println!("|---|---:|---:|---:|");
    let mut total = 0;
    for r in &rows {
        total += r.bytes;
        println!(
            "| {} | {} | {} | {} |",
            r.stage,
            r.bytes,
            r.bytes / n as u64,
            r.peak
        );
    }
    println!("| total | {total} | {} | |", total / n as u64);
    if out.is_some() {
        // Keep every stage alive for the profile's "at end" figures.
        std::mem::forget((routes, table, resources));
    } else {
        drop((routes, table, resources));
    }
}
