//! [`RouteInfo`]: what the [`Router`](crate::Router) did with a request, for access logs and
//! metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::index::Rule;
use crate::trace::TraceContext;

/// What the [`Router`](crate::Router) did with a request. It is inserted into the extensions
/// of every response the router returns, so that the server around it (or any tower layer
/// outside it) can log and measure requests by listener, route, rule and backend.
///
/// The string fields are shared labels built once per configuration (cloning them is a
/// reference-count increment), ready to be used as metric labels: their number is bounded by
/// the configuration, never by requests.
///
/// ```
/// # use gw_router::RouteInfo;
/// # fn log(resp: &http::Response<gw_router::Body>) {
/// if let Some(info) = resp.extensions().get::<RouteInfo>() {
///     let route = info.route_label().unwrap_or("-");
///     let backend = info.backend.as_deref().unwrap_or("-");
///     let upstream_ms = info.upstream.as_ref().map(|u| u.duration.as_millis());
///     println!("{} {route} {backend} {upstream_ms:?}", resp.status());
/// }
/// # }
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RouteInfo {
    /// The Gateway of the listener that served the request (`namespace/name`), when a listener
    /// was selected.
    pub gateway: Option<Arc<str>>,
    /// The listener's name, when one was selected (none: no listener on the port accepts the
    /// host, or a misdirected request).
    pub listener: Option<Arc<str>>,
    /// The rule that matched, if any (its route, index and name).
    pub rule: Option<Arc<Rule>>,
    /// Which of the rule's matches matched.
    pub match_index: Option<usize>,
    /// The backend the request was sent to (`namespace/name:port` of the Service or XBackend),
    /// when one was picked; `invalid` for a backend reference that did not resolve.
    pub backend: Option<Arc<str>>,
    /// The exchange with the backend, when the request was forwarded.
    pub upstream: Option<Upstream>,
    /// The request's trace context (when enabled in the
    /// [`RouterConfig`](crate::RouterConfig)).
    pub trace: Option<TraceContext>,
}

impl RouteInfo {
    /// The matched route as `namespace/name`.
    pub fn route_label(&self) -> Option<&str> {
        self.rule.as_ref().map(|r| &**r.route_label())
    }

    /// The matched rule's name, or its index when it has none.
    pub fn rule_label(&self) -> Option<&str> {
        self.rule.as_ref().map(|r| &**r.rule_label())
    }
}

/// The exchange with the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Upstream {
    /// The endpoint of the last attempt (none: no attempt got as far as picking one).
    pub endpoint: Option<SocketAddr>,
    /// Requests sent to the backend: 1, plus retries.
    pub attempts: u32,
    /// From sending the first attempt until the response headers of the last one arrived (time
    /// to first byte, retries and backoff included), or until the exchange failed.
    pub duration: Duration,
}
