#![allow(clippy::type_complexity)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full};
use tower::{BoxError, Layer, Service, ServiceExt, service_fn};

use super::*;
use crate::{ClientAddr, TlsPeer};

type Seen = Arc<Mutex<Vec<(http::request::Parts, Bytes)>>>;

/// The upstream: echoes the request headers as response headers and its body, and counts.
fn upstream() -> (
    impl Service<
        Request<RequestBody<Full<Bytes>>>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future = impl Send,
    > + Clone
    + Send
    + 'static,
    Seen,
) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let svc = service_fn(move |req: Request<RequestBody<Full<Bytes>>>| {
        let s = s.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let mut resp = Response::new(Full::new(body.clone()));
            *resp.headers_mut() = parts.headers.clone();
            s.lock().unwrap().push((parts, body));
            Ok::<_, Infallible>(resp)
        }
    });
    (svc, seen)
}

/// An HTTP auth service answering `answer` and recording what it got.
fn http_auth(
    answer: impl Fn() -> Response<Full<Bytes>> + Clone + Send + Sync + 'static,
) -> (
    impl Service<
        Request<AuthBody>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future = impl Send,
    > + Clone
    + Send
    + Sync
    + 'static,
    Seen,
) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let svc = service_fn(move |req: Request<AuthBody>| {
        let (s, answer) = (s.clone(), answer.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            s.lock().unwrap().push((parts, body));
            Ok::<_, Infallible>(answer())
        }
    });
    (svc, seen)
}

async fn body_of<B>(resp: Response<B>) -> (http::response::Parts, Bytes)
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let (parts, body) = resp.into_parts();
    (parts, body.collect().await.unwrap().to_bytes())
}

fn req(uri: &str) -> http::request::Builder {
    Request::get(uri).header("host", "shop.example.com")
}

fn http_config(prefix: &str, allowed: &[&str], allowed_response: &[&str]) -> ExtAuthzConfig {
    let mut c = ExtAuthzConfig::http();
    c.protocol = Protocol::Http {
        path_prefix: prefix.into(),
        allowed_headers: allowed.iter().map(|s| s.to_string()).collect(),
        allowed_response_headers: allowed_response.iter().map(|s| s.to_string()).collect(),
    };
    c
}

#[test]
fn bad_config_is_a_compile_error() {
    use gw_model::resources::{ExternalAuth, ForwardBody};
    let filter = |v: serde_json::Value| -> ExternalAuth { serde_json::from_value(v).unwrap() };
    let base = serde_json::json!({"protocol": "HTTP", "backendRef": {"name": "a", "port": 1}});
    let mut tcp = base.clone();
    tcp["protocol"] = "TCP".into();
    assert_eq!(
        ExtAuthzConfig::from_filter(&filter(tcp)).unwrap_err(),
        ExtAuthzError::UnsupportedProtocol("TCP".into())
    );
    let mut neg = filter(base.clone());
    neg.forward_body = Some(ForwardBody { max_size: -1 });
    assert_eq!(
        ExtAuthzConfig::from_filter(&neg).unwrap_err(),
        ExtAuthzError::NegativeMaxSize(-1)
    );
    for bad in ["auth", "/a?b", "/a b", "/a#x"] {
        assert_eq!(
            http_config(bad, &[], &[]).compile().unwrap_err(),
            ExtAuthzError::InvalidPath(bad.into()),
            "{bad}"
        );
    }
    assert!(matches!(
        http_config("", &["bad name"], &[]).compile(),
        Err(ExtAuthzError::InvalidHeaderName {
            field: "allowedHeaders",
            ..
        })
    ));
    assert!(matches!(
        http_config("", &[], &["x y"]).compile(),
        Err(ExtAuthzError::InvalidHeaderName {
            field: "allowedResponseHeaders",
            ..
        })
    ));
    assert_eq!(
        ExtAuthzConfig::grpc()
            .timeout(Duration::ZERO)
            .compile()
            .unwrap_err(),
        ExtAuthzError::ZeroTimeout
    );
    assert_eq!(
        ExtAuthzConfig::grpc()
            .failure_status(200)
            .compile()
            .unwrap_err(),
        ExtAuthzError::FailureStatus(200)
    );
    // The filter's settings are taken over.
    let mut f = filter(base);
    f.forward_body = Some(ForwardBody { max_size: 16 });
    let c = ExtAuthzConfig::from_filter(&f).unwrap();
    assert_eq!(c.forward_body_max, 16);
    assert_eq!(c.failure_mode, FailureMode::Closed);
    assert_eq!(c.failure_status, 403);
}

