//! Gateway API policies as tower `Layer`s.
//!
//! Every layer takes configuration compiled once (plain data, validated when it is built), so
//! nothing on the request path can fail because of configuration. Policy outcomes (a CORS
//! preflight answer, 401, 403, 429) are responses; the inner service's errors pass through
//! unchanged.
//!
//! | module | layer | answers |
//! | --- | --- | --- |
//! | [`cors`] | [`CorsLayer`](cors::CorsLayer) | preflights (204); adds CORS headers to the rest |
//! | [`ratelimit`] | [`RateLimitLayer`](ratelimit::RateLimitLayer) | 429 with `Retry-After` and `RateLimit-*` |
//! | [`basic_auth`] | [`BasicAuthLayer`](basic_auth::BasicAuthLayer) | 401 with `WWW-Authenticate: Basic` |
//! | [`api_key`] | [`ApiKeyLayer`](api_key::ApiKeyLayer) | 401 (no key), 403 (unknown key) |
//! | [`jwt`] | [`JwtLayer`](jwt::JwtLayer) | 401 with `WWW-Authenticate: Bearer` |
//! | [`transform`] | [`TransformLayer`](transform::TransformLayer) | edits headers and path by CEL expressions; 500 when a path rewrite fails |
//! | [`ext_authz`] | [`ExtAuthzLayer`](ext_authz::ExtAuthzLayer) | the auth service's denial as sent (e.g. a redirect to sign in); 403 when it cannot be asked |
//!
//! Request extensions carry what the connection and earlier layers learned: [`ClientAddr`]
//! and [`TlsPeer`] (inserted by the server that accepts connections), and the identities of
//! the auth layers (`JwtClaims`, `BasicAuthUser`, `ApiKeyClient`). CEL expressions
//! ([`transform`], [`ratelimit::KeySource::cel`]) read them as `source`, `connection` and
//! `jwt`.
//!
//! Backend resilience pieces are plain, shareable types that a data plane (gw-router) calls
//! where it picks endpoints and decides on retries:
//!
//! | module | type | does |
//! | --- | --- | --- |
//! | [`retry_budget`] | [`RetryBudget`](retry_budget::RetryBudget) | GEP-3388 retry budgets; also a `tower::retry` budget |
//! | [`session`] | [`SessionCodec`](session::SessionCodec) | GEP-1619 session tokens (cookie or header), signed and timed |
//! | [`outlier`] | [`OutlierDetector`](outlier::OutlierDetector) | ejects endpoints that keep failing, for a growing time |
//!
//! Layers that answer themselves build an empty response body with `Default`, so the inner
//! service's response body type must implement `Default` (as `String`, `Full<Bytes>` and
//! `BoxBody` do). [`ext_authz`] passes the auth service's bodies through, so its response
//! body is `Either<inner body, Full<Bytes>>`.
//!
//! # Example
//!
//! A per-client rate limit in front of CORS:
//!
//! ```
//! use std::time::Duration;
//!
//! use gw_policy::cors::{CompiledCors, CorsLayer};
//! use gw_policy::gw_model::resources::Cors;
//! use gw_policy::ratelimit::{KeySource, RateLimitConfig, RateLimitLayer};
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cors = CompiledCors::new(&Cors {
//!     allow_origins: vec!["https://app.example.com".into()],
//!     ..Cors::default()
//! })?;
//! let limit = RateLimitConfig::new(1, 1, Duration::from_secs(60))
//!     .key(KeySource::header("x-client-id")?)
//!     .compile()?;
//!
//! let svc = ServiceBuilder::new()
//!     .layer(RateLimitLayer::new(limit))
//!     .layer(CorsLayer::new(cors))
//!     .service(service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::from("hello")))
//!     }));
//!
//! let req = || {
//!     Request::get("/")
//!         .header("x-client-id", "alice")
//!         .header("origin", "https://app.example.com")
//!         .body(String::new())
//! };
//! let first = svc.clone().oneshot(req()?).await?;
//! assert_eq!(first.status(), StatusCode::OK);
//! assert_eq!(first.headers()["access-control-allow-origin"], "https://app.example.com");
//! assert_eq!(first.headers()["ratelimit-remaining"], "0");
//!
//! let second = svc.oneshot(req()?).await?;
//! assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(second.headers()["retry-after"], "60");
//! # Ok(())
//! # }
//! ```
//!
//! In `gw-gateway`, these layers are configured by the `TrafficPolicy` resource (GEP-713 policy
//! attachment to Gateways, listeners, ListenerSets, routes and route rules): gw-model computes
//! each rule's effective policy and gw-router builds the layers from it.
#![forbid(unsafe_code)]

pub mod api_key;
pub mod basic_auth;
mod client;
pub mod cors;
mod expr;
pub mod ext_authz;
pub mod jwt;
mod outcome;
pub mod outlier;
pub mod ratelimit;
pub mod retry_budget;
pub mod session;
#[cfg(test)]
mod testing;
pub mod transform;

pub use self::client::{ClientAddr, TlsPeer};
pub use gw_model;
