//! TrafficPolicy end to end through `gw-gateway`: policies written in YAML, attached to
//! routes, listeners and Gateways, enforced on real requests, and reported in `/status` and by
//! `gw-gateway check`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Gateway, free_port};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::Value;

/// `htpasswd -nbs alice secret`.
const HTPASSWD: &str = "alice:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=";
/// base64("alice:secret").
const ALICE: &str = "Basic YWxpY2U6c2VjcmV0";

/// A GET with extra headers over a fresh connection: status, response headers (lowercase
/// names) and body.
fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    (code, head.to_ascii_lowercase(), body.to_owned())
}

/// Polls until `path` answers `code` (the configuration is being applied).
fn wait_for(addr: SocketAddr, path: &str, headers: &[(&str, &str)], code: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
            .ok()
            .map(|_| get(addr, path, headers).0);
        if got == Some(code) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never answered {code} (last {got:?})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The request headers the echo backend saw.
fn echoed_headers(body: &str) -> Value {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["headers"].clone()
}

fn item<'a>(status: &'a Value, kind: &str, name: &str) -> &'a Value {
    status["items"]
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .find(|i| i["kind"] == kind && i["metadata"]["name"] == name)
        })
        .unwrap_or_else(|| panic!("no {kind} {name} in {status}"))
}

/// The reasons of a TrafficPolicy's ancestors' `Accepted` conditions.
fn policy_reasons(status: &Value, name: &str) -> Vec<String> {
    item(status, "TrafficPolicy", name)["status"]["ancestors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|a| a["conditions"][0]["reason"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn start_echo(rt: &tokio::runtime::Runtime) -> gw_echo::EchoServer {
    rt.block_on(gw_echo::EchoServer::start(
        gw_echo::EchoConfig::loopback_http("web-pod", "default"),
    ))
    .expect("echo")
}

fn base(listeners: &str, echo_port: u16) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: gw}}
spec: {{controllerName: gw.dev/gateway}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: default}}
spec:
  gatewayClassName: gw
  listeners: {listeners}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: default}}
spec:
  parentRefs: [{{name: edge}}]
  rules:
  - name: all
    backendRefs: [{{name: web, port: 80}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: admin, namespace: default}}
spec:
  parentRefs: [{{name: edge}}]
  rules:
  - name: admin
    matches: [{{path: {{type: PathPrefix, value: /admin}}}}]
    backendRefs: [{{name: web, port: 80}}]
---
{}",
        common::web_backend(echo_port)
    )
}

#[test]
fn basic_auth_on_a_route_and_api_keys_on_a_listener() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let echo = start_echo(&rt);
    let echo_port = echo.http_addr().expect("addr").port();
    let (public, internal) = (free_port(), free_port());
    let gw = Gateway::start("policy-auth", "127.0.46.0/24");
    let listeners = format!(
        "[{{name: public, port: {public}, protocol: HTTP}}, {{name: internal, port: {internal}, protocol: HTTP}}]"
    );
    let yaml = format!(
        "{}---
apiVersion: v1
kind: Secret
metadata: {{name: admins, namespace: default}}
stringData: {{.htpasswd: '{HTPASSWD}'}}
---
apiVersion: v1
kind: Secret
metadata: {{name: api-keys, namespace: default}}
stringData: {{billing: k-7f3a9c, search: k-0b12de}}
---
apiVersion: policy.gw.dev/v1alpha1
kind: TrafficPolicy
metadata: {{name: admin-auth, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: admin}}]
  default:
    basicAuth: {{secretRef: {{name: admins}}, realm: admin area}}
---
apiVersion: policy.gw.dev/v1alpha1
kind: TrafficPolicy
metadata: {{name: internal-keys, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: edge, sectionName: internal}}]
  default:
    apiKeyAuth:
      credentialRefs: [{{name: api-keys}}]
      extractFrom: {{header: x-api-key}}
