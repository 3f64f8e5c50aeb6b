//! The clients of the live replay: HTTP/1.1 with one connection per request (the suite turns
//! keep-alives off), cleartext HTTP/2 with prior knowledge, HTTPS / H2 and the TLS dialer of
//! the `TLS` protocol ([`TlsClient`]), gRPC over h2c (tonic on a hyper HTTP/2 connection, so
//! that the dial address and `:authority` are independent), and a WebSocket exchange. Every
//! exchange has a deadline; nothing here panics on what the peer sends.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderName, HeaderValue, Method, Request as HttpRequest, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use gw_echo::proto::{EchoRequest, EchoResponse};

use super::expect::{Response, SentRequest, is_redirect, parse_url};

/// How the error of a TLS handshake in which the server did not ask for the offered client
/// certificate starts (the handshake itself succeeded).
pub const CLIENT_CERT_NOT_ASKED: &str = "the server did not ask for a client certificate";

/// Go's `http.Client` follows at most 10 redirects.
const MAX_REDIRECTS: usize = 10;

/// Which HTTP client.
#[derive(Debug, Clone)]
pub enum HttpVersion {
    /// HTTP/1.1, `Connection: close`.
    Http1,
    /// HTTP/2 with prior knowledge over cleartext.
    H2cPriorKnowledge,
    /// HTTP/1.1 over TLS (ALPN `http/1.1`).
    Https(Arc<TlsClient>),
    /// HTTP/2 over TLS (ALPN `h2`), a new connection per request like the suite's transport.
    H2(Arc<TlsClient>),
}

impl HttpVersion {
    fn is_http1(&self) -> bool {
        matches!(self, HttpVersion::Http1 | HttpVersion::Https(_))
    }

    fn tls(&self) -> Option<&TlsClient> {
        match self {
            HttpVersion::Https(t) | HttpVersion::H2(t) => Some(t),
            HttpVersion::Http1 | HttpVersion::H2cPriorKnowledge => None,
        }
    }
}

