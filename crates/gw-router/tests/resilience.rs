//! Session persistence (GEP-1619), retry budgets (GEP-3388) and outlier detection in the
//! router, against echo backends.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;

use common::{GATEWAY, addr, call, echo, echoed, get, req, routes, service, table};
use gw_router::dns::{Resolver, ResolverConfig, StaticLookup, SystemLookup};
use gw_router::{OutlierConfig, Router, RouterConfig, Routes};
use http::StatusCode;

fn split_route(weight_a: u32, weight_b: u32) -> String {
    format!(
        "---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: default}}
spec:
  parentRefs: [{{name: edge}}]
  rules:
  - backendRefs: [{{name: a, port: 8080, weight: {weight_a}}}, {{name: b, port: 8080, weight: {weight_b}}}]
    sessionPersistence: {{sessionName: s}}
"
    )
}

fn cookie_of(parts: &http::response::Parts) -> Option<String> {
    parts
        .headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

// GEP-1619: "When a persistent session is established and traffic splitting is configured
// across services, the persistence to a single backend MUST be maintained across services,
// even if the weight is set to 0." Sessions also survive a reload (same rule, same key).
#[tokio::test]
async fn a_session_outweighs_the_split_even_at_weight_zero() {
    let (a, b) = (echo("a-pod").await, echo("b-pod").await);
    let yaml = |wa, wb| {
        format!(
            "{GATEWAY}{}{}{}",
            service("a", &[addr(&a)], None),
            service("b", &[addr(&b)], None),
            split_route(wa, wb)
        )
    };
    let router = Router::new(RouterConfig::default());
    router.swap(routes(&yaml(0, 1)));
    let (parts, json) = echoed(call(&router, get("/", "e.com")).await).await;
    assert_eq!(json["pod"], "b-pod");
    let cookie = cookie_of(&parts).expect("a session cookie");

    router.swap(routes(&yaml(1, 0)));
    for _ in 0..5 {
        let r = req("GET", "/", "e.com")
            .header("cookie", &cookie)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let (parts, json) = echoed(call(&router, r).await).await;
        assert_eq!(json["pod"], "b-pod", "the session keeps weight-0 backend b");
        assert!(cookie_of(&parts).is_none());
    }
    let (_, json) = echoed(call(&router, get("/", "e.com")).await).await;
    assert_eq!(json["pod"], "a-pod", "new sessions follow the weights");
}

// Sticky endpoints that are ejected are not used: the request is balanced and the session
// moves to the endpoint that answered (GEP-1619: "Data planes MAY fall back to available
// backends, disregarding the broken session").
#[tokio::test]
async fn an_ejected_sticky_endpoint_is_left_for_a_new_one() {
    let first = echo("first").await;
    let port = addr(&first).port();
    // A second pod of the Service on 127.0.0.2, same port.
    let second = gw_echo::EchoServer::start(gw_echo::EchoConfig {
        http: Some(SocketAddr::from(([127, 0, 0, 2], port))),
        ..gw_echo::EchoConfig::loopback_http("second", "default")
    })
    .await
    .unwrap();
    let yaml = format!(
        "{GATEWAY}{}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: default}}
spec:
  parentRefs: [{{name: edge}}]
  rules:
  - backendRefs: [{{name: svc, port: 8080}}]
    sessionPersistence: {{sessionName: s, type: Header}}
",
        service("svc", &[addr(&first), addr(&second)], None)
    );
    let config = RouterConfig::default()
        .with_outlier_detection(OutlierConfig {
            consecutive_failures: 1,
            max_ejection_percent: 50,
            ..OutlierConfig::default()
        })
        .unwrap();
    let router = Router::new(config);
    router.swap(routes(&yaml));
    let with = |token: &http::HeaderValue| {
        req("GET", "/", "e.com")
            .header("s", token.clone())
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    let (parts, json) = echoed(call(&router, get("/", "e.com")).await).await;
    let token = parts.headers.get("s").cloned().expect("a session header");
    let pod = json["pod"].as_str().unwrap().to_owned();
    let (stays, other) = if pod == "first" {
        (first, second)
    } else {
        (second, first)
    };
    let (_, json) = echoed(call(&router, with(&token)).await).await;
    assert_eq!(json["pod"], pod.as_str());

    // The session's pod goes away: one failure ejects it.
    stays.shutdown().await;
    assert_eq!(
        call(&router, with(&token)).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let (parts, json) = echoed(call(&router, with(&token)).await).await;
    assert_ne!(json["pod"], pod.as_str(), "the ejected endpoint is left");
    let moved = parts.headers.get("s").cloned().expect("a new session");
    assert_ne!(moved, token);
    let (_, again) = echoed(call(&router, with(&moved)).await).await;
    assert_eq!(again["pod"], json["pod"]);
    other.shutdown().await;
}

/// An XBackend `default/ext` reaching `ext.test:{port}`, a route to it, and an
/// XBackendTrafficPolicy on it with `spec`.
fn external_backend(port: u16, spec: &str) -> String {
    format!(
        "{GATEWAY}---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackend
metadata: {{name: ext, namespace: default}}
spec:
  type: ExternalHostname
  externalHostname: {{hostname: ext.test}}
  port: {{port: {port}}}
  protocol: HTTP
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: default}}
spec:
  parentRefs: [{{name: edge}}]
  rules:
  - backendRefs: [{{group: gateway.networking.x-k8s.io, kind: XBackend, name: ext}}]
---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: {{name: p, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.x-k8s.io, kind: XBackend, name: ext}}]
{spec}
"
    )
}