",
        base(&listeners, echo_port)
    );
    std::fs::write(gw.config().join("all.yaml"), yaml).expect("write");
    let public: SocketAddr = format!("127.0.46.1:{public}").parse().expect("addr");
    let internal: SocketAddr = format!("127.0.46.1:{internal}").parse().expect("addr");
    wait_for(public, "/", &[], 200);

    // Basic auth on the admin route only.
    let (code, head, _) = get(public, "/admin", &[]);
    assert_eq!(code, 401);
    assert!(
        head.contains("www-authenticate: basic realm=\"admin area\""),
        "{head}"
    );
    assert_eq!(
        get(
            public,
            "/admin",
            &[("authorization", "Basic YWxpY2U6d3Jvbmc=")]
        )
        .0,
        401
    );
    assert_eq!(get(public, "/admin", &[("authorization", ALICE)]).0, 200);

    // API keys on the internal listener only: 401 without, 403 unknown, 200 known (and the key
    // is not forwarded).
    wait_for(internal, "/", &[("x-api-key", "k-0b12de")], 200);
    assert_eq!(get(internal, "/", &[]).0, 401);
    assert_eq!(get(internal, "/", &[("x-api-key", "k-guess")]).0, 403);
    let (code, _, body) = get(internal, "/", &[("x-api-key", "k-0b12de")]);
    assert_eq!(code, 200);
    assert!(echoed_headers(&body).get("X-Api-Key").is_none(), "{body}");

    // On the internal listener the admin route needs both: the sections merge.
    assert_eq!(get(internal, "/admin", &[("x-api-key", "k-7f3a9c")]).0, 401);
    assert_eq!(get(internal, "/admin", &[("authorization", ALICE)]).0, 401);
    let both = [("authorization", ALICE), ("x-api-key", "k-7f3a9c")];
    assert_eq!(get(internal, "/admin", &both).0, 200);

    let s = status_with(&gw, &["admin-auth", "internal-keys"]);
    assert_eq!(policy_reasons(&s, "admin-auth"), ["Accepted"]);
    assert_eq!(policy_reasons(&s, "internal-keys"), ["Accepted"]);
    let listeners = item(&s, "Gateway", "edge")["status"]["listeners"].clone();
    let internal_conditions = listeners
        .as_array()
        .and_then(|l| l.iter().find(|l| l["name"] == "internal"))
        .map(|l| l["conditions"].to_string())
        .unwrap_or_default();
    assert!(
        internal_conditions.contains("gw.dev/TrafficPolicyAffected"),
        "{internal_conditions}"
    );
    rt.block_on(echo.shutdown());
}

#[test]
fn rate_limit_default_is_overridden_by_a_gateway_override() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let echo = start_echo(&rt);
    let echo_port = echo.http_addr().expect("addr").port();
    let port = free_port();
    let gw = Gateway::start("policy-rate", "127.0.47.0/24");
    let yaml = format!(
        "{}---
apiVersion: policy.gw.dev/v1alpha1
kind: TrafficPolicy
metadata: {{name: generous, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: web}}]
  default:
    rateLimit: {{requests: 1000, unit: Minute}}
---
apiVersion: policy.gw.dev/v1alpha1
kind: TrafficPolicy
metadata: {{name: platform-cap, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: edge}}]
  override:
    rateLimit: {{requests: 3, unit: Hour, key: {{type: Header, header: x-client}}}}
",
        base(
            &format!("[{{name: http, port: {port}, protocol: HTTP}}]"),
            echo_port
        )
    );
    std::fs::write(gw.config().join("all.yaml"), yaml).expect("write");
    let addr: SocketAddr = format!("127.0.47.1:{port}").parse().expect("addr");
    // The first answer (whichever the poll gets) already takes a token.
    wait_for(addr, "/", &[("x-client", "probe")], 200);

    let alice = [("x-client", "alice")];
    for i in 0..3 {
        let (code, head, _) = get(addr, "/", &alice);
        assert_eq!(code, 200, "request {i}");
        assert!(head.contains("ratelimit-limit: 3"), "{head}");
    }
    let (code, head, _) = get(addr, "/", &alice);
    assert_eq!(
        code, 429,
        "the Gateway's override beats the route's default"
    );
    assert!(head.contains("retry-after: "), "{head}");
    // The override is shared across the Gateway's routes: alice is limited on /admin too.
    assert_eq!(get(addr, "/admin", &alice).0, 429);
    // Another key has its own bucket.
    assert_eq!(get(addr, "/", &[("x-client", "bob")]).0, 200);

    let s = status_with(&gw, &["generous", "platform-cap"]);
    assert_eq!(policy_reasons(&s, "generous"), ["Accepted"]);
    assert_eq!(policy_reasons(&s, "platform-cap"), ["Accepted"]);
    let gw_conditions = item(&s, "Gateway", "edge")["status"]["conditions"].to_string();
    assert!(
        gw_conditions.contains("gw.dev/TrafficPolicyAffected"),
        "{gw_conditions}"
    );
    assert!(
        gw_conditions.contains("default/platform-cap"),
        "{gw_conditions}"
    );
    rt.block_on(echo.shutdown());
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A fresh Ed25519 key for signing test tokens.
fn signing_key() -> Ed25519KeyPair {
    let rng = ring::rand::SystemRandom::new();
    Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).expect("key").as_ref())
        .expect("key")
}

