//! Errors compiling external authorization, and why a check failed.

/// Why an [`ExtAuthzConfig`](super::ExtAuthzConfig) does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExtAuthzError {
    /// `protocol` is neither `HTTP` nor `GRPC`.
    #[error("external auth protocol {0:?} is not supported; use HTTP or GRPC")]
    UnsupportedProtocol(String),
    /// A header name in `allowedHeaders` or `allowedResponseHeaders` is invalid.
    #[error("external auth {field} entry {name:?} is not a valid header name")]
    InvalidHeaderName {
        /// `allowedHeaders` or `allowedResponseHeaders`.
        field: &'static str,
        /// The name as given.
        name: String,
    },
    /// `http.path` is not an absolute path without query or fragment.
    #[error(
        "external auth http.path {0:?} is not a path prefix; it must start with '/' and \
         contain no '?', '#' or whitespace"
    )]
    InvalidPath(String),
    /// `forwardBody.maxSize` is negative.
    #[error("external auth forwardBody.maxSize {0} is negative")]
    NegativeMaxSize(i64),
    /// The timeout is zero.
    #[error("external auth timeout is 0; every check would fail")]
    ZeroTimeout,
    /// The failure status is not an error status (4xx or 5xx).
    #[error("external auth failure status {0} is not a 4xx or 5xx status")]
    FailureStatus(u16),
}

/// Why talking to the auth service failed (the failure mode decides what the client gets).
/// Logged; not returned to callers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum CheckError {
    /// No answer within the timeout.
    #[error("auth service did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The client failed (connect, reset, TLS, ...).
    #[error("auth service request failed: {0}")]
    Transport(#[source] tower::BoxError),
    /// The gRPC call failed (status other than OK, or a transport error).
    #[error("auth service gRPC call failed: {0}")]
    Grpc(#[source] tonic::Status),
    /// The HTTP auth response body could not be read or is too large.
    #[error("auth service response body: {0}")]
    Body(#[source] tower::BoxError),
    /// The auth service answered something that cannot be applied (an invalid header, a
    /// status code out of range).
    #[error("auth service answer is invalid: {0}")]
    Invalid(String),
}
