//! One authorization check: the request to the auth service, its answer, the decision.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::TryFutureExt;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, request};
use http_body::Body;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use tower::{BoxError, Service, ServiceExt};

use super::body::{RequestBody, buffer};
use super::config::{CompiledExtAuthz, CompiledProtocol, FailureMode};
use super::error::CheckError;
use super::proto;
use crate::{ClientAddr, TlsPeer};

/// The body of requests to the auth service.
pub type AuthBody = UnsyncBoxBody<Bytes, BoxError>;

/// Set on requests to the auth service when body forwarding is on: `true` when the body was
/// cut at `forwardBody.maxSize`.
pub const PARTIAL_BODY_HEADER: HeaderName = HeaderName::from_static("x-envoy-auth-partial-body");

/// What the auth service decided for a request.
#[derive(Debug)]
#[non_exhaustive]
pub enum Decision<B> {
    /// Forward the request (its head already carries the auth service's headers) with this
    /// body, and add `response_headers` to the response.
    Allow {
        /// The request body to forward.
        body: RequestBody<B>,
        /// Headers the auth service asked to add to the response (gRPC
        /// `response_headers_to_add`).
        response_headers: HeaderMap,
    },
    /// Answer the client with this response: the auth service's denial (status, headers,
    /// body), or the failure status when it could not be asked.
    Deny(Response<Bytes>),
}

/// Hop-by-hop headers (RFC 9110 7.6.1) and the ones describing a message's own framing:
/// never copied between messages.
fn is_hop_or_framing(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
    )
}

/// Auth response headers never copied onto the upstream request, even when
/// `allowedResponseHeaders` is empty: `Host` (the spec's exception), hop-by-hop and framing
/// headers, and the headers that describe the auth response's own body.
fn never_copied(name: &HeaderName) -> bool {
    is_hop_or_framing(name)
        || matches!(
            name.as_str(),
            "host" | "content-type" | "content-encoding" | "date" | "server"
        )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Append,
    Overwrite,
    AddIfAbsent,
    OverwriteIfExists,
}

/// Header edits for the upstream request.
#[derive(Debug, Default)]
struct Edits {
    set: Vec<(HeaderName, HeaderValue, Action)>,
    remove: Vec<HeaderName>,
}

impl Edits {
    fn apply(self, headers: &mut HeaderMap) {
        for (name, value, action) in self.set {
            apply_one(headers, name, value, action);
        }
        for name in self.remove {
            headers.remove(name);
        }
    }
}

fn apply_one(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue, action: Action) {
    match action {
        Action::Append => {
            headers.append(name, value);
        }
        Action::Overwrite => {
            headers.insert(name, value);
        }
        Action::AddIfAbsent => {
            if !headers.contains_key(&name) {
                headers.insert(name, value);
            }
        }
        Action::OverwriteIfExists => {
            if headers.contains_key(&name) {
                headers.insert(name, value);
            }
        }
    }
}

/// A `HeaderValueOption` as a header edit; `None` (logged) for invalid names or values.
/// `append`, when set, wins; otherwise `append_action`, where the proto default (0) is read
/// as "overwrite": Envoy documents that `append` "defaults to false" in these messages.
fn option(o: &proto::HeaderValueOption) -> Option<(HeaderName, HeaderValue, Action)> {
    let h = o.header.as_ref()?;
    let name = HeaderName::from_bytes(h.key.as_bytes()).ok();
    let raw = if h.raw_value.is_empty() {
        h.value.as_bytes()
    } else {
        &h.raw_value
    };
    let value = HeaderValue::from_bytes(raw).ok();
    let (Some(name), Some(value)) = (name, value) else {
        tracing::warn!(header = %h.key, "auth service sent an invalid header; ignored");
        return None;
    };
    let action = match (o.append.as_ref().map(|b| b.value), o.append_action) {
        (Some(true), _) => Action::Append,
        (Some(false), _) | (None, 0 | 2) => Action::Overwrite,
        (None, 1) => Action::AddIfAbsent,
        (None, 3) => Action::OverwriteIfExists,
        (None, _) => Action::Overwrite,
    };
    Some((name, value, action))
}

