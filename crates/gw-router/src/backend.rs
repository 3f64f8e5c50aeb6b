//! Backends of a rule: weighted choice, endpoints, backend-level filters.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use gw_model::resources::ObjectKey;
use gw_model::table::{AppProtocol, Backend, CertificatePair, WeightedBackend};

use crate::backend_tls::{self, TlsTarget};
use crate::filters::Filter;

/// What building backends needs beyond the table entry: the client certificate of the Gateway
/// the rule belongs to (GEP-3155), presented to TLS backends.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BuildCtx<'a> {
    pub(crate) client_cert: Option<&'a CertificatePair>,
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
                        next: AtomicUsize::new(0),
                        tls,
                    }),
                    Err(reason) => {
                        tracing::warn!(service = %s.service, %reason, "backend TLS cannot be set up; requests to it get 500");
                        BackendTarget::Invalid(format!("backend TLS: {reason}").into())
                    }
                }
            }
            Backend::Invalid { reason } => BackendTarget::Invalid(reason.as_str().into()),
            other => BackendTarget::Invalid(format!("unsupported backend {other:?}").into()),
        })
    }
}

/// A Service port.
#[derive(Debug)]
pub(crate) struct ServiceTarget {
    pub(crate) service: ObjectKey,
    pub(crate) protocol: AppProtocol,
    pub(crate) endpoints: Vec<SocketAddr>,
    next: AtomicUsize,
    /// TLS towards the backend (BackendTLSPolicy or `appProtocol: https`).
    pub(crate) tls: Option<Arc<TlsTarget>>,
}

impl ServiceTarget {
    /// The next endpoint, round-robin; `None` when there is none (503).
    pub(crate) fn endpoint(&self) -> Option<SocketAddr> {
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
    /// `namespace/name:port` of the Service, or `invalid`: the backend's label in
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
                        _ => "invalid".into(),
                    },
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
        let b = Backends::new(&[wb(7), wb(0), wb(3)], BuildCtx::default());
        assert_eq!(b.pick_with(|_| 0), Some(0));
        assert_eq!(b.pick_with(|_| 6), Some(0));
        assert_eq!(b.pick_with(|_| 7), Some(2));
        assert_eq!(b.pick_with(|_| 9), Some(2));
        assert_eq!(
            Backends::new(&[wb(0), wb(0)], BuildCtx::default()).pick(),
            None
        );
        assert_eq!(Backends::new(&[], BuildCtx::default()).pick(), None);
    }
}
