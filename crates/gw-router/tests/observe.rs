//! What the Router reports about each request (`RouteInfo`) and W3C trace context propagation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{GATEWAY, addr, call, echo, echoed, echoed_header, get, req, router, routes, service};
use gw_router::trace::parse_traceparent;
use gw_router::{RouteInfo, Router, RouterConfig};
use http::StatusCode;

fn route(body: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: default}}\nspec:\n  parentRefs: [{{name: edge}}]\n{body}\n"
    )
}

fn info(resp: &http::Response<gw_router::Body>) -> RouteInfo {
    resp.extensions()
        .get::<RouteInfo>()
        .cloned()
        .expect("every response carries RouteInfo")
}

#[tokio::test]
async fn route_info_names_listener_route_rule_backend_and_counts_attempts() {
    let v3 = echo("infra-backend-v3").await;
    let yaml = format!(
        "{GATEWAY}{}{}",
        service("v3", &[addr(&v3)], None),
        route(
            r#"  rules:
  - name: retried
    matches: [{path: {value: /retry/code-500}}]
    retry: {codes: [500], attempts: 3, backoff: 1ms}
    backendRefs: [{name: v3, port: 8080}]
  - matches: [{path: {value: /redirect}}]
    filters: [{type: RequestRedirect, requestRedirect: {statusCode: 302, hostname: other.example}}]"#
        )
    );
    let r = router(&yaml);
    // The echo's retry simulator fails twice, then answers 200: three attempts.
    let resp = call(
        &r,
        get(
            "/retry/code-500?responseCode=500&succeedAfter=2&uuid=obs1",
            "example.com",
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let i = info(&resp);
    assert_eq!(i.gateway.as_deref(), Some("default/edge"));
    assert_eq!(i.listener.as_deref(), Some("http"));
    assert_eq!(i.route_label(), Some("default/r"));
    assert_eq!(i.rule_label(), Some("retried"));
    assert_eq!(i.rule.as_ref().map(|r| r.rule_index()), Some(0));
    assert_eq!(i.match_index, Some(0));
    assert_eq!(i.backend.as_deref(), Some("default/v3:8080"));
    let up = i.upstream.expect("forwarded");
    assert_eq!(up.attempts, 3);
    assert_eq!(up.endpoint, Some(addr(&v3)));
    assert!(up.duration > std::time::Duration::ZERO);
    // The pooled HTTP/1.1 connection is counted (the retries reuse it).
    let pool = r.upstream_connections();
    assert!(pool.opened >= 1 && pool.open >= 1, "{pool:?}");
    assert!(pool.open <= pool.opened);

    // A redirect is the gateway's own answer: a rule, no backend, no upstream.
    let resp = call(&r, get("/redirect", "example.com")).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    let i = info(&resp);
    assert_eq!(i.rule_label(), Some("1"));
    assert!(i.backend.is_none() && i.upstream.is_none());

    // No rule: the listener is known, nothing else.
    let resp = call(&r, get("/nothing", "example.com")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let i = info(&resp);
    assert_eq!(i.listener.as_deref(), Some("http"));
    assert!(i.rule.is_none() && i.backend.is_none());
    assert!(i.trace.is_some());
    v3.shutdown().await;
}

#[tokio::test]
async fn backend_without_endpoints_is_reported_without_upstream() {
    let yaml = format!(
        "{GATEWAY}{}{}",
        service("empty", &[], None),
        route("  rules: [{backendRefs: [{name: empty, port: 8080}]}]")
    );
    let resp = call(&router(&yaml), get("/", "example.com")).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let i = info(&resp);
    assert_eq!(i.backend.as_deref(), Some("default/empty:8080"));
    assert!(i.upstream.is_none());
}

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

// W3C Trace Context: a valid traceparent keeps its trace id, the hop to the backend gets a new
// parent-id (the gateway's span), tracestate is passed through.
#[tokio::test]
async fn valid_traceparent_is_continued_with_a_new_span_and_tracestate_kept() {
    let v1 = echo("v1").await;
    let yaml = format!(
        "{GATEWAY}{}{}",
        service("v1", &[addr(&v1)], None),
        route("  rules: [{backendRefs: [{name: v1, port: 8080}]}]")
    );
    let r = router(&yaml);
    let request = req("GET", "/", "example.com")
        .header("traceparent", PARENT)
        .header("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = call(&r, request).await;
    let i = info(&resp);
    let trace = i.trace.expect("trace context");
    let (_, json) = echoed(resp).await;
    let sent = echoed_header(&json, "Traceparent").expect("traceparent forwarded");
    let mut h = http::HeaderMap::new();
    h.insert("traceparent", sent.parse().unwrap());
    let p = parse_traceparent(&h).expect("valid traceparent sent");
    assert_eq!(p.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(p.parent_id.to_string(), "00f067aa0ba902b7");
    assert_eq!(p.parent_id, trace.span_id());
    assert_eq!(p.flags, 1);
    assert_eq!(
        trace.parent_id().map(|s| s.to_string()).as_deref(),
        Some("00f067aa0ba902b7")
    );
    assert_eq!(
        echoed_header(&json, "Tracestate").as_deref(),
        Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
    );
    v1.shutdown().await;
}

// Absent or invalid traceparent: a new trace; tracestate of the unparsable trace is dropped.
#[tokio::test]
async fn invalid_traceparent_starts_a_new_trace() {
    let v1 = echo("v1").await;
    let yaml = format!(
        "{GATEWAY}{}{}",
        service("v1", &[addr(&v1)], None),
        route("  rules: [{backendRefs: [{name: v1, port: 8080}]}]")
    );
    let r = router(&yaml);
    let request = req("GET", "/", "example.com")
        .header(
            "traceparent",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        )
        .header("tracestate", "congo=t61rcWkgMzE")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = call(&r, request).await;
    let trace = info(&resp).trace.unwrap();
    assert!(!trace.continued());
    let (_, json) = echoed(resp).await;
    let sent = echoed_header(&json, "Traceparent").unwrap();
    assert_eq!(sent, trace.traceparent());
    assert_ne!(trace.trace_id().0, [0; 16]);
    assert_eq!(echoed_header(&json, "Tracestate"), None);

    // No traceparent at all: a new trace per request.
    let a = info(&call(&r, get("/", "example.com")).await)
        .trace
        .unwrap();
    let b = info(&call(&r, get("/", "example.com")).await)
        .trace
        .unwrap();
    assert_ne!(a.trace_id(), b.trace_id());
    v1.shutdown().await;
}

#[tokio::test]
async fn trace_context_can_be_turned_off() {
    let v1 = echo("v1").await;
    let yaml = format!(
        "{GATEWAY}{}{}",
        service("v1", &[addr(&v1)], None),
        route("  rules: [{backendRefs: [{name: v1, port: 8080}]}]")
    );
    let r = Router::new(RouterConfig::default().with_trace_context(false));
    r.swap(routes(&yaml));
    let request = req("GET", "/", "example.com")
        .header("traceparent", "not-a-traceparent")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = call(&r, request).await;
    assert!(info(&resp).trace.is_none());
    let (_, json) = echoed(resp).await;
    assert_eq!(
        echoed_header(&json, "Traceparent").as_deref(),
        Some("not-a-traceparent")
    );
    v1.shutdown().await;
}
