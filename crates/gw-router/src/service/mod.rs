//! [`Router`]: the tower `Service` that routes requests through the current [`Routes`].
//!
//! # Request path
//!
//! 0. Continue or start the request's W3C trace (see [`trace`](crate::trace)) and set
//!    `traceparent` for the hop to the backend (unless turned off in [`RouterConfig`]).
//! 1. Read the [`Incoming`] extension (missing: 404 and a log line). Check the host and
//!    normalize the path ([`crate::normalize`], options in [`RouterConfig::path`]): an
//!    ambiguous host, a malformed path or (by default) an encoded slash or backslash is 400;
//!    the canonical path replaces the request's, so it is what is matched and forwarded; an
//!    absolute-form target's authority becomes the `Host` header (RFC 9112 3.2.2).
//! 2. Load the current [`Routes`] (an `Arc`; a concurrent [`Router::swap`] does not affect
//!    this request) and [`Routes::resolve_sni`] the request: no match is 404 (gRPC:
//!    `UNIMPLEMENTED`); a host that belongs to another HTTPS listener than the connection's SNI
//!    selected is 421 Misdirected Request (GEP-3567).
//! 3. When the rule has a TrafficPolicy, run its layers (CORS, rate limit, basic auth, API
//!    key, JWT, external auth, CEL transformation; see [`policy`](crate::policy)): their
//!    answers (204, 401, 403, 429, an auth service's denial) end here.
//! 4. Apply the rule's request filters in order (header modifiers, URL rewrite, mirror, CORS,
//!    or a redirect / CORS preflight answered directly); unresolved filters answer 500. An
//!    ExternalAuth filter asks its auth service first (see below).
//! 5. Pick a backend by weight (none, or all weights 0: 500; an invalid backend: 500); apply
//!    its filters; a Service without endpoints is 503. A valid session (below) picks the
//!    backend and endpoint instead, whatever the weights.
//! 6. Forward (see below); apply ResponseHeaderModifiers and CORS headers to the response.
//! 7. Every response, forwarded or the gateway's own, carries a [`RouteInfo`] extension:
//!    listener, route, rule, backend, upstream time and attempts, trace context. Forwarding
//!    runs in a DEBUG-level `request` tracing span with the trace id, route and rule (enabled
//!    with e.g. `RUST_LOG=gw_router=debug`); the warning for a request that could not be
//!    forwarded carries those fields itself.
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
//! - Endpoints are used round-robin, skipping endpoints ejected by outlier detection
//!   ([`RouterConfig::outlier_detection`], off by default: 5xx responses, connection failures,
//!   resets and backend timeouts count as failures); when all are ejected, round-robin over
//!   all of them.
//! - Session persistence (GEP-1619), from the rule's `sessionPersistence` or an
//!   XBackendTrafficPolicy on the Service or XBackend (the rule's wins and covers all its
//!   backends): a request whose cookie or header carries a valid token goes to the endpoint
//!   it names (for an XBackend: an address of the name's current DNS answer), if that
//!   endpoint still exists and is not ejected; otherwise it is balanced and the response
//!   starts a new session (`Set-Cookie`, or the session header). Tokens are signed with
//!   [`RouterConfig::session_key`] and bound to the rule (see `gw_policy::session`); an idle
//!   timeout makes every response renew the token.
//! - Timeouts (GEP-1742): `timeouts.request` bounds everything up to the response headers,
//!   retries included; `timeouts.backendRequest` bounds each attempt up to the response
//!   headers. Either answers 504. Response bodies are streamed and not timed.
//! - Retries (GEP-1731): on a listed status code, a connection failure, a reset or a
//!   `backendRequest` timeout, up to `attempts` more times, waiting `backoff` (default 25 ms)
//!   doubled per retry (at most 8 times). Only requests whose body length is known and within
//!   [`RouterConfig::max_buffered_body`] are retried (streams are never buffered). After the
//!   last attempt the backend's response (e.g. its 503) is returned as is. With a retry budget
//!   on the Service or XBackend (XBackendTrafficPolicy `retryConstraint`, GEP-3388; shared by
//!   every rule that uses the backend, kept across reloads) every attempt is counted, and a retry the
//!   budget refuses is answered 503.
//! - Mirrors (RequestMirror) get a copy of the request, fire-and-forget, when its body could
//!   be buffered; their responses are discarded.
//! - External authorization (ExternalAuth, GEP-1494): at the filter's place among the
//!   filters, the request (as the filters before it left it) is checked by gw-policy's
//!   [`ext_authz`](gw_policy::ext_authz) over HTTP or the Envoy `ext_authz` gRPC protocol,
//!   sent through this client to the filter's backend (round-robin over its endpoints, TLS per
//!   BackendTLSPolicy; gRPC over h2c). A denial goes to the client as the auth service sent it
//!   (with the rule's ResponseHeaderModifier and CORS headers); on allow, the auth service's
//!   headers are added to the request and the next filters apply. An auth service without
//!   endpoints, down, or slower than 2 s fails closed with 403; an unresolvable backendRef is
//!   500. Denials are plain HTTP responses even for gRPC clients, which map the status to a
//!   gRPC code (403: PERMISSION_DENIED, 401: UNAUTHENTICATED). The client address and TLS SNI are passed on as gw-policy's `ClientAddr` and
//!   `TlsPeer` (for the gRPC `CheckRequest`).
//! - Transport failures are mapped to 502/503/504 once (see [`ForwardError::status`]); for
//!   gRPC requests every answer of the gateway's own is a trailers-only response (HTTP 200,
//!   `grpc-status` UNAVAILABLE(14), DEADLINE_EXCEEDED(4), INTERNAL(13) or UNIMPLEMENTED(12)).

