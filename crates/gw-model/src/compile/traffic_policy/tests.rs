//! GEP-713 rules of TrafficPolicy attachment, end to end from YAML. Each test quotes the rule
//! it checks.

use std::time::Duration;

use super::{PolicySection, PolicyValidator};
use crate::resources::{Kind, ObjectKey, Resources};
use crate::status::{Condition, ConditionStatus, ObjectStatus, PolicyStatus, find};
use crate::table::{Backend, HeaderEdits, PolicyBlock, RateLimitKey, RulePolicy};
use crate::{CompileOptions, Compiled, compile, load};

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
  allowedListeners: {namespaces: {from: Same}}
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - {name: admin, port: 8080, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: default, creationTimestamp: '2024-01-01T00:00:00Z'}
spec:
  parentRefs: [{name: edge}]
  rules:
  - name: api
    matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: api, port: 80}]
  - name: static
    backendRefs: [{name: static, port: 80}]
";

fn run_with(yaml: &str, options: &CompileOptions) -> Compiled {
    let mut res = Resources::new();
    let loaded = load::parse("test.yaml", &format!("{BASE}\n---\n{yaml}"));
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    res.extend(loaded.objects);
    compile(&res, options)
}

fn run(yaml: &str) -> Compiled {
    run_with(yaml, &CompileOptions::new("gw.dev/gateway"))
}

/// A TrafficPolicy document.
fn policy(name: &str, created: &str, targets: &str, body: &str) -> String {
    format!(
        "---
apiVersion: policy.gw.dev/v1alpha1
kind: TrafficPolicy
metadata: {{name: {name}, namespace: default, creationTimestamp: '{created}'}}
spec:
  targetRefs: {targets}
{body}
"
    )
}

const GW: &str = "[{group: gateway.networking.k8s.io, kind: Gateway, name: edge}]";
const ROUTE: &str = "[{group: gateway.networking.k8s.io, kind: HTTPRoute, name: web}]";
const RULE_API: &str =
    "[{group: gateway.networking.k8s.io, kind: HTTPRoute, name: web, sectionName: api}]";

fn rate(requests: u32) -> String {
    format!("{{requests: {requests}, unit: Second}}")
}

/// The effective policy of rule `rule` of `web` on `listener`.
fn rule_policy(c: &Compiled, listener: &str, rule: &str) -> Option<RulePolicy> {
    let g = &c.table.gateways[0];
    let l = g
        .listeners
        .iter()
        .find(|l| l.name == listener)
        .expect("listener");
    let e = l
        .http
        .iter()
        .find(|e| e.rule_name.as_deref() == Some(rule))
        .expect("rule");
    e.policy.as_deref().cloned()
}

fn rate_of(c: &Compiled, listener: &str, rule: &str) -> Option<u32> {
    rule_policy(c, listener, rule)
        .and_then(|p| p.rate_limit)
        .map(|r| r.settings.requests)
}

fn policy_status(c: &Compiled, name: &str) -> PolicyStatus {
    match c
        .status
        .get(Kind::TrafficPolicy, &ObjectKey::new("default", name))
    {
        Some(ObjectStatus::Policy(s)) => s.clone(),
        other => panic!("no policy status for {name}: {other:?}"),
    }
}

fn accepted(c: &Compiled, name: &str) -> Vec<Condition> {
    policy_status(c, name)
        .ancestors
        .iter()
        .map(|a| find(&a.conditions, "Accepted").cloned().expect("Accepted"))
        .collect()
}

// GEP-713 merge strategies: "Defaults: more specific specs beats less specific ones." A route
// rule's default beats the Gateway's; the other rule keeps the Gateway's.
#[test]
fn defaults_more_specific_wins() {
    let yaml = policy(
        "gw-default",
        "2024-01-01T00:00:00Z",
        GW,
        &format!("  default: {{rateLimit: {}}}", rate(10)),
    ) + &policy(
        "rule-default",
        "2024-01-02T00:00:00Z",
        RULE_API,
        &format!("  default: {{rateLimit: {}}}", rate(5)),
    );
    let c = run(&yaml);
    assert_eq!(rate_of(&c, "http", "api"), Some(5));
    assert_eq!(rate_of(&c, "http", "static"), Some(10));
    // Both are accepted: being beaten by a more specific default is not a conflict.
    for name in ["gw-default", "rule-default"] {
        let a = accepted(&c, name);
        assert!(a.iter().all(|c| c.reason == "Accepted"), "{name}: {a:?}");
    }
}

// GEP-713: "Overrides: less specific specs beats more specific ones." A Gateway override beats
// a route's default and a route's override.
#[test]
fn overrides_less_specific_wins() {
    let yaml = policy(
        "gw-override",
        "2024-01-03T00:00:00Z",
        GW,
        &format!("  override: {{rateLimit: {}}}", rate(100)),
    ) + &policy(
        "route",
        "2024-01-01T00:00:00Z",
        ROUTE,
        &format!(
            "  default: {{rateLimit: {}}}\n  override: {{rateLimit: {}}}",
            rate(5),
            rate(7)
        ),
    );
    let c = run(&yaml);
    for rule in ["api", "static"] {
        let p = rule_policy(&c, "http", rule).expect("policy");
        let r = p.rate_limit.expect("rate limit");
        assert_eq!(r.settings.requests, 100);
        assert_eq!(r.policy, ObjectKey::new("default", "gw-override"));
        assert_eq!(r.block, PolicyBlock::Override);
    }
}

