//! `Routes::rebuild`: a reload builds only the rules whose table entries changed, and answers
//! exactly as a build from scratch.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::{GATEWAY, gateway, table};
use gw_router::dns::Resolver;
use gw_router::gw_model::table::{CertificatePair, Validity};
use gw_router::{Routes, Rule};
use http::Request;

fn route(name: &str, path: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  parentRefs: [{{name: edge}}]\n  rules: [{{matches: [{{path: {{type: PathPrefix, value: {path}}}}}]{extra}}}]\n"
    )
}

/// The rule a path resolves to on `example.com`.
fn rule(routes: &Routes, path: &str) -> Option<Arc<Rule>> {
    let req = Request::get(path)
        .header("host", "example.com")
        .body(())
        .unwrap();
    routes
        .resolve(&gateway(), 80, &req)
        .matched()
        .map(|m| m.rule().clone())
}

const LIMIT: &str = "
---
apiVersion: policy.gw.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: limit, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: limited}]
  default: {rateLimit: {requests: 10, unit: Minute}}
";

#[test]
fn unchanged_rules_are_reused_and_changed_ones_built_again() {
    let resolver = Resolver::shared();
    let before = format!(
        "{GATEWAY}{}{}{}{LIMIT}",
        route("a", "/a", ""),
        route("b", "/b", ""),
        route("limited", "/l", "")
    );
    let first = Routes::build_with(&table(&before), &resolver);
    // Route b gets a filter; a new route c appears.
    let after = format!(
        "{GATEWAY}{}{}{}{}{LIMIT}",
        route("a", "/a", ""),
        route(
            "b",
            "/b",
            ", filters: [{type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: x, value: y}]}}]"
        ),
        route("c", "/c", ""),
        route("limited", "/l", "")
    );
    let second = Routes::rebuild(&first, &table(&after), &resolver);

    let same =
        |path: &str| Arc::ptr_eq(&rule(&first, path).unwrap(), &rule(&second, path).unwrap());
    assert!(same("/a"), "route a did not change: its rule is reused");
    assert!(!same("/b"), "route b changed: its rule is built again");
    assert!(
        !same("/l"),
        "a rule with a TrafficPolicy is built again (its layers are shared within one build)"
    );
    assert_eq!(rule(&second, "/c").unwrap().route().key.name, "c");
    assert!(rule(&first, "/c").is_none());
}

#[test]
fn a_rebuild_answers_as_a_build_from_scratch() {
    let resolver = Resolver::shared();
    let first = format!("{GATEWAY}{}{}", route("a", "/a", ""), route("b", "/", ""));
    // Route a is removed; route c takes a longer prefix than b's.
    let second = format!("{GATEWAY}{}{}", route("b", "/", ""), route("c", "/a/c", ""));
    let old = Routes::build_with(&table(&first), &resolver);
    let rebuilt = Routes::rebuild(&old, &table(&second), &resolver);
    let fresh = Routes::build_with(&table(&second), &resolver);
    for path in ["/a", "/a/c", "/a/c/d", "/b", "/"] {
        let name = |r: &Routes| rule(r, path).map(|r| r.route().key.name.clone());
        assert_eq!(name(&rebuilt), name(&fresh), "{path}");
    }
    assert_eq!(
        rule(&rebuilt, "/a").unwrap().route().key.name,
        "b",
        "the removed route's rule is gone"
    );
    assert_eq!(rebuilt.rules().count(), fresh.rules().count());
    // Route b did not change: its rule is reused, past the removed route a before it (from
    // separate compiles, so found by key and compared, not by pointer).
    assert!(Arc::ptr_eq(
        &rule(&old, "/b").unwrap(),
        &rule(&rebuilt, "/b").unwrap()
    ));
}

#[test]
fn routes_added_before_and_after_keep_the_others_rules() {
    let resolver = Resolver::shared();
    let first = format!("{GATEWAY}{}{}", route("b", "/b", ""), route("d", "/d", ""));
    let second = format!(
        "{GATEWAY}{}{}{}{}{}",
        route("a", "/a", ""),
        route("b", "/b", ""),
        route("c", "/c", ""),
        route("d", "/d", ""),
        route("e", "/e", "")
    );
    let old = Routes::build_with(&table(&first), &resolver);
    let rebuilt = Routes::rebuild(&old, &table(&second), &resolver);
    for path in ["/b", "/d"] {
        assert!(Arc::ptr_eq(
            &rule(&old, path).unwrap(),
            &rule(&rebuilt, path).unwrap()
        ));
    }
    for (path, name) in [("/a", "a"), ("/c", "c"), ("/e", "e")] {
        assert_eq!(rule(&rebuilt, path).unwrap().route().key.name, name);
    }
}

#[test]
fn another_backend_client_certificate_builds_every_rule_again() {
    // The Gateway's backend client certificate goes into every backend's TLS setup.
    let resolver = Resolver::shared();
    let yaml = format!("{GATEWAY}{}", route("a", "/a", ""));
    let mut t = table(&yaml);
    let first = Routes::build_with(&t, &resolver);
    let again = Routes::rebuild(&first, &t, &resolver);
    assert!(Arc::ptr_eq(
        &rule(&first, "/a").unwrap(),
        &rule(&again, "/a").unwrap()
    ));
    // Only compared here: the backend is plain HTTP, so the pair is never parsed.
    t.gateways[0].backend_client_certificate = Some(CertificatePair {
        cert_pem: "client certificate".into(),
        key_pem: "client key".into(),
        validity: Validity {
            not_before: 0,
            not_after: i64::MAX,
        },
    });
    let third = Routes::rebuild(&again, &t, &resolver);
    assert!(!Arc::ptr_eq(
        &rule(&again, "/a").unwrap(),
        &rule(&third, "/a").unwrap()
    ));
}
