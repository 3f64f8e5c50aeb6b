//! [`Router`]: the tower `Service` that routes requests through the current [`Routes`].
//!
//! # Request path
//!
//! 0. Continue or start the request's W3C trace (see [`trace`](crate::trace)) and set
//!    `traceparent` for the hop to the backend (unless turned off in [`RouterConfig`]).
//! 1. Read the [`Incoming`] extension (missing: 404 and a log line).
//! 2. Load the current [`Routes`] (an `Arc`; a concurrent [`Router::swap`] does not affect
//!    this request) and [`Routes::resolve_sni`] the request: no match is 404 (gRPC:
//!    `UNIMPLEMENTED`); a host that belongs to another HTTPS listener than the connection's SNI
//!    selected is 421 Misdirected Request (GEP-3567).
//! 3. Apply the rule's request filters in order (header modifiers, URL rewrite, mirror, CORS,
//!    or a redirect / CORS preflight answered directly); unresolved filters answer 500.
//! 4. Pick a backend by weight (none, or all weights 0: 500; an invalid backend: 500); apply
//!    its filters; a Service without endpoints is 503.
//! 5. Forward (see below); apply ResponseHeaderModifiers and CORS headers to the response.
//! 6. Every response, forwarded or the gateway's own, carries a [`RouteInfo`] extension:
//!    listener, route, rule, backend, upstream time and attempts, trace context. Forwarding
//!    runs in a `request` tracing span with the trace id, route and rule.
//!
//! # Forwarding
//!
//! - Protocol: gRPC requests and GRPCRoute rules use HTTP/2 with prior knowledge (h2c);
//!   otherwise the Service port's `appProtocol`: `kubernetes.io/h2c` is h2c, everything else
//!   HTTP/1.1. Requests with `Connection: upgrade` (WebSocket) go over HTTP/1.1 and, on
//!   `101 Switching Protocols`, both connections are joined and copied bidirectionally.
//! - TLS (BackendTLSPolicy, `appProtocol: https`/`kubernetes.io/wss`): see the rules in
//!   `backend_tls.rs`: SNI is the policy's hostname, the certificate is verified against its CA
//!   certificates (or the platform's) and hostname or subjectAltNames, the Gateway's backend
//!   client certificate is presented; ALPN `http/1.1`, or `h2` for HTTP/2. A failed handshake
//!   answers 502, a failed TCP connect 503. TLS connections are pooled per endpoint and TLS
//!   setup.
//! - Headers: hop-by-hop headers are removed (except `te: trailers`), `Host` is the request's
//!   (or the URLRewrite hostname), `X-Forwarded-For` gets the peer address appended and
//!   `X-Forwarded-Proto` is set.
//! - Endpoints are used round-robin.
//! - Timeouts (GEP-1742): `timeouts.request` bounds everything up to the response headers,
//!   retries included; `timeouts.backendRequest` bounds each attempt up to the response
//!   headers. Either answers 504. Response bodies are streamed and not timed.
//! - Retries (GEP-1731): on a listed status code, a connection failure, a reset or a
//!   `backendRequest` timeout, up to `attempts` more times, waiting `backoff` (default 25 ms)
//!   doubled per retry (at most 8 times). Only requests whose body length is known and within
//!   [`RouterConfig::max_buffered_body`] are retried (streams are never buffered). After the
//!   last attempt the backend's response (e.g. its 503) is returned as is.
//! - Mirrors (RequestMirror) get a copy of the request, fire-and-forget, when its body could
//!   be buffered; their responses are discarded.
//! - Transport failures are mapped to 502/503/504 once (see [`ForwardError::status`]); for
//!   gRPC requests every answer of the gateway's own is a trailers-only response (HTTP 200,
//!   `grpc-status` UNAVAILABLE(14), DEADLINE_EXCEEDED(4), INTERNAL(13) or UNIMPLEMENTED(12)).

mod client;
mod error;
mod forward;
mod future;

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response, StatusCode};

pub use self::error::ForwardError;
use self::error::{error_response, status_response};
use self::forward::Forward;
pub use self::future::ResponseFuture;
use crate::backend::BackendTarget;
use crate::body::{Body, BoxError};
use crate::filters::{DirectResponse, RequestEffects, apply_request, apply_response};
use crate::incoming::Incoming;
use crate::index::{NotFound, Resolution, Routes, Rule, is_grpc};
use crate::info::RouteInfo;
use crate::trace::TraceContext;

