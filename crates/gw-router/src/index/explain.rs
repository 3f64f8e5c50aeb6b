//! [`Routes::explain`]: which listener, route and rule a request goes to, and why every other
//! candidate did not get it.
//!
//! The outcome is the data path's own: `explain` calls [`Routes::resolve_sni`]. The reasons
//! come from the same compiled conditions and indexes the data path uses (each candidate's
//! conditions are checked in the order the matcher checks them and the first failing one is
//! reported), and precedence between two matching rules is named by the table's own ranked
//! keys ([`HttpMatchKey::decided_by`]), so the explanation cannot drift from what the router
//! does.

use std::sync::Arc;

use gw_model::compile::hostname::wildcard_matches;
use gw_model::resources::{Kind, ObjectKey, StringMatchType};
use gw_model::status::{ConditionStatus, ObjectStatus, StatusReport};
use gw_model::table::{GrpcMatchKey, HttpMatch, HttpMatchKey, Precedence, ValueMatch};
use http::HeaderMap;
use serde::Serialize;

use super::misdirected::{self, Selection};
use super::{
    GrpcCand, HttpCand, Listener, Mismatch, NotFound, RequestView, Resolution, Routes, Rule,
    hostnames, is_grpc, request_host,
};

/// A request to explain: the Gateway and port it arrives on, the TLS SNI (if any), and the
/// request head (method, target, headers; the host comes from the `Host` header or an
/// absolute target).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ExplainRequest {
    /// The Gateway.
    pub gateway: ObjectKey,
    /// The listener port.
    pub port: u16,
    /// The server name of the TLS connection (HTTPS listeners), for GEP-3567's 421.
    pub sni: Option<String>,
    /// Method, target and headers.
    pub request: http::Request<()>,
}

impl ExplainRequest {
    /// A request arriving on `port` of `gateway`.
    pub fn new(gateway: ObjectKey, port: u16, request: http::Request<()>) -> Self {
        ExplainRequest {
            gateway,
            port,
            sni: None,
            request,
        }
    }

    /// Sets the TLS server name.
    pub fn with_sni(mut self, sni: impl Into<String>) -> Self {
        self.sni = Some(sni.into());
        self
    }
}

/// The answer of [`Routes::explain`]. Serializes to JSON (camelCase) for admin endpoints.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Explanation {
    /// The Gateway (`namespace/name`).
    pub gateway: String,
    /// The port.
    pub port: u16,
    /// The request's method.
    pub method: String,
    /// The request's path (and query).
    pub path: String,
    /// The host as matched (lowercase, no port).
    pub host: String,
    /// Whether the request is gRPC (`content-type: application/grpc...`).
    pub grpc: bool,
    /// What the router does.
    pub outcome: Outcome,
    /// The gateway's own answer when the request is not routed (404, 421).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// One line saying what happens.
    pub summary: String,
    /// Every HTTP/HTTPS listener on the port, and why it was or was not selected.
    pub listeners: Vec<ListenerExplanation>,
    /// Every match of every rule attached to the selected listener, in precedence order, then
    /// the rules attached only to the other listeners on the port.
    pub candidates: Vec<CandidateExplanation>,
    /// Routes that name this Gateway but are not attached (filled by
    /// [`Explanation::with_status`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unattached: Vec<UnattachedRoute>,
}

/// What the router does with the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "camelCase")]
#[non_exhaustive]
pub enum Outcome {
    /// A rule matched; the request is routed by it.
    #[serde(rename_all = "camelCase")]
    Matched {
        /// The listener.
        listener: String,
        /// `HTTPRoute` or `GRPCRoute`.
        kind: &'static str,
        /// The route (`namespace/name`).
        route: String,
        /// The rule's index in the route.
        rule_index: usize,
        /// The rule's name.
        #[serde(skip_serializing_if = "Option::is_none")]
        rule_name: Option<String>,
        /// The match's index in the rule.
        match_index: usize,
        /// The route hostname group that was chosen (`""`: rules without hostnames).
        route_hostname: String,
    },
    /// Nothing matched: 404.
    NotFound {
        /// Why.
        reason: String,
    },
    /// The host belongs to another listener than the TLS connection's SNI: 421.
    #[serde(rename_all = "camelCase")]
    Misdirected {
        /// The listener the SNI selects.
        sni_listener: Option<String>,
        /// The listener the host selects.
        host_listener: String,
    },
}

