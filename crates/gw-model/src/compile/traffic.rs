//! XBackendTrafficPolicy (`gateway.networking.x-k8s.io`): retry budgets (GEP-3388) and session
//! persistence (GEP-1619) on backends, with GEP-713 policy status; and the validation of
//! `sessionPersistence` that route rules share with it.
//!
//! # Status (GEP-713)
//!
//! - Targets are Services and XBackends (`gateway.networking.x-k8s.io`, the external backends
//!   of [`xbackend`](super::xbackend)); both get the retry budget and session persistence.
//! - Ancestors are the Gateways (of ours) whose HTTPRoute or GRPCRoute rules send traffic to a
//!   targeted Service or XBackend, as for BackendTLSPolicy: `Accepted=True` / `Accepted`.
//! - A policy that does not validate gets `Accepted=False` / `Invalid` on those ancestors and
//!   changes nothing; when no Gateway uses its targets, the targets themselves are the
//!   ancestors, so that the problem is still visible.
//! - A targetRef naming a Service or XBackend that does not exist, or a kind other than
//!   Service or XBackend, gets an ancestor entry for that target with `Accepted=False` /
//!   `TargetNotFound`.
//! - Several valid policies on one backend: the oldest (`creationTimestamp`), then the first by
//!   namespace/name, applies; the others get `Accepted=False` / `Conflicted` on the Gateways
//!   where they lost, and apply nowhere on that backend.

use std::collections::BTreeSet;
use std::time::Duration;

use super::rules::parse_duration;
use super::{CompileOptions, GatewayState, created};
use crate::resources::{
    CORE_GROUP, GATEWAY_GROUP, GATEWAY_X_GROUP, Kind, LocalObjectReference, ObjectKey,
    ParentReference, Resources, RetryConstraint, SessionPersistence, XBackendTrafficPolicy,
};
use crate::status::{Condition, ObjectStatus, PolicyAncestorStatus, PolicyStatus, StatusEntry};
use crate::table::{
    Backend, BackendTraffic, ListenerTable, RetryBudget, SessionConfig, SessionKind,
    WeightedBackend,
};

/// The longest `sessionName` (CRD: `maxLength: 128`).
const MAX_SESSION_NAME: usize = 128;

/// A GEP-2257 duration that must be above zero.
fn positive_duration(field: &str, value: &str) -> Result<Duration, String> {
    match parse_duration(value) {
        None => Err(format!(
            "{field} {value:?} is not a valid duration (e.g. 10s, 1m30s, 500ms)"
        )),
        Some(d) if d.is_zero() => Err(format!("{field} must be greater than 0")),
        Some(d) => Ok(d),
    }
}

/// RFC 6265 `cookie-name` is an RFC 7230 token; header names are tokens too.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A stable, short hash (FNV-1a, 64 bits) for derived session names.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The session name used when `sessionName` is unset: `gw-session-` and 8 hex digits derived
/// from `seed` (the rule or the policy), stable across restarts and replicas.
pub(crate) fn derived_session_name(seed: &[&str]) -> String {
    format!("gw-session-{:08x}", fnv1a(seed) & 0xffff_ffff)
}

/// Validates `sessionPersistence` (route rule or policy) and compiles it. An unset
/// `sessionName` gives an empty `name`, for the caller to derive one.
///
/// The rules are the CRD's validations and GEP-1619's:
/// - `type` is `Cookie` or `Header` ("+kubebuilder:validation:Enum=Cookie;Header");
/// - "cookieConfig can only be set with type Cookie";
/// - `lifetimeType` is `Permanent` or `Session`, and "AbsoluteTimeout must be specified when
///   cookie lifetimeType is Permanent";
/// - `absoluteTimeout` and `idleTimeout` are GEP-2257 durations; gw also rejects zero, which
///   would end every session at once;
/// - `sessionName` is at most 128 characters and must be usable as a cookie or header name.
pub(crate) fn session_config(sp: &SessionPersistence) -> Result<SessionConfig, String> {
    let absolute_timeout = sp
        .absolute_timeout
        .as_deref()
        .map(|v| positive_duration("absoluteTimeout", v))
        .transpose()?;
    let idle_timeout = sp
        .idle_timeout
        .as_deref()
        .map(|v| positive_duration("idleTimeout", v))
        .transpose()?;
    let kind = match sp.type_.as_str() {
        "Cookie" => {
            let permanent = match sp.cookie_config.as_ref().map(|c| c.lifetime_type.as_str()) {
                None | Some("Session") => false,
                Some("Permanent") => true,
                Some(other) => {
                    return Err(format!(
                        "cookieConfig.lifetimeType {other:?} is not supported; use Session or Permanent"
                    ));
                }
            };
            if permanent && absolute_timeout.is_none() {
                return Err(
                    "AbsoluteTimeout must be specified when cookie lifetimeType is Permanent"
                        .into(),
                );
            }
            SessionKind::Cookie { permanent }
        }
        "Header" => {
            if sp.cookie_config.is_some() {
                return Err("cookieConfig can only be set with type Cookie".into());
            }
            SessionKind::Header
        }
        other => {
            return Err(format!(
                "session persistence type {other:?} is not supported; use Cookie or Header"
            ));
        }
    };
    let name = sp.session_name.clone().unwrap_or_default();
    if name.len() > MAX_SESSION_NAME {
        return Err(format!(
            "sessionName is longer than {MAX_SESSION_NAME} characters"
        ));
    }
    if sp.session_name.is_some() && !is_token(&name) {
        let what = match kind {
            SessionKind::Cookie { .. } => "cookie",
            SessionKind::Header => "header",
        };
        return Err(format!("sessionName {name:?} is not a valid {what} name"));
    }
    Ok(SessionConfig {
        kind,
        name,
        absolute_timeout,
        idle_timeout,
    })
}