/// Settings of the [`Router`]'s backend client.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RouterConfig {
    /// Timeout of a TCP connect to an endpoint (default 5 s); failing it is 503.
    pub connect_timeout: Duration,
    /// How long an idle pooled HTTP/1.1 connection is kept (default 90 s).
    pub pool_idle_timeout: Duration,
    /// Largest request body buffered so that it can be retried or mirrored (default 1 MiB).
    pub max_buffered_body: usize,
    /// W3C Trace Context (default on): continue or start a trace per request and forward
    /// `traceparent` with the gateway's span id (see [`trace`](crate::trace)).
    pub trace_context: bool,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            connect_timeout: Duration::from_secs(5),
            pool_idle_timeout: Duration::from_secs(90),
            max_buffered_body: 1 << 20,
            trace_context: true,
        }
    }
}

impl RouterConfig {
    /// Sets [`connect_timeout`](Self::connect_timeout).
    pub fn with_connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
    /// Sets [`pool_idle_timeout`](Self::pool_idle_timeout).
    pub fn with_pool_idle_timeout(mut self, d: Duration) -> Self {
        self.pool_idle_timeout = d;
        self
    }
    /// Sets [`max_buffered_body`](Self::max_buffered_body).
    pub fn with_max_buffered_body(mut self, bytes: usize) -> Self {
        self.max_buffered_body = bytes;
        self
    }
    /// Sets [`trace_context`](Self::trace_context).
    pub fn with_trace_context(mut self, on: bool) -> Self {
        self.trace_context = on;
        self
    }
}

/// Backend connection counts of a [`Router`] (see [`Router::upstream_connections`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpstreamConnections {
    /// Open now (idle in the pool or in use).
    pub open: u64,
    /// Opened since the router was created.
    pub opened: u64,
}

/// The routing `Service`: `http::Request<B>` in, `http::Response<`[`Body`]`>` out, never an
/// error (failures are responses). Always ready; cloning is cheap (one `Arc`).
///
/// Every request must carry an [`Incoming`] extension saying which Gateway and port it came
/// in on. Must run inside a Tokio runtime (it spawns connection tasks, mirrors and upgrades).
#[derive(Debug, Clone)]
pub struct Router {
    shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    routes: Arc<ArcSwap<Routes>>,
    client: client::Client,
    config: RouterConfig,
}

impl Router {
    /// A router with no routes (every request is 404) and the given client settings.
    pub fn new(config: RouterConfig) -> Router {
        Router {
            shared: Arc::new(Shared {
                routes: Arc::new(ArcSwap::from_pointee(Routes::default())),
                client: client::Client::new(config.connect_timeout, config.pool_idle_timeout),
                config,
            }),
        }
    }

    /// Replaces the routes. Requests in flight finish with the routes they started with.
    /// Pooled TLS connections of backend TLS setups the new routes no longer use are dropped.
    pub fn swap(&self, routes: Routes) {
        let keep = routes.tls_keys();
        self.shared.routes.store(Arc::new(routes));
        self.shared.client.retain_tls(&keep);
    }

    /// The current routes.
    pub fn routes(&self) -> Arc<Routes> {
        self.shared.routes.load_full()
    }

    /// The client settings.
    pub fn config(&self) -> &RouterConfig {
        &self.shared.config
    }

    /// Connections to backends (HTTP/1.1 pooled and HTTP/2, cleartext and TLS; mirrors
    /// included), counted as they are opened and closed.
    pub fn upstream_connections(&self) -> UpstreamConnections {
        let (open, opened) = self.shared.client.connection_counts();
        UpstreamConnections { open, opened }
    }

    fn direct(rule: &Rule, d: DirectResponse, grpc: bool, info: RouteInfo) -> ResponseFuture {
        let mut resp = match d {
            DirectResponse::Error { status, reason } => {
                tracing::warn!(route = %rule.route().key, rule = rule.rule_index(), %status, %reason, "answering an error");
                status_response(status, grpc, &reason)
            }
            other => other.into_response(),
        };
        apply_response(&rule.filters, resp.headers_mut());
        resp.extensions_mut().insert(info);
        ResponseFuture::ready(resp)
    }

    /// A response of the gateway's own, with what is known of the request.
    fn answer(status: StatusCode, grpc: bool, message: &str, info: RouteInfo) -> ResponseFuture {
        let mut resp = status_response(status, grpc, message);
        resp.extensions_mut().insert(info);
        ResponseFuture::ready(resp)
    }

