//! [`Routes`]: the compiled table indexed for matching, and [`Routes::resolve`], the pure
//! matching function.
//!
//! # How a request is matched
//!
//! 1. **Gateway and port**: the [`Incoming`](crate::Incoming) extension names them.
//! 2. **Listener** (GatewayHTTPListenerIsolation): among the HTTP/HTTPS listeners on the port,
//!    the one whose hostname is the most specific match for the request host (exact, then
//!    wildcards with more labels first, then listeners without a hostname). A request is routed
//!    only through routes attached to that one listener.
//! 3. **Route hostname group**: within the listener, rules are grouped by their effective
//!    hostnames (the route's hostnames intersected with the listener's). The most specific group
//!    matching the host is chosen (exact > longer wildcard > shorter wildcard > rules with no
//!    hostname) and the request is matched **only within that group**: if no rule of the group
//!    matches, the answer is 404 even when a less specific group has a matching rule. This is
//!    how Envoy's virtual hosts behave. HTTPRoute `hostnames`: "In the event that multiple
//!    HTTPRoutes specify intersecting hostnames ... precedence must be given to rules from the
//!    HTTPRoute with the largest number of: Characters in a matching non-wildcard hostname.
//!    Characters in a matching hostname."
//! 4. **gRPC**: a request whose `content-type` starts with `application/grpc` is matched against
//!    the group's GRPCRoute rules first (path `/service/method`); when none matches, against the
//!    HTTPRoute rules.
//! 5. **Rules**: candidates come from indexes (an exact-path map, a segment trie for
//!    PathPrefix, the regex list; service/method maps for gRPC) and are checked in the
//!    table's precedence order (`http_order` / `grpc_order`) for method, headers and query
//!    parameters; the first full match wins.
//!
//! Match semantics: PathPrefix matches whole path elements (`/abc` matches `/abc`, `/abc/` and
//! `/abc/def`, not `/abcd`); Exact compares the path without the query; paths are compared as
//! given: the [`Router`](crate::Router) normalizes them first ([`crate::normalize`]). Header
//! names compare case-insensitively, and a header sent several times is matched as its values
//! joined with `,` (RFC 9110 5.3; the HTTPHeaderMatch docs leave repeated headers to the
//! implementation and point to that RFC). Query parameter names compare exactly, the first
//! occurrence of a repeated parameter is matched, values are not percent-decoded. Regular
//! expressions (paths, headers, query, gRPC) must match the whole value.

mod cond;
mod explain;
mod host;
mod misdirected;
mod path;

use std::borrow::Cow;
use std::sync::Arc;

use gw_model::resources::{ObjectKey, PathMatchType, StringMatchType};
use gw_model::table::{
    CertificatePair, GrpcMatch, GrpcMatchKey, GrpcRouteEntry, HttpMatch, HttpMatchKey,
    HttpRouteEntry, ListenerOwner, ListenerTable, Protocol, RouteOrder, RouteTable, Shared,
};
use http::{HeaderMap, Method, Uri};

use self::cond::{HeaderCond, MethodCond, QueryCond, ValueCond, full_regex};
pub use self::explain::{
    CandidateExplanation, ExplainRequest, Explanation, ListenerExplanation, Outcome,
    UnattachedRoute, Verdict,
};
use self::host::HostIndex;
pub(crate) use self::host::request_host;
use self::misdirected::Selection;
use self::path::{GrpcGroup, HttpGroup};
use crate::backend::{BackendTarget, Backends, BuildCtx};
use crate::backend_tls::TlsKey;
use crate::filters::Filter;
use crate::policy::{PolicyCache, PolicyStack};

/// The routing table of every Gateway, indexed for matching. Built once per configuration
/// with [`Routes::build`], then shared read-only (the [`Router`](crate::Router) swaps whole
/// `Routes` atomically).
#[derive(Debug, Default)]
pub struct Routes {
    gateways: hashbrown::HashMap<ObjectKey, GatewayRoutes>,
}

#[derive(Debug, Default)]
struct GatewayRoutes {
    ports: hashbrown::HashMap<u16, PortRoutes>,
    /// The Gateway's backend client certificate the rules were built with: a later build
    /// reuses them only with the same one.
    client_cert: Option<CertificatePair>,
}

#[derive(Debug, Default)]
struct PortRoutes {
    listeners: Vec<Listener>,
    by_host: HostIndex<usize>,
}

/// An HTTP or HTTPS listener with its rules.
#[derive(Debug)]
pub struct Listener {
    name: String,
    /// `name` and the Gateway's `namespace/name`, shared with every [`RouteInfo`](crate::RouteInfo).
    name_label: Arc<str>,
    gateway_label: Arc<str>,
    owner: ListenerOwner,
    port: u16,
    protocol: Protocol,
    hostname: Option<String>,
    http: HostIndex<HttpGroup>,
    http_cands: Vec<HttpCand>,
    grpc: HostIndex<GrpcGroup>,
    grpc_cands: Vec<GrpcCand>,
    /// The rules in the order of the table's entries, for [`Routes::rebuild`].
    http_rules: Vec<Arc<Rule>>,
    grpc_rules: Vec<Arc<Rule>>,
}

