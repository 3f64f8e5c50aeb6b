//! Forwarding a request to the chosen backend: headers, body buffering, mirrors, retries,
//! timeouts, upgrades.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, CONNECTION, HOST, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Version, request};
use http_body::Body as HttpBody;
use http_body_util::{BodyExt, Limited};
use hyper_util::rt::TokioIo;

use super::Shared;
use super::client::{BackendBody, Wire};
use super::error::{ForwardError, error_response};
use crate::backend::{BackendTarget, ServiceTarget, SessionSource};
use crate::body::{Body, BoxError, full};
use crate::filters::{RequestEffects, apply_response};
use crate::incoming::Incoming;
use crate::index::{RouteKind, Rule};
use crate::info::{RouteInfo, Upstream};
use gw_model::table::AppProtocol;
use gw_policy::outlier::Outcome;
use gw_policy::session::Session;
use std::time::SystemTime;

/// Default minimum backoff between retries when the rule sets none.
const DEFAULT_BACKOFF: Duration = Duration::from_millis(25);

/// Everything the forwarding step needs, owned.
pub(super) struct Forward<B> {
    pub(super) shared: Arc<Shared>,
    pub(super) rule: Arc<Rule>,
    pub(super) backend: usize,
    pub(super) parts: request::Parts,
    pub(super) body: B,
    pub(super) effects: RequestEffects,
    pub(super) incoming: Incoming,
    pub(super) grpc: bool,
    /// The endpoint a valid session names (first attempt only).
    pub(super) pinned: Option<SocketAddr>,
    /// Session persistence to keep or begin with the response.
    pub(super) session: Option<SessionPlan>,
    /// Reported in the response's extensions, with the upstream exchange filled in.
    pub(super) info: RouteInfo,
}

/// The exchange with the backend as it goes (kept when a timeout drops the attempts).
#[derive(Default)]
struct Exchange {
    started: Option<Instant>,
    endpoint: Option<SocketAddr>,
    attempts: u32,
}

/// The session of a request: the one it came with (if valid) or a new one, written to the
/// response once it is known which endpoint answered.
pub(crate) struct SessionPlan {
    pub(crate) source: SessionSource,
    pub(crate) existing: Option<Session>,
    /// Cookie `Path` (route rule sessions); `None` for a Service's sessions.
    pub(crate) path: Option<String>,
    /// HTTPS listener: cookies get `Secure`.
    pub(crate) secure: bool,
}

impl SessionPlan {
    /// Writes the session token for `endpoint` of `svc`: a new token when the session is new
    /// or moved to another endpoint, a refreshed one when an idle timeout needs the last use,
    /// nothing otherwise.
    fn write(
        &self,
        rule: &Rule,
        svc: &ServiceTarget,
        endpoint: SocketAddr,
        headers: &mut HeaderMap,
    ) {
        let Some((codec, scope)) = rule.backends.sticky().and_then(|s| s.codec(self.source)) else {
            return;
        };
        let Some(id) = svc.endpoint_id(endpoint) else {
            return;
        };
        let now = SystemTime::now();
        let token = match self.existing {
            Some(s) if s.endpoint() == id => {
                if codec.config().idle_timeout.is_none() {
                    return;
                }
                codec.refresh(scope, &s, now)
            }
            _ => codec.issue(scope, id, now),
        };
        codec.write(headers, &token, self.path.as_deref(), self.secure);
    }
}

/// What an attempt says about the endpoint, for outlier detection: 5xx responses, connection
/// failures, resets and backend timeouts are failures.
fn outcome(result: &Result<Response<BackendBody>, ForwardError>) -> Option<Outcome> {
    match result {
        Ok(r) if r.status().is_server_error() => Some(Outcome::Failure),
        Ok(_) => Some(Outcome::Success),
        Err(e) => match e {
            ForwardError::Connect { .. }
            | ForwardError::Backend { .. }
            | ForwardError::BackendTimeout(_)
            | ForwardError::Tls { .. } => Some(Outcome::Failure),
            ForwardError::NoEndpoints { .. }
            | ForwardError::Unresolved { .. }
            | ForwardError::RequestTimeout(_)
            | ForwardError::RequestBody(_)
            | ForwardError::RetryBudgetExhausted { .. }
            | ForwardError::Internal(_) => None,
        },
    }
}

/// How many fixed hop-by-hop headers there are.
const HOP_BY_HOP_COUNT: usize = 7;