/// A JWKS holding `key`'s public key as `k1`.
fn jwks_of(key: &Ed25519KeyPair) -> Value {
    serde_json::json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": b64(key.public_key().as_ref())}
    ]})
}

/// Seconds since the Unix epoch, for `exp` claims.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs()
}

fn token(key: &Ed25519KeyPair, claims: &Value) -> String {
    let header = serde_json::json!({"alg": "EdDSA", "kid": "k1", "typ": "JWT"});
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    format!("{input}.{}", b64(key.sign(input.as_bytes()).as_ref()))
}

#[test]
fn jwt_with_a_jwks_secret() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let echo = start_echo(&rt);
    let echo_port = echo.http_addr().expect("addr").port();
    let key = signing_key();
    let jwks = jwks_of(&key);
    let port = free_port();
    let gw = Gateway::start("policy-jwt", "127.0.48.0/24");
    let yaml = format!(
        "{}---
apiVersion: v1
kind: Secret
metadata: {{name: idp-keys, namespace: default}}
stringData:
  jwks.json: '{jwks}'
---
apiVersion: policy.gw.dev/v1alpha1
kind: TrafficPolicy
metadata: {{name: jwt, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: web, sectionName: all}}]
  default:
    jwt:
      providers:
      - name: idp
        issuer: https://idp.example.com
        audiences: [shop]
        jwks: {{valueRef: {{name: idp-keys}}}}
        claimToHeaders: [{{claim: sub, header: x-user}}]
",
        base(
            &format!("[{{name: http, port: {port}, protocol: HTTP}}]"),
            echo_port
        )
    );
    std::fs::write(gw.config().join("all.yaml"), yaml).expect("write");
    let addr: SocketAddr = format!("127.0.48.1:{port}").parse().expect("addr");
    wait_for(addr, "/", &[], 401);

    let now = unix_now();
    let claims =
        |iss: &str| serde_json::json!({"iss": iss, "aud": "shop", "sub": "bob", "exp": now + 300});
    let good = format!("Bearer {}", token(&key, &claims("https://idp.example.com")));
    let (code, _, body) = get(
        addr,
        "/",
        &[("authorization", &good), ("x-user", "mallory")],
    );
    assert_eq!(code, 200);
    assert_eq!(
        echoed_headers(&body)["X-User"],
        serde_json::json!(["bob"]),
        "{body}"
    );

    let (code, head, _) = get(addr, "/", &[]);
    assert_eq!(code, 401);
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    let other_issuer = format!(
        "Bearer {}",
        token(&key, &claims("https://evil.example.com"))
    );
    let (code, head, _) = get(addr, "/", &[("authorization", &other_issuer)]);
    assert_eq!(code, 401);
    assert!(head.contains("error=\"invalid_token\""), "{head}");
    // The admin route (another route, no policy) is not affected.
    assert_eq!(get(addr, "/admin", &[]).0, 200);
    assert_eq!(
        policy_reasons(&status_with(&gw, &["jwt"]), "jwt"),
        ["Accepted"]
    );
    rt.block_on(echo.shutdown());
}