mod auth;
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

pub(crate) use self::auth::PolicyAuthLayer;
pub use self::error::ForwardError;
use self::error::{error_response, status_response};
use self::forward::{Forward, SessionPlan};
pub use self::future::ResponseFuture;
use crate::backend::{BackendTarget, SessionSource};
use crate::body::{Body, BoxError};
use crate::filters::{DirectResponse, RequestEffects, apply_request, apply_response};
use crate::incoming::Incoming;
use crate::index::{NotFound, Resolution, RouteMatch, Routes, Rule, is_grpc};
use crate::info::RouteInfo;
use crate::normalize::{NormalizedPath, PathPolicy, check_host, normalize_path};
use crate::policy::PolicyStack;
use crate::resilience::Registry;
use crate::trace::TraceContext;
use gw_policy::outlier::{OutlierConfig, OutlierDetector, OutlierError};
use gw_policy::session::SessionKey;
use http_body_util::BodyExt;
use std::time::SystemTime;
use tower::ServiceExt;

/// Settings of the [`Router`]'s backend client.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RouterConfig {
    /// Timeout of a TCP connect to an endpoint (default 5 s); failing it is 503.
    pub connect_timeout: Duration,
    /// How long a backend connection is kept without a request (default 90 s): an idle
    /// pooled HTTP/1.1 connection, or an HTTP/2 connection no request started on. Zero turns
    /// HTTP/1.1 pooling off (a connection per request) and keeps HTTP/2 connections until the
    /// backend closes them.
    pub pool_idle_timeout: Duration,
    /// Largest request body buffered so that it can be retried or mirrored (default 1 MiB).
    pub max_buffered_body: usize,
    /// Outlier detection for every Service backend of HTTPRoute and GRPCRoute rules (default:
    /// off). No Gateway API field configures it yet. An invalid setting set directly on this
    /// field (rather than through [`with_outlier_detection`](Self::with_outlier_detection))
    /// is logged and leaves detection off.
    pub outlier_detection: Option<OutlierConfig>,
    /// The key that signs session persistence tokens (GEP-1619). Default: a random key, so
    /// sessions hold only within this process; give every replica the same key (e.g.
    /// [`SessionKey::from_secret`]) so that sessions survive restarts and work on any replica.
    pub session_key: Option<SessionKey>,
    /// How request paths are normalized before matching and forwarding (see
    /// [`crate::normalize`]; default: merge slashes, reject encoded slashes and backslashes).
    pub path: PathPolicy,
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
            outlier_detection: None,
            session_key: None,
            path: PathPolicy::default(),
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

    /// Turns on [`outlier_detection`](Self::outlier_detection) after checking the settings.
    ///
    /// ```
    /// use std::time::Duration;
    /// use gw_router::{OutlierConfig, RouterConfig};
    ///
    /// let config = RouterConfig::default().with_outlier_detection(OutlierConfig {
    ///     consecutive_failures: 3,
    ///     base_ejection_time: Duration::from_secs(10),
    ///     ..OutlierConfig::default()
    /// })?;
    /// assert!(config.outlier_detection.is_some());
    /// assert!(RouterConfig::default()
    ///     .with_outlier_detection(OutlierConfig { consecutive_failures: 0, ..OutlierConfig::default() })
    ///     .is_err());
    /// # Ok::<(), gw_router::OutlierError>(())
    /// ```
    pub fn with_outlier_detection(mut self, config: OutlierConfig) -> Result<Self, OutlierError> {
        OutlierDetector::new(config)?;
        self.outlier_detection = Some(config);
        Ok(self)
    }

    /// Sets [`session_key`](Self::session_key).
    pub fn with_session_key(mut self, key: SessionKey) -> Self {
        self.session_key = Some(key);
        self
    }

    /// Sets [`path`](Self::path).
    pub fn with_path_policy(mut self, policy: PathPolicy) -> Self {
        self.path = policy;
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
    resilience: Registry,
}

