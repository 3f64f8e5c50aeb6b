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
    /// Keyed by backend: a Service (`false`) or an XBackend (`true`) of that name.
    budgets: HashMap<(bool, ObjectKey), Arc<RetryBudget>>,
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
                    .as_deref()
                    .map(|cfg| budget(&maps, &mut next, (s.dns.is_some(), &s.service), *cfg));
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
    (external, backend): (bool, &ObjectKey),
    cfg: RetryBudgetConfig,
) -> Arc<RetryBudget> {
    let key = (external, backend.clone());
    if let Some(b) = next.budgets.get(&key).filter(|b| *b.config() == cfg) {
        return b.clone();
    }
    let b = match old.budgets.get(&key) {
        Some(b) if *b.config() == cfg => b.clone(),
        _ => Arc::new(RetryBudget::new(cfg)),
    };
    next.budgets.insert(key, b.clone());
    b
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::dns::Resolver;
    use gw_model::resources::Resources;
    use gw_model::{CompileOptions, compile, load};

    const YAML: &str = "
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gw}
spec: {controllerName: gw.dev/gateway}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: default}
spec:
  gatewayClassName: gw
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: default}
spec: {ports: [{name: http, port: 8080}]}
---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackend
metadata: {name: echo, namespace: default}
spec:
  type: ExternalHostname
  externalHostname: {hostname: echo.example.com}
  port: {port: 80}
  protocol: HTTP
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: default}
spec:
  parentRefs: [{name: edge}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /svc}}]
    backendRefs: [{name: echo, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /ext}}]
    backendRefs: [{group: gateway.networking.x-k8s.io, kind: XBackend, name: echo}]
---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: {name: svc, namespace: default}
spec:
  targetRefs: [{group: '', kind: Service, name: echo}]
  retryConstraint: {budget: {percent: 10}}
---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: {name: ext, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.x-k8s.io, kind: XBackend, name: echo}]
  retryConstraint: {budget: {percent: 30}}
";

    // GEP-3388 on an XBackend: an external backend gets the retry budget of the policy on it,
    // kept apart from the one of the Service that has the same namespace and name.
    #[test]
    fn an_external_backend_gets_its_own_retry_budget() {
        let loaded = load::parse("t.yaml", YAML);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let mut res = Resources::new();
        res.extend(loaded.objects);
        let table = compile(&res, &CompileOptions::new("gw.dev/gateway")).table;
        let routes = Routes::build_with(&table, &Resolver::shared());
        Registry::new(None, None).attach(&routes);
        let mut seen = Vec::new();
        for (_, rule) in routes.rules() {
            for target in rule.backends.targets() {
                let BackendTarget::Service(s) = &**target else {
                    panic!("unexpected target {target:?}");
                };
                let percent = s.retry_budget().map(|b| b.config().percent);
                seen.push((s.dns.is_some(), percent));
            }
        }
        seen.sort();
        assert_eq!(seen, vec![(false, Some(10)), (true, Some(30))]);
    }
}