// GEP-713 "Atomicity of merging specs" (<Custom> merge): each section is atomic, and sections
// merge independently: a Gateway's CORS default and a route's rate limit both apply.
#[test]
fn sections_merge_independently() {
    let yaml = policy(
        "gw",
        "2024-01-01T00:00:00Z",
        GW,
        "  default:\n    cors: {allowOrigins: ['https://app.example.com']}\n    rateLimit: {requests: 1, unit: Minute}",
    ) + &policy(
        "route",
        "2024-01-01T00:00:00Z",
        ROUTE,
        &format!("  default: {{rateLimit: {}}}", rate(3)),
    );
    let c = run(&yaml);
    let p = rule_policy(&c, "http", "static").expect("policy");
    assert_eq!(
        p.cors.expect("cors").settings.allow_origins,
        ["https://app.example.com"]
    );
    let r = p.rate_limit.expect("rate");
    assert_eq!((r.settings.requests, r.settings.burst), (3, 3));
    assert_eq!(r.settings.period, Duration::from_secs(1));
}

// GEP-713 conflict resolution: "Between two metaresources at the same level of the hierarchy,
// the older metaresource based on creation timestamp wins." The younger one is
// Accepted=False/Conflicted ("there is another policy that targets the same resource and a
// merge is not possible") and changes nothing, not even its other sections.
#[test]
fn same_level_older_wins_and_younger_is_conflicted() {
    let yaml = policy(
        "young",
        "2024-02-01T00:00:00Z",
        ROUTE,
        &format!(
            "  default:\n    rateLimit: {}\n    cors: {{allowOrigins: ['*']}}",
            rate(1)
        ),
    ) + &policy(
        "old",
        "2024-01-01T00:00:00Z",
        ROUTE,
        &format!("  default: {{rateLimit: {}}}", rate(50)),
    );
    let c = run(&yaml);
    assert_eq!(rate_of(&c, "http", "api"), Some(50));
    assert!(rule_policy(&c, "http", "api").expect("p").cors.is_none());
    let young = accepted(&c, "young");
    assert_eq!(young.len(), 1);
    assert_eq!(young[0].status, ConditionStatus::False);
    assert_eq!(young[0].reason, "Conflicted");
    assert!(
        young[0].message.contains("default/old"),
        "{}",
        young[0].message
    );
    assert_eq!(accepted(&c, "old")[0].reason, "Accepted");
}

// GEP-713: "Between two metaresources at the same level of the hierarchy and identical
// creation timestamps, the metaresource appearing first in alphabetical order by
// `{namespace}/{name}` wins."
#[test]
fn same_level_same_age_first_by_name_wins() {
    let yaml = policy(
        "b",
        "2024-01-01T00:00:00Z",
        GW,
        &format!("  override: {{rateLimit: {}}}", rate(2)),
    ) + &policy(
        "a",
        "2024-01-01T00:00:00Z",
        GW,
        &format!("  override: {{rateLimit: {}}}", rate(1)),
    );
    let c = run(&yaml);
    assert_eq!(rate_of(&c, "http", "api"), Some(1));
    assert_eq!(accepted(&c, "b")[0].reason, "Conflicted");
}

// Policies at the same level that set different sections merge without conflict.
#[test]
fn same_level_different_sections_do_not_conflict() {
    let yaml = policy(
        "a",
        "2024-01-01T00:00:00Z",
        GW,
        &format!("  default: {{rateLimit: {}}}", rate(2)),
    ) + &policy(
        "b",
        "2024-01-02T00:00:00Z",
        GW,
        "  default: {cors: {allowOrigins: ['*']}}",
    );
    let c = run(&yaml);
    let p = rule_policy(&c, "http", "api").expect("p");
    assert!(p.cors.is_some() && p.rate_limit.is_some());
    assert_eq!(accepted(&c, "b")[0].reason, "Accepted");
}

