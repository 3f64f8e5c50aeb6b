//! BackendTLSPolicy (GEP-1897): validation, conflicts, ancestor status, and TLS settings on the
//! backends it targets.

use std::collections::BTreeSet;

use super::gateway::ca_bundle;
use super::refs::From;
use super::{CompileOptions, GatewayState, Problem, created, hostname};
use crate::resources::{
    BackendTlsPolicy, BackendTlsValidation, CORE_GROUP, GATEWAY_GROUP, Kind, ObjectKey,
    ObjectReference, ParentReference, Resources,
};
use crate::status::{Condition, ObjectStatus, PolicyAncestorStatus, PolicyStatus, StatusEntry};
use crate::table::{
    Backend, BackendTls, HttpFilter, ListenerTable, RuleAction, RulePolicy, SubjectAltNameMatch,
    WeightedBackend,
};

/// A validated policy, or why it is not accepted.
struct Evaluated<'a> {
    key: ObjectKey,
    policy: &'a BackendTlsPolicy,
    /// `Accepted=False` problem.
    rejected: Option<Problem>,
    /// `ResolvedRefs=False` problem.
    unresolved: Option<Problem>,
    tls: Option<BackendTls>,
}

fn evaluate<'a>(res: &Resources, key: &ObjectKey, policy: &'a BackendTlsPolicy) -> Evaluated<'a> {
    let from = From {
        group: GATEWAY_GROUP,
        kind: "BackendTLSPolicy",
        namespace: &key.namespace,
    };
    let v = validation(res, from, key, &policy.spec.validation);
    Evaluated {
        key: key.clone(),
        policy,
        rejected: v.rejected,
        unresolved: v.unresolved,
        tls: v.tls,
    }
}

/// A `BackendTLSPolicy`-style `validation` block, checked.
pub(crate) struct Validated {
    /// `Accepted=False` problem (`Invalid`, `NoValidCACertificate`).
    pub rejected: Option<Problem>,
    /// `ResolvedRefs=False` problem (`InvalidKind`, `InvalidCACertificateRef`).
    pub unresolved: Option<Problem>,
    /// The TLS settings, unless rejected.
    pub tls: Option<BackendTls>,
}

/// Checks a validation block (BackendTLSPolicy's, or XBackend's `spec.tls.validation`) of the
/// object `owner`, referring `from` its namespace.
pub(crate) fn validation(
    res: &Resources,
    from: From<'_>,
    owner: &ObjectKey,
    v: &BackendTlsValidation,
) -> Validated {
    let mut out = Validated {
        rejected: None,
        unresolved: None,
        tls: None,
    };
    if !hostname::is_valid_hostname(&v.hostname) || v.hostname.starts_with('*') {
        out.rejected = Some(Problem::new(
            "Invalid",
            format!(
                "validation.hostname {:?} is not a valid DNS name",
                v.hostname
            ),
        ));
        return out;
    }
    let system_roots = match v.well_known_ca_certificates.as_deref() {
        None => false,
        Some("System") => true,
        Some(other) => {
            out.rejected = Some(Problem::new(
                "Invalid",
                format!("wellKnownCACertificates {other:?} is not supported; use System"),
            ));
            return out;
        }
    };
    let mut ca_pem = Vec::new();
    for r in &v.ca_certificate_refs {
        // BackendTLSPolicy: "If ... CACertificateRefs ... kind is not supported, ResolvedRefs
        // False with InvalidKind"; not found or malformed: InvalidCACertificateRef.
        if r.group != CORE_GROUP || r.kind != "ConfigMap" {
            out.unresolved.get_or_insert(Problem::new(
                "InvalidKind",
                format!(
                    "caCertificateRef kind {}/{} is not supported; use a ConfigMap",
                    r.group, r.kind
                ),
            ));
            continue;
        }
        let reference = ObjectReference {
            group: r.group.clone(),
            kind: r.kind.clone(),
            name: r.name.clone(),
            namespace: None,
        };
        match ca_bundle(res, from, &reference) {
            Ok(pem) => ca_pem.push(pem),
            Err(p) => {
                out.unresolved.get_or_insert(p);
            }
        }
    }
    if ca_pem.is_empty() && !system_roots {
        // "NoValidCACertificate: the policy has no valid CA certificate to validate against".
        let msg = out
            .unresolved
            .as_ref()
            .map_or("no CA certificate configured".to_owned(), |p| {
                p.message.clone()
            });
        out.rejected = Some(Problem::new("NoValidCACertificate", msg));
        return out;
    }
    let subject_alt_names = v
        .subject_alt_names
        .iter()
        .filter_map(|s| match s.type_.as_str() {
            "Hostname" => s.hostname.clone().map(SubjectAltNameMatch::Dns),
            "URI" => s.uri.clone().map(SubjectAltNameMatch::Uri),
            _ => None,
        })
        .collect();
    out.tls = Some(BackendTls {
        policy: owner.clone(),
        hostname: v.hostname.clone(),
        ca_pem,
        system_roots,
        subject_alt_names,
    });
    out
}