impl Listener {
    /// Listener name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The Gateway or ListenerSet that defines it.
    pub fn owner(&self) -> &ListenerOwner {
        &self.owner
    }
    /// Port.
    pub fn port(&self) -> u16 {
        self.port
    }
    /// `Http` or `Https`.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }
    /// The listener's hostname, if it has one.
    pub fn hostname(&self) -> Option<&str> {
        self.hostname.as_deref()
    }
    pub(crate) fn name_label(&self) -> &Arc<str> {
        &self.name_label
    }
    pub(crate) fn gateway_label(&self) -> &Arc<str> {
        &self.gateway_label
    }
}

/// Which kind of route a rule comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteKind {
    /// HTTPRoute.
    Http,
    /// GRPCRoute.
    Grpc,
}

/// The table entry, shared with the [`RouteTable`] it was built from (not a copy).
#[derive(Debug)]
enum RuleSource {
    Http(Shared<HttpRouteEntry>),
    Grpc(Shared<GrpcRouteEntry>),
}

/// One rule of an HTTPRoute or GRPCRoute, as attached to a listener, with its compiled
/// filters and backends.
#[derive(Debug)]
pub struct Rule {
    source: RuleSource,
    /// The single PathPrefix value of the rule, for ReplacePrefixMatch.
    prefix: Option<Box<str>>,
    /// The route's `namespace/name`, and the rule's name (or index), for logs and metrics.
    route_label: Arc<str>,
    rule_label: Arc<str>,
    pub(crate) filters: Vec<Filter>,
    pub(crate) backends: Backends,
    /// The TrafficPolicy layers, when a policy applies.
    pub(crate) policy: Option<PolicyStack>,
    /// The rule's matches, compiled once (regular expressions included): every listener the
    /// rule is on, and every later index build that reuses the rule, checks these. Empty for
    /// the other kind of rule.
    http_conds: Box<[HttpConds]>,
    grpc_conds: Box<[GrpcConds]>,
}

impl Rule {
    fn http(e: &Shared<HttpRouteEntry>, ctx: BuildCtx<'_>, policies: &mut PolicyCache) -> Rule {
        let prefix = match e.matches.as_slice() {
            [m] if m.path.kind == PathMatchType::PathPrefix => Some(m.path.value.as_str().into()),
            _ => None,
        };
        Rule {
            filters: e
                .action
                .filters
                .iter()
                .map(|f| Filter::compile(f, ctx))
                .collect(),
            backends: Backends::new(&e.action.backends, ctx).with_session(
                format!("HTTPRoute/{}/{}", e.route.key, e.rule_index),
                e.action.session_persistence.as_deref(),
            ),
            prefix,
            policy: e.policy.as_deref().map(|p| policies.build(p, ctx)),
            route_label: e.route.key.to_string().into(),
            rule_label: rule_label(e.rule_name.as_deref(), e.rule_index),
            http_conds: e.matches.iter().map(HttpConds::new).collect(),
            grpc_conds: Box::default(),
            source: RuleSource::Http(e.clone()),
        }
    }

    fn grpc(e: &Shared<GrpcRouteEntry>, ctx: BuildCtx<'_>, policies: &mut PolicyCache) -> Rule {
        Rule {
            filters: e
                .action
                .filters
                .iter()
                .map(|f| Filter::compile(f, ctx))
                .collect(),
            backends: Backends::new(&e.action.backends, ctx).with_session(
                format!("GRPCRoute/{}/{}", e.route.key, e.rule_index),
                e.action.session_persistence.as_deref(),
            ),
            prefix: None,
            policy: e.policy.as_deref().map(|p| policies.build(p, ctx)),
            route_label: e.route.key.to_string().into(),
            rule_label: rule_label(e.rule_name.as_deref(), e.rule_index),
            http_conds: Box::default(),
            grpc_conds: grpc_matches_of(e).iter().map(GrpcConds::new).collect(),
            source: RuleSource::Grpc(e.clone()),
        }
    }

    /// HTTPRoute or GRPCRoute.
    pub fn kind(&self) -> RouteKind {
        match self.source {
            RuleSource::Http(_) => RouteKind::Http,
            RuleSource::Grpc(_) => RouteKind::Grpc,
        }
    }

    /// The route's order key (namespace/name and creation time).
    pub fn route(&self) -> &RouteOrder {
        match &self.source {
            RuleSource::Http(e) => &e.route,
            RuleSource::Grpc(e) => &e.route,
        }
    }

    /// Index of the rule within its route.
    pub fn rule_index(&self) -> usize {
        match &self.source {
            RuleSource::Http(e) => e.rule_index,
            RuleSource::Grpc(e) => e.rule_index,
        }
    }

    /// The rule's name, if it has one.
    pub fn rule_name(&self) -> Option<&str> {
        match &self.source {
            RuleSource::Http(e) => e.rule_name.as_deref(),
            RuleSource::Grpc(e) => e.rule_name.as_deref(),
        }
    }

