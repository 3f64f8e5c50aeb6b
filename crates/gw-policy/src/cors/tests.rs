use gw_model::resources::Cors;
use http::{HeaderMap, Method, Request, StatusCode};

use tower::Layer;

use super::*;
use crate::testing::{backend, calls, send};

fn spec(origins: &[&str]) -> Cors {
    Cors {
        allow_origins: origins.iter().map(|s| s.to_string()).collect(),
        allow_methods: vec!["GET".into(), "OPTIONS".into()],
        ..Cors::default()
    }
}

fn policy(origins: &[&str]) -> CompiledCors {
    CompiledCors::new(&spec(origins)).unwrap()
}

/// The `cors-multiple-origins-methods-headers` route of the HTTPRouteCORS conformance test.
fn conformance_policy() -> CompiledCors {
    CompiledCors::new(&Cors {
        allow_origins: vec!["https://www.foo.com".into(), "https://*.bar.com".into()],
        allow_methods: vec!["GET".into(), "OPTIONS".into()],
        allow_headers: vec!["x-header-1".into(), "x-header-2".into()],
        expose_headers: vec!["x-header-3".into(), "x-header-4".into()],
        allow_credentials: Some(true),
        max_age: 3600,
    })
    .unwrap()
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}

// "`*` is a greedy match to the _left_, including any number of DNS labels"; "if not
// included, port `80` is assumed for `http` scheme origins, and port `443` ... `https`".
#[test]
fn origin_wildcards_and_default_ports() {
    let p = policy(&[
        "https://www.foo.com",
        "https://*.bar.com",
        "http://x.com:8080",
    ]);
    assert!(p.allows_origin("https://www.foo.com"));
    assert!(p.allows_origin("https://www.foo.com:443"));
    assert!(!p.allows_origin("http://www.foo.com"));
    assert!(p.allows_origin("https://www.bar.com"));
    assert!(p.allows_origin("https://xpto.www.bar.com"));
    assert!(!p.allows_origin("https://bar.com"));
    assert!(!p.allows_origin("https://foobar.com"));
    assert!(p.allows_origin("http://x.com:8080"));
    assert!(!p.allows_origin("http://x.com"));
    assert!(!p.allows_origin("null"));
    assert!(policy(&["*"]).allows_origin("https://foobar.com:12345"));
}

#[test]
fn invalid_config_is_a_compile_error() {
    assert_eq!(
        CompiledCors::new(&spec(&["www.foo.com"])).unwrap_err(),
        CorsError::InvalidOrigin {
            origin: "www.foo.com".into()
        }
    );
    let bad = Cors {
        allow_headers: vec!["x\n".into()],
        ..spec(&["*"])
    };
    assert!(matches!(
        CompiledCors::new(&bad),
        Err(CorsError::InvalidList {
            field: "allowHeaders",
            ..
        })
    ));
    assert!(CompiledCors::try_from(&spec(&["https://[::1]:8443"])).is_ok());
}

// Conformance: "CORS preflight request from an exact matching origin should be allowed".
#[test]
fn preflight_from_allowed_origin_gets_every_header() {
    let p = conformance_policy();
    for origin in [
        "https://www.foo.com",
        "https://www.bar.com",
        "https://xpto.www.bar.com",
    ] {
        let h = p
            .preflight(
                &Method::OPTIONS,
                &headers(&[
                    ("origin", origin),
                    ("access-control-request-method", "GET"),
                    ("access-control-request-headers", "x-header-1, x-header-2"),
                ]),
            )
            .unwrap();
        assert_eq!(h["access-control-allow-origin"], origin);
        assert_eq!(h["access-control-allow-methods"], "GET, OPTIONS");
        assert_eq!(h["access-control-allow-headers"], "x-header-1, x-header-2");
        assert_eq!(h["access-control-expose-headers"], "x-header-3, x-header-4");
        assert_eq!(h["access-control-max-age"], "3600");
        assert_eq!(h["access-control-allow-credentials"], "true");
    }
}

// Conformance: "CORS preflight request from a non-matching origin should not be allowed"
// (200/204 without the cross-origin headers).
#[test]
fn preflight_from_other_origin_gets_no_cors_headers() {
    let h = conformance_policy()
        .preflight(
            &Method::OPTIONS,
            &headers(&[
                ("origin", "https://foobar.com"),
                ("access-control-request-method", "GET"),
            ]),
        )
        .unwrap();
    assert!(h.get("access-control-allow-origin").is_none());
    assert_eq!(h["vary"], "origin");
}

// GEP-1767: "If the Access-Control-Request-Headers header is not present in the request, the
// gateway must omit the Access-Control-Allow-Headers response header."
#[test]
fn allow_headers_omitted_without_request_headers() {
    let h = conformance_policy()
        .preflight(
            &Method::OPTIONS,
            &headers(&[
                ("origin", "https://www.foo.com"),
                ("access-control-request-method", "GET"),
            ]),
        )
        .unwrap();
    assert!(h.get("access-control-allow-headers").is_none());
}