impl Router {
    /// A router with no routes (every request is 404) and the given client settings.
    pub fn new(config: RouterConfig) -> Router {
        let outlier = config
            .outlier_detection
            .filter(|c| match OutlierDetector::new(*c) {
                Ok(_) => true,
                Err(e) => {
                    tracing::error!(error = %e, "outlier detection stays off");
                    false
                }
            });
        let key = config
            .session_key
            .clone()
            .or_else(|| match SessionKey::random() {
                Ok(k) => Some(k),
                Err(e) => {
                    tracing::error!(error = %e, "session persistence is off");
                    None
                }
            });
        Router {
            shared: Arc::new(Shared {
                routes: Arc::new(ArcSwap::from_pointee(Routes::default())),
                client: client::Client::new(config.connect_timeout, config.pool_idle_timeout),
                resilience: Registry::new(outlier, key),
                config,
            }),
        }
    }

    /// Replaces the routes. Requests in flight finish with the routes they started with.
    /// Pooled TLS connections of backend TLS setups the new routes no longer use are dropped.
    pub fn swap(&self, routes: Routes) {
        let keep = routes.tls_keys();
        self.shared.resilience.attach(&routes);
        self.shared.routes.store(Arc::new(routes));
        self.shared.client.retain_tls(&keep);
    }

    /// Routes a request: what [`Service::call`](tower::Service::call) does, from a shared
    /// reference. A server that holds one router for all its connections can call this
    /// instead of cloning the router for `oneshot` (a reference-count write on the router
    /// that every thread shares, per request).
    ///
    /// ```
    /// use gw_router::{Incoming, Router, RouterConfig, Scheme};
    /// use gw_router::gw_model::resources::ObjectKey;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let router = Router::new(RouterConfig::default());
    /// let mut req = http::Request::new(http_body_util::Empty::<bytes::Bytes>::new());
    /// req.extensions_mut().insert(Incoming {
    ///     gateway: ObjectKey::new("default", "edge"),
    ///     port: 8080,
    ///     scheme: Scheme::Http,
    ///     peer: None,
    ///     sni: None,
    /// });
    /// // No routes yet: 404.
    /// let resp = router.handle(req).await.unwrap_or_else(|never| match never {});
    /// assert_eq!(resp.status(), http::StatusCode::NOT_FOUND);
    /// # }
    /// ```
    pub fn handle<B>(&self, req: Request<B>) -> ResponseFuture
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.route(req)
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

    /// A response of the gateway's own, with what is known of the request.
    fn answer(status: StatusCode, grpc: bool, message: &str, info: RouteInfo) -> ResponseFuture {
        let mut resp = status_response(status, grpc, message);
        resp.extensions_mut().insert(info);
        ResponseFuture::ready(resp)
    }

