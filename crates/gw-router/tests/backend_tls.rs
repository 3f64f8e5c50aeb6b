//! TLS towards backends (BackendTLSPolicy, GEP-1897; backend client certificates, GEP-3155)
//! against gw-echo's HTTPS listener, which reports the SNI and client certificates it saw.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;

use common::{GATEWAY, call, echoed, get, router, service};
use http::StatusCode;

/// A CA, and a leaf certificate signed by it for `sans` (`scheme://` entries are URI SANs).
struct Pki {
    ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "gw test CA");
        let ca = params.self_signed(&key).unwrap();
        Pki {
            ca_pem: ca.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// (certificate PEM, key PEM).
    fn leaf(&self, sans: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        for s in sans {
            let name = rcgen::string::Ia5String::try_from(*s).unwrap();
            params.subject_alt_names.push(if s.contains("://") {
                rcgen::SanType::URI(name)
            } else {
                rcgen::SanType::DnsName(name)
            });
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn indent(pem: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    pem.lines().map(|l| format!("{pad}{l}\n")).collect()
}

/// An echo backend serving HTTPS with `cert`, asking for client certificates from `client_ca`.
async fn tls_echo(
    pod: &str,
    (cert_pem, key_pem): (String, String),
    client_ca: Option<&str>,
) -> (gw_echo::EchoServer, SocketAddr) {
    let config = gw_echo::EchoConfig {
        pod: pod.to_owned(),
        namespace: "default".to_owned(),
        https: Some(gw_echo::HttpsConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            cert_pem,
            key_pem,
            client_ca_pem: client_ca.map(str::to_owned),
        }),
        ..gw_echo::EchoConfig::default()
    };
    let echo = gw_echo::EchoServer::start(config).await.unwrap();
    let addr = echo.https_addr().unwrap();
    (echo, addr)
}

/// A route `/` to Service `secure`, whose port has a BackendTLSPolicy trusting `ca_pem`.
fn manifests(addr: SocketAddr, ca_pem: &str, validation_extra: &str, gateway: &str) -> String {
    format!(
        r#"{gateway}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: default}}
spec:
  parentRefs: [{{name: edge}}]
  rules: [{{backendRefs: [{{name: secure, port: 8080}}]}}]
{service}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: backend-ca, namespace: default}}
data:
  ca.crt: |
{ca}---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: secure, namespace: default}}
spec:
  targetRefs: [{{group: "", kind: Service, name: secure}}]
  validation:
    caCertificateRefs: [{{group: "", kind: ConfigMap, name: backend-ca}}]
    hostname: backend.example.com
{validation_extra}"#,
        service = service("secure", &[addr], None),
        ca = indent(ca_pem, 4),
    )
}

#[tokio::test]
async fn backend_tls_policy_sets_sni_and_verifies_the_ca() {
    let pki = Pki::new();
    let (echo, addr) = tls_echo("secure-v1", pki.leaf(&["backend.example.com"]), None).await;
    let r = router(&manifests(addr, &pki.ca_pem, "", GATEWAY));
    for _ in 0..2 {
        // The second request reuses the pooled connection.
        let (parts, json) = echoed(call(&r, get("/x", "shop.example.com")).await).await;
        assert_eq!(parts.status, StatusCode::OK, "{json}");
        assert_eq!(json["pod"], "secure-v1");
        assert_eq!(json["host"], "shop.example.com");
        assert_eq!(json["tls"]["serverName"], "backend.example.com");
        assert_eq!(json["tls"]["negotiatedProtocol"], "http/1.1");
        assert!(json["tls"].get("peerCertificates").is_none(), "{json}");
    }
    echo.shutdown().await;
}

#[tokio::test]
async fn certificate_from_another_ca_is_502() {
    let pki = Pki::new();
    let other = Pki::new();
    let (echo, addr) = tls_echo("secure-v1", pki.leaf(&["backend.example.com"]), None).await;
    let r = router(&manifests(addr, &other.ca_pem, "", GATEWAY));
    let resp = call(&r, get("/x", "shop.example.com")).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    echo.shutdown().await;
}

#[tokio::test]
async fn certificate_for_another_hostname_is_502() {
    let pki = Pki::new();
    let (echo, addr) = tls_echo("secure-v1", pki.leaf(&["other.example.com"]), None).await;
    let r = router(&manifests(addr, &pki.ca_pem, "", GATEWAY));
    let resp = call(&r, get("/x", "shop.example.com")).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    echo.shutdown().await;
}

