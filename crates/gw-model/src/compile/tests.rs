//! Spec rules of `compile`, end to end from YAML. Each test quotes the rule it checks.

use crate::resources::{Kind, ObjectKey, Resources};
use crate::status::{Condition, ConditionStatus, find};
use crate::table::{HttpMatch, HttpMatchKey, PathMatch, RouteOrder, ValueMatch};
use crate::{CompileOptions, Compiled, compile, load};

const CLASS: &str = "
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gw}
spec: {controllerName: gw.dev/gateway}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: other}
spec: {controllerName: example.com/other}
";

fn run(yaml: &str) -> Compiled {
    let mut res = Resources::new();
    let loaded = load::parse("test.yaml", &format!("{CLASS}\n---\n{yaml}"));
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    res.extend(loaded.objects);
    compile(&res, &CompileOptions::new("gw.dev/gateway"))
}

fn route_condition(c: &Compiled, kind: Kind, ns: &str, name: &str, type_: &str) -> Condition {
    let status = c
        .status
        .route(kind, &ObjectKey::new(ns, name))
        .unwrap_or_else(|| panic!("no status for {name}"));
    find(&status.parents[0].conditions, type_)
        .cloned()
        .unwrap_or_else(|| panic!("no {type_} on {name}: {status:?}"))
}

fn listener_condition(c: &Compiled, gw: &str, listener: &str, type_: &str) -> Condition {
    let g = c
        .status
        .gateway(&ObjectKey::new("default", gw))
        .expect("gateway status");
    let l = g
        .listeners
        .iter()
        .find(|l| l.name == listener)
        .expect("listener");
    find(&l.conditions, type_).cloned().expect("condition")
}

fn gateway_condition(c: &Compiled, gw: &str, type_: &str) -> Condition {
    let g = c
        .status
        .gateway(&ObjectKey::new("default", gw))
        .expect("gateway status");
    find(&g.conditions, type_).cloned().expect("condition")
}

const GATEWAY: &str = "
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: default}
spec:
  gatewayClassName: gw
  listeners:
  - {name: http, port: 80, protocol: HTTP, hostname: '*.example.com'}
  - {name: other, port: 8080, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
";

// GatewayClass: "Accepted ... by the controller named in controllerName"; classes of other
// controllers are not gw's to report on.
#[test]
fn only_our_gateway_classes_get_status() {
    let c = run("");
    let keys: Vec<_> = c
        .status
        .entries
        .iter()
        .map(|e| (e.kind, e.key.name.as_str()))
        .collect();
    assert_eq!(keys, [(Kind::GatewayClass, "gw")]);
    let Some(crate::status::ObjectStatus::GatewayClass(s)) =
        c.status.get(Kind::GatewayClass, &ObjectKey::new("", "gw"))
    else {
        panic!("no class status")
    };
    assert!(s.conditions[0].is_true("Accepted"));
}

// Gateway: only Gateways of our classes are served.
#[test]
fn gateways_of_other_classes_are_ignored() {
    let c = run(&GATEWAY.replace("gatewayClassName: gw", "gatewayClassName: other"));
    assert!(
        c.status
            .gateway(&ObjectKey::new("default", "edge"))
            .is_none()
    );
    assert!(c.table.gateways.is_empty());
}

// Route attachment: "NoMatchingParent ... the parentRef's sectionName or port does not match
// any listener"; "NotAllowedByListeners ... not allowed by the listeners' allowedRoutes";
// "NoMatchingListenerHostname ... no hostname of the route matches the listener's".
#[test]
fn route_attachment_reasons() {
    let c = run(&format!(
        "{GATEWAY}
---
apiVersion: v1
kind: Namespace
metadata: {{name: apps}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: no-section, namespace: default}}
spec:
  parentRefs: [{{name: edge, sectionName: nope}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: wrong-port, namespace: default}}
spec:
  parentRefs: [{{name: edge, port: 9999}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: other-ns, namespace: apps}}
spec:
  parentRefs: [{{name: edge, namespace: default, sectionName: http}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: bad-host, namespace: default}}
spec:
  parentRefs: [{{name: edge, sectionName: http}}]
  hostnames: [example.net]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: good, namespace: default}}
spec:
  parentRefs: [{{name: edge}}]
  hostnames: [foo.example.com]
"
    ));
    let reason = |name, ns| route_condition(&c, Kind::HttpRoute, ns, name, "Accepted").reason;
    assert_eq!(reason("no-section", "default"), "NoMatchingParent");
    assert_eq!(reason("wrong-port", "default"), "NoMatchingParent");
    assert_eq!(reason("other-ns", "apps"), "NotAllowedByListeners");
    assert_eq!(reason("bad-host", "default"), "NoMatchingListenerHostname");
    assert_eq!(reason("good", "default"), "Accepted");
    // "AttachedRoutes ... the total number of Routes that have been successfully attached":
    // `good` attaches to both listeners (foo.example.com intersects *.example.com and the
    // hostname-less listener).
    let g = c
        .status
        .gateway(&ObjectKey::new("default", "edge"))
        .expect("status");
    let attached: Vec<_> = g.listeners.iter().map(|l| l.attached_routes).collect();
    assert_eq!(attached, [1, 1]);
    let table = &c.table.gateways[0].listeners[0];
    assert_eq!(table.http[0].hostnames, ["foo.example.com"]);
}

// The `/status` List written straight from the report is the List `to_list` builds as a tree.
#[test]
fn the_list_view_serializes_the_same_list_as_to_list() {
    let c = run(&format!(
        "{GATEWAY}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: good, namespace: default, generation: 3}}
spec:
  parentRefs: [{{name: edge}}, {{name: missing}}]
  hostnames: [foo.example.com]
"
    ));
    let list = c.status.to_list();
    assert!(list["items"].as_array().is_some_and(|i| i.len() >= 3));
    let view = serde_json::to_value(c.status.list_view()).expect("serializes");
    assert_eq!(view, list);
    let class = &view["items"][0];
    assert_eq!(class["kind"], "GatewayClass");
    assert!(class["metadata"].get("namespace").is_none());
}

