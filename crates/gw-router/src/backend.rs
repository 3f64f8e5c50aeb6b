//! Backends of a rule: weighted choice, endpoints, backend-level filters.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use gw_model::resources::ObjectKey;
use gw_model::table::{
    AppProtocol, Backend, BackendTraffic, CertificatePair, RetryBudget as RetryBudgetConfig,
    SessionConfig, WeightedBackend,
};
use gw_policy::outlier::OutlierDetector;
use gw_policy::retry_budget::RetryBudget;
use gw_policy::session::{EndpointId, SessionCodec, SessionKey};

use crate::ForwardError;
use crate::backend_tls::{self, TlsTarget};
use crate::dns::{Name, Resolver};
use crate::filters::Filter;

/// What building backends needs beyond the table entry: the client certificate of the Gateway
/// the rule belongs to (GEP-3155), presented to TLS backends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BuildCtx<'a> {
    pub(crate) client_cert: Option<&'a CertificatePair>,
    /// Resolves the names of external backends.
    pub(crate) resolver: &'a Resolver,
}

/// A resolved backend, ready to receive requests.
// Always behind an `Arc`: the size of the enum is paid once per backend, not per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum BackendTarget {
    /// A Service port with its endpoints.
    Service(ServiceTarget),
    /// An unresolved reference: answered 500.
    Invalid(Box<str>),
}

impl BackendTarget {
    pub(crate) fn new(b: &Backend, ctx: BuildCtx<'_>) -> Arc<BackendTarget> {
        Arc::new(match b {
            Backend::Service(s) => {
                match backend_tls::target(
                    &s.service,
                    s.app_protocol,
                    s.tls.as_deref(),
                    ctx.client_cert,
                ) {
                    Ok(tls) => {
                        let name = s.service.to_string();
                        BackendTarget::Service(ServiceTarget {
                            service: s.service.clone(),
                            port: s.port,
                            protocol: s.app_protocol,
                            endpoint_ids: s
                                .endpoints
                                .iter()
                                .map(|e| EndpointId::new(&name, s.port, *e))
                                .collect(),
                            endpoints: s.endpoints.clone(),
                            id_name: name.into(),
                            dns: None,
                            next: AtomicUsize::new(0),
                            tls,
                            session: traffic_session(s.traffic.as_deref()),
                            budget: traffic_budget(s.traffic.as_deref()),
                            resilience: OnceLock::new(),
                        })
                    }
                    Err(reason) => {
                        tracing::warn!(service = %s.service, %reason, "backend TLS cannot be set up; requests to it get 500");
                        BackendTarget::Invalid(format!("backend TLS: {reason}").into())
                    }
                }
            }
            Backend::External(x) => {
                let client_cert = x.client_certificate.as_ref().or(ctx.client_cert);
                match backend_tls::target(&x.backend, x.app_protocol, x.tls.as_deref(), client_cert)
                {
                    Ok(tls) => BackendTarget::Service(ServiceTarget {
                        service: x.backend.clone(),
                        port: x.port,
                        protocol: x.app_protocol,
                        endpoint_ids: Vec::new(),
                        endpoints: Vec::new(),
                        id_name: x.backend.to_string().into(),
                        dns: Some(ctx.resolver.name(&x.hostname, x.port)),
                        next: AtomicUsize::new(0),
                        tls,
                        session: traffic_session(x.traffic.as_deref()),
                        budget: traffic_budget(x.traffic.as_deref()),
                        resilience: OnceLock::new(),
                    }),
                    Err(reason) => {
                        tracing::warn!(backend = %x.backend, %reason, "backend TLS cannot be set up; requests to it get 500");
                        BackendTarget::Invalid(format!("backend TLS: {reason}").into())
                    }
                }
            }
            Backend::Invalid { reason } => BackendTarget::Invalid(reason.as_str().into()),
            other => BackendTarget::Invalid(format!("unsupported backend {other:?}").into()),
        })
    }
}

/// The session persistence of an XBackendTrafficPolicy, boxed as [`ServiceTarget`] keeps it.
fn traffic_session(t: Option<&BackendTraffic>) -> Option<Box<SessionConfig>> {
    t.and_then(|t| t.session.clone()).map(Box::new)
}

/// The retry budget of an XBackendTrafficPolicy, boxed as [`ServiceTarget`] keeps it.
fn traffic_budget(t: Option<&BackendTraffic>) -> Option<Box<RetryBudgetConfig>> {
    t.and_then(|t| t.retry_budget).map(Box::new)
}

