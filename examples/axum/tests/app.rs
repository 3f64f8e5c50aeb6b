//! Starts the example app on 127.0.0.1:0 and checks its three parts: a plain axum route, the
//! gw-policy layers on `/api`, and gw-router as the fallback.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use gw_policy::jwt::StaticJwks;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use ring::signature::{Ed25519KeyPair, KeyPair};

/// An Ed25519 key, its JWKS, and a signer of compact JWTs.
struct Keys(Ed25519KeyPair);

impl Keys {
    fn new() -> Keys {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        Keys(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap())
    }

    fn jwks(&self) -> StaticJwks {
        let x = URL_SAFE_NO_PAD.encode(self.0.public_key().as_ref());
        let json =
            format!(r#"{{"keys": [{{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": "{x}"}}]}}"#);
        StaticJwks::from_json(json.as_bytes()).unwrap()
    }

    fn token(&self, sub: &str) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","kid":"k1"}"#);
        let claims = URL_SAFE_NO_PAD
            .encode(serde_json::json!({"sub": sub, "exp": 4_102_444_800u64}).to_string());
        let signed = format!("{header}.{claims}");
        let sig = URL_SAFE_NO_PAD.encode(self.0.sign(signed.as_bytes()).as_ref());
        format!("{signed}.{sig}")
    }
}

fn routes(echo: SocketAddr) -> String {
    format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: gw}}
spec: {{controllerName: gw.dev/gateway}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: default}}
spec:
  gatewayClassName: gw
  listeners: [{{name: http, port: 8080, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: shop, namespace: default}}
spec:
  parentRefs: [{{name: edge}}]
  rules:
  - matches: [{{path: {{value: /shop}}}}]
    filters: [{{type: RequestHeaderModifier, requestHeaderModifier: {{add: [{{name: x-via, value: gw-router}}]}}}}]
    backendRefs: [{{name: echo, port: 80}}]
---
apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: default}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: echo-1, namespace: default, labels: {{kubernetes.io/service-name: echo}}}}
addressType: IPv4
ports: [{{name: http, port: {}}}]
endpoints: [{{addresses: ['{}']}}]
"#,
        echo.port(),
        echo.ip()
    )
}

#[tokio::test]
async fn axum_routes_policies_and_gateway_fallback() {
    let echo =
        gw_echo::EchoServer::start(gw_echo::EchoConfig::loopback_http("echo-pod", "default"))
            .await
            .unwrap();
    let keys = Keys::new();
    let mut config = gw_axum_example::Config::new(
        keys.jwks(),
        &routes(echo.http_addr().unwrap()),
        "default",
        "edge",
        8080,
    );
    config.per_user_per_minute = 2;
    let app = gw_axum_example::app(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let send = |path: &str, token: Option<String>| {
        let mut b = Request::get(format!("http://{addr}{path}"));
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let req = b.body(Empty::new()).unwrap();
        let client = client.clone();
        async move {
            let resp = client.request(req).await.unwrap();
            let (parts, body) = resp.into_parts();
            (parts, body.collect().await.unwrap().to_bytes())
        }
    };

    // A plain axum route.
    let (p, body) = send("/healthz", None).await;
    assert_eq!(p.status, StatusCode::OK);
    assert_eq!(body, "ok");

    // JWT on /api: no token is 401, a valid one reaches the handler with its claims.
    let (p, _) = send("/api/me", None).await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    assert_eq!(p.headers["www-authenticate"], "Bearer");
    let alice = keys.token("alice");
    let (p, body) = send("/api/me", Some(alice.clone())).await;
    assert_eq!(p.status, StatusCode::OK);
    assert_eq!(body, r#"{"sub":"alice"}"#);
    assert_eq!(p.headers["ratelimit-remaining"], "1");
    // Rate limit keyed by `jwt.sub`: alice's second request is her last, bob has his own.
    assert_eq!(
        send("/api/me", Some(alice.clone())).await.0.status,
        StatusCode::OK
    );
    let (p, _) = send("/api/me", Some(alice)).await;
    assert_eq!(p.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(p.headers.contains_key("retry-after"));
    assert_eq!(
        send("/api/me", Some(keys.token("bob"))).await.0.status,
        StatusCode::OK
    );

    // Everything else goes through gw-router: HTTPRoute /shop to the echo backend, with its
    // filter; no route is 404.
    let (p, body) = send("/shop/cart", None).await;
    assert_eq!(p.status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["pod"], "echo-pod");
    assert_eq!(json["headers"]["X-Via"][0], "gw-router");
    assert_eq!(send("/other", None).await.0.status, StatusCode::NOT_FOUND);

    server.abort();
}
