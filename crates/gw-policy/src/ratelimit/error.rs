//! Errors compiling a rate limit.

/// Why a [`RateLimitConfig`](super::RateLimitConfig) does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// The bucket holds no token, so every request would be refused.
    #[error("rate limit capacity is 0; a bucket must hold at least one token")]
    ZeroCapacity,
    /// No tokens are refilled, or the refill period is zero.
    #[error(
        "rate limit refill of {tokens} tokens every {period:?} is not a rate; both must be above 0"
    )]
    ZeroRate {
        /// Tokens per period.
        tokens: u32,
        /// The period.
        period: std::time::Duration,
    },
    /// The refill rate is too fast to measure in nanoseconds, or the bucket too large.
    #[error(
        "rate limit of {tokens} tokens every {period:?} with capacity {capacity} is out of range; \
         use fewer tokens per period or a smaller capacity"
    )]
    OutOfRange {
        /// Tokens per period.
        tokens: u32,
        /// The period.
        period: std::time::Duration,
        /// The bucket capacity.
        capacity: u32,
    },
    /// `max_keys` is 0, so no per-key bucket could be kept.
    #[error("rate limit max_keys is 0; keep at least one key")]
    ZeroMaxKeys,
    /// The key header name is not a valid HTTP header name.
    #[error("rate limit key header {name:?} is not a valid header name")]
    InvalidHeaderName {
        /// The name as given.
        name: String,
    },
    /// The CEL key expression does not compile.
    #[error("rate limit key CEL expression {expression:?} does not compile: {message}")]
    InvalidExpression {
        /// The expression as written.
        expression: String,
        /// The parser's message, with line and column.
        message: String,
    },
}
