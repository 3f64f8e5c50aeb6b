//! [`Compiler`]: compiling again with the routes a change does not touch reused gives exactly
//! what [`compile`] gives for the same resources.

use super::{Changes, Compiler, compile};
use crate::resources::{Kind, ObjectKey, Resources};
use crate::table::{HttpRouteEntry, Shared};
use crate::{CompileOptions, load};

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
  listeners:
  - {name: web, port: 80, protocol: HTTP, hostname: '*.example.com'}
  - {name: any, port: 80, protocol: HTTP}
  - {name: tcp, port: 9000, protocol: TCP}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: default}
spec: {ports: [{name: http, port: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: echo-1, namespace: default, labels: {kubernetes.io/service-name: echo}}
addressType: IPv4
ports: [{name: http, port: 3000}]
endpoints: [{addresses: [127.0.0.2]}]
---
apiVersion: v1
kind: Service
metadata: {name: other, namespace: apps}
spec: {ports: [{port: 8080}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a, namespace: default, creationTimestamp: '2024-01-01T00:00:00Z'}
spec:
  parentRefs: [{name: edge}]
  hostnames: [a.example.com, a.test]
  rules:
  - matches: [{path: {type: PathPrefix, value: /a}}]
    backendRefs: [{name: echo, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cross, namespace: default, creationTimestamp: '2024-01-02T00:00:00Z'}
spec:
  parentRefs: [{name: edge, sectionName: any}]
  rules: [{backendRefs: [{name: other, namespace: apps, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: rpc, namespace: default, creationTimestamp: '2024-01-03T00:00:00Z'}
spec:
  parentRefs: [{name: edge, sectionName: web}]
  hostnames: [rpc.example.com]
  rules: [{backendRefs: [{name: echo, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: db, namespace: default}
spec:
  parentRefs: [{name: edge, sectionName: tcp}]
  rules: [{backendRefs: [{name: echo, port: 8080}]}]
---
apiVersion: policy.gw.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: limit, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: a}]
  default: {rateLimit: {requests: 10, unit: Minute}}
---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: {name: budget, namespace: default}
spec:
  targetRefs: [{group: '', kind: Service, name: echo}]
  retryConstraint: {}
";

/// One step: objects inserted or replaced (YAML), objects removed.
struct Step {
    upsert: &'static str,
    remove: &'static [(Kind, &'static str, &'static str)],
}

const STEPS: &[Step] = &[
    // A route's path changes.
    Step {
        upsert: "
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a, namespace: default, creationTimestamp: '2024-01-01T00:00:00Z'}
spec:
  parentRefs: [{name: edge}]
  hostnames: [a.example.com, a.test]
  rules:
  - matches: [{path: {type: PathPrefix, value: /b}}]
    backendRefs: [{name: echo, port: 8080}]
",
        remove: &[],
    },
    // A new HTTPRoute conflicts with the GRPCRoute's hostname, and is older: the GRPCRoute
    // loses (its status changes though the GRPCRoute did not).
    Step {
        upsert: "
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: old, namespace: default, creationTimestamp: '2023-01-01T00:00:00Z'}
spec:
  parentRefs: [{name: edge, sectionName: web}]
  hostnames: [rpc.example.com]
  rules: [{backendRefs: [{name: echo, port: 8080}]}]
",
        remove: &[],
    },
    // The ReferenceGrant appears: the cross-namespace backend resolves.
    Step {
        upsert: "
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: g, namespace: apps}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}]
  to: [{group: '', kind: Service}]
",
        remove: &[],
    },
    // The endpoints move.
    Step {
        upsert: "
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: echo-1, namespace: default, labels: {kubernetes.io/service-name: echo}}
addressType: IPv4
ports: [{name: http, port: 3000}]
endpoints: [{addresses: [127.0.0.3]}]
",
        remove: &[],
    },
    // A second EndpointSlice for the Service (the index of slices by Service changes).
    Step {
        upsert: "
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: echo-2, namespace: default, labels: {kubernetes.io/service-name: echo}}
addressType: IPv4
ports: [{name: http, port: 3000}]
endpoints: [{addresses: [127.0.0.4]}]
",
        remove: &[],
    },
    // The conflicting route goes away; the TCPRoute changes backend port.
    Step {
        upsert: "
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: db, namespace: default}
spec:
  parentRefs: [{name: edge, sectionName: tcp}]
  rules: [{backendRefs: [{name: echo, port: 9999}]}]
",
        remove: &[(Kind::HttpRoute, "default", "old")],
    },
    // The Gateway loses its wildcard listener.
    Step {
        upsert: "
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: default}
spec:
  gatewayClassName: gw
  listeners:
  - {name: any, port: 80, protocol: HTTP}
  - {name: tcp, port: 9000, protocol: TCP}
",
        remove: &[],
    },
    // The policy goes; a route is removed.
    Step {
        upsert: "",
        remove: &[
            (Kind::TrafficPolicy, "default", "limit"),
            (Kind::HttpRoute, "default", "cross"),
        ],
    },
];

