//! HTTPS listeners: certificates chosen by SNI from Secrets, ALPN, unknown SNI refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Gateway, free_port, https_get, self_signed};

#[test]
fn https_listener_terminates_tls_with_the_certificate_for_the_sni() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let echo = rt
        .block_on(gw_echo::EchoServer::start(
            gw_echo::EchoConfig::loopback_http("secure-abc-def", "default"),
        ))
        .expect("echo");
    let echo_port = echo.http_addr().expect("addr").port();
    let (a_pem, a_key, a_der) = self_signed(&["a.example.com"]);
    let (b_pem, b_key, b_der) = self_signed(&["*.b.example.com"]);
    let port = free_port();
    let gw = Gateway::start("https", "127.0.45.0/24");
    let yaml = two_https_listeners(
        port,
        [("a", "a.example.com"), ("b", "*.b.example.com")],
        [
            common::tls_secret("a", &a_pem, &a_key),
            common::tls_secret("b", &b_pem, &b_key),
        ],
        echo_port,
    );
    std::fs::write(gw.config().join("all.yaml"), yaml).expect("write");
    let addr: SocketAddr = format!("127.0.45.1:{port}").parse().expect("addr");
    let (code, body) = first_https_get(addr, "a.example.com", &a_der);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("secure-abc-def"), "{body}");
    // The wildcard listener serves its own certificate (verified against b's root).
    let (code, _) = https_get(addr, "x.b.example.com", "x.b.example.com", &b_der, None).expect("b");
    assert_eq!(code, 200);
    // With a's root, b's certificate does not verify: the right certificate was chosen.
    assert!(https_get(addr, "x.b.example.com", "x.b.example.com", &a_der, None).is_err());
    // An SNI no listener accepts is refused during the handshake.
    assert!(https_get(addr, "c.example.net", "c.example.net", &a_der, None).is_err());
    rt.block_on(echo.shutdown());
}

/// An expired certificate is reported on its listener (ResolvedRefs=False,
/// InvalidCertificateRef, saying when it expired) and not served; the other listener on the
/// same port keeps serving.
#[test]
fn expired_certificates_are_reported_and_not_served() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let echo = rt
        .block_on(gw_echo::EchoServer::start(
            gw_echo::EchoConfig::loopback_http("web-abc-def", "default"),
        ))
        .expect("echo");
    let echo_port = echo.http_addr().expect("addr").port();
    let (a_pem, a_key, a_der) = self_signed(&["a.example.com"]);
    let (old_pem, old_key, old_der) =
        common::self_signed_valid(&["old.example.com"], Some((2020, 2021)));
    let port = free_port();
    let gw = Gateway::start("https-expired", "127.0.48.0/24");
    let yaml = two_https_listeners(
        port,
        [("a", "a.example.com"), ("old", "old.example.com")],
        [
            common::tls_secret("a", &a_pem, &a_key),
            common::tls_secret("old", &old_pem, &old_key),
        ],
        echo_port,
    );
    std::fs::write(gw.config().join("all.yaml"), yaml).expect("write");
    let status = gw.wait_until("listener status", |s| {
        s.to_string().contains("InvalidCertificateRef")
    });
    let text = status.to_string();
    assert!(text.contains("certificate expired at 2021-01-01"), "{text}");
    let addr: SocketAddr = format!("127.0.48.1:{port}").parse().expect("addr");
    let (code, _) = first_https_get(addr, "a.example.com", &a_der);
    assert_eq!(code, 200);
    // The expired certificate is never presented: the handshake for its name fails.
    let err = https_get(addr, "old.example.com", "old.example.com", &old_der, None)
        .expect_err("an expired certificate must not be served");
    assert!(
        !err.contains("Expired"),
        "the expired certificate was served: {err}"
    );
    rt.block_on(echo.shutdown());
}

/// A Gateway `default/edge` with two HTTPS listeners on `port`, each `(name, hostname)` with the
/// certificate of the Secret of the same name, and an HTTPRoute to the `web` echo backend.
fn two_https_listeners(
    port: u16,
    listeners: [(&str, &str); 2],
    secrets: [String; 2],
    echo_port: u16,
) -> String {
    let [(a, a_host), (b, b_host)] = listeners;
    let [a_secret, b_secret] = secrets;
    let web_backend = common::web_backend(echo_port);
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
  listeners:
  - name: {a}
    port: {port}
    protocol: HTTPS
    hostname: '{a_host}'
    tls: {{certificateRefs: [{{name: {a}}}]}}
  - name: {b}
    port: {port}
    protocol: HTTPS
    hostname: '{b_host}'
    tls: {{certificateRefs: [{{name: {b}}}]}}
---
{a_secret}---
{b_secret}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: default}}
spec:
  parentRefs: [{{name: edge}}]
  rules: [{{backendRefs: [{{name: web, port: 80}}]}}]
---
{web_backend}
"
    )
}

/// `GET /` over HTTPS once the listener serves (10 s at most).
fn first_https_get(
    addr: SocketAddr,
    host: &str,
    root: &rustls::pki_types::CertificateDer<'static>,
) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match https_get(addr, host, host, root, None) {
            Ok(r) => return r,
            Err(e) => {
                assert!(Instant::now() < deadline, "HTTPS never served: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}