/// Hop-by-hop headers (RFC 9110 7.6.1), never forwarded; `Connection` first.
const HOP_BY_HOP: [HeaderName; HOP_BY_HOP_COUNT] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
];

/// Parsed once, not per request (a `&str` name is parsed on every use).
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Whether the request asks for a protocol upgrade (`Connection: upgrade` + `Upgrade`).
pub(super) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE)
        && headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Removes hop-by-hop headers, and those named by `Connection`; keeps the upgrade pair when
/// `upgrade`, and `te: trailers` (gRPC needs it).
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // One pass over the names, then a removal only for those present: most requests carry
    // none of these, most HTTP/1.1 responses just `Connection: keep-alive`, and each
    // `remove` hashes its name.
    let mut present = [false; HOP_BY_HOP_COUNT];
    let (mut has_upgrade, mut has_te) = (false, false);
    for n in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == n) {
            present[i] = true;
        } else if n == UPGRADE {
            has_upgrade = true;
        } else if n == http::header::TE {
            has_te = true;
        }
    }
    if !upgrade && !has_upgrade && !has_te && !present.contains(&true) {
        return;
    }
    // `present[0]` is `Connection`: the names it lists are hop-by-hop too (the fixed ones
    // are removed below anyway).
    if present[0] {
        let named: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|n| !(HOP_BY_HOP.contains(n) || upgrade && n == UPGRADE))
            .collect();
        for n in named {
            headers.remove(n);
        }
    }
    for (n, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, p)| *p) {
        headers.remove(n);
    }
    if upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    } else if has_upgrade {
        headers.remove(UPGRADE);
    }
    if has_te
        && !headers
            .get(http::header::TE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"))
    {
        headers.remove(http::header::TE);
    }
}

/// Appends `ip` as `Display` writes it. IPv4 skips the formatting machinery, which costs
/// hundreds of instructions per address, and the forwarding path writes two per request
/// (`X-Forwarded-For` and the upstream URI).
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            push_decimal(out, a.into());
            for o in [b, c, d] {
                out.push('.');
                push_decimal(out, o.into());
            }
        }
        IpAddr::V6(v6) => {
            let _ = std::fmt::Write::write_fmt(out, format_args!("{v6}"));
        }
    }
}

/// Appends `addr` as `Display` writes it (`ip:port`, `[ip]:port` for IPv6).
fn push_socket_addr(out: &mut String, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            push_ip(out, IpAddr::V4(*v4.ip()));
            out.push(':');
            push_decimal(out, v4.port());
        }
        SocketAddr::V6(v6) => {
            let _ = std::fmt::Write::write_fmt(out, format_args!("{v6}"));
        }
    }
}

fn push_decimal(out: &mut String, n: u16) {
    let mut digits = [0u8; 5];
    let (mut n, mut i) = (n, digits.len());
    loop {
        i -= 1;
        // `n % 10` is below 10: the cast cannot truncate.
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[i..].iter().map(|&d| char::from(d)));
}

/// The upstream request head, reused by retries and mirrors.
struct Head {
    method: http::Method,
    path_and_query: http::uri::PathAndQuery,
    /// Host (and port) as the client sent it, or as rewritten: the `Host` header over
    /// HTTP/1.1, `:authority` over HTTP/2.
    host: Option<HeaderValue>,
    headers: HeaderMap,
}

impl Head {
    /// The head of `parts`, whose headers it takes (nothing else needs them afterwards).
    fn new(parts: request::Parts, incoming: &Incoming, upgrade: bool) -> Head {
        let request::Parts {
            method,
            uri,
            mut headers,
            ..
        } = parts;
        strip_hop_by_hop(&mut headers, upgrade);
        let host = headers
            .remove(HOST)
            .filter(|h| h.to_str().is_ok())
            .or_else(|| {
                uri.authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            });
        if let Some(peer) = incoming.peer {
            // One lookup of the name for both reading and writing the field.
            let entry = headers.entry(X_FORWARDED_FOR);
            let mut xff = String::with_capacity(48);
            if let header::Entry::Occupied(prev) = &entry
                && let Ok(prev) = prev.get().to_str()
            {
                xff.push_str(prev);
                xff.push_str(", ");
            }
            push_ip(&mut xff, peer.ip());
            if let Ok(v) = HeaderValue::try_from(xff) {
                match entry {
                    header::Entry::Occupied(mut e) => {
                        e.insert(v);
                    }
                    header::Entry::Vacant(e) => {
                        e.insert(v);
                    }
                }
            }
        }
        headers.insert(
            X_FORWARDED_PROTO,
            HeaderValue::from_static(incoming.scheme.as_str()),
        );
        Head {
            method,
            path_and_query: uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
            host,
            headers,
        }
    }