// allowedRoutes.namespaces.from Selector: "Routes in namespaces selected by the selector may be
// used by this Gateway."
#[test]
fn allowed_routes_namespace_selector() {
    let c = run(&format!(
        "
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: default}}
spec:
  gatewayClassName: gw
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    allowedRoutes:
      namespaces:
        from: Selector
        selector: {{matchLabels: {{team: web}}}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: web, labels: {{team: web}}}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: db, labels: {{team: db}}}}
{}{}",
        route_yaml("web", "r"),
        route_yaml("db", "r")
    ));
    assert_eq!(
        route_condition(&c, Kind::HttpRoute, "web", "r", "Accepted").reason,
        "Accepted"
    );
    assert_eq!(
        route_condition(&c, Kind::HttpRoute, "db", "r", "Accepted").reason,
        "NotAllowedByListeners"
    );
}

fn route_yaml(ns: &str, name: &str) -> String {
    format!(
        "
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: {ns}}}
spec:
  parentRefs: [{{name: edge, namespace: default}}]
"
    )
}

// HTTPRoute ResolvedRefs: "RefNotPermitted ... a BackendRef to another namespace without a
// ReferenceGrant"; with the grant the reference resolves.
#[test]
fn cross_namespace_backend_needs_a_reference_grant() {
    let base = format!(
        "{GATEWAY}
---
apiVersion: v1
kind: Service
metadata: {{name: svc, namespace: backend}}
spec: {{ports: [{{port: 80}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: default}}
spec:
  parentRefs: [{{name: edge, sectionName: other}}]
  rules: [{{backendRefs: [{{name: svc, namespace: backend, port: 80}}]}}]
"
    );
    let c = run(&base);
    let resolved = route_condition(&c, Kind::HttpRoute, "default", "r", "ResolvedRefs");
    assert_eq!(
        (resolved.status, &*resolved.reason),
        (ConditionStatus::False, "RefNotPermitted")
    );
    // The rule still serves: its invalid backend's share is answered 500 by the data plane.
    let entry = &c.table.gateways[0].listeners[1].http[0];
    assert!(matches!(
        entry.action.backends[0].backend,
        crate::table::Backend::Invalid { .. }
    ));
    let granted = run(&format!(
        "{base}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {{name: g, namespace: backend}}
spec:
  from: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}}]
  to: [{{group: '', kind: Service}}]
"
    ));
    assert!(
        route_condition(&granted, Kind::HttpRoute, "default", "r", "ResolvedRefs")
            .is_true("ResolvedRefs")
    );
}

// Gateway: "ListenersNotValid ... can be the reason when Accepted is True or False, depending on
// whether the listener being invalid causes the entire Gateway to not be accepted."
#[test]
fn unsupported_protocols_make_listeners_not_valid() {
    let some = run("
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: default}
spec:
  gatewayClassName: gw
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - {name: bad, port: 81, protocol: example.com/QUIC}
");
    let accepted = gateway_condition(&some, "edge", "Accepted");
    assert_eq!(
        (accepted.status, &*accepted.reason),
        (ConditionStatus::True, "ListenersNotValid")
    );
    assert_eq!(
        listener_condition(&some, "edge", "bad", "Accepted").reason,
        "UnsupportedProtocol"
    );
    let all = run("
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: default}
spec:
  gatewayClassName: gw
  listeners: [{name: bad, port: 81, protocol: SCTP}]
");
    let accepted = gateway_condition(&all, "edge", "Accepted");
    assert_eq!(
        (accepted.status, &*accepted.reason),
        (ConditionStatus::False, "ListenersNotValid")
    );
    assert!(
        all.table.gateways.is_empty(),
        "an unaccepted gateway serves nothing"
    );
}

// Gateway addresses: "UnsupportedAddress" for an address type the implementation does not
// support; "AddressNotUsable" (Programmed=False) for an address it cannot use.
#[test]
fn static_addresses() {
    let gw = |addresses: &str| {
        format!(
            "
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: default}}
spec:
  gatewayClassName: gw
  addresses: {addresses}
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
"
        )
    };
    let mut res = Resources::new();
    res.extend(
        load::parse(
            "t",
            &format!(
                "{CLASS}\n---\n{}",
                gw("[{type: Hostname, value: x.example.com}]")
            ),
        )
        .objects,
    );
    let mut options = CompileOptions::new("gw.dev/gateway");
    let c = compile(&res, &options);
    assert_eq!(
        gateway_condition(&c, "edge", "Accepted").reason,
        "UnsupportedAddress"
    );

    let mut res = Resources::new();
    res.extend(
        load::parse(
            "t",
            &format!(
                "{CLASS}\n---\n{}",
                gw("[{value: 10.9.9.9}, {value: 127.0.10.7}]")
            ),
        )
        .objects,
    );
    options.usable_networks = vec!["127.0.0.0/8".parse().expect("net")];
    let c = compile(&res, &options);
    assert!(gateway_condition(&c, "edge", "Accepted").is_true("Accepted"));
    assert_eq!(
        gateway_condition(&c, "edge", "Programmed").reason,
        "AddressNotUsable"
    );
    let g = c
        .status
        .gateway(&ObjectKey::new("default", "edge"))
        .expect("status");
    assert_eq!(g.addresses.len(), 1);
    assert_eq!(g.addresses[0].value, "127.0.10.7");
}