/// One listener on the port.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ListenerExplanation {
    /// Listener name.
    pub name: String,
    /// `Gateway namespace/name` or `ListenerSet namespace/name`.
    pub owner: String,
    /// The listener's hostname.
    pub hostname: Option<String>,
    /// Whether the request goes through this listener.
    pub selected: bool,
    /// Why (not).
    pub reason: String,
}

/// One match of one rule, and what became of it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CandidateExplanation {
    /// The listener the rule is attached to.
    pub listener: String,
    /// `HTTPRoute` or `GRPCRoute`.
    pub kind: &'static str,
    /// The route (`namespace/name`).
    pub route: String,
    /// The rule's index in the route.
    pub rule_index: usize,
    /// The rule's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_name: Option<String>,
    /// The match's index in the rule.
    pub match_index: usize,
    /// The match, in words (`PathPrefix /api, method GET, header version=2`).
    #[serde(rename = "match")]
    pub match_: String,
    /// The rule's hostnames on this listener (empty: any).
    pub hostnames: Vec<String>,
    /// The verdict.
    pub verdict: Verdict,
    /// The verdict in words.
    pub reason: String,
    /// For [`Verdict::LowerPrecedence`]: the precedence criterion that decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precedence: Option<Precedence>,
}

/// Why a candidate did (not) get the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum Verdict {
    /// This match routes the request.
    Selected,
    /// None of the rule's hostnames matches the host.
    HostnameMismatch,
    /// A hostname matches, but a more specific route hostname on the listener was chosen and
    /// only its rules are considered.
    LessSpecificHostname,
    /// The path does not match.
    PathMismatch,
    /// The method does not match.
    MethodMismatch,
    /// A header match fails.
    HeaderMismatch,
    /// A query parameter match fails.
    QueryMismatch,
    /// The gRPC service does not match.
    GrpcServiceMismatch,
    /// The gRPC method does not match.
    GrpcMethodMismatch,
    /// A GRPCRoute rule and a request that is not gRPC.
    NotGrpc,
    /// An HTTPRoute rule that matches a gRPC request a GRPCRoute rule matched first.
    GrpcRouteFirst,
    /// The match matches, but the selected one ranks higher (see `precedence`).
    LowerPrecedence,
    /// The rule is attached to another listener on the port, not to the selected one.
    OtherListener,
    /// Matches but was not selected, for no reason the explainer knows (a bug; please report).
    Unexplained,
}

/// A route that names the Gateway but is not attached to it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct UnattachedRoute {
    /// Route kind.
    pub kind: &'static str,
    /// The route (`namespace/name`).
    pub route: String,
    /// The parentRef's sectionName, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    /// The `Accepted` condition's reason (e.g. `NotAllowedByListeners`, `NoMatchingParent`).
    pub reason: String,
    /// Its message.
    pub message: String,
}

impl Explanation {
    /// Adds the routes that name this Gateway in a parentRef but are not accepted by it, with
    /// the reason of their `Accepted=False` condition from `report` (the status of the
    /// configuration these routes were built from).
    pub fn with_status(mut self, report: &StatusReport) -> Self {
        for entry in &report.entries {
            let ObjectStatus::Route(status) = &entry.status else {
                continue;
            };
            for parent in &status.parents {
                let r = &parent.parent_ref;
                let namespace = r.namespace.as_deref().unwrap_or(&entry.key.namespace);
                let ours = r.kind == "Gateway"
                    && format!("{namespace}/{}", r.name) == self.gateway
                    && r.port.is_none_or(|p| i32::from(self.port) == p);
                if !ours {
                    continue;
                }
                let refused = parent
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "Accepted" && c.status != ConditionStatus::True);
                if let Some(c) = refused {
                    self.unattached.push(UnattachedRoute {
                        kind: kind_name(entry.kind),
                        route: entry.key.to_string(),
                        section_name: r.section_name.clone(),
                        reason: c.reason.to_string(),
                        message: c.message.to_string(),
                    });
                }
            }
        }
        self
    }

    /// A plain-text rendering, one line per listener and candidate.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} {} host={:?} on Gateway {} port {}{}",
            self.method,
            self.path,
            self.host,
            self.gateway,
            self.port,
            if self.grpc { " (gRPC)" } else { "" }
        );
        let _ = writeln!(out, "=> {}", self.summary);
        if !self.listeners.is_empty() {
            let _ = writeln!(out, "listeners:");
        }
        for l in &self.listeners {
            let mark = if l.selected { "*" } else { " " };
            let _ = writeln!(out, " {mark} {} ({}): {}", l.name, l.owner, l.reason);
        }
        if !self.candidates.is_empty() {
            let _ = writeln!(out, "candidates:");
        }
        for c in &self.candidates {
            let mark = if c.verdict == Verdict::Selected {
                "*"
            } else {
                " "
            };
            let name = c
                .rule_name
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                " {mark} {} {} rule {}{name} match {} [{}] on {}: {}",
                c.kind, c.route, c.rule_index, c.match_index, c.match_, c.listener, c.reason
            );
        }
        for u in &self.unattached {
            let _ = writeln!(
                out,
                "not attached: {} {}: {} ({})",
                u.kind, u.route, u.reason, u.message
            );
        }
        out
    }
}