    /// The route as `namespace/name` (shared: cloning it is a reference-count increment).
    pub fn route_label(&self) -> &Arc<str> {
        &self.route_label
    }

    /// The rule's name, or its index within the route when it has none (shared).
    pub fn rule_label(&self) -> &Arc<str> {
        &self.rule_label
    }

    /// The table entry of an HTTPRoute rule.
    pub fn http_entry(&self) -> Option<&HttpRouteEntry> {
        match &self.source {
            RuleSource::Http(e) => Some(e),
            RuleSource::Grpc(_) => None,
        }
    }

    /// The table entry of a GRPCRoute rule.
    pub fn grpc_entry(&self) -> Option<&GrpcRouteEntry> {
        match &self.source {
            RuleSource::Grpc(e) => Some(e),
            RuleSource::Http(_) => None,
        }
    }

    pub(crate) fn timeouts(&self) -> gw_model::table::Timeouts {
        match &self.source {
            RuleSource::Http(e) => e.action.timeouts,
            RuleSource::Grpc(e) => e.action.timeouts,
        }
    }

    pub(crate) fn retry(&self) -> Option<&gw_model::table::Retry> {
        match &self.source {
            RuleSource::Http(e) => e.action.retry.as_deref(),
            RuleSource::Grpc(e) => e.action.retry.as_deref(),
        }
    }

    pub(crate) fn prefix(&self) -> Option<&str> {
        self.prefix.as_deref()
    }
}

fn rule_label(name: Option<&str>, index: usize) -> Arc<str> {
    match name {
        Some(n) => n.into(),
        None => index.to_string().into(),
    }
}

#[derive(Debug)]
enum PathCond {
    Exact(Box<str>),
    Prefix(Box<str>),
    Regex(Option<regex::Regex>),
}

impl PathCond {
    fn matches(&self, path: &str) -> bool {
        match self {
            PathCond::Exact(v) => **v == *path,
            PathCond::Prefix(v) => prefix_matches(v, path),
            PathCond::Regex(r) => r.as_ref().is_some_and(|r| r.is_match(path)),
        }
    }
}

/// Element-wise PathPrefix match: "the paths `/abc`, `/abc/`, and `/abc/def` would all match
/// the prefix `/abc`, but the path `/abcd` would not" (HTTPRoute PathMatch).
pub(crate) fn prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || (path.starts_with(prefix)
            && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/')))
}

/// Which condition of a match a request failed (for [`Routes::explain`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mismatch {
    Path,
    Method,
    /// The n-th header match.
    Header(usize),
    /// The n-th query parameter match.
    Query(usize),
    GrpcService,
    GrpcMethod,
}

#[derive(Debug)]
struct HttpCand {
    rule: Arc<Rule>,
    match_index: usize,
}

impl HttpCand {
    fn matches(&self, req: &RequestView<'_>) -> bool {
        self.check(req).is_ok()
    }

    /// The first condition the request fails, in the order path, method, headers, query.
    fn check(&self, req: &RequestView<'_>) -> Result<(), Mismatch> {
        match self.rule.http_conds.get(self.match_index) {
            Some(c) => c.check(req),
            // Not built by `build_listener` (which only makes candidates for existing matches).
            None => Err(Mismatch::Path),
        }
    }
}

/// An HTTPRoute match, compiled.
#[derive(Debug)]
struct HttpConds {
    path: PathCond,
    method: Option<MethodCond>,
    headers: Vec<HeaderCond>,
    query: Vec<QueryCond>,
}

impl HttpConds {
    fn new(m: &HttpMatch) -> Self {
        HttpConds {
            path: match m.path.kind {
                PathMatchType::Exact => PathCond::Exact(m.path.value.as_str().into()),
                PathMatchType::PathPrefix => PathCond::Prefix(m.path.value.as_str().into()),
                PathMatchType::RegularExpression => {
                    PathCond::Regex(full_regex(&m.path.value, "path match"))
                }
            },
            method: m.method.as_deref().map(MethodCond::new),
            headers: m.headers.iter().map(HeaderCond::new).collect(),
            query: m.query.iter().map(QueryCond::new).collect(),
        }
    }

    fn check(&self, req: &RequestView<'_>) -> Result<(), Mismatch> {
        if !self.path.matches(req.uri.path()) {
            return Err(Mismatch::Path);
        }
        if !self.method.as_ref().is_none_or(|m| m.matches(req.method)) {
            return Err(Mismatch::Method);
        }
        if let Some(i) = self.headers.iter().position(|h| !h.matches(req.headers)) {
            return Err(Mismatch::Header(i));
        }
        if let Some(i) = self.query.iter().position(|q| !q.matches(req.uri.query())) {
            return Err(Mismatch::Query(i));
        }
        Ok(())
    }
}

#[derive(Debug)]
struct GrpcCand {
    rule: Arc<Rule>,
    match_index: usize,
}

impl GrpcCand {
    fn matches(&self, service: &str, method: &str, headers: &HeaderMap) -> bool {
        self.check(service, method, headers).is_ok()
    }