// GEP-713: a policy that targets "a given listener of a Gateway API Gateway object ... MUST
// ... provide the `sectionName` field of target reference with the name of the targeted
// listener": it applies to that listener only, and its ancestor names the listener.
#[test]
fn listener_section_applies_to_that_listener_only() {
    let targets =
        "[{group: gateway.networking.k8s.io, kind: Gateway, name: edge, sectionName: admin}]";
    let yaml = policy(
        "admin",
        "2024-01-01T00:00:00Z",
        targets,
        "  default:\n    apiKeyAuth: {credentialRefs: [{name: keys}]}",
    ) + "---
apiVersion: v1
kind: Secret
metadata: {name: keys, namespace: default}
stringData: {ops: \"k-123\\n\", ci: k-456}
";
    let c = run(&yaml);
    assert!(rule_policy(&c, "http", "api").is_none());
    let p = rule_policy(&c, "admin", "api").expect("policy");
    let keys = p.api_key_auth.expect("api keys").settings;
    assert_eq!(keys.clients, ["ci", "ops"]);
    // A key written with a trailing newline is trimmed.
    assert!(keys.keys.contains(&("ops".to_owned(), b"k-123".to_vec())));
    let s = policy_status(&c, "admin");
    assert_eq!(s.ancestors.len(), 1);
    assert_eq!(
        s.ancestors[0].ancestor_ref.section_name.as_deref(),
        Some("admin")
    );
    assert_eq!(s.ancestors[0].ancestor_ref.kind, "Gateway");
    assert_eq!(s.ancestors[0].controller_name, "gw.dev/gateway");
    // "the controller SHOULD add to the status of the listener section within the `Gateway`
    // object a condition `colors.controller.k8s.io/ColorPolicyAffected: true`".
    let g = c
        .status
        .gateway(&ObjectKey::new("default", "edge"))
        .expect("gateway");
    let admin = g
        .listeners
        .iter()
        .find(|l| l.name == "admin")
        .expect("admin");
    let affected = find(&admin.conditions, "gw.dev/TrafficPolicyAffected").expect("affected");
    assert_eq!(affected.status, ConditionStatus::True);
    assert!(affected.message.contains("default/admin"));
    let http = g.listeners.iter().find(|l| l.name == "http").expect("http");
    assert!(find(&http.conditions, "gw.dev/TrafficPolicyAffected").is_none());
    assert!(find(&g.conditions, "gw.dev/TrafficPolicyAffected").is_none());
}

// GEP-713 "Target object status": "Implementations of metaresources MUST put a condition into
// `status.Conditions` of any objects affected by the metaresource" named `<kind>Affected` with
// the implementation's domain; on a route, each status.parents entry of the Gateway.
#[test]
fn targets_get_the_affected_condition() {
    let yaml = policy(
        "gw",
        "2024-01-01T00:00:00Z",
        GW,
        "  default: {cors: {allowOrigins: ['*']}}",
    ) + &policy(
        "rt",
        "2024-01-01T00:00:00Z",
        RULE_API,
        &format!("  default: {{rateLimit: {}}}", rate(1)),
    );
    let c = run(&yaml);
    let g = c
        .status
        .gateway(&ObjectKey::new("default", "edge"))
        .expect("gateway");
    let cond = find(&g.conditions, "gw.dev/TrafficPolicyAffected").expect("gateway condition");
    assert!(cond.message.contains("default/gw"));
    let route = c
        .status
        .route(Kind::HttpRoute, &ObjectKey::new("default", "web"))
        .expect("route");
    let cond = find(&route.parents[0].conditions, "gw.dev/TrafficPolicyAffected")
        .expect("route condition");
    assert!(
        cond.message.contains("default/rt (rule api)"),
        "{}",
        cond.message
    );
    // The Accepted condition of the route is untouched.
    assert_eq!(
        find(&route.parents[0].conditions, "Accepted")
            .expect("a")
            .reason,
        "Accepted"
    );
}

// PolicyConditionReason TargetNotFound: "the policy is attached to an invalid target
// resource". A missing object, listener or rule is reported with the target as ancestor.
#[test]
fn missing_targets_are_target_not_found() {
    let targets = "[{group: gateway.networking.k8s.io, kind: Gateway, name: nope},
    {group: gateway.networking.k8s.io, kind: Gateway, name: edge, sectionName: nope},
    {group: gateway.networking.k8s.io, kind: HTTPRoute, name: web, sectionName: nope},
    {group: gateway.networking.k8s.io, kind: GRPCRoute, name: nope}]";
    let c = run(&policy(
        "lost",
        "2024-01-01T00:00:00Z",
        targets,
        &format!("  default: {{rateLimit: {}}}", rate(1)),
    ));
    let s = policy_status(&c, "lost");
    assert_eq!(s.ancestors.len(), 4);
    for a in &s.ancestors {
        let cond = find(&a.conditions, "Accepted").expect("Accepted");
        assert_eq!(
            (cond.status, &*cond.reason),
            (ConditionStatus::False, "TargetNotFound")
        );
    }
    assert!(
        s.ancestors
            .iter()
            .any(|a| a.ancestor_ref.kind == "GRPCRoute")
    );
    // Nothing else changes.
    assert!(rule_policy(&c, "http", "api").is_none());
}

// PolicyConditionReason Invalid: "the policy is syntactically or semantically invalid". A
// missing Secret, a section this build does not support, a bad transformation or extAuth, and
// what the data plane's validator refuses all make the policy Invalid, and it changes nothing.
#[test]
fn invalid_policies_change_nothing() {
    let cases = [
        "  default: {basicAuth: {secretRef: {name: missing}}}".to_owned(),
        "  default: {transformation: {request: {remove: ['bad name']}}}".to_owned(),
        "  override: {extAuth: {protocol: SOAP, backendRef: {name: auth, port: 80}}}".to_owned(),
        "  default: {jwt: {providers: [{name: p, jwks: {inline: 'not json'}}]}}".to_owned(),
        "  default: {jwt: {providers: [{name: p, jwks: {remote: {uri: 'http://idp/keys'}}}]}}"
            .to_owned(),
        "  default: {rateLimit: {requests: 0, unit: Second}}".to_owned(),
        "  default: {rateLimit: {requests: 1, unit: Second, key: {type: Header}}}".to_owned(),
        "  default: {cors: {allowOrigins: ['ftp://x']}}".to_owned(),
    ];
    for body in cases {
        let yaml = policy("bad", "2024-01-01T00:00:00Z", GW, &body)
            + &policy(
                "good",
                "2024-01-02T00:00:00Z",
                ROUTE,
                "  default: {cors: {allowOrigins: ['*']}}",
            );
        let c = run(&yaml);
        let bad = accepted(&c, "bad");
        assert_eq!(bad.len(), 1, "{body}");
        assert_eq!(
            (bad[0].status, &*bad[0].reason),
            (ConditionStatus::False, "Invalid"),
            "{body}"
        );
        // The rest keeps working: the good policy applies, nothing of the bad one does.
        let p = rule_policy(&c, "http", "api").expect("good policy");
        assert!(p.rate_limit.is_none() && p.basic_auth.is_none() && p.jwt.is_none());
        assert!(p.ext_auth.is_none() && p.transformation.is_none());
        assert!(p.cors.is_some());
        let g = c
            .status
            .gateway(&ObjectKey::new("default", "edge"))
            .expect("gateway");
        assert!(find(&g.conditions, "gw.dev/TrafficPolicyAffected").is_none());
    }
}