/// Validates `retryConstraint` (CRD validations) and compiles it:
/// - `budget.percent`: "minimum: 0, maximum: 100";
/// - `budget.interval`: "interval cannot be greater than one hour or less than one second";
/// - `minRetryRate.count`: "minimum: 1, maximum: 1000000";
/// - `minRetryRate.interval`: "interval cannot be greater than one hour" (and not zero).
pub(crate) fn retry_budget(rc: &RetryConstraint) -> Result<RetryBudget, String> {
    let percent = u32::try_from(rc.budget.percent)
        .ok()
        .filter(|p| *p <= 100)
        .ok_or_else(|| {
            format!(
                "retryConstraint.budget.percent {} is not between 0 and 100",
                rc.budget.percent
            )
        })?;
    let interval = positive_duration("retryConstraint.budget.interval", &rc.budget.interval)?;
    if interval < Duration::from_secs(1) || interval > Duration::from_secs(3600) {
        return Err(
            "retryConstraint.budget.interval cannot be greater than one hour or less than one second"
                .into(),
        );
    }
    let (Some(count), Some(min_interval)) = (
        rc.min_retry_rate.count,
        rc.min_retry_rate.interval.as_deref(),
    ) else {
        return Err("retryConstraint.minRetryRate needs both count and interval".into());
    };
    let min_retry_count = u32::try_from(count)
        .ok()
        .filter(|c| (1..=1_000_000).contains(c))
        .ok_or_else(|| {
            format!("retryConstraint.minRetryRate.count {count} is not between 1 and 1000000")
        })?;
    let min_retry_interval =
        positive_duration("retryConstraint.minRetryRate.interval", min_interval)?;
    if min_retry_interval > Duration::from_secs(3600) {
        return Err("retryConstraint.minRetryRate.interval cannot be greater than one hour".into());
    }
    Ok(RetryBudget {
        percent,
        interval,
        min_retry_count,
        min_retry_interval,
    })
}

/// A policy with its validation outcome.
struct Evaluated<'a> {
    key: ObjectKey,
    policy: &'a XBackendTrafficPolicy,
    /// The compiled settings, or why the policy is `Invalid`.
    traffic: Result<BackendTraffic, String>,
    /// targetRefs that name nothing gw serves, with why.
    missing: Vec<(&'a LocalObjectReference, String)>,
}

fn evaluate<'a>(
    res: &Resources,
    key: &ObjectKey,
    policy: &'a XBackendTrafficPolicy,
) -> Evaluated<'a> {
    let spec = &policy.spec;
    let traffic = (|| {
        if spec.target_refs.is_empty() {
            return Err("targetRefs must name at least one backend".to_owned());
        }
        let retry_budget = spec
            .retry_constraint
            .as_ref()
            .map(retry_budget)
            .transpose()?;
        let session = spec
            .session_persistence
            .as_ref()
            .map(|sp| {
                session_config(sp).map(|mut c| {
                    if c.name.is_empty() {
                        c.name = derived_session_name(&[
                            Kind::XBackendTrafficPolicy.as_str(),
                            &key.namespace,
                            &key.name,
                        ]);
                    }
                    c
                })
            })
            .transpose()?;
        Ok(BackendTraffic {
            policy: key.clone(),
            retry_budget,
            session,
        })
    })();
    let missing = spec
        .target_refs
        .iter()
        .filter_map(|t| {
            let why = match (t.group.as_str(), t.kind.as_str()) {
                (CORE_GROUP, "Service") => {
                    if res
                        .services
                        .contains_key(&ObjectKey::new(key.namespace.clone(), t.name.clone()))
                    {
                        return None;
                    }
                    format!("Service {}/{} does not exist", key.namespace, t.name)
                }
                (GATEWAY_X_GROUP, "XBackend") => {
                    if res
                        .x_backends
                        .contains_key(&ObjectKey::new(key.namespace.clone(), t.name.clone()))
                    {
                        return None;
                    }
                    format!("XBackend {}/{} does not exist", key.namespace, t.name)
                }
                (group, kind) => format!(
                    "target kind {group}/{kind} is not a backend gw serves; use a Service or an \
                     XBackend"
                ),
            };
            Some((t, why))
        })
        .collect();
    Evaluated {
        key: key.clone(),
        policy,
        traffic,
        missing,
    }
}

/// Whether `p` targets the backend object `(group, kind)` `backend`.
fn targets(p: &Evaluated<'_>, group: &str, kind: &str, backend: &ObjectKey) -> bool {
    p.key.namespace == backend.namespace
        && p.policy
            .spec
            .target_refs
            .iter()
            .any(|t| t.group == group && t.kind == kind && t.name == backend.name)
}