fn kind_name(kind: Kind) -> &'static str {
    kind.as_str()
}

fn route_kind_name(rule: &Rule) -> &'static str {
    match rule.kind() {
        super::RouteKind::Http => "HTTPRoute",
        super::RouteKind::Grpc => "GRPCRoute",
    }
}

fn owner(l: &Listener) -> String {
    format!("{} {}", l.owner.kind.as_str(), l.owner.key)
}

/// Describes a value match: `name=value` (Exact) or `name~regex`.
fn value_match(m: &ValueMatch) -> String {
    match m.kind {
        StringMatchType::Exact => format!("{}={}", m.name, m.value),
        StringMatchType::RegularExpression => format!("{}~{}", m.name, m.value),
    }
}

fn describe_http(m: &HttpMatch) -> String {
    let mut parts = vec![format!("{:?} {}", m.path.kind, m.path.value)];
    if let Some(method) = &m.method {
        parts.push(format!("method {method}"));
    }
    parts.extend(
        m.headers
            .iter()
            .map(|h| format!("header {}", value_match(h))),
    );
    parts.extend(m.query.iter().map(|q| format!("query {}", value_match(q))));
    parts.join(", ")
}

fn describe_grpc(m: &gw_model::table::GrpcMatch) -> String {
    let mut parts = Vec::new();
    match &m.method {
        None => parts.push("any method".to_owned()),
        Some(mm) => {
            let op = match mm.type_ {
                StringMatchType::Exact => "=",
                StringMatchType::RegularExpression => "~",
            };
            if let Some(s) = &mm.service {
                parts.push(format!("service{op}{s}"));
            }
            if let Some(m) = &mm.method {
                parts.push(format!("method{op}{m}"));
            }
            if mm.service.is_none() && mm.method.is_none() {
                parts.push("any method".to_owned());
            }
        }
    }
    parts.extend(
        m.headers
            .iter()
            .map(|h| format!("header {}", value_match(h))),
    );
    parts.join(", ")
}

/// The request's value of a header as matched (repeated values joined with `,`).
fn header_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<String> = headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

fn query_value<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        (n == name).then_some(v)
    })
}

fn wants(m: &ValueMatch) -> String {
    match m.kind {
        StringMatchType::Exact => format!("wants exactly {:?}", m.value),
        StringMatchType::RegularExpression => format!("wants a full match of /{}/", m.value),
    }
}

fn got(v: Option<&str>) -> String {
    v.map_or_else(|| "absent".to_owned(), |v| format!("{v:?}"))
}

/// The verdict for a failed condition.
fn http_mismatch(m: &HttpMatch, mismatch: Mismatch, req: &RequestView<'_>) -> (Verdict, String) {
    match mismatch {
        Mismatch::Path => (
            Verdict::PathMismatch,
            format!(
                "path {:?} does not match {:?} {}",
                req.uri.path(),
                m.path.kind,
                m.path.value
            ),
        ),
        Mismatch::Method => (
            Verdict::MethodMismatch,
            format!(
                "method {} is not {}",
                req.method,
                m.method.as_deref().unwrap_or("")
            ),
        ),
        Mismatch::Header(i) => match m.headers.get(i) {
            Some(h) => (
                Verdict::HeaderMismatch,
                format!(
                    "header {}: {} ({})",
                    h.name,
                    wants(h),
                    got(header_value(req.headers, &h.name).as_deref())
                ),
            ),
            None => (Verdict::HeaderMismatch, "a header match fails".to_owned()),
        },
        Mismatch::Query(i) => match m.query.get(i) {
            Some(q) => (
                Verdict::QueryMismatch,
                format!(
                    "query parameter {}: {} ({})",
                    q.name,
                    wants(q),
                    got(query_value(req.uri.query(), &q.name))
                ),
            ),
            None => (Verdict::QueryMismatch, "a query match fails".to_owned()),
        },
        Mismatch::GrpcService | Mismatch::GrpcMethod => {
            (Verdict::Unexplained, "not an HTTP condition".to_owned())
        }
    }
}