// GEP-1713: "An implementation MUST NOT attach ListenerSets unless the Gateway allows it"
// (allowedListeners defaults to from: None) — the ListenerSet is Accepted=False/NotAllowed.
#[test]
fn listener_sets_need_allowed_listeners() {
    let ls = "
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: extra, namespace: default}
spec:
  parentRef: {name: edge}
  listeners: [{name: extra, port: 9000, protocol: HTTP}]
";
    let c = run(&format!("{GATEWAY}{ls}"));
    let Some(crate::status::ObjectStatus::ListenerSet(s)) = c
        .status
        .get(Kind::ListenerSet, &ObjectKey::new("default", "extra"))
    else {
        panic!("no listener set status")
    };
    assert_eq!(s.conditions[0].reason, "NotAllowed");
    let allowed = GATEWAY.replace(
        "  listeners:\n",
        "  allowedListeners: {namespaces: {from: Same}}\n  listeners:\n",
    );
    let c = run(&format!("{allowed}{ls}"));
    let Some(crate::status::ObjectStatus::ListenerSet(s)) = c
        .status
        .get(Kind::ListenerSet, &ObjectKey::new("default", "extra"))
    else {
        panic!("no listener set status")
    };
    assert!(s.conditions[0].is_true("Accepted"));
    let g = c
        .status
        .gateway(&ObjectKey::new("default", "edge"))
        .expect("status");
    assert_eq!(g.attached_listener_sets, Some(1));
    assert_eq!(
        g.listeners.len(),
        2,
        "ListenerSet listeners are reported on the ListenerSet"
    );
    assert_eq!(c.table.gateways[0].listeners.len(), 3);
}