/// Whether a policy's targetRefs select a Service port (`sectionName` is the port name).
fn targets(policy: &BackendTlsPolicy, ns: &str, service: &ObjectKey, port_name: &str) -> bool {
    service.namespace == ns
        && policy.spec.target_refs.iter().any(|t| {
            t.group == CORE_GROUP
                && t.kind == "Service"
                && t.name == service.name
                && t.section_name.as_deref().is_none_or(|s| s == port_name)
        })
}

fn port_name(res: &Resources, service: &ObjectKey, port: u16) -> String {
    res.services
        .get(service)
        .and_then(|s| s.spec.ports.iter().find(|p| p.port == i32::from(port)))
        .and_then(|p| p.name.clone())
        .unwrap_or_default()
}

/// Every backend of the table's rules (rule and backend filters, TrafficPolicy `extAuth`
/// included), of the rules with a backend `wanted` says yes to. HTTP and gRPC entries are
/// shared (see [`Shared`](crate::table::Shared)): only those of such rules are written to, so
/// the others stay shared and are not copied.
fn for_each_backend(
    table: &mut ListenerTable,
    wanted: &dyn Fn(&Backend) -> bool,
    f: &mut dyn FnMut(&mut Backend),
) {
    fn filter_backend(filter: &HttpFilter) -> Option<&Backend> {
        match filter {
            HttpFilter::RequestMirror { backend, .. }
            | HttpFilter::ExternalAuth { backend, .. } => Some(backend),
            _ => None,
        }
    }
    let wants = |action: &RuleAction, p: Option<&RulePolicy>| {
        let rule_filters = action.filters.iter().filter_map(filter_backend);
        let rule_backends = action.backends.iter().flat_map(|b| {
            std::iter::once(&b.backend).chain(b.filters.iter().filter_map(filter_backend))
        });
        let auth = p
            .and_then(|p| p.ext_auth.as_ref())
            .map(|a| &a.settings.backend);
        rule_filters.chain(rule_backends).chain(auth).any(wanted)
    };
    fn filters(list: &mut [HttpFilter], f: &mut dyn FnMut(&mut Backend)) {
        for filter in list {
            if let HttpFilter::RequestMirror { backend, .. }
            | HttpFilter::ExternalAuth { backend, .. } = filter
            {
                f(backend);
            }
        }
    }
    fn backends(list: &mut [WeightedBackend], f: &mut dyn FnMut(&mut Backend)) {
        for b in list {
            f(&mut b.backend);
            filters(&mut b.filters, f);
        }
    }
    // The auth service of a TrafficPolicy `extAuth`, like that of an `ExternalAuth` filter.
    // Rules sharing the section share its settings until TLS is set on them; the data plane
    // builds one layer per section origin either way.
    fn policy(p: Option<&mut Box<RulePolicy>>, f: &mut dyn FnMut(&mut Backend)) {
        if let Some(a) = p.and_then(|p| p.ext_auth.as_mut())
            && matches!(a.settings.backend, Backend::Service(_))
        {
            f(&mut std::sync::Arc::make_mut(&mut a.settings).backend);
        }
    }
    for e in &mut table.http {
        if wants(&e.action, e.policy.as_deref()) {
            filters(&mut e.action.filters, f);
            backends(&mut e.action.backends, f);
            policy(e.policy.as_mut(), f);
        }
    }
    for e in &mut table.grpc {
        if wants(&e.action, e.policy.as_deref()) {
            filters(&mut e.action.filters, f);
            backends(&mut e.action.backends, f);
            policy(e.policy.as_mut(), f);
        }
    }
    for e in &mut table.l4 {
        backends(&mut e.backends, f);
    }
}