    /// The request to send to `endpoint`; `tls`: the connection is TLS (scheme `https`).
    fn request(&self, endpoint: SocketAddr, wire: Wire, tls: bool, body: Body) -> Request<Body> {
        self.build(endpoint, wire, tls, body, self.headers.clone())
    }

    /// [`request`](Self::request) for the last use of this head: its headers are moved, not
    /// cloned.
    fn into_request(
        mut self,
        endpoint: SocketAddr,
        wire: Wire,
        tls: bool,
        body: Body,
    ) -> Request<Body> {
        let headers = std::mem::take(&mut self.headers);
        self.build(endpoint, wire, tls, body, headers)
    }

    fn build(
        &self,
        endpoint: SocketAddr,
        wire: Wire,
        tls: bool,
        body: Body,
        headers: HeaderMap,
    ) -> Request<Body> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.headers_mut() = headers;
        match wire {
            // Origin form: the client connects to `endpoint`, and the Host header (the
            // request's host, or `endpoint` set by the client) carries the host.
            Wire::Http1 => {
                *req.version_mut() = Version::HTTP_11;
                *req.uri_mut() = http::Uri::from(self.path_and_query.clone());
                if let Some(h) = &self.host {
                    req.headers_mut().insert(HOST, h.clone());
                }
            }
            Wire::H2c => {
                *req.version_mut() = Version::HTTP_2;
                let scheme = if tls {
                    http::uri::Scheme::HTTPS
                } else {
                    http::uri::Scheme::HTTP
                };
                let authority = self
                    .host
                    .as_ref()
                    .and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok())
                    .or_else(|| {
                        let mut a = String::with_capacity(48);
                        push_socket_addr(&mut a, endpoint);
                        http::uri::Authority::try_from(a).ok()
                    });
                let uri = authority.and_then(|a| {
                    http::Uri::builder()
                        .scheme(scheme)
                        .authority(a)
                        .path_and_query(self.path_and_query.clone())
                        .build()
                        .ok()
                });
                if let Some(uri) = uri {
                    *req.uri_mut() = uri;
                }
            }
        }
        req
    }
}

/// A request body that is either buffered (replayable) or streamed once.
enum ReqBody {
    Buffered(Bytes),
    Streaming(Option<Body>),
}

impl ReqBody {
    fn take(&mut self) -> Option<Body> {
        match self {
            ReqBody::Buffered(b) => Some(full(b.clone())),
            ReqBody::Streaming(b) => b.take(),
        }
    }

    fn replayable(&self) -> Option<&Bytes> {
        match self {
            ReqBody::Buffered(b) => Some(b),
            ReqBody::Streaming(_) => None,
        }
    }
}

/// Buffers the body when asked to and its length is known and within `max`; streams it
/// otherwise (an unknown-length body may be a long-lived stream, e.g. gRPC streaming).
async fn prepare_body<B>(body: B, want: bool, max: usize) -> Result<ReqBody, ForwardError>
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let exact = body.size_hint().exact();
    let fits = exact.is_some_and(|n| usize::try_from(n).is_ok_and(|n| n <= max));
    if want && fits {
        let collected = Limited::new(body, max)
            .collect()
            .await
            .map_err(ForwardError::RequestBody)?;
        Ok(ReqBody::Buffered(collected.to_bytes()))
    } else {
        Ok(ReqBody::Streaming(Some(
            body.map_err(Into::into).boxed_unsync(),
        )))
    }
}

pub(super) fn wire_for(svc: &ServiceTarget, grpc: bool, upgrade: bool) -> Wire {
    if upgrade {
        return Wire::Http1;
    }
    if grpc {
        return Wire::H2c;
    }
    match svc.protocol {
        AppProtocol::H2c => Wire::H2c,
        AppProtocol::Http1 | AppProtocol::WebSocket | AppProtocol::Https | AppProtocol::Raw => {
            Wire::Http1
        }
    }
}

