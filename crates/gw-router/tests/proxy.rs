//! Forwarding through the Router to in-process echo backends.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{GATEWAY, addr, call, echo, echoed, echoed_header, get, router, service};
use gw_router::{Router, RouterConfig};
use http::StatusCode;

fn route(body: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: default}}\nspec:\n  parentRefs: [{{name: edge}}]\n{body}\n"
    )
}

#[tokio::test]
async fn forwards_with_host_path_and_forwarded_headers() {
    let v1 = echo("infra-backend-v1-abc").await;
    let yaml = format!(
        "{GATEWAY}{}{}",
        service("v1", &[addr(&v1)], None),
        route("  rules: [{backendRefs: [{name: v1, port: 8080}]}]")
    );
    let r = router(&yaml);
    let resp = call(&r, get("/some/path?x=1", "Example.com:80")).await;
    let (parts, json) = echoed(resp).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(json["path"], "/some/path?x=1");
    assert_eq!(json["host"], "Example.com:80");
    assert_eq!(json["method"], "GET");
    assert!(
        json["pod"]
            .as_str()
            .unwrap()
            .starts_with("infra-backend-v1")
    );
    assert_eq!(
        echoed_header(&json, "X-Forwarded-For").as_deref(),
        Some("192.0.2.1")
    );
    assert_eq!(
        echoed_header(&json, "X-Forwarded-Proto").as_deref(),
        Some("http")
    );
    // A client's X-Forwarded-For gets the peer appended to its first value, and the field
    // reaches the backend once.
    let mut req = get("/", "example.com");
    req.headers_mut()
        .append("x-forwarded-for", "203.0.113.7".parse().unwrap());
    req.headers_mut()
        .append("x-forwarded-for", "198.51.100.9".parse().unwrap());
    let (_, json) = echoed(call(&r, req).await).await;
    assert_eq!(
        echoed_header(&json, "X-Forwarded-For").as_deref(),
        Some("203.0.113.7, 192.0.2.1")
    );
    v1.shutdown().await;
}

// Conformance HTTPRouteRewriteHost case 3 and HTTPRouteRequestHeaderModifier /
// HTTPRouteResponseHeaderModifier: set overwrites, add appends, remove removes.
#[tokio::test]
async fn header_modifiers_and_url_rewrite() {
    let v1 = echo("infra-backend-v1").await;
    let yaml = format!(
        "{GATEWAY}{}{}",
        service("v1", &[addr(&v1)], None),
        route(
            r#"  rules:
  - matches: [{path: {type: PathPrefix, value: /rewrite-host-and-modify-headers}}]
    filters:
    - type: URLRewrite
      urlRewrite: {hostname: test.example.org}
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: X-Header-Set, value: set-overwrites-values}]
        add: [{name: X-Header-Add, value: header-val-1}, {name: X-Header-Add-Append, value: header-val-2}]
        remove: [X-Header-Remove]
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set: [{name: X-Resp-Set, value: one}]
        add: [{name: X-Resp-Add, value: two}]
        remove: [X-Content-Type-Options]
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /prefix/one}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /one}}}]
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /strip-prefix}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /full/one}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /one}}}]
    backendRefs: [{name: v1, port: 8080}]"#
        )
    );
    let r = router(&yaml);
    let req = common::req("GET", "/rewrite-host-and-modify-headers", "rewrite.example")
        .header("X-Header-Remove", "remove-val")
        .header("X-Header-Add-Append", "append-val-1")
        .header("X-Header-Set", "original")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let (parts, json) = echoed(call(&r, req).await).await;
    assert_eq!(json["host"], "test.example.org");
    assert_eq!(json["path"], "/rewrite-host-and-modify-headers");
    assert_eq!(
        echoed_header(&json, "X-Header-Add").as_deref(),
        Some("header-val-1")
    );
    assert_eq!(
        echoed_header(&json, "X-Header-Add-Append").as_deref(),
        Some("append-val-1,header-val-2")
    );
    assert_eq!(
        echoed_header(&json, "X-Header-Set").as_deref(),
        Some("set-overwrites-values")
    );
    assert_eq!(echoed_header(&json, "X-Header-Remove"), None);
    assert_eq!(parts.headers["x-resp-set"], "one");
    assert_eq!(parts.headers["x-resp-add"], "two");
    assert!(parts.headers.get("x-content-type-options").is_none());

    for (path, want) in [
        ("/prefix/one/two?q=1", "/one/two?q=1"),
        ("/prefix/one", "/one"),
        ("/strip-prefix/three", "/three"),
        ("/strip-prefix", "/"),
        ("/full/one/two", "/one"),
    ] {
        let (_, json) = echoed(call(&r, get(path, "rewrite.example")).await).await;
        assert_eq!(json["path"], want, "{path}");
    }
    v1.shutdown().await;
}