/// Every backend that HTTPRoute and GRPCRoute rules send requests to (not mirrors, not L4), of
/// the rules with a backend `wanted` says yes to. Entries are shared (see [`Shared`]): only
/// those of such rules are written to, so the others stay shared and are not copied.
///
/// [`Shared`]: crate::table::Shared
fn for_each_rule_backend(
    table: &mut ListenerTable,
    wanted: &dyn Fn(&Backend) -> bool,
    f: &mut dyn FnMut(&mut Backend),
) {
    let wants = |list: &[WeightedBackend]| list.iter().any(|b| wanted(&b.backend));
    let mut each = |list: &mut [WeightedBackend]| {
        for b in list {
            f(&mut b.backend);
        }
    };
    for e in &mut table.http {
        if wants(&e.action.backends) {
            each(&mut e.action.backends);
        }
    }
    for e in &mut table.grpc {
        if wants(&e.action.backends) {
            each(&mut e.action.backends);
        }
    }
}

/// The group, kind and key a policy targets a backend by.
fn backend_target(backend: &Backend) -> Option<(&'static str, &'static str, &ObjectKey)> {
    match backend {
        Backend::Service(s) => Some((CORE_GROUP, "Service", &s.service)),
        Backend::External(x) => Some((GATEWAY_X_GROUP, "XBackend", &x.backend)),
        _ => None,
    }
}