// The data plane's validator is consulted: what it refuses is Invalid, with its message.
#[test]
fn validator_refusals_are_invalid() {
    let yaml = policy(
        "md5",
        "2024-01-01T00:00:00Z",
        GW,
        "  default: {basicAuth: {secretRef: {name: users}, realm: ops}}",
    ) + "---
apiVersion: v1
kind: Secret
metadata: {name: users, namespace: default}
stringData: {.htpasswd: 'alice:$apr1$xyz'}
";
    let options = CompileOptions {
        policy_validator: Some(PolicyValidator::new(|s| match s {
            PolicySection::BasicAuth(b) if b.htpasswd.contains("$apr1$") => {
                Err("MD5 is not supported".to_owned())
            }
            _ => Ok(()),
        })),
        ..CompileOptions::new("gw.dev/gateway")
    };
    let c = run_with(&yaml, &options);
    let a = accepted(&c, "md5");
    assert_eq!(a[0].reason, "Invalid");
    assert!(
        a[0].message.contains("MD5 is not supported"),
        "{}",
        a[0].message
    );
    // Without the validator the structure is fine and the policy applies.
    let c = run(&yaml);
    let b = rule_policy(&c, "http", "api")
        .and_then(|p| p.basic_auth)
        .expect("basic auth");
    assert_eq!(b.settings.realm, "ops");
    assert_eq!(b.settings.htpasswd, "alice:$apr1$xyz");
}

// ReferenceGrant (GEP-709): a Secret in another namespace needs a grant there.
#[test]
fn cross_namespace_secrets_need_a_reference_grant() {
    let body = "  default:\n    jwt:\n      providers:\n      - name: idp\n        issuer: https://idp.example.com\n        jwks: {valueRef: {kind: ConfigMap, name: jwks, namespace: idp}}\n        claimToHeaders: [{claim: sub, header: X-User}]\n        clockSkew: 30s";
    let objects = "---
apiVersion: v1
kind: ConfigMap
metadata: {name: jwks, namespace: idp}
data: {jwks.json: '{\"keys\": []}'}
";
    let grant = "---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: allow, namespace: idp}
spec:
  from: [{group: policy.gw.dev, kind: TrafficPolicy, namespace: default}]
  to: [{group: '', kind: ConfigMap}]
";
    let yaml = policy("jwt", "2024-01-01T00:00:00Z", GW, body) + objects;
    let c = run(&yaml);
    let a = accepted(&c, "jwt");
    assert_eq!(a[0].reason, "Invalid");
    assert!(a[0].message.contains("ReferenceGrant"), "{}", a[0].message);

    let c = run(&(yaml + grant));
    assert_eq!(accepted(&c, "jwt")[0].reason, "Accepted");
    let j = rule_policy(&c, "http", "api")
        .and_then(|p| p.jwt)
        .expect("jwt");
    let p = &j.settings.providers[0];
    assert_eq!(
        p.claim_to_headers,
        [("sub".to_owned(), "x-user".to_owned())]
    );
    assert_eq!(p.clock_skew, Duration::from_secs(30));
    assert_eq!(p.jwks_source, "ConfigMap idp/jwks key jwks.json");
}