/// Verifies like rustls's WebPKI verifier, but matches names the way Go's crypto/x509 does (the
/// suite's client): a leading `*.` label matches exactly one label, even directly under a
/// top-level domain (`*.org` matches `example.org`), which WebPKI refuses.
#[derive(Debug)]
struct GoNames(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for GoNames {
    fn verify_server_cert(
        &self,
        end_entity: &rustls_pki_types::CertificateDer<'_>,
        intermediates: &[rustls_pki_types::CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::{CertificateError, Error};
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            // rustls checks the chain before the name: a name error means the chain is valid.
            Err(Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                presented,
                ..
            })) if go_name_matches(&presented, server_name) => {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Go's `matchHostnames` over the names rustls presents (`DnsName("*.org")`, ...): equal
/// ignoring case, or a `*` first label standing for exactly one label of the host.
fn go_name_matches(presented: &[String], server_name: &rustls_pki_types::ServerName<'_>) -> bool {
    let rustls_pki_types::ServerName::DnsName(host) = server_name else {
        return false;
    };
    let host = host.as_ref().trim_end_matches('.').to_ascii_lowercase();
    let host_labels: Vec<&str> = host.split('.').collect();
    presented
        .iter()
        .filter_map(|p| p.strip_prefix("DnsName(\"")?.strip_suffix("\")"))
        .any(|pattern| {
            let pattern = pattern.to_ascii_lowercase();
            let labels: Vec<&str> = pattern.split('.').collect();
            labels.len() == host_labels.len()
                && labels
                    .iter()
                    .zip(&host_labels)
                    .enumerate()
                    .all(|(i, (p, h))| (i == 0 && *p == "*") || p == h)
        })
}

/// Accepts any server certificate (signatures still checked): the TLS client of a
/// `connection_rejected` case without `server_ca`, where only a failure caused by the gateway
/// may count, never one of the client's own verification.
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Offers the case's client certificate (Go's `GetClientCertificate`) and records that the
/// server asked for one: the suite asserts it *was* asked when a client certificate is given.
#[derive(Debug)]
pub struct AskedForClientCert {
    key: Arc<rustls::sign::CertifiedKey>,
    asked: std::sync::atomic::AtomicBool,
}

impl AskedForClientCert {
    fn new(key: Arc<rustls::sign::CertifiedKey>) -> AskedForClientCert {
        AskedForClientCert {
            key,
            asked: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether the server sent a CertificateRequest on this connection.
    pub fn asked(&self) -> bool {
        self.asked.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl rustls::client::ResolvesClientCert for AskedForClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.asked.store(true, std::sync::atomic::Ordering::SeqCst);
        Some(self.key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// TLS settings of the HTTPS, H2 and TLS clients: the trusted root, the SNI and, optionally, a
/// client certificate offered when the gateway asks for one (and which it must ask for).
pub struct TlsClient {
    config: Arc<rustls::ClientConfig>,
    client_key: Option<Arc<rustls::sign::CertifiedKey>>,
    sni: rustls_pki_types::ServerName<'static>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("sni", &self.sni)
            .field("client_cert", &self.client_key.is_some())
            .finish()
    }
}

impl TlsClient {
    /// A client trusting `server_ca_pem`, sending `sni`, offering `client` (cert, key) PEMs;
    /// `h2` selects ALPN `h2` instead of `http/1.1`.
    pub fn new(
        server_ca_pem: &str,
        sni: &str,
        client: Option<(&str, &str)>,
        h2: bool,
    ) -> Result<TlsClient, String> {
        let alpn = if h2 {
            b"h2".to_vec()
        } else {
            b"http/1.1".to_vec()
        };
        TlsClient::build(Some(server_ca_pem), sni, client, vec![alpn])
    }

    /// The client of the `TLS` protocol (Go's `tls.Dialer`: no ALPN, TLS 1.2 or later). Without
    /// `server_ca_pem` any server certificate is accepted.
    pub fn raw(server_ca_pem: Option<&str>, sni: &str) -> Result<TlsClient, String> {
        TlsClient::build(server_ca_pem, sni, None, Vec::new())
    }

    fn build(
        server_ca_pem: Option<&str>,
        sni: &str,
        client: Option<(&str, &str)>,
        alpn: Vec<Vec<u8>>,
    ) -> Result<TlsClient, String> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = match server_ca_pem {
            None => Arc::new(AnyServerCert(provider.clone())),
            Some(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                    let cert = cert.map_err(|e| format!("server_ca: {e}"))?;
                    roots.add(cert).map_err(|e| format!("server_ca: {e}"))?;
                }
                let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider.clone(),
                )
                .build()
                .map_err(|e| format!("server_ca: {e}"))?;
                Arc::new(GoNames(webpki))
            }
        };
        let client_key = match client {
            None => None,
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("client_cert: {e}"))?;
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
                    .map_err(|e| format!("client key: {e}"))?;
                let certified = rustls::sign::CertifiedKey::from_der(chain, key, &provider)
                    .map_err(|e| format!("client certificate: {e}"))?;
                Some(Arc::new(certified))
            }
        };
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        config.alpn_protocols = alpn;
        let sni = rustls_pki_types::ServerName::try_from(sni.to_owned())
            .map_err(|e| format!("sni {sni:?}: {e}"))?;
        Ok(TlsClient {
            config: Arc::new(config),
            client_key,
            sni,
        })
    }

    /// The TLS handshake on `stream`. With a client certificate, a handshake in which the
    /// server did not ask for one fails (the suite's assertion).
    pub async fn handshake(
        &self,
        stream: TcpStream,
        addr: SocketAddr,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
        let (config, recorder) = match &self.client_key {
            None => (self.config.clone(), None),
            Some(key) => {
                let recorder = Arc::new(AskedForClientCert::new(key.clone()));
                let mut config = (*self.config).clone();
                config.client_auth_cert_resolver = recorder.clone();
                (Arc::new(config), Some(recorder))
            }
        };
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(self.sni.clone(), stream)
            .await
            .map_err(|e| format!("TLS handshake with {addr} (SNI {:?}): {e}", self.sni))?;
        if let Some(recorder) = recorder
            && !recorder.asked()
        {
            return Err(format!(
                "{CLIENT_CERT_NOT_ASKED} at {addr} (SNI {:?}), but the case offers one (the \
                 suite asserts it was asked)",
                self.sni
            ));
        }
        Ok(stream)
    }
}

/// Connects to `addr` (TCP, no delay). Errors start with `connect `.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, String> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(e)) => Err(format!("connect {addr}: {e}")),
        Err(_) => Err(format!("connect {addr}: timed out after {timeout:?}")),
    }
}

