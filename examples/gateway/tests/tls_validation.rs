//! HTTPS listeners end to end: misdirected requests (GEP-3567) and frontend client certificate
//! validation (GEP-91) in its two modes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Gateway, free_port, https_get};
use rustls::pki_types::CertificateDer;

/// A CA that signs server and client certificates.
struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let ca = params.self_signed(&key).unwrap();
        Pki {
            ca_pem: ca.pem(),
            ca_der: ca.der().clone(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// (certificate PEM, key PEM).
    fn leaf(&self, names: &[&str], usage: rcgen::ExtendedKeyUsagePurpose) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        params.extended_key_usages = vec![usage];
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn server(&self, names: &[&str]) -> (String, String) {
        self.leaf(names, rcgen::ExtendedKeyUsagePurpose::ServerAuth)
    }

    fn client(&self) -> (String, String) {
        self.leaf(
            &["client.example.com"],
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        )
    }
}

/// Retries `f` until it answers (the gateway loads its configuration asynchronously).
fn eventually(what: &str, gw: &Gateway, f: impl Fn() -> Result<u16, String>) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match f() {
            Ok(code) => return code,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "{what} never served: {e}\n{}",
                    gw.log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

const CLASS: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gw}
spec: {controllerName: gw.dev/gateway}
";

fn backend(echo_port: u16) -> String {
    format!("---\n{}", common::web_backend(echo_port))
}

fn secret(name: &str, (cert, key): &(String, String)) -> String {
    format!("---\n{}", common::tls_secret(name, cert, key))
}

#[test]
fn requests_for_another_listeners_host_are_misdirected() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let echo = rt
        .block_on(gw_echo::EchoServer::start(
            gw_echo::EchoConfig::loopback_http("web-v1", "default"),
        ))
        .unwrap();
    let pki = Pki::new("server CA");
    let cert = pki.server(&["example.org", "*.example.org"]);
    let port = free_port();
    let gw = Gateway::start("misdirected", "127.0.60.0/24");
    let yaml = format!(
        "{CLASS}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: default}}
spec:
  gatewayClassName: gw
  listeners:
  - {{name: any, port: {port}, protocol: HTTPS, tls: {{certificateRefs: [{{name: cert}}]}}}}
  - {{name: second, port: {port}, protocol: HTTPS, hostname: second.example.org, tls: {{certificateRefs: [{{name: cert}}]}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: default}}
spec:
  parentRefs: [{{name: edge}}]
  rules: [{{backendRefs: [{{name: web, port: 80}}]}}]
{}{}",
        secret("cert", &cert),
        backend(echo.http_addr().unwrap().port()),
    );
    std::fs::write(gw.config().join("all.yaml"), yaml).unwrap();
    let addr: SocketAddr = format!("127.0.60.1:{port}").parse().unwrap();
    let root = &pki.ca_der;
    let first = eventually("HTTPS", &gw, || {
        https_get(addr, "example.org", "example.org", root, None).map(|r| r.0)
    });
    assert_eq!(first, 200);
    let cases = [
        ("second.example.org", "second.example.org", 200),
        // The connection was set up for the catch-all listener; the host has its own.
        ("example.org", "second.example.org", 421),
        // The connection was set up for `second`; the host belongs to the catch-all one.
        ("second.example.org", "example.org", 421),
        ("second.example.org", "other.example.org", 421),
        // Unknown SNI and host both select the catch-all listener.
        ("other.example.org", "example.org", 200),
    ];
    for (sni, host, want) in cases {
        assert_eq!(
            https_get(addr, sni, host, root, None).map(|r| r.0),
            Ok(want),
            "SNI {sni}, host {host}"
        );
    }
    rt.block_on(echo.shutdown());
}

#[test]
fn frontend_client_certificates_allow_valid_only_and_insecure_fallback() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let echo = rt
        .block_on(gw_echo::EchoServer::start(
            gw_echo::EchoConfig::loopback_http("web-v1", "default"),
        ))
        .unwrap();
    let servers = Pki::new("server CA");
    let clients = Pki::new("client CA");
    let strangers = Pki::new("unknown CA");
    let cert = servers.server(&["example.org"]);
    let valid = clients.client();
    let invalid = strangers.client();
    let (strict, fallback) = (free_port(), free_port());
    let gw = Gateway::start("client-certs", "127.0.61.0/24");
    let yaml = format!(
        "{CLASS}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: default}}
spec:
  gatewayClassName: gw
  tls:
    frontend:
      default:
        validation:
          caCertificateRefs: [{{group: '', kind: ConfigMap, name: client-ca}}]
      perPort:
      - port: {fallback}
        tls:
          validation:
            caCertificateRefs: [{{group: '', kind: ConfigMap, name: client-ca}}]
            mode: AllowInsecureFallback
  listeners:
  - {{name: strict, port: {strict}, protocol: HTTPS, tls: {{certificateRefs: [{{name: cert}}]}}}}
  - {{name: fallback, port: {fallback}, protocol: HTTPS, tls: {{certificateRefs: [{{name: cert}}]}}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: client-ca, namespace: default}}
data:
  ca.crt: |
{}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: default}}
spec:
  parentRefs: [{{name: edge}}]
  rules: [{{backendRefs: [{{name: web, port: 80}}]}}]