/// A loopback HTTPS server (127.0.0.1, port 0) serving `jwks` on every path with a
/// certificate for 127.0.0.1 signed by its own CA: its address, the CA (PEM) and a count of
/// the requests it answered.
fn jwks_server(
    rt: &tokio::runtime::Runtime,
    jwks: String,
) -> (
    SocketAddr,
    String,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_pem = ca_params.self_signed(&ca_key).expect("ca").pem();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("cert");
    let key = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key");
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert.der().clone()], key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let task = rt.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, jwks, counter) = (acceptor.clone(), jwks.clone(), counter.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |_req| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let body = http_body_util::Full::new(bytes::Bytes::from(jwks.clone()));
                    async move { Ok::<_, std::convert::Infallible>(http::Response::new(body)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, ca_pem, hits, task)
}

// `jwks.remote`: the keys come from an HTTPS URL (its private CA given by a ConfigMap), fetched
// once and cached; a token they verify passes, one signed by another key is refused.
#[test]
fn jwt_with_a_remote_jwks() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let echo = start_echo(&rt);
    let echo_port = echo.http_addr().expect("addr").port();
    let (key, stranger) = (signing_key(), signing_key());
    let jwks = jwks_of(&key);
    let (jwks_addr, ca_pem, hits, server) = jwks_server(&rt, jwks.to_string());
    let ca_indented = ca_pem.trim_end().replace('\n', "\n    ");
    let port = free_port();
    let gw = Gateway::start("policy-jwt-remote", "127.0.94.0/24");
    let yaml = format!(
        "{}---
apiVersion: v1
kind: ConfigMap
metadata: {{name: idp-ca, namespace: default}}
data:
  ca.crt: |
    {ca_indented}
---
apiVersion: policy.gw.dev/v1alpha1
kind: TrafficPolicy
metadata: {{name: jwt, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: web}}]
  default:
    jwt:
      providers:
      - name: idp
        issuer: https://idp.example.com
        jwks:
          remote:
            uri: https://{jwks_addr}/.well-known/jwks.json
            cacheDuration: 10m
            caCertificateRefs: [{{group: '', kind: ConfigMap, name: idp-ca}}]
",
        base(
            &format!("[{{name: http, port: {port}, protocol: HTTP}}]"),
            echo_port
        )
    );
    std::fs::write(gw.config().join("all.yaml"), yaml).expect("write");
    let addr: SocketAddr = format!("127.0.94.1:{port}").parse().expect("addr");
    wait_for(addr, "/", &[], 401);

    let now = unix_now();
    let claims =
        serde_json::json!({"iss": "https://idp.example.com", "sub": "bob", "exp": now + 300});
    let good = format!("Bearer {}", token(&key, &claims));
    for _ in 0..5 {
        assert_eq!(get(addr, "/", &[("authorization", &good)]).0, 200);
    }
    let forged = format!("Bearer {}", token(&stranger, &claims));
    let (code, head, _) = get(addr, "/", &[("authorization", &forged)]);
    assert_eq!(code, 401);
    assert!(head.contains("error=\"invalid_token\""), "{head}");
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one fetch serves every request"
    );
    assert_eq!(
        policy_reasons(&status_with(&gw, &["jwt"]), "jwt"),
        ["Accepted"]
    );
    server.abort();
    rt.block_on(echo.shutdown());
}

const BAD_POLICIES: &str = "---
apiVersion: policy.gw.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: nowhere, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: missing}]
  default: {rateLimit: {requests: 1, unit: Hour}}
---
apiVersion: policy.gw.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: older, namespace: default, creationTimestamp: '2024-01-01T00:00:00Z'}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: web}]
  default: {cors: {allowOrigins: ['https://app.example.com']}}
---
apiVersion: policy.gw.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: younger, namespace: default, creationTimestamp: '2024-06-01T00:00:00Z'}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: web}]
  default:
    cors: {allowOrigins: ['*']}
    rateLimit: {requests: 1, unit: Hour}
---
apiVersion: v1
kind: Secret
metadata: {name: md5-users, namespace: default}
stringData: {.htpasswd: 'alice:$apr1$Zr8lH5Yk$VdxvZ8C2m9VqZL1xv7Tk5/'}
---
apiVersion: policy.gw.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: broken, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: admin}]
  default:
    basicAuth: {secretRef: {name: md5-users}}
";

