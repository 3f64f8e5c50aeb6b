//! ExternalAuth (GEP-1494) in the request path: the auth check through the router's backend
//! client, then the filters after it, then forwarding.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::HOST;
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;

use super::client::{BackendBody, Wire};
use super::error::ForwardError;
use super::forward::{add_effect_headers, wire_for};
use super::{Picked, Router, Shared};
use crate::backend::BackendTarget;
use crate::body::{Body, BoxError};
use crate::filters::{DirectResponse, Filter, RequestEffects, apply_request, apply_response};
use crate::incoming::{Incoming, Scheme};
use crate::index::RouteMatch;
use gw_policy::ext_authz::{AuthBody, Authorizer, Decision};
use gw_policy::{ClientAddr, TlsPeer};

/// Where the pending ExternalAuth filter is.
pub(super) enum Stage {
    /// The rule's filter at this index.
    Rule(usize),
    /// The filter at this index of the chosen backend's filters.
    Backend(Picked, usize),
}

/// A request stopped at an ExternalAuth filter.
pub(super) struct State {
    pub(super) shared: Arc<Shared>,
    pub(super) route: RouteMatch,
    pub(super) incoming: Incoming,
    pub(super) grpc: bool,
    pub(super) parts: http::request::Parts,
    pub(super) effects: RequestEffects,
    pub(super) stage: Stage,
}

impl State {
    /// Runs the pending auth checks and the filters after them, then forwards.
    pub(super) async fn run<B>(self, body: B) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let State {
            shared,
            route,
            incoming,
            grpc,
            mut parts,
            mut effects,
            mut stage,
        } = self;
        let rule = route.rule().clone();
        let ctx = route.ctx(incoming.scheme, incoming.port);
        let mut body: Body = body.map_err(Into::into).boxed_unsync();
        let backend = loop {
            let (filters, i) = match &stage {
                Stage::Rule(i) => (&rule.filters[..], *i),
                Stage::Backend(p, i) => (
                    rule.backends
                        .get(p.backend)
                        .map_or(&[][..], |c| &c.filters[..]),
                    *i,
                ),
            };
            let Some(Filter::ExternalAuth(auth)) = filters.get(i) else {
                let d = DirectResponse::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "ExternalAuth filter index out of range",
                );
                return Router::direct(&rule, d, grpc);
            };
            let client = AuthClient {
                shared: shared.clone(),
                target: auth.backend.clone(),
                grpc: auth.config.is_grpc(),
            };
            add_connection_extensions(&mut parts, &incoming);
            let authorizer = Authorizer::from_shared(auth.config.clone(), client);
            match authorizer.check(&mut parts, body).await {
                Decision::Allow {
                    body: allowed,
                    response_headers,
                } => {
                    body = allowed.boxed_unsync();
                    effects.auth_response.extend(response_headers);
                }
                Decision::Deny(resp) => {
                    tracing::debug!(route = %rule.route().key, status = %resp.status(), "external auth denied the request");
                    let mut resp = resp.map(crate::body::full);
                    let headers = resp.headers_mut();
                    apply_response(&rule.filters, headers);
                    add_effect_headers(headers, effects.cors, http::HeaderMap::new());
                    return resp;
                }
                // `Decision` is non-exhaustive; a future kind of answer is refused safely.
                _ => {
                    let d = DirectResponse::error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "unknown external auth decision",
                    );
                    return Router::direct(&rule, d, grpc);
                }
            }
            let rest = filters.get(i + 1..).unwrap_or_default();
            match apply_request(rest, &mut parts, &ctx, &mut effects) {
                Err(d) => return Router::direct(&rule, d, grpc),
                Ok(Some(j)) => {
                    stage = match stage {
                        Stage::Rule(_) => Stage::Rule(i + 1 + j),
                        Stage::Backend(b, _) => Stage::Backend(b, i + 1 + j),
                    };
                    continue;
                }
                Ok(None) => {}
            }
            match stage {
                Stage::Backend(p, _) => break p,
                Stage::Rule(_) => {
                    let p = match Router::pick(&rule, &route, &parts, &incoming, grpc) {
                        Ok(p) => p,
                        Err(resp) => return resp,
                    };
                    let backend_filters =
                        rule.backends.get(p.backend).map_or(&[][..], |c| &c.filters);
                    match apply_request(backend_filters, &mut parts, &ctx, &mut effects) {
                        Err(d) => return Router::direct(&rule, d, grpc),
                        Ok(Some(j)) => stage = Stage::Backend(p, j),
                        Ok(None) => break p,
                    }
                }
            }
        };
        match Router::forward(&shared, rule, backend, parts, body, effects, incoming, grpc) {
            Ok(forward) => {
                // Boxed where its `Send` is proven with concrete types (awaiting it in place
                // runs into rustc's higher-ranked lifetime limits on boxed-body errors).
                let run: Pin<Box<dyn Future<Output = Response<Body>> + Send>> =
                    Box::pin(forward.run());
                run.await
            }
            Err(resp) => resp,
        }
    }
}

/// Passes what the listener knows about the connection to the auth check and the policy
/// layers: the client address, and SNI for TLS connections (unless the server inserted richer
/// ones).
pub(super) fn add_connection_extensions(parts: &mut http::request::Parts, incoming: &Incoming) {
    if ClientAddr::of(&parts.extensions).is_none()
        && let Some(peer) = incoming.peer
    {
        parts.extensions.insert(ClientAddr(peer));
    }
    if incoming.scheme == Scheme::Https && parts.extensions.get::<TlsPeer>().is_none() {
        let peer = match &incoming.sni {
            Some(sni) => TlsPeer::new().sni(sni.clone()),
            None => TlsPeer::new(),
        };
        parts.extensions.insert(peer);
    }
}