    /// The first condition the request fails, in the order service, method, headers.
    fn check(&self, service: &str, method: &str, headers: &HeaderMap) -> Result<(), Mismatch> {
        match self.rule.grpc_conds.get(self.match_index) {
            Some(c) => c.check(service, method, headers),
            None => Err(Mismatch::GrpcService),
        }
    }
}

/// A GRPCRoute match, compiled.
#[derive(Debug)]
struct GrpcConds {
    service: Option<ValueCond>,
    method: Option<ValueCond>,
    headers: Vec<HeaderCond>,
}

impl GrpcConds {
    fn new(m: &GrpcMatch) -> Self {
        let (service, method) = match &m.method {
            None => (None, None),
            Some(mm) => {
                let cond = |v: &Option<String>, what| {
                    v.as_deref().map(|v| match mm.type_ {
                        StringMatchType::Exact => {
                            ValueCond::Exact(v.strip_prefix('.').unwrap_or(v).into())
                        }
                        StringMatchType::RegularExpression => {
                            ValueCond::new(StringMatchType::RegularExpression, v, what)
                        }
                    })
                };
                (
                    cond(&mm.service, "gRPC service match"),
                    cond(&mm.method, "gRPC method match"),
                )
            }
        };
        GrpcConds {
            service,
            method,
            headers: m.headers.iter().map(HeaderCond::new).collect(),
        }
    }

    fn check(&self, service: &str, method: &str, headers: &HeaderMap) -> Result<(), Mismatch> {
        if !self.service.as_ref().is_none_or(|c| c.matches(service)) {
            return Err(Mismatch::GrpcService);
        }
        if !self.method.as_ref().is_none_or(|c| c.matches(method)) {
            return Err(Mismatch::GrpcMethod);
        }
        if let Some(i) = self.headers.iter().position(|h| !h.matches(headers)) {
            return Err(Mismatch::Header(i));
        }
        Ok(())
    }
}

/// The parts of a request that matching reads.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Method.
    pub method: &'a Method,
    /// Request target.
    pub uri: &'a Uri,
    /// Headers.
    pub headers: &'a HeaderMap,
}

impl<'a> From<&'a http::request::Parts> for RequestView<'a> {
    fn from(p: &'a http::request::Parts) -> Self {
        RequestView {
            method: &p.method,
            uri: &p.uri,
            headers: &p.headers,
        }
    }
}

impl<'a, B> From<&'a http::Request<B>> for RequestView<'a> {
    fn from(r: &'a http::Request<B>) -> Self {
        RequestView {
            method: r.method(),
            uri: r.uri(),
            headers: r.headers(),
        }
    }
}

/// Whether a request is gRPC: its `content-type` starts with `application/grpc`.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The outcome of [`Routes::resolve`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Resolution<'a> {
    /// A rule matched.
    Matched(Matched<'a>),
    /// Nothing matched: 404 (gRPC: `UNIMPLEMENTED`).
    NotFound(NotFound),
    /// The request's host belongs to another listener than the one its TLS connection was
    /// set up for (GEP-3567): 421 Misdirected Request.
    Misdirected(Misdirected),
}

/// A request sent on a TLS connection set up for another listener (see [`Routes::resolve_sni`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Misdirected {
    /// The listener the connection's SNI selects (`None`: no listener matches the SNI).
    pub sni_listener: Option<String>,
    /// The listener the request's host selects.
    pub host_listener: String,
}

impl<'a> Resolution<'a> {
    /// The match, if any.
    pub fn matched(self) -> Option<Matched<'a>> {
        match self {
            Resolution::Matched(m) => Some(m),
            Resolution::NotFound(_) | Resolution::Misdirected(_) => None,
        }
    }
}

/// Why nothing matched.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotFound {
    /// The table has no such Gateway.
    UnknownGateway,
    /// The Gateway has no HTTP/HTTPS listener on this port.
    NoListenerOnPort,
    /// No listener on the port accepts the request's host.
    NoListenerForHost,
    /// The listener has no rule for the host, path, method, headers and query.
    NoMatchingRule {
        /// The listener that was searched.
        listener: String,
    },
}

/// A matched rule.
#[derive(Debug, Clone)]
pub struct Matched<'a> {
    listener: &'a Listener,
    rule: &'a Arc<Rule>,
    match_index: usize,
    host: Cow<'a, str>,
    route_hostname: &'a str,
}

impl<'a> Matched<'a> {
    /// The listener the request went through.
    pub fn listener(&self) -> &'a Listener {
        self.listener
    }
    /// The rule.
    pub fn rule(&self) -> &'a Arc<Rule> {
        self.rule
    }
    /// Which of the rule's matches matched (for a GRPCRoute rule without matches, 0).
    pub fn match_index(&self) -> usize {
        self.match_index
    }
    /// The request host as matched (lowercase, without port).
    pub fn host(&self) -> &str {
        &self.host
    }
    /// The route hostname group that was chosen (`""`: rules without hostnames).
    pub fn route_hostname(&self) -> &'a str {
        self.route_hostname
    }

    /// An owned copy of what the request filters and the router need, so that the request
    /// this match borrows from can be modified.
    pub fn to_route(&self) -> RouteMatch {
        RouteMatch {
            rule: self.rule.clone(),
            host: self.host.clone().into_owned(),
            match_index: self.match_index,
        }
    }
}