fn parse(yaml: &str) -> Vec<crate::resources::Object> {
    let loaded = load::parse("test.yaml", yaml);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    loaded.objects
}

/// Applies a step; returns the objects it touched.
fn apply(res: &mut Resources, step: &Step) -> Vec<(Kind, ObjectKey)> {
    let mut touched = Vec::new();
    for (kind, ns, name) in step.remove {
        let key = ObjectKey::new(*ns, *name);
        res.remove(*kind, &key);
        touched.push((*kind, key));
    }
    for o in parse(step.upsert) {
        touched.push((o.kind(), o.key()));
        res.insert(o);
    }
    touched
}

/// BASE loaded and compiled once by a new Compiler: the options, resources, Compiler and
/// first output.
fn loaded() -> (CompileOptions, Resources, Compiler, super::Compiled) {
    let options = CompileOptions::new("gw.dev/gateway");
    let mut res = Resources::new();
    res.extend(parse(BASE));
    let mut compiler = Compiler::default();
    let first = compiler.compile(&res, &options, &Changes::All);
    (options, res, compiler, first)
}

/// The table entry of HTTPRoute `name` (default namespace) on the first listener that has it.
fn http_entry(c: &super::Compiled, name: &str) -> Option<Shared<HttpRouteEntry>> {
    c.table.gateways[0]
        .listeners
        .iter()
        .flat_map(|l| &l.http)
        .find(|e| e.route.key.name == name)
        .cloned()
}

#[test]
fn every_change_compiles_as_a_full_compile_would() {
    let (options, mut res, mut compiler, first) = loaded();
    let full = compile(&res, &options);
    assert_eq!(first.table, full.table);
    assert_eq!(first.status, full.status);
    for (i, step) in STEPS.iter().enumerate() {
        let changes = Changes::Objects(apply(&mut res, step));
        let incremental = compiler.compile(&res, &options, &changes);
        let full = compile(&res, &options);
        assert_eq!(incremental.table, full.table, "table after step {i}");
        assert_eq!(incremental.status, full.status, "status after step {i}");
        // Nothing changed: compiling again gives the same.
        let again = compiler.compile(&res, &options, &Changes::Objects(Vec::new()));
        assert_eq!(again.table, full.table, "table after step {i}, again");
    }
}

#[test]
fn routes_not_named_in_the_changes_are_reused() {
    let (options, mut res, mut compiler, first) = loaded();
    // Route a changes, but the changes do not say so: its old rules are served.
    apply(&mut res, &STEPS[0]);
    let stale = compiler.compile(&res, &options, &Changes::Objects(Vec::new()));
    assert_eq!(stale.table, first.table);
    assert_ne!(stale.table, compile(&res, &options).table);
    // Named, it is compiled again.
    let key = (Kind::HttpRoute, ObjectKey::new("default", "a"));
    let fresh = compiler.compile(&res, &options, &Changes::Objects(vec![key]));
    assert_eq!(fresh.table, compile(&res, &options).table);
}

