use std::sync::Arc;

use http::{Request, Response, StatusCode};
use tower::{Layer, ServiceExt, service_fn};

use super::*;
use crate::jwt::JwtClaims;
use crate::testing::{backend, calls, send};
use crate::{ClientAddr, TlsPeer};

/// A backend that answers with the request's URI as body and its headers as response headers.
fn echo() -> impl tower::Service<
    Request<String>,
    Response = Response<String>,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    service_fn(|req: Request<String>| async move {
        let mut resp = Response::new(req.uri().to_string());
        *resp.headers_mut() = req.headers().clone();
        Ok(resp)
    })
}

#[test]
fn bad_expressions_and_names_are_compile_errors() {
    let err = TransformConfig::new()
        .set_request_header("x-user", "jwt.sub +")
        .compile()
        .unwrap_err();
    let TransformError::Expression {
        field, expression, ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(field, "requestHeaders.set[x-user]");
    assert_eq!(expression, "jwt.sub +");
    assert!(err.to_string().contains("requestHeaders.set[x-user]"));

    assert!(matches!(
        TransformConfig::new().rewrite_path("(").compile(),
        Err(TransformError::Expression { field, .. }) if field == "path"
    ));
    assert_eq!(
        TransformConfig::new()
            .remove_response_header("bad name")
            .compile()
            .unwrap_err(),
        TransformError::InvalidHeaderName {
            name: "bad name".into()
        }
    );
    assert!(matches!(
        TransformConfig::new()
            .add_request_header("x-code", "string(response.code)")
            .compile(),
        Err(TransformError::ResponseInRequest { .. })
    ));
    // The same expression is fine on the response side.
    TransformConfig::new()
        .add_response_header("x-code", "string(response.code)")
        .compile()
        .unwrap();
}

#[tokio::test]
async fn set_add_remove_from_request_attributes() {
    let config = TransformConfig::new()
        .set_request_header("x-user", "jwt.sub")
        .set_request_header("x-peer", "connection.uri_san_peer_certificate")
        .set_request_header("x-ip", "source.address")
        .add_request_header("x-tag", "request.method.lowerAscii()")
        .set_request_header("x-page", "request.params.page")
        .remove_request_header("authorization")
        .compile()
        .unwrap();
    let svc = TransformLayer::new(config).layer(echo());
    let mut req = Request::post("/a?page=3")
        .header("x-tag", "first")
        .header("authorization", "Bearer t")
        .body(String::new())
        .unwrap();
    req.extensions_mut()
        .insert(JwtClaims(Arc::new(serde_json::json!({"sub": "alice"}))));
    req.extensions_mut()
        .insert(ClientAddr("192.0.2.9:1234".parse().unwrap()));
    req.extensions_mut()
        .insert(TlsPeer::new().uri_san("spiffe://example.com/a"));
    let resp = send(&svc, req).await;
    let h = resp.headers();
    assert_eq!(h["x-user"], "alice");
    assert_eq!(h["x-peer"], "spiffe://example.com/a");
    assert_eq!(h["x-ip"], "192.0.2.9");
    assert_eq!(h["x-page"], "3");
    let tags: Vec<_> = h.get_all("x-tag").iter().collect();
    assert_eq!(tags, ["first", "post"]);
    assert!(h.get("authorization").is_none());
}

#[tokio::test]
async fn expressions_see_the_request_as_it_arrived() {
    // `set` of x-a does not feed the expression of x-b.
    let config = TransformConfig::new()
        .set_request_header("x-a", "'new'")
        .set_request_header("x-b", "request.headers['x-a']")
        .compile()
        .unwrap();
    let svc = TransformLayer::new(config).layer(echo());
    let req = Request::get("/")
        .header("x-a", "old")
        .body(String::new())
        .unwrap();
    let resp = send(&svc, req).await;
    assert_eq!(resp.headers()["x-a"], "new");
    assert_eq!(resp.headers()["x-b"], "old");
}

#[tokio::test]
async fn failing_header_expressions_skip_the_header_only() {
    let config = TransformConfig::new()
        // No token: `jwt.sub` is a missing key.
        .set_request_header("x-user", "jwt.sub")
        .set_request_header("x-list", "[1, 2]")
        .set_request_header("x-null", "null")
        .set_request_header("x-ok", "1 + 1")
        .compile()
        .unwrap();
    let svc = TransformLayer::new(config).layer(echo());
    let resp = send(&svc, Request::new(String::new())).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get("x-user").is_none());
    assert!(resp.headers().get("x-list").is_none());
    assert!(resp.headers().get("x-null").is_none());
    assert_eq!(resp.headers()["x-ok"], "2");
}

#[tokio::test]
async fn path_rewrite_keeps_the_query() {
    let config = TransformConfig::new()
        .rewrite_path(
            "request.path.startsWith('/old/') ? '/new/' + request.path.substring(5) : null",
        )
        .compile()
        .unwrap();
    let svc = TransformLayer::new(config).layer(echo());
    let r = send(
        &svc,
        Request::get("/old/x?q=1").body(String::new()).unwrap(),
    )
    .await;
    assert_eq!(r.body(), "/new/x?q=1");
    // null keeps the path.
    let r = send(&svc, Request::get("/other").body(String::new()).unwrap()).await;
    assert_eq!(r.body(), "/other");
}

#[tokio::test]
async fn failing_path_rewrite_is_500_without_calling_the_backend() {
    let (inner, n) = backend();
    for expr in ["jwt.missing", "'no-slash'", "'/a?b=1'", "[1]"] {
        let config = TransformConfig::new().rewrite_path(expr).compile().unwrap();
        let svc = TransformLayer::new(config).layer(inner.clone());
        let r = send(&svc, Request::new(String::new())).await;
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR, "{expr}");
    }
    assert_eq!(calls(&n), 0);
}

#[tokio::test]
async fn response_headers_see_request_and_response() {
    let config = TransformConfig::new()
        .set_response_header("x-served", "request.method + ' ' + string(response.code)")
        .set_response_header("x-len", "response.headers['content-type']")
        .remove_response_header("server")
        .compile()
        .unwrap();
    let inner = service_fn(|_req: Request<String>| async {
        let mut r = Response::new(String::new());
        *r.status_mut() = StatusCode::CREATED;
        r.headers_mut().insert("server", "x".parse().unwrap());
        r.headers_mut()
            .insert("content-type", "text/plain".parse().unwrap());
        Ok::<_, std::convert::Infallible>(r)
    });
    let svc = TransformLayer::new(config).layer(inner);
    let r = svc
        .oneshot(Request::put("/").body(String::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(r.headers()["x-served"], "PUT 201");
    assert_eq!(r.headers()["x-len"], "text/plain");
    assert!(r.headers().get("server").is_none());
}