// HTTPRoute: "Invalid Route rules can be ignored (sometimes that will mean the full Route)";
// a route with some invalid rules reports PartiallyInvalid, one with only invalid rules is not
// accepted.
#[test]
fn invalid_rules_are_dropped_and_reported() {
    let c = run(&format!(
        "{GATEWAY}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: partly, namespace: default}}
spec:
  parentRefs: [{{name: edge, sectionName: other}}]
  rules:
  - matches: [{{path: {{type: RegularExpression, value: '(unclosed'}}}}]
  - matches: [{{path: {{type: PathPrefix, value: /ok}}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: broken, namespace: default}}
spec:
  parentRefs: [{{name: edge, sectionName: other}}]
  rules:
  - matches: [{{path: {{type: Exact, value: /a//b}}}}]
"
    ));
    assert!(
        route_condition(&c, Kind::HttpRoute, "default", "partly", "PartiallyInvalid")
            .is_true("PartiallyInvalid")
    );
    let broken = route_condition(&c, Kind::HttpRoute, "default", "broken", "Accepted");
    assert_eq!(
        (broken.status, &*broken.reason),
        (ConditionStatus::False, "UnsupportedValue")
    );
    let http = &c.table.gateways[0].listeners[1].http;
    assert_eq!(http.len(), 1);
    assert_eq!(http[0].rule_index, 1);
}

// "observedGeneration ... the .metadata.generation that the condition was set based upon";
// objects without a generation are generation 1.
#[test]
fn observed_generation_follows_metadata() {
    let c = run(&GATEWAY.replace(
        "metadata: {name: edge, namespace: default}",
        "metadata: {name: edge, namespace: default, generation: 7}",
    ));
    let g = c
        .status
        .gateway(&ObjectKey::new("default", "edge"))
        .expect("status");
    assert!(g.conditions.iter().all(|c| c.observed_generation == 7));
    assert!(
        g.listeners
            .iter()
            .flat_map(|l| &l.conditions)
            .all(|c| c.observed_generation == 7)
    );
    let class = &c.status.entries[0];
    assert_eq!(class.generation, 1);
}

fn m(kind: crate::resources::PathMatchType, path: &str) -> HttpMatch {
    HttpMatch {
        path: PathMatch {
            kind,
            value: path.into(),
        },
        method: None,
        headers: vec![],
        query: vec![],
    }
}

fn order(ts: Option<i128>, ns: &str, name: &str) -> RouteOrder {
    RouteOrder {
        created: ts,
        key: ObjectKey::new(ns, name),
    }
}

// HTTPRoute precedence: "Exact path match. Prefix path match with largest number of characters.
// Method match. Largest number of header matches. Largest number of query param matches." then
// "The oldest Route based on creation timestamp", "alphabetical order by {namespace}/{name}",
// and "the FIRST matching rule (in list order)".
#[test]
fn http_match_precedence_is_an_explicit_ranked_key() {
    use crate::resources::PathMatchType::{Exact, PathPrefix, RegularExpression};
    let o = order(Some(10), "a", "r");
    let key = |m: &HttpMatch, o: &RouteOrder, rule| HttpMatchKey::new(m, o, rule, 0);
    assert!(
        key(&m(Exact, "/foo"), &o, 0) < key(&m(PathPrefix, "/foo"), &o, 0),
        "Exact beats PathPrefix"
    );
    assert!(
        key(&m(PathPrefix, "/foo/bar"), &o, 0) < key(&m(PathPrefix, "/foo"), &o, 0),
        "longer prefix"
    );
    assert!(key(&m(PathPrefix, "/"), &o, 0) < key(&m(RegularExpression, "/.*"), &o, 0));
    let mut with_method = m(PathPrefix, "/");
    with_method.method = Some("GET".into());
    assert!(
        key(&with_method, &o, 0) < key(&m(PathPrefix, "/"), &o, 0),
        "method match"
    );
    let mut with_header = m(PathPrefix, "/");
    with_header.headers = vec![ValueMatch {
        name: "a".into(),
        kind: crate::resources::StringMatchType::Exact,
        value: "1".into(),
    }];
    assert!(
        key(&with_method, &o, 0) < key(&with_header, &o, 0),
        "method outranks headers"
    );
    let mut with_query = m(PathPrefix, "/");
    with_query.query = with_header.headers.clone();
    assert!(
        key(&with_header, &o, 0) < key(&with_query, &o, 0),
        "headers outrank query params"
    );
    assert!(key(&with_query, &o, 0) < key(&m(PathPrefix, "/"), &o, 0));
    let plain = m(PathPrefix, "/");
    assert!(
        key(&plain, &order(Some(1), "z", "z"), 0) < key(&plain, &order(Some(2), "a", "a"), 0),
        "oldest"
    );
    assert!(
        key(&plain, &order(Some(1), "a", "b"), 0) < key(&plain, &order(Some(1), "a", "c"), 0),
        "name"
    );
    assert!(
        key(&plain, &order(None, "a", "a"), 0) > key(&plain, &order(Some(5), "z", "z"), 0),
        "no timestamp sorts last"
    );
    assert!(key(&plain, &o, 0) < key(&plain, &o, 1), "rule order");
}

// The explainer names the precedence criterion that decided between two matches: the first of
// the spec's list ("Exact path match. Prefix path match with largest number of characters.
// Method match. Largest number of header matches. Largest number of query param matches.", then
// the route tie-breakers and rule order) in which they differ, and it agrees with the order.
#[test]
fn http_precedence_decided_by_names_the_first_differing_criterion() {
    use crate::resources::PathMatchType::{Exact, PathPrefix};
    use crate::table::Precedence;
    let o = order(Some(10), "a", "r");
    let key = |m: &HttpMatch, o: &RouteOrder, rule| HttpMatchKey::new(m, o, rule, 0);
    let mut get = m(PathPrefix, "/");
    get.method = Some("GET".into());
    let mut header = m(PathPrefix, "/");
    header.headers = vec![ValueMatch {
        name: "a".into(),
        kind: crate::resources::StringMatchType::Exact,
        value: "1".into(),
    }];
    let mut query = m(PathPrefix, "/");
    query.query = header.headers.clone();
    let plain = m(PathPrefix, "/");
    let cases = [
        (
            key(&m(Exact, "/foo"), &o, 0),
            key(&m(PathPrefix, "/foo"), &o, 0),
            Precedence::PathType,
        ),
        (
            key(&m(PathPrefix, "/foo/bar"), &o, 0),
            key(&m(PathPrefix, "/foo"), &o, 0),
            Precedence::PathLength,
        ),
        (key(&get, &o, 0), key(&header, &o, 0), Precedence::Method),
        (
            key(&header, &o, 0),
            key(&query, &o, 0),
            Precedence::HeaderCount,
        ),
        (
            key(&query, &o, 0),
            key(&plain, &o, 0),
            Precedence::QueryCount,
        ),
        (
            key(&plain, &order(Some(1), "z", "z"), 0),
            key(&plain, &order(Some(2), "a", "a"), 0),
            Precedence::CreationTimestamp,
        ),
        (
            key(&plain, &order(Some(5), "z", "z"), 0),
            key(&plain, &order(None, "a", "a"), 0),
            Precedence::CreationTimestamp,
        ),
        (
            key(&plain, &order(Some(1), "a", "b"), 0),
            key(&plain, &order(Some(1), "a", "c"), 0),
            Precedence::RouteName,
        ),
        (
            key(&plain, &o, 0),
            key(&plain, &o, 1),
            Precedence::RuleOrder,
        ),
        (
            key(&plain, &o, 0),
            HttpMatchKey::new(&plain, &o, 0, 1),
            Precedence::MatchOrder,
        ),
    ];
    for (winner, loser, rule) in cases {
        assert!(winner < loser, "{rule:?}");
        assert_eq!(winner.decided_by(&loser), rule);
        assert_eq!(loser.decided_by(&winner), rule);
    }
    assert_eq!(
        key(&plain, &o, 0).decided_by(&key(&plain, &o, 0)),
        Precedence::Same
    );
}

// GRPCRoute: "Characters in a matching service. Characters in a matching method. Header
// matches." then the route tie-breakers.
#[test]
fn grpc_precedence_decided_by_names_the_first_differing_criterion() {
    use crate::resources::{GrpcMethodMatch, StringMatchType};
    use crate::table::{GrpcMatch, GrpcMatchKey, Precedence};
    let o = order(Some(10), "a", "r");
    let gm = |service: Option<&str>, method: Option<&str>, headers: usize| GrpcMatch {
        method: Some(GrpcMethodMatch {
            type_: StringMatchType::Exact,
            service: service.map(Into::into),
            method: method.map(Into::into),
        }),
        headers: (0..headers)
            .map(|i| ValueMatch {
                name: format!("h{i}"),
                kind: StringMatchType::Exact,
                value: "1".into(),
            })
            .collect(),
    };
    let key = |m: &GrpcMatch, o: &RouteOrder| GrpcMatchKey::new(m, o, 0, 0);
    let cases = [
        (
            key(&gm(Some("a.B"), None, 0), &o),
            key(&gm(None, Some("Get"), 0), &o),
            Precedence::ServiceLength,
        ),
        (
            key(&gm(Some("a.B"), Some("Get"), 0), &o),
            key(&gm(Some("a.B"), None, 0), &o),
            Precedence::MethodLength,
        ),
        (
            key(&gm(Some("a.B"), None, 1), &o),
            key(&gm(Some("a.B"), None, 0), &o),
            Precedence::HeaderCount,
        ),
        (
            key(&gm(None, None, 0), &order(Some(1), "z", "z")),
            key(&gm(None, None, 0), &order(Some(2), "a", "a")),
            Precedence::CreationTimestamp,
        ),
    ];
    for (winner, loser, rule) in cases {
        assert!(winner < loser, "{rule:?}");
        assert_eq!(winner.decided_by(&loser), rule);
    }
}

// Listener TLS: HTTPS listeners need certificates; a missing Secret is InvalidCertificateRef
// and the listener is not programmed, while routes still count as attached ("AttachedRoutes
// MUST be set for Listeners with condition Accepted: false").
#[test]
fn https_listener_with_missing_secret() {
    let c = run("
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: default}
spec:
  gatewayClassName: gw
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    tls: {certificateRefs: [{name: missing}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: default}
spec:
  parentRefs: [{name: edge}]
");
    let resolved = listener_condition(&c, "edge", "https", "ResolvedRefs");
    assert_eq!(resolved.reason, "InvalidCertificateRef");
    assert_eq!(
        listener_condition(&c, "edge", "https", "Programmed").status,
        ConditionStatus::False
    );
    let g = c
        .status
        .gateway(&ObjectKey::new("default", "edge"))
        .expect("status");
    assert_eq!(g.listeners[0].attached_routes, 1);
}

// TCPRoute: several routes may attach to one listener; the oldest takes the traffic.
#[test]
fn l4_routes_oldest_first() {
    let c = run("
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: default}
spec:
  gatewayClassName: gw
  listeners: [{name: tcp, port: 5000, protocol: TCP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {name: newer, namespace: default, creationTimestamp: '2024-01-02T00:00:00Z'}
spec:
  parentRefs: [{name: edge}]
  rules: [{backendRefs: [{name: b, port: 1}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {name: older, namespace: default, creationTimestamp: '2024-01-01T00:00:00Z'}
spec:
  parentRefs: [{name: edge}]
  rules: [{backendRefs: [{name: b, port: 1}]}]
");
    let l4 = &c.table.gateways[0].listeners[0].l4;
    let names: Vec<_> = l4.iter().map(|e| e.route.key.name.as_str()).collect();
    assert_eq!(names, ["older", "newer"]);
    assert!(
        route_condition(&c, Kind::TcpRoute, "default", "newer", "Accepted").is_true("Accepted")
    );
    assert_eq!(
        route_condition(&c, Kind::TcpRoute, "default", "older", "ResolvedRefs").reason,
        "BackendNotFound"
    );
}

// GRPCRoute precedence: "Characters in a matching service. Characters in a matching method.
// Header matches." then the route tie-breakers and rule order.
#[test]
fn grpc_match_precedence() {
    use crate::resources::GrpcMethodMatch;
    use crate::table::{GrpcMatch, GrpcMatchKey};
    let o = order(Some(1), "a", "r");
    let gm = |service: Option<&str>, method: Option<&str>, headers: usize| GrpcMatch {
        method: (service.is_some() || method.is_some()).then(|| GrpcMethodMatch {
            type_: crate::resources::StringMatchType::Exact,
            service: service.map(Into::into),
            method: method.map(Into::into),
        }),
        headers: (0..headers)
            .map(|i| ValueMatch {
                name: format!("h{i}"),
                kind: crate::resources::StringMatchType::Exact,
                value: "v".into(),
            })
            .collect(),
    };
    let key = |m: &GrpcMatch| GrpcMatchKey::new(m, &o, 0, 0);
    assert!(
        key(&gm(Some("pkg.LongService"), None, 0)) < key(&gm(Some("pkg.S"), Some("LongMethod"), 0)),
        "service length first"
    );
    assert!(
        key(&gm(Some("pkg.S"), Some("Method"), 0)) < key(&gm(Some("pkg.S"), None, 0)),
        "then method"
    );
    assert!(
        key(&gm(Some("pkg.S"), None, 2)) < key(&gm(Some("pkg.S"), None, 1)),
        "then headers"
    );
    assert!(
        key(&gm(None, None, 0)) > key(&gm(Some("a.B"), None, 0)),
        "a match-all rule is last"
    );
}

// GatewayClass: an unresolvable parametersRef is Accepted=False/InvalidParameters, and its
// Gateways are not served.
#[test]
fn gateway_class_with_invalid_parameters() {
    let c = run(&format!(
        "{}{GATEWAY}",
        "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gw}
spec:
  controllerName: gw.dev/gateway
  parametersRef: {group: example.com, kind: Params, name: p}
---
"
    ));
    let Some(crate::status::ObjectStatus::GatewayClass(s)) =
        c.status.get(Kind::GatewayClass, &ObjectKey::new("", "gw"))
    else {
        panic!("no class status")
    };
    assert_eq!(s.conditions[0].reason, "InvalidParameters");
    assert!(c.table.gateways.is_empty());
}

// AttachedRoutes "represents the total number of Routes that have been successfully attached":
// a route whose two parentRefs select the same listener counts once there.
#[test]
fn a_route_counts_once_per_listener() {
    let c = run(&format!(
        "{GATEWAY}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: twice, namespace: default}}
spec:
  parentRefs: [{{name: edge, sectionName: other}}, {{name: edge, port: 8080}}]
"
    ));
    let g = c
        .status
        .gateway(&ObjectKey::new("default", "edge"))
        .expect("status");
    assert_eq!(g.listeners[1].attached_routes, 1);
    assert_eq!(c.table.gateways[0].listeners[1].http.len(), 1);
    let route = c
        .status
        .route(Kind::HttpRoute, &ObjectKey::new("default", "twice"))
        .expect("route");
    assert_eq!(route.parents.len(), 2, "one status entry per parentRef");
}

// GRPCRoute: "If a Route (A) of type HTTPRoute or GRPCRoute is attached to a Listener and that
// listener already has another Route (B) of the other type attached and the intersection of the
// hostnames of A and B is non-empty, then the implementation MUST accept exactly one of these two
// routes ... The oldest Route based on creation timestamp."
#[test]
fn http_and_grpc_routes_sharing_hostnames_keep_the_oldest() {
    let c = run(&format!(
        "{GATEWAY}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: default, creationTimestamp: '2024-01-02T00:00:00Z'}}
spec:
  parentRefs: [{{name: edge, sectionName: other}}]
  hostnames: [api.example.com]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {{name: rpc, namespace: default, creationTimestamp: '2024-01-01T00:00:00Z'}}
spec:
  parentRefs: [{{name: edge, sectionName: other}}]
  hostnames: ['*.example.com']
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: elsewhere, namespace: default, creationTimestamp: '2024-01-03T00:00:00Z'}}
spec:
  parentRefs: [{{name: edge, sectionName: other}}]
  hostnames: [www.example.org]
"
    ));
    let web = route_condition(&c, Kind::HttpRoute, "default", "web", "Accepted");
    assert_eq!(
        (web.status, &*web.reason),
        (ConditionStatus::False, "Conflicted")
    );
    assert!(route_condition(&c, Kind::GrpcRoute, "default", "rpc", "Accepted").is_true("Accepted"));
    assert!(
        route_condition(&c, Kind::HttpRoute, "default", "elsewhere", "Accepted")
            .is_true("Accepted")
    );
    let listener = &c.table.gateways[0].listeners[1];
    let http: Vec<_> = listener
        .http
        .iter()
        .map(|e| e.route.key.name.as_str())
        .collect();
    assert_eq!(http, ["elsewhere"]);
    assert_eq!(listener.grpc.len(), 1);
}

/// A `kubernetes.io/tls` Secret named `name` whose certificate is valid from `from` to `until`
/// (years).
fn dated_secret(name: &str, from: i32, until: i32) -> String {
    use base64::Engine as _;
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![format!("{name}.example.com")]).unwrap();
    params.not_before = rcgen::date_time_ymd(from, 1, 1);
    params.not_after = rcgen::date_time_ymd(until, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "
apiVersion: v1
kind: Secret
metadata: {{name: {name}, namespace: default}}
type: kubernetes.io/tls
data: {{tls.crt: {}, tls.key: {}}}
",
        b64(cert.pem()),
        b64(key.serialize_pem())
    )
}

fn run_at(yaml: &str, now: &str) -> Compiled {
    let mut res = Resources::new();
    let loaded = load::parse("test.yaml", &format!("{CLASS}\n---\n{yaml}"));
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    res.extend(loaded.objects);
    let mut options = CompileOptions::new("gw.dev/gateway");
    options.now = Some(now.parse().unwrap());
    compile(&res, &options)
}

// Listener ResolvedRefs: "InvalidCertificateRef ... the referenced Secret ... is malformed".
// An expired (or not yet valid) certificate cannot complete a handshake: it is reported the same
// way and not served; the listener keeps serving with its other certificates.
#[test]
fn expired_certificates_are_invalid_certificate_refs() {
    let gateway = |refs: &str| {
        format!(
            "
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: default}}
spec:
  gatewayClassName: gw
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    tls: {{certificateRefs: [{refs}]}}
"
        )
    };
    let old = dated_secret("old", 2020, 2021);
    let current = dated_secret("current", 2020, 2040);
    let future = dated_secret("future", 2035, 2040);

    // Only an expired certificate: not programmed, and the message says when it expired.
    let c = run_at(
        &format!("{}\n---\n{old}", gateway("{name: old}")),
        "2026-06-01T00:00:00Z",
    );
    let resolved = listener_condition(&c, "edge", "https", "ResolvedRefs");
    assert_eq!(resolved.status, ConditionStatus::False);
    assert_eq!(resolved.reason, "InvalidCertificateRef");
    assert!(
        resolved.message.contains("expired at 2021-01-01"),
        "{}",
        resolved.message
    );
    assert_eq!(
        listener_condition(&c, "edge", "https", "Programmed").status,
        ConditionStatus::False
    );
    assert!(
        c.table.gateways.is_empty()
            || c.table.gateways[0]
                .listeners
                .iter()
                .all(|l| l.tls.as_ref().is_none_or(|t| t.certificates.is_empty()))
    );

    // Expired, current and not-yet-valid together: only the current one is served, the listener
    // stays programmed, and the compile says to look again when "future" becomes valid.
    let c = run_at(
        &format!(
            "{}\n---\n{old}\n---\n{current}\n---\n{future}",
            gateway("{name: old}, {name: current}, {name: future}")
        ),
        "2026-06-01T00:00:00Z",
    );
    assert_eq!(
        listener_condition(&c, "edge", "https", "ResolvedRefs").reason,
        "InvalidCertificateRef"
    );
    assert_eq!(
        listener_condition(&c, "edge", "https", "Programmed").status,
        ConditionStatus::True
    );
    let served: Vec<String> = c.table.gateways[0].listeners[0]
        .tls
        .as_ref()
        .unwrap()
        .certificates
        .iter()
        .map(|e| e.secret.name.clone())
        .collect();
    assert_eq!(served, ["current"]);
    assert_eq!(
        c.refresh_at.unwrap(),
        "2035-01-01T00:00:00Z".parse::<jiff::Timestamp>().unwrap()
    );

    // Without a clock, validity is not checked: the output depends on the input alone.
    let c = run(&format!("{}\n---\n{old}", gateway("{name: old}")));
    assert_eq!(
        listener_condition(&c, "edge", "https", "ResolvedRefs").status,
        ConditionStatus::True
    );
    assert!(c.refresh_at.is_none());
}

fn x_status(c: &Compiled, name: &str) -> crate::status::RouteStatus {
    let entry = c
        .status
        .entries
        .iter()
        .find(|e| e.kind == Kind::XBackend && e.key.name == name)
        .unwrap_or_else(|| panic!("no status for XBackend {name}"));
    match &entry.status {
        crate::status::ObjectStatus::Backend(s) => s.clone(),
        other => panic!("unexpected status {other:?}"),
    }
}

fn xbackend_setup(xbackends: &str, backend_ref: &str) -> Compiled {
    run(&format!(
        "
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: default}}
spec:
  gatewayClassName: gw
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: default}}
spec:
  parentRefs: [{{name: edge}}]
  rules: [{{backendRefs: [{backend_ref}]}}]
---
{xbackends}"
    ))
}

// XBackend (gateway.networking.x-k8s.io): "ExternalHostname specifies the configuration for an
// ExternalHostname backend"; a route refers to it by group and kind, and the data plane gets the
// name, port and protocol to resolve and connect to.
#[test]
fn xbackend_external_hostname_is_a_backend() {
    let c = xbackend_setup(
        "
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackend
metadata: {name: api, namespace: default}
spec:
  type: ExternalHostname
  externalHostname: {hostname: api.example.com}
  port: {port: 443}
  protocol: HTTP2
  tls: {mode: ServerOnly}
",
        "{group: gateway.networking.x-k8s.io, kind: XBackend, name: api}",
    );
    assert_eq!(
        route_condition(&c, Kind::HttpRoute, "default", "r", "ResolvedRefs").status,
        ConditionStatus::True
    );
    let rule = &c.table.gateways[0].listeners[0].http[0];
    let crate::table::Backend::External(b) = &rule.action.backends[0].backend else {
        panic!("not an external backend: {:?}", rule.action.backends);
    };
    assert_eq!((b.hostname.as_str(), b.port), ("api.example.com", 443));
    assert_eq!(b.app_protocol, crate::table::AppProtocol::H2c);
    // "ExternalHostname backends SHOULD have TLS configured": ServerOnly without a validation
    // block verifies the external name against the platform's roots.
    let tls = b.tls.as_ref().unwrap();
    assert!(tls.system_roots);
    assert_eq!(tls.hostname, "api.example.com");
    let s = x_status(&c, "api");
    assert_eq!(s.parents.len(), 1);
    assert_eq!(s.parents[0].parent_ref.name, "edge");
    assert!(
        s.parents[0]
            .conditions
            .iter()
            .all(|c| c.status == ConditionStatus::True)
    );
}

// XBackend CRD: "Hostname specifies the FQDN used to reach this backend. IP addresses are not
// allowed in this field"; "clientCertificateRef must be set if and only if mode is
// ClientAndServer". An invalid XBackend is Accepted=False (Invalid) and the route that uses it
// has ResolvedRefs=False; its share of requests is answered 500.
#[test]
fn invalid_xbackends_are_reported_on_both_sides() {
    for spec in [
        "{type: ExternalHostname, externalHostname: {hostname: 10.0.0.1}, port: {port: 80}}",
        "{type: ExternalHostname, externalHostname: {hostname: web.default.svc.cluster.local}, port: {port: 80}}",
        "{type: ExternalHostname, port: {port: 80}}",
        "{type: ExternalHostname, externalHostname: {hostname: a.example.com}, port: {port: 80}, tls: {mode: ServerOnly, clientCertificateRef: {name: c}}}",
    ] {
        let c = xbackend_setup(
            &format!(
                "apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackend
metadata: {{name: bad, namespace: default}}
spec: {spec}
"
            ),
            "{group: gateway.networking.x-k8s.io, kind: XBackend, name: bad}",
        );
        let s = x_status(&c, "bad");
        let accepted = find(&s.parents[0].conditions, "Accepted").unwrap();
        assert_eq!(
            (accepted.status, &*accepted.reason),
            (ConditionStatus::False, "Invalid"),
            "{spec}"
        );
        let route = route_condition(&c, Kind::HttpRoute, "default", "r", "ResolvedRefs");
        assert_eq!(route.status, ConditionStatus::False, "{spec}");
        assert!(
            route.message.contains("XBackend default/bad is not usable"),
            "{}",
            route.message
        );
        let rule = &c.table.gateways[0].listeners[0].http[0];
        assert!(matches!(
            rule.action.backends[0].backend,
            crate::table::Backend::Invalid { .. }
        ));
    }
}

// Cross-namespace backendRefs need a ReferenceGrant (HTTPRoute ResolvedRefs RefNotPermitted);
// a TCP XBackend cannot serve an HTTP route (UnsupportedProtocol); mutual TLS without its
// client certificate is not usable (XBackend ResolvedRefs InvalidClientCertificateRef).
#[test]
fn xbackend_references() {
    let other_ns = "
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackend
metadata: {name: api, namespace: other}
spec: {type: ExternalHostname, externalHostname: {hostname: api.example.com}, port: {port: 80}}
";
    let c = xbackend_setup(
        other_ns,
        "{group: gateway.networking.x-k8s.io, kind: XBackend, name: api, namespace: other}",
    );
    assert_eq!(
        route_condition(&c, Kind::HttpRoute, "default", "r", "ResolvedRefs").reason,
        "RefNotPermitted"
    );
    let granted = format!(
        "{other_ns}---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {{name: g, namespace: other}}
spec:
  from: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}}]
  to: [{{group: gateway.networking.x-k8s.io, kind: XBackend}}]
"
    );
    let c = xbackend_setup(
        &granted,
        "{group: gateway.networking.x-k8s.io, kind: XBackend, name: api, namespace: other}",
    );
    assert_eq!(
        route_condition(&c, Kind::HttpRoute, "default", "r", "ResolvedRefs").status,
        ConditionStatus::True
    );

    let c = xbackend_setup(
        "apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackend
metadata: {name: raw, namespace: default}
spec: {type: ExternalHostname, externalHostname: {hostname: db.example.com}, port: {port: 5432}, protocol: TCP}
",
        "{group: gateway.networking.x-k8s.io, kind: XBackend, name: raw}",
    );
    assert_eq!(
        route_condition(&c, Kind::HttpRoute, "default", "r", "ResolvedRefs").reason,
        "UnsupportedProtocol"
    );

    let c = xbackend_setup(
        "apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackend
metadata: {name: mtls, namespace: default}
spec:
  type: ExternalHostname
  externalHostname: {hostname: api.example.com}
  port: {port: 443}
  tls: {mode: ClientAndServer, clientCertificateRef: {name: missing}}
",
        "{group: gateway.networking.x-k8s.io, kind: XBackend, name: mtls}",
    );
    let s = x_status(&c, "mtls");
    let resolved = find(&s.parents[0].conditions, "ResolvedRefs").unwrap();
    assert_eq!(resolved.reason, "InvalidClientCertificateRef");
    assert_eq!(
        route_condition(&c, Kind::HttpRoute, "default", "r", "ResolvedRefs").status,
        ConditionStatus::False
    );
}