/// An auth exchange's response future, boxed.
type Sent<RB> = std::pin::Pin<Box<dyn Future<Output = Result<Response<RB>, BoxError>> + Send>>;

/// The auth request, built from the request head before the exchange starts.
enum Prepared<RB> {
    Http(Result<Sent<RB>, CheckError>, Vec<HeaderName>, usize),
    Grpc(Box<proto::CheckRequest>),
}

enum Answer {
    Allow {
        edits: Edits,
        response_headers: HeaderMap,
    },
    Deny(Response<Bytes>),
}

/// Asks an auth service through an injected client; see the [module docs](super).
///
/// `C` is the client: a tower `Service` taking `http::Request<`[`AuthBody`]`>` with an
/// origin-form URI (path and query; the `Host` header carries the request's host), which it
/// must send to the auth service. For gRPC it receives an HTTP/2 request for
/// [`proto::CHECK_PATH`] and must speak HTTP/2.
#[derive(Debug, Clone)]
pub struct Authorizer<C> {
    pub(crate) config: Arc<CompiledExtAuthz>,
    pub(crate) client: C,
}

impl<C> Authorizer<C> {
    /// An authorizer with `config` asking through `client`.
    pub fn new(config: CompiledExtAuthz, client: C) -> Self {
        Authorizer {
            config: Arc::new(config),
            client,
        }
    }

    /// An authorizer sharing an already compiled configuration (cheap: no copy).
    pub fn from_shared(config: Arc<CompiledExtAuthz>, client: C) -> Self {
        Authorizer { config, client }
    }

    /// The compiled configuration.
    pub fn config(&self) -> &CompiledExtAuthz {
        &self.config
    }
}