/// Sends `sent` to `addr` (following redirects unless `unfollow_redirect`; a redirect is
/// followed on the same gateway address, at the Location's port, with the Location's host as
/// Host header, since the suite's hosts do not resolve here).
pub async fn http_exchange(
    addr: SocketAddr,
    sent: &SentRequest,
    version: &HttpVersion,
    follow_redirects: bool,
    timeout: Duration,
) -> Result<Response, String> {
    let mut current = sent.clone();
    let mut target = addr;
    for _ in 0..=MAX_REDIRECTS {
        let resp = match tokio::time::timeout(timeout, once(target, &current, version)).await {
            Ok(r) => r?,
            Err(_) => return Err(format!("no response within {timeout:?}")),
        };
        if !follow_redirects || !is_redirect(resp.status) {
            return Ok(resp);
        }
        let Some(location) = resp.values("location").first().map(|l| (*l).to_owned()) else {
            return Ok(resp);
        };
        let url = parse_url(&location);
        match url.scheme.as_str() {
            "" => {}
            "http" => {
                let port = url.port.parse().unwrap_or(80);
                target = SocketAddr::new(addr.ip(), port);
                current.host = if url.port.is_empty() {
                    url.host.clone()
                } else {
                    format!("{}:{}", url.host, url.port)
                };
            }
            other => {
                return Err(format!(
                    "redirect to {location}: following a {other} redirect is not supported by \
                     the harness"
                ));
            }
        }
        current.path = if url.query.is_empty() {
            location_path(&location)
        } else {
            format!("{}?{}", location_path(&location), url.query)
        };
        if matches!(resp.status, 301..=303) && current.method != "HEAD" {
            current.method = "GET".to_owned();
            current.body = None;
        }
    }
    Err(format!("stopped after {MAX_REDIRECTS} redirects"))
}

/// The raw (still escaped) path of a Location.
fn location_path(location: &str) -> String {
    let without_fragment = location.split('#').next().unwrap_or_default();
    let after_authority = match without_fragment.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
        None => without_fragment,
    };
    let path = after_authority.split('?').next().unwrap_or_default();
    if path.is_empty() {
        "/".to_owned()
    } else {
        path.to_owned()
    }
}

fn build_request(
    sent: &SentRequest,
    version: &HttpVersion,
) -> Result<HttpRequest<Full<Bytes>>, String> {
    let method = Method::from_bytes(sent.method.as_bytes())
        .map_err(|e| format!("method {:?}: {e}", sent.method))?;
    let uri: Uri = match version {
        HttpVersion::Http1 | HttpVersion::Https(_) => sent.path.parse(),
        HttpVersion::H2cPriorKnowledge => format!("http://{}{}", sent.host, sent.path).parse(),
        HttpVersion::H2(_) => format!("https://{}{}", sent.host, sent.path).parse(),
    }
    .map_err(|e| format!("request target {:?}: {e}", sent.path))?;
    let body = sent.body.clone().unwrap_or_default();
    let mut req = HttpRequest::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("building the request: {e}"))?;
    let headers = req.headers_mut();
    let mut set = |name: &str, value: &str| -> Result<(), String> {
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| format!("header name {name:?}: {e}"))?;
        let v = HeaderValue::from_str(value).map_err(|e| format!("header {name}: {e}"))?;
        headers.insert(n, v);
        Ok(())
    };
    if version.is_http1() {
        set("host", &sent.host)?;
        set("connection", "close")?;
        set("user-agent", "Go-http-client/1.1")?;
    } else {
        set("user-agent", "Go-http-client/2.0")?;
    }
    set("accept-encoding", "gzip")?;
    for (name, value) in &sent.headers {
        if name.eq_ignore_ascii_case("host") {
            continue;
        }
        set(name, value)?;
    }
    set("x-echo-set-header", &sent.echo_set_header)?;
    Ok(req)
}