// Conformance: "CORS preflight request with POST method should be allowed by allowMethods with
// wildcard" and "... wildcard origin containing a port ...".
#[test]
fn wildcards_echo_the_request() {
    let p = CompiledCors::new(&Cors {
        allow_origins: vec!["*".into()],
        allow_methods: vec!["*".into()],
        allow_headers: vec!["*".into()],
        expose_headers: vec!["*".into()],
        max_age: 5,
        ..Cors::default()
    })
    .unwrap();
    let h = p
        .preflight(
            &Method::OPTIONS,
            &headers(&[
                ("origin", "https://foobar.com:12345"),
                ("access-control-request-method", "PUT"),
                ("access-control-request-headers", "x-a"),
            ]),
        )
        .unwrap();
    assert_eq!(h["access-control-allow-origin"], "https://foobar.com:12345");
    assert_eq!(h["access-control-allow-methods"], "PUT");
    assert_eq!(h["access-control-allow-headers"], "x-a");
    assert_eq!(h["access-control-expose-headers"], "*");
    assert_eq!(h["access-control-max-age"], "5");
    assert!(h.get("access-control-allow-credentials").is_none());
}

#[test]
fn expose_wildcard_is_dropped_with_credentials() {
    let p = CompiledCors::new(&Cors {
        allow_credentials: Some(true),
        expose_headers: vec!["*".into()],
        ..spec(&["*"])
    })
    .unwrap();
    let h = p
        .actual(&headers(&[("origin", "https://a.com")]))
        .into_header_map();
    assert!(h.get("access-control-expose-headers").is_none());
    assert_eq!(h["access-control-allow-credentials"], "true");
}

#[test]
fn not_a_preflight() {
    let p = conformance_policy();
    // GET, or OPTIONS without Access-Control-Request-Method, or without Origin.
    assert!(
        p.preflight(
            &Method::GET,
            &headers(&[
                ("origin", "https://www.foo.com"),
                ("access-control-request-method", "GET")
            ])
        )
        .is_none()
    );
    assert!(
        p.preflight(
            &Method::OPTIONS,
            &headers(&[("origin", "https://www.foo.com")])
        )
        .is_none()
    );
    assert!(
        p.preflight(
            &Method::OPTIONS,
            &headers(&[("access-control-request-method", "GET")])
        )
        .is_none()
    );
    // Actual requests without an allowed origin get nothing.
    assert!(p.actual(&headers(&[])).is_empty());
    assert!(
        p.actual(&headers(&[("origin", "https://foobar.com")]))
            .is_empty()
    );
    let pairs: Vec<_> = p
        .actual(&headers(&[("origin", "https://www.foo.com")]))
        .into_iter()
        .collect();
    assert_eq!(pairs.len(), 4, "{pairs:?}");
}

#[tokio::test]
async fn layer_answers_preflights_without_the_backend() {
    let (inner, n) = backend();
    let svc = CorsLayer::new(conformance_policy()).layer(inner);
    let req = Request::options("/cors-1")
        .header("origin", "https://www.foo.com")
        .header("access-control-request-method", "GET")
        .body(String::new())
        .unwrap();
    let resp = send(&svc, req).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://www.foo.com"
    );
    assert_eq!(resp.body(), "");
    assert_eq!(calls(&n), 0);

    let parts = Request::options("/")
        .header("origin", "https://nope.com")
        .header("access-control-request-method", "GET")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let resp = conformance_policy()
        .preflight_response::<String>(&parts)
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(resp.headers().get("access-control-allow-origin").is_none());
}

// Conformance: "Simple request from an exact matching origin should be allowed" / "... from a
// non-matching origin should not be allowed" (forwarded either way).
#[tokio::test]
async fn layer_adds_headers_to_actual_requests() {
    let inner = tower::ServiceBuilder::new()
        .map_response(|mut r: http::Response<String>| {
            r.headers_mut()
                .insert("vary", "accept-encoding".parse().unwrap());
            r
        })
        .service(backend().0);
    let svc = CorsLayer::new(conformance_policy()).layer(inner);
    let req = |origin: &str| {
        Request::get("/cors-1")
            .header("origin", origin)
            .body(String::new())
            .unwrap()
    };
    let resp = send(&svc, req("https://www.bar.com")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.body(), "backend");
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://www.bar.com"
    );
    assert_eq!(
        resp.headers()["access-control-expose-headers"],
        "x-header-3, x-header-4"
    );
    let vary: Vec<_> = resp.headers().get_all("vary").iter().collect();
    assert_eq!(vary, ["accept-encoding", "origin"]);

    let resp = send(&svc, req("https://foobar.com")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get("access-control-allow-origin").is_none());
}
