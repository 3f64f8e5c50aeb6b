//! The HTTP echo (echo-basic's `echoHandler` and friends) over HTTP/1.1, h2c and TLS.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::net::{self, ResetHandle, ResettableStream};
use crate::tls::TlsInfo;
use crate::{EchoMode, Shared, go, grpc};

/// Returned by a handler to make hyper drop the connection (HTTP/1) or reset the stream
/// (HTTP/2) instead of answering.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Abort(String);
type HttpResponse = Response<Full<Bytes>>;

/// Which flavour of echo-basic listener this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListenerKind {
    /// `HTTP_PORT`: HTTP/1.1 (and h2c prior knowledge) with echo-basic's routes.
    Plain,
    /// `H2C_PORT`: echo only, and only for HTTP/2 or `Upgrade: h2c` requests.
    H2c,
    /// `HTTPS_PORT`: TLS with ALPN, echo-basic's routes, `tls` in the reply.
    Tls,
}

pub(crate) struct HttpListener {
    pub(crate) kind: ListenerKind,
    pub(crate) tls: Option<TlsAcceptor>,
    pub(crate) mode: EchoMode,
    pub(crate) shared: Arc<Shared>,
}

/// Per-connection facts a request handler needs.
pub(crate) struct ConnInfo {
    pub(crate) remote: SocketAddr,
    pub(crate) tls: Option<TlsInfo>,
    pub(crate) reset: ResetHandle,
}

pub(crate) async fn serve(listener: TcpListener, l: Arc<HttpListener>) {
    let shutdown = l.shared.shutdown.clone();
    net::accept_loop(listener, shutdown, move |stream, remote| {
        serve_conn(stream, remote, l.clone())
    })
    .await;
}

async fn serve_conn(stream: TcpStream, remote: SocketAddr, l: Arc<HttpListener>) {
    let (stream, reset) = ResettableStream::new(stream);
    match &l.tls {
        None => {
            let conn = ConnInfo {
                remote,
                tls: None,
                reset,
            };
            serve_io(stream, conn, l).await;
        }
        Some(acceptor) => {
            match tokio::time::timeout(net::TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => {
                    let info = TlsInfo::from_connection(tls_stream.get_ref().1);
                    let conn = ConnInfo {
                        remote,
                        tls: Some(info),
                        reset,
                    };
                    serve_io(tls_stream, conn, l).await;
                }
                Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
            }
        }
    }
}