/// The state a backend keeps across requests and reloads: its retry budget and outlier
/// detector, shared by every rule that sends traffic to the Service (see `resilience.rs`).
#[derive(Debug, Default)]
pub(crate) struct Resilience {
    pub(crate) budget: Option<Arc<RetryBudget>>,
    pub(crate) outlier: Option<Arc<OutlierDetector>>,
}

/// A Service port, or an external backend (then `service` names the XBackend and the
/// endpoints come from `dns`).
#[derive(Debug)]
pub(crate) struct ServiceTarget {
    pub(crate) service: ObjectKey,
    pub(crate) port: u16,
    pub(crate) protocol: AppProtocol,
    pub(crate) endpoints: Vec<SocketAddr>,
    /// The name of an external backend, resolved in the background.
    pub(crate) dns: Option<Arc<Name>>,
    /// Session ids of `endpoints`, same order.
    endpoint_ids: Vec<EndpointId>,
    /// `namespace/name` of the Service or XBackend, the base of its endpoints' session ids.
    id_name: Box<str>,
    next: AtomicUsize,
    /// TLS towards the backend (BackendTLSPolicy or `appProtocol: https`).
    pub(crate) tls: Option<Arc<TlsTarget>>,
    /// Session persistence of the Service or XBackend (XBackendTrafficPolicy). Boxed, as
    /// the budget: most backends have neither, and each is kept once per backend of a rule.
    pub(crate) session: Option<Box<SessionConfig>>,
    /// Retry budget of the Service or XBackend (XBackendTrafficPolicy).
    pub(crate) budget: Option<Box<RetryBudgetConfig>>,
    /// Set once when the routes are installed in a router.
    pub(crate) resilience: OnceLock<Resilience>,
}

impl ServiceTarget {
    /// Whether a request can be answered 503 at once: a Service without endpoints, or a name
    /// whose lookup failed. A name not looked up yet is not unavailable: the request waits
    /// (boundedly) in [`resolve`](Self::resolve).
    pub(crate) fn unavailable(&self) -> bool {
        match &self.dns {
            Some(name) => name.failed(),
            None => self.endpoints.is_empty(),
        }
    }

    /// The next endpoint, waiting (boundedly) for the first answer of an external name.
    pub(crate) async fn resolve(&self) -> Result<SocketAddr, ForwardError> {
        match &self.dns {
            Some(name) => name.resolve().await.map_err(|e| ForwardError::Unresolved {
                backend: self.service.clone(),
                error: e,
            }),
            None => self.endpoint().ok_or_else(|| ForwardError::NoEndpoints {
                service: self.service.clone(),
            }),
        }
    }

    fn outlier(&self) -> Option<&OutlierDetector> {
        self.resilience.get().and_then(|r| r.outlier.as_deref())
    }

    /// The retry budget, when a policy sets one.
    pub(crate) fn retry_budget(&self) -> Option<&RetryBudget> {
        self.resilience.get().and_then(|r| r.budget.as_deref())
    }

    /// The next endpoint, round-robin, skipping ejected endpoints unless all are; `None` when
    /// there is none (503).
    pub(crate) fn endpoint(&self) -> Option<SocketAddr> {
        if let Some(name) = &self.dns {
            return name.endpoint();
        }
        if self.endpoints.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        match self.outlier() {
            Some(d) => d.select(&self.endpoints, i),
            None => self.endpoints.get(i).copied(),
        }
    }

    /// The endpoint a session names, if it is still an endpoint and not ejected. For an
    /// external backend: an address of the name's current answer.
    pub(crate) fn sticky_endpoint(&self, id: EndpointId) -> Option<SocketAddr> {
        if let Some(name) = &self.dns {
            return name.find(|a| EndpointId::new(&self.id_name, self.port, *a) == id);
        }
        let i = self.endpoint_ids.iter().position(|e| *e == id)?;
        let addr = *self.endpoints.get(i)?;
        if self.outlier().is_some_and(|d| d.is_ejected(addr)) {
            return None;
        }
        Some(addr)
    }

    /// The session id of one of the endpoints.
    pub(crate) fn endpoint_id(&self, addr: SocketAddr) -> Option<EndpointId> {
        if let Some(name) = &self.dns {
            return name
                .find(|a| *a == addr)
                .map(|a| EndpointId::new(&self.id_name, self.port, a));
        }
        let i = self.endpoints.iter().position(|e| *e == addr)?;
        self.endpoint_ids.get(i).copied()
    }