#[tokio::test]
async fn subject_alt_names_are_verified_instead_of_the_hostname() {
    // GEP-1897: "When specified, the certificate served from the backend MUST have at least one
    // Subject Alternate Name matching one of the specified SubjectAltNames."
    let pki = Pki::new();
    let leaf = pki.leaf(&["abc.example.com", "spiffe://abc.example.com/test-identity"]);
    let (echo, addr) = tls_echo("secure-v1", leaf, None).await;
    let uri = "    subjectAltNames: [{type: URI, uri: 'spiffe://abc.example.com/test-identity'}]\n";
    let r = router(&manifests(addr, &pki.ca_pem, uri, GATEWAY));
    let (parts, json) = echoed(call(&r, get("/x", "shop.example.com")).await).await;
    assert_eq!(parts.status, StatusCode::OK, "{json}");
    // The hostname is still the SNI, though the certificate is not valid for it.
    assert_eq!(json["tls"]["serverName"], "backend.example.com");

    let dns = "    subjectAltNames: [{type: Hostname, hostname: nope.example.com}, {type: Hostname, hostname: abc.example.com}]\n";
    let r = router(&manifests(addr, &pki.ca_pem, dns, GATEWAY));
    assert_eq!(call(&r, get("/x", "a")).await.status(), StatusCode::OK);

    let wrong = "    subjectAltNames: [{type: URI, uri: 'spiffe://abc.example.com/other'}]\n";
    let r = router(&manifests(addr, &pki.ca_pem, wrong, GATEWAY));
    assert_eq!(
        call(&r, get("/x", "a")).await.status(),
        StatusCode::BAD_GATEWAY
    );
    echo.shutdown().await;
}

#[tokio::test]
async fn gateway_backend_client_certificate_is_presented() {
    // GEP-3155: Gateway.spec.tls.backend.clientCertificateRef.
    let pki = Pki::new();
    let clients = Pki::new();
    let (client_pem, client_key) = clients.leaf(&["gateway.example.com"]);
    let (echo, addr) = tls_echo(
        "secure-v1",
        pki.leaf(&["backend.example.com"]),
        Some(&clients.ca_pem),
    )
    .await;
    let gateway = format!(
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
  tls:
    backend:
      clientCertificateRef: {{group: "", kind: Secret, name: gateway-client}}
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: gateway-client, namespace: default}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{}  tls.key: |
{}"#,
        indent(&client_pem, 4),
        indent(&client_key, 4)
    );
    let r = router(&manifests(addr, &pki.ca_pem, "", &gateway));
    let (parts, json) = echoed(call(&r, get("/x", "shop.example.com")).await).await;
    assert_eq!(parts.status, StatusCode::OK, "{json}");
    let presented = json["tls"]["peerCertificates"][0]
        .as_str()
        .unwrap_or_default();
    let der = |pem: &str| {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    };
    assert_eq!(der(presented), der(&client_pem), "{json}");
    echo.shutdown().await;
}

#[tokio::test]
async fn h2c_app_protocol_with_a_policy_speaks_h2_over_tls() {
    let pki = Pki::new();
    let (echo, addr) = tls_echo("secure-v1", pki.leaf(&["backend.example.com"]), None).await;
    let yaml = manifests(addr, &pki.ca_pem, "", GATEWAY).replace(
        "ports: [{name: http, port: 8080}]",
        "ports: [{name: http, port: 8080, appProtocol: kubernetes.io/h2c}]",
    );
    let r = router(&yaml);
    for _ in 0..2 {
        let (parts, json) = echoed(call(&r, get("/x", "shop.example.com")).await).await;
        assert_eq!(parts.status, StatusCode::OK, "{json}");
        assert_eq!(json["proto"], "HTTP/2.0", "{json}");
        assert_eq!(json["tls"]["negotiatedProtocol"], "h2");
        assert_eq!(json["host"], "shop.example.com");
    }
    echo.shutdown().await;
}

#[tokio::test]
async fn https_app_protocol_without_policy_verifies_against_platform_roots() {
    // A private CA is not in the platform's store: the backend does not verify (502), and gw
    // never falls back to unverified TLS.
    let pki = Pki::new();
    let (echo, addr) = tls_echo("secure-v1", pki.leaf(&["secure.default.svc"]), None).await;
    let yaml = format!(
        "{GATEWAY}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: web, namespace: default}}\nspec:\n  parentRefs: [{{name: edge}}]\n  rules: [{{backendRefs: [{{name: secure, port: 8080}}]}}]\n{}",
        service("secure", &[addr], Some("https"))
    );
    let r = router(&yaml);
    assert_eq!(
        call(&r, get("/x", "a")).await.status(),
        StatusCode::BAD_GATEWAY
    );
    echo.shutdown().await;
}