/// GEP-1494: "The following headers must always be sent to the authorization server,
/// regardless of this setting: Host, Method, Path, Content-Length, Authorization"; "If this
/// list is empty, then only those headers must be sent"; and the path prefix.
#[tokio::test]
async fn http_request_carries_the_required_and_allowed_headers_only() {
    let (auth, asked) = http_auth(|| Response::new(Full::new(Bytes::new())));
    let config = http_config("/ext/", &["x-allowed"], &[]).compile().unwrap();
    let (up, _) = upstream();
    let svc = ExtAuthzLayer::new(config, auth).layer(up);
    let r = req("/orders/1?x=y")
        .method("POST")
        .header("authorization", "Bearer t")
        .header("x-allowed", "yes")
        .header("x-other", "no")
        .header("content-length", "5")
        .body(Full::new(Bytes::from("hello")))
        .unwrap();
    let resp = svc.oneshot(r).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let asked = asked.lock().unwrap();
    let (p, body) = &asked[0];
    assert_eq!(p.method, "POST");
    assert_eq!(p.uri, "/ext/orders/1?x=y");
    assert_eq!(p.headers["host"], "shop.example.com");
    assert_eq!(p.headers["authorization"], "Bearer t");
    assert_eq!(p.headers["x-allowed"], "yes");
    assert!(p.headers.get("x-other").is_none());
    // "if the forwardBody stanza is unset ... then Content-Length must be 0"
    assert_eq!(p.headers["content-length"], "0");
    assert!(body.is_empty());
    assert!(p.headers.get(PARTIAL_BODY_HEADER).is_none());
}

/// "AllowedResponseHeaders specifies what headers from the authorization response will be
/// copied into the request to the backend."
#[tokio::test]
async fn http_200_copies_allowed_response_headers_onto_the_upstream_request() {
    let answer = || {
        Response::builder()
            .header("x-user", "alice")
            .header("x-unlisted", "1")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let (auth, _) = http_auth(answer);
    let config = http_config("", &[], &["x-user"]).compile().unwrap();
    let (up, seen) = upstream();
    let svc = ExtAuthzLayer::new(config, auth).layer(up);
    let r = req("/")
        .header("x-user", "mallory")
        .body(Full::default())
        .unwrap();
    let (parts, _) = body_of(svc.oneshot(r).await.unwrap()).await;
    assert_eq!(parts.status, StatusCode::OK);
    let seen = seen.lock().unwrap();
    // The client's own x-user is replaced.
    assert_eq!(
        seen[0]
            .0
            .headers
            .get_all("x-user")
            .iter()
            .collect::<Vec<_>>(),
        ["alice"]
    );
    assert!(seen[0].0.headers.get("x-unlisted").is_none());
}

/// "If this list is empty, then all headers from the authorization server except Authority or
/// Host must be copied" (and gw never copies framing headers or the auth body's own).
#[tokio::test]
async fn http_200_with_empty_list_copies_all_but_host_and_framing() {
    let answer = || {
        Response::builder()
            .header("x-user", "alice")
            .header("x-groups", "a")
            .header("x-groups", "b")
            .header("host", "auth.internal")
            .header("content-type", "text/plain")
            .header("content-length", "0")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let (auth, _) = http_auth(answer);
    let config = http_config("", &[], &[]).compile().unwrap();
    let (up, seen) = upstream();
    let svc = ExtAuthzLayer::new(config, auth).layer(up);
    let r = req("/")
        .method("POST")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from("{}")))
        .unwrap();
    let (_, body) = body_of(svc.oneshot(r).await.unwrap()).await;
    assert_eq!(body, "{}");
    let seen = seen.lock().unwrap();
    let h = &seen[0].0.headers;
    assert_eq!(h["x-user"], "alice");
    assert_eq!(h.get_all("x-groups").iter().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(h["host"], "shop.example.com");
    assert_eq!(h["content-type"], "application/json");
    assert!(h.get("content-length").is_none());
}

/// "Any other code is considered an authorization failure": the client gets the auth
/// service's answer (a redirect to sign in) and the backend is not called.
#[tokio::test]
async fn http_denial_goes_to_the_client_as_sent() {
    let answer = || {
        Response::builder()
            .status(StatusCode::FOUND)
            .header("location", "https://login.example.com/?next=%2F")
            .header("set-cookie", "state=abc")
            .header("connection", "close")
            .body(Full::new(Bytes::from("<a href=...>sign in</a>")))
            .unwrap()
    };
    let (auth, _) = http_auth(answer);
    let config = http_config("", &[], &[]).compile().unwrap();
    let (up, seen) = upstream();
    let svc = ExtAuthzLayer::new(config, auth).layer(up);
    let resp = svc
        .oneshot(req("/").body(Full::default()).unwrap())
        .await
        .unwrap();
    assert!(matches!(resp.body(), Either::Right(_)));
    let (parts, body) = body_of(resp).await;
    assert_eq!(parts.status, StatusCode::FOUND);
    assert_eq!(
        parts.headers["location"],
        "https://login.example.com/?next=%2F"
    );
    assert_eq!(parts.headers["set-cookie"], "state=abc");
    assert!(parts.headers.get("connection").is_none());
    assert_eq!(body, "<a href=...>sign in</a>");
    assert!(seen.lock().unwrap().is_empty());
}

/// forwardBody: "the body sent to the authorization server must be truncated to maxSize
/// bytes", and "the Content-Length of the authorization request must be set to the actual
/// number of bytes forwarded". The backend still gets the whole body.
#[tokio::test]
async fn body_is_forwarded_up_to_max_size_and_replayed_whole() {
    let (auth, asked) = http_auth(|| Response::new(Full::new(Bytes::new())));
    let config = http_config("", &[], &[]).forward_body(4).compile().unwrap();
    let (up, seen) = upstream();
    let svc = ExtAuthzLayer::new(config, auth).layer(up);
    let r = req("/")
        .method("PUT")
        .body(Full::new(Bytes::from("abcdefgh")))
        .unwrap();
    svc.clone().oneshot(r).await.unwrap();
    let r = req("/")
        .method("PUT")
        .body(Full::new(Bytes::from("ab")))
        .unwrap();
    svc.oneshot(r).await.unwrap();
    let asked = asked.lock().unwrap();
    assert_eq!(asked[0].1, "abcd");
    assert_eq!(asked[0].0.headers["content-length"], "4");
    assert_eq!(asked[0].0.headers[PARTIAL_BODY_HEADER], "true");
    assert_eq!(asked[1].1, "ab");
    assert_eq!(asked[1].0.headers["content-length"], "2");
    assert_eq!(asked[1].0.headers[PARTIAL_BODY_HEADER], "false");
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].1, "abcdefgh");
    assert_eq!(seen[1].1, "ab");
}