    /// Records what a request to `endpoint` showed, for outlier detection.
    pub(crate) fn report(&self, endpoint: SocketAddr, outcome: gw_policy::outlier::Outcome) {
        if let Some(d) = self.outlier() {
            d.report(endpoint, outcome, self.endpoints.len());
        }
    }
}

/// Which codec issued a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionSource {
    /// The rule's own `sessionPersistence` (covers every backend).
    Rule,
    /// The XBackendTrafficPolicy of backend `i`.
    Backend(usize),
}

/// Session persistence of a rule, ready to use: codecs signing with the router's key.
#[derive(Debug)]
pub(crate) struct Sticky {
    rule: Option<(SessionCodec, Box<str>)>,
    backends: Vec<Option<(SessionCodec, Box<str>)>>,
}

/// A session found in a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Found {
    pub(crate) source: SessionSource,
    pub(crate) backend: usize,
    pub(crate) endpoint: SocketAddr,
    pub(crate) session: gw_policy::session::Session,
}

impl Sticky {
    /// The codec and scope of a source.
    pub(crate) fn codec(&self, source: SessionSource) -> Option<(&SessionCodec, &str)> {
        let (c, s) = match source {
            SessionSource::Rule => self.rule.as_ref()?,
            SessionSource::Backend(i) => self.backends.get(i)?.as_ref()?,
        };
        Some((c, s))
    }

    /// The source of sessions for backend `i`: the rule's, else the backend's own.
    pub(crate) fn source_for(&self, i: usize) -> Option<SessionSource> {
        if self.rule.is_some() {
            return Some(SessionSource::Rule);
        }
        self.backends
            .get(i)
            .and_then(Option::as_ref)
            .map(|_| SessionSource::Backend(i))
    }

    /// The first valid session in the request whose endpoint is still there and not ejected.
    /// GEP-1619: "a persistent session takes precedence over traffic split weights", even a
    /// weight of 0.
    pub(crate) fn find(
        &self,
        headers: &http::HeaderMap,
        backends: &Backends,
        now: std::time::SystemTime,
    ) -> Option<Found> {
        let service = |i: usize| match backends.get(i).map(|c| &*c.target) {
            Some(BackendTarget::Service(s)) => Some(s),
            _ => None,
        };
        let sources: Vec<SessionSource> = if self.rule.is_some() {
            vec![SessionSource::Rule]
        } else {
            (0..self.backends.len())
                .filter(|i| self.backends[*i].is_some())
                .map(SessionSource::Backend)
                .collect()
        };
        for source in sources {
            let Some((codec, scope)) = self.codec(source) else {
                continue;
            };
            for token in codec.tokens(headers) {
                let session = match codec.open(scope, token, now) {
                    Ok(s) => s,
                    Err(why) => {
                        tracing::debug!(%why, "session token not used");
                        continue;
                    }
                };
                let candidates: Vec<usize> = match source {
                    SessionSource::Rule => (0..backends.list.len()).collect(),
                    SessionSource::Backend(i) => vec![i],
                };
                for i in candidates {
                    if let Some(endpoint) =
                        service(i).and_then(|s| s.sticky_endpoint(session.endpoint()))
                    {
                        return Some(Found {
                            source,
                            backend: i,
                            endpoint,
                            session,
                        });
                    }
                }
            }
        }
        None
    }
}

/// One weighted backend of a rule.
#[derive(Debug)]
pub(crate) struct Choice {
    /// Cumulative weight up to and including this backend.
    cumulative: u64,
    pub(crate) target: Arc<BackendTarget>,
    /// `namespace/name:port` of the Service or XBackend, or `invalid`: the backend's label in
    /// [`RouteInfo`](crate::RouteInfo).
    pub(crate) label: Arc<str>,
    /// Backend-level filters, applied after the rule's when this backend is chosen.
    pub(crate) filters: Vec<Filter>,
}

/// The weighted backends of a rule.
#[derive(Debug, Default)]
pub(crate) struct Backends {
    list: Vec<Choice>,
    total: u64,
    /// Scope of the rule's sessions (route kind, namespace/name, rule index).
    scope: Box<str>,
    /// The rule's own session persistence.
    session: Option<Box<SessionConfig>>,
    /// Set once when the routes are installed in a router (it holds the signing key), and
    /// only for a rule with sessions: boxed, a rule without them spends 8 bytes on it, not
    /// the 280 of the codecs.
    sticky: OnceLock<Box<Sticky>>,
}