async fn once(
    addr: SocketAddr,
    sent: &SentRequest,
    version: &HttpVersion,
) -> Result<Response, String> {
    let req = build_request(sent, version)?;
    let stream = connect(addr, Duration::from_secs(5)).await?;
    match version.tls() {
        None => send_over(TokioIo::new(stream), addr, req, version.is_http1()).await,
        Some(tls) => {
            let stream = tls.handshake(stream, addr).await?;
            send_over(TokioIo::new(stream), addr, req, version.is_http1()).await
        }
    }
}

async fn send_over<I>(
    io: I,
    addr: SocketAddr,
    req: HttpRequest<Full<Bytes>>,
    http1: bool,
) -> Result<Response, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    if http1 {
        let (mut send, conn) = hyper::client::conn::http1::Builder::new()
            .title_case_headers(true)
            .handshake(io)
            .await
            .map_err(|e| format!("HTTP/1.1 handshake with {addr}: {e}"))?;
        let conn = tokio::spawn(conn);
        let resp = send.send_request(req).await;
        let out = read_response(addr, resp).await;
        conn.abort();
        out
    } else {
        let (mut send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake(io)
            .await
            .map_err(|e| format!("HTTP/2 handshake with {addr}: {e}"))?;
        let conn = tokio::spawn(conn);
        let resp = send.send_request(req).await;
        let out = read_response(addr, resp).await;
        conn.abort();
        out
    }
}

async fn read_response(
    addr: SocketAddr,
    resp: Result<http::Response<Incoming>, hyper::Error>,
) -> Result<Response, String> {
    let resp = resp.map_err(|e| format!("request to {addr} failed: {e}"))?;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("reading the body from {addr}: {e}"))?
        .to_bytes();
    let protocol = match parts.version {
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    Ok(Response {
        status: parts.status.as_u16(),
        protocol: protocol.to_owned(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    })
}

/// The outcome of a gRPC call.
#[derive(Debug, Clone)]
pub struct GrpcReply {
    /// Status code.
    pub code: tonic::Code,
    /// Status message.
    pub message: String,
    /// The echo reply (on OK).
    pub response: Option<EchoResponse>,
}

/// A hyper HTTP/2 connection as a tower `Service` for tonic.
#[derive(Clone)]
struct H2Channel(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

impl tower::Service<HttpRequest<tonic::body::Body>> for H2Channel {
    type Response = http::Response<Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: HttpRequest<tonic::body::Body>) -> Self::Future {
        let fut = self.0.send_request(req);
        Box::pin(fut)
    }
}

/// gRPC code names as Go prints them (`codes.Code.String()`).
pub fn grpc_code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "Canceled",
        tonic::Code::Unknown => "Unknown",
        tonic::Code::InvalidArgument => "InvalidArgument",
        tonic::Code::DeadlineExceeded => "DeadlineExceeded",
        tonic::Code::NotFound => "NotFound",
        tonic::Code::AlreadyExists => "AlreadyExists",
        tonic::Code::PermissionDenied => "PermissionDenied",
        tonic::Code::ResourceExhausted => "ResourceExhausted",
        tonic::Code::FailedPrecondition => "FailedPrecondition",
        tonic::Code::Aborted => "Aborted",
        tonic::Code::OutOfRange => "OutOfRange",
        tonic::Code::Unimplemented => "Unimplemented",
        tonic::Code::Internal => "Internal",
        tonic::Code::Unavailable => "Unavailable",
        tonic::Code::DataLoss => "DataLoss",
        tonic::Code::Unauthenticated => "Unauthenticated",
    }
}

/// One unary call on a new h2c connection to `addr`, with `:authority` = `authority`.
/// `Err` is a transport failure (no gRPC status at all).
pub async fn grpc_exchange(
    addr: SocketAddr,
    authority: &str,
    method: &str,
    metadata: &[(String, String)],
    timeout: Duration,
) -> Result<GrpcReply, String> {
    match tokio::time::timeout(timeout, grpc_once(addr, authority, method, metadata)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no gRPC reply within {timeout:?}")),
    }
}