/// Evaluates every XBackendTrafficPolicy, applies the winners to the backends they target and
/// writes their status.
pub(crate) fn apply(
    res: &Resources,
    gateways: &mut [GatewayState<'_>],
    entries: &mut Vec<StatusEntry>,
    options: &CompileOptions,
) {
    let mut policies: Vec<Evaluated<'_>> = res
        .backend_traffic_policies
        .iter()
        .map(|(k, p)| evaluate(res, k, p))
        .collect();
    // GEP-713: "If multiple Policies configure the same field, the oldest (by creation
    // timestamp) wins; if the timestamps are equal, the one appearing first in alphabetical
    // order by {namespace}/{name} wins."
    policies.sort_by(|a, b| {
        let rank =
            |p: &Evaluated<'_>| created(&p.policy.metadata).map_or((true, 0), |t| (false, t));
        rank(a).cmp(&rank(b)).then_with(|| a.key.cmp(&b.key))
    });
    let mut applied: Vec<BTreeSet<ObjectKey>> = vec![BTreeSet::new(); policies.len()];
    let mut conflicted: Vec<BTreeSet<ObjectKey>> = vec![BTreeSet::new(); policies.len()];
    for g in gateways.iter_mut() {
        let gw_key = g.key.clone();
        for table in &mut g.tables {
            let targeted = |backend: &Backend| {
                backend_target(backend).is_some_and(|(group, kind, key)| {
                    policies.iter().any(|p| targets(p, group, kind, key))
                })
            };
            for_each_rule_backend(table, &targeted, &mut |backend| {
                let (group, kind, key, traffic) = match backend {
                    Backend::Service(s) => (CORE_GROUP, "Service", &s.service, &mut s.traffic),
                    Backend::External(x) => {
                        (GATEWAY_X_GROUP, "XBackend", &x.backend, &mut x.traffic)
                    }
                    _ => return,
                };
                let mut winner = None;
                for (i, p) in policies.iter().enumerate() {
                    if !targets(p, group, kind, key) {
                        continue;
                    }
                    match (&p.traffic, winner) {
                        // An invalid policy changes nothing, and does not take part in
                        // conflicts; its ancestors still learn that it is invalid.
                        (Err(_), _) => {
                            applied[i].insert(gw_key.clone());
                        }
                        (Ok(t), None) => {
                            winner = Some(i);
                            applied[i].insert(gw_key.clone());
                            *traffic = Some(Box::new(t.clone()));
                        }
                        (Ok(_), Some(_)) => {
                            conflicted[i].insert(gw_key.clone());
                        }
                    }
                }
            });
        }
    }
    for (i, p) in policies.iter().enumerate() {
        let generation = p.policy.metadata.generation();
        let mut status = PolicyStatus::default();
        let accepted = |reason: &'static str, message: &str| {
            if reason == "Accepted" {
                Condition::ok("Accepted", reason, message.to_owned(), generation)
            } else {
                Condition::fail("Accepted", reason, message.to_owned(), generation)
            }
        };
        let mut push = |ancestor_ref: ParentReference, condition: Condition| {
            status.ancestors.push(PolicyAncestorStatus {
                ancestor_ref,
                controller_name: options.controller_name.clone(),
                conditions: vec![condition],
            });
        };
        let gateway_ref = |gw: &ObjectKey| ParentReference {
            group: GATEWAY_GROUP.into(),
            kind: "Gateway".into(),
            namespace: Some(gw.namespace.clone()),
            name: gw.name.clone(),
            section_name: None,
            port: None,
        };
        let target_ref = |t: &LocalObjectReference| ParentReference {
            group: crate::resources::known_name(t.group.clone()),
            kind: crate::resources::known_name(t.kind.clone()),
            namespace: Some(p.key.namespace.clone()),
            name: t.name.clone(),
            section_name: None,
            port: None,
        };
        let gateways: BTreeSet<&ObjectKey> =
            applied[i].iter().chain(conflicted[i].iter()).collect();
        for gw in &gateways {
            let condition = match &p.traffic {
                Err(why) => accepted("Invalid", why),
                Ok(_) if conflicted[i].contains(*gw) && !applied[i].contains(*gw) => accepted(
                    "Conflicted",
                    "an older XBackendTrafficPolicy targets the same backend and takes precedence",
                ),
                Ok(_) => accepted("Accepted", "policy accepted"),
            };
            push(gateway_ref(gw), condition);
        }
        if gateways.is_empty()
            && let Err(why) = &p.traffic
        {
            let missing: Vec<&LocalObjectReference> = p.missing.iter().map(|(t, _)| *t).collect();
            for t in p
                .policy
                .spec
                .target_refs
                .iter()
                .filter(|t| !missing.contains(t))
            {
                push(target_ref(t), accepted("Invalid", why));
            }
        }
        for (t, why) in &p.missing {
            push(target_ref(t), accepted("TargetNotFound", why));
        }
        // "A maximum of 16 ancestors will be represented in this list."
        status.ancestors.truncate(16);
        entries.push(StatusEntry {
            kind: Kind::XBackendTrafficPolicy,
            key: p.key.clone(),
            generation,
            status: ObjectStatus::Policy(status),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{CookieConfig, RequestRate, RetryBudgetSpec};
    use crate::status::{ConditionStatus, find};
    use crate::table::{ExternalBackend, PathMatch, ServiceBackend};
    use crate::{CompileOptions, Compiled, compile, load};

    fn sp(type_: &str) -> SessionPersistence {
        SessionPersistence {
            type_: type_.to_owned(),
            ..SessionPersistence::default()
        }
    }

    fn cookie(lifetime: &str) -> Option<CookieConfig> {
        Some(CookieConfig {
            lifetime_type: lifetime.to_owned(),
        })
    }

    // SessionPersistence.type: "+kubebuilder:validation:Enum=Cookie;Header".
    #[test]
    fn session_type_is_cookie_or_header() {
        let c = session_config(&sp("Cookie")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.kind, SessionKind::Cookie { permanent: false });
        let h = session_config(&sp("Header")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(h.kind, SessionKind::Header);
        assert!(session_config(&sp("QueryParam")).is_err());
    }

    // CRD: "cookieConfig can only be set with type Cookie".
    #[test]
    fn cookie_config_only_with_type_cookie() {
        let mut s = sp("Header");
        s.cookie_config = cookie("Session");
        let err = session_config(&s).err().unwrap_or_default();
        assert!(
            err.contains("cookieConfig can only be set with type Cookie"),
            "{err}"
        );
    }

    // CRD: "AbsoluteTimeout must be specified when cookie lifetimeType is Permanent"; GEP-1619:
    // "When set to "Permanent", AbsoluteTimeout indicates the cookie's lifetime via the Expires
    // or Max-Age cookie attributes and is required."
    #[test]
    fn permanent_cookies_need_an_absolute_timeout() {
        let mut s = sp("Cookie");
        s.cookie_config = cookie("Permanent");
        let err = session_config(&s).err().unwrap_or_default();
        assert!(err.contains("AbsoluteTimeout must be specified"), "{err}");
        s.absolute_timeout = Some("1h".into());
        let c = session_config(&s).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.kind, SessionKind::Cookie { permanent: true });
        assert_eq!(c.absolute_timeout, Some(Duration::from_secs(3600)));
        // "Defaults to "Session"" and only Permanent/Session exist.
        s.cookie_config = cookie("Forever");
        assert!(session_config(&s).is_err());
    }

    // absoluteTimeout/idleTimeout: "pattern: ^([0-9]{1,5}(h|m|s|ms)){1,4}$" (GEP-2257).
    #[test]
    fn session_timeouts_are_gateway_api_durations() {
        let mut s = sp("Cookie");
        s.absolute_timeout = Some("1h30m".into());
        s.idle_timeout = Some("90s".into());
        let c = session_config(&s).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.absolute_timeout, Some(Duration::from_secs(5400)));
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(90)));
        for bad in ["1d", "1.5h", "", "0s"] {
            s.idle_timeout = Some(bad.into());
            assert!(session_config(&s).is_err(), "{bad}");
        }
    }

    // sessionName: "maxLength: 128"; it "may be reflected in the cookie or the header", so it
    // must be a valid cookie or header name.
    #[test]
    fn session_name_is_a_token_of_at_most_128_characters() {
        let mut s = sp("Cookie");
        s.session_name = Some("JSESSIONID".into());
        assert_eq!(
            session_config(&s).map(|c| c.name).unwrap_or_default(),
            "JSESSIONID"
        );
        s.session_name = Some("a".repeat(129));
        assert!(session_config(&s).is_err());
        for bad in ["has space", "semi;colon", "eq=ual", ""] {
            s.session_name = Some(bad.into());
            assert!(session_config(&s).is_err(), "{bad:?}");
        }
        let mut h = sp("Header");
        h.session_name = Some("x-session:".into());
        assert!(session_config(&h).is_err());
    }

    // GEP-1619: "If SessionName is not specified, then a unique cookie name should be
    // generated."
    #[test]
    fn derived_session_names_are_stable_and_distinct() {
        let a = derived_session_name(&["HTTPRoute", "default", "web", "0"]);
        assert_eq!(
            a,
            derived_session_name(&["HTTPRoute", "default", "web", "0"])
        );
        assert_ne!(
            a,
            derived_session_name(&["HTTPRoute", "default", "web", "1"])
        );
        assert!(a.starts_with("gw-session-") && a.len() == "gw-session-".len() + 8);
    }

    fn rc(percent: i32, interval: &str, count: Option<i32>, min: Option<&str>) -> RetryConstraint {
        RetryConstraint {
            budget: RetryBudgetSpec {
                interval: interval.into(),
                percent,
            },
            min_retry_rate: RequestRate {
                count,
                interval: min.map(str::to_owned),
            },
        }
    }

    // budget.percent: "maximum: 100, minimum: 0"; budget.interval: "interval cannot be greater
    // than one hour or less than one second"; minRetryRate.count: "maximum: 1000000, minimum:
    // 1"; minRetryRate.interval: "interval cannot be greater than one hour".
    #[test]
    fn retry_constraint_ranges() {
        let ok =
            retry_budget(&rc(20, "10s", Some(10), Some("1s"))).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            ok,
            RetryBudget {
                percent: 20,
                interval: Duration::from_secs(10),
                min_retry_count: 10,
                min_retry_interval: Duration::from_secs(1),
            }
        );
        assert!(retry_budget(&rc(0, "1s", Some(1), Some("1h"))).is_ok());
        assert!(retry_budget(&rc(100, "1h", Some(1_000_000), Some("1ms"))).is_ok());
        for bad in [
            rc(101, "10s", Some(10), Some("1s")),
            rc(-1, "10s", Some(10), Some("1s")),
            rc(20, "999ms", Some(10), Some("1s")),
            rc(20, "61m", Some(10), Some("1s")),
            rc(20, "10s", Some(0), Some("1s")),
            rc(20, "10s", Some(1_000_001), Some("1s")),
            rc(20, "10s", Some(10), Some("0s")),
            rc(20, "10s", Some(10), Some("2h")),
            rc(20, "10s", None, Some("1s")),
        ] {
            assert!(retry_budget(&bad).is_err(), "{bad:?}");
        }
    }

    // CRD defaults: "budget: default: {interval: 10s, percent: 20}" and "minRetryRate: default:
    // {count: 10, interval: 1s}".
    #[test]
    fn retry_constraint_defaults_follow_the_crd() {
        let loaded = load::parse(
            "p.yaml",
            "apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: {name: p, namespace: default}
spec:
  targetRefs: [{group: '', kind: Service, name: echo}]
  retryConstraint: {}
",
        );
        assert!(
            loaded.errors.is_empty() && loaded.warnings.is_empty(),
            "{loaded:?}"
        );
        let Some(crate::resources::Object::XBackendTrafficPolicy(p)) = loaded.objects.first()
        else {
            panic!("not loaded: {loaded:?}");
        };
        let budget = p
            .spec
            .retry_constraint
            .as_ref()
            .map(retry_budget)
            .and_then(Result::ok);
        assert_eq!(
            budget,
            Some(RetryBudget {
                percent: 20,
                interval: Duration::from_secs(10),
                min_retry_count: 10,
                min_retry_interval: Duration::from_secs(1),
            })
        );
    }

    #[test]
    fn the_loader_knows_the_experimental_group_and_version() {
        let doc = |api: &str| {
            format!(
                "apiVersion: {api}
kind: XBackendTrafficPolicy
metadata: {{name: p}}
spec:
  targetRefs: [{{group: '', kind: Service, name: echo}}]
  sesionPersistence: {{}}
"
            )
        };
        let ok = load::parse("p.yaml", &doc("gateway.networking.x-k8s.io/v1alpha1"));
        assert_eq!(ok.objects.len(), 1);
        assert_eq!(ok.objects[0].kind(), Kind::XBackendTrafficPolicy);
        // Typos in the spec are reported with their path.
        assert_eq!(ok.warnings.len(), 1, "{:?}", ok.warnings);
        assert_eq!(ok.warnings[0].path, "spec.sesionPersistence");
        let wrong_version = load::parse("p.yaml", &doc("gateway.networking.x-k8s.io/v1"));
        assert_eq!(wrong_version.errors.len(), 1);
        let other_group = load::parse("p.yaml", &doc("example.com/v1alpha1"));
        assert!(other_group.objects.is_empty() && other_group.errors.is_empty());
    }

    // GEP-1619: "For an xRoute using a path that is a regex, the Path should be set to the
    // longest non-regex prefix (e.g. if the path is /p1/p2/*/p3 and the request path was
    // /p1/p2/foo/p3, then the cookie path would be /p1/p2)."
    #[test]
    fn cookie_path_of_a_match() {
        let m = |kind, value: &str| PathMatch {
            kind,
            value: value.to_owned(),
        };
        use crate::resources::PathMatchType::*;
        assert_eq!(m(PathPrefix, "/cart").cookie_path(), "/cart");
        assert_eq!(m(Exact, "/login").cookie_path(), "/login");
        assert_eq!(m(RegularExpression, "/p1/p2/.*/p3").cookie_path(), "/p1/p2");
        assert_eq!(m(RegularExpression, "^/v[0-9]+/x").cookie_path(), "/");
        assert_eq!(m(RegularExpression, ".*").cookie_path(), "/");
    }

    const BASE: &str = "
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
apiVersion: v1
kind: Service
metadata: {name: other, namespace: default}
spec: {ports: [{name: http, port: 8080}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: default}
spec:
  parentRefs: [{name: edge}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /a}}]
    backendRefs: [{name: echo, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /b}}]
    backendRefs: [{name: other, port: 8080}]