// HTTPRouteWeight: 70/30/0. Weight 0 is never chosen; the split is roughly the weights.
#[tokio::test]
async fn weighted_backends() {
    let (v1, v2, v3) = (
        echo("v1-pod").await,
        echo("v2-pod").await,
        echo("v3-pod").await,
    );
    let yaml = format!(
        "{GATEWAY}{}{}{}{}",
        service("v1", &[addr(&v1)], None),
        service("v2", &[addr(&v2)], None),
        service("v3", &[addr(&v3)], None),
        route(
            "  rules: [{backendRefs: [{name: v1, port: 8080, weight: 70}, {name: v2, port: 8080, weight: 30}, {name: v3, port: 8080, weight: 0}]}]"
        )
    );
    let r = router(&yaml);
    let mut counts = [0usize; 3];
    for _ in 0..300 {
        let (_, json) = echoed(call(&r, get("/", "example.com")).await).await;
        let pod = json["pod"].as_str().unwrap();
        counts[usize::from(pod.as_bytes()[1] - b'1')] += 1;
    }
    assert_eq!(counts[2], 0, "weight 0 is never chosen: {counts:?}");
    // Binomial(300, 0.7): mean 210, sd ~8; these bounds are > 7 sd away.
    assert!((150..=270).contains(&counts[0]), "{counts:?}");
    for e in [v1, v2, v3] {
        e.shutdown().await;
    }
}

// "When a backendRef is invalid, 500 status codes MUST be returned for requests that would have
// otherwise been routed to an invalid backend" — in proportion to its weight.
#[tokio::test]
async fn invalid_backend_share_is_500_and_no_endpoints_is_503() {
    let v1 = echo("v1").await;
    let yaml = format!(
        "{GATEWAY}{}{}{}",
        service("v1", &[addr(&v1)], None),
        service("empty", &[], None),
        route(
            r#"  rules:
  - matches: [{path: {value: /half}}]
    backendRefs: [{name: v1, port: 8080}, {name: does-not-exist, port: 8080}]
  - matches: [{path: {value: /empty}}]
    backendRefs: [{name: empty, port: 8080}]
  - matches: [{path: {value: /none}}]
  - matches: [{path: {value: /zero}}]
    backendRefs: [{name: v1, port: 8080, weight: 0}]"#
        )
    );
    let r = router(&yaml);
    let (mut ok, mut err) = (0, 0);
    for _ in 0..100 {
        match call(&r, get("/half", "example.com")).await.status() {
            StatusCode::OK => ok += 1,
            StatusCode::INTERNAL_SERVER_ERROR => err += 1,
            s => panic!("unexpected {s}"),
        }
    }
    assert!(ok > 0 && err > 0, "ok {ok}, 500 {err}");
    assert_eq!(
        call(&r, get("/empty", "e.com")).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        call(&r, get("/none", "e.com")).await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        call(&r, get("/zero", "e.com")).await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        call(&r, get("/nothing", "e.com")).await.status(),
        StatusCode::NOT_FOUND
    );
    let no_incoming = http::Request::get("/half")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    assert_eq!(call(&r, no_incoming).await.status(), StatusCode::NOT_FOUND);
    v1.shutdown().await;
}

