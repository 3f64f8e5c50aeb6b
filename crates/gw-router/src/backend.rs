//! Backends of a rule: weighted choice, endpoints, backend-level filters.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use gw_model::resources::ObjectKey;
use gw_model::table::{AppProtocol, Backend, CertificatePair, WeightedBackend};

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
                    s.tls.as_ref(),
                    ctx.client_cert,
                ) {
                    Ok(tls) => BackendTarget::Service(ServiceTarget {
                        service: s.service.clone(),
                        protocol: s.app_protocol,
                        endpoints: s.endpoints.clone(),
                        dns: None,
                        next: AtomicUsize::new(0),
                        tls,
                    }),
                    Err(reason) => {
                        tracing::warn!(service = %s.service, %reason, "backend TLS cannot be set up; requests to it get 500");
                        BackendTarget::Invalid(format!("backend TLS: {reason}").into())
                    }
                }
            }
            Backend::External(x) => {
                let client_cert = x.client_certificate.as_ref().or(ctx.client_cert);
                match backend_tls::target(&x.backend, x.app_protocol, x.tls.as_ref(), client_cert) {
                    Ok(tls) => BackendTarget::Service(ServiceTarget {
                        service: x.backend.clone(),
                        protocol: x.app_protocol,
                        endpoints: Vec::new(),
                        dns: Some(ctx.resolver.name(&x.hostname, x.port)),
                        next: AtomicUsize::new(0),
                        tls,
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

/// A Service port, or an external backend (then `service` names the XBackend and the
/// endpoints come from `dns`).
#[derive(Debug)]
pub(crate) struct ServiceTarget {
    pub(crate) service: ObjectKey,
    pub(crate) protocol: AppProtocol,
    pub(crate) endpoints: Vec<SocketAddr>,
    /// The name of an external backend, resolved in the background.
    pub(crate) dns: Option<Arc<Name>>,
    next: AtomicUsize,
    /// TLS towards the backend (BackendTLSPolicy or `appProtocol: https`).
    pub(crate) tls: Option<Arc<TlsTarget>>,
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

    /// The next endpoint, round-robin; `None` when there is none (503).
    pub(crate) fn endpoint(&self) -> Option<SocketAddr> {
        if let Some(name) = &self.dns {
            return name.endpoint();
        }
        if self.endpoints.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        self.endpoints.get(i).copied()
    }
}

/// One weighted backend of a rule.
#[derive(Debug)]
pub(crate) struct Choice {
    /// Cumulative weight up to and including this backend.
    cumulative: u64,
    pub(crate) target: Arc<BackendTarget>,
    /// Backend-level filters, applied after the rule's when this backend is chosen.
    pub(crate) filters: Vec<Filter>,
}

/// The weighted backends of a rule.
#[derive(Debug, Default)]
pub(crate) struct Backends {
    list: Vec<Choice>,
    total: u64,
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
                    target: BackendTarget::new(&b.backend, ctx),
                    filters: b.filters.iter().map(|f| Filter::compile(f, ctx)).collect(),
                }
            })
            .collect();
        Backends { list, total }
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