/// GEP-3567 through the `Router`: the conformance Gateway `same-namespace-with-https-listener`
/// and the cases of HTTPRouteHTTPSListenerDetectMisdirectedRequests (host, SNI, expected).
#[tokio::test]
async fn conformance_https_listener_detect_misdirected_requests() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf(&["*", "*.org", "*.wildcard.org"]);
    let (e1, e2, e3) = (
        common::echo("v1").await,
        common::echo("v2").await,
        common::echo("v3").await,
    );
    let listener = |name: &str, hostname: &str| {
        format!(
            "  - {{name: {name}, port: 443, protocol: HTTPS, {hostname} tls: {{certificateRefs: [{{name: cert}}]}}}}\n"
        )
    };
    let route = |name: &str, section: &str, hostnames: &str, backend: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  parentRefs: [{{name: edge, sectionName: {section}}}]\n  {hostnames}\n  rules: [{{backendRefs: [{{name: {backend}, port: 8080}}]}}]\n"
        )
    };
    let yaml = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: gw}}\nspec: {{controllerName: gw.dev/gateway}}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: edge, namespace: default}}\nspec:\n  gatewayClassName: gw\n  listeners:\n{}{}{}{}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: cert, namespace: default}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}{}{}{}{}{}{}{}",
        listener("https", ""),
        listener("https-with-hostname", "hostname: second-example.org,"),
        listener(
            "https-with-wildcard-hostname",
            "hostname: '*.wildcard.org',"
        ),
        listener(
            "https-with-hostname-matching-wildcard",
            "hostname: fourth-example.wildcard.org,"
        ),
        indent(&cert, 4),
        indent(&key, 4),
        route("r1", "https", "hostnames: [example.org]", "v1"),
        route("r2", "https-with-hostname", "", "v2"),
        route("r3", "https-with-wildcard-hostname", "", "v3"),
        route("r4", "https-with-hostname-matching-wildcard", "", "v1"),
        service("v1", &[common::addr(&e1)], None),
        service("v2", &[common::addr(&e2)], None),
        service("v3", &[common::addr(&e3)], None),
    );
    let r = router(&yaml);
    let cases: [(&str, Option<&str>, u16, &str); 17] = [
        ("example.org", Some("example.org"), 200, "v1"),
        ("second-example.org", Some("example.org"), 421, ""),
        ("unknown-example.org", Some("example.org"), 404, ""),
        ("second-example.org", Some("second-example.org"), 200, "v2"),
        ("example.org", Some("second-example.org"), 421, ""),
        ("unknown-example.org", Some("second-example.org"), 421, ""),
        (
            "third-example.wildcard.org",
            Some("third-example.wildcard.org"),
            200,
            "v3",
        ),
        (
            "fith-example.wildcard.org",
            Some("third-example.wildcard.org"),
            200,
            "v3",
        ),
        (
            "fourth-example.wildcard.org",
            Some("third-example.wildcard.org"),
            421,
            "",
        ),
        (
            "second-example.org",
            Some("third-example.wildcard.org"),
            421,
            "",
        ),
        (
            "unknown-example.org",
            Some("third-example.wildcard.org"),
            421,
            "",
        ),
        (
            "fourth-example.wildcard.org",
            Some("fourth-example.wildcard.org"),
            200,
            "v1",
        ),
        (
            "fith-example.wildcard.org",
            Some("fourth-example.wildcard.org"),
            421,
            "",
        ),
        ("example.org", Some("unknown-example.org"), 200, "v1"),
        ("unknown-example.org", Some("unknown-example.org"), 404, ""),
        // Without SNI the host alone selects the listener.
        ("second-example.org", None, 200, "v2"),
        ("fourth-example.wildcard.org", None, 200, "v1"),
    ];
    for (host, sni, status, pod) in cases {
        let req = http::Request::get("/detect-misdirected-requests")
            .header("host", host)
            .extension(gw_router::Incoming {
                gateway: common::gateway(),
                port: 443,
                scheme: gw_router::Scheme::Https,
                peer: None,
                sni: sni.map(str::to_owned),
            })
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = call(&r, req).await;
        assert_eq!(resp.status().as_u16(), status, "host {host}, SNI {sni:?}");
        if status == 200 {
            let (_, json) = echoed(resp).await;
            assert_eq!(json["pod"], pod, "host {host}, SNI {sni:?}");
        }
    }
    for e in [e1, e2, e3] {
        e.shutdown().await;
    }
}