/// The router's backend client as the auth service client of an ExternalAuth filter.
#[derive(Clone)]
struct AuthClient {
    shared: Arc<Shared>,
    target: Arc<BackendTarget>,
    grpc: bool,
}

type AuthFuture = Pin<Box<dyn Future<Output = Result<Response<BackendBody>, ForwardError>> + Send>>;

impl tower::Service<Request<AuthBody>> for AuthClient {
    type Response = Response<BackendBody>;
    type Error = ForwardError;
    type Future = AuthFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<AuthBody>) -> Self::Future {
        let shared = self.shared.clone();
        let target = self.target.clone();
        let grpc = self.grpc;
        Box::pin(async move {
            let BackendTarget::Service(svc) = &*target else {
                return Err(ForwardError::Internal(
                    "invalid external auth backend".into(),
                ));
            };
            let endpoint = svc.endpoint().ok_or_else(|| ForwardError::NoEndpoints {
                service: svc.service.clone(),
            })?;
            let wire = wire_for(svc, grpc, false);
            let tls = svc.tls.as_ref();
            let (mut parts, body) = req.into_parts();
            let pq = parts
                .uri
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .to_owned();
            let scheme = if tls.is_some() { "https" } else { "http" };
            let authority = match wire {
                Wire::Http1 => endpoint.to_string(),
                // HTTP/2 carries the host in `:authority`, not in a Host header.
                Wire::H2c => parts
                    .headers
                    .remove(HOST)
                    .and_then(|h| h.to_str().ok().map(str::to_owned))
                    .unwrap_or_else(|| endpoint.to_string()),
            };
            parts.uri = format!("{scheme}://{authority}{pq}")
                .parse()
                .map_err(|e: http::uri::InvalidUri| ForwardError::Internal(e.to_string()))?;
            parts.version = match wire {
                Wire::Http1 => Version::HTTP_11,
                Wire::H2c => Version::HTTP_2,
            };
            let body: Body = body;
            shared
                .client
                .send(endpoint, wire, tls, Request::from_parts(parts, body))
                .await
        })
    }
}

/// TrafficPolicy `extAuth` as a layer of a rule's policy stack: the `ExternalAuth` filter's
/// check (the same [`Authorizer`], the router's backend client, and the configured timeout
/// and failure mode), before the rule's filters.
#[derive(Clone)]
pub(crate) struct PolicyAuthLayer {
    config: Arc<gw_policy::ext_authz::CompiledExtAuthz>,
    backend: Arc<BackendTarget>,
}

impl PolicyAuthLayer {
    pub(crate) fn new(
        config: gw_policy::ext_authz::CompiledExtAuthz,
        backend: Arc<BackendTarget>,
    ) -> Self {
        PolicyAuthLayer {
            config: Arc::new(config),
            backend,
        }
    }
}

impl<S> tower::Layer<S> for PolicyAuthLayer
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    type Service = PolicyAuth;

    fn layer(&self, inner: S) -> PolicyAuth {
        PolicyAuth {
            // Boxed: the inner service's future is then a concrete type, whose `Send` rustc
            // can prove inside the check's future.
            inner: crate::policy::PolicyService::new(inner),
            config: self.config.clone(),
            backend: self.backend.clone(),
        }
    }
}

/// The service of [`PolicyAuthLayer`].
#[derive(Clone)]
pub(crate) struct PolicyAuth {
    inner: crate::policy::PolicyService,
    config: Arc<gw_policy::ext_authz::CompiledExtAuthz>,
    backend: Arc<BackendTarget>,
}

type PolicyAuthFuture =
    Pin<Box<dyn Future<Output = Result<Response<Body>, std::convert::Infallible>> + Send>>;

impl tower::Service<Request<Body>> for PolicyAuth {
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = PolicyAuthFuture;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // Call the service that was polled ready; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        // The router serving the request: its backend client asks the auth service.
        let Some(next) = req.extensions().get::<super::Next>() else {
            tracing::error!("policy stack called without its continuation; answering 500");
            let resp = super::status_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                false,
                "policy continuation missing",
            );
            return Box::pin(std::future::ready(Ok(resp)));
        };
        let client = AuthClient {
            shared: next.router.shared.clone(),
            target: self.backend.clone(),
            grpc: self.config.is_grpc(),
        };
        let authorizer = Authorizer::from_shared(self.config.clone(), client);
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            match authorizer.check(&mut parts, body).await {
                Decision::Allow {
                    body,
                    response_headers,
                } => {
                    let req = Request::from_parts(parts, body.boxed_unsync());
                    let mut resp = inner.call(req).await?;
                    add_effect_headers(resp.headers_mut(), Vec::new(), response_headers);
                    Ok(resp)
                }
                Decision::Deny(resp) => {
                    tracing::debug!(status = %resp.status(), "external auth (TrafficPolicy) denied the request");
                    Ok(resp.map(crate::body::full))
                }
                // `Decision` is non-exhaustive; a future kind of answer is refused safely.
                _ => Ok(super::status_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    false,
                    "unknown external auth decision",
                )),
            }
        })
    }
}