#[test]
fn bad_policies_get_their_status_and_the_rest_keeps_serving() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let echo = start_echo(&rt);
    let echo_port = echo.http_addr().expect("addr").port();
    let port = free_port();
    let gw = Gateway::start("policy-bad", "127.0.49.0/24");
    let yaml = base(
        &format!("[{{name: http, port: {port}, protocol: HTTP}}]"),
        echo_port,
    ) + BAD_POLICIES;
    std::fs::write(gw.config().join("all.yaml"), &yaml).expect("write");
    let s = gw.wait_until("policy status", |s| {
        s["items"]
            .as_array()
            .is_some_and(|i| i.iter().filter(|i| i["kind"] == "TrafficPolicy").count() == 4)
    });
    assert_eq!(policy_reasons(&s, "nowhere"), ["TargetNotFound"]);
    assert_eq!(policy_reasons(&s, "older"), ["Accepted"]);
    assert_eq!(policy_reasons(&s, "younger"), ["Conflicted"]);
    assert_eq!(policy_reasons(&s, "broken"), ["Invalid"]);
    let broken = item(&s, "TrafficPolicy", "broken")["status"].to_string();
    assert!(broken.contains("apr1"), "the message says why: {broken}");

    let addr: SocketAddr = format!("127.0.49.1:{port}").parse().expect("addr");
    wait_for(addr, "/", &[], 200);
    // The older policy's CORS applies; nothing of the younger one does (no rate limit).
    for _ in 0..3 {
        let (code, head, _) = get(addr, "/", &[("origin", "https://app.example.com")]);
        assert_eq!(code, 200);
        assert!(
            head.contains("access-control-allow-origin: https://app.example.com"),
            "{head}"
        );
    }
    assert!(
        !get(addr, "/", &[("origin", "https://other.example.com")])
            .1
            .contains("access-control-allow-origin")
    );
    // The invalid policy changes nothing: the admin route is served without authentication.
    assert_eq!(get(addr, "/admin", &[]).0, 200);

    // `gw-gateway check` reports the same, and exits 2 (some object is not accepted).
    let dir = common::temp_dir("policy-check");
    std::fs::write(dir.join("all.yaml"), &yaml).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gw-gateway"))
        .arg("check")
        .arg(&dir)
        .output()
        .expect("check");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    for needle in [
        "kind: TrafficPolicy",
        "apiVersion: policy.gw.dev/v1alpha1",
        "reason: TargetNotFound",
        "reason: Conflicted",
        "reason: Invalid",
    ] {
        assert!(stdout.contains(needle), "{needle} missing from:\n{stdout}");
    }
    rt.block_on(echo.shutdown());
}

/// The path (and query) the echo backend saw.
fn echoed_path(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["path"].as_str().unwrap_or_default().to_owned()
}

/// `/status` once it reports every TrafficPolicy in `names` (it is published a little after
/// the routes serve).
fn status_with(gw: &Gateway, names: &[&str]) -> Value {
    gw.wait_until("the TrafficPolicy status", |s| {
        names.iter().all(|n| {
            s["items"].as_array().is_some_and(|items| {
                items
                    .iter()
                    .any(|i| i["kind"] == "TrafficPolicy" && i["metadata"]["name"] == *n)
            })
        })
    })
}

/// A TrafficPolicy's `status.ancestors[0]` conditions as JSON text.
fn policy_conditions(status: &Value, name: &str) -> String {
    item(status, "TrafficPolicy", name)["status"]["ancestors"][0]["conditions"].to_string()
}

