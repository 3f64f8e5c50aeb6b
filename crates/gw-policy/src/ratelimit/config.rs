//! Rate limit configuration (plain data) and its compiled form.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, request};

use super::RateLimitError;

/// Keep at most this many per-key buckets unless told otherwise.
pub const DEFAULT_MAX_KEYS: usize = 10_000;

/// What a request is counted against.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum KeySource {
    /// One bucket for every request through the layer (per route, when each route has its
    /// own layer).
    Route,
    /// One bucket per client IP, read from [`ClientAddr`](crate::ClientAddr) (or a bare
    /// `SocketAddr` extension).
    ClientIp,
    /// One bucket per value of a request header.
    Header(HeaderName),
    /// One bucket per string a function computes from the request head.
    Custom(KeyFn),
    /// One bucket per value of a CEL expression over the request's attributes (the same
    /// attributes as [`transform`](crate::transform): `request`, `source`, `connection`,
    /// `jwt`), e.g. `jwt.sub` or `request.headers['x-tenant'] + '/' + source.address`.
    /// Strings are used as they are; ints, uints, doubles, booleans and bytes are formatted.
    /// `null`, an evaluation error (logged) or a list or map value: the shared bucket.
    Cel(CelKey),
}

impl KeySource {
    /// Keyed by the value of the header `name`.
    pub fn header(name: &str) -> Result<KeySource, RateLimitError> {
        HeaderName::from_bytes(name.as_bytes())
            .map(KeySource::Header)
            .map_err(|_| RateLimitError::InvalidHeaderName {
                name: name.to_owned(),
            })
    }

    /// Keyed by the value of the CEL expression `expr`, compiled now.
    pub fn cel(expr: &str) -> Result<KeySource, RateLimitError> {
        match crate::expr::Expr::compile(expr) {
            Ok(e) if e.uses.response => Err(RateLimitError::InvalidExpression {
                expression: expr.to_owned(),
                message: "`response` is not available to a rate-limit key".to_owned(),
            }),
            Ok(e) => Ok(KeySource::Cel(CelKey(e))),
            Err(message) => Err(RateLimitError::InvalidExpression {
                expression: expr.to_owned(),
                message,
            }),
        }
    }

    /// Keyed by what `f` returns for the request head.
    pub fn custom<F>(f: F) -> KeySource
    where
        F: Fn(&request::Parts) -> Option<String> + Send + Sync + 'static,
    {
        KeySource::Custom(KeyFn(Arc::new(f)))
    }
}

/// A key function for [`KeySource::Custom`]. Requests for which it returns `None` share one
/// bucket.
#[derive(Clone)]
pub struct KeyFn(pub(crate) Arc<KeyFnInner>);

/// A compiled CEL key expression for [`KeySource::Cel`].
#[derive(Debug, Clone)]
pub struct CelKey(pub(crate) crate::expr::Expr);

impl CelKey {
    /// The expression as written.
    pub fn source(&self) -> &str {
        self.0.source()
    }
}

type KeyFnInner = dyn Fn(&request::Parts) -> Option<String> + Send + Sync;

impl fmt::Debug for KeyFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyFn(..)")
    }
}

/// A token bucket limit: `capacity` tokens, refilled at `refill_tokens` per `refill_period`,
/// one bucket per [`KeySource`] key. Each request takes one token; a request that finds the
/// bucket empty is answered 429.
///
/// Requests whose key cannot be computed (no client address, no such header, a custom key
/// function returning `None`) share one bucket.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RateLimitConfig {
    /// Bucket size: the burst a fresh key may send at once.
    pub capacity: u32,
    /// Tokens added every `refill_period`, spread evenly over it.
    pub refill_tokens: u32,
    /// The refill period.
    pub refill_period: Duration,
    /// What requests are counted against.
    pub key: KeySource,
    /// The most per-key buckets kept. Full buckets are forgotten first (a full bucket is the
    /// same as none); past that, the ones closest to full.
    pub max_keys: usize,
}

impl RateLimitConfig {
    /// `capacity` tokens refilled at `refill_tokens` per `refill_period`, one bucket for all
    /// requests, at most [`DEFAULT_MAX_KEYS`] keys.
    pub fn new(capacity: u32, refill_tokens: u32, refill_period: Duration) -> Self {
        RateLimitConfig {
            capacity,
            refill_tokens,
            refill_period,
            key: KeySource::Route,
            max_keys: DEFAULT_MAX_KEYS,
        }
    }

    /// Counts requests per `key`.
    pub fn key(mut self, key: KeySource) -> Self {
        self.key = key;
        self
    }

    /// Keeps at most `max_keys` buckets.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Validates and compiles the limit.
    pub fn compile(self) -> Result<CompiledRateLimit, RateLimitError> {
        CompiledRateLimit::try_from(self)
    }
}

/// A validated [`RateLimitConfig`]: the emission interval and burst are precomputed.
#[derive(Debug, Clone)]
pub struct CompiledRateLimit {
    pub(crate) capacity: u32,
    /// Time to refill one token.
    pub(crate) interval: Duration,
    /// Time to refill the whole bucket (`interval * capacity`).
    pub(crate) burst: Duration,
    pub(crate) key: KeySource,
    pub(crate) max_keys: usize,
}

impl CompiledRateLimit {
    /// The bucket capacity (the `RateLimit-Limit` value).
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// The time one token takes to refill.
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

impl TryFrom<RateLimitConfig> for CompiledRateLimit {
    type Error = RateLimitError;

    fn try_from(c: RateLimitConfig) -> Result<Self, RateLimitError> {
        if c.capacity == 0 {
            return Err(RateLimitError::ZeroCapacity);
        }
        if c.refill_tokens == 0 || c.refill_period.is_zero() {
            return Err(RateLimitError::ZeroRate {
                tokens: c.refill_tokens,
                period: c.refill_period,
            });
        }
        if c.max_keys == 0 {
            return Err(RateLimitError::ZeroMaxKeys);
        }
        let out_of_range = || RateLimitError::OutOfRange {
            tokens: c.refill_tokens,
            period: c.refill_period,
            capacity: c.capacity,
        };
        let interval = c.refill_period / c.refill_tokens;
        if interval.is_zero() {
            return Err(out_of_range());
        }
        let burst = interval.checked_mul(c.capacity).ok_or_else(out_of_range)?;
        // Keep deadlines far from `Instant` overflow (about 30 years ahead is plenty).
        if burst > Duration::from_secs(1 << 30) {
            return Err(out_of_range());
        }
        Ok(CompiledRateLimit {
            capacity: c.capacity,
            interval,
            burst,
            key: c.key,
            max_keys: c.max_keys,
        })
    }
}
