//! Matching precedence, hostname selection and listener isolation, through `Routes::resolve`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{GATEWAY, gateway, routes};
use gw_router::{NotFound, Resolution, Routes};
use http::Request;

/// (route name, rule index) of the rule a request resolves to.
fn which(routes: &Routes, req: &Request<()>) -> Option<(String, usize)> {
    routes
        .resolve(&gateway(), 80, req)
        .matched()
        .map(|m| (m.rule().route().key.name.clone(), m.rule().rule_index()))
}

fn r(method: &str, uri: &str, host: &str, headers: &[(&str, &str)]) -> Request<()> {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap()
}

fn get(uri: &str) -> Request<()> {
    r("GET", uri, "example.com", &[])
}

fn hit(name: &str, rule: usize) -> Option<(String, usize)> {
    Some((name.to_owned(), rule))
}

fn route(name: &str, created: Option<&str>, body: &str) -> String {
    let ts = created.map_or(String::new(), |t| format!(", creationTimestamp: '{t}'"));
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: default{ts}}}\nspec:\n  parentRefs: [{{name: edge}}]\n{body}\n"
    )
}

// "precedence must be given to the match having: Exact path match."
#[test]
fn exact_path_beats_path_prefix_of_the_same_value() {
    let yaml = format!(
        "{GATEWAY}{}{}",
        route(
            "a-prefix",
            None,
            "  rules: [{matches: [{path: {type: PathPrefix, value: /foo}}]}]"
        ),
        route(
            "b-exact",
            None,
            "  rules: [{matches: [{path: {type: Exact, value: /foo}}]}]"
        ),
    );
    let routes = routes(&yaml);
    assert_eq!(which(&routes, &get("/foo")), hit("b-exact", 0));
    assert_eq!(
        which(&routes, &get("/foo?x=1")),
        hit("b-exact", 0),
        "Exact ignores the query"
    );
    assert_eq!(which(&routes, &get("/foo/")), hit("a-prefix", 0));
    assert_eq!(which(&routes, &get("/foo/bar")), hit("a-prefix", 0));
    assert_eq!(
        which(&routes, &get("/foobar")),
        None,
        "PathPrefix is element-wise"
    );
}

// "Prefix path match with largest number of characters."
#[test]
fn longest_prefix_wins() {
    let yaml = format!(
        "{GATEWAY}{}",
        route(
            "r",
            None,
            "  rules:\n  - matches: [{path: {type: PathPrefix, value: /}}]\n  - matches: [{path: {type: PathPrefix, value: /v2}}]\n  - matches: [{path: {type: PathPrefix, value: /v2/api/}}]",
        ),
    );
    let routes = routes(&yaml);
    assert_eq!(which(&routes, &get("/")), hit("r", 0));
    assert_eq!(which(&routes, &get("/v2")), hit("r", 1));
    assert_eq!(which(&routes, &get("/v2/")), hit("r", 1));
    assert_eq!(which(&routes, &get("/v2/api")), hit("r", 2));
    assert_eq!(which(&routes, &get("/v2/api/x")), hit("r", 2));
    assert_eq!(which(&routes, &get("/v2api")), hit("r", 0));
    assert_eq!(which(&routes, &get("/foo/v2/example")), hit("r", 0));
}

// "Method match." then "Largest number of header matches." then "Largest number of query
// param matches." — and a more specific match whose conditions fail falls back to the next.
#[test]
fn method_then_header_count_then_query_count() {
    let yaml = format!(
        "{GATEWAY}{}",
        route(
            "r",
            None,
            r#"  rules:
  - matches: [{path: {value: /p}, queryParams: [{name: a, value: "1"}, {name: b, value: "2"}]}]
  - matches: [{path: {value: /p}, headers: [{name: x, value: "1"}]}]
  - matches: [{path: {value: /p}, headers: [{name: x, value: "1"}, {name: y, value: "2"}]}]
  - matches: [{path: {value: /p}, method: POST}]
  - matches: [{path: {value: /p}, queryParams: [{name: a, value: "1"}]}]
  - matches: [{path: {value: /p}}]"#,
        ),
    );
    let routes = routes(&yaml);
    let req = |m, uri, h: &[(&str, &str)]| r(m, uri, "example.com", h);
    assert_eq!(
        which(
            &routes,
            &req("POST", "/p?a=1&b=2", &[("x", "1"), ("y", "2")])
        ),
        hit("r", 3)
    );
    assert_eq!(
        which(
            &routes,
            &req("GET", "/p?a=1&b=2", &[("x", "1"), ("y", "2")])
        ),
        hit("r", 2)
    );
    assert_eq!(
        which(&routes, &req("GET", "/p?a=1&b=2", &[("X", "1")])),
        hit("r", 1)
    );
    assert_eq!(which(&routes, &req("GET", "/p?a=1&b=2", &[])), hit("r", 0));
    assert_eq!(which(&routes, &req("GET", "/p?b=2&a=1", &[])), hit("r", 0));
    assert_eq!(which(&routes, &req("GET", "/p?a=1", &[])), hit("r", 4));
    assert_eq!(which(&routes, &req("GET", "/p?a=2", &[])), hit("r", 5));
}