/// Evaluates every BackendTLSPolicy, writes its status (one ancestor per Gateway of ours whose
/// routes use a targeted Service port) and applies it to those backends.
///
/// Conflicts (GEP-713): when several policies target the same Service port, a policy naming the
/// port (`sectionName`) beats one naming the whole Service, then the oldest wins, then
/// namespace/name; the others get `Accepted=False` / `Conflicted` where they lose.
pub(crate) fn apply(
    res: &Resources,
    gateways: &mut [GatewayState<'_>],
    entries: &mut Vec<StatusEntry>,
    options: &CompileOptions,
) {
    let mut policies: Vec<Evaluated<'_>> = res
        .backend_tls_policies
        .iter()
        .map(|(k, p)| evaluate(res, k, p))
        .collect();
    if policies.is_empty() {
        // Nothing to apply or report; skips a Service lookup per backend.
        return;
    }
    policies.sort_by(|a, b| {
        created(&a.policy.metadata)
            .map_or((true, 0), |t| (false, t))
            .cmp(&created(&b.policy.metadata).map_or((true, 0), |t| (false, t)))
            .then_with(|| a.key.cmp(&b.key))
    });
    // Per policy: ancestors where it applies, and ancestors where it lost a conflict.
    let mut ancestors: Vec<BTreeSet<ObjectKey>> = vec![BTreeSet::new(); policies.len()];
    let mut conflicted: Vec<BTreeSet<ObjectKey>> = vec![BTreeSet::new(); policies.len()];
    for g in gateways.iter_mut() {
        let gw_key = g.key.clone();
        for table in &mut g.tables {
            let targeted = |backend: &Backend| {
                let Backend::Service(s) = backend else {
                    return false;
                };
                let pname = port_name(res, &s.service, s.port);
                policies
                    .iter()
                    .any(|p| targets(p.policy, &p.key.namespace, &s.service, &pname))
            };
            for_each_backend(table, &targeted, &mut |backend| {
                let Backend::Service(s) = backend else { return };
                let pname = port_name(res, &s.service, s.port);
                let matching: Vec<usize> = (0..policies.len())
                    .filter(|&i| {
                        targets(
                            policies[i].policy,
                            &policies[i].key.namespace,
                            &s.service,
                            &pname,
                        )
                    })
                    .collect();
                let Some(&winner) = matching.iter().min_by_key(|&&i| {
                    let names_port = policies[i]
                        .policy
                        .spec
                        .target_refs
                        .iter()
                        .any(|t| t.name == s.service.name && t.section_name.is_some());
                    (!names_port, i)
                }) else {
                    return;
                };
                for &i in &matching {
                    if i == winner {
                        ancestors[i].insert(gw_key.clone());
                    } else {
                        conflicted[i].insert(gw_key.clone());
                    }
                }
                let p = &policies[winner];
                match (&p.rejected, &p.tls) {
                    (None, Some(tls)) => s.tls = Some(Box::new(tls.clone())),
                    (Some(problem), _) => {
                        *backend = Backend::Invalid {
                            reason: format!(
                                "BackendTLSPolicy {} is invalid: {}",
                                p.key, problem.message
                            ),
                        };
                    }
                    (None, None) => {}
                }
            });
        }
    }
    for (i, p) in policies.iter().enumerate() {
        let generation = p.policy.metadata.generation();
        let mut status = PolicyStatus::default();
        let all: BTreeSet<&ObjectKey> = ancestors[i].iter().chain(conflicted[i].iter()).collect();
        for gw in all {
            let lost = conflicted[i].contains(gw) && !ancestors[i].contains(gw);
            let accepted = if lost {
                Condition::fail(
                    "Accepted",
                    "Conflicted",
                    "another BackendTLSPolicy takes precedence",
                    generation,
                )
            } else if let Some(problem) = &p.rejected {
                Condition::fail(
                    "Accepted",
                    problem.reason,
                    problem.message.clone(),
                    generation,
                )
            } else {
                Condition::ok("Accepted", "Accepted", "policy accepted", generation)
            };
            let resolved = match &p.unresolved {
                None => Condition::ok(
                    "ResolvedRefs",
                    "ResolvedRefs",
                    "all references resolved",
                    generation,
                ),
                Some(problem) => Condition::fail(
                    "ResolvedRefs",
                    problem.reason,
                    problem.message.clone(),
                    generation,
                ),
            };
            status.ancestors.push(PolicyAncestorStatus {
                ancestor_ref: ParentReference {
                    group: GATEWAY_GROUP.into(),
                    kind: "Gateway".into(),
                    namespace: Some(gw.namespace.clone()),
                    name: gw.name.clone(),
                    section_name: None,
                    port: None,
                },
                controller_name: options.controller_name.clone(),
                conditions: vec![accepted, resolved],
            });
        }
        entries.push(StatusEntry {
            kind: Kind::BackendTlsPolicy,
            key: p.key.clone(),
            generation,
            status: ObjectStatus::Policy(status),
        });
    }
}