impl<B> Forward<B>
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    /// Forwards and always produces a response: failures are mapped here, at the edge.
    ///
    /// Not an `async fn`: the request is taken apart here, before the future exists, so that
    /// the future holds each part once. An `async fn` keeps its argument and the moved-out
    /// copy side by side, and so does each async step it is handed on to; the future is
    /// moved into the heap with every request, so its size is paid on every request.
    pub(super) fn run(self) -> impl Future<Output = Response<Body>> + Send + 'static {
        let Forward {
            shared,
            rule,
            backend,
            mut parts,
            body,
            effects,
            incoming,
            grpc,
            pinned,
            session,
            mut info,
        } = self;
        let upgrade = is_upgrade(&parts.headers)
            .then(|| parts.extensions.remove::<hyper::upgrade::OnUpgrade>())
            .flatten();
        let RequestEffects {
            mirrors,
            cors,
            auth_response,
        } = effects;
        let mut attempts = Attempts {
            shared,
            rule,
            backend,
            parts: Some(parts),
            body: Some(body),
            mirrors,
            incoming,
            grpc,
            pinned,
            upgrade,
        };
        async move {
            let timeouts = attempts.rule.timeouts();
            let mut exchange = Exchange::default();
            let attempt = attempts.run(&mut exchange);
            let result = match timeouts.request {
                Some(d) => tokio::time::timeout(d, attempt)
                    .await
                    .unwrap_or(Err(ForwardError::RequestTimeout(d))),
                None => attempt.await,
            };
            let rule = &attempts.rule;
            let backend = attempts.backend;
            let mut resp = match result {
                Ok((mut r, endpoint)) => {
                    if let Some(plan) = &session
                        && let Some(BackendTarget::Service(svc)) =
                            rule.backends.get(backend).map(|c| &*c.target)
                    {
                        plan.write(rule, svc, endpoint, r.headers_mut());
                    }
                    r
                }
                Err(e) => error_response(&e, grpc, rule, info.trace),
            };
            let headers = resp.headers_mut();
            apply_response(&rule.filters, headers);
            if let Some(c) = rule.backends.get(backend) {
                apply_response(&c.filters, headers);
            }
            add_effect_headers(headers, cors, auth_response);
            info.upstream = exchange.started.map(|started| Upstream {
                endpoint: exchange.endpoint,
                attempts: exchange.attempts,
                duration: started.elapsed(),
            });
            resp.extensions_mut().insert(info);
            resp
        }
    }
}

/// What the attempts at the backend need: owned by the forwarding future, lent to the
/// attempts (which take the request's parts, body and upgrade out of it).
struct Attempts<B> {
    shared: Arc<Shared>,
    rule: Arc<Rule>,
    backend: usize,
    parts: Option<request::Parts>,
    body: Option<B>,
    mirrors: Vec<Arc<BackendTarget>>,
    incoming: Incoming,
    grpc: bool,
    /// The endpoint a valid session names (first attempt only).
    pinned: Option<SocketAddr>,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
}