// "If ties still exist across multiple Routes, matching precedence MUST be determined in order
// of the following criteria: The oldest Route based on creation timestamp. The Route appearing
// first in alphabetical order by {namespace}/{name}." "If ties still exist within an HTTPRoute,
// matching precedence MUST be granted to the FIRST matching rule (in list order)".
#[test]
fn oldest_route_then_name_then_rule_order() {
    let body = "  rules: [{matches: [{path: {value: /x}}]}, {matches: [{path: {value: /x}}]}]";
    let yaml = format!(
        "{GATEWAY}{}{}{}",
        route("a-new", Some("2024-02-01T00:00:00Z"), body),
        route("z-old", Some("2024-01-01T00:00:00Z"), body),
        route("m-old", Some("2024-01-01T00:00:00Z"), body),
    );
    assert_eq!(which(&routes(&yaml), &get("/x")), hit("m-old", 0));
    let yaml = format!(
        "{GATEWAY}{}{}",
        route("b", None, body),
        route("a", None, body)
    );
    assert_eq!(which(&routes(&yaml), &get("/x")), hit("a", 0));
}

// Conformance HTTPRouteMatching: matches are ORed; `/` or version: one -> v1, `/v2` or
// version: two -> v2.
#[test]
fn conformance_httproute_matching() {
    let yaml = format!(
        "{GATEWAY}{}",
        route(
            "matching",
            None,
            "  rules:\n  - matches: [{path: {type: PathPrefix, value: /}}, {headers: [{name: version, value: one}]}]\n  - matches: [{path: {type: PathPrefix, value: /v2}}, {headers: [{name: version, value: two}]}]",
        ),
    );
    let routes = routes(&yaml);
    for (path, headers, rule) in [
        ("/", vec![], 0),
        ("/example", vec![], 0),
        ("/", vec![("Version", "one")], 0),
        ("/v2", vec![], 1),
        ("/v2/example", vec![], 1),
        ("/", vec![("Version", "two")], 1),
        ("/v2/", vec![], 1),
        ("/v2example", vec![], 0),
        ("/foo/v2/example", vec![], 0),
    ] {
        assert_eq!(
            which(&routes, &r("GET", path, "example.com", &headers)),
            hit("matching", rule),
            "{path} {headers:?}"
        );
    }
}

// Conformance HTTPRouteHeaderMatching.
#[test]
fn conformance_header_matching() {
    let yaml = format!(
        "{GATEWAY}{}",
        route(
            "header-matching",
            None,
            r#"  rules:
  - matches: [{headers: [{name: version, value: one}]}]
  - matches: [{headers: [{name: version, value: two}]}]
  - matches: [{headers: [{name: version, value: two}, {name: color, value: orange}]}]
  - matches: [{headers: [{name: color, value: blue}]}, {headers: [{name: color, value: green}]}]
  - matches: [{headers: [{name: color, value: red}]}, {headers: [{name: color, value: yellow}]}]"#,
        ),
    );
    let routes = routes(&yaml);
    for (headers, rule) in [
        (vec![("Version", "one")], Some(0)),
        (vec![("Version", "two")], Some(1)),
        (vec![("Version", "two"), ("Color", "orange")], Some(2)),
        (vec![("Version", "two"), ("Color", "blue")], Some(1)),
        (vec![("Color", "orange")], None),
        (vec![("Some-Other-Header", "one")], None),
        (vec![("Color", "blue")], Some(3)),
        (vec![("Color", "green")], Some(3)),
        (vec![("Color", "red")], Some(4)),
        (vec![("Color", "yellow")], Some(4)),
        (vec![("Color", "purple")], None),
    ] {
        assert_eq!(
            which(&routes, &r("GET", "/", "example.com", &headers)),
            rule.and_then(|i| hit("header-matching", i)),
            "{headers:?}"
        );
    }
}

#[test]
fn regex_paths_headers_and_query() {
    let yaml = format!(
        "{GATEWAY}{}",
        route(
            "re",
            None,
            r#"  rules:
  - matches: [{path: {type: RegularExpression, value: "/v[0-9]+/.*"}}]
  - matches: [{path: {type: PathPrefix, value: /}, headers: [{type: RegularExpression, name: x-ver, value: "1\\.[0-9]"}]}]
  - matches: [{path: {type: PathPrefix, value: /}, queryParams: [{type: RegularExpression, name: q, value: "[a-c]+"}]}]"#,
        ),
    );
    let routes = routes(&yaml);
    assert_eq!(which(&routes, &get("/v1/users")), hit("re", 0));
    assert_eq!(
        which(&routes, &get("/x/v1/users")),
        None,
        "regexes match the whole path"
    );
    assert_eq!(
        which(&routes, &r("GET", "/a", "e.com", &[("x-ver", "1.2")])),
        hit("re", 1)
    );
    assert_eq!(
        which(&routes, &r("GET", "/a", "e.com", &[("x-ver", "1.22")])),
        None
    );
    assert_eq!(which(&routes, &get("/a?q=abc")), hit("re", 2));
    assert_eq!(which(&routes, &get("/a?q=abcd")), None);
}

