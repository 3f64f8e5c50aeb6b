//! `Routes::explain`: the selected route and rule, and why every other candidate lost.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{GATEWAY, gateway, routes};
use gw_router::gw_model::table::Precedence;
use gw_router::gw_model::{self, CompileOptions, resources::Resources};
use gw_router::{ExplainRequest, Explanation, Outcome, Routes, Verdict};

fn http_route(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: default, creationTimestamp: '2024-01-01T00:00:00Z'}}\nspec:\n  parentRefs: [{{name: edge}}]\n{spec}\n"
    )
}

fn explain(
    routes: &Routes,
    method: &str,
    uri: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> Explanation {
    let mut b = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("host", host);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    routes.explain(&ExplainRequest::new(gateway(), 80, b.body(()).unwrap()))
}

fn verdict<'a>(
    e: &'a Explanation,
    route: &str,
    rule: usize,
) -> &'a gw_router::CandidateExplanation {
    e.candidates
        .iter()
        .find(|c| c.route == route && c.rule_index == rule)
        .unwrap_or_else(|| panic!("no candidate {route} rule {rule} in {}", e.to_text()))
}

// HTTPRoute: "precedence must be given to the match having: Exact path match." An Exact and a
// PathPrefix match on the same path both match; Exact wins, and the explanation says which
// precedence rule decided.
#[test]
fn exact_beats_prefix_and_the_loser_is_told_why() {
    let yaml = format!(
        "{GATEWAY}{}",
        http_route(
            "shop",
            "  rules:\n  - matches: [{path: {type: PathPrefix, value: /cart}}]\n  - matches: [{path: {type: Exact, value: /cart}}]"
        )
    );
    let r = routes(&yaml);
    let e = explain(&r, "GET", "/cart", "example.com", &[]);
    match &e.outcome {
        Outcome::Matched {
            route,
            rule_index,
            listener,
            ..
        } => {
            assert_eq!(
                (route.as_str(), *rule_index, listener.as_str()),
                ("default/shop", 1, "http")
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.status, None);
    assert_eq!(verdict(&e, "default/shop", 1).verdict, Verdict::Selected);
    let loser = verdict(&e, "default/shop", 0);
    assert_eq!(loser.verdict, Verdict::LowerPrecedence);
    assert_eq!(loser.precedence, Some(Precedence::PathType));
    assert!(
        loser.reason.contains("Exact before PathPrefix"),
        "{}",
        loser.reason
    );
    // The winner is listed first: candidates come in precedence order.
    assert_eq!(e.candidates[0].verdict, Verdict::Selected);

    // A longer prefix beats a shorter one; on /cart/x the Exact rule fails on the path.
    let e = explain(&r, "GET", "/cart/x", "example.com", &[]);
    assert_eq!(verdict(&e, "default/shop", 0).verdict, Verdict::Selected);
    let exact = verdict(&e, "default/shop", 1);
    assert_eq!(exact.verdict, Verdict::PathMismatch);
    assert!(exact.reason.contains("\"/cart/x\""), "{}", exact.reason);
}

// "Largest number of header matches": a rule with a failing header match falls back to the
// next rule; the loser's reason names the header, what it wants and what the request has.
#[test]
fn header_match_losers_name_the_header() {
    let yaml = format!(
        "{GATEWAY}{}{}",
        http_route(
            "a",
            "  rules:\n  - matches: [{path: {type: PathPrefix, value: /}, headers: [{name: version, value: two}]}]\n  - matches: [{path: {type: PathPrefix, value: /}, method: POST}]"
        ),
        http_route(
            "b",
            "  rules:\n  - matches: [{path: {type: PathPrefix, value: /}}]"
        )
    );
    let r = routes(&yaml);
    let e = explain(&r, "GET", "/x", "example.com", &[("version", "one")]);
    let header = verdict(&e, "default/a", 0);
    assert_eq!(header.verdict, Verdict::HeaderMismatch);
    assert!(
        header.reason.contains("version")
            && header.reason.contains("\"two\"")
            && header.reason.contains("\"one\""),
        "{}",
        header.reason
    );
    let method = verdict(&e, "default/a", 1);
    assert_eq!(method.verdict, Verdict::MethodMismatch);
    assert!(
        method.reason.contains("GET is not POST"),
        "{}",
        method.reason
    );
    assert_eq!(verdict(&e, "default/b", 0).verdict, Verdict::Selected);

    // With the header, route a wins; route b matches too but has fewer header matches.
    let e = explain(&r, "GET", "/x", "example.com", &[("version", "two")]);
    assert_eq!(verdict(&e, "default/a", 0).verdict, Verdict::Selected);
    let b = verdict(&e, "default/b", 0);
    assert_eq!(b.verdict, Verdict::LowerPrecedence);
    assert_eq!(b.precedence, Some(Precedence::HeaderCount));
    // Header absent.
    let e = explain(&r, "GET", "/x", "example.com", &[]);
    assert!(verdict(&e, "default/a", 0).reason.contains("absent"));
}

// Same match in two routes: "The oldest Route based on creation timestamp", then by name.
#[test]
fn ties_are_broken_by_age_then_name() {
    let yaml = format!(
        "{GATEWAY}{}{}",
        http_route(
            "zeta",
            "  rules:\n  - matches: [{path: {type: PathPrefix, value: /}}]"
        ),
        http_route(
            "alpha",
            "  rules:\n  - matches: [{path: {type: PathPrefix, value: /}}]"
        )
    );
    let e = explain(&routes(&yaml), "GET", "/", "example.com", &[]);
    assert_eq!(verdict(&e, "default/alpha", 0).verdict, Verdict::Selected);
    let z = verdict(&e, "default/zeta", 0);
    assert_eq!(z.precedence, Some(Precedence::RouteName));
}

// Route hostnames: rules of the most specific matching route hostname are the only candidates;
// others that match are "less specific", the rest do not match the host.
#[test]
fn hostname_mismatch_and_less_specific_hostnames() {
    let yaml = format!(
        "{GATEWAY}{}{}{}",
        http_route(
            "exact",
            "  hostnames: [foo.example.com]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /only}}]"
        ),
        http_route(
            "wild",
            "  hostnames: ['*.example.com']\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /}}]"
        ),
        http_route(
            "other",
            "  hostnames: [bar.example.net]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /}}]"
        )
    );
    let r = routes(&yaml);
    let e = explain(&r, "GET", "/elsewhere", "Foo.Example.com:80", &[]);
    assert_eq!(e.host, "foo.example.com");
    // The exact hostname group is chosen, and its only rule fails on the path: 404, although
    // the wildcard route would match.
    assert_eq!(e.status, Some(404));
    assert!(
        matches!(&e.outcome, Outcome::NotFound { reason } if reason.contains("listener http")),
        "{:?}",
        e.outcome
    );
    assert_eq!(
        verdict(&e, "default/exact", 0).verdict,
        Verdict::PathMismatch
    );
    let wild = verdict(&e, "default/wild", 0);
    assert_eq!(wild.verdict, Verdict::LessSpecificHostname);
    assert!(wild.reason.contains("foo.example.com"), "{}", wild.reason);
    let other = verdict(&e, "default/other", 0);
    assert_eq!(other.verdict, Verdict::HostnameMismatch);
    assert!(other.reason.contains("bar.example.net"), "{}", other.reason);

    let e = explain(&r, "GET", "/x", "baz.example.com", &[]);
    assert_eq!(verdict(&e, "default/wild", 0).verdict, Verdict::Selected);
    assert_eq!(
        verdict(&e, "default/exact", 0).verdict,
        Verdict::HostnameMismatch
    );
}

const TWO_LISTENERS: &str = r#"
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
  listeners:
  - {name: any, port: 80, protocol: HTTP}
  - {name: foo, port: 80, protocol: HTTP, hostname: foo.example.com}
"#;

// GatewayHTTPListenerIsolation: the most specific listener is selected; rules attached only to
// the other listener are reported as such.
#[test]
fn listener_selection_and_rules_of_other_listeners() {
    let route = |name: &str, section: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  parentRefs: [{{name: edge, sectionName: {section}}}]\n  rules: [{{matches: [{{path: {{type: PathPrefix, value: /}}}}]}}]\n"
        )
    };
    let yaml = format!(
        "{TWO_LISTENERS}{}{}",
        route("on-any", "any"),
        route("on-foo", "foo")
    );
    let r = routes(&yaml);
    let e = explain(&r, "GET", "/", "foo.example.com", &[]);
    let foo = e.listeners.iter().find(|l| l.name == "foo").unwrap();
    let any = e.listeners.iter().find(|l| l.name == "any").unwrap();
    assert!(foo.selected && !any.selected);
    assert!(
        any.reason.contains("more specific listener (foo)"),
        "{}",
        any.reason
    );
    assert_eq!(verdict(&e, "default/on-foo", 0).verdict, Verdict::Selected);
    let other = verdict(&e, "default/on-any", 0);
    assert_eq!(other.verdict, Verdict::OtherListener);
    assert_eq!(other.listener, "any");

    let e = explain(&r, "GET", "/", "bar.example.com", &[]);
    assert!(
        e.listeners
            .iter()
            .find(|l| l.name == "foo")
            .unwrap()
            .reason
            .contains("does not match")
    );
    assert_eq!(verdict(&e, "default/on-any", 0).verdict, Verdict::Selected);
}