    fn direct(rule: &Rule, d: DirectResponse, grpc: bool) -> Response<Body> {
        let mut resp = match d {
            DirectResponse::Error { status, reason } => {
                tracing::warn!(route = %rule.route().key, rule = rule.rule_index(), %status, %reason, "answering an error");
                status_response(status, grpc, &reason)
            }
            other => other.into_response(),
        };
        apply_response(&rule.filters, resp.headers_mut());
        resp
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
        // Taken, not cloned: nothing after this point reads it from the extensions.
        let Some(incoming) = parts.extensions.remove::<Incoming>() else {
            tracing::error!(uri = %parts.uri, "request without the gw_router::Incoming extension; the server must insert it");
            return Self::answer(StatusCode::NOT_FOUND, grpc, "no listener information", info);
        };
        if let Some(mut resp) = canonicalize(&mut parts, &self.shared.config.path, grpc) {
            resp.extensions_mut().insert(info);
            return ResponseFuture::ready(resp);
        }
        // A guard, not a clone: every request would otherwise write the reference count of
        // the one routing table that all worker threads share.
        let routes = self.shared.routes.load();
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
        // The rule is borrowed from the match here and in `dispatch`: every clone and drop of
        // it writes a reference count that all requests of the route share across threads.
        let rule = route.rule();
        info.rule = Some(rule.clone());
        // Forwarding fills in the backend and the upstream exchange; every other answer gets
        // what is known here.
        parts.extensions.insert(info.clone());
        // DEBUG: at the default INFO level the span is disabled and costs nothing; creating
        // it formats its fields for the log, a tenth of the gateway's CPU time per request.
        // The warnings of the forwarding path name the route and rule themselves.
        let span = tracing::debug_span!(
            "request",
            trace_id = info.trace.map(|t| tracing::field::display(t.trace_id())),
            route = %rule.route_label(),
            rule = %rule.rule_label(),
        );
        let policy = rule.policy.clone();
        let fut = match policy {
            Some(policy) => self.through_policy(policy, route, incoming, grpc, parts, body),
            None => self.dispatch(route, incoming, grpc, parts, body),
        };
        ResponseFuture::forward(tracing::Instrument::instrument(
            async move {
                let mut resp = match fut.await {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                if resp.extensions().get::<RouteInfo>().is_none() {
                    resp.extensions_mut().insert(info);
                }
                resp
            },
            span,
        ))
    }

    /// Runs the rule's TrafficPolicy layers; the innermost service ([`after_policy`]) goes on
    /// with [`Router::dispatch`].
    fn through_policy<B>(
        &self,
        policy: PolicyStack,
        route: RouteMatch,
        incoming: Incoming,
        grpc: bool,
        mut parts: http::request::Parts,
        body: B,
    ) -> ResponseFuture
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let stack = match policy {
            PolicyStack::Layers(stack) => stack,
            PolicyStack::Broken(why) => {
                let d = DirectResponse::error(StatusCode::INTERNAL_SERVER_ERROR, why.to_string());
                return ResponseFuture::ready(Self::direct(route.rule(), d, grpc));
            }
        };
        auth::add_connection_extensions(&mut parts, &incoming);
        parts.extensions.insert(Next {
            router: self.clone(),
            route,
            incoming,
            grpc,
        });
        let body: Body = body.map_err(|e| -> BoxError { e.into() }).boxed_unsync();
        ResponseFuture::forward(PolicyFuture {
            call: stack.oneshot(Request::from_parts(parts, body)),
            grpc,
        })
    }