// HTTPRoute spec: "precedence must be given to the match having: Exact path match. Prefix path
// match with largest number of characters. Method match. Largest number of header matches.
// Largest number of query param matches." Then the oldest route, then namespace/name, then
// rule and match order. The table's order is computed without building an `HttpMatchKey` per
// match: it must be exactly the order of those keys.
#[test]
fn table_precedence_order_is_the_order_of_the_match_keys() {
    let route = |name: &str, created: &str, rules: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: default{created}}}\nspec:\n  parentRefs: [{{name: edge}}]\n  rules:\n{rules}\n"
        )
    };
    let rules = "  - matches:
    - {path: {type: PathPrefix, value: /a}}
    - {path: {type: PathPrefix, value: /a}, method: GET}
    - {path: {type: Exact, value: /a}}
    - {path: {type: RegularExpression, value: '/a.*'}}
  - matches:
    - {path: {type: PathPrefix, value: /a}, headers: [{name: x, value: '1'}]}
    - {path: {type: PathPrefix, value: /a}, queryParams: [{name: q, value: '1'}]}
    - {path: {type: PathPrefix, value: /abc}}
  - matches:
    - {path: {type: RegularExpression, value: '/a.*'}}";
    let yaml = format!(
        "{GATEWAY}{}{}{}{}",
        route("b", ", creationTimestamp: '2024-01-01T00:00:00Z'", rules),
        route("a", ", creationTimestamp: '2024-01-01T00:00:00Z'", rules),
        route("old", ", creationTimestamp: '2023-01-01T00:00:00Z'", rules),
        route("none", "", rules),
    );
    let c = run(&yaml);
    let l = &c.table.gateways[0].listeners[0];
    let mut by_key: Vec<(usize, usize)> = l
        .http
        .iter()
        .enumerate()
        .flat_map(|(e, entry)| (0..entry.matches.len()).map(move |m| (e, m)))
        .collect();
    by_key.sort_by_cached_key(|&(e, m)| {
        HttpMatchKey::new(
            &l.http[e].matches[m],
            &l.http[e].route,
            l.http[e].rule_index,
            m,
        )
    });
    assert_eq!(l.http_order.len(), 4 * 8);
    assert_eq!(l.http_order, by_key);

    // Entries out of route order (the table never places them so, but the order must not
    // depend on it): the same order of keys.
    let reversed: Vec<_> = l.http.iter().rev().cloned().collect();
    let mut by_key: Vec<(usize, usize)> = reversed
        .iter()
        .enumerate()
        .flat_map(|(e, entry)| (0..entry.matches.len()).map(move |m| (e, m)))
        .collect();
    by_key.sort_by_cached_key(|&(e, m)| {
        let entry = &reversed[e];
        HttpMatchKey::new(&entry.matches[m], &entry.route, entry.rule_index, m)
    });
    assert_eq!(crate::table::http_precedence(&reversed), by_key);
}