// Nothing matches: 404 with every candidate's reason; an unknown port or Gateway says so.
#[test]
fn no_match_is_404_with_reasons() {
    let yaml = format!(
        "{GATEWAY}{}",
        http_route(
            "api",
            "  rules:\n  - matches: [{path: {type: Exact, value: /api}, queryParams: [{name: v, value: '2'}]}]"
        )
    );
    let r = routes(&yaml);
    let e = explain(&r, "GET", "/api?v=1", "example.com", &[]);
    assert_eq!(e.status, Some(404));
    let c = verdict(&e, "default/api", 0);
    assert_eq!(c.verdict, Verdict::QueryMismatch);
    assert!(c.reason.contains("\"1\""), "{}", c.reason);
    assert!(e.to_text().contains("404"), "{}", e.to_text());

    let e = r.explain(&ExplainRequest::new(
        gateway(),
        81,
        http::Request::get("/").body(()).unwrap(),
    ));
    assert!(matches!(&e.outcome, Outcome::NotFound { reason } if reason.contains("port 81")));
    assert!(e.listeners.is_empty() && e.candidates.is_empty());
    let e = r.explain(&ExplainRequest::new(
        gw_model::resources::ObjectKey::new("default", "nope"),
        80,
        http::Request::get("/").body(()).unwrap(),
    ));
    assert!(matches!(&e.outcome, Outcome::NotFound { reason } if reason.contains("not served")));
}