    /// Filters, backend choice and forwarding for a matched (and policy-checked) request.
    fn dispatch<B>(
        &self,
        route: RouteMatch,
        incoming: Incoming,
        grpc: bool,
        mut parts: http::request::Parts,
        body: B,
    ) -> ResponseFuture
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let rule = route.rule();
        let ctx = route.ctx(incoming.scheme, incoming.port);
        let mut effects = RequestEffects::default();
        match apply_request(&rule.filters, &mut parts, &ctx, &mut effects) {
            Err(d) => return ResponseFuture::ready(Self::direct(rule, d, grpc)),
            Ok(Some(i)) => {
                let state = auth::State {
                    shared: self.shared.clone(),
                    route,
                    incoming,
                    grpc,
                    parts,
                    effects,
                    stage: auth::Stage::Rule(i),
                };
                return ResponseFuture::forward(state.run(body));
            }
            Ok(None) => {}
        }
        let picked = match Self::pick(rule, &route, &parts, &incoming, grpc) {
            Ok(p) => p,
            Err(resp) => return ResponseFuture::ready(resp),
        };
        let backend_filters = rule
            .backends
            .get(picked.backend)
            .map_or(&[][..], |c| &c.filters);
        match apply_request(backend_filters, &mut parts, &ctx, &mut effects) {
            Err(d) => return ResponseFuture::ready(Self::direct(rule, d, grpc)),
            Ok(Some(i)) => {
                let state = auth::State {
                    shared: self.shared.clone(),
                    route,
                    incoming,
                    grpc,
                    parts,
                    effects,
                    stage: auth::Stage::Backend(picked, i),
                };
                return ResponseFuture::forward(state.run(body));
            }
            Ok(None) => {}
        }
        match Self::forward(
            &self.shared,
            route.into_rule(),
            picked,
            parts,
            body,
            effects,
            incoming,
            grpc,
        ) {
            Ok(forward) => ResponseFuture::forward(forward.run()),
            Err(resp) => ResponseFuture::ready(resp),
        }
    }

    /// Picks the rule's backend: the one a valid session names (GEP-1619), whatever the
    /// weights, else one by weight; none (or all weights 0) is 500.
    // The `Err` is the response itself, moved once to the caller: boxing it would only add
    // an allocation.
    #[allow(clippy::result_large_err)]
    fn pick(
        rule: &Rule,
        route: &RouteMatch,
        parts: &http::request::Parts,
        incoming: &Incoming,
        grpc: bool,
    ) -> Result<Picked, Response<Body>> {
        let sticky = rule.backends.sticky();
        let found = sticky.and_then(|s| s.find(&parts.headers, &rule.backends, SystemTime::now()));
        let picked = match found {
            Some(f) => Some(f.backend),
            None => rule.backends.pick(),
        };
        let Some(backend) = picked else {
            let d = DirectResponse::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "rule has no backend with a weight above 0",
            );
            return Err(Self::direct(rule, d, grpc));
        };
        if rule.backends.get(backend).is_none() {
            let d = DirectResponse::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "backend index out of range",
            );
            return Err(Self::direct(rule, d, grpc));
        }
        let session = sticky.and_then(|s| {
            let source = found.map(|f| f.source).or_else(|| s.source_for(backend))?;
            let path = match (source, rule.http_entry()) {
                (SessionSource::Backend(_), _) => None,
                (SessionSource::Rule, Some(e)) => e
                    .matches
                    .get(route.match_index())
                    .map(|m| m.path.cookie_path())
                    .or_else(|| Some("/".to_owned())),
                (SessionSource::Rule, None) => Some("/".to_owned()),
            };
            Some(SessionPlan {
                source,
                existing: found.map(|f| f.session),
                path,
                secure: incoming.scheme == crate::Scheme::Https,
            })
        });
        Ok(Picked {
            backend,
            pinned: found.map(|f| f.endpoint),
            session,
        })
    }

    /// The forwarding step for a request whose filters are all applied: an invalid backend
    /// is 500, a Service without endpoints (or an external name that does not resolve) 503.
    #[allow(clippy::too_many_arguments, clippy::result_large_err)]
    fn forward<B>(
        shared: &Arc<Shared>,
        rule: Arc<Rule>,
        picked: Picked,
        mut parts: http::request::Parts,
        body: B,
        effects: RequestEffects,
        incoming: Incoming,
        grpc: bool,
    ) -> Result<Forward<B>, Response<Body>> {
        let backend = picked.backend;
        let Some(choice) = rule.backends.get(backend) else {
            let d = DirectResponse::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "backend index out of range",
            );
            return Err(Self::direct(&rule, d, grpc));
        };
        // Taken, not cloned: the request goes to the backend without its extensions.
        let mut info = parts.extensions.remove::<RouteInfo>().unwrap_or_default();
        info.backend = Some(choice.label.clone());
        match &*choice.target {
            BackendTarget::Invalid(reason) => {
                let d = DirectResponse::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("invalid backend: {reason}"),
                );
                let mut resp = Self::direct(&rule, d, grpc);
                resp.extensions_mut().insert(info);
                return Err(resp);
            }
            BackendTarget::Service(s) if s.unavailable() => {
                let e = match &s.dns {
                    Some(name) => ForwardError::Unresolved {
                        backend: s.service.clone(),
                        error: crate::dns::ResolveError::Failed {
                            host: name.host().to_owned(),
                            reason: name.status().error.unwrap_or_else(|| "no address".into()),
                        },
                    },
                    None => ForwardError::NoEndpoints {
                        service: s.service.clone(),
                    },
                };
                let mut resp = error_response(&e, grpc, &rule, info.trace);
                apply_response(&rule.filters, resp.headers_mut());
                resp.extensions_mut().insert(info);
                return Err(resp);
            }
            BackendTarget::Service(_) => {}
        }
        Ok(Forward {
            shared: shared.clone(),
            rule,
            backend,
            parts,
            body,
            effects,
            incoming,
            grpc,
            pinned: picked.pinned,
            session: picked.session,
            info,
        })
    }
}

/// The backend chosen for a request, with its session (GEP-1619) when the rule has one.
pub(super) struct Picked {
    pub(super) backend: usize,
    /// The endpoint a valid session names.
    pinned: Option<std::net::SocketAddr>,
    session: Option<SessionPlan>,
}

/// What the innermost service of a policy stack needs to go on with the request.
#[derive(Debug, Clone)]
struct Next {
    router: Router,
    route: RouteMatch,
    incoming: Incoming,
    grpc: bool,
}

