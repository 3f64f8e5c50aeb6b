//! External authorization (Gateway API GEP-1494, the HTTPRoute `ExternalAuth` filter): each
//! request is first sent to an auth service, which allows it (possibly adding headers) or
//! answers for it.
//!
//! # Protocols
//!
//! **HTTP** ([`ExtAuthzConfig::http`]): the auth service gets a request with the original
//! method and path (with `http.path` prefixed, query kept), the headers that are always sent
//! (`Host`, `Authorization`, and `Content-Length` giving the bytes actually forwarded, 0
//! without body forwarding) plus `allowedHeaders`. A `200` allows the request: the auth
//! response's headers named in `allowedResponseHeaders` are copied onto the upstream request,
//! replacing values of the same name; with an empty list, all of them except `Host`,
//! hop-by-hop and framing headers, and the headers describing the auth response's own body
//! (`Content-Type`, `Content-Encoding`, `Date`, `Server`), which would corrupt or mislabel the
//! upstream request. **Any other status denies**: the auth service's response (status,
//! headers, body up to `max_response_body`) goes to the client as it is, so a `302` to a
//! sign-in page or a `401` with `WWW-Authenticate` reach the client.
//!
//! **gRPC** ([`ExtAuthzConfig::grpc`]): the Envoy `ext_authz` protocol,
//! `envoy.service.auth.v3.Authorization/Check` (messages in [`proto`]). The `CheckRequest`
//! carries the method, path, host, scheme, protocol, headers (`allowedHeaders`, or all of them
//! when empty, plus the `:authority`, `:method`, `:path`, `:scheme` pseudo-headers; several
//! values joined with `,`), the client address ([`ClientAddr`](crate::ClientAddr)) and, for
//! verified client certificates, the principal ([`TlsPeer::principal`](crate::TlsPeer::principal)).
//! A `CheckResponse` with status OK allows the request and applies `ok_response`: `headers`
//! (overwriting unless `append` is true, or as `append_action` says), `headers_to_remove`
//! (never `Host`), and `response_headers_to_add` (added to the response). Any other status
//! denies with `denied_response`: its status (403 when unset), headers and body.
//!
//! # Body forwarding
//!
//! With `forward_body_max` (`forwardBody.maxSize`) above 0, the request body is buffered up to
//! that many bytes and sent to the auth service, cut at the limit: the field's own rule ("the
//! body sent to the authorization server must be truncated to `maxSize` bytes"), which the
//! stanza's older wording about rejecting larger bodies contradicts. The auth request carries
//! `x-envoy-auth-partial-body: true` when the body was cut (as Envoy does). The upstream
//! request always gets the whole body: the buffered bytes, then the rest of the stream
//! ([`RequestBody`]). A gRPC `CheckRequest` has the body in `body` when it is UTF-8, else in
//! `raw_body`.
//!
//! # Failures
//!
//! The auth service has `timeout` (default 2 s) to answer, connection, headers and denial
//! body included; a gRPC call also carries it as `grpc-timeout`. A slow or unreachable
//! service, a transport error, a gRPC error status or an oversized denial body is a failure,
//! logged at `warn`, and the [`FailureMode`] decides: **closed by default**, the client gets
//! `failure_status` (default **403 Forbidden**, Envoy's `status_on_error` default) with an
//! empty body; Gateway API requires this ("If there is any problem communicating with the
//! external service, this filter MUST fail closed"). [`FailureMode::Open`] lets the request
//! through unchanged instead. A client body that cannot be read (when forwarding it) is 400.
//!
//! # The client
//!
//! The auth service is reached through an injected tower `Service`
//! (`http::Request<`[`AuthBody`]`>` to `http::Response<impl Body>`): gw-router passes its
//! pooled backend client; tests pass an in-memory service. Requests have an origin-form URI;
//! the client decides where to send them.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//!
//! use bytes::Bytes;
//! use gw_policy::ext_authz::{AuthBody, ExtAuthzConfig, ExtAuthzLayer};
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! // The auth service: a session cookie... or a redirect to the sign-in page.
//! let auth = service_fn(|req: Request<AuthBody>| async move {
//!     assert_eq!(req.uri(), "/check/orders");
//!     let resp = if req.headers().get("cookie").is_some_and(|c| c == "session=ok") {
//!         Response::builder().header("x-user", "alice").body(Full::new(Bytes::new()))
//!     } else {
//!         Response::builder()
//!             .status(StatusCode::FOUND)
//!             .header("location", "https://login.example.com/")
//!             .body(Full::new(Bytes::from("sign in")))
//!     };
//!     Ok::<_, Infallible>(resp.unwrap_or_default())
//! });
//! let config = ExtAuthzConfig::from_filter(&serde_json::from_value(serde_json::json!({
//!     "protocol": "HTTP",
//!     "backendRef": {"name": "auth", "port": 8080},
//!     "http": {"path": "/check", "allowedHeaders": ["cookie"], "allowedResponseHeaders": ["x-user"]}
//! }))?)?
//! .compile()?;
//! let svc = ServiceBuilder::new()
//!     .layer(ExtAuthzLayer::new(config, auth))
//!     .service(service_fn(|req: Request<_>| async move {
//!         let user = req.headers()["x-user"].clone();
//!         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(user.as_bytes().to_vec()))))
//!     }));
//!
//! let req = Request::get("/orders").header("cookie", "session=ok").body(Full::new(Bytes::new()))?;
//! let resp = svc.clone().oneshot(req).await?;
//! assert_eq!(resp.into_body().collect().await?.to_bytes(), "alice");
//!
//! let denied = svc.oneshot(Request::get("/orders").body(Full::new(Bytes::new()))?).await?;
//! assert_eq!(denied.status(), StatusCode::FOUND);
//! assert_eq!(denied.headers()["location"], "https://login.example.com/");
//! assert_eq!(denied.into_body().collect().await?.to_bytes(), "sign in");
//! # Ok(())
//! # }
//! ```