impl Backends {
    pub(crate) fn new(list: &[WeightedBackend], ctx: BuildCtx<'_>) -> Backends {
        let mut total = 0u64;
        let list = list
            .iter()
            .map(|b| {
                total += u64::from(b.weight);
                Choice {
                    cumulative: total,
                    label: match &b.backend {
                        Backend::Service(s) => format!("{}:{}", s.service, s.port).into(),
                        Backend::External(x) => format!("{}:{}", x.backend, x.port).into(),
                        _ => "invalid".into(),
                    },
                    target: BackendTarget::new(&b.backend, ctx),
                    filters: b.filters.iter().map(|f| Filter::compile(f, ctx)).collect(),
                }
            })
            .collect();
        Backends {
            list,
            total,
            ..Backends::default()
        }
    }

    /// Sets the rule's session scope and its own session persistence.
    pub(crate) fn with_session(mut self, scope: String, session: Option<&SessionConfig>) -> Self {
        self.scope = scope.into();
        self.session = session.cloned().map(Box::new);
        self
    }

    /// Builds the session codecs with the router's key (once; later calls do nothing).
    pub(crate) fn attach_sessions(&self, key: &SessionKey) {
        let per_backend: Vec<Option<(SessionCodec, Box<str>)>> = self
            .list
            .iter()
            .map(|c| match &*c.target {
                BackendTarget::Service(s) => s.session.as_ref().map(|cfg| {
                    let scope = format!("{}/{}/{}", self.scope, s.service, s.port);
                    (SessionCodec::new(key, cfg), scope.into_boxed_str())
                }),
                BackendTarget::Invalid(_) => None,
            })
            .collect();
        let rule = self
            .session
            .as_ref()
            .map(|cfg| (SessionCodec::new(key, cfg), self.scope.clone()));
        if rule.is_none() && per_backend.iter().all(Option::is_none) {
            return;
        }
        let _ = self.sticky.set(Box::new(Sticky {
            rule,
            backends: per_backend,
        }));
    }

    /// Session persistence, when the rule or one of its backends has it.
    pub(crate) fn sticky(&self) -> Option<&Sticky> {
        self.sticky.get().map(|s| &**s)
    }

    /// Picks a backend at random in proportion to its weight; weight 0 is never picked. `None`
    /// when there are no backends or all weights are 0 (the rule answers 500).
    pub(crate) fn pick(&self) -> Option<usize> {
        self.pick_with(|total| fastrand::u64(0..total))
    }

    pub(crate) fn pick_with(&self, roll: impl FnOnce(u64) -> u64) -> Option<usize> {
        if self.total == 0 {
            return None;
        }
        let r = roll(self.total);
        let i = self.list.partition_point(|c| c.cumulative <= r);
        (i < self.list.len()).then_some(i)
    }

    pub(crate) fn get(&self, i: usize) -> Option<&Choice> {
        self.list.get(i)
    }

    /// Every backend target, with its backend-level mirrors.
    pub(crate) fn targets(&self) -> impl Iterator<Item = &Arc<BackendTarget>> {
        self.list.iter().flat_map(|c| {
            let mirrors = c.filters.iter().filter_map(|f| match f {
                Filter::Mirror { backend, .. } => Some(backend),
                _ => None,
            });
            std::iter::once(&c.target).chain(mirrors)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every rule of every route holds a `Backends`, and few have session persistence: the
    /// codecs (and the session settings) are boxed, not inline. At 5,000 routes inline codecs
    /// cost 1.4 MB.
    #[test]
    fn rules_without_sessions_do_not_carry_the_codecs() {
        use std::mem::size_of;
        assert!(size_of::<Backends>() < size_of::<Sticky>() / 2);
        assert!(size_of::<Backends>() < 2 * size_of::<SessionConfig>());
    }

    fn wb(weight: u32) -> WeightedBackend {
        WeightedBackend {
            weight,
            backend: Backend::Invalid {
                reason: String::new(),
            },
            filters: Vec::new(),
        }
    }

    #[test]
    fn weights_partition_the_range_and_zero_is_never_picked() {
        let resolver = Resolver::shared();
        let ctx = || BuildCtx {
            client_cert: None,
            resolver: &resolver,
        };
        let b = Backends::new(&[wb(7), wb(0), wb(3)], ctx());
        assert_eq!(b.pick_with(|_| 0), Some(0));
        assert_eq!(b.pick_with(|_| 6), Some(0));
        assert_eq!(b.pick_with(|_| 7), Some(2));
        assert_eq!(b.pick_with(|_| 9), Some(2));
        assert_eq!(Backends::new(&[wb(0), wb(0)], ctx()).pick(), None);
        assert_eq!(Backends::new(&[], ctx()).pick(), None);
    }
}
