//! Gateway API routing as a tower `Service`.
//!
//! # From resources to responses
//!
//! ```text
//! gw_model::Resources --compile()--> RouteTable --Routes::build--> Routes --Router::swap--> Router
//!                                    (validated,    (indexes, regexes,  (tower Service:
//!                                     pure data)     compiled filters)   filters, backends)
//! ```
//!
//! - [`gw_model`] validates resources and compiles a [`RouteTable`](gw_model::table::RouteTable):
//!   every listener with its attached rules in spec precedence order.
//! - [`Routes::build`] indexes the table once: by Gateway, port, listener hostname, route
//!   hostname, then path (see [`index`] for the exact matching rules). Building never fails.
//!   On a reload, [`Routes::rebuild`] reuses the built rules (filters, backends and their
//!   state) of the previous `Routes` whose table entries did not change.
//! - [`Routes::resolve`] is the pure, synchronous matching function: which listener, route and
//!   rule a request goes to, or why none ([`NotFound`]).
//! - [`Routes::explain`] tells why: the listener, route and rule a request goes to, and why
//!   every other candidate did not get it (for admin endpoints and CLI tools).
//! - [`Router`] is the `tower::Service`: it resolves each request against the current `Routes`
//!   (swapped atomically with [`Router::swap`]), applies filters, picks a backend and forwards
//!   (see [`service`] for the forwarding rules).
//!
//! ```
//! use gw_router::gw_model::{self, CompileOptions, resources::{ObjectKey, Resources}};
//! use gw_router::{Resolution, Routes};
//!
//! let yaml = r#"
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
//!   listeners: [{name: http, port: 8080, protocol: HTTP}]
//! ---
//! apiVersion: gateway.networking.k8s.io/v1
//! kind: HTTPRoute
//! metadata: {name: web, namespace: default}
//! spec:
//!   parentRefs: [{name: edge}]
//!   hostnames: [shop.example.com]
//!   rules:
//!   - matches: [{path: {type: PathPrefix, value: /cart}}]
//!     backendRefs: [{name: cart, port: 80}]
//! "#;
//! let mut resources = Resources::new();
//! resources.extend(gw_model::load::parse("demo.yaml", yaml).objects);
//! let compiled = gw_model::compile(&resources, &CompileOptions::new("gw.dev/gateway"));
//! let routes = Routes::build(&compiled.table);
//!
//! let gateway = ObjectKey::new("default", "edge");
//! let req = http::Request::get("/cart/items")
//!     .header("host", "Shop.Example.com:8080")
//!     .body(())
//!     .unwrap();
//! let Resolution::Matched(m) = routes.resolve(&gateway, 8080, &req) else {
//!     panic!("expected a match");
//! };
//! assert_eq!(m.listener().name(), "http");
//! assert_eq!(m.rule().route().key, ObjectKey::new("default", "web"));
//! assert_eq!(m.rule().rule_index(), 0);
//!
//! let other = http::Request::get("/cart").header("host", "other.example.com").body(()).unwrap();
//! assert!(matches!(routes.resolve(&gateway, 8080, &other), Resolution::NotFound(_)));
//! ```
//!
//! Rules with a TrafficPolicy (the table's [`RulePolicy`](gw_model::table::RulePolicy)) get
//! their gw-policy layers built once in [`Routes::build`] and run them before filters and
//! backends (see [`policy`]); compile with [`policy_validator`] so that gw-model reports a
//! policy the router cannot build as `Invalid`.
//!
//! The [`Router`] first checks the request's host and normalizes its path
//! ([`normalize`]): the canonical path is the one matched and forwarded. [`Routes::resolve`]
//! matches the path as given; call [`normalize::normalize_path`] first when using it alone.
//!
//! Every response of the [`Router`] carries a [`RouteInfo`] extension (listener, route, rule,
//! backend, upstream time, attempts, trace context) for access logs and metrics; requests
//! continue or start a W3C trace ([`trace`]).
//!
//! To serve, insert an [`Incoming`] extension into each request and call the [`Router`]
//! (`Router::new(RouterConfig::default())`, then `router.swap(routes)`), for example from a
//! hyper server or as an axum fallback service.
//!
//! `ExternalAuth` filters (GEP-1494) ask their auth service over HTTP or the Envoy
//! `ext_authz` gRPC protocol with gw-policy's [`ext_authz`](gw_policy::ext_authz), through the
//! router's backend client; see [`service`] for the rules (denials pass through as the auth
//! service sent them; an unreachable or slow auth service fails closed with 403).
//!
//! # Not supported yet
//!

#![forbid(unsafe_code)]

mod backend;
mod backend_tls;
mod body;
pub mod dns;
pub mod filters;
mod incoming;
pub mod index;
mod info;
pub mod l4;
pub mod normalize;
pub mod policy;
mod resilience;
pub mod service;
pub mod trace;

pub use gw_model;

pub use crate::body::{Body, BoxError};
pub use crate::filters::{DirectResponse, RequestEffects};
pub use crate::incoming::{Incoming, Scheme, tls_peer};
pub use crate::index::{
    CandidateExplanation, ExplainRequest, Explanation, Listener, ListenerExplanation, Matched,
    Misdirected, NotFound, Outcome, RequestView, Resolution, RouteKind, RouteMatch, Routes, Rule,
    UnattachedRoute, Verdict, is_grpc,
};
pub use crate::info::{RouteInfo, Upstream};
pub use crate::policy::policy_validator;
pub use crate::service::{ForwardError, ResponseFuture, Router, RouterConfig, UpstreamConnections};
pub use gw_policy::outlier::{OutlierConfig, OutlierError};
pub use gw_policy::session::SessionKey;