/// An owned match: the rule and the request host (see [`Matched::to_route`]).
#[derive(Debug, Clone)]
pub struct RouteMatch {
    rule: Arc<Rule>,
    host: String,
    match_index: usize,
}

impl RouteMatch {
    /// The rule.
    pub fn rule(&self) -> &Arc<Rule> {
        &self.rule
    }
    /// The request host as matched.
    pub fn host(&self) -> &str {
        &self.host
    }
    /// Which of the rule's matches matched.
    pub fn match_index(&self) -> usize {
        self.match_index
    }

    /// Applies the rule's request filters to `parts` (without backend-level filters, which
    /// depend on the random backend choice): the request to forward, or the gateway's own
    /// answer. The [`Router`](crate::Router) does exactly this; it is public for "explain"
    /// tooling and benchmarks. Mirror fractions are drawn at random. ExternalAuth filters need
    /// the auth service: they are passed over here (as if the auth service allowed the
    /// request without adding headers).
    pub fn apply_request_filters(
        &self,
        parts: &mut http::request::Parts,
        scheme: crate::Scheme,
        port: u16,
    ) -> Result<crate::RequestEffects, crate::DirectResponse> {
        let mut effects = crate::RequestEffects::default();
        let ctx = self.ctx(scheme, port);
        let mut rest = &self.rule.filters[..];
        while let Some(i) = crate::filters::apply_request(rest, parts, &ctx, &mut effects)? {
            rest = rest.get(i + 1..).unwrap_or_default();
        }
        Ok(effects)
    }

    /// The rule, without a clone (and the reference-count write it costs).
    pub(crate) fn into_rule(self) -> Arc<Rule> {
        self.rule
    }

    pub(crate) fn ctx(&self, scheme: crate::Scheme, port: u16) -> crate::filters::FilterCtx<'_> {
        crate::filters::FilterCtx {
            scheme,
            port,
            host: &self.host,
            prefix: self.rule.prefix(),
        }
    }
}

impl Routes {
    /// Builds the index from a compiled table. Never fails: pieces that cannot be used (which
    /// would be gw-model bugs, such as an out-of-range index) are skipped with a warning, and
    /// conditions that cannot be built never match.
    pub fn build(table: &RouteTable) -> Routes {
        Routes::build_with(table, &crate::dns::Resolver::shared())
    }

    /// [`build`](Self::build), resolving the names of external backends (XBackend) with
    /// `resolver`; names already in its cache keep their answers.
    pub fn build_with(table: &RouteTable, resolver: &crate::dns::Resolver) -> Routes {
        Routes::build_from(table, resolver, None)
    }

    /// [`build_with`](Self::build_with), reusing the rules of `previous` whose table entries
    /// did not change: a reload that changes one route builds that route's rules, not every
    /// rule. A rule is reused when its entry is the same (equal, on the same listener, with the
    /// same Gateway backend client certificate) and carries no TrafficPolicy (policy layers are
    /// shared between rules within one build, so they are always built afresh). A reused rule
    /// keeps its state: backend choice, session codecs, resilience. `previous` must have been
    /// built with the same `resolver`.
    ///
    /// ```
    /// use gw_model::{CompileOptions, compile, load, resources::Resources};
    /// use gw_router::{Routes, dns::Resolver};
    ///
    /// let yaml = r#"
    /// apiVersion: gateway.networking.k8s.io/v1
    /// kind: GatewayClass
    /// metadata: {name: gw}
    /// spec: {controllerName: gw.dev/gateway}
    /// ---
    /// apiVersion: gateway.networking.k8s.io/v1
    /// kind: Gateway
    /// metadata: {name: edge, namespace: default}
    /// spec:
    ///   gatewayClassName: gw
    ///   listeners: [{name: http, port: 8080, protocol: HTTP}]
    /// ---
    /// apiVersion: gateway.networking.k8s.io/v1
    /// kind: HTTPRoute
    /// metadata: {name: web, namespace: default}
    /// spec:
    ///   parentRefs: [{name: edge}]
    ///   rules: [{backendRefs: [{name: web, port: 80}]}]
    /// "#;
    /// let mut resources = Resources::new();
    /// resources.extend(load::parse("demo.yaml", yaml).objects);
    /// let options = CompileOptions::new("gw.dev/gateway");
    /// let resolver = Resolver::shared();
    /// let first = Routes::build_with(&compile(&resources, &options).table, &resolver);
    /// // Compiled again from the same resources: the rule is the one built before.
    /// let second = Routes::rebuild(&first, &compile(&resources, &options).table, &resolver);
    /// let rule = |r: &Routes| r.rules().next().map(|(_, rule)| rule.clone());
    /// assert!(std::sync::Arc::ptr_eq(&rule(&first).unwrap(), &rule(&second).unwrap()));
    /// ```
    pub fn rebuild(
        previous: &Routes,
        table: &RouteTable,
        resolver: &crate::dns::Resolver,
    ) -> Routes {
        Routes::build_from(table, resolver, Some(previous))
    }