#[tokio::test]
async fn grpc_no_route_is_unimplemented_trailers_only() {
    let r = router(GATEWAY);
    let req = common::req("POST", "/pkg.Svc/Method", "example.com")
        .header("content-type", "application/grpc")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = call(&r, req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["grpc-status"], "12");
}

// HTTPRouteRetry (echo's /retry simulator): retried on listed codes up to `attempts` times.
#[tokio::test]
async fn retries_on_listed_codes() {
    let v3 = echo("infra-backend-v3").await;
    let yaml = format!(
        "{GATEWAY}{}{}",
        service("v3", &[addr(&v3)], None),
        route(
            r#"  rules:
  - matches: [{path: {value: /retry/code-500-attempts-3}}]
    retry: {codes: [500], attempts: 3, backoff: 1ms}
    backendRefs: [{name: v3, port: 8080}]
  - matches: [{path: {value: /retry/code-all-attempts-2}}]
    retry: {codes: [500, 502, 503, 504], attempts: 2, backoff: 1ms}
    backendRefs: [{name: v3, port: 8080}]"#
        )
    );
    let r = router(&yaml);
    for (i, (path, code, after, want)) in [
        ("/retry/code-500-attempts-3", 500, 2, 200),
        ("/retry/code-500-attempts-3", 500, 4, 500),
        ("/retry/code-500-attempts-3", 503, 2, 503),
        ("/retry/code-all-attempts-2", 500, 1, 200),
        ("/retry/code-all-attempts-2", 502, 3, 502),
        ("/retry/code-all-attempts-2", 504, 1, 200),
    ]
    .into_iter()
    .enumerate()
    {
        let uri = format!("{path}?responseCode={code}&succeedAfter={after}&uuid=u{i}");
        let resp = call(&r, get(&uri, "example.com")).await;
        assert_eq!(resp.status().as_u16(), want, "{uri}");
    }
    v3.shutdown().await;
}

// GEP-1731: connection errors are retried too; endpoints are used round-robin, so the retry
// after the dead endpoint reaches the live one.
#[tokio::test]
async fn retries_connection_errors_on_the_next_endpoint() {
    let v1 = echo("v1").await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
        l.local_addr().unwrap()
    };
    let live = addr(&v1);
    // Same port on both IPs: the EndpointSlice has one port.
    let dead = std::net::SocketAddr::new(dead.ip(), live.port());
    let yaml = format!(
        "{GATEWAY}{}{}",
        service("v1", &[dead, live], None),
        route(
            "  rules: [{retry: {attempts: 1, backoff: 1ms}, backendRefs: [{name: v1, port: 8080}]}]"
        )
    );
    let r = router(&yaml);
    for _ in 0..4 {
        assert_eq!(
            call(&r, get("/", "example.com")).await.status(),
            StatusCode::OK
        );
    }
    v1.shutdown().await;
}

