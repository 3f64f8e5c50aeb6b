//! Pure Gateway API semantics: Kubernetes objects in, a routing table and every object's status
//! out.
//!
//! gw-model has no I/O and no async runtime. It is the part of gw that decides what the Gateway
//! API means, so every rule is a plain function with unit tests that quote the spec:
//!
//! 1. [`load`] parses manifests as `kubectl apply -f` takes them (multi-document YAML, JSON,
//!    `List`s) into the typed, lean [`resources`], applying CRD defaults. A malformed document
//!    is an error naming source, document and field; unknown fields are warnings.
//! 2. [`compile()`] takes a [`resources::Resources`] set and returns a [`Compiled`]: the
//!    [`table::RouteTable`] a data plane serves (listeners, attached routes in precedence order,
//!    resolved backends with their endpoints), and a [`status::StatusReport`] with the conditions
//!    of every GatewayClass, Gateway, ListenerSet, route, BackendTLSPolicy and TrafficPolicy gw
//!    manages.
//! 3. A [`Compiler`] compiles again and again with the same output as [`compile()`], compiling
//!    again only the routes a change names ([`Changes`]); unchanged rules keep their table
//!    entries, so a data plane can tell them apart by pointer. [`load::parse_document`] is the
//!    same per document, for reloads that parse only the documents whose text changed.
//!
//! ```
//! use gw_model::{CompileOptions, compile, load, resources::Resources};
//!
//! let manifests = r#"
//! apiVersion: gateway.networking.k8s.io/v1
//! kind: GatewayClass
//! metadata: {name: gw}
//! spec: {controllerName: gw.dev/gateway}
//! ---
//! apiVersion: gateway.networking.k8s.io/v1
//! kind: Gateway
//! metadata: {name: edge, namespace: default}
//! spec:
//!   gatewayClassName: gw
//!   listeners: [{name: http, port: 8080, protocol: HTTP, hostname: "*.example.com"}]
//! ---
//! apiVersion: gateway.networking.k8s.io/v1
//! kind: HTTPRoute
//! metadata: {name: shop, namespace: default}
//! spec:
//!   parentRefs: [{name: edge}]
//!   hostnames: [shop.example.org]
//! "#;
//! let loaded = load::parse("demo.yaml", manifests);
//! assert!(loaded.errors.is_empty());
//! let mut resources = Resources::new();
//! resources.extend(loaded.objects);
//!
//! let compiled = compile(&resources, &CompileOptions::new("gw.dev/gateway"));
//! for entry in &compiled.status.entries {
//!     println!("{} {}: {}", entry.kind, entry.key, serde_json::to_string(&entry.status).unwrap());
//! }
//! // shop.example.org does not intersect *.example.com: the route is not accepted, with the
//! // reason the spec names.
//! let list = compiled.status.to_list();
//! let route = list["items"].as_array().unwrap().iter().find(|i| i["kind"] == "HTTPRoute").unwrap();
//! assert_eq!(route["status"]["parents"][0]["conditions"][0]["reason"], "NoMatchingListenerHostname");
//! ```
#![forbid(unsafe_code)]

pub mod compile;
#[cfg(feature = "schemars")]
pub mod crd;
pub mod load;
pub mod resources;
pub mod status;
pub mod table;

pub use compile::{Changes, CompileOptions, Compiled, Compiler, DEFAULT_CONTROLLER_NAME, compile};