    fn build_from(
        table: &RouteTable,
        resolver: &crate::dns::Resolver,
        previous: Option<&Routes>,
    ) -> Routes {
        let mut routes = Routes::default();
        let mut policies = PolicyCache::default();
        for g in &table.gateways {
            let ctx = BuildCtx {
                client_cert: g.backend_client_certificate.as_ref(),
                resolver,
            };
            let old = previous
                .and_then(|p| p.gateways.get(&g.key))
                .filter(|old| old.client_cert == g.backend_client_certificate);
            let gw = routes.gateways.entry(g.key.clone()).or_default();
            gw.client_cert.clone_from(&g.backend_client_certificate);
            for l in &g.listeners {
                if !matches!(l.protocol, Protocol::Http | Protocol::Https) {
                    continue;
                }
                let port = gw.ports.entry(l.port).or_default();
                let index = port.listeners.len();
                let slot = port
                    .by_host
                    .entry(l.hostname.as_deref().unwrap_or(""), || index);
                if *slot != index {
                    tracing::warn!(gateway = %g.key, listener = %l.name, port = l.port,
                        "two listeners with the same port and hostname; the first one is used");
                    continue;
                }
                let reuse = old
                    .and_then(|o| o.ports.get(&l.port))
                    .and_then(|p| p.listeners.iter().find(|o| o.name == l.name))
                    .map(Reusable::of)
                    .unwrap_or_default();
                port.listeners
                    .push(build_listener(l, &g.key, ctx, &mut policies, reuse));
            }
        }
        routes
    }

    /// Matches a request that came in on `port` of `gateway`. Pure and synchronous: this is
    /// what the [`Router`](crate::Router) does before any I/O, and what an "explain" endpoint
    /// can show. Same as [`resolve_sni`](Self::resolve_sni) without SNI.
    pub fn resolve<'a>(
        &'a self,
        gateway: &ObjectKey,
        port: u16,
        req: impl Into<RequestView<'a>>,
    ) -> Resolution<'a> {
        self.resolve_sni(gateway, port, None, req)
    }

    /// Matches a request that came in on `port` of `gateway` over a TLS connection whose
    /// ClientHello named `sni`: when the request's host selects another listener than the SNI
    /// did, the answer is [`Resolution::Misdirected`] (421; GEP-3567, see the module
    /// `misdirected` for the rule). Without SNI the host alone selects the listener.
    pub fn resolve_sni<'a>(
        &'a self,
        gateway: &ObjectKey,
        port: u16,
        sni: Option<&str>,
        req: impl Into<RequestView<'a>>,
    ) -> Resolution<'a> {
        let req = req.into();
        let Some(g) = self.gateways.get(gateway) else {
            return Resolution::NotFound(NotFound::UnknownGateway);
        };
        let Some(p) = g.ports.get(&port) else {
            return Resolution::NotFound(NotFound::NoListenerOnPort);
        };
        let host = request_host(req.uri, req.headers);
        let index = match misdirected::select(&p.by_host, &host, sni) {
            Selection::Listener(i) => i,
            Selection::NoListener => return Resolution::NotFound(NotFound::NoListenerForHost),
            Selection::Misdirected { sni, host } => {
                let name = |i: usize| p.listeners.get(i).map(|l| l.name.clone());
                return Resolution::Misdirected(Misdirected {
                    sni_listener: sni.and_then(name),
                    host_listener: name(host).unwrap_or_default(),
                });
            }
        };
        let Some(listener) = p.listeners.get(index) else {
            return Resolution::NotFound(NotFound::NoListenerForHost);
        };
        if is_grpc(req.headers)
            && let Some((route_hostname, group)) = listener.grpc.find(&host)
        {
            let path = req.uri.path();
            let (service, method) = path
                .strip_prefix('/')
                .and_then(|p| p.split_once('/'))
                .unwrap_or(("", ""));
            let full = path.strip_prefix('/').unwrap_or(path);
            let found = group.find(service, method, full, |rank| {
                listener
                    .grpc_cands
                    .get(rank as usize)
                    .is_some_and(|c| c.matches(service, method, req.headers))
            });
            if let Some(c) = found.and_then(|r| listener.grpc_cands.get(r as usize)) {
                return Resolution::Matched(Matched {
                    listener,
                    rule: &c.rule,
                    match_index: c.match_index,
                    host,
                    route_hostname,
                });
            }
        }
        if let Some((route_hostname, group)) = listener.http.find(&host) {
            let found = group.find(req.uri.path(), |rank| {
                listener
                    .http_cands
                    .get(rank as usize)
                    .is_some_and(|c| c.matches(&req))
            });
            if let Some(c) = found.and_then(|r| listener.http_cands.get(r as usize)) {
                return Resolution::Matched(Matched {
                    listener,
                    rule: &c.rule,
                    match_index: c.match_index,
                    host,
                    route_hostname,
                });
            }
        }
        Resolution::NotFound(NotFound::NoMatchingRule {
            listener: listener.name.clone(),
        })
    }

    /// The TLS setups of every backend and mirror, for pruning pooled connections.
    pub(crate) fn tls_keys(&self) -> std::collections::HashSet<TlsKey> {
        let mut keys = std::collections::HashSet::new();
        for (_, rule) in self.rules() {
            let mirrors = rule.filters.iter().filter_map(|f| match f {
                Filter::Mirror { backend, .. } => Some(backend),
                _ => None,
            });
            for target in rule.backends.targets().chain(mirrors) {
                if let BackendTarget::Service(s) = &**target
                    && let Some(t) = &s.tls
                {
                    keys.insert(t.key.clone());
                }
            }
        }
        keys
    }

    /// Every rule of every listener (each rule once per listener it is attached to).
    pub fn rules(&self) -> impl Iterator<Item = (&Listener, &Arc<Rule>)> {
        self.gateways
            .values()
            .flat_map(|g| g.ports.values())
            .flat_map(|p| p.listeners.iter())
            .flat_map(|l| {
                let http = l.http_cands.iter().map(move |c| (l, &c.rule));
                let grpc = l.grpc_cands.iter().map(move |c| (l, &c.rule));
                http.chain(grpc)
            })
    }
}