// The hierarchy is Gateway > ListenerSet > listener > route > rule: a ListenerSet's default
// beats the Gateway's for the rules on its listeners, and a Gateway's override still wins.
#[test]
fn listener_sets_sit_between_gateway_and_listener() {
    let ls = "---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: extra, namespace: default}
spec:
  parentRef: {name: edge}
  listeners: [{name: extra, port: 9000, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: side, namespace: default}
spec:
  parentRefs: [{kind: ListenerSet, name: extra}]
  rules: [{name: all, backendRefs: [{name: api, port: 80}]}]
";
    let ls_target = "[{group: gateway.networking.k8s.io, kind: ListenerSet, name: extra}]";
    let yaml = policy(
        "gw",
        "2024-01-01T00:00:00Z",
        GW,
        &format!(
            "  default: {{rateLimit: {}}}\n  override: {{cors: {{allowOrigins: ['*']}}}}",
            rate(10)
        ),
    ) + &policy(
        "set",
        "2024-01-01T00:00:00Z",
        ls_target,
        &format!(
            "  default: {{rateLimit: {}, cors: {{allowOrigins: ['https://a.example']}}}}",
            rate(4)
        ),
    ) + ls;
    let c = run(&yaml);
    let g = &c.table.gateways[0];
    let extra = g
        .listeners
        .iter()
        .find(|l| l.name == "extra")
        .expect("extra listener");
    let p = extra.http[0].policy.as_deref().expect("policy");
    assert_eq!(p.rate_limit.as_ref().expect("rl").settings.requests, 4);
    assert_eq!(p.cors.as_ref().expect("cors").settings.allow_origins, ["*"]);
    assert_eq!(rate_of(&c, "http", "api"), Some(10));
    let s = policy_status(&c, "set");
    assert_eq!(s.ancestors[0].ancestor_ref.name, "edge");
    assert_eq!(
        find(&s.ancestors[0].conditions, "Accepted")
            .expect("a")
            .reason,
        "Accepted"
    );
}

// Rate limit keys: ClientIP and a (validated, lowercase) header.
#[test]
fn rate_limit_keys() {
    let c = run(&policy(
        "k",
        "2024-01-01T00:00:00Z",
        GW,
        "  default: {rateLimit: {requests: 5, unit: Hour, burst: 9, key: {type: Header, header: X-Client}}}",
    ));
    let r = rule_policy(&c, "http", "api")
        .and_then(|p| p.rate_limit)
        .expect("rl");
    assert_eq!(r.settings.key, RateLimitKey::Header("x-client".to_owned()));
    assert_eq!(
        (r.settings.burst, r.settings.period),
        (9, Duration::from_secs(3600))
    );
}

// Unsupported target kinds make the whole policy Invalid rather than silently ignored.
#[test]
fn unsupported_target_kind_is_invalid() {
    let c = run(&policy(
        "svc",
        "2024-01-01T00:00:00Z",
        "[{group: '', kind: Service, name: api}, {group: gateway.networking.k8s.io, kind: Gateway, name: edge}]",
        &format!("  default: {{rateLimit: {}}}", rate(1)),
    ));
    let a = policy_status(&c, "svc");
    let reasons: Vec<&str> = a
        .ancestors
        .iter()
        .map(|a| &*find(&a.conditions, "Accepted").expect("a").reason)
        .collect();
    assert!(reasons.contains(&"Invalid"), "{reasons:?}");
    assert!(rule_policy(&c, "http", "api").is_none());
}

/// The compiled `jwks` of the only provider of a Gateway-wide policy `jwt` with `remote`, or
/// the policy's `Accepted` condition when it is not accepted.
fn remote_jwks(remote: &str, extra: &str) -> Result<crate::table::JwksSettings, Condition> {
    let body = format!(
        "  default:\n    jwt:\n      providers:\n      - name: idp\n        jwks: {{remote: {remote}}}"
    );
    let c = run(&(policy("jwt", "2024-01-01T00:00:00Z", GW, &body) + extra));
    let a = accepted(&c, "jwt");
    if a[0].reason != "Accepted" {
        return Err(a[0].clone());
    }
    let j = rule_policy(&c, "http", "api")
        .and_then(|p| p.jwt)
        .expect("jwt");
    let p = &j.settings.providers[0];
    if let crate::table::JwksSettings::Remote(r) = &p.jwks {
        assert_eq!(p.jwks_source, r.uri);
    }
    Ok(p.jwks.clone())
}

fn remote_settings(remote: &str, extra: &str) -> crate::table::RemoteJwksSettings {
    match remote_jwks(remote, extra) {
        Ok(crate::table::JwksSettings::Remote(r)) => r,
        other => panic!("{remote}: {other:?}"),
    }
}

fn refused_remote(remote: &str, extra: &str) -> String {
    match remote_jwks(remote, extra) {
        Err(c) => {
            assert_eq!(c.reason, "Invalid", "{remote}");
            c.message.into_owned()
        }
        Ok(j) => panic!("{remote} was accepted: {j:?}"),
    }
}

// `jwks.remote`: an https URL; `cacheDuration` defaults to 5m; without caCertificateRefs the
// platform's roots are trusted (no CA bundle).
#[test]
fn jwks_remote_compiles_with_its_defaults() {
    let r = remote_settings("{uri: 'https://idp.example.com/.well-known/jwks.json'}", "");
    assert_eq!(r.uri, "https://idp.example.com/.well-known/jwks.json");
    assert_eq!(r.cache_duration, Duration::from_secs(300));
    assert!(r.ca_pem.is_empty());
    let r = remote_settings(
        "{uri: 'https://idp.example.com/keys', cacheDuration: 1h}",
        "",
    );
    assert_eq!(r.cache_duration, Duration::from_secs(3600));
}

// The config dump shows where keys come from, never the keys or CA bundles themselves.
#[test]
fn jwks_settings_serialize_without_documents() {
    let remote = crate::table::JwksSettings::Remote(crate::table::RemoteJwksSettings {
        uri: "https://idp.example.com/keys".to_owned(),
        cache_duration: Duration::from_secs(300),
        ca_pem: vec!["-----BEGIN CERTIFICATE-----".to_owned()],
    });
    let json = serde_json::to_string(&remote).expect("json");
    assert!(json.contains("https://idp.example.com/keys"), "{json}");
    assert!(!json.contains("BEGIN CERTIFICATE"), "{json}");
    let inline = crate::table::JwksSettings::Static(r#"{"keys": ["secret-ish"]}"#.to_owned());
    let json = serde_json::to_string(&inline).expect("json");
    assert!(!json.contains("secret-ish"), "{json}");
}

// `jwks.remote.uri` must be an absolute https URL (keys fetched in cleartext could be
// replaced in transit, RFC 7517 §9.3 "the JWK Set MUST be ... obtained over a mutually
// authenticated or ... TLS-protected channel"), with a host, a valid port, no credentials and
// no fragment.
#[test]
fn jwks_remote_uri_must_be_https_with_a_host() {
    for (uri, why) in [
        ("http://idp.example.com/keys", "https://"),
        ("ftp://idp.example.com/keys", "https://"),
        ("idp.example.com/keys", "https://"),
        ("https://", "host"),
        ("https:///keys", "host"),
        ("https://user:pw@idp.example.com/keys", "user information"),
        ("https://idp.example.com/keys#frag", "fragment"),
        ("https://idp.example.com:0/keys", "port"),
        ("https://idp.example.com:70000/keys", "port"),
        ("https://idp.example.com:x/keys", "port"),
        ("https://idp_example.com/keys", "host"),
        ("https://*.example.com/keys", "host"),
        ("https://[::1/keys", "IPv6"),
        ("https://idp.example.com/a b", "spaces"),
    ] {
        let message = refused_remote(&format!("{{uri: '{uri}'}}"), "");
        assert!(
            message.contains("jwt.providers[0].jwks.remote.uri") && message.contains(why),
            "{uri}: {message}"
        );
    }
    for uri in [
        "HTTPS://IdP.Example.com:8443/keys?tenant=a",
        "https://127.0.0.1/keys",
        "https://[::1]:9443/keys",
        "https://idp.example.com",
    ] {
        assert_eq!(super::check_https_uri(uri), Ok(()), "{uri}");
    }
}

// `jwks.remote.cacheDuration`: a Gateway API duration from 30s to 24h.
#[test]
fn jwks_remote_cache_duration_is_bounded() {
    for d in ["29s", "25h", "5x", "0s"] {
        let message = refused_remote(
            &format!("{{uri: 'https://idp.example.com/keys', cacheDuration: '{d}'}}"),
            "",
        );
        assert!(message.contains("cacheDuration"), "{d}: {message}");
    }
    for (d, secs) in [("30s", 30), ("24h", 86_400)] {
        let r = remote_settings(
            &format!("{{uri: 'https://idp.example.com/keys', cacheDuration: '{d}'}}"),
            "",
        );
        assert_eq!(r.cache_duration, Duration::from_secs(secs), "{d}");
    }
}

fn ca_pem() -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).expect("cert").pem()
}