/// An auth service that never answers.
fn hanging() -> impl Service<
    Request<AuthBody>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ Sync
+ 'static {
    service_fn(|_req: Request<AuthBody>| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    })
}

/// "If there is any problem communicating with the external service, this filter MUST fail
/// closed": a slow service gets the failure status at the timeout, not a hung request.
#[tokio::test(start_paused = true)]
async fn slow_auth_service_fails_closed_at_the_timeout() {
    for config in [http_config("", &[], &[]), ExtAuthzConfig::grpc()] {
        let config = config
            .timeout(Duration::from_millis(300))
            .compile()
            .unwrap();
        let (up, seen) = upstream();
        let svc = ExtAuthzLayer::new(config, hanging()).layer(up);
        let start = tokio::time::Instant::now();
        let resp = svc
            .oneshot(req("/").body(Full::default()).unwrap())
            .await
            .unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(300));
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert!(seen.lock().unwrap().is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn fail_open_forwards_unchanged_after_the_timeout() {
    let config = http_config("", &[], &[])
        .timeout(Duration::from_secs(1))
        .failure_mode(FailureMode::Open)
        .compile()
        .unwrap();
    let (up, seen) = upstream();
    let svc = ExtAuthzLayer::new(config, hanging()).layer(up);
    let start = tokio::time::Instant::now();
    let resp = svc
        .oneshot(req("/").body(Full::new(Bytes::from("x"))).unwrap())
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(seen.lock().unwrap()[0].1, "x");
}

#[tokio::test]
async fn unreachable_auth_service_gets_the_failure_status() {
    let down = service_fn(|_req: Request<AuthBody>| async {
        Err::<Response<Full<Bytes>>, BoxError>("connection refused".into())
    });
    for (config, status) in [
        (http_config("", &[], &[]), StatusCode::FORBIDDEN),
        (
            ExtAuthzConfig::grpc().failure_status(503),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
    ] {
        let (up, seen) = upstream();
        let svc = ExtAuthzLayer::new(config.compile().unwrap(), down).layer(up);
        let resp = svc
            .oneshot(req("/").body(Full::default()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), status);
        assert!(seen.lock().unwrap().is_empty());
    }
}

#[tokio::test]
async fn oversized_denial_body_is_a_failure() {
    let (auth, _) = http_auth(|| {
        let mut r = Response::new(Full::new(Bytes::from(vec![b'x'; 100])));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        r
    });
    let config = http_config("", &[], &[])
        .max_response_body(10)
        .compile()
        .unwrap();
    let (up, _) = upstream();
    let svc = ExtAuthzLayer::new(config, auth).layer(up);
    let resp = svc
        .oneshot(req("/").body(Full::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}

/// An in-memory `ext_authz` gRPC server: `decide` answers each `CheckRequest`.
fn grpc_auth(
    decide: impl Fn(proto::CheckRequest) -> Result<proto::CheckResponse, tonic::Status>
    + Clone
    + Send
    + Sync
    + 'static,
) -> impl Service<
    Request<AuthBody>,
    Response = Response<tonic::body::Body>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ Sync
+ 'static {
    #[derive(Clone)]
    struct Check<F>(F);
    impl<F> tonic::server::UnaryService<proto::CheckRequest> for Check<F>
    where
        F: Fn(proto::CheckRequest) -> Result<proto::CheckResponse, tonic::Status>,
    {
        type Response = proto::CheckResponse;
        type Future =
            std::future::Ready<Result<tonic::Response<proto::CheckResponse>, tonic::Status>>;
        fn call(&mut self, req: tonic::Request<proto::CheckRequest>) -> Self::Future {
            std::future::ready((self.0)(req.into_inner()).map(tonic::Response::new))
        }
    }
    service_fn(move |req: Request<AuthBody>| {
        let decide = decide.clone();
        async move {
            assert_eq!(req.uri().path(), proto::CHECK_PATH);
            let codec =
                tonic_prost::ProstCodec::<proto::CheckResponse, proto::CheckRequest>::default();
            let mut grpc = tonic::server::Grpc::new(codec);
            Ok::<_, Infallible>(grpc.unary(Check(decide), req).await)
        }
    })
}

fn ok_status() -> Option<proto::RpcStatus> {
    Some(proto::RpcStatus {
        code: 0,
        message: String::new(),
    })
}

#[tokio::test]
async fn grpc_check_request_and_ok_response_edits() {
    let asked: Arc<Mutex<Vec<proto::CheckRequest>>> = Arc::default();
    let a = asked.clone();
    let auth = grpc_auth(move |check| {
        a.lock().unwrap().push(check);
        Ok(proto::CheckResponse {
            status: ok_status(),
            http_response: Some(proto::HttpResponse::OkResponse(proto::OkHttpResponse {
                headers: vec![
                    proto::HeaderValueOption::overwrite("x-user", "alice"),
                    proto::HeaderValueOption::append("x-tag", "auth"),
                ],
                headers_to_remove: vec!["x-secret".into(), "host".into()],
                response_headers_to_add: vec![proto::HeaderValueOption::overwrite(
                    "x-auth-decision",
                    "allowed",
                )],
            })),
        })
    });
    let mut config = ExtAuthzConfig::grpc();
    config.protocol = Protocol::Grpc {
        allowed_headers: vec!["x-tag".into(), "x-secret".into()],
    };
    let (up, seen) = upstream();
    let svc = ExtAuthzLayer::new(config.compile().unwrap(), auth).layer(up);
    let mut r = req("/orders?id=1")
        .header("x-user", "mallory")
        .header("x-tag", "client")
        .header("x-secret", "s")
        .header("x-unlisted", "u")
        .body(Full::default())
        .unwrap();
    r.extensions_mut()
        .insert(ClientAddr("192.0.2.7:5555".parse().unwrap()));
    r.extensions_mut()
        .insert(TlsPeer::new().uri_san("spiffe://example.com/client"));
    let resp = svc.oneshot(r).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-auth-decision"], "allowed");

    let check = asked.lock().unwrap().remove(0);
    let attrs = check.attributes.unwrap();
    let source = attrs.source.unwrap();
    let addr = source.address.unwrap().socket_address.unwrap();
    assert_eq!(
        (addr.address.as_str(), addr.port_value),
        ("192.0.2.7", 5555)
    );
    assert_eq!(source.principal, "spiffe://example.com/client");
    let http = attrs.request.unwrap().http.unwrap();
    assert_eq!(http.method, "GET");
    assert_eq!(http.path, "/orders?id=1");
    assert_eq!(http.host, "shop.example.com");
    assert_eq!(http.scheme, "https");
    assert_eq!(http.headers["x-tag"], "client");
    assert_eq!(http.headers[":path"], "/orders?id=1");
    assert!(!http.headers.contains_key("x-unlisted"));

    let seen = seen.lock().unwrap();
    let h: &HeaderMap = &seen[0].0.headers;
    assert_eq!(h["x-user"], "alice");
    assert_eq!(
        h.get_all("x-tag").iter().collect::<Vec<_>>(),
        ["client", "auth"]
    );
    assert!(h.get("x-secret").is_none());
    assert_eq!(h["host"], "shop.example.com");
}

#[tokio::test]
async fn grpc_denial_goes_to_the_client_as_sent() {
    let auth = grpc_auth(|_| {
        Ok(proto::CheckResponse {
            status: Some(proto::RpcStatus {
                code: 7,
                message: "denied".into(),
            }),
            http_response: Some(proto::HttpResponse::DeniedResponse(
                proto::DeniedHttpResponse {
                    status: Some(proto::HttpStatus { code: 401 }),
                    headers: vec![proto::HeaderValueOption::overwrite(
                        "www-authenticate",
                        "Bearer realm=\"shop\"",
                    )],
                    body: "no token".into(),
                },
            )),
        })
    });
    let (up, seen) = upstream();
    let svc = ExtAuthzLayer::new(ExtAuthzConfig::grpc().compile().unwrap(), auth).layer(up);
    let (parts, body) = body_of(
        svc.oneshot(req("/").body(Full::default()).unwrap())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(parts.status, StatusCode::UNAUTHORIZED);
    assert_eq!(parts.headers["www-authenticate"], "Bearer realm=\"shop\"");
    assert_eq!(body, "no token");
    assert!(seen.lock().unwrap().is_empty());

    // A denial without a denied_response is 403 (Envoy's default).
    let auth = grpc_auth(|_| {
        Ok(proto::CheckResponse {
            status: Some(proto::RpcStatus {
                code: 16,
                message: String::new(),
            }),
            http_response: None,
        })
    });
    let (up, _) = upstream();
    let svc = ExtAuthzLayer::new(ExtAuthzConfig::grpc().compile().unwrap(), auth).layer(up);
    let resp = svc
        .oneshot(req("/").body(Full::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn grpc_error_status_fails_closed() {
    let auth = grpc_auth(|_| Err(tonic::Status::unavailable("overloaded")));
    let (up, seen) = upstream();
    let svc = ExtAuthzLayer::new(ExtAuthzConfig::grpc().compile().unwrap(), auth).layer(up);
    let resp = svc
        .oneshot(req("/").body(Full::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn grpc_body_forwarding_uses_body_or_raw_body() {
    let asked: Arc<Mutex<Vec<proto::HttpRequest>>> = Arc::default();
    let a = asked.clone();
    let auth = grpc_auth(move |check| {
        let http = check
            .attributes
            .and_then(|a| a.request)
            .and_then(|r| r.http);
        a.lock().unwrap().extend(http);
        Ok(proto::CheckResponse {
            status: ok_status(),
            http_response: None,
        })
    });
    let (up, seen) = upstream();
    let config = ExtAuthzConfig::grpc().forward_body(3).compile().unwrap();
    let svc = ExtAuthzLayer::new(config, auth).layer(up);
    let text = req("/")
        .method("POST")
        .body(Full::new(Bytes::from("hello")))
        .unwrap();
    svc.clone().oneshot(text).await.unwrap();
    let binary = req("/")
        .method("POST")
        .body(Full::new(Bytes::from_static(&[0xff, 0xfe])))
        .unwrap();
    svc.oneshot(binary).await.unwrap();
    let asked = asked.lock().unwrap();
    assert_eq!(asked[0].body, "hel");
    assert_eq!(asked[0].headers[PARTIAL_BODY_HEADER.as_str()], "true");
    assert_eq!(asked[1].raw_body, [0xff, 0xfe]);
    assert_eq!(asked[1].headers[PARTIAL_BODY_HEADER.as_str()], "false");
    assert_eq!(seen.lock().unwrap()[0].1, "hello");
}