fn grpc_mismatch(
    m: &gw_model::table::GrpcMatch,
    mismatch: Mismatch,
    service: &str,
    method: &str,
    headers: &HeaderMap,
) -> (Verdict, String) {
    let mm = m.method.as_ref();
    match mismatch {
        Mismatch::GrpcService => (
            Verdict::GrpcServiceMismatch,
            format!(
                "service {service:?} does not match {}",
                mm.and_then(|m| m.service.as_deref()).unwrap_or("")
            ),
        ),
        Mismatch::GrpcMethod => (
            Verdict::GrpcMethodMismatch,
            format!(
                "method {method:?} does not match {}",
                mm.and_then(|m| m.method.as_deref()).unwrap_or("")
            ),
        ),
        Mismatch::Header(i) => match m.headers.get(i) {
            Some(h) => (
                Verdict::HeaderMismatch,
                format!(
                    "header {}: {} ({})",
                    h.name,
                    wants(h),
                    got(header_value(headers, &h.name).as_deref())
                ),
            ),
            None => (Verdict::HeaderMismatch, "a header match fails".to_owned()),
        },
        Mismatch::Path | Mismatch::Method | Mismatch::Query(_) => {
            (Verdict::Unexplained, "not a gRPC condition".to_owned())
        }
    }
}

/// The hostname verdict of a rule whose hostnames do not include the chosen group `chosen`.
fn hostname_verdict(patterns: &[String], host: &str, chosen: Option<&str>) -> (Verdict, String) {
    let matching = hostnames(patterns).find(|p| p.is_empty() || wildcard_matches(p, host));
    match (matching, chosen) {
        (Some(p), Some(c)) => (
            Verdict::LessSpecificHostname,
            format!(
                "route hostname {} matches, but the more specific route hostname {} was chosen and only its rules are considered",
                if p.is_empty() { "(any)" } else { p },
                if c.is_empty() { "(any)" } else { c }
            ),
        ),
        _ => (
            Verdict::HostnameMismatch,
            format!("route hostnames {patterns:?} do not match host {host:?}"),
        ),
    }
}

/// Where the winner sits in the selected listener.
#[derive(Clone, Copy)]
enum Winner {
    Http(usize),
    Grpc(usize),
}