// Not a spec rule: the compiled table is kept for the life of a configuration, so its lists
// hold what the route says and no growth headroom (a list grown by pushing has room for four:
// 936 unused bytes for a rule's one backend, 312 for its one match).
#[test]
fn compiled_lists_are_sized_to_the_route() {
    let c = run(&format!(
        "{GATEWAY}
---
apiVersion: v1
kind: Service
metadata: {{name: svc, namespace: default}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: svc-1, namespace: default, labels: {{kubernetes.io/service-name: svc}}}}
addressType: IPv4
ports: [{{name: http, port: 3000}}]
endpoints: [{{addresses: [127.0.0.1]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: one, namespace: default}}
spec:
  parentRefs: [{{name: edge, sectionName: other}}]
  hostnames: [http.example]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /a}}, headers: [{{name: x, value: y}}]}}]
    backendRefs: [{{name: svc, port: 80}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {{name: two, namespace: default}}
spec:
  parentRefs: [{{name: edge, sectionName: other}}]
  hostnames: [grpc.example]
  rules:
  - matches: [{{method: {{service: a.B}}}}]
    backendRefs: [{{name: svc, port: 80}}]
"
    ));
    let l = &c.table.gateways[0].listeners[1];
    let http = &l.http[0];
    assert_eq!(http.matches.capacity(), 1);
    assert_eq!(http.matches[0].headers.capacity(), 1);
    assert_eq!(http.action.backends.capacity(), 1);
    let crate::table::Backend::Service(svc) = &http.action.backends[0].backend else {
        panic!("a Service backend: {:?}", http.action.backends[0].backend);
    };
    assert_eq!(svc.endpoints.len(), 1);
    assert_eq!(svc.endpoints.capacity(), 1);
    let grpc = &l.grpc[0];
    assert_eq!(grpc.matches.capacity(), 1);
    assert_eq!(grpc.action.backends.capacity(), 1);
}