impl<B> Attempts<B>
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    /// Sends the request (and its retries); returns the response with the endpoint that gave it.
    async fn run(
        &mut self,
        exchange: &mut Exchange,
    ) -> Result<(Response<Body>, SocketAddr), ForwardError> {
        let (Some(parts), Some(body)) = (self.parts.take(), self.body.take()) else {
            return Err(ForwardError::Internal("request already forwarded".into()));
        };
        let upgrade = self.upgrade.take();
        let (shared, rule, backend, pinned) = (&self.shared, &self.rule, self.backend, self.pinned);
        let incoming = &self.incoming;
        let target = rule
            .backends
            .get(backend)
            .map(|c| c.target.clone())
            .ok_or_else(|| ForwardError::Internal("backend index out of range".into()))?;
        let BackendTarget::Service(svc) = &*target else {
            return Err(ForwardError::Internal(
                "invalid backend reached forwarding".into(),
            ));
        };
        let grpc = self.grpc || rule.kind() == RouteKind::Grpc;
        let wire = wire_for(svc, grpc, upgrade.is_some());
        let mut head = Some(Head::new(parts, incoming, upgrade.is_some()));
        let retry = rule.retry().filter(|_| upgrade.is_none());
        let want_buffer = retry.is_some() || !self.mirrors.is_empty();
        let mut body = prepare_body(body, want_buffer, shared.config.max_buffered_body).await?;

        if let Some(head) = &head {
            for m in &self.mirrors {
                spawn_mirror(shared, m, head, body.replayable().cloned());
            }
        }

        let max_retries = match (retry, body.replayable()) {
            (Some(r), Some(_)) => r.attempts,
            (Some(_), None) => {
                tracing::debug!(
                    "request body not buffered (unknown length or too large); not retrying"
                );
                0
            }
            (None, _) => 0,
        };
        let backend_timeout = rule.timeouts().backend_request;
        let budget = svc.retry_budget();
        let mut attempt = 0u32;
        loop {
            let endpoint = match pinned.filter(|_| attempt == 0) {
                Some(e) => e,
                None => svc.resolve().await?,
            };
            exchange.started.get_or_insert_with(Instant::now);
            exchange.endpoint = Some(endpoint);
            exchange.attempts += 1;
            if attempt == 0
                && let Some(b) = budget
            {
                b.deposit();
            }
            let Some(b) = body.take() else {
                return Err(ForwardError::Internal("request body already sent".into()));
            };
            let tls = svc.tls.as_ref();
            // The last attempt there can be takes the head's headers instead of a copy.
            let req = if attempt >= max_retries {
                head.take()
                    .map(|h| h.into_request(endpoint, wire, tls.is_some(), b))
            } else {
                head.as_ref()
                    .map(|h| h.request(endpoint, wire, tls.is_some(), b))
            };
            // The request goes into `send` at once; kept in a local, it would keep its room
            // in this future across the await.
            let Some(send) = req.map(|req| shared.client.send(endpoint, wire, tls, req)) else {
                return Err(ForwardError::Internal("request head already sent".into()));
            };
            let result = match backend_timeout {
                Some(d) => tokio::time::timeout(d, send)
                    .await
                    .unwrap_or(Err(ForwardError::BackendTimeout(d))),
                None => send.await,
            };
            if let Some(o) = outcome(&result) {
                svc.report(endpoint, o);
            }
            let retry_this = match (&result, retry) {
                (_, None) => false,
                (Ok(resp), Some(r)) => r.codes.contains(&resp.status().as_u16()),
                (Err(e), Some(_)) => e.is_retriable(),
            };
            if retry_this && attempt < max_retries {
                // GEP-3388: "After the retry budget has been exceeded, additional retries to
                // the backend MUST return a 503 response to the client."
                if budget.is_some_and(|b| !b.try_withdraw()) {
                    tracing::debug!(service = %svc.service, "retry budget exhausted");
                    return Err(ForwardError::RetryBudgetExhausted {
                        service: svc.service.clone(),
                    });
                }
                attempt += 1;
                let base = retry.and_then(|r| r.backoff).unwrap_or(DEFAULT_BACKOFF);
                let delay = base.saturating_mul(1 << (attempt - 1).min(3));
                tracing::debug!(attempt, ?delay, "retrying backend request");
                drop(result);
                tokio::time::sleep(delay).await;
                continue;
            }
            let mut resp = result?;
            if let Some(client) = upgrade
                && resp.status() == StatusCode::SWITCHING_PROTOCOLS
            {
                let backend_side = hyper::upgrade::on(&mut resp);
                tokio::spawn(async move {
                    match tokio::try_join!(client, backend_side) {
                        Ok((c, b)) => {
                            let (mut c, mut b) = (TokioIo::new(c), TokioIo::new(b));
                            if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut b).await {
                                tracing::debug!(error = %e, "upgraded connection ended");
                            }
                        }
                        Err(e) => tracing::debug!(error = %e, "protocol upgrade failed"),
                    }
                });
                return Ok((resp.map(|b| b.map_err(Into::into).boxed_unsync()), endpoint));
            }
            strip_hop_by_hop(resp.headers_mut(), false);
            return Ok((resp.map(|b| b.map_err(Into::into).boxed_unsync()), endpoint));
        }
    }
}

/// Adds CORS headers (`Vary` appended, the rest replaced) and the headers an auth service
/// asked for (replacing the response's values of the same names).
pub(super) fn add_effect_headers(
    headers: &mut HeaderMap,
    cors: Vec<(HeaderName, HeaderValue)>,
    auth: HeaderMap,
) {
    for (n, v) in cors {
        if n == http::header::VARY {
            headers.append(n, v);
        } else {
            headers.insert(n, v);
        }
    }
    let mut last: Option<HeaderName> = None;
    for (name, value) in auth {
        match name {
            // The first value of a name replaces the response's values.
            Some(n) => {
                headers.insert(n.clone(), value);
                last = Some(n);
            }
            None => {
                if let Some(n) = &last {
                    headers.append(n.clone(), value);
                }
            }
        }
    }
}