// `jwks.remote.caCertificateRefs`: as BackendTLSPolicy's, ConfigMaps (or Secrets) in the
// policy's namespace with a PEM bundle under `ca.crt`; a missing object, a missing or invalid
// bundle, or another kind makes the policy Invalid.
#[test]
fn jwks_remote_ca_certificate_refs_load_ca_bundles() {
    let pem = ca_pem();
    let indented = pem.replace('\n', "\n    ");
    let config_map = format!(
        "---
apiVersion: v1
kind: ConfigMap
metadata: {{name: idp-ca, namespace: default}}
data:
  ca.crt: |
    {indented}
"
    );
    let r = remote_settings(
        "{uri: 'https://idp.internal/keys', caCertificateRefs: [{group: '', kind: ConfigMap, name: idp-ca}]}",
        &config_map,
    );
    assert_eq!(r.ca_pem.len(), 1);
    assert!(r.ca_pem[0].contains("BEGIN CERTIFICATE"));

    let message = refused_remote(
        "{uri: 'https://idp.internal/keys', caCertificateRefs: [{group: '', kind: ConfigMap, name: missing}]}",
        "",
    );
    assert!(
        message.contains("caCertificateRefs[0]") && message.contains("not found"),
        "{message}"
    );
    let message = refused_remote(
        "{uri: 'https://idp.internal/keys', caCertificateRefs: [{group: '', kind: ConfigMap, name: junk}]}",
        "---
apiVersion: v1
kind: ConfigMap
metadata: {name: junk, namespace: default}
data: {ca.crt: not a certificate}
",
    );
    assert!(message.contains("caCertificateRefs[0]"), "{message}");
    let message = refused_remote(
        "{uri: 'https://idp.internal/keys', caCertificateRefs: [{group: apps, kind: Deployment, name: x}]}",
        "",
    );
    assert!(message.contains("not supported"), "{message}");
}

// `jwks` takes exactly one source.
#[test]
fn jwks_takes_exactly_one_source() {
    let message = refused_remote(
        "{uri: 'https://idp.example.com/keys'}, inline: '{\"keys\": []}'",
        "",
    );
    assert!(message.contains("exactly one of"), "{message}");
}

/// The `Accepted` message of a policy that must be Invalid.
fn invalid_message(c: &Compiled, name: &str) -> String {
    let a = accepted(c, name);
    assert_eq!(
        (a[0].status, &*a[0].reason),
        (ConditionStatus::False, "Invalid"),
        "{a:?}"
    );
    a[0].message.to_string()
}

/// Compiles a policy on the Gateway whose `default` block is `body` and returns its `Invalid`
/// message.
fn refused(body: &str) -> String {
    let c = run(&policy(
        "p",
        "2024-01-01T00:00:00Z",
        GW,
        &format!("  default: {body}"),
    ));
    assert!(rule_policy(&c, "http", "api").is_none(), "{body}");
    invalid_message(&c, "p")
}