async fn grpc_once(
    addr: SocketAddr,
    authority: &str,
    method: &str,
    metadata: &[(String, String)],
) -> Result<GrpcReply, String> {
    let path = http::uri::PathAndQuery::try_from(method)
        .map_err(|e| format!("gRPC method {method:?}: {e}"))?;
    let origin: Uri = format!("http://{authority}")
        .parse()
        .map_err(|e| format!("gRPC authority {authority:?}: {e}"))?;
    let stream = connect(addr, Duration::from_secs(5)).await?;
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP/2 handshake with {addr}: {e}"))?;
    let conn = tokio::spawn(conn);
    let mut grpc = tonic::client::Grpc::with_origin(H2Channel(send), origin);
    let mut request = tonic::Request::new(EchoRequest {});
    for (key, value) in metadata {
        let key = tonic::metadata::MetadataKey::from_bytes(key.to_ascii_lowercase().as_bytes())
            .map_err(|e| format!("metadata key {key:?}: {e}"))?;
        let value = tonic::metadata::MetadataValue::try_from(value.as_str())
            .map_err(|e| format!("metadata value {value:?}: {e}"))?;
        request.metadata_mut().insert(key, value);
    }
    let result = async {
        grpc.ready()
            .await
            .map_err(|e| format!("gRPC connection to {addr}: {e}"))?;
        let codec = tonic_prost::ProstCodec::<EchoRequest, EchoResponse>::default();
        Ok::<_, String>(grpc.unary(request, path, codec).await)
    }
    .await;
    conn.abort();
    match result? {
        Ok(reply) => Ok(GrpcReply {
            code: tonic::Code::Ok,
            message: String::new(),
            response: Some(reply.into_inner()),
        }),
        Err(status) => Ok(GrpcReply {
            code: status.code(),
            message: status.message().to_owned(),
            response: None,
        }),
    }
}

/// The websocket check of HTTPRouteBackendProtocolWebSocket: dial `ws://<host>/ws` through the
/// gateway with `Origin`, send a text and a binary frame and expect both echoed unchanged.
pub async fn websocket_exchange(
    addr: SocketAddr,
    host: &str,
    origin: &str,
    timeout: Duration,
) -> Result<(), String> {
    match tokio::time::timeout(timeout, websocket_once(addr, host, origin)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "websocket exchange did not finish within {timeout:?}"
        )),
    }
}