#[test]
fn transformation_edits_requests_and_responses_with_cel() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let echo = start_echo(&rt);
    let echo_port = echo.http_addr().expect("addr").port();
    let key = signing_key();
    let jwks = jwks_of(&key);
    let port = free_port();
    let gw = Gateway::start("policy-cel", "127.0.93.0/24");
    // `web`: JWT, then a transformation reading the request, the client address and the
    // token's claims. `admin`: a policy whose expression does not compile.
    let yaml = format!(
        r#"{}---
apiVersion: policy.gw.dev/v1alpha1
kind: TrafficPolicy
metadata: {{name: cel, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: web}}]
  default:
    jwt:
      providers: [{{name: idp, jwks: {{inline: '{jwks}'}}}}]
    transformation:
      request:
        set:
        - {{name: x-tenant, value: 'request.params["tenant"].lowerAscii()'}}
        - {{name: x-subject, value: 'has(jwt.sub) ? jwt.sub : "anonymous"'}}
        - {{name: x-client, value: 'has(source.address) ? source.address : "unknown"'}}
        add: [{{name: x-seen-by, value: 'request.method + " " + request.path'}}]
        remove: [x-internal-secret]
        path: '"/v2" + request.path'
      response:
        set:
        - {{name: x-upstream-status, value: response.code}}
        - {{name: x-original-path, value: request.path}}
---
apiVersion: policy.gw.dev/v1alpha1
kind: TrafficPolicy
metadata: {{name: bad-cel, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: admin}}]
  default:
    transformation:
      request:
        set: [{{name: x-tenant, value: 'request.path +'}}]
"#,
        base(
            &format!("[{{name: http, port: {port}, protocol: HTTP}}]"),
            echo_port
        )
    );
    std::fs::write(gw.config().join("all.yaml"), yaml).expect("write");
    let addr: SocketAddr = format!("127.0.93.1:{port}").parse().expect("addr");
    wait_for(addr, "/", &[], 401);

    let now = unix_now();
    let bearer = format!(
        "Bearer {}",
        token(&key, &serde_json::json!({"sub": "bob", "exp": now + 300}))
    );
    let (code, head, body) = get(
        addr,
        "/orders?tenant=ACME",
        &[("authorization", &bearer), ("x-internal-secret", "s3cr3t")],
    );
    assert_eq!(code, 200, "{head}\n{body}");
    // The request: headers from CEL over the query, the claims and the client address; the
    // secret header removed; the path rewritten with the query kept.
    let headers = echoed_headers(&body);
    assert_eq!(headers["X-Tenant"], serde_json::json!(["acme"]), "{body}");
    assert_eq!(headers["X-Subject"], serde_json::json!(["bob"]), "{body}");
    assert_eq!(
        headers["X-Seen-By"],
        serde_json::json!(["GET /orders"]),
        "{body}"
    );
    let client = headers["X-Client"][0].as_str().unwrap_or_default();
    assert!(
        client
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        "{body}"
    );
    assert!(headers.get("X-Internal-Secret").is_none(), "{body}");
    assert_eq!(echoed_path(&body), "/v2/orders?tenant=ACME");
    // The response: headers from CEL over the response and the request as it arrived.
    assert!(head.contains("x-upstream-status: 200"), "{head}");
    assert!(head.contains("x-original-path: /orders"), "{head}");

    // The policy with the bad expression is Invalid with the CEL error; its route keeps
    // serving, untransformed.
    let s = status_with(&gw, &["cel", "bad-cel"]);
    assert_eq!(policy_reasons(&s, "cel"), ["Accepted"]);
    assert_eq!(policy_reasons(&s, "bad-cel"), ["Invalid"]);
    let conditions = policy_conditions(&s, "bad-cel");
    assert!(conditions.contains("request.path +"), "{conditions}");
    assert!(conditions.contains("does not compile"), "{conditions}");
    let (code, _, body) = get(addr, "/admin?tenant=acme", &[]);
    assert_eq!(code, 200);
    assert!(echoed_headers(&body).get("X-Tenant").is_none(), "{body}");
    assert_eq!(echoed_path(&body), "/admin?tenant=acme");
    rt.block_on(echo.shutdown());
}

/// A Service `default/<name>` on port 80 whose endpoint is `addr`.
fn service_at(name: &str, addr: SocketAddr) -> String {
    format!(
        "---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-1, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: http, port: {}}}]
endpoints: [{{addresses: ['{}']}}]
",
        addr.port(),
        addr.ip()
    )
}

/// An HTTPRoute `name` for `PathPrefix /<name>` to the echo backend, and a TrafficPolicy
/// `name` on it with `ext_auth` (the fields of its `extAuth` section).
fn route_with_ext_auth(name: &str, ext_auth: &str) -> String {
    format!(
        "---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: edge}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /{name}}}}}]
    backendRefs: [{{name: web, port: 80}}]
---
apiVersion: policy.gw.dev/v1alpha1
kind: TrafficPolicy
metadata: {{name: {name}, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: {name}}}]
  default:
    extAuth: {{{ext_auth}}}
"
    )
}