/// The table's precedence order when it is complete and in range, else recomputed from the
/// explicit keys (a model bug, logged).
fn order<M, K: Ord>(
    declared: &[(usize, usize)],
    entries: &[(&[M], ())],
    key: impl Fn(usize, usize) -> K,
    listener: &str,
) -> Vec<(usize, usize)> {
    let total: usize = entries.iter().map(|(m, _)| m.len()).sum();
    let in_range = declared
        .iter()
        .all(|&(e, m)| entries.get(e).is_some_and(|(ms, _)| m < ms.len()));
    if declared.len() == total && in_range {
        return declared.to_vec();
    }
    tracing::warn!(
        listener,
        "route table precedence order is incomplete; recomputing it"
    );
    let mut all: Vec<(usize, usize)> = entries
        .iter()
        .enumerate()
        .flat_map(|(e, (ms, _))| (0..ms.len()).map(move |m| (e, m)))
        .collect();
    all.sort_by_cached_key(|&(e, m)| key(e, m));
    all
}

fn build_listener(
    l: &ListenerTable,
    gateway: &ObjectKey,
    ctx: BuildCtx<'_>,
    policies: &mut PolicyCache,
    mut reuse: Reusable<'_>,
) -> Listener {
    let mut listener = Listener {
        name: l.name.clone(),
        name_label: l.name.as_str().into(),
        gateway_label: gateway.to_string().into(),
        owner: l.owner.clone(),
        port: l.port,
        protocol: l.protocol,
        hostname: l.hostname.clone(),
        http: HostIndex::default(),
        http_cands: Vec::new(),
        grpc: HostIndex::default(),
        grpc_cands: Vec::new(),
        http_rules: Vec::new(),
        grpc_rules: Vec::new(),
    };

    // HTTPRoute rules.
    let http_entries: Vec<(&[HttpMatch], ())> =
        l.http.iter().map(|e| (e.matches.as_slice(), ())).collect();
    let http_order = order(
        &l.http_order,
        &http_entries,
        |e, m| {
            HttpMatchKey::new(
                &l.http[e].matches[m],
                &l.http[e].route,
                l.http[e].rule_index,
                m,
            )
        },
        &l.name,
    );
    // Rules of the previous build, looked up in table order.
    let mut rules: Vec<Option<Arc<Rule>>> = l.http.iter().map(|e| reuse.http(e)).collect();
    for (e, m) in http_order {
        let (Some(entry), Some(slot)) = (l.http.get(e), rules.get_mut(e)) else {
            continue;
        };
        let Some(hm) = entry.matches.get(m) else {
            continue;
        };
        let rule = slot
            .get_or_insert_with(|| Arc::new(Rule::http(entry, ctx, policies)))
            .clone();
        let Ok(rank) = u32::try_from(listener.http_cands.len()) else {
            tracing::warn!(listener = %l.name, "too many matches on one listener; the rest are skipped");
            break;
        };
        listener.http_cands.push(HttpCand {
            rule,
            match_index: m,
        });
        for h in hostnames(&entry.hostnames) {
            listener
                .http
                .entry(h, HttpGroup::default)
                .insert(hm.path.kind, &hm.path.value, rank);
        }
    }

    // GRPCRoute rules; a rule without matches matches every request.
    let grpc_entries: Vec<(&[GrpcMatch], ())> =
        l.grpc.iter().map(|e| (grpc_matches_of(e), ())).collect();
    let grpc_order = order(
        &l.grpc_order,
        &grpc_entries,
        |e, m| {
            GrpcMatchKey::new(
                &grpc_matches_of(&l.grpc[e])[m],
                &l.grpc[e].route,
                l.grpc[e].rule_index,
                m,
            )
        },
        &l.name,
    );
    listener.http_rules = rules.into_iter().flatten().collect();
    let mut rules: Vec<Option<Arc<Rule>>> = l.grpc.iter().map(|e| reuse.grpc(e)).collect();
    for (e, m) in grpc_order {
        let (Some(entry), Some(slot)) = (l.grpc.get(e), rules.get_mut(e)) else {
            continue;
        };
        let Some(gm) = grpc_matches_of(entry).get(m) else {
            continue;
        };
        let rule = slot
            .get_or_insert_with(|| Arc::new(Rule::grpc(entry, ctx, policies)))
            .clone();
        let Ok(rank) = u32::try_from(listener.grpc_cands.len()) else {
            break;
        };
        listener.grpc_cands.push(GrpcCand {
            rule,
            match_index: m,
        });
        for h in hostnames(&entry.hostnames) {
            listener.grpc.entry(h, GrpcGroup::default).insert(gm, rank);
        }
    }
    listener.grpc_rules = rules.into_iter().flatten().collect();
    // The index lives until the next reload: drop the growth headroom of the pushes (up to half
    // of each Vec, 0.5 MB for the candidates of 5,000 routes).
    listener.http_cands.shrink_to_fit();
    listener.grpc_cands.shrink_to_fit();
    listener
}