impl Routes {
    /// Explains how the request would be routed: the outcome the data path computes
    /// ([`resolve_sni`](Self::resolve_sni)), every listener on the port with why it was (not)
    /// selected, and every rule match on the selected listener with why it did not win (the
    /// first failing condition, a less specific hostname, or the precedence criterion that
    /// ranks the winner first).
    ///
    /// ```
    /// use gw_router::gw_model::{self, CompileOptions, resources::{ObjectKey, Resources}};
    /// use gw_router::{ExplainRequest, Routes, Verdict};
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
    ///   rules:
    ///   - matches: [{path: {type: Exact, value: /cart}}]
    ///     backendRefs: [{name: cart, port: 80}]
    ///   - matches: [{path: {type: PathPrefix, value: /cart}}]
    ///     backendRefs: [{name: shop, port: 80}]
    /// "#;
    /// let mut resources = Resources::new();
    /// resources.extend(gw_model::load::parse("demo.yaml", yaml).objects);
    /// let compiled = gw_model::compile(&resources, &CompileOptions::new("gw.dev/gateway"));
    /// let routes = Routes::build(&compiled.table);
    ///
    /// let req = http::Request::get("/cart").header("host", "shop.example").body(()).unwrap();
    /// let why = routes.explain(&ExplainRequest::new(ObjectKey::new("default", "edge"), 8080, req));
    /// assert_eq!(why.candidates[0].verdict, Verdict::Selected);
    /// assert_eq!(why.candidates[0].rule_index, 0);
    /// // The PathPrefix rule matches too, but Exact ranks first.
    /// assert_eq!(why.candidates[1].verdict, Verdict::LowerPrecedence);
    /// println!("{}", why.to_text());
    /// ```
    pub fn explain(&self, req: &ExplainRequest) -> Explanation {
        let view = RequestView::from(&req.request);
        let host = request_host(view.uri, view.headers).into_owned();
        let grpc = is_grpc(view.headers);
        let mut out = Explanation {
            gateway: req.gateway.to_string(),
            port: req.port,
            method: view.method.to_string(),
            path: view
                .uri
                .path_and_query()
                .map_or_else(|| view.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
            host: host.clone(),
            grpc,
            outcome: Outcome::NotFound {
                reason: String::new(),
            },
            status: None,
            summary: String::new(),
            listeners: Vec::new(),
            candidates: Vec::new(),
            unattached: Vec::new(),
        };
        let resolution = self.resolve_sni(&req.gateway, req.port, req.sni.as_deref(), view);
        let mut winner_rule: Option<(Arc<Rule>, usize)> = None;
        match &resolution {
            Resolution::Matched(m) => {
                let rule = m.rule();
                out.summary = format!(
                    "{} {} rule {} match {} on listener {} routes the request",
                    route_kind_name(rule),
                    rule.route().key,
                    rule.rule_index(),
                    m.match_index(),
                    m.listener().name()
                );
                out.outcome = Outcome::Matched {
                    listener: m.listener().name().to_owned(),
                    kind: route_kind_name(rule),
                    route: rule.route().key.to_string(),
                    rule_index: rule.rule_index(),
                    rule_name: rule.rule_name().map(str::to_owned),
                    match_index: m.match_index(),
                    route_hostname: m.route_hostname().to_owned(),
                };
                winner_rule = Some((rule.clone(), m.match_index()));
            }
            Resolution::Misdirected(why) => {
                out.status = Some(421);
                out.summary = format!(
                    "421 Misdirected Request: the host selects listener {}, the TLS connection's SNI {}",
                    why.host_listener,
                    why.sni_listener.as_deref().map_or_else(
                        || "selects no listener".to_owned(),
                        |l| format!("selected listener {l}")
                    )
                );
                out.outcome = Outcome::Misdirected {
                    sni_listener: why.sni_listener.clone(),
                    host_listener: why.host_listener.clone(),
                };
            }
            Resolution::NotFound(why) => {
                out.status = Some(404);
                let reason = match why {
                    NotFound::UnknownGateway => format!(
                        "Gateway {} is not served (not in the configuration, not of this controller, or not programmed)",
                        req.gateway
                    ),
                    NotFound::NoListenerOnPort => {
                        format!(
                            "Gateway {} has no HTTP or HTTPS listener on port {}",
                            req.gateway, req.port
                        )
                    }
                    NotFound::NoListenerForHost => {
                        format!("no listener on port {} accepts host {host:?}", req.port)
                    }
                    NotFound::NoMatchingRule { listener } => {
                        format!("no rule attached to listener {listener} matches the request")
                    }
                };
                out.summary = format!("404: {reason}");
                out.outcome = Outcome::NotFound { reason };
            }
        }

        let Some(port) = self
            .gateways
            .get(&req.gateway)
            .and_then(|g| g.ports.get(&req.port))
        else {
            return out;
        };
        let selection = misdirected::select(&port.by_host, &host, req.sni.as_deref());
        let by_host = port.by_host.find(&host).map(|(_, &i)| i);
        let selected = match selection {
            Selection::Listener(i) => Some(i),
            Selection::Misdirected { .. } | Selection::NoListener => None,
        };
        for (i, l) in port.listeners.iter().enumerate() {
            let accepts = l
                .hostname
                .as_deref()
                .is_none_or(|h| wildcard_matches(h, &host));
            let reason = if selected == Some(i) {
                match &l.hostname {
                    Some(h) => format!("the most specific listener hostname matching the host: {h}"),
                    None => "no more specific listener hostname matches the host; a listener without hostname accepts every host".to_owned(),
                }
            } else if by_host == Some(i) {
                "the host selects this listener, but the TLS connection was set up for another (SNI)".to_owned()
            } else if accepts {
                let better = by_host
                    .and_then(|b| port.listeners.get(b))
                    .map_or_else(String::new, |b| format!(" ({})", b.name));
                format!("accepts the host, but a more specific listener{better} was selected")
            } else {
                format!(
                    "listener hostname {} does not match the host",
                    l.hostname.as_deref().unwrap_or("")
                )
            };
            out.listeners.push(ListenerExplanation {
                name: l.name.clone(),
                owner: owner(l),
                hostname: l.hostname.clone(),
                selected: selected == Some(i),
                reason,
            });
        }
        let Some(listener) = selected.and_then(|i| port.listeners.get(i)) else {
            return out;
        };

        // The winner's position in the selected listener's candidate lists.
        let winner = winner_rule.as_ref().and_then(|(rule, mi)| {
            let is = |r: &Arc<Rule>, m: usize| Arc::ptr_eq(r, rule) && m == *mi;
            listener
                .http_cands
                .iter()
                .position(|c| is(&c.rule, c.match_index))
                .map(Winner::Http)
                .or_else(|| {
                    listener
                        .grpc_cands
                        .iter()
                        .position(|c| is(&c.rule, c.match_index))
                        .map(Winner::Grpc)
                })
        });
        explain_grpc(listener, &view, &host, grpc, winner, &mut out.candidates);
        explain_http(listener, &view, &host, winner, &mut out.candidates);

        // Rules attached only to the other listeners on the port.
        let here: std::collections::HashSet<(&'static str, String)> = out
            .candidates
            .iter()
            .map(|c| (c.kind, c.route.clone()))
            .collect();
        let mut seen = std::collections::HashSet::new();
        for other in port
            .listeners
            .iter()
            .filter(|l| !std::ptr::eq(*l, listener))
        {
            let rules = other
                .http_cands
                .iter()
                .map(|c| (&c.rule, c.match_index))
                .chain(other.grpc_cands.iter().map(|c| (&c.rule, c.match_index)));
            for (rule, mi) in rules {
                let kind = route_kind_name(rule);
                let route = rule.route().key.to_string();
                if here.contains(&(kind, route.clone()))
                    || !seen.insert((kind, route.clone(), rule.rule_index(), mi))
                {
                    continue;
                }
                let (match_, hostnames) = match (rule.http_entry(), rule.grpc_entry()) {
                    (Some(e), _) => (
                        e.matches.get(mi).map(describe_http).unwrap_or_default(),
                        e.hostnames.clone(),
                    ),
                    (None, Some(e)) => (
                        e.matches
                            .get(mi)
                            .map(describe_grpc)
                            .unwrap_or_else(|| "any method".to_owned()),
                        e.hostnames.clone(),
                    ),
                    (None, None) => (String::new(), Vec::new()),
                };
                out.candidates.push(CandidateExplanation {
                    listener: other.name.clone(),
                    kind,
                    route,
                    rule_index: rule.rule_index(),
                    rule_name: rule.rule_name().map(str::to_owned),
                    match_index: mi,
                    match_,
                    hostnames,
                    verdict: Verdict::OtherListener,
                    reason: format!(
                        "attached to listener {}, not to the selected listener {}",
                        other.name, listener.name
                    ),
                    precedence: None,
                });
            }
        }
        out
    }
}

fn explain_http(
    listener: &Listener,
    req: &RequestView<'_>,
    host: &str,
    winner: Option<Winner>,
    out: &mut Vec<CandidateExplanation>,
) {
    let chosen = listener.http.find(host).map(|(p, _)| p);
    let key = |c: &HttpCand| {
        c.rule.http_entry().and_then(|e| {
            e.matches
                .get(c.match_index)
                .map(|m| HttpMatchKey::new(m, &e.route, e.rule_index, c.match_index))
        })
    };
    for (rank, c) in listener.http_cands.iter().enumerate() {
        let Some(entry) = c.rule.http_entry() else {
            continue;
        };
        let Some(m) = entry.matches.get(c.match_index) else {
            continue;
        };
        let in_group = chosen.is_some_and(|g| hostnames(&entry.hostnames).any(|p| p == g));
        let mut precedence = None;
        let (verdict, reason) = if matches!(winner, Some(Winner::Http(w)) if w == rank) {
            (
                Verdict::Selected,
                "matches and ranks first among the matching rules".to_owned(),
            )
        } else if !in_group {
            hostname_verdict(&entry.hostnames, host, chosen)
        } else {
            match c.check(req) {
                Err(mismatch) => http_mismatch(m, mismatch, req),
                Ok(()) => match winner {
                    Some(Winner::Grpc(_)) => (
                        Verdict::GrpcRouteFirst,
                        "matches, but a GRPCRoute rule matched this gRPC request first".to_owned(),
                    ),
                    Some(Winner::Http(w)) if w < rank => {
                        let w = listener.http_cands.get(w);
                        match (w.and_then(key), key(c)) {
                            (Some(wk), Some(ck)) => {
                                let p = wk.decided_by(&ck);
                                precedence = Some(p);
                                let who = w.map_or_else(String::new, |w| {
                                    format!("{} rule {}", w.rule.route().key, w.rule.rule_index())
                                });
                                (
                                    Verdict::LowerPrecedence,
                                    format!("matches, but {who} ranks first: {}", p.describe()),
                                )
                            }
                            _ => (
                                Verdict::LowerPrecedence,
                                "matches, but ranks lower".to_owned(),
                            ),
                        }
                    }
                    _ => (
                        Verdict::Unexplained,
                        "matches, but was not selected".to_owned(),
                    ),
                },
            }
        };
        out.push(CandidateExplanation {
            listener: listener.name.clone(),
            kind: "HTTPRoute",
            route: entry.route.key.to_string(),
            rule_index: entry.rule_index,
            rule_name: entry.rule_name.clone(),
            match_index: c.match_index,
            match_: describe_http(m),
            hostnames: entry.hostnames.clone(),
            verdict,
            reason,
            precedence,
        });
    }
}

fn explain_grpc(
    listener: &Listener,
    req: &RequestView<'_>,
    host: &str,
    grpc: bool,
    winner: Option<Winner>,
    out: &mut Vec<CandidateExplanation>,
) {
    let chosen = listener.grpc.find(host).map(|(p, _)| p);
    let path = req.uri.path();
    let (service, method) = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .unwrap_or(("", ""));
    let key = |c: &GrpcCand| {
        let e = c.rule.grpc_entry()?;
        Some(GrpcMatchKey::new(
            grpc_match_of(c)?,
            &e.route,
            e.rule_index,
            c.match_index,
        ))
    };
    for (rank, c) in listener.grpc_cands.iter().enumerate() {
        let (Some(entry), Some(m)) = (c.rule.grpc_entry(), grpc_match_of(c)) else {
            continue;
        };
        let in_group = chosen.is_some_and(|g| hostnames(&entry.hostnames).any(|p| p == g));
        let mut precedence = None;
        let (verdict, reason) = if matches!(winner, Some(Winner::Grpc(w)) if w == rank) {
            (
                Verdict::Selected,
                "matches and ranks first among the matching rules".to_owned(),
            )
        } else if !grpc {
            (
                Verdict::NotGrpc,
                "GRPCRoute rules match only gRPC requests (content-type application/grpc)"
                    .to_owned(),
            )
        } else if !in_group {
            hostname_verdict(&entry.hostnames, host, chosen)
        } else {
            match c.check(service, method, req.headers) {
                Err(mismatch) => grpc_mismatch(m, mismatch, service, method, req.headers),
                Ok(()) => match winner {
                    Some(Winner::Grpc(w)) if w < rank => {
                        let w = listener.grpc_cands.get(w);
                        match (w.and_then(key), key(c)) {
                            (Some(wk), Some(ck)) => {
                                let p = wk.decided_by(&ck);
                                precedence = Some(p);
                                let who = w.map_or_else(String::new, |w| {
                                    format!("{} rule {}", w.rule.route().key, w.rule.rule_index())
                                });
                                (
                                    Verdict::LowerPrecedence,
                                    format!("matches, but {who} ranks first: {}", p.describe()),
                                )
                            }
                            _ => (
                                Verdict::LowerPrecedence,
                                "matches, but ranks lower".to_owned(),
                            ),
                        }
                    }
                    _ => (
                        Verdict::Unexplained,
                        "matches, but was not selected".to_owned(),
                    ),
                },
            }
        };
        out.push(CandidateExplanation {
            listener: listener.name.clone(),
            kind: "GRPCRoute",
            route: entry.route.key.to_string(),
            rule_index: entry.rule_index,
            rule_name: entry.rule_name.clone(),
            match_index: c.match_index,
            match_: describe_grpc(m),
            hostnames: entry.hostnames.clone(),
            verdict,
            reason,
            precedence,
        });
    }
}

/// The match a gRPC candidate stands for (a rule without matches matches everything).
fn grpc_match_of(c: &GrpcCand) -> Option<&gw_model::table::GrpcMatch> {
    let all = super::MATCH_EVERY_GRPC_REQUEST;
    c.rule
        .grpc_entry()
        .and_then(|e| super::grpc_matches_of(e).get(c.match_index).or(all.first()))
}
