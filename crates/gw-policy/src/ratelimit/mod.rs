//! Local rate limiting with token buckets, per route or per key.
//!
//! Each request takes one token from its key's bucket ([`KeySource`]: the whole route, the
//! client IP, a header value, a CEL expression over the request's attributes, or a function of
//! the request head). A bucket holds `capacity`
//! tokens and refills evenly at `refill_tokens` per `refill_period`. A request that finds its
//! bucket empty is answered `429 Too Many Requests` with `Retry-After` (seconds until a token is
//! back); every answer carries the IETF draft fields `RateLimit-Limit` (the capacity),
//! `RateLimit-Remaining` and `RateLimit-Reset` (seconds until the bucket is full again).
//!
//! Buckets live in memory, one small entry per key, at most `max_keys` of them: full buckets
//! are forgotten first (a full bucket behaves exactly like a new one), then the ones closest to
//! full. Time is tokio's clock, so tests on paused time are exact.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//!
//! use gw_policy::ClientAddr;
//! use gw_policy::ratelimit::{KeySource, RateLimitConfig, RateLimitLayer};
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Bursts of 2 per client IP, refilled at 1 request per second.
//! let limit = RateLimitConfig::new(2, 1, Duration::from_secs(1))
//!     .key(KeySource::ClientIp)
//!     .compile()?;
//! let svc = ServiceBuilder::new()
//!     .layer(RateLimitLayer::new(limit))
//!     .service(service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::from("hello")))
//!     }));
//!
//! let from = |ip: &str| -> Result<Request<String>, Box<dyn std::error::Error>> {
//!     let mut req = Request::new(String::new());
//!     req.extensions_mut().insert(ClientAddr(format!("{ip}:40000").parse()?));
//!     Ok(req)
//! };
//! assert_eq!(svc.clone().oneshot(from("192.0.2.1")?).await?.status(), StatusCode::OK);
//! assert_eq!(svc.clone().oneshot(from("192.0.2.1")?).await?.status(), StatusCode::OK);
//! let limited = svc.clone().oneshot(from("192.0.2.1")?).await?;
//! assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(limited.headers()["retry-after"], "1");
//! assert_eq!(limited.headers()["ratelimit-limit"], "2");
//! // Another client has its own bucket.
//! assert_eq!(svc.oneshot(from("192.0.2.2")?).await?.status(), StatusCode::OK);
//! # Ok(())
//! # }
//! ```

mod buckets;
mod config;
mod error;
mod future;
mod layer;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderName, Request, Response, StatusCode};
use tokio::time::Instant;
use tower::Service;

use self::buckets::{Buckets, Decision, Key};
pub use self::config::{
    CelKey, CompiledRateLimit, DEFAULT_MAX_KEYS, KeyFn, KeySource, RateLimitConfig,
};
pub use self::error::RateLimitError;
pub use self::future::ResponseFuture;
pub use self::layer::RateLimitLayer;
use crate::ClientAddr;
use crate::expr::{Text, Vars, text};
use crate::outcome::{Outcome, number, response_with};

/// `RateLimit-Limit` (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
/// `RateLimit-Remaining` (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
/// `RateLimit-Reset` (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// The rate limiting middleware; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    buckets: Arc<Buckets>,
}

impl<S> RateLimit<S> {
    /// The compiled limit.
    pub fn limit(&self) -> &CompiledRateLimit {
        self.buckets.limit()
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

/// The key of a request head.
fn key_of(source: &KeySource, parts: &http::request::Parts) -> Key {
    let key = match source {
        KeySource::Route => None,
        KeySource::ClientIp => ClientAddr::ip_of(&parts.extensions).map(Key::Ip),
        KeySource::Header(name) => parts.headers.get(name).cloned().map(Key::Header),
        KeySource::Custom(f) => (f.0)(parts).map(Key::Text),
        KeySource::Cel(k) => cel_key(k, parts),
    };
    key.unwrap_or(Key::Shared)
}

/// The text of a CEL key; `None` (the shared bucket) for null, errors and non-scalar values.
fn cel_key(k: &CelKey, parts: &http::request::Parts) -> Option<Key> {
    let vars = Vars::from_request(parts, k.0.uses);
    match k.0.eval(&vars).map(|v| text(&v)) {
        Ok(Text::Value(s)) => Some(Key::Text(s)),
        Ok(Text::Null) => None,
        Ok(Text::WrongType(t)) => {
            tracing::warn!(
                expression = k.source(),
                "rate limit key is a {t}, not a scalar; using the shared bucket"
            );
            None
        }
        Err(error) => {
            tracing::warn!(expression = k.source(), %error, "rate limit key expression failed; using the shared bucket");
            None
        }
    }
}

/// Whole seconds, rounded up: a client that waits this long will find the token back.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn headers(limit: &CompiledRateLimit, remaining: u64, reset: Duration) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(4);
    h.insert(RATELIMIT_LIMIT, number(u64::from(limit.capacity)));
    h.insert(RATELIMIT_REMAINING, number(remaining));
    h.insert(RATELIMIT_RESET, number(ceil_secs(reset)));
    h
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S>
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
        let limit = self.buckets.limit();
        let (parts, body) = req.into_parts();
        let key = key_of(&limit.key, &parts);
        let inner = match self.buckets.take(key, Instant::now()) {
            Decision::Allowed { remaining, reset } => {
                let req = Request::from_parts(parts, body);
                Outcome::inner_with(self.inner.call(req), headers(limit, remaining, reset))
            }
            Decision::Limited { retry_after, reset } => {
                let mut h = headers(limit, 0, reset);
                h.insert(RETRY_AFTER, number(ceil_secs(retry_after).max(1)));
                Outcome::ready(response_with(StatusCode::TOO_MANY_REQUESTS, h))
            }
        };
        ResponseFuture { inner }
    }
}
