//! The Router's request normalization end to end: the canonical path is the one matched and
//! the one forwarded; ambiguous hosts and encoded separators are refused or redirected.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{GATEWAY, addr, call, echo, echoed, get, routes, service};
use gw_router::normalize::{PathPolicy, SlashAction};
use gw_router::{Router, RouterConfig};
use http::StatusCode;

fn config(public: &gw_echo::EchoServer, admin: &gw_echo::EchoServer) -> String {
    format!(
        "{GATEWAY}{}{}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: default}}
spec:
  parentRefs: [{{name: edge}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /public}}}}]
    backendRefs: [{{name: public, port: 8080}}]
  - matches: [{{path: {{type: Exact, value: /admin}}}}]
    backendRefs: [{{name: admin, port: 8080}}]
",
        service("public", &[addr(public)], None),
        service("admin", &[addr(admin)], None),
    )
}

fn router_with(yaml: &str, policy: PathPolicy) -> Router {
    let r = Router::new(RouterConfig::default().with_path_policy(policy));
    r.swap(routes(yaml));
    r
}

/// (status, pod, forwarded path) of `GET path` with Host `host`.
async fn send(r: &Router, path: &str) -> (StatusCode, String, String) {
    let resp = call(r, get(path, "example.com")).await;
    if resp.status() != StatusCode::OK {
        return (resp.status(), String::new(), String::new());
    }
    let (parts, json) = echoed(resp).await;
    let pod = json["pod"].as_str().unwrap_or_default().to_owned();
    let path = json["path"].as_str().unwrap_or_default().to_owned();
    (parts.status, pod, path)
}

#[tokio::test]
async fn the_canonical_path_is_matched_and_forwarded() {
    let (public, admin) = (echo("public-1").await, echo("admin-1").await);
    let r = router_with(&config(&public, &admin), PathPolicy::default());
    for (path, pod, forwarded) in [
        ("/public/x", "public-1", "/public/x"),
        ("/public/../admin", "admin-1", "/admin"),
        ("/public/%2e%2e/admin", "admin-1", "/admin"),
        ("/public/%2E%2e/./admin", "admin-1", "/admin"),
        ("//admin", "admin-1", "/admin"),
        ("/%61dmin?next=%2F..", "admin-1", "/admin?next=%2F.."),
        (
            "/public//a/%7euser/b%3a",
            "public-1",
            "/public/a/~user/b%3A",
        ),
    ] {
        let got = send(&r, path).await;
        assert_eq!(
            got,
            (StatusCode::OK, pod.to_owned(), forwarded.to_owned()),
            "{path}"
        );
    }
    // Encoded slashes and backslashes: 400 by default, never decoded.
    for path in [
        "/public/%2F..%2Fadmin",
        "/public/%2f",
        "/public/%5C..%5Cadmin",
        "/public\\..\\admin",
        "/public/%zz",
    ] {
        assert_eq!(send(&r, path).await.0, StatusCode::BAD_REQUEST, "{path}");
    }
    public.shutdown().await;
    admin.shutdown().await;
}

#[tokio::test]
async fn encoded_slashes_can_be_redirected_or_kept() {
    let (public, admin) = (echo("public-1").await, echo("admin-1").await);
    let yaml = config(&public, &admin);
    let redirect = router_with(
        &yaml,
        PathPolicy::default()
            .with_encoded_slash(SlashAction::Redirect)
            .with_backslash(SlashAction::Redirect),
    );
    for (path, location) in [
        ("/public/%2F..%2Fadmin?a=1", "/admin?a=1"),
        ("/public\\x", "/public/x"),
    ] {
        let resp = call(&redirect, get(path, "example.com")).await;
        assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT, "{path}");
        assert_eq!(resp.headers()["location"], location, "{path}");
    }
    let keep = router_with(
        &yaml,
        PathPolicy::default()
            .with_encoded_slash(SlashAction::Keep)
            .with_merge_slashes(false),
    );
    // Kept encoded: part of a segment, forwarded as sent (hex digits uppercased).
    assert_eq!(
        send(&keep, "/public/a%2fb").await,
        (
            StatusCode::OK,
            "public-1".to_owned(),
            "/public/a%2Fb".to_owned()
        )
    );
    assert_eq!(send(&keep, "//admin").await.0, StatusCode::NOT_FOUND);
    public.shutdown().await;
    admin.shutdown().await;
}

#[tokio::test]
async fn host_rules() {
    let (public, admin) = (echo("public-1").await, echo("admin-1").await);
    let r = router_with(&config(&public, &admin), PathPolicy::default());
    // Two Host headers: 400 (RFC 9112 3.2).
    let req = common::req("GET", "/public", "example.com")
        .header("host", "other.example")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    assert_eq!(call(&r, req).await.status(), StatusCode::BAD_REQUEST);
    // Absolute form wins over Host (RFC 9112 3.2.2) and is forwarded as Host.
    let req = common::req("GET", "http://Abs.Example:80/public", "ignored.example")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let (parts, json) = echoed(call(&r, req).await).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(json["host"], "Abs.Example:80");
    // HTTP/2: Host must agree with :authority (RFC 9113 8.3.1).
    let h2 = |host: &str| {
        common::req("GET", "http://a.example/public", host)
            .version(http::Version::HTTP_2)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    assert_eq!(call(&r, h2("A.example")).await.status(), StatusCode::OK);
    assert_eq!(
        call(&r, h2("b.example")).await.status(),
        StatusCode::BAD_REQUEST
    );
    // Userinfo and malformed hosts: 400.
    for host in ["user@example.com", "exa mple.com", "example.com:x"] {
        let req = common::req("GET", "/public", "x")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map(|mut req| {
                req.headers_mut()
                    .insert("host", http::HeaderValue::from_str(host).unwrap());
                req
            })
            .unwrap();
        assert_eq!(
            call(&r, req).await.status(),
            StatusCode::BAD_REQUEST,
            "{host}"
        );
    }
    public.shutdown().await;
    admin.shutdown().await;
}