#[test]
fn unchanged_entries_are_shared_with_the_previous_table() {
    // The data plane tells unchanged rules by their shared entries: an entry without a policy
    // on it is the same entry from one compile to the next.
    let (options, mut res, mut compiler, first) = loaded();
    let touched = apply(&mut res, &STEPS[1]);
    let second = compiler.compile(&res, &options, &Changes::Objects(touched));
    let cross = |c| http_entry(c, "cross").expect("route cross is placed");
    assert!(Shared::ptr_eq(&cross(&first), &cross(&second)));
    // Route a has a TrafficPolicy: its entry carries the policy, a copy of the cached one.
    let a = http_entry(&second, "a").expect("route a is placed");
    assert!(a.policy.is_some());
}

#[test]
fn routes_after_a_removed_route_are_reused() {
    // The Compiler walks its routes in key order: a route removed before another (a sorts
    // before cross) does not keep the later one from being reused, even when the changes do
    // not name the removed route.
    let (options, mut res, mut compiler, first) = loaded();
    let a = ObjectKey::new("default", "a");
    res.remove(Kind::HttpRoute, &a);
    // Route cross changes, but the changes do not say so: its old entry is served.
    res.extend(parse(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cross, namespace: default, creationTimestamp: '2024-01-02T00:00:00Z'}
spec:
  parentRefs: [{name: edge, sectionName: any}]
  rules: [{matches: [{path: {value: /changed}}], backendRefs: [{name: other, namespace: apps, port: 8080}]}]
",
    ));
    let second = compiler.compile(&res, &options, &Changes::Objects(Vec::new()));
    let cross = |c| http_entry(c, "cross").expect("route cross is placed");
    assert!(Shared::ptr_eq(&cross(&first), &cross(&second)));
    assert_ne!(cross(&second), cross(&compile(&res, &options)));
    assert!(http_entry(&second, "a").is_none(), "route a is gone");
}

/// An EndpointSlice with one endpoint on port 3000 (`http`), labelled with `service`.
fn slice(namespace: &str, name: &str, service: Option<&str>, addr: &str) -> String {
    let labels = service.map_or(String::new(), |s| {
        format!(", labels: {{kubernetes.io/service-name: {s}}}")
    });
    format!(
        "---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}, namespace: {namespace}{labels}}}
addressType: IPv4
ports: [{{name: http, port: 3000}}]
endpoints: [{{addresses: [{addr}]}}]
"
    )
}

fn addrs(list: &[&str]) -> Vec<std::net::SocketAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

#[test]
fn kept_slice_index_finds_each_services_slices() {
    use super::refs::{Lookup, SliceIndex};
    // One Service name in two namespaces, a Service with two slices, a slice without the
    // Service label.
    let slices = [
        slice("a", "web-1", Some("web"), "127.0.0.11"),
        slice("a", "web-2", Some("web"), "127.0.0.12"),
        slice("b", "web-1", Some("web"), "127.0.0.21"),
        slice("a", "loose", None, "127.0.0.99"),
    ];
    let mut res = Resources::new();
    res.extend(parse(&slices.concat()));
    let index = SliceIndex::new(&res);
    let kept = Lookup::with_slices(&res, &index);
    let fresh = Lookup::new(&res);
    let web_a = ObjectKey::new("a", "web");
    let web_b = ObjectKey::new("b", "web");
    let loose = ObjectKey::new("a", "loose");
    assert_eq!(
        kept.endpoints(&web_a, "http"),
        addrs(&["127.0.0.11:3000", "127.0.0.12:3000"])
    );
    assert_eq!(kept.endpoints(&web_b, "http"), addrs(&["127.0.0.21:3000"]));
    // A slice without the label belongs to no Service.
    assert!(kept.endpoints(&loose, "http").is_empty());
    for key in [&web_a, &web_b, &loose] {
        assert_eq!(kept.endpoints(key, "http"), fresh.endpoints(key, "http"));
    }
    // An index of other resources (a slice more) is not used: the new slice is found.
    res.extend(parse(&slice("b", "web-3", Some("web"), "127.0.0.22")));
    let stale = Lookup::with_slices(&res, &index);
    assert_eq!(
        stale.endpoints(&web_b, "http"),
        addrs(&["127.0.0.21:3000", "127.0.0.22:3000"])
    );
}