// GRPCRoute rules only see gRPC requests (an HTTPRoute and a GRPCRoute may not share
// hostnames on a listener, so the HTTPRoute has its own).
#[test]
fn grpc_rules_and_plain_requests() {
    let yaml = format!(
        "{GATEWAY}---\napiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {{name: g, namespace: default}}\nspec:\n  parentRefs: [{{name: edge}}]\n  hostnames: [grpc.example.com]\n  rules: [{{matches: [{{method: {{service: echo.Echo, method: Say}}}}]}}]\n{}",
        http_route(
            "h",
            "  hostnames: [web.example.com]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /}}]"
        )
    );
    let r = routes(&yaml);
    let e = explain(&r, "POST", "/echo.Echo/Say", "grpc.example.com", &[]);
    assert_eq!(e.status, Some(404));
    assert_eq!(verdict(&e, "default/g", 0).verdict, Verdict::NotGrpc);
    assert_eq!(
        verdict(&e, "default/h", 0).verdict,
        Verdict::HostnameMismatch
    );

    let grpc = [("content-type", "application/grpc")];
    let e = explain(&r, "POST", "/echo.Echo/Say", "grpc.example.com", &grpc);
    assert!(e.grpc);
    assert_eq!(verdict(&e, "default/g", 0).verdict, Verdict::Selected);
    assert!(matches!(
        &e.outcome,
        Outcome::Matched {
            kind: "GRPCRoute",
            ..
        }
    ));
    let e = explain(&r, "POST", "/echo.Echo/Shout", "grpc.example.com", &grpc);
    let g = verdict(&e, "default/g", 0);
    assert_eq!(g.verdict, Verdict::GrpcMethodMismatch);
    assert!(g.reason.contains("Shout"), "{}", g.reason);
    let e = explain(&r, "POST", "/other.Svc/Say", "grpc.example.com", &grpc);
    assert_eq!(
        verdict(&e, "default/g", 0).verdict,
        Verdict::GrpcServiceMismatch
    );
}

// Routes that name the Gateway but are not accepted are listed with their status reason.
#[test]
fn unattached_routes_carry_their_status_reason() {
    let yaml = format!(
        "{GATEWAY}---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: lost, namespace: default}}\nspec:\n  parentRefs: [{{name: edge, sectionName: nope}}]\n  rules: [{{matches: [{{path: {{type: PathPrefix, value: /}}}}]}}]\n"
    );
    let loaded = gw_model::load::parse("t.yaml", &yaml);
    let mut res = Resources::new();
    res.extend(loaded.objects);
    let compiled = gw_model::compile(&res, &CompileOptions::new("gw.dev/gateway"));
    let r = Routes::build(&compiled.table);
    let e = explain(&r, "GET", "/", "example.com", &[]).with_status(&compiled.status);
    assert_eq!(e.status, Some(404));
    let u = e
        .unattached
        .iter()
        .find(|u| u.route == "default/lost")
        .expect("listed");
    assert_eq!(u.kind, "HTTPRoute");
    assert_eq!(u.reason, "NoMatchingParent");
    assert_eq!(u.section_name.as_deref(), Some("nope"));
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["unattached"][0]["reason"], "NoMatchingParent");
    assert_eq!(json["outcome"]["result"], "notFound");
}
