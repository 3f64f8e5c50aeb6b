//! HTTPS listeners: certificates chosen by SNI from Secrets, ALPN, unknown SNI refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Gateway, free_port};

fn cert(names: &[&str]) -> (String, String, rustls::pki_types::CertificateDer<'static>) {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert =
        rcgen::CertificateParams::new(names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
            .expect("params")
            .self_signed(&key)
            .expect("cert");
    (cert.pem(), key.serialize_pem(), cert.der().clone())
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("    {l}\n")).collect()
}

/// Sends `GET /` with `sni` and `host` over TLS 1.3/1.2; the response status, or the error.
fn get(
    addr: SocketAddr,
    sni: &str,
    host: &str,
    root: &rustls::pki_types::CertificateDer<'static>,
) -> Result<(u16, String), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name =
        rustls::pki_types::ServerName::try_from(sni.to_owned()).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let tcp =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    match tls.read_to_end(&mut buf) {
        Ok(_) => {}
        // Servers may close without close_notify after `Connection: close`.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => {}
        Err(e) => return Err(e.to_string()),
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no status line")?;
    Ok((code, text))
}

#[test]
fn https_listener_terminates_tls_with_the_certificate_for_the_sni() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let echo = rt
        .block_on(gw_echo::EchoServer::start(
            gw_echo::EchoConfig::loopback_http("secure-abc-def", "default"),
        ))
        .expect("echo");
    let echo_port = echo.http_addr().expect("addr").port();
    let (a_pem, a_key, a_der) = cert(&["a.example.com"]);
    let (b_pem, b_key, b_der) = cert(&["*.b.example.com"]);
    let port = free_port();
    let gw = Gateway::start("https", "127.0.45.0/24");
    let yaml = format!(
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
  - name: a
    port: {port}
    protocol: HTTPS
    hostname: a.example.com
    tls: {{certificateRefs: [{{name: a}}]}}
  - name: b
    port: {port}
    protocol: HTTPS
    hostname: '*.b.example.com'
    tls: {{certificateRefs: [{{name: b}}]}}
---
apiVersion: v1
kind: Secret
metadata: {{name: a, namespace: default}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{}  tls.key: |
{}---
apiVersion: v1
kind: Secret
metadata: {{name: b, namespace: default}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{}  tls.key: |
{}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: default}}
spec:
  parentRefs: [{{name: edge}}]
  rules: [{{backendRefs: [{{name: web, port: 80}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-1, namespace: default, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: http, port: {echo_port}}}]
endpoints: [{{addresses: [127.0.0.1]}}]
",
        indent(&a_pem),
        indent(&a_key),
        indent(&b_pem),
        indent(&b_key)
    );
    std::fs::write(gw.config().join("all.yaml"), yaml).expect("write");
    let addr: SocketAddr = format!("127.0.45.1:{port}").parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(10);
    let (code, body) = loop {
        match get(addr, "a.example.com", "a.example.com", &a_der) {
            Ok(r) => break r,
            Err(e) => {
                assert!(Instant::now() < deadline, "HTTPS never served: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("secure-abc-def"), "{body}");
    // The wildcard listener serves its own certificate (verified against b's root).
    let (code, _) = get(addr, "x.b.example.com", "x.b.example.com", &b_der).expect("b");
    assert_eq!(code, 200);
    // With a's root, b's certificate does not verify: the right certificate was chosen.
    assert!(get(addr, "x.b.example.com", "x.b.example.com", &a_der).is_err());
    // An SNI no listener accepts is refused during the handshake.
    assert!(get(addr, "c.example.net", "c.example.net", &a_der).is_err());
    rt.block_on(echo.shutdown());
}