// GEP-1619 through an XBackendTrafficPolicy on an XBackend: a session sticks to one address
// of the external name (its DNS answer has two), while requests without a session are
// balanced over both.
#[tokio::test]
async fn a_session_sticks_to_one_address_of_an_external_backend() {
    let first = gw_echo::EchoServer::start(gw_echo::EchoConfig {
        http: Some(SocketAddr::from(([127, 0, 93, 1], 0))),
        ..gw_echo::EchoConfig::loopback_http("first", "default")
    })
    .await
    .unwrap();
    let port = addr(&first).port();
    let second = gw_echo::EchoServer::start(gw_echo::EchoConfig {
        http: Some(SocketAddr::from(([127, 0, 93, 2], port))),
        ..gw_echo::EchoConfig::loopback_http("second", "default")
    })
    .await
    .unwrap();
    let lookup = StaticLookup::new(SystemLookup).with(
        "ext.test",
        ["127.0.93.1".parse().unwrap(), "127.0.93.2".parse().unwrap()],
    );
    let resolver = Resolver::with_lookup(lookup, ResolverConfig::default());
    let yaml = external_backend(
        port,
        "  sessionPersistence: {sessionName: s, type: Header}\n  retryConstraint: {budget: {percent: 20}}",
    );
    let router = Router::new(RouterConfig::default());
    router.swap(Routes::build_with(&table(&yaml), &resolver));

    let mut pods = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let (_, json) = echoed(call(&router, get("/", "e.com")).await).await;
        pods.insert(json["pod"].as_str().unwrap().to_owned());
    }
    assert_eq!(pods.len(), 2, "without a session both addresses answer");

    let (parts, json) = echoed(call(&router, get("/", "e.com")).await).await;
    let token = parts.headers.get("s").cloned().expect("a session header");
    let pod = json["pod"].as_str().unwrap().to_owned();
    for _ in 0..6 {
        let r = req("GET", "/", "e.com")
            .header("s", token.clone())
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let (parts, json) = echoed(call(&router, r).await).await;
        assert_eq!(json["pod"], pod.as_str(), "the session keeps its address");
        assert!(parts.headers.get("s").is_none(), "no new session is issued");
    }
    first.shutdown().await;
    second.shutdown().await;
}