async fn serve_io<I>(io: I, conn: ConnInfo, l: Arc<HttpListener>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = Arc::new(conn);
    let io = TokioIo::new(io);
    match l.mode {
        EchoMode::Http => {
            let svc = service_fn(move |req| {
                let l = l.clone();
                let conn = conn.clone();
                async move { handle(req, &l, &conn).await }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new());
            builder.http2().timer(TokioTimer::new());
            if let Err(e) = builder.serve_connection_with_upgrades(io, svc).await {
                tracing::debug!(error = %e, "http connection ended with an error");
            }
        }
        EchoMode::Grpc => {
            let svc = service_fn(move |req| {
                let l = l.clone();
                let conn = conn.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(grpc::handle(req, &l.shared, &conn).await)
                }
            });
            let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            builder.timer(TokioTimer::new());
            if let Err(e) = builder.serve_connection(io, svc).await {
                tracing::debug!(error = %e, "grpc connection ended with an error");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Responses

fn response(status: StatusCode, body: impl Into<Bytes>) -> HttpResponse {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp
}

/// A body Go's `http.DetectContentType` would call `text/plain; charset=utf-8`.
fn text(status: StatusCode, body: &'static str) -> HttpResponse {
    let mut resp = response(status, body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn set_json_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// echo-basic's `processError`: `{"message": "..."}` with the given status.
fn process_error(status: StatusCode, message: &str) -> HttpResponse {
    #[derive(Serialize)]
    struct ErrorBody<'a> {
        message: &'a str,
    }
    let body = go::marshal(&ErrorBody { message }).unwrap_or_default();
    let mut resp = response(status, body);
    set_json_headers(resp.headers_mut());
    resp
}

/// What Go's server answers before any handler when the request-target is malformed.
fn bad_request() -> HttpResponse {
    let mut resp = text(StatusCode::BAD_REQUEST, "400 Bad Request");
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Go's `http.Redirect(w, r, url, 301)` as `ServeMux` uses it for unclean paths.
fn redirect(method: &Method, path: &str, raw_query: Option<&str>) -> HttpResponse {
    let mut location = go::escape_path(path);
    if let Some(q) = raw_query.filter(|q| !q.is_empty()) {
        location.push('?');
        location.push_str(q);
    }
    let body = if *method == Method::GET || *method == Method::HEAD {
        format!(
            "<a href=\"{}\">Moved Permanently</a>.\n\n",
            html_escape(&location)
        )
    } else {
        String::new()
    };
    let has_body = !body.is_empty();
    let mut resp = response(StatusCode::MOVED_PERMANENTLY, body);
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    if has_body {
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
    }
    resp
}

// ---------------------------------------------------------------------------------------
// Request facts, the way Go's net/http exposes them

/// `r.RequestURI`: the request-target as received (HTTP/2: `:path`).
fn request_uri<B>(req: &Request<B>) -> String {
    let uri = req.uri();
    if req.version() == Version::HTTP_2 {
        match uri.path_and_query() {
            Some(pq) => pq.as_str().to_owned(),
            None => uri.authority().map(|a| a.to_string()).unwrap_or_default(),
        }
    } else {
        uri.to_string()
    }
}

/// `r.Host`: the authority of an absolute-form target or `:authority`, else `Host`.
pub(crate) fn request_host<B>(req: &Request<B>) -> String {
    if let Some(authority) = req.uri().authority() {
        return authority.as_str().to_owned();
    }
    req.headers()
        .get(header::HOST)
        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        .unwrap_or_default()
}

fn proto_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// `r.Header`: canonical names, all values, without `Host` (and, for HTTP/1,
/// `Transfer-Encoding`, which Go moves to `r.TransferEncoding`). HTTP/2 `cookie`
/// fields are merged with `"; "` like Go's HTTP/2 server does.
fn header_map<B>(req: &Request<B>) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let http2 = req.version() == Version::HTTP_2;
    for (name, value) in req.headers() {
        if name == header::HOST || (!http2 && name == header::TRANSFER_ENCODING) {
            continue;
        }
        map.entry(go::canonical_header_key(name.as_str()))
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    if http2
        && let Some(cookies) = map.get_mut("Cookie")
        && cookies.len() > 1
    {
        let joined = cookies.join("; ");
        *cookies = vec![joined];
    }
    map
}

// ---------------------------------------------------------------------------------------
// Routing

async fn handle(
    mut req: Request<Incoming>,
    l: &HttpListener,
    conn: &ConnInfo,
) -> Result<HttpResponse, Abort> {
    let uri = request_uri(&req);

    if l.kind == ListenerKind::H2c {
        // echo-basic's h2c port: everything is echoed, but only over HTTP/2.
        let upgrade_h2c = req
            .headers()
            .get(header::UPGRADE)
            .is_some_and(|v| v.as_bytes() == b"h2c");
        if req.version() != Version::HTTP_2 && !upgrade_h2c {
            return Ok(text(StatusCode::BAD_REQUEST, "Expected h2c request"));
        }
        return Ok(echo(&req, &uri, l, conn).await);
    }

    if uri == "*" {
        let mut resp = response(StatusCode::BAD_REQUEST, Bytes::new());
        if req.version() >= Version::HTTP_11 {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        return Ok(resp);
    }

    // Go routes on the decoded path, after echo-basic's `preserveSlashes` replaced "//".
    let Some(decoded) = go::percent_decode(req.uri().path(), false) else {
        return Ok(bad_request());
    };
    let path = String::from_utf8_lossy(&decoded).replace("//", "/");

    if req.method() != Method::CONNECT {
        // ServeMux redirects unclean paths, and "/status" to the registered "/status/".
        let cleaned = go::clean_path(&path);
        let target = if cleaned == "/status" {
            Some("/status/".to_owned())
        } else if cleaned != path {
            Some(cleaned)
        } else {
            None
        };
        if let Some(target) = target {
            return Ok(redirect(req.method(), &target, req.uri().query()));
        }
    }

    if path == "/health" {
        Ok(text(StatusCode::OK, "OK"))
    } else if path == "/ws" {
        Ok(websocket(&mut req, l, conn))
    } else if path.starts_with("/status/") {
        status(&uri)
    } else if path == "/retry" || path.starts_with("/retry/") {
        retry(&req, &uri, l, conn).await
    } else {
        Ok(echo(&req, &uri, l, conn).await)
    }
}

/// `/status/NNN`: answer NNN with an empty body; 400 unless the request-target is exactly
/// `/status/` plus three digits.
fn status(uri: &str) -> Result<HttpResponse, Abort> {
    let code = uri
        .strip_prefix("/status/")
        .filter(|rest| rest.len() == 3 && rest.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|rest| rest.parse::<u16>().ok())
        .unwrap_or(400);
    match code {
        // Go's WriteHeader panics for codes below 100, which aborts the connection.
        0..=99 => Err(Abort(format!("invalid status code {code}"))),
        // Go sends a 1xx as an informational response, then the implicit 200.
        100..=199 => Ok(response(StatusCode::OK, Bytes::new())),
        _ => {
            let status = StatusCode::from_u16(code).map_err(|e| Abort(e.to_string()))?;
            Ok(response(status, Bytes::new()))
        }
    }
}

/// The `/retry/...?uuid=U&succeedAfter=K[&responseCode=N][&delayRetry=D]` simulator.
async fn retry(
    req: &Request<Incoming>,
    uri: &str,
    l: &HttpListener,
    conn: &ConnInfo,
) -> Result<HttpResponse, Abort> {
    let query = req.uri().query().unwrap_or("");
    let uuid = go::query_value(query, "uuid").filter(|u| !u.is_empty());
    let succeed_after = go::query_value(query, "succeedAfter");
    let (Some(uuid), Some(succeed_after)) = (uuid, succeed_after) else {
        return Ok(process_error(
            StatusCode::BAD_REQUEST,
            "retry simulation needs the query parameters uuid and succeedAfter",
        ));
    };
    let Ok(succeed_after) = succeed_after.parse::<u64>() else {
        return Ok(process_error(
            StatusCode::BAD_REQUEST,
            &format!("invalid succeedAfter {succeed_after:?}: want a non-negative integer"),
        ));
    };
    let response_code = match go::query_value(query, "responseCode").filter(|c| !c.is_empty()) {
        None => None,
        Some(code) => match code
            .parse::<u16>()
            .ok()
            .filter(|c| (200..=999).contains(c))
            .and_then(|c| StatusCode::from_u16(c).ok())
        {
            Some(status) => Some(status),
            None => {
                return Ok(process_error(
                    StatusCode::BAD_REQUEST,
                    &format!("invalid responseCode {code:?}: want a status code 200-999"),
                ));
            }
        },
    };
    let delay_retry = match go::query_value(query, "delayRetry").filter(|d| !d.is_empty()) {
        None => None,
        Some(d) => match go::parse_go_duration(&d) {
            Ok(d) => Some(d),
            Err(msg) => return Ok(process_error(StatusCode::BAD_REQUEST, &msg)),
        },
    };

    let attempt = {
        let mut attempts = l
            .shared
            .retries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = attempts.entry(uuid.clone()).or_insert(0);
        *count = count.saturating_add(1);
        *count
    };
    if attempt <= succeed_after {
        tracing::debug!(%uuid, attempt, succeed_after, "retry simulation: failing this attempt");
        if let Some(d) = delay_retry {
            tokio::time::sleep(d).await;
        }
        return match response_code {
            Some(status) => Ok(response(status, Bytes::new())),
            None => {
                // HTTP/1: drop the connection with a TCP RST. HTTP/2: the error makes
                // hyper reset the stream.
                if req.version() < Version::HTTP_2 {
                    conn.reset.reset_on_close();
                }
                Err(Abort(
                    "retry simulation: resetting the connection".to_owned(),
                ))
            }
        };
    }
    Ok(echo(req, uri, l, conn).await)
}

#[derive(Serialize)]
struct RequestAssertions<'a> {
    path: &'a str,
    host: String,
    method: &'a str,
    proto: &'a str,
    headers: BTreeMap<String, Vec<String>>,
    #[serde(rename = "httpPort")]
    http_port: &'a str,
    namespace: &'a str,
    ingress: &'a str,
    service: &'a str,
    pod: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<TlsAssertions<'a>>,
}

#[derive(Serialize)]
struct TlsAssertions<'a> {
    version: &'static str,
    #[serde(
        rename = "peerCertificates",
        skip_serializing_if = "<[String]>::is_empty"
    )]
    peer_certificates: &'a [String],
    #[serde(rename = "serverName")]
    server_name: &'a str,
    #[serde(rename = "negotiatedProtocol", skip_serializing_if = "str::is_empty")]
    negotiated_protocol: &'a str,
    #[serde(rename = "cipherSuite")]
    cipher_suite: &'a str,
}

/// echo-basic's `echoHandler`.
async fn echo<B>(req: &Request<B>, uri: &str, l: &HttpListener, conn: &ConnInfo) -> HttpResponse {
    let shared = &l.shared;
    shared.log.push(format!(
        "Echoing back request made to {uri} to client ({})",
        conn.remote
    ));

    if let Some(delay) =
        go::query_value(req.uri().query().unwrap_or(""), "delay").filter(|d| !d.is_empty())
    {
        match go::parse_go_duration(&delay) {
            Ok(d) => tokio::time::sleep(d).await,
            Err(msg) => return process_error(StatusCode::INTERNAL_SERVER_ERROR, &msg),
        }
    }

    let assertions = RequestAssertions {
        path: uri,
        host: request_host(req),
        method: req.method().as_str(),
        proto: proto_name(req.version()),
        headers: header_map(req),
        http_port: &shared.http_port,
        namespace: &shared.namespace,
        ingress: &shared.ingress,
        service: &shared.service,
        pod: &shared.pod,
        tls: conn.tls.as_ref().map(|t| TlsAssertions {
            version: t.version_http(),
            peer_certificates: &t.peer_certificates,
            server_name: &t.server_name,
            negotiated_protocol: &t.negotiated_protocol,
            cipher_suite: &t.cipher_suite,
        }),
    };
    let body = match go::marshal_indent(&assertions) {
        Ok(body) => body,
        Err(e) => return process_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };

    let mut resp = response(StatusCode::OK, body);
    write_echo_response_headers(resp.headers_mut(), req.headers(), req.version());
    set_json_headers(resp.headers_mut());
    resp
}

/// Headers that would break the response framing if a client could set them.
fn is_framing_header(name: &HeaderName, version: Version) -> bool {
    name == header::CONTENT_LENGTH
        || name == header::TRANSFER_ENCODING
        || (version == Version::HTTP_2
            && (name == header::CONNECTION
                || name == header::UPGRADE
                || name == header::TE
                || name.as_str() == "keep-alive"
                || name.as_str() == "proxy-connection"))
}

/// echo-basic's `writeEchoResponseHeaders`: `X-Echo-Set-Header: A:1,B:2,A:3` sets
/// `A: 1,3` and `B: 2` on the reply.
fn write_echo_response_headers(out: &mut HeaderMap, request: &HeaderMap, version: Version) {
    for list in request.get_all("x-echo-set-header") {
        let list = String::from_utf8_lossy(list.as_bytes());
        for kv in list.split(',') {
            let kv = kv.trim();
            let (name, value) = kv.split_once(':').unwrap_or((kv, ""));
            // Go drops fields with invalid names or values when writing the response.
            let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
                continue;
            };
            if is_framing_header(&name, version) {
                continue;
            }
            let value = value.trim();
            let combined = match out.get(&name) {
                None => value.to_owned(),
                Some(existing) => {
                    format!("{},{value}", String::from_utf8_lossy(existing.as_bytes()))
                }
            };
            if let Ok(v) = HeaderValue::from_str(&combined) {
                out.insert(name, v);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// WebSocket

fn header_has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        String::from_utf8_lossy(v.as_bytes())
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    })
}

/// `/ws`: accept a WebSocket upgrade and echo every text/binary message back.
fn websocket(req: &mut Request<Incoming>, l: &HttpListener, conn: &ConnInfo) -> HttpResponse {
    let headers = req.headers();
    let is_upgrade = req.version() == Version::HTTP_11
        && req.method() == Method::GET
        && header_has_token(headers, header::CONNECTION, "upgrade")
        && header_has_token(headers, header::UPGRADE, "websocket");
    let key = headers.get(header::SEC_WEBSOCKET_KEY).cloned();
    let (true, Some(key)) = (is_upgrade, key) else {
        return text(StatusCode::BAD_REQUEST, "missing or bad upgrade");
    };
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        let mut resp = text(StatusCode::BAD_REQUEST, "bad protocol version");
        resp.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return resp;
    }

    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(req);
    let log = l.shared.log.clone();
    let remote = conn.remote;
    let mut shutdown = l.shared.shutdown.clone();
    tokio::spawn(async move {
        let session = async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(e) => {
                    tracing::debug!(%remote, error = %e, "websocket upgrade failed");
                    return;
                }
            };
            log.push(format!("established websocket connection {remote}"));
            let mut ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            while let Some(msg) = ws.next().await {
                match msg {
                    Ok(msg @ (Message::Text(_) | Message::Binary(_))) => {
                        if ws.send(msg).await.is_err() {
                            break;
                        }
                    }
                    // Pings are answered and close frames acknowledged by tungstenite
                    // while we keep reading.
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        };
        tokio::select! {
            () = net::wait_shutdown(&mut shutdown) => {}
            () = session => {}
        }
    });

    let mut resp = response(StatusCode::SWITCHING_PROTOCOLS, Bytes::new());
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}