#[test]
fn ext_auth_allows_denies_and_fails_closed_or_open() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let echo = start_echo(&rt);
    let echo_port = echo.http_addr().expect("addr").port();
    let auth = rt
        .block_on(gw_echo::authz::AuthServer::http())
        .expect("auth server");
    // An auth service that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = free_port();
    let gw = Gateway::start("policy-ext-auth", "127.0.94.0/24");
    let yaml = format!(
        "{}{}{}{}{}{}{}",
        base(
            &format!("[{{name: http, port: {port}, protocol: HTTP}}]"),
            echo_port
        ),
        service_at("auth", auth.addr()),
        service_at("silent", silent.local_addr().expect("addr")),
        route_with_ext_auth(
            "shop",
            "protocol: HTTP, backendRef: {name: auth, port: 80}, \
             http: {path: /verify, allowedResponseHeaders: [x-auth-user]}"
        ),
        route_with_ext_auth(
            "closed",
            "protocol: HTTP, backendRef: {name: silent, port: 80}, timeout: 300ms"
        ),
        route_with_ext_auth(
            "open",
            "protocol: HTTP, backendRef: {name: silent, port: 80}, timeout: 300ms, failOpen: true"
        ),
        route_with_ext_auth(
            "missing",
            "protocol: HTTP, backendRef: {name: no-such-service, port: 80}"
        ),
    );
    std::fs::write(gw.config().join("all.yaml"), yaml).expect("write");
    let addr: SocketAddr = format!("127.0.94.1:{port}").parse().expect("addr");
    // The auth service's denial reaches the client as it was sent.
    wait_for(addr, "/shop/cart", &[], 302);
    let (code, head, body) = get(addr, "/shop/cart", &[("authorization", "Bearer nope")]);
    assert_eq!(code, 302);
    assert!(
        head.contains("location: https://login.example.com/signin"),
        "{head}"
    );
    assert_eq!(body, "sign in first");
    assert_eq!(auth.seen().last_path, "/verify/shop/cart");

    // Allowed, with the auth service's header on the upstream request.
    let (code, _, body) = get(
        addr,
        "/shop/cart",
        &[("authorization", gw_echo::authz::TOKEN)],
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        echoed_headers(&body)["X-Auth-User"],
        serde_json::json!(["alice"]),
        "{body}"
    );
    // Routes without the policy are not checked.
    let checks = auth.seen().checks;
    assert_eq!(get(addr, "/", &[]).0, 200);
    assert_eq!(auth.seen().checks, checks);

    // An auth service that does not answer within the timeout: 403, or the request goes on
    // when the policy fails open.
    let started = Instant::now();
    assert_eq!(
        get(addr, "/closed", &[("authorization", gw_echo::authz::TOKEN)]).0,
        403
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
    let started = Instant::now();
    let (code, _, body) = get(addr, "/open", &[]);
    assert_eq!(code, 200, "{body}");
    assert!(started.elapsed() >= Duration::from_millis(300));

    // The auth service goes away: fail closed.
    rt.block_on(auth.stop());
    assert_eq!(
        get(
            addr,
            "/shop/cart",
            &[("authorization", gw_echo::authz::TOKEN)]
        )
        .0,
        403
    );

    // A backendRef that does not resolve: the policy still applies and refuses (500), and
    // says why.
    assert_eq!(get(addr, "/missing", &[]).0, 500);
    let s = status_with(&gw, &["shop", "closed", "open", "missing"]);
    for name in ["shop", "closed", "open", "missing"] {
        assert_eq!(policy_reasons(&s, name), ["Accepted"], "{name}");
    }
    let missing = policy_conditions(&s, "missing");
    assert!(missing.contains("BackendNotFound"), "{missing}");
    let shop = policy_conditions(&s, "shop");
    assert!(shop.contains("\"ResolvedRefs\""), "{shop}");
    drop(silent);
    rt.block_on(echo.shutdown());
}