impl<C, RB> Authorizer<C>
where
    C: Service<Request<AuthBody>, Response = Response<RB>> + Clone + Send + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    /// Checks a request. On [`Decision::Allow`], `parts` carries the auth service's headers.
    /// Never fails: a failure to ask becomes the failure mode's decision (logged).
    // Not an `async fn`: the returned future is promised `Send`, so that callers can box it.
    #[allow(clippy::manual_async_fn)]
    pub fn check<'a, B>(
        &'a self,
        parts: &'a mut request::Parts,
        body: B,
    ) -> impl Future<Output = Decision<B>> + Send + 'a
    where
        B: Body<Data = Bytes> + Unpin + Send + 'a,
        // `Display` rather than `Into<BoxError>`: boxed bodies' errors then satisfy it for
        // every lifetime, which rustc needs to prove callers' futures `Send`.
        B::Error: std::fmt::Display,
        C: Sync,
    {
        async move {
            let max = self.config.forward_body_max;
            let (auth_body, partial, body) = if max > 0 {
                match buffer(body, max).await {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::debug!(error = %e, "request body could not be read for external auth");
                        return Decision::Deny(empty(StatusCode::BAD_REQUEST));
                    }
                }
            } else {
                (Bytes::new(), false, RequestBody::new(body))
            };
            let timeout = self.config.timeout;
            let forwarded = (max > 0).then_some(partial);
            let ask = self.ask(parts, auth_body, forwarded);
            let answer = tokio::time::timeout(timeout, ask)
                .await
                .unwrap_or(Err(CheckError::Timeout(timeout)));
            match answer {
                Ok(Answer::Allow {
                    edits,
                    response_headers,
                }) => {
                    edits.apply(&mut parts.headers);
                    Decision::Allow {
                        body,
                        response_headers,
                    }
                }
                Ok(Answer::Deny(resp)) => Decision::Deny(resp),
                Err(error) => match self.config.failure_mode {
                    FailureMode::Closed => {
                        tracing::warn!(%error, status = %self.config.failure_status, "external auth failed; refusing the request");
                        Decision::Deny(empty(self.config.failure_status))
                    }
                    FailureMode::Open => {
                        tracing::warn!(%error, "external auth failed; failing open");
                        Decision::Allow {
                            body,
                            response_headers: HeaderMap::new(),
                        }
                    }
                },
            }
        }
    }

    /// Builds the auth request now (it needs the request head) and returns the exchange as
    /// an owned future.
    fn ask(
        &self,
        parts: &request::Parts,
        body: Bytes,
        partial: Option<bool>,
    ) -> impl Future<Output = Result<Answer, CheckError>> + Send + 'static {
        let prepared =
            match &self.config.protocol {
                CompiledProtocol::Http {
                    path_prefix,
                    allowed_headers,
                    allowed_response_headers,
                } => Prepared::Http(
                    http_request(parts, path_prefix, allowed_headers, body, partial).map(|req| {
                        // A named future boxed here, where its `Send` is proven with concrete
                        // types (an `async` block would hit rustc's higher-ranked `Send` limits).
                        let sent: Sent<RB> =
                            Box::pin(self.client.clone().oneshot(req).map_err(Into::into));
                        sent
                    }),
                    allowed_response_headers.clone(),
                    self.config.max_response_body,
                ),
                CompiledProtocol::Grpc { allowed_headers } => Prepared::Grpc(Box::new(
                    check_request(parts, allowed_headers, body, partial),
                )),
            };
        let grpc = matches!(prepared, Prepared::Grpc(_)).then(|| self.grpc_call());
        async move {
            match prepared {
                Prepared::Http(sent, allowed, max_body) => {
                    let resp = sent?.await.map_err(CheckError::Transport)?;
                    http_answer(resp, &allowed, max_body).await
                }
                Prepared::Grpc(check) => match grpc {
                    Some(call) => Ok(grpc_answer(call(*check).await?)),
                    None => Err(CheckError::Invalid("no gRPC client".into())),
                },
            }
        }
    }

    /// The gRPC `Check` call, as a function of the request.
    fn grpc_call(
        &self,
    ) -> impl FnOnce(
        proto::CheckRequest,
    ) -> std::pin::Pin<
        Box<dyn Future<Output = Result<proto::CheckResponse, CheckError>> + Send>,
    > + Send
    + 'static {
        let client = self.client.clone();
        let timeout = self.config.timeout;
        move |check| {
            Box::pin(async move {
                let mut grpc = tonic::client::Grpc::new(GrpcClient(client));
                grpc.ready()
                    .await
                    .map_err(|e| CheckError::Transport(e.into()))?;
                let mut req = tonic::Request::new(check);
                req.set_timeout(timeout);
                let path = http::uri::PathAndQuery::from_static(proto::CHECK_PATH);
                let codec =
                    tonic_prost::ProstCodec::<proto::CheckRequest, proto::CheckResponse>::default();
                grpc.unary(req, path, codec)
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(CheckError::Grpc)
            })
        }
    }
}

fn empty(status: StatusCode) -> Response<Bytes> {
    let mut r = Response::new(Bytes::new());
    *r.status_mut() = status;
    r
}

fn full(b: Bytes) -> AuthBody {
    Full::new(b).map_err(|never| match never {}).boxed_unsync()
}

/// The request's host: the `Host` header, else the URI authority.
fn host(parts: &request::Parts) -> Option<HeaderValue> {
    parts.headers.get(HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    })
}

