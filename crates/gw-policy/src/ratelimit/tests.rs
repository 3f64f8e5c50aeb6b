use std::time::Duration;

use http::{Request, StatusCode};
use tower::Layer;

use super::*;
use crate::testing::{backend, calls, send};

fn req() -> Request<String> {
    Request::new(String::new())
}

fn with_header(v: &str) -> Request<String> {
    Request::get("/")
        .header("x-user", v)
        .body(String::new())
        .unwrap()
}

#[test]
fn bad_config_is_a_compile_error() {
    let s = Duration::from_secs(1);
    assert_eq!(
        RateLimitConfig::new(0, 1, s).compile().unwrap_err(),
        RateLimitError::ZeroCapacity
    );
    assert!(matches!(
        RateLimitConfig::new(1, 0, s).compile(),
        Err(RateLimitError::ZeroRate { .. })
    ));
    assert!(matches!(
        RateLimitConfig::new(1, 1, Duration::ZERO).compile(),
        Err(RateLimitError::ZeroRate { .. })
    ));
    assert!(matches!(
        RateLimitConfig::new(1, 2, Duration::from_nanos(1)).compile(),
        Err(RateLimitError::OutOfRange { .. })
    ));
    assert!(matches!(
        RateLimitConfig::new(u32::MAX, 1, Duration::from_secs(u64::MAX / 2)).compile(),
        Err(RateLimitError::OutOfRange { .. })
    ));
    assert_eq!(
        RateLimitConfig::new(1, 1, s)
            .max_keys(0)
            .compile()
            .unwrap_err(),
        RateLimitError::ZeroMaxKeys
    );
    assert!(matches!(
        KeySource::header("bad header"),
        Err(RateLimitError::InvalidHeaderName { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn refill_on_paused_time() {
    let (inner, n) = backend();
    let limit = RateLimitConfig::new(2, 2, Duration::from_secs(1))
        .compile()
        .unwrap();
    let svc = RateLimitLayer::new(limit).layer(inner);

    let r = send(&svc, req()).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[RATELIMIT_LIMIT], "2");
    assert_eq!(r.headers()[RATELIMIT_REMAINING], "1");
    assert_eq!(r.headers()[RATELIMIT_RESET], "1");
    let r = send(&svc, req()).await;
    assert_eq!(r.headers()[RATELIMIT_REMAINING], "0");

    let r = send(&svc, req()).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.headers()[RATELIMIT_REMAINING], "0");
    assert_eq!(r.headers()[RATELIMIT_RESET], "1");
    assert_eq!(calls(&n), 2);

    // One token comes back every 500 ms.
    tokio::time::advance(Duration::from_millis(499)).await;
    assert_eq!(
        send(&svc, req()).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(send(&svc, req()).await.status(), StatusCode::OK);
    assert_eq!(
        send(&svc, req()).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    // Idle for long: full again, and no fuller than the capacity.
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(send(&svc, req()).await.status(), StatusCode::OK);
    assert_eq!(send(&svc, req()).await.status(), StatusCode::OK);
    assert_eq!(
        send(&svc, req()).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(calls(&n), 5);
}

#[tokio::test(start_paused = true)]
async fn retry_after_rounds_up_to_whole_seconds() {
    let (inner, _) = backend();
    // 1 token per 90 s.
    let limit = RateLimitConfig::new(1, 2, Duration::from_secs(180))
        .compile()
        .unwrap();
    let svc = RateLimitLayer::new(limit).layer(inner);
    assert_eq!(send(&svc, req()).await.status(), StatusCode::OK);
    tokio::time::advance(Duration::from_millis(500)).await;
    let r = send(&svc, req()).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // 89.5 s left -> 90.
    assert_eq!(r.headers()["retry-after"], "90");
}

#[tokio::test(start_paused = true)]
async fn per_header_keys_and_shared_bucket_for_missing_keys() {
    let (inner, _) = backend();
    let limit = RateLimitConfig::new(1, 1, Duration::from_secs(10))
        .key(KeySource::header("x-user").unwrap())
        .compile()
        .unwrap();
    let svc = RateLimitLayer::new(limit).layer(inner);
    assert_eq!(send(&svc, with_header("a")).await.status(), StatusCode::OK);
    assert_eq!(
        send(&svc, with_header("a")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(send(&svc, with_header("b")).await.status(), StatusCode::OK);
    // No header: one shared bucket.
    assert_eq!(send(&svc, req()).await.status(), StatusCode::OK);
    assert_eq!(
        send(&svc, req()).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test(start_paused = true)]
async fn client_ip_and_custom_keys() {
    let (inner, _) = backend();
    let limit = RateLimitConfig::new(1, 1, Duration::from_secs(10))
        .key(KeySource::ClientIp)
        .compile()
        .unwrap();
    let svc = RateLimitLayer::new(limit).layer(inner.clone());
    let from = |addr: &str| {
        let mut r = req();
        r.extensions_mut()
            .insert(crate::ClientAddr(addr.parse().unwrap()));
        r
    };
    assert_eq!(
        send(&svc, from("192.0.2.1:1")).await.status(),
        StatusCode::OK
    );
    // Same IP, other port: same bucket.
    assert_eq!(
        send(&svc, from("192.0.2.1:2")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        send(&svc, from("[2001:db8::1]:2")).await.status(),
        StatusCode::OK
    );
    // A bare SocketAddr extension works too.
    let mut r = req();
    r.extensions_mut()
        .insert("192.0.2.9:5".parse::<std::net::SocketAddr>().unwrap());
    assert_eq!(send(&svc, r).await.status(), StatusCode::OK);

    let limit = RateLimitConfig::new(1, 1, Duration::from_secs(10))
        .key(KeySource::custom(|p| Some(p.uri.path().to_owned())))
        .compile()
        .unwrap();
    let svc = RateLimitLayer::new(limit).layer(inner);
    let path = |p: &str| Request::get(p).body(String::new()).unwrap();
    assert_eq!(send(&svc, path("/a")).await.status(), StatusCode::OK);
    assert_eq!(
        send(&svc, path("/a")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(send(&svc, path("/b")).await.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn clones_and_layers_share_buckets() {
    let (inner, _) = backend();
    let layer = RateLimitLayer::new(
        RateLimitConfig::new(1, 1, Duration::from_secs(1))
            .compile()
            .unwrap(),
    );
    let a = layer.layer(inner.clone());
    let b = layer.layer(inner);
    assert_eq!(send(&a, req()).await.status(), StatusCode::OK);
    assert_eq!(
        send(&b, req()).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test(start_paused = true)]
async fn cel_keys() {
    assert!(matches!(
        KeySource::cel("jwt.sub +"),
        Err(RateLimitError::InvalidExpression { .. })
    ));
    assert!(matches!(
        KeySource::cel("response.code"),
        Err(RateLimitError::InvalidExpression { .. })
    ));
    let (inner, _) = backend();
    let limit = RateLimitConfig::new(1, 1, Duration::from_secs(10))
        .key(KeySource::cel("request.headers['x-tenant'] + ':' + jwt.sub").unwrap())
        .compile()
        .unwrap();
    let svc = RateLimitLayer::new(limit).layer(inner);
    let with = |tenant: &str, sub: Option<&str>| {
        let mut r = Request::get("/")
            .header("x-tenant", tenant)
            .body(String::new())
            .unwrap();
        if let Some(sub) = sub {
            r.extensions_mut()
                .insert(crate::jwt::JwtClaims(std::sync::Arc::new(
                    serde_json::json!({ "sub": sub }),
                )));
        }
        r
    };
    assert_eq!(
        send(&svc, with("a", Some("u1"))).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&svc, with("a", Some("u1"))).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        send(&svc, with("a", Some("u2"))).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&svc, with("b", Some("u1"))).await.status(),
        StatusCode::OK
    );
    // No token: the expression fails, the request counts against the shared bucket.
    assert_eq!(send(&svc, with("a", None)).await.status(), StatusCode::OK);
    assert_eq!(
        send(&svc, with("b", None)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(
        send(&svc, with("a", Some("u1"))).await.status(),
        StatusCode::OK
    );
}
