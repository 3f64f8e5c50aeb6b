//! Per-backend state that outlives a configuration: retry budgets (GEP-3388) and outlier
//! detectors, shared by every rule that sends traffic to a Service and kept across reloads
//! (an endpoint ejected before a reload stays ejected; a budget keeps its counts while its
//! settings stay the same).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use gw_model::resources::ObjectKey;
use gw_model::table::RetryBudget as RetryBudgetConfig;
use gw_policy::outlier::{OutlierConfig, OutlierDetector};
use gw_policy::retry_budget::RetryBudget;
use gw_policy::session::SessionKey;

use crate::backend::{BackendTarget, Resilience};
use crate::index::Routes;

#[derive(Debug, Default)]
struct Maps {
    budgets: HashMap<ObjectKey, Arc<RetryBudget>>,
    detectors: HashMap<(ObjectKey, u16), Arc<OutlierDetector>>,
}

/// The router's backend state.
#[derive(Debug)]
pub(crate) struct Registry {
    outlier: Option<OutlierConfig>,
    key: Option<SessionKey>,
    maps: Mutex<Maps>,
}

impl Registry {
    pub(crate) fn new(outlier: Option<OutlierConfig>, key: Option<SessionKey>) -> Registry {
        Registry {
            outlier,
            key,
            maps: Mutex::new(Maps::default()),
        }
    }

    /// Gives every backend of `routes` its state (the existing one when there is one) and the
    /// rules their session codecs; forgets the state of backends `routes` no longer uses.
    pub(crate) fn attach(&self, routes: &Routes) {
        // Poisoning only means a panic while swapping maps of Arcs; they are still consistent.
        let mut maps = self.maps.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = Maps::default();
        for (_, rule) in routes.rules() {
            if let Some(key) = &self.key {
                rule.backends.attach_sessions(key);
            }
            for target in rule.backends.targets() {
                let BackendTarget::Service(s) = &**target else {
                    continue;
                };
                let budget = s
                    .budget
                    .map(|cfg| budget(&maps, &mut next, &s.service, cfg));
                let outlier = self.outlier.and_then(|cfg| {
                    let key = (s.service.clone(), s.port);
                    if let Some(d) = next.detectors.get(&key) {
                        return Some(d.clone());
                    }
                    let d = match maps.detectors.get(&key) {
                        Some(d) if *d.config() == cfg => d.clone(),
                        _ => Arc::new(OutlierDetector::new(cfg).ok()?),
                    };
                    let endpoints = s.endpoints.clone();
                    d.retain(|e| endpoints.contains(e));
                    next.detectors.insert(key, d.clone());
                    Some(d)
                });
                let _ = s.resilience.set(Resilience { budget, outlier });
            }
        }
        *maps = next;
    }
}

fn budget(
    old: &Maps,
    next: &mut Maps,
    service: &ObjectKey,
    cfg: RetryBudgetConfig,
) -> Arc<RetryBudget> {
    if let Some(b) = next.budgets.get(service).filter(|b| *b.config() == cfg) {
        return b.clone();
    }
    let b = match old.budgets.get(service) {
        Some(b) if *b.config() == cfg => b.clone(),
        _ => Arc::new(RetryBudget::new(cfg)),
    };
    next.budgets.insert(service.clone(), b.clone());
    b
}
