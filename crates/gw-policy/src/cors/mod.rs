//! Cross-origin resource sharing (GEP-1767, the HTTPRoute `CORS` filter).
//!
//! [`CompiledCors`] is the pure decision, compiled once from
//! [`gw_model::resources::Cors`]; [`CorsLayer`] applies it in a tower stack. Preflights
//! (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) are answered `204` by the
//! layer without calling the inner service; other requests from an allowed origin get
//! `Access-Control-Allow-Origin` (the request's origin), `Vary: origin`, and the credentials and
//! expose headers. Origins may be exact (`https://www.example.com`), `*`, or wildcard hosts
//! (`https://*.example.com`, which matches any number of labels but not `example.com`); a
//! missing port is the scheme's default.
//!
//! # Example
//!
//! ```
//! use gw_policy::cors::{CompiledCors, CorsLayer};
//! use gw_policy::gw_model::resources::Cors;
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = CompiledCors::new(&Cors {
//!     allow_origins: vec!["https://*.example.com".into()],
//!     allow_methods: vec!["GET".into(), "PUT".into()],
//!     allow_credentials: Some(true),
//!     ..Cors::default()
//! })?;
//! let svc = ServiceBuilder::new()
//!     .layer(CorsLayer::new(policy))
//!     .service(service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::from("hello")))
//!     }));
//!
//! // The preflight never reaches the backend.
//! let preflight = Request::options("/")
//!     .header("origin", "https://app.example.com")
//!     .header("access-control-request-method", "PUT")
//!     .body(String::new())?;
//! let resp = svc.clone().oneshot(preflight).await?;
//! assert_eq!(resp.status(), StatusCode::NO_CONTENT);
//! assert_eq!(resp.headers()["access-control-allow-methods"], "GET, PUT");
//!
//! // An actual request is forwarded and gets the CORS headers.
//! let get = Request::get("/").header("origin", "https://app.example.com").body(String::new())?;
//! let resp = svc.oneshot(get).await?;
//! assert_eq!(resp.headers()["access-control-allow-origin"], "https://app.example.com");
//! assert_eq!(resp.headers()["access-control-allow-credentials"], "true");
//! # Ok(())
//! # }
//! ```

mod error;
mod future;
mod layer;
mod policy;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::Service;

pub use self::error::CorsError;
pub use self::future::ResponseFuture;
pub use self::layer::CorsLayer;
pub use self::policy::{CompiledCors, CorsHeaders};
use crate::outcome::Outcome;

/// The CORS middleware; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Cors<S> {
    inner: S,
    policy: Arc<CompiledCors>,
}

impl<S> Cors<S> {
    /// Wraps `inner` with `policy`.
    pub fn new(inner: S, policy: Arc<CompiledCors>) -> Self {
        Cors { inner, policy }
    }

    /// The compiled policy.
    pub fn policy(&self) -> &CompiledCors {
        &self.policy
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Consumes the middleware, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Cors<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let inner = if let Some(headers) = self.policy.preflight(req.method(), req.headers()) {
            Outcome::ready(crate::outcome::response_with(
                CompiledCors::PREFLIGHT_STATUS,
                headers,
            ))
        } else {
            let headers = self.policy.actual(req.headers()).into_header_map();
            Outcome::inner_with(self.inner.call(req), headers)
        };
        ResponseFuture { inner }
    }
}