---
apiVersion: policy.gw.dev/v1alpha1
kind: TrafficPolicy
metadata: {{name: identity, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: edge}}]
  default:
    transformation:
      request:
        set:
        - name: x-client-san
          value: 'has(connection.dns_san_peer_certificate) ? connection.dns_san_peer_certificate : \"none\"'
        - name: x-client-subject
          value: 'has(connection.subject_peer_certificate) ? connection.subject_peer_certificate : \"none\"'
        - {{name: x-sni, value: connection.requested_server_name}}
{}{}",
        clients
            .ca_pem
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>(),
        secret("cert", &cert),
        backend(echo.http_addr().unwrap().port()),
    );
    std::fs::write(gw.config().join("all.yaml"), yaml).unwrap();
    let at = |port: u16| -> SocketAddr { format!("127.0.61.1:{port}").parse().unwrap() };
    let root = &servers.ca_der;
    let send =
        |port, client| https_get(at(port), "example.org", "example.org", root, client).map(|r| r.0);
    // The client identity the policy layers see (a TrafficPolicy copies it into headers that
    // the echo backend reflects): a verified certificate's SAN and subject, else none.
    let identity = |port, client| {
        let (code, body) = https_get(at(port), "example.org", "example.org", root, client)?;
        assert_eq!(code, 200, "{body}");
        Ok::<_, String>(
            ["x-client-san", "x-client-subject", "x-sni"].map(|h| echoed_header(&body, h)),
        )
    };

    // AllowValidOnly (the default mode): only a certificate from the CA gets through.
    assert_eq!(
        eventually("strict", &gw, || send(strict, Some(&valid))),
        200
    );
    assert!(send(strict, None).is_err(), "no certificate was accepted");
    assert!(
        send(strict, Some(&invalid)).is_err(),
        "a certificate from an unknown CA was accepted"
    );

    // AllowInsecureFallback: valid, absent and invalid certificates are all let through.
    assert_eq!(
        eventually("fallback", &gw, || send(fallback, Some(&valid))),
        200
    );
    assert_eq!(send(fallback, None), Ok(200));
    assert_eq!(send(fallback, Some(&invalid)), Ok(200));

    // A verified certificate becomes the identity; under AllowInsecureFallback an invalid one
    // does not (it was let through, not verified), and neither does a missing one.
    let client = ["client.example.com", "CN=client.example.com", "example.org"].map(String::from);
    let nobody = ["none", "none", "example.org"].map(String::from);
    assert_eq!(identity(strict, Some(&valid)), Ok(client.clone()));
    assert_eq!(identity(fallback, Some(&valid)), Ok(client));
    assert_eq!(identity(fallback, Some(&invalid)), Ok(nobody.clone()));
    assert_eq!(identity(fallback, None), Ok(nobody));
    rt.block_on(echo.shutdown());
}

/// The value of request header `name` as the echo backend reflects it (`""` if absent).
fn echoed_header(body: &str, name: &str) -> String {
    let json = body.split_once("\r\n\r\n").map_or(body, |(_, b)| b);
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["headers"]
        .as_object()
        .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
        .map(|(_, v)| match v {
            serde_json::Value::Array(a) => a
                .first()
                .and_then(|x| x.as_str())
                .unwrap_or_default()
                .to_owned(),
            other => other.as_str().unwrap_or_default().to_owned(),
        })
        .unwrap_or_default()
}