/// Sends a copy to a mirror backend, fire-and-forget: it never delays or fails the request.
fn spawn_mirror(shared: &Arc<Shared>, target: &BackendTarget, head: &Head, body: Option<Bytes>) {
    let BackendTarget::Service(svc) = target else {
        tracing::debug!("mirror backend is invalid; not mirroring");
        return;
    };
    let Some(endpoint) = svc.endpoint() else {
        tracing::debug!(service = %svc.service, "mirror backend has no endpoints");
        return;
    };
    let Some(body) = body else {
        tracing::debug!("request body not buffered; not mirroring");
        return;
    };
    let wire = wire_for(svc, false, false);
    let tls = svc.tls.clone();
    let req = head.request(endpoint, wire, tls.is_some(), full(body));
    let shared = shared.clone();
    tokio::spawn(async move {
        match shared.client.send(endpoint, wire, tls.as_ref(), req).await {
            Ok(resp) => {
                let _ = resp.into_body().collect().await;
            }
            Err(e) => tracing::debug!(error = %e, "mirror request failed"),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).expect("test header name"),
                HeaderValue::from_str(v).expect("test header value"),
            );
        }
        h
    }

    fn names(h: &HeaderMap) -> Vec<String> {
        let mut v: Vec<String> = h.keys().map(|n| n.as_str().to_owned()).collect();
        v.sort();
        v
    }

    // RFC 9110 7.6.1: a proxy "MUST remove any header fields" listed in Connection, and the
    // Connection field itself, before forwarding; so too the fixed hop-by-hop fields.
    #[test]
    fn hop_by_hop_fields_and_those_connection_names_are_removed() {
        let mut h = headers(&[
            ("connection", "keep-alive, X-Hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic eA=="),
            ("transfer-encoding", "chunked"),
            ("trailer", "x-sum"),
            ("upgrade", "websocket"),
            ("te", "gzip"),
            ("x-end-to-end", "kept"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(names(&h), ["x-end-to-end"]);
    }

    #[test]
    fn messages_without_hop_by_hop_fields_are_unchanged() {
        let mut h = headers(&[("host", "a.example"), ("x-a", "1"), ("x-a", "2")]);
        let before = h.clone();
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h, before);
    }

    // gRPC over HTTP/2 requires `te: trailers`; any other TE value is hop-by-hop.
    #[test]
    fn te_trailers_is_kept_unless_connection_names_it() {
        let mut h = headers(&[("te", "trailers"), ("connection", "keep-alive")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(names(&h), ["te"]);

        let mut h = headers(&[("te", "trailers"), ("connection", "te")]);
        strip_hop_by_hop(&mut h, false);
        assert!(h.is_empty(), "{h:?}");
    }

    // RFC 9110 7.8: an upgrade is forwarded with `Upgrade` and `Connection: upgrade`.
    #[test]
    fn an_upgrade_keeps_the_upgrade_pair() {
        let mut h = headers(&[
            ("connection", "keep-alive, Upgrade, x-hop"),
            ("upgrade", "websocket"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
        ]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(names(&h), ["connection", "upgrade"]);
        assert_eq!(h[CONNECTION], "upgrade");
        assert_eq!(h[UPGRADE], "websocket");
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        let addrs = [
            "0.0.0.0:0",
            "127.0.0.1:80",
            "10.20.30.40:8080",
            "255.255.255.255:65535",
            "[::1]:443",
            "[2001:db8::8:800:200c:417a]:9",
            "[::ffff:192.0.2.1]:1",
            "[fe80::1%2]:10",
        ];
        for a in addrs {
            let addr: SocketAddr = a.parse().expect("test address");
            let mut out = String::new();
            push_socket_addr(&mut out, addr);
            assert_eq!(out, addr.to_string());
            let mut out = String::from("x, ");
            push_ip(&mut out, addr.ip());
            assert_eq!(out, format!("x, {}", addr.ip()));
        }
    }

    /// The size of what `f` returns, without calling it.
    fn size_of_output<A, F: FnOnce(A) -> R, R>(_: &F) -> usize {
        std::mem::size_of::<R>()
    }

    // The forwarding future is moved into the heap once per request: its whole size is copied
    // on every request. It was 12 KiB when the HTTP/2 connect and handshakes, and two copies
    // of the request, lived inside it.
    #[test]
    fn the_forwarding_future_stays_small() {
        let size = size_of_output(&Forward::<Body>::run);
        eprintln!("forwarding future: {size} bytes");
        assert!(
            size <= 3 * 1024,
            "the forwarding future grew to {size} bytes"
        );
    }
}
