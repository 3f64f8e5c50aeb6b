//! ExternalAuth (GEP-1494) through the router: HTTP and gRPC auth services reached with the
//! router's backend client, the filters around the auth filter, failure modes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use gw_echo::authz::{AuthServer, TOKEN};
use http::StatusCode;

fn route(echo: &str, http_auth: &str, grpc_auth: &str) -> String {
    format!(
        r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: authz, namespace: default}}
spec:
  parentRefs: [{{name: edge}}]
  rules:
  - matches: [{{path: {{value: /http}}}}]
    filters:
    - {{type: RequestHeaderModifier, requestHeaderModifier: {{set: [{{name: x-before, value: "1"}}]}}}}
    - type: ExternalAuth
      externalAuth:
        protocol: HTTP
        backendRef: {{name: {http_auth}, port: 8080}}
        http: {{path: /check, allowedHeaders: [x-before], allowedResponseHeaders: [x-auth-user]}}
    - {{type: URLRewrite, urlRewrite: {{hostname: backend.example.com}}}}
    - {{type: ResponseHeaderModifier, responseHeaderModifier: {{set: [{{name: x-route, value: authz}}]}}}}
    backendRefs: [{{name: {echo}, port: 8080}}]
  - matches: [{{path: {{value: /grpc}}}}]
    filters:
    - type: ExternalAuth
      externalAuth:
        protocol: GRPC
        backendRef: {{name: {grpc_auth}, port: 8080}}
    backendRefs: [{{name: {echo}, port: 8080}}]
  - matches: [{{path: {{value: /down}}}}]
    filters:
    - type: ExternalAuth
      externalAuth: {{protocol: HTTP, backendRef: {{name: no-endpoints, port: 8080}}}}
    backendRefs: [{{name: {echo}, port: 8080}}]
"#
    )
}

async fn setup() -> (
    gw_router::Router,
    gw_echo::EchoServer,
    AuthServer,
    AuthServer,
) {
    let echo = echo("echo").await;
    let http_auth = AuthServer::http().await.unwrap();
    let grpc_auth = AuthServer::grpc().await.unwrap();
    let yaml = format!(
        "{GATEWAY}{}{}{}{}{}",
        service("echo", &[addr(&echo)], None),
        service("auth-http", &[http_auth.addr()], None),
        service("auth-grpc", &[grpc_auth.addr()], None),
        service("no-endpoints", &[], None),
        route("echo", "auth-http", "auth-grpc"),
    );
    (router(&yaml), echo, http_auth, grpc_auth)
}

fn with_token(
    path: &str,
    token: Option<&str>,
) -> http::Request<http_body_util::Empty<bytes::Bytes>> {
    let mut b = req("GET", path, "shop.example.com");
    if let Some(t) = token {
        b = b.header("authorization", t);
    }
    b.body(http_body_util::Empty::new()).unwrap()
}

/// GEP-1494 HTTP: a 200 from the auth service lets the request through with
/// `allowedResponseHeaders` copied onto it; filters before the auth filter apply to what the
/// auth service sees, filters after it (here a URLRewrite) apply afterwards.
#[tokio::test]
async fn http_auth_allows_and_adds_headers() {
    let (r, _echo, http_auth, _) = setup().await;
    let resp = call(&r, with_token("/http?x=1", Some(TOKEN))).await;
    assert_eq!(resp.headers()["x-route"], "authz");
    let (parts, json) = echoed(resp).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(
        echoed_header(&json, "X-Auth-User").as_deref(),
        Some("alice")
    );
    // The URLRewrite after the auth filter applies to the upstream request only.
    assert_eq!(json["host"], "backend.example.com");
    let seen = http_auth.seen();
    assert_eq!(seen.checks, 1);
    assert_eq!(seen.last_path, "/check/http?x=1");
    let h = |n: &str| {
        seen.last_headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(h("x-before"), Some("1"));
    assert_eq!(h("host"), Some("shop.example.com"));
    assert_eq!(h("content-length"), Some("0"));
}

/// "Any other code is considered an authorization failure": the auth service's redirect to
/// its sign-in page reaches the client, and the backend is not called.
#[tokio::test]
async fn http_auth_denial_is_passed_to_the_client() {
    let (r, echo, _http_auth, _) = setup().await;
    let resp = call(&r, with_token("/http", None)).await;
    let (parts, body) = body(resp).await;
    assert_eq!(parts.status, StatusCode::FOUND);
    assert_eq!(
        parts.headers["location"],
        "https://login.example.com/signin"
    );
    assert_eq!(parts.headers["set-cookie"], "auth_state=1");
    assert_eq!(parts.headers["x-route"], "authz");
    assert_eq!(body, "sign in first");
    assert!(echo.log().is_empty(), "the backend must not be called");
}

/// The gRPC `ext_authz` protocol over h2c: OK adds the upstream and response headers; a
/// denial's status, headers and body reach the client.
#[tokio::test]
async fn grpc_auth_allows_and_denies() {
    let (r, _echo, _, grpc_auth) = setup().await;
    let resp = call(&r, with_token("/grpc/orders", Some(TOKEN))).await;
    assert_eq!(resp.headers()["x-auth-checked"], "grpc");
    let (parts, json) = echoed(resp).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(
        echoed_header(&json, "X-Auth-User").as_deref(),
        Some("alice")
    );
    let seen = grpc_auth.seen();
    assert_eq!(seen.last_path, "/grpc/orders");
    let h = |n: &str| {
        seen.last_headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(h(":authority").as_deref(), Some("shop.example.com"));
    assert_eq!(h("authorization").as_deref(), Some(TOKEN));

    let (parts, body) = body(call(&r, with_token("/grpc", Some("Bearer wrong"))).await).await;
    assert_eq!(parts.status, StatusCode::UNAUTHORIZED);
    assert_eq!(parts.headers["www-authenticate"], "Bearer realm=\"gw\"");
    assert_eq!(body, "token required");
    assert_eq!(grpc_auth.seen().checks, 2);
}

/// "If there is any problem communicating with the external service, this filter MUST fail
/// closed": an auth Service without endpoints, or a stopped auth server, is 403.
#[tokio::test]
async fn unreachable_auth_service_fails_closed() {
    let (r, echo, http_auth, _) = setup().await;
    let resp = call(&r, with_token("/down", Some(TOKEN))).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    http_auth.stop().await;
    let resp = call(&r, with_token("/http", Some(TOKEN))).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(echo.log().is_empty());
}