/// The rules of a listener of the previous build, in table order, for [`Routes::rebuild`]:
/// the new table's entries are looked up in their order, so a cursor walks the old rules once
/// (the compile places entries route by route in key order; entries out of that order are only
/// reused less, never wrongly). An entry the compile kept is the very same entry: found without
/// comparing keys.
#[derive(Default)]
struct Reusable<'a> {
    http: Cursor<'a>,
    grpc: Cursor<'a>,
}

#[derive(Default)]
struct Cursor<'a> {
    rules: &'a [Arc<Rule>],
    at: usize,
}

impl<'a> Cursor<'a> {
    /// The old rule of route `key`'s rule `rule_index`, skipping the old rules before it; `same`
    /// tells an old rule built from the very entry looked for.
    fn find(
        &mut self,
        key: &ObjectKey,
        rule_index: usize,
        same: impl Fn(&Rule) -> bool,
    ) -> Option<&'a Arc<Rule>> {
        while let Some(old) = self.rules.get(self.at) {
            if same(old) {
                self.at += 1;
                return Some(old);
            }
            match (&old.route().key, old.rule_index()).cmp(&(key, rule_index)) {
                std::cmp::Ordering::Less => self.at += 1,
                std::cmp::Ordering::Equal => {
                    self.at += 1;
                    return Some(old);
                }
                std::cmp::Ordering::Greater => return None,
            }
        }
        None
    }

    /// The old rule of entry `e` (route `key`, rule `rule_index`; `entry_of` reads a rule's
    /// entry) when it can serve again: neither entry has a policy (`no_policy`), and the old one
    /// is `e` itself or equal to it.
    fn reuse<E: PartialEq>(
        &mut self,
        e: &E,
        key: &ObjectKey,
        rule_index: usize,
        entry_of: impl Fn(&Rule) -> Option<&E>,
        no_policy: impl Fn(&E) -> bool,
    ) -> Option<Arc<Rule>> {
        let is = |r: &Rule| entry_of(r).is_some_and(|o| std::ptr::eq(o, e));
        let old = self.find(key, rule_index, is)?;
        let same = entry_of(old)
            .is_some_and(|o| no_policy(o) && no_policy(e) && (std::ptr::eq(o, e) || *o == *e));
        same.then(|| Arc::clone(old))
    }
}

impl<'a> Reusable<'a> {
    fn of(l: &'a Listener) -> Self {
        Reusable {
            http: Cursor {
                rules: &l.http_rules,
                at: 0,
            },
            grpc: Cursor {
                rules: &l.grpc_rules,
                at: 0,
            },
        }
    }

    /// The rule built before for this entry, when the entry is the same and has no policy.
    fn http(&mut self, e: &Shared<HttpRouteEntry>) -> Option<Arc<Rule>> {
        let entry = &**e;
        self.http
            .reuse(entry, &e.route.key, e.rule_index, Rule::http_entry, |x| {
                x.policy.is_none()
            })
    }

    fn grpc(&mut self, e: &Shared<GrpcRouteEntry>) -> Option<Arc<Rule>> {
        let entry = &**e;
        self.grpc
            .reuse(entry, &e.route.key, e.rule_index, Rule::grpc_entry, |x| {
                x.policy.is_none()
            })
    }
}

/// The match of a gRPC rule without matches: every request.
const MATCH_EVERY_GRPC_REQUEST: &[GrpcMatch] = &[GrpcMatch {
    method: None,
    headers: Vec::new(),
}];

/// A gRPC rule's matches ([`MATCH_EVERY_GRPC_REQUEST`] for a rule without any).
fn grpc_matches_of(e: &GrpcRouteEntry) -> &[GrpcMatch] {
    if e.matches.is_empty() {
        MATCH_EVERY_GRPC_REQUEST
    } else {
        e.matches.as_slice()
    }
}

/// Route hostnames as host-index patterns (`""`: any host).
fn hostnames(h: &[String]) -> impl Iterator<Item = &str> {
    let any = h.is_empty().then_some("");
    h.iter().map(String::as_str).chain(any)
}