async fn websocket_once(addr: SocketAddr, host: &str, origin: &str) -> Result<(), String> {
    let mut request = format!("ws://{host}/ws")
        .into_client_request()
        .map_err(|e| format!("websocket request: {e}"))?;
    let origin = HeaderValue::from_str(origin).map_err(|e| format!("origin: {e}"))?;
    request.headers_mut().insert(http::header::ORIGIN, origin);
    let stream = connect(addr, Duration::from_secs(5)).await?;
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .map_err(|e| format!("websocket handshake: {e}"))?;
    let text = "Websocket Support!";
    let binary: Vec<u8> = vec![1, 2, 3, 4, 5, 6, 7];
    for message in [Message::text(text), Message::binary(binary)] {
        ws.send(message.clone())
            .await
            .map_err(|e| format!("websocket send: {e}"))?;
        let reply = loop {
            match ws.next().await {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(m)) => break m,
                Some(Err(e)) => return Err(format!("websocket receive: {e}")),
                None => return Err("websocket closed before the echo".to_owned()),
            }
        };
        if reply != message {
            return Err(format!("websocket sent {message:?}, got back {reply:?}"));
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}

/// A plain GET (admin endpoints): status and body.
pub async fn get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), String> {
    let sent = SentRequest {
        scheme: "http".to_owned(),
        method: "GET".to_owned(),
        path: path.to_owned(),
        host: addr.to_string(),
        host_is_default: true,
        headers: Vec::new(),
        echo_set_header: String::new(),
        body: None,
        added_query: None,
        uuid: String::new(),
    };
    let resp = http_exchange(addr, &sent, &HttpVersion::Http1, false, timeout).await?;
    Ok((resp.status, resp.body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_paths_keep_their_escapes() {
        assert_eq!(location_path("http://h:8080/a%20b?x=1#f"), "/a%20b");
        assert_eq!(location_path("http://h"), "/");
        assert_eq!(location_path("/rel?x"), "/rel");
    }

    // Go's crypto/x509: "*.org" matches "example.org" (one label), not "a.example.org"; "*"
    // alone matches nothing with dots.
    #[test]
    fn go_style_wildcards() {
        let presented = vec!["DnsName(\"*\")".to_owned(), "DnsName(\"*.org\")".to_owned()];
        let name = |h: &str| rustls_pki_types::ServerName::try_from(h.to_owned()).unwrap();
        assert!(go_name_matches(&presented, &name("example.org")));
        assert!(go_name_matches(&presented, &name("Example.ORG")));
        assert!(!go_name_matches(&presented, &name("a.example.org")));
        assert!(!go_name_matches(&presented, &name("example.com")));
    }

    #[test]
    fn grpc_codes_have_go_names() {
        assert_eq!(grpc_code_name(tonic::Code::Ok), "OK");
        assert_eq!(grpc_code_name(tonic::Code::Unimplemented), "Unimplemented");
        assert_eq!(grpc_code_name(tonic::Code::Cancelled), "Canceled");
    }
    /// The HTTPS client records whether the server asked for its client certificate: a
    /// handshake with a server that does not ask fails (the suite's assertion).
    #[tokio::test]
    async fn an_offered_client_certificate_must_be_asked_for() {
        use crate::live::expect::resolve_pem;
        let ns = "gateway-conformance-infra";
        let cert = resolve_pem(&format!("<cert of Secret {ns}/tls-checks-certificate>")).unwrap();
        let key = resolve_pem(&format!("<key of Secret {ns}/tls-checks-certificate>")).unwrap();
        let ca = resolve_pem(&format!(
            "<ca.crt of ConfigMap {ns}/tls-checks-ca-certificate>"
        ))
        .unwrap();
        let client_cert = resolve_pem(&format!(
            "<cert of Secret {ns}/tls-checks-client-certificate>"
        ))
        .unwrap();
        let client_key = resolve_pem(&format!(
            "<key of Secret {ns}/tls-checks-client-certificate>"
        ))
        .unwrap();
        let start = |client_ca: Option<String>| {
            gw_echo::EchoServer::start(gw_echo::EchoConfig {
                pod: "tls-backend-a-b".into(),
                https: Some(gw_echo::HttpsConfig {
                    addr: "127.0.0.1:0".parse().unwrap(),
                    cert_pem: cert.clone(),
                    key_pem: key.clone(),
                    client_ca_pem: client_ca,
                }),
                ..gw_echo::EchoConfig::default()
            })
        };
        let client = TlsClient::new(
            &ca,
            "abc.example.com",
            Some((&client_cert, &client_key)),
            false,
        )
        .unwrap();
        let asking = start(Some(ca.clone())).await.unwrap();
        let addr = asking.https_addr().unwrap();
        let stream = connect(addr, Duration::from_secs(2)).await.unwrap();
        assert!(client.handshake(stream, addr).await.is_ok());

        let silent = start(None).await.unwrap();
        let addr = silent.https_addr().unwrap();
        let stream = connect(addr, Duration::from_secs(2)).await.unwrap();
        let err = client.handshake(stream, addr).await.unwrap_err();
        assert!(err.starts_with(CLIENT_CERT_NOT_ASKED), "{err}");

        // Without a client certificate nothing is asserted.
        let plain = TlsClient::new(&ca, "abc.example.com", None, false).unwrap();
        let stream = connect(addr, Duration::from_secs(2)).await.unwrap();
        assert!(plain.handshake(stream, addr).await.is_ok());
        // The raw client without a CA accepts any certificate; with the wrong CA it fails.
        let any = TlsClient::raw(None, "whatever.example.com").unwrap();
        let stream = connect(addr, Duration::from_secs(2)).await.unwrap();
        assert!(any.handshake(stream, addr).await.is_ok());
        let mismatch = resolve_pem(&format!(
            "<ca.crt of ConfigMap {ns}/mismatch-ca-certificate>"
        ))
        .unwrap();
        let strict = TlsClient::raw(Some(&mismatch), "abc.example.com").unwrap();
        let stream = connect(addr, Duration::from_secs(2)).await.unwrap();
        assert!(strict.handshake(stream, addr).await.is_err());
        asking.shutdown().await;
        silent.shutdown().await;
    }
}