    fn route<B>(&self, req: Request<B>) -> ResponseFuture
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let grpc = is_grpc(req.headers());
        let (mut parts, body) = req.into_parts();
        let mut info = RouteInfo::default();
        if self.shared.config.trace_context {
            let trace = TraceContext::continue_or_start(&parts.headers);
            trace.apply(&mut parts.headers);
            info.trace = Some(trace);
        }
        let Some(incoming) = parts.extensions.get::<Incoming>().cloned() else {
            tracing::error!(uri = %parts.uri, "request without the gw_router::Incoming extension; the server must insert it");
            return Self::answer(StatusCode::NOT_FOUND, grpc, "no listener information", info);
        };
        let routes = self.shared.routes.load_full();
        let resolution = routes.resolve_sni(
            &incoming.gateway,
            incoming.port,
            incoming.sni.as_deref(),
            &parts,
        );
        let route = match resolution {
            Resolution::Matched(m) => {
                info.gateway = Some(m.listener().gateway_label().clone());
                info.listener = Some(m.listener().name_label().clone());
                info.match_index = Some(m.match_index());
                m.to_route()
            }
            Resolution::Misdirected(why) => {
                tracing::debug!(gateway = %incoming.gateway, port = incoming.port, sni = ?incoming.sni,
                    uri = %parts.uri, sni_listener = ?why.sni_listener, host_listener = %why.host_listener,
                    "misdirected request");
                // A plain HTTP 421 even for gRPC: it tells the client's HTTP layer to retry on
                // a new connection (RFC 9110 15.5.20), which a trailers-only answer would hide.
                return Self::answer(
                    StatusCode::MISDIRECTED_REQUEST,
                    false,
                    "misdirected request",
                    info,
                );
            }
            Resolution::NotFound(why) => {
                tracing::debug!(gateway = %incoming.gateway, port = incoming.port, uri = %parts.uri, ?why, "no route");
                if let NotFound::NoMatchingRule { listener } = why {
                    info.listener = Some(listener.into());
                    info.gateway = Some(incoming.gateway.to_string().into());
                }
                return Self::answer(StatusCode::NOT_FOUND, grpc, "no route", info);
            }
        };
        let rule = route.rule().clone();
        info.rule = Some(rule.clone());
        let ctx = route.ctx(incoming.scheme, incoming.port);
        let mut effects = RequestEffects::default();
        if let Err(d) = apply_request(&rule.filters, &mut parts, &ctx, &mut effects) {
            return Self::direct(&rule, d, grpc, info);
        }
        let Some(backend) = rule.backends.pick() else {
            let d = DirectResponse::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "rule has no backend with a weight above 0",
            );
            return Self::direct(&rule, d, grpc, info);
        };
        let Some(choice) = rule.backends.get(backend) else {
            let d = DirectResponse::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "backend index out of range",
            );
            return Self::direct(&rule, d, grpc, info);
        };
        info.backend = Some(choice.label.clone());
        if let Err(d) = apply_request(&choice.filters, &mut parts, &ctx, &mut effects) {
            return Self::direct(&rule, d, grpc, info);
        }
        match &*choice.target {
            BackendTarget::Invalid(reason) => {
                let d = DirectResponse::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("invalid backend: {reason}"),
                );
                return Self::direct(&rule, d, grpc, info);
            }
            BackendTarget::Service(s) if s.endpoints.is_empty() => {
                let e = ForwardError::NoEndpoints {
                    service: s.service.clone(),
                };
                let mut resp = error_response(&e, grpc);
                apply_response(&rule.filters, resp.headers_mut());
                resp.extensions_mut().insert(info);
                return ResponseFuture::ready(resp);
            }
            BackendTarget::Service(_) => {}
        }
        let span = tracing::info_span!(
            "request",
            trace_id = info.trace.map(|t| tracing::field::display(t.trace_id())),
            route = %rule.route_label(),
            rule = %rule.rule_label(),
        );
        let forward = Forward {
            shared: self.shared.clone(),
            rule,
            backend,
            parts,
            body,
            effects,
            incoming,
            grpc,
            info,
        };
        ResponseFuture::forward(tracing::Instrument::instrument(forward.run(), span))
    }
}

impl<B> tower::Service<Request<B>> for Router
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.route(req)
    }
}