const HOSTNAME_ROUTES: &str = r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: exact, namespace: default}
spec:
  parentRefs: [{name: edge}]
  hostnames: [foo.example.com]
  rules: [{matches: [{path: {value: /only-exact}}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: wild, namespace: default}
spec:
  parentRefs: [{name: edge}]
  hostnames: ["*.example.com"]
  rules: [{matches: [{path: {value: /}}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: deeper, namespace: default}
spec:
  parentRefs: [{name: edge}]
  hostnames: ["*.a.example.com"]
  rules: [{matches: [{path: {value: /}}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: any, namespace: default}
spec:
  parentRefs: [{name: edge}]
  rules: [{matches: [{path: {value: /}}]}]
"#;

// Route hostnames: the most specific matching group is chosen, and matching stays inside it.
#[test]
fn most_specific_route_hostname_group_without_fallback() {
    let routes = routes(&format!("{GATEWAY}{HOSTNAME_ROUTES}"));
    let at = |host: &str, path: &str| which(&routes, &r("GET", path, host, &[]));
    assert_eq!(at("foo.example.com", "/only-exact"), hit("exact", 0));
    // The exact group has no rule for `/`: 404, no fallback to `*.example.com`.
    assert_eq!(at("foo.example.com", "/"), None);
    assert_eq!(at("FOO.Example.com.:80", "/only-exact"), hit("exact", 0));
    assert_eq!(at("bar.example.com", "/"), hit("wild", 0));
    assert_eq!(at("x.y.example.com", "/"), hit("wild", 0));
    assert_eq!(at("x.a.example.com", "/"), hit("deeper", 0));
    assert_eq!(at("example.com", "/"), hit("any", 0));
    assert_eq!(at("other.org", "/"), hit("any", 0));
    // Absolute-form request target wins over Host.
    let abs = Request::get("http://bar.example.com/")
        .header("host", "other.org")
        .body(())
        .unwrap();
    assert_eq!(which(&routes, &abs), hit("wild", 0));
}

// Conformance HTTPRouteListenerHostnameMatching / GatewayHTTPListenerIsolation: listeners on
// one port are chosen by the most specific hostname, and only their routes are used.
#[test]
fn listener_isolation_by_hostname() {
    let yaml = r#"
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
  - {name: listener-1, port: 80, protocol: HTTP, hostname: bar.com}
  - {name: listener-2, port: 80, protocol: HTTP, hostname: foo.bar.com}
  - {name: listener-3, port: 80, protocol: HTTP, hostname: "*.bar.com"}
  - {name: listener-4, port: 80, protocol: HTTP, hostname: "*.foo.com"}
  - {name: empty, port: 80, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: backend-v1, namespace: default}
spec:
  parentRefs: [{name: edge, sectionName: listener-1}]
  rules: [{}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: backend-v2, namespace: default}
spec:
  parentRefs: [{name: edge, sectionName: listener-2}]
  rules: [{}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: backend-v3, namespace: default}
spec:
  parentRefs: [{name: edge, sectionName: listener-3}, {name: edge, sectionName: listener-4}]
  rules: [{}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: catch-all, namespace: default}
spec:
  parentRefs: [{name: edge, sectionName: empty}]
  rules: [{matches: [{path: {value: /catch}}]}]
"#;
    let routes = routes(yaml);
    let at = |host: &str, path: &str| which(&routes, &r("GET", path, host, &[]));
    assert_eq!(at("bar.com", "/"), hit("backend-v1", 0));
    assert_eq!(at("foo.bar.com", "/"), hit("backend-v2", 0));
    assert_eq!(at("baz.bar.com", "/"), hit("backend-v3", 0));
    assert_eq!(at("multiple.prefixes.bar.com", "/"), hit("backend-v3", 0));
    assert_eq!(at("multiple.prefixes.foo.com", "/"), hit("backend-v3", 0));
    // foo.com is caught by the listener without hostname, whose route has only /catch.
    assert_eq!(at("foo.com", "/"), None);
    assert_eq!(at("foo.com", "/catch"), hit("catch-all", 0));
    // Isolation: bar.com goes to listener-1 only, never to the catch-all listener's route.
    assert_eq!(at("bar.com", "/catch"), hit("backend-v1", 0));
    let req = r("GET", "/", "x.bar.com", &[]);
    let m = routes.resolve(&gateway(), 80, &req).matched().unwrap();
    assert_eq!(m.listener().name(), "listener-3");
}

#[test]
fn not_found_reasons() {
    let routes = routes(&format!(
        "{GATEWAY}{}",
        route("r", None, "  rules: [{matches: [{path: {value: /a}}]}]")
    ));
    let req = get("/b");
    assert!(matches!(
        routes.resolve(&gateway(), 80, &req),
        Resolution::NotFound(NotFound::NoMatchingRule { .. })
    ));
    assert!(matches!(
        routes.resolve(&gateway(), 81, &req),
        Resolution::NotFound(NotFound::NoListenerOnPort)
    ));
    let other = gw_router::gw_model::resources::ObjectKey::new("default", "nope");
    assert!(matches!(
        routes.resolve(&other, 80, &req),
        Resolution::NotFound(NotFound::UnknownGateway)
    ));
}

// gRPC requests (content-type application/grpc) are matched against GRPCRoutes, other
// requests against HTTPRoutes. An HTTPRoute and a GRPCRoute may not share hostnames on a
// listener (GRPCRoute spec: "the implementation MUST accept exactly one of these two routes"),
// so they are given distinct hostnames here.
#[test]
fn grpc_routes_first_for_grpc_requests() {
    let yaml = format!(
        "{GATEWAY}{}{}",
        r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpc, namespace: default}
spec:
  parentRefs: [{name: edge}]
  hostnames: [grpc.example.com]
  rules:
  - matches: [{method: {service: pkg.Echo, method: Echo}}]
  - matches: [{method: {service: pkg.Echo}}]
  - matches: [{method: {type: RegularExpression, service: "pkg\\..*", method: "Two.*"}}]
  - matches: [{headers: [{name: tenant, value: a}]}]
"#,
        route("http", None, "  hostnames: [example.com]\n  rules: [{}]"),
    );
    let routes = routes(&yaml);
    let grpc = |host: &str, path: &str, h: &[(&str, &str)]| {
        let mut headers = vec![("content-type", "application/grpc+proto")];
        headers.extend_from_slice(h);
        which(&routes, &r("POST", path, host, &headers))
    };
    let g = "grpc.example.com";
    assert_eq!(grpc(g, "/pkg.Echo/Echo", &[]), hit("grpc", 0));
    assert_eq!(grpc(g, "/pkg.Echo/EchoTwo", &[]), hit("grpc", 1));
    assert_eq!(grpc(g, "/pkg.Other/TwoX", &[]), hit("grpc", 2));
    assert_eq!(grpc(g, "/x.Y/Z", &[("tenant", "a")]), hit("grpc", 3));
    // No GRPCRoute matches: nothing on this host.
    assert_eq!(grpc(g, "/x.Y/Z", &[]), None);
    // gRPC to the HTTPRoute's host: the HTTPRoute takes it.
    assert_eq!(grpc("example.com", "/x.Y/Z", &[]), hit("http", 0));
    // Not gRPC: HTTPRoutes only.
    assert_eq!(which(&routes, &r("POST", "/pkg.Echo/Echo", g, &[])), None);
    assert_eq!(
        which(&routes, &r("POST", "/pkg.Echo/Echo", "example.com", &[])),
        hit("http", 0)
    );
}

/// The index holds the table's entries, not copies of them (at 5,000 routes a copy of every
/// rule cost megabytes), and the rule it resolves to is that entry.
#[test]
fn the_index_shares_the_table_entries() {
    let yaml = format!(
        "{GATEWAY}{}{}",
        route(
            "a",
            None,
            "  rules: [{matches: [{path: {type: PathPrefix, value: /a}}]}]"
        ),
        route(
            "b",
            None,
            "  rules: [{matches: [{path: {type: Exact, value: /b}}]}]"
        ),
    );
    let table = common::table(&yaml);
    let entries = &table.gateways[0].listeners[0].http;
    assert_eq!(entries.len(), 2);
    for e in entries {
        assert_eq!(std::sync::Arc::strong_count(e.as_arc()), 1);
    }
    let routes = Routes::build(&table);
    for e in entries {
        assert_eq!(
            std::sync::Arc::strong_count(e.as_arc()),
            2,
            "{}",
            e.route.key
        );
    }
    let req = get("/b");
    let m = routes.resolve(&gateway(), 80, &req);
    let entry = m.matched().and_then(|m| m.rule().http_entry()).unwrap();
    let shared = entries.iter().find(|e| e.route.key.name == "b").unwrap();
    assert!(std::ptr::eq(entry, &**shared));
    drop(routes);
    for e in entries {
        assert_eq!(std::sync::Arc::strong_count(e.as_arc()), 1);
    }
}
