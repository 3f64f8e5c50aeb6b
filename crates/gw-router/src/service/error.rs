//! Transport failures and their mapping to responses, done once, at the edge.

use std::net::SocketAddr;
use std::time::Duration;

use gw_model::resources::ObjectKey;
use http::{HeaderValue, Response, StatusCode};

use crate::body::{Body, BoxError, empty};
use crate::index::Rule;
use crate::trace::TraceContext;

/// Why a request could not be forwarded to a backend. The [`Router`](crate::Router) answers
/// these itself (see [`ForwardError::status`]); they are never returned as `Err`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// The chosen Service has no ready endpoints.
    #[error("backend {service} has no ready endpoints; check its EndpointSlices")]
    NoEndpoints {
        /// The Service.
        service: ObjectKey,
    },
    /// The DNS name of an external backend gives no address.
    #[error("external backend {backend}: {error}")]
    Unresolved {
        /// The XBackend.
        backend: ObjectKey,
        /// Why.
        error: crate::dns::ResolveError,
    },
    /// Connecting to the endpoint failed or timed out.
    #[error("could not connect to backend endpoint {endpoint}")]
    Connect {
        /// The endpoint.
        endpoint: SocketAddr,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// The request failed after the connection was made (reset, protocol error).
    #[error("request to backend endpoint {endpoint} failed")]
    Backend {
        /// The endpoint.
        endpoint: SocketAddr,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// No response within `timeouts.backendRequest`.
    #[error("backend did not answer within timeouts.backendRequest ({0:?})")]
    BackendTimeout(Duration),
    /// No response within `timeouts.request` (including retries).
    #[error("request did not complete within timeouts.request ({0:?})")]
    RequestTimeout(Duration),
    /// The TLS handshake with the backend failed or timed out (BackendTLSPolicy or
    /// `appProtocol: https`): most often its certificate does not verify against the policy's
    /// CA certificates, or is not valid for the policy's hostname or subjectAltNames.
    #[error(
        "TLS handshake with backend endpoint {endpoint} failed; check its certificate against the BackendTLSPolicy"
    )]
    Tls {
        /// The endpoint.
        endpoint: SocketAddr,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// Reading the request body (to buffer it for retries or mirrors) failed.
    #[error("could not read the request body")]
    RequestBody(#[source] BoxError),
    /// A retry was due but the backend's retry budget (GEP-3388) is used up: "After the retry
    /// budget has been exceeded, additional retries to the backend MUST return a 503 response
    /// to the client."
    #[error("retry budget of backend {service} is exhausted; not retrying")]
    RetryBudgetExhausted {
        /// The Service.
        service: ObjectKey,
    },
    /// An inconsistency inside gw-router (a bug): answered 500.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ForwardError {
    /// The HTTP status answered for this failure.
    pub fn status(&self) -> StatusCode {
        match self {
            ForwardError::NoEndpoints { .. }
            | ForwardError::Unresolved { .. }
            | ForwardError::Connect { .. }
            | ForwardError::RetryBudgetExhausted { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ForwardError::Backend { .. } | ForwardError::Tls { .. } => StatusCode::BAD_GATEWAY,
            ForwardError::BackendTimeout(_) | ForwardError::RequestTimeout(_) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ForwardError::RequestBody(_) => StatusCode::BAD_REQUEST,
            ForwardError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether a retry policy may try again after this failure (connection errors and
    /// per-attempt timeouts).
    pub(crate) fn is_retriable(&self) -> bool {
        match self {
            ForwardError::Connect { .. }
            | ForwardError::Backend { .. }
            | ForwardError::BackendTimeout(_) => true,
            ForwardError::NoEndpoints { .. }
            | ForwardError::Unresolved { .. }
            | ForwardError::RequestTimeout(_)
            | ForwardError::Tls { .. }
            | ForwardError::RequestBody(_)
            | ForwardError::RetryBudgetExhausted { .. }
            | ForwardError::Internal(_) => false,
        }
    }
}

/// gRPC status codes the router answers with.
fn grpc_code(status: StatusCode) -> u8 {
    match status {
        StatusCode::NOT_FOUND => 12,      // UNIMPLEMENTED
        StatusCode::GATEWAY_TIMEOUT => 4, // DEADLINE_EXCEEDED
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE => 14, // UNAVAILABLE
        StatusCode::BAD_REQUEST => 3,     // INVALID_ARGUMENT
        StatusCode::FORBIDDEN => 7,       // PERMISSION_DENIED
        StatusCode::UNAUTHORIZED => 16,   // UNAUTHENTICATED
        StatusCode::TOO_MANY_REQUESTS => 8, // RESOURCE_EXHAUSTED
        _ => 13,                          // INTERNAL
    }
}

/// A response of the gateway's own with `status`; for gRPC requests, the "trailers-only" form:
/// HTTP 200 with `grpc-status` (and `grpc-message`) in the headers.
pub(crate) fn status_response(status: StatusCode, grpc: bool, message: &str) -> Response<Body> {
    let mut resp = Response::new(empty());
    if grpc {
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.insert(
            "grpc-status",
            HeaderValue::from(u16::from(grpc_code(status))),
        );
        if let Ok(v) = HeaderValue::from_str(&grpc_message(message)) {
            h.insert("grpc-message", v);
        }
    } else {
        *resp.status_mut() = status;
    }
    resp
}

/// Percent-encodes a gRPC message (gRPC over HTTP/2: `grpc-message` is percent-encoded).
fn grpc_message(m: &str) -> String {
    let mut out = String::with_capacity(m.len());
    for b in m.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The edge: a transport failure becomes a response. The warning names the route, rule and
/// trace id itself: the per-request `request` span that also carries them is DEBUG-level.
pub(crate) fn error_response(
    e: &ForwardError,
    grpc: bool,
    rule: &Rule,
    trace: Option<TraceContext>,
) -> Response<Body> {
    tracing::warn!(
        error = %e,
        source = ?std::error::Error::source(e),
        trace_id = trace.map(|t| tracing::field::display(t.trace_id())),
        route = %rule.route_label(),
        rule = %rule.rule_label(),
        "request not forwarded"
    );
    status_response(e.status(), grpc, &e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_trailers_only() {
        let r = status_response(StatusCode::NOT_FOUND, true, "no route 100%");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["grpc-status"], "12");
        assert_eq!(r.headers()["grpc-message"], "no route 100%25");
        let r = status_response(StatusCode::GATEWAY_TIMEOUT, false, "");
        assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(r.headers().get("grpc-status").is_none());
    }
}