";

    fn run(extra: &str) -> Compiled {
        let loaded = load::parse("t.yaml", &format!("{BASE}\n---\n{extra}"));
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let mut res = Resources::new();
        res.extend(loaded.objects);
        compile(&res, &CompileOptions::new("gw.dev/gateway"))
    }

    fn policy(name: &str, created: &str, targets: &str, spec: &str) -> String {
        format!(
            "apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: {{name: {name}, namespace: default, creationTimestamp: '{created}'}}
spec:
  targetRefs: {targets}
{spec}
---
"
        )
    }

    fn ancestors(c: &Compiled, name: &str) -> Vec<(String, String, ConditionStatus, String)> {
        let Some(ObjectStatus::Policy(p)) = c.status.get(
            Kind::XBackendTrafficPolicy,
            &ObjectKey::new("default", name),
        ) else {
            panic!("no status for {name}");
        };
        p.ancestors
            .iter()
            .map(|a| {
                let cond = find(&a.conditions, "Accepted")
                    .cloned()
                    .unwrap_or_else(|| panic!("no Accepted condition on {name}"));
                (
                    a.ancestor_ref.kind.to_string(),
                    a.ancestor_ref.name.clone(),
                    cond.status,
                    cond.reason.into_owned(),
                )
            })
            .collect()
    }

    /// The Service backend of rule `rule` of the route `web`.
    fn backend(c: &Compiled, rule: usize) -> ServiceBackend {
        let e = &c.table.gateways[0].listeners[0].http;
        let entry = e
            .iter()
            .find(|e| e.rule_index == rule && e.route.key.name == "web")
            .unwrap_or_else(|| panic!("rule {rule}"));
        match &entry.action.backends[0].backend {
            Backend::Service(s) => s.clone(),
            other => panic!("{other:?}"),
        }
    }

    const ECHO: &str = "[{group: '', kind: Service, name: echo}]";

    // GEP-713: the policy's status has one entry per ancestor (here the Gateway whose route
    // uses the Service) with "Accepted" True and reason "Accepted".
    #[test]
    fn an_accepted_policy_sets_its_backends_and_reports_its_gateway() {
        let c = run(&policy(
            "p",
            "2024-01-01T00:00:00Z",
            ECHO,
            "  retryConstraint: {budget: {percent: 50}}\n  sessionPersistence: {type: Header, sessionName: x-session}",
        ));
        assert_eq!(
            ancestors(&c, "p"),
            vec![(
                "Gateway".into(),
                "edge".into(),
                ConditionStatus::True,
                "Accepted".into()
            )]
        );
        let traffic = backend(&c, 0)
            .traffic
            .unwrap_or_else(|| panic!("no traffic settings"));
        assert_eq!(traffic.policy, ObjectKey::new("default", "p"));
        assert_eq!(traffic.retry_budget.map(|b| b.percent), Some(50));
        let session = traffic.session.unwrap_or_else(|| panic!("no session"));
        assert_eq!(
            (session.kind, session.name.as_str()),
            (SessionKind::Header, "x-session")
        );
        // Other Services are untouched.
        assert_eq!(backend(&c, 1).traffic, None);
    }

    // GEP-713: "If multiple Policies configure the same field, the oldest (by creation
    // timestamp) wins ... the one appearing first in alphabetical order by
    // {namespace}/{name}"; the others are "Conflicted".
    #[test]
    fn the_oldest_policy_wins_a_conflict() {
        let c = run(&format!(
            "{}{}{}",
            policy(
                "a-newer",
                "2024-06-01T00:00:00Z",
                ECHO,
                "  retryConstraint: {budget: {percent: 10}}"
            ),
            policy(
                "z-older",
                "2024-01-01T00:00:00Z",
                ECHO,
                "  retryConstraint: {budget: {percent: 30}}"
            ),
            policy(
                "b-same-age",
                "2024-01-01T00:00:00Z",
                ECHO,
                "  retryConstraint: {budget: {percent: 40}}"
            ),
        ));
        let gw = |s: ConditionStatus, r: &str| {
            vec![("Gateway".to_owned(), "edge".to_owned(), s, r.to_owned())]
        };
        assert_eq!(
            ancestors(&c, "b-same-age"),
            gw(ConditionStatus::True, "Accepted")
        );
        assert_eq!(
            ancestors(&c, "z-older"),
            gw(ConditionStatus::False, "Conflicted")
        );
        assert_eq!(
            ancestors(&c, "a-newer"),
            gw(ConditionStatus::False, "Conflicted")
        );
        assert_eq!(
            backend(&c, 0)
                .traffic
                .and_then(|t| t.retry_budget)
                .map(|b| b.percent),
            Some(40)
        );
    }

    // GEP-713: "TargetNotFound: the policy is attached to an invalid target resource".
    #[test]
    fn a_policy_on_nothing_is_target_not_found() {
        let c = run(&policy(
            "p",
            "2024-01-01T00:00:00Z",
            "[{group: '', kind: Service, name: missing}, {group: gateway.networking.x-k8s.io, kind: XBackend, name: ext}, {group: apps, kind: Deployment, name: d}]",
            "  retryConstraint: {}",
        ));
        let got = ancestors(&c, "p");
        assert_eq!(got.len(), 3, "{got:?}");
        for (kind, name) in [
            ("Service", "missing"),
            ("XBackend", "ext"),
            ("Deployment", "d"),
        ] {
            assert!(
                got.contains(&(
                    kind.into(),
                    name.into(),
                    ConditionStatus::False,
                    "TargetNotFound".into()
                )),
                "{got:?}"
            );
        }
        assert_eq!(backend(&c, 0).traffic, None);
    }

    // GEP-713: "Invalid: the policy is syntactically or semantically invalid"; an invalid
    // policy changes nothing, and does not make a valid younger one lose a conflict.
    #[test]
    fn an_invalid_policy_is_reported_and_changes_nothing() {
        let c = run(&format!(
            "{}{}",
            policy(
                "bad",
                "2023-01-01T00:00:00Z",
                ECHO,
                "  sessionPersistence: {type: Cookie, cookieConfig: {lifetimeType: Permanent}}"
            ),
            policy(
                "good",
                "2024-01-01T00:00:00Z",
                ECHO,
                "  sessionPersistence: {}"
            ),
        ));
        assert_eq!(
            ancestors(&c, "bad"),
            vec![(
                "Gateway".into(),
                "edge".into(),
                ConditionStatus::False,
                "Invalid".into()
            )]
        );
        assert_eq!(
            ancestors(&c, "good"),
            vec![(
                "Gateway".into(),
                "edge".into(),
                ConditionStatus::True,
                "Accepted".into()
            )]
        );
        let traffic = backend(&c, 0)
            .traffic
            .unwrap_or_else(|| panic!("no traffic"));
        assert_eq!(traffic.policy, ObjectKey::new("default", "good"));
        // An unset sessionName gets a derived name.
        assert!(
            traffic
                .session
                .is_some_and(|s| s.name.starts_with("gw-session-"))
        );

        // With no Gateway using its target, the target itself carries the Invalid status.
        let c = run(&policy(
            "unused",
            "2024-01-01T00:00:00Z",
            "[{group: '', kind: Service, name: other}, {group: '', kind: Service, name: missing}]",
            "  retryConstraint: {budget: {percent: 300}}",
        ));
        let got = ancestors(&c, "unused");
        assert!(
            got.contains(&(
                "Gateway".into(),
                "edge".into(),
                ConditionStatus::False,
                "Invalid".into()
            )),
            "{got:?}"
        );
        assert!(
            got.contains(&(
                "Service".into(),
                "missing".into(),
                ConditionStatus::False,
                "TargetNotFound".into()
            )),
            "{got:?}"
        );
    }

    /// An XBackend `echo` (the name of a Service too) and a route rule `/c` sending to it.
    const EXTERNAL: &str = "apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackend
metadata: {name: echo, namespace: default}
spec:
  type: ExternalHostname
  externalHostname: {hostname: api.example.com}
  port: {port: 443}
  protocol: HTTP
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ext, namespace: default}
spec:
  parentRefs: [{name: edge}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /c}}]
    backendRefs: [{group: gateway.networking.x-k8s.io, kind: XBackend, name: echo}]
---
";

    const XECHO: &str = "[{group: gateway.networking.x-k8s.io, kind: XBackend, name: echo}]";

    fn external(c: &Compiled) -> ExternalBackend {
        let found = c.table.gateways[0].listeners[0]
            .http
            .iter()
            .flat_map(|e| &e.action.backends)
            .find_map(|b| match &b.backend {
                Backend::External(x) => Some(x.clone()),
                _ => None,
            });
        *found.unwrap_or_else(|| panic!("no external backend"))
    }

    // XBackendTrafficPolicy: "TargetRefs identifies API object(s) to apply this policy to.
    // Currently, Backends (A grouping of like endpoints such as Service, ServiceImport, or any
    // implementation-specific backendRef) are the only valid API target references." An
    // XBackend is such a backendRef: the retry budget (GEP-3388) and session persistence
    // (GEP-1619) apply to it as to a Service, and its ancestors are the Gateways using it
    // (GEP-713).
    #[test]
    fn a_policy_on_an_xbackend_sets_the_external_backend() {
        let c = run(&format!(
            "{EXTERNAL}{}",
            policy(
                "p",
                "2024-01-01T00:00:00Z",
                XECHO,
                "  retryConstraint: {budget: {percent: 25}}\n  sessionPersistence: {type: Cookie, sessionName: sticky}",
            )
        ));
        assert_eq!(
            ancestors(&c, "p"),
            vec![(
                "Gateway".into(),
                "edge".into(),
                ConditionStatus::True,
                "Accepted".into()
            )]
        );
        let traffic = external(&c)
            .traffic
            .unwrap_or_else(|| panic!("no traffic settings on the XBackend"));
        assert_eq!(traffic.policy, ObjectKey::new("default", "p"));
        assert_eq!(traffic.retry_budget.map(|b| b.percent), Some(25));
        let session = traffic.session.unwrap_or_else(|| panic!("no session"));
        assert_eq!(
            (session.kind, session.name.as_str()),
            (SessionKind::Cookie { permanent: false }, "sticky")
        );
        // The Service of the same name is another object: untouched.
        assert_eq!(backend(&c, 0).traffic, None);
    }

    // GEP-713: a policy targets the object its targetRef names, group and kind included: a
    // Service policy does not reach the XBackend of the same name, and conflicts are decided
    // per backend ("the oldest (by creation timestamp) wins").
    #[test]
    fn service_and_xbackend_targets_are_distinct_objects() {
        let c = run(&format!(
            "{EXTERNAL}{}{}{}",
            policy(
                "svc",
                "2023-01-01T00:00:00Z",
                ECHO,
                "  retryConstraint: {budget: {percent: 10}}"
            ),
            policy(
                "x-old",
                "2024-01-01T00:00:00Z",
                XECHO,
                "  retryConstraint: {budget: {percent: 20}}"
            ),
            policy(
                "x-new",
                "2024-06-01T00:00:00Z",
                XECHO,
                "  retryConstraint: {budget: {percent: 30}}"
            ),
        ));
        let percent =
            |t: Option<Box<BackendTraffic>>| t.and_then(|t| t.retry_budget).map(|b| b.percent);
        assert_eq!(percent(backend(&c, 0).traffic), Some(10));
        assert_eq!(percent(external(&c).traffic), Some(20));
        let gw = |s: ConditionStatus, r: &str| {
            vec![("Gateway".to_owned(), "edge".to_owned(), s, r.to_owned())]
        };
        assert_eq!(ancestors(&c, "svc"), gw(ConditionStatus::True, "Accepted"));
        assert_eq!(
            ancestors(&c, "x-old"),
            gw(ConditionStatus::True, "Accepted")
        );
        assert_eq!(
            ancestors(&c, "x-new"),
            gw(ConditionStatus::False, "Conflicted")
        );
    }

    // GEP-713: "TargetNotFound: the policy is attached to an invalid target resource": an
    // XBackend that does not exist is not found; one that exists is a valid target.
    #[test]
    fn an_existing_xbackend_is_a_target_and_a_missing_one_is_not_found() {
        let c = run(&format!(
            "{EXTERNAL}{}",
            policy(
                "p",
                "2024-01-01T00:00:00Z",
                "[{group: gateway.networking.x-k8s.io, kind: XBackend, name: echo}, {group: gateway.networking.x-k8s.io, kind: XBackend, name: gone}]",
                "  retryConstraint: {}",
            )
        ));
        let got = ancestors(&c, "p");
        assert!(
            got.contains(&(
                "XBackend".into(),
                "gone".into(),
                ConditionStatus::False,
                "TargetNotFound".into()
            )),
            "{got:?}"
        );
        // The existing XBackend is reported through the Gateway that uses it, not as missing.
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got.contains(&(
                "Gateway".into(),
                "edge".into(),
                ConditionStatus::True,
                "Accepted".into()
            )),
            "{got:?}"
        );
    }

    // A policy in another namespace does not reach this namespace's Services (targetRefs are
    // `LocalPolicyTargetReference`s).
    #[test]
    fn target_refs_are_local_to_the_policy_namespace() {
        let c = run("apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: {name: p, namespace: elsewhere}
spec:
  targetRefs: [{group: '', kind: Service, name: echo}]
  retryConstraint: {}
");
        assert_eq!(backend(&c, 0).traffic, None);
        let Some(ObjectStatus::Policy(p)) = c.status.get(
            Kind::XBackendTrafficPolicy,
            &ObjectKey::new("elsewhere", "p"),
        ) else {
            panic!("no status");
        };
        assert_eq!(p.ancestors[0].conditions[0].reason, "TargetNotFound");
    }

    // GEP-1619: "Configuring the sessionPersistence field in the route rule enables session
    // persistence exclusively for the traffic directed to the backendRefs in this route rule";
    // invalid route-rule session persistence is rejected as the CRD would (UnsupportedValue).
    #[test]
    fn route_rule_session_persistence_is_validated_and_compiled() {
        let c = run("apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: sticky, namespace: default}
spec:
  parentRefs: [{name: edge}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /s}}]
    backendRefs: [{name: echo, port: 8080}]
    sessionPersistence: {idleTimeout: 10m}
  - matches: [{path: {type: PathPrefix, value: /bad}}]
    backendRefs: [{name: echo, port: 8080}]
    sessionPersistence: {type: Header, cookieConfig: {lifetimeType: Session}}
");
        let http = &c.table.gateways[0].listeners[0].http;
        let sticky: Vec<_> = http
            .iter()
            .filter(|e| e.route.key.name == "sticky")
            .collect();
        assert_eq!(sticky.len(), 1, "the invalid rule is dropped");
        let s = sticky[0]
            .action
            .session_persistence
            .clone()
            .unwrap_or_else(|| panic!("no session"));
        assert_eq!(s.kind, SessionKind::Cookie { permanent: false });
        assert_eq!(s.idle_timeout, Some(Duration::from_secs(600)));
        assert_eq!(
            s.name,
            derived_session_name(&["HTTPRoute", "default", "sticky", "0"])
        );
        let status = c
            .status
            .route(Kind::HttpRoute, &ObjectKey::new("default", "sticky"))
            .unwrap_or_else(|| panic!("no route status"));
        let partial = find(&status.parents[0].conditions, "PartiallyInvalid")
            .cloned()
            .unwrap_or_else(|| panic!("{status:?}"));
        assert!(
            partial
                .message
                .contains("cookieConfig can only be set with type Cookie"),
            "{partial:?}"
        );
    }
}