// HTTPRouteRequestMirror: the mirror backend receives a copy; the client gets the main one.
#[tokio::test]
async fn request_mirror() {
    let (v1, v2) = (echo("v1").await, echo("v2").await);
    let yaml = format!(
        "{GATEWAY}{}{}{}",
        service("v1", &[addr(&v1)], None),
        service("v2", &[addr(&v2)], None),
        route(
            r#"  rules:
  - filters: [{type: RequestMirror, requestMirror: {backendRef: {name: v2, port: 8080}}}]
    backendRefs: [{name: v1, port: 8080}]"#
        )
    );
    let r = router(&yaml);
    let (_, json) = echoed(call(&r, get("/mirror?id=1", "example.com")).await).await;
    assert_eq!(json["pod"], "v1");
    let seen = v2
        .log()
        .wait_for_containing(
            "Echoing back request made to /mirror?id=1 to client",
            1,
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(seen, 1);
    v1.shutdown().await;
    v2.shutdown().await;
}

// HTTPRouteCORS actual requests: allowed origins get the CORS headers, others do not.
#[tokio::test]
async fn cors_actual_requests() {
    let v1 = echo("v1").await;
    let yaml = format!(
        "{GATEWAY}{}{}",
        service("v1", &[addr(&v1)], None),
        route(
            r#"  rules:
  - filters:
    - type: CORS
      cors: {allowOrigins: ["https://*.bar.com"], allowCredentials: true, exposeHeaders: [x-header-3]}
    backendRefs: [{name: v1, port: 8080}]"#
        )
    );
    let r = router(&yaml);
    let with_origin = |o: &'static str| {
        common::req("GET", "/cors", "example.com")
            .header("origin", o)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    let resp = call(&r, with_origin("https://www.bar.com")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://www.bar.com"
    );
    assert_eq!(resp.headers()["access-control-allow-credentials"], "true");
    assert_eq!(
        resp.headers()["access-control-expose-headers"],
        "x-header-3"
    );
    let resp = call(&r, with_origin("https://foobar.com")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    v1.shutdown().await;
}

// HTTPRouteBackendProtocolH2C: appProtocol kubernetes.io/h2c speaks HTTP/2 prior knowledge,
// with the request's host as :authority.
#[tokio::test]
async fn h2c_backend() {
    let v1 = echo("v1").await;
    let yaml = format!(
        "{GATEWAY}{}{}",
        service("v1", &[addr(&v1)], Some("kubernetes.io/h2c")),
        route("  rules: [{backendRefs: [{name: v1, port: 8080}]}]")
    );
    let r = router(&yaml);
    for _ in 0..2 {
        let (parts, json) = echoed(call(&r, get("/h2", "example.com")).await).await;
        assert_eq!(parts.status, StatusCode::OK);
        assert_eq!(json["proto"], "HTTP/2.0");
        assert_eq!(json["host"], "example.com");
        assert_eq!(json["path"], "/h2");
    }
    v1.shutdown().await;
}

// Hot swap: new requests see the new table.
#[tokio::test]
async fn swap_replaces_routes() {
    let r = Router::new(RouterConfig::default());
    assert_eq!(
        call(&r, get("/", "example.com")).await.status(),
        StatusCode::NOT_FOUND
    );
    r.swap(common::routes(&format!(
        "{GATEWAY}{}",
        route("  rules: [{}]")
    )));
    assert_eq!(
        call(&r, get("/", "example.com")).await.status(),
        StatusCode::INTERNAL_SERVER_ERROR,
        "matched a rule without backends"
    );
}

// GRPCRoute to a gRPC backend over h2c, trailers passed through (GRPCExactMethodMatching).
#[tokio::test]
async fn grpc_route_to_h2c_backend() {
    let backend = gw_echo::EchoServer::start(gw_echo::EchoConfig {
        mode: gw_echo::EchoMode::Grpc,
        ..gw_echo::EchoConfig::loopback_http("grpc-infra-backend-v1", "default")
    })
    .await
    .unwrap();
    let yaml = format!(
        "{GATEWAY}{}{}",
        service("grpc", &[addr(&backend)], Some("kubernetes.io/h2c")),
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g, namespace: default}
spec:
  parentRefs: [{name: edge}]
  rules:
  - matches: [{method: {service: gateway_api_conformance.echo_basic.grpcecho.GrpcEcho, method: Echo}}]
    backendRefs: [{name: grpc, port: 8080}]
"#
    );
    let r = router(&yaml);
    let call_grpc = |method: &str| {
        common::req(
            "POST",
            &format!("/gateway_api_conformance.echo_basic.grpcecho.GrpcEcho/{method}"),
            "example.com",
        )
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(&[
            0, 0, 0, 0, 0,
        ])))
        .unwrap()
    };
    let resp = call(&r, call_grpc("Echo")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let collected = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    assert_eq!(
        trailers.get("grpc-status").map(|v| v.to_str().unwrap()),
        Some("0")
    );
    assert!(collected.to_bytes().len() > 5, "a reply message");
    // No GRPCRoute rule for EchoTwo: UNIMPLEMENTED from the gateway.
    let resp = call(&r, call_grpc("EchoTwo")).await;
    assert_eq!(resp.headers()["grpc-status"], "12");
    backend.shutdown().await;
}
