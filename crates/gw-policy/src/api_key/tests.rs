use http::{Request, StatusCode};
use tower::Layer;

use super::*;
use crate::testing::{backend, calls, send};

fn keys(location: KeyLocation) -> CompiledApiKeys {
    CompiledApiKeys::new(location, [("a", "key-a"), ("b", "key b/+")]).unwrap()
}

#[test]
fn bad_config_is_a_compile_error() {
    let h = || KeyLocation::header("x-key").unwrap();
    let none: [(&str, &str); 0] = [];
    assert_eq!(
        CompiledApiKeys::new(h(), none).unwrap_err(),
        ApiKeyError::NoKeys
    );
    assert!(matches!(
        CompiledApiKeys::new(h(), [("a", "")]),
        Err(ApiKeyError::EmptyKey { .. })
    ));
    assert_eq!(
        CompiledApiKeys::new(h(), [("a", "k"), ("b", "k")]).unwrap_err(),
        ApiKeyError::DuplicateKey {
            first: "a".into(),
            second: "b".into()
        }
    );
    assert!(matches!(
        KeyLocation::header("x key"),
        Err(ApiKeyError::InvalidHeaderName { .. })
    ));
    assert_eq!(
        KeyLocation::query("").unwrap_err(),
        ApiKeyError::EmptyQueryParameter
    );
}

#[test]
fn check_key_finds_the_client() {
    let k = keys(KeyLocation::header("x-key").unwrap());
    assert_eq!(
        k.check_key(b"key-a"),
        KeyCheck::Client(ApiKeyClient("a".into()))
    );
    assert_eq!(k.check_key(b"key-a "), KeyCheck::Unknown);
    assert_eq!(k.check_key(b"key-"), KeyCheck::Unknown);
}

#[test]
fn query_parsing() {
    let uri: Uri = "/p?x=1&api_key=key%20b%2F%2B&y".parse().unwrap();
    assert_eq!(query_value(&uri, "api_key").unwrap().as_ref(), b"key b/+");
    assert_eq!(query_value(&uri, "y").unwrap().as_ref(), b"");
    assert!(query_value(&uri, "z").is_none());
    assert_eq!(without_query_param(&uri, "api_key").unwrap(), "/p?x=1&y");
    let only: Uri = "http://h/p?api_key=k".parse().unwrap();
    assert_eq!(without_query_param(&only, "api_key").unwrap(), "http://h/p");
    assert!(without_query_param(&only, "other").is_none());
    assert_eq!(percent_decode("a+b%zz%4"), b"a b%zz%4".as_slice());
}

#[tokio::test]
async fn header_keys() {
    let (inner, n) = backend();
    let svc = ApiKeyLayer::new(keys(KeyLocation::header("x-key").unwrap())).layer(inner);
    let with = |k: &str| {
        Request::get("/")
            .header("x-key", k)
            .body(String::new())
            .unwrap()
    };
    assert_eq!(
        send(&svc, Request::new(String::new())).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&svc, with("")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&svc, with("nope")).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(calls(&n), 0);
    let r = send(&svc, with("key-a")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.extensions().get::<ApiKeyClient>(),
        Some(&ApiKeyClient("a".into()))
    );
}

#[tokio::test]
async fn query_keys_are_stripped() {
    let inner = tower::service_fn(|req: Request<String>| async move {
        Ok::<_, std::convert::Infallible>(http::Response::new(req.uri().to_string()))
    });
    let svc = ApiKeyLayer::new(keys(KeyLocation::query("api_key").unwrap())).layer(inner);
    let get = |uri: &str| Request::get(uri).body(String::new()).unwrap();
    let r = send(&svc, get("/x?api_key=key+b%2F%2B&page=2")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.body(), "/x?page=2");
    assert_eq!(
        send(&svc, get("/x?page=2")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&svc, get("/x?api_key=bad")).await.status(),
        StatusCode::FORBIDDEN
    );
}