// transformation: request and response header edits and the path, as validated settings
// (header names lowercase) on every rule the policy reaches.
#[test]
fn transformation_compiles_into_settings() {
    let body = r#"  default:
    transformation:
      request:
        set: [{name: X-Tenant, value: 'request.host.split(".")[0]'}]
        add: [{name: x-trace, value: '"gw"'}]
        remove: [Cookie]
        path: '"/v2" + request.path'
      response:
        set: [{name: X-Served-By, value: '"gw"'}]
        remove: [server]"#;
    let c = run(&policy("t", "2024-01-01T00:00:00Z", GW, body));
    assert_eq!(accepted(&c, "t")[0].reason, "Accepted");
    let t = rule_policy(&c, "http", "static")
        .and_then(|p| p.transformation)
        .expect("transformation");
    let s = &t.settings;
    assert_eq!(
        s.request,
        HeaderEdits {
            set: vec![(
                "x-tenant".to_owned(),
                r#"request.host.split(".")[0]"#.to_owned()
            )],
            add: vec![("x-trace".to_owned(), r#""gw""#.to_owned())],
            remove: vec!["cookie".to_owned()],
        }
    );
    assert_eq!(s.path.as_deref(), Some(r#""/v2" + request.path"#));
    assert_eq!(
        s.response.set,
        [("x-served-by".to_owned(), r#""gw""#.to_owned())]
    );
    assert_eq!(s.response.remove, ["server"]);
}

// transformation structure rules; each is Invalid with a message naming the field.
#[test]
fn transformation_structure_rules() {
    let cases: [(&str, &str); 8] = [
        // A transformation must change something.
        ("{transformation: {}}", "at least one"),
        (
            "{transformation: {request: {}, response: {}}}",
            "at least one",
        ),
        // Header names are HTTP tokens (RFC 9110 section 5.1).
        (
            "{transformation: {request: {set: [{name: 'x user', value: '\"a\"'}]}}}",
            "transformation.request.set[0]",
        ),
        (
            "{transformation: {response: {remove: ['bad:name']}}}",
            "transformation.response.remove[0]",
        ),
        // Framing headers are never transformed (request smuggling).
        (
            "{transformation: {request: {set: [{name: Transfer-Encoding, value: '\"chunked\"'}]}}}",
            "frames the message",
        ),
        // Each header is named once across set, add and remove (as in HTTPRoute header
        // modifiers).
        (
            "{transformation: {request: {set: [{name: x-a, value: '\"1\"'}], remove: [X-A]}}}",
            "appears twice",
        ),
        // Expressions are not empty.
        (
            "{transformation: {request: {path: '  '}}}",
            "transformation.request.path: the CEL expression is empty",
        ),
        (
            "{transformation: {response: {add: [{name: x-a, value: ''}]}}}",
            "transformation.response.add[0].value",
        ),
    ];
    for (body, expected) in cases {
        let msg = refused(body);
        assert!(msg.contains(expected), "{body}: {msg}");
        assert!(msg.starts_with("default.transformation"), "{msg}");
    }
}

// transformation limits: at most 16 edits per list, expressions of at most 4096 bytes.
#[test]
fn transformation_limits() {
    let headers: Vec<String> = (0..17).map(|i| format!("x-h{i}")).collect();
    let msg = refused(&format!(
        "{{transformation: {{request: {{remove: [{}]}}}}}}",
        headers.join(", ")
    ));
    assert!(msg.contains("has 17 entries; at most 16"), "{msg}");
    // Exactly 16 is fine.
    let c = run(&policy(
        "p",
        "2024-01-01T00:00:00Z",
        GW,
        &format!(
            "  default: {{transformation: {{request: {{remove: [{}]}}}}}}",
            headers[..16].join(", ")
        ),
    ));
    assert_eq!(accepted(&c, "p")[0].reason, "Accepted");
    let long = format!("'\"{}\"'", "a".repeat(4100));
    let msg = refused(&format!(
        "{{transformation: {{request: {{path: {long}}}}}}}"
    ));
    assert!(msg.contains("at most 4096"), "{msg}");
}

// The data plane compiles the CEL expressions: the validator gets the transformation, and an
// expression it cannot compile makes the policy Invalid with its message; the other policies
// keep applying.
#[test]
fn transformation_expressions_go_to_the_validator() {
    let yaml = policy(
        "cel",
        "2024-01-01T00:00:00Z",
        GW,
        "  default: {transformation: {request: {set: [{name: x-a, value: 'request.path +'}]}}}",
    ) + &policy(
        "other",
        "2024-01-02T00:00:00Z",
        ROUTE,
        "  default: {cors: {allowOrigins: ['*']}}",
    );
    let options = CompileOptions {
        policy_validator: Some(PolicyValidator::new(|s| match s {
            PolicySection::Transformation(t) => match t.request.set.first() {
                Some((_, e)) if e.ends_with('+') => Err(format!("{e:?}: unexpected end of input")),
                _ => Ok(()),
            },
            _ => Ok(()),
        })),
        ..CompileOptions::new("gw.dev/gateway")
    };
    let c = run_with(&yaml, &options);
    let msg = invalid_message(&c, "cel");
    assert!(
        msg.contains("default.transformation: \"request.path +\": unexpected end of input"),
        "{msg}"
    );
    let p = rule_policy(&c, "http", "api").expect("other policy");
    assert!(p.transformation.is_none() && p.cors.is_some());
}

const AUTH_SERVICE: &str = "---
apiVersion: v1
kind: Service
metadata: {name: auth, namespace: default}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: auth-1, namespace: default, labels: {kubernetes.io/service-name: auth}}
addressType: IPv4
ports: [{name: http, port: 9000}]
endpoints: [{addresses: ['10.0.0.9']}]
";

fn ext_auth_of(c: &Compiled) -> crate::table::ExtAuthSettings {
    let a = rule_policy(c, "http", "api")
        .and_then(|p| p.ext_auth)
        .expect("extAuth");
    (*a.settings).clone()
}

fn resolved_refs(c: &Compiled, name: &str) -> Condition {
    let s = policy_status(c, name);
    find(&s.ancestors[0].conditions, "ResolvedRefs")
        .cloned()
        .expect("ResolvedRefs")
}

// extAuth: the ExternalAuth filter's fields, its backendRef resolved to the Service's
// endpoints; `timeout` defaults to 2s and failing open is opt-in.
#[test]
fn ext_auth_compiles_into_settings() {
    let body = "  default:\n    extAuth:\n      protocol: HTTP\n      backendRef: {name: auth, port: 80}\n      http: {path: /verify, allowedHeaders: [x-tenant]}";
    let c = run(&(policy("a", "2024-01-01T00:00:00Z", GW, body) + AUTH_SERVICE));
    assert_eq!(accepted(&c, "a")[0].reason, "Accepted");
    let cond = resolved_refs(&c, "a");
    assert_eq!(cond.status, ConditionStatus::True);
    let a = ext_auth_of(&c);
    let Backend::Service(s) = &a.backend else {
        panic!("{:?}", a.backend)
    };
    assert_eq!(s.service, ObjectKey::new("default", "auth"));
    assert_eq!(s.endpoints, ["10.0.0.9:9000".parse().expect("addr")]);
    assert_eq!(a.config.protocol, "HTTP");
    assert_eq!(
        a.config.http.as_ref().and_then(|h| h.path.as_deref()),
        Some("/verify")
    );
    assert_eq!((a.timeout, a.fail_open), (Duration::from_secs(2), false));

    let body = "  default:\n    extAuth: {protocol: GRPC, backendRef: {name: auth, port: 80}, timeout: 250ms, failOpen: true}";
    let c = run(&(policy("a", "2024-01-01T00:00:00Z", GW, body) + AUTH_SERVICE));
    let a = ext_auth_of(&c);
    assert_eq!((a.timeout, a.fail_open), (Duration::from_millis(250), true));
}

// extAuth validation is the ExternalAuth filter's (CRD: protocol HTTP or GRPC, "protocol must
// be 'HTTP' when http is set", the `http.path` pattern, header names, a non-negative
// `forwardBody.maxSize`) plus the policy's `timeout`, a duration above zero.
#[test]
fn ext_auth_structure_rules() {
    let auth = "backendRef: {name: auth, port: 80}";
    let cases = [
        (
            format!("{{extAuth: {{protocol: SOAP, {auth}}}}}"),
            "protocol \"SOAP\" is not HTTP or GRPC",
        ),
        (
            format!("{{extAuth: {{protocol: GRPC, {auth}, http: {{}}}}}}"),
            "does not go with the `http` block",
        ),
        (
            format!("{{extAuth: {{protocol: HTTP, {auth}, grpc: {{}}}}}}"),
            "does not go with the `grpc` block",
        ),
        (
            format!("{{extAuth: {{protocol: HTTP, {auth}, http: {{path: '/a b'}}}}}}"),
            "http.path",
        ),
        (
            format!("{{extAuth: {{protocol: HTTP, {auth}, http: {{path: '/%zz'}}}}}}"),
            "http.path",
        ),
        (
            format!(
                "{{extAuth: {{protocol: HTTP, {auth}, http: {{allowedResponseHeaders: ['a b']}}}}}}"
            ),
            "not a valid header name",
        ),
        (
            format!("{{extAuth: {{protocol: GRPC, {auth}, forwardBody: {{maxSize: -1}}}}}}"),
            "forwardBody.maxSize -1 must not be negative",
        ),
        (
            format!("{{extAuth: {{protocol: HTTP, {auth}, timeout: 0s}}}}"),
            "extAuth.timeout \"0s\"",
        ),
        (
            format!("{{extAuth: {{protocol: HTTP, {auth}, timeout: 2 seconds}}}}"),
            "extAuth.timeout",
        ),
    ];
    for (body, expected) in cases {
        let msg = refused(&body);
        assert!(msg.contains(expected), "{body}: {msg}");
    }
}

// The ExternalAuth filter shares these checks: the same mistakes make an HTTPRoute rule
// invalid.
#[test]
fn the_external_auth_filter_shares_the_checks() {
    let route = "---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: authz, namespace: default}
spec:
  parentRefs: [{name: edge}]
  rules:
  - filters: [{type: ExternalAuth, externalAuth: {protocol: GRPC, backendRef: {name: auth, port: 80}, http: {}}}]
    backendRefs: [{name: api, port: 80}]
";
    let c = run(route);
    let s = c
        .status
        .route(Kind::HttpRoute, &ObjectKey::new("default", "authz"))
        .expect("route status");
    let accepted = find(&s.parents[0].conditions, "Accepted").expect("Accepted");
    assert_eq!(accepted.status, ConditionStatus::False);
    assert!(
        accepted
            .message
            .contains("does not go with the `http` block"),
        "{}",
        accepted.message
    );
}

// ReferenceGrant (GEP-709) for the auth service, exactly as for the filter: another
// namespace's Service needs a grant naming TrafficPolicy. Until then the policy still applies
// and fails closed (a Backend::Invalid: 500), with ResolvedRefs False / RefNotPermitted; a
// missing Service is BackendNotFound.
#[test]
fn ext_auth_backend_ref_resolution() {
    let body = "  default: {extAuth: {protocol: HTTP, backendRef: {name: auth, namespace: sec, port: 80}}}";
    let service = AUTH_SERVICE.replace("namespace: default", "namespace: sec");
    let grant = "---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: allow, namespace: sec}
spec:
  from: [{group: policy.gw.dev, kind: TrafficPolicy, namespace: default}]
  to: [{group: '', kind: Service}]
";
    let yaml = policy("a", "2024-01-01T00:00:00Z", GW, body) + &service;
    let c = run(&yaml);
    assert_eq!(accepted(&c, "a")[0].reason, "Accepted");
    let cond = resolved_refs(&c, "a");
    assert_eq!(
        (cond.status, &*cond.reason),
        (ConditionStatus::False, "RefNotPermitted"),
        "{cond:?}"
    );
    assert!(matches!(ext_auth_of(&c).backend, Backend::Invalid { .. }));

    let c = run(&(yaml.clone() + grant));
    assert_eq!(resolved_refs(&c, "a").status, ConditionStatus::True);
    assert!(matches!(ext_auth_of(&c).backend, Backend::Service(_)));

    let local = body.replace("namespace: sec, ", "");
    let c = run(&policy("a", "2024-01-01T00:00:00Z", GW, &local));
    let cond = resolved_refs(&c, "a");
    assert_eq!(cond.reason, "BackendNotFound");
    assert!(
        cond.message
            .contains("requests through this policy get 500"),
        "{}",
        cond.message
    );
    assert!(matches!(ext_auth_of(&c).backend, Backend::Invalid { .. }));
}

// BackendTLSPolicy (GEP-1897) applies to the auth service of a policy as to any backend.
#[test]
fn ext_auth_backend_gets_backend_tls() {
    let body = "  default: {extAuth: {protocol: HTTP, backendRef: {name: auth, port: 80}}}";
    let tls = "---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {name: auth-tls, namespace: default}
spec:
  targetRefs: [{group: '', kind: Service, name: auth}]
  validation: {hostname: auth.example.com, wellKnownCACertificates: System}
";
    let c = run(&(policy("a", "2024-01-01T00:00:00Z", GW, body) + AUTH_SERVICE + tls));
    let Backend::Service(s) = ext_auth_of(&c).backend else {
        panic!("no service backend")
    };
    let t = s.tls.expect("backend TLS");
    assert_eq!(t.hostname, "auth.example.com");
}

// The validator sees extAuth too.
#[test]
fn ext_auth_goes_to_the_validator() {
    let body = "  default: {extAuth: {protocol: GRPC, backendRef: {name: auth, port: 80}}}";
    let options = CompileOptions {
        policy_validator: Some(PolicyValidator::new(|s| match s {
            PolicySection::ExtAuth(a) if a.config.protocol == "GRPC" => {
                Err("no gRPC here".to_owned())
            }
            _ => Ok(()),
        })),
        ..CompileOptions::new("gw.dev/gateway")
    };
    let c = run_with(
        &(policy("a", "2024-01-01T00:00:00Z", GW, body) + AUTH_SERVICE),
        &options,
    );
    assert!(invalid_message(&c, "a").contains("default.extAuth: no gRPC here"));
}
