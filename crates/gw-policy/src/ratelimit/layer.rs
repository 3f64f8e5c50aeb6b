use std::sync::Arc;

use tower::Layer;

use super::buckets::Buckets;
use super::{CompiledRateLimit, RateLimit};

/// Rate limits requests with token buckets; see the [module docs](super).
///
/// Every service this layer builds, and every clone of them, shares the same buckets: build
/// one layer per route (or per policy) and reuse it.
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    buckets: Arc<Buckets>,
}

impl RateLimitLayer {
    /// A layer enforcing `limit`, with empty buckets state (every key starts full).
    pub fn new(limit: CompiledRateLimit) -> Self {
        RateLimitLayer {
            buckets: Arc::new(Buckets::new(limit)),
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            buckets: self.buckets.clone(),
        }
    }
}