mod body;
mod check;
mod config;
mod error;
mod future;
mod layer;
pub mod proto;
#[cfg(test)]
mod tests;

use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{Either, Full};
use tower::{BoxError, Service};

pub use self::body::RequestBody;
pub use self::check::{AuthBody, Authorizer, Decision, PARTIAL_BODY_HEADER};
pub use self::config::{
    CompiledExtAuthz, DEFAULT_MAX_RESPONSE_BODY, DEFAULT_TIMEOUT, ExtAuthzConfig, FailureMode,
    Protocol,
};
pub use self::error::ExtAuthzError;
pub use self::future::ResponseFuture;
pub use self::layer::ExtAuthzLayer;
use crate::outcome::merge_headers;

/// The external authorization middleware; see the [module docs](self).
///
/// The inner service receives the request with a [`RequestBody`]; the response body is
/// `Either<inner body, Full<Bytes>>` (`Right` for the answers of the auth service).
#[derive(Debug, Clone)]
pub struct ExtAuthz<S, C> {
    inner: S,
    authorizer: Authorizer<C>,
}

impl<S, C> ExtAuthz<S, C> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Consumes the middleware, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, RB, ReqBody, ResBody> Service<Request<ReqBody>> for ExtAuthz<S, C>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    C: Service<Request<AuthBody>, Response = Response<RB>> + Clone + Send + Sync + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
    ReqBody: Body<Data = Bytes> + Unpin + Send + 'static,
    ReqBody::Error: std::fmt::Display,
    ResBody: Send + 'static,
{
    type Response = Response<Either<ResBody, Full<Bytes>>>;
    type Error = S::Error;
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // Call the service that was polled ready; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let authorizer = self.authorizer.clone();
        let fut = async move {
            let (mut parts, body) = req.into_parts();
            match authorizer.check(&mut parts, body).await {
                Decision::Allow {
                    body,
                    response_headers,
                } => {
                    let mut resp = inner.call(Request::from_parts(parts, body)).await?;
                    merge_headers(resp.headers_mut(), response_headers);
                    Ok(resp.map(Either::Left))
                }
                Decision::Deny(resp) => Ok(resp.map(|b| Either::Right(Full::new(b)))),
            }
        };
        ResponseFuture {
            inner: Box::pin(fut),
        }
    }
}