/// Marks responses that passed every policy layer (the rest are the layers' own answers).
#[derive(Debug, Clone, Copy)]
struct PassedPolicy;

/// The innermost service of every policy stack: the request passed the policy layers.
pub(crate) fn after_policy(mut req: Request<Body>) -> PassedFuture {
    let Some(next) = req.extensions_mut().remove::<Next>() else {
        tracing::error!("policy stack called without its continuation; answering 500");
        return PassedFuture(ResponseFuture::ready(status_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            false,
            "policy continuation missing",
        )));
    };
    let (parts, body) = req.into_parts();
    PassedFuture(
        next.router
            .dispatch(next.route, next.incoming, next.grpc, parts, body),
    )
}

/// The [`ResponseFuture`] of a request that passed the policy layers, marking its response.
pub(crate) struct PassedFuture(ResponseFuture);

impl std::future::Future for PassedFuture {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|r| {
            r.map(|mut resp| {
                resp.extensions_mut().insert(PassedPolicy);
                resp
            })
        })
    }
}

/// The future of a request through a policy stack.
struct PolicyFuture {
    call: tower::util::Oneshot<crate::policy::PolicyService, Request<Body>>,
    grpc: bool,
}

impl std::future::Future for PolicyFuture {
    type Output = Response<Body>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let grpc = self.grpc;
        std::pin::Pin::new(&mut self.call)
            .poll(cx)
            .map(|r| match r {
                Ok(resp) => policy_answer(resp, grpc),
                Err(never) => match never {},
            })
    }
}

/// A response from a policy stack: a layer's own answer to a gRPC request becomes a
/// trailers-only gRPC answer with the matching code, keeping the layer's headers.
fn policy_answer(mut resp: Response<Body>, grpc: bool) -> Response<Body> {
    if resp.extensions_mut().remove::<PassedPolicy>().is_some() || !grpc {
        return resp;
    }
    let status = resp.status();
    let mut answer = status_response(status, true, status.canonical_reason().unwrap_or("denied"));
    for (name, value) in resp.headers() {
        if !answer.headers().contains_key(name) {
            answer.headers_mut().append(name.clone(), value.clone());
        }
    }
    answer
}

/// Checks the host and normalizes the path in place (see [`crate::normalize`]); the answer
/// when the request is refused or redirected (`None`: route it).
fn canonicalize(
    parts: &mut http::request::Parts,
    policy: &PathPolicy,
    grpc: bool,
) -> Option<Response<Body>> {
    if let Err(e) = check_host(parts.version, &parts.uri, &parts.headers) {
        tracing::debug!(uri = %parts.uri, error = %e, "request refused");
        return Some(status_response(
            StatusCode::BAD_REQUEST,
            grpc,
            &e.to_string(),
        ));
    }
    // RFC 9112 3.2.2: the authority of an absolute-form target replaces Host (HTTP/2: the
    // same host, checked above).
    if let Some(a) = parts.uri.authority()
        && let Ok(v) = http::HeaderValue::from_str(a.as_str())
    {
        parts.headers.insert(http::header::HOST, v);
    }
    let canonical = match normalize_path(parts.uri.path(), policy) {
        Ok(NormalizedPath::Canonical(std::borrow::Cow::Borrowed(_))) => return None,
        Ok(NormalizedPath::Canonical(c)) => c.into_owned(),
        Ok(NormalizedPath::Redirect(path)) => {
            let location = match parts.uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path,
            };
            let mut resp = status_response(StatusCode::PERMANENT_REDIRECT, grpc, "redirect");
            match http::HeaderValue::from_str(&location) {
                Ok(v) if !grpc => {
                    resp.headers_mut().insert(http::header::LOCATION, v);
                    return Some(resp);
                }
                _ => {
                    return Some(status_response(
                        StatusCode::BAD_REQUEST,
                        grpc,
                        "encoded slash or backslash in the request path",
                    ));
                }
            }
        }
        Err(e) => {
            tracing::debug!(uri = %parts.uri, error = %e, "request refused");
            return Some(status_response(
                StatusCode::BAD_REQUEST,
                grpc,
                &e.to_string(),
            ));
        }
    };
    match crate::filters::with_path(&parts.uri, &canonical) {
        Ok(uri) => {
            parts.uri = uri;
            None
        }
        Err(e) => {
            tracing::warn!(uri = %parts.uri, %canonical, error = %e, "normalized path does not parse");
            Some(status_response(
                StatusCode::BAD_REQUEST,
                grpc,
                "invalid request path",
            ))
        }
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