/// GEP-1494 HTTP: the original method and path (with `http.path` prefixed), and "the
/// following headers must always be sent to the authorization server ... `Host`, `Method`,
/// `Path`, `Content-Length`, `Authorization`", plus `allowedHeaders`. "The `Content-Length` of
/// the authorization request must be set to the actual number of bytes forwarded" (0 without
/// body forwarding).
fn http_request(
    parts: &request::Parts,
    prefix: &str,
    allowed: &[HeaderName],
    body: Bytes,
    partial: Option<bool>,
) -> Result<Request<AuthBody>, CheckError> {
    let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let uri: http::Uri = format!("{prefix}{pq}")
        .parse()
        .map_err(|e| CheckError::Invalid(format!("auth request path: {e}")))?;
    let mut headers = HeaderMap::new();
    for name in allowed {
        if is_hop_or_framing(name) {
            continue;
        }
        for v in parts.headers.get_all(name) {
            headers.append(name.clone(), v.clone());
        }
    }
    for v in parts.headers.get_all(AUTHORIZATION) {
        if !allowed.contains(&AUTHORIZATION) {
            headers.append(AUTHORIZATION, v.clone());
        }
    }
    if let Some(h) = host(parts) {
        headers.insert(HOST, h);
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    if let Some(p) = partial {
        headers.insert(PARTIAL_BODY_HEADER, HeaderValue::from_static(bool_str(p)));
    }
    let mut req = Request::new(full(body));
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    Ok(req)
}

fn bool_str(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// GEP-1494 HTTP: "each backend must respond with a `200` status code on a successful
/// authorization. Any other code is considered an authorization failure": the auth service's
/// answer goes to the client as it is (status, headers, body), so redirects to a sign-in page
/// work. On 200, `allowedResponseHeaders` (empty: all but the ones [`never_copied`]) are
/// copied onto the upstream request, replacing values of the same name.
async fn http_answer<RB>(
    resp: Response<RB>,
    allowed: &[HeaderName],
    max_body: usize,
) -> Result<Answer, CheckError>
where
    RB: Body<Data = Bytes>,
    RB::Error: Into<BoxError>,
{
    let (parts, body) = resp.into_parts();
    if parts.status == StatusCode::OK {
        let mut edits = Edits::default();
        let mut seen: Vec<&HeaderName> = Vec::new();
        for (name, value) in &parts.headers {
            let wanted = if allowed.is_empty() {
                !never_copied(name)
            } else {
                allowed.contains(name) && !is_hop_or_framing(name) && name != HOST
            };
            if !wanted {
                continue;
            }
            // The first value of a name replaces the request's; further ones are appended.
            let action = if seen.contains(&name) {
                Action::Append
            } else {
                seen.push(name);
                Action::Overwrite
            };
            edits.set.push((name.clone(), value.clone(), action));
        }
        return Ok(Answer::Allow {
            edits,
            response_headers: HeaderMap::new(),
        });
    }
    let body = Limited::new(body, max_body)
        .collect()
        .await
        .map_err(CheckError::Body)?
        .to_bytes();
    let mut headers = parts.headers;
    let hop: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_hop_or_framing(n))
        .cloned()
        .collect();
    for n in hop {
        headers.remove(n);
    }
    let mut out = Response::new(body);
    *out.status_mut() = parts.status;
    *out.headers_mut() = headers;
    Ok(Answer::Deny(out))
}

/// Joins a header's values with `,` (as Envoy does).
fn joined(headers: &HeaderMap, name: &HeaderName) -> String {
    let mut s = String::new();
    for v in headers.get_all(name) {
        if !s.is_empty() {
            s.push(',');
        }
        s.push_str(&String::from_utf8_lossy(v.as_bytes()));
    }
    s
}

/// The `CheckRequest` of a request head: "If this list is empty, then all headers must be
/// sent. If the list has entries, only those entries must be sent."
fn check_request(
    parts: &request::Parts,
    allowed: &[HeaderName],
    body: Bytes,
    partial: Option<bool>,
) -> proto::CheckRequest {
    let tls = parts.extensions.get::<TlsPeer>();
    let scheme = parts
        .uri
        .scheme_str()
        .unwrap_or(if tls.is_some() { "https" } else { "http" })
        .to_owned();
    let host = host(parts)
        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
    let mut headers = std::collections::HashMap::new();
    let names: Vec<&HeaderName> = if allowed.is_empty() {
        parts.headers.keys().collect()
    } else {
        allowed
            .iter()
            .filter(|n| parts.headers.contains_key(*n))
            .collect()
    };
    for name in names {
        headers.insert(name.as_str().to_owned(), joined(&parts.headers, name));
    }
    headers.insert(":authority".to_owned(), host.clone());
    headers.insert(":method".to_owned(), parts.method.as_str().to_owned());
    headers.insert(":path".to_owned(), path.clone());
    headers.insert(":scheme".to_owned(), scheme.clone());
    if let Some(p) = partial {
        headers.insert(
            PARTIAL_BODY_HEADER.as_str().to_owned(),
            bool_str(p).to_owned(),
        );
    }
    let size = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<i64>().ok())
        .unwrap_or(
            if parts.method == Method::GET || parts.method == Method::HEAD {
                0
            } else {
                -1
            },
        );
    let (body, raw_body) = match String::from_utf8(body.to_vec()) {
        Ok(s) => (s, Vec::new()),
        Err(e) => (String::new(), e.into_bytes()),
    };
    let source = proto::Peer {
        address: ClientAddr::of(&parts.extensions).map(|a| proto::Address {
            socket_address: Some(proto::SocketAddress {
                protocol: 0,
                address: a.ip().to_string(),
                port_value: u32::from(a.port()),
            }),
        }),
        principal: tls
            .and_then(TlsPeer::principal)
            .unwrap_or_default()
            .to_owned(),
        ..proto::Peer::default()
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    proto::CheckRequest {
        attributes: Some(proto::AttributeContext {
            source: Some(source),
            destination: None,
            request: Some(proto::AttributeRequest {
                time: Some(proto::Timestamp {
                    seconds: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
                    nanos: i32::try_from(now.subsec_nanos()).unwrap_or(0),
                }),
                http: Some(proto::HttpRequest {
                    id: parts
                        .headers
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned(),
                    method: parts.method.as_str().to_owned(),
                    headers,
                    path,
                    host,
                    scheme,
                    size,
                    protocol: format!("{:?}", parts.version),
                    body,
                    raw_body,
                    ..proto::HttpRequest::default()
                }),
            }),
            context_extensions: Default::default(),
        }),
    }
}

/// Envoy semantics: `status.code` OK allows (with `ok_response`'s edits); anything else
/// denies with `denied_response` (status default 403 Forbidden, as Envoy's).
fn grpc_answer(resp: proto::CheckResponse) -> Answer {
    let ok = resp.status.as_ref().is_none_or(|s| s.code == 0);
    if ok {
        let mut edits = Edits::default();
        let mut response_headers = HeaderMap::new();
        if let Some(proto::HttpResponse::OkResponse(ok)) = resp.http_response {
            edits.set.extend(ok.headers.iter().filter_map(option));
            // Envoy refuses to remove pseudo-headers and Host.
            edits.remove.extend(
                ok.headers_to_remove
                    .iter()
                    .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
                    .filter(|n| *n != HOST),
            );
            for (name, value, action) in ok.response_headers_to_add.iter().filter_map(option) {
                apply_one(&mut response_headers, name, value, action);
            }
        }
        return Answer::Allow {
            edits,
            response_headers,
        };
    }
    let denied = match resp.http_response {
        Some(proto::HttpResponse::DeniedResponse(d)) => d,
        _ => proto::DeniedHttpResponse::default(),
    };
    let status = denied
        .status
        .and_then(|s| u16::try_from(s.code).ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .filter(|s| s.as_u16() >= 200)
        .unwrap_or(StatusCode::FORBIDDEN);
    let mut out = Response::new(Bytes::from(denied.body));
    *out.status_mut() = status;
    for (name, value, action) in denied.headers.iter().filter_map(option) {
        if !is_hop_or_framing(&name) {
            apply_one(out.headers_mut(), name, value, action);
        }
    }
    Answer::Deny(out)
}

/// The injected client as tonic's transport: tonic's request body boxed into [`AuthBody`].
#[derive(Clone)]
struct GrpcClient<C>(C);

impl<C, RB> Service<Request<tonic::body::Body>> for GrpcClient<C>
where
    C: Service<Request<AuthBody>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = C::Error;
    type Future = C::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<tonic::body::Body>) -> Self::Future {
        self.0
            .call(req.map(|b| b.map_err(BoxError::from).boxed_unsync()))
    }
}
