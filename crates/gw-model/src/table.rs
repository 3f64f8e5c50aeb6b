//! The compiled routing table: plain, immutable, serializable data that a data plane turns into
//! matchers without re-checking anything.
//!
//! Everything in the table has been validated by [`compile`](crate::compile()): hostnames
//! intersected, references resolved, regexes checked, durations parsed. What could not be
//! resolved is represented explicitly (for example [`Backend::Invalid`], answered 500), never
//! dropped silently, so that the data plane answers what the spec says.

use std::cmp::Reverse;
use std::net::{IpAddr, SocketAddr};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

pub use crate::compile::tls::{CertificatePair, Validity};
use crate::resources::{
    Cors, GrpcMethodMatch, HeaderModifier, Kind, ObjectKey, PathMatchType, RequestRedirect,
    StringMatchType, TlsMode, UrlRewrite,
};

/// The whole table: one entry per Gateway that gw serves.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RouteTable {
    /// Gateways, by namespace/name.
    pub gateways: Vec<GatewayTable>,
}

/// One Gateway's listeners and what is attached to them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GatewayTable {
    /// The Gateway.
    pub key: ObjectKey,
    /// Addresses to bind (empty: the embedder's default).
    pub addresses: Vec<IpAddr>,
    /// Programmed listeners, in precedence order (the Gateway's own, then ListenerSets').
    pub listeners: Vec<ListenerTable>,
    /// Client certificate presented to backends (GEP-3155), when configured and valid.
    pub backend_client_certificate: Option<CertificatePair>,
}

/// Listener protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Protocol {
    /// Cleartext HTTP (HTTP/1.1 and h2c).
    Http,
    /// TLS-terminated HTTP.
    Https,
    /// TLS: passthrough or terminated, routed by SNI.
    Tls,
    /// Raw TCP.
    Tcp,
    /// UDP datagrams.
    Udp,
}

impl Protocol {
    /// Parses a listener protocol name; `None` when gw does not support it.
    pub fn from_name(name: &str) -> Option<Protocol> {
        Some(match name {
            "HTTP" => Protocol::Http,
            "HTTPS" => Protocol::Https,
            "TLS" => Protocol::Tls,
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            _ => return None,
        })
    }

    /// Whether the listener runs over UDP rather than TCP.
    pub fn is_udp(self) -> bool {
        self == Protocol::Udp
    }
}

/// Who defined a listener.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ListenerOwner {
    /// `Gateway` or `ListenerSet`.
    pub kind: Kind,
    /// The owning object.
    pub key: ObjectKey,
}

/// One programmed listener.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListenerTable {
    /// Listener name (unique within its owner).
    pub name: String,
    /// The Gateway or ListenerSet that defines it.
    pub owner: ListenerOwner,
    /// Port.
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
    /// Hostname the listener is restricted to.
    pub hostname: Option<String>,
    /// TLS settings (HTTPS and TLS listeners).
    pub tls: Option<ListenerTlsTable>,
    /// HTTPRoute rules attached here (shared with the data plane's index: see [`Shared`]).
    pub http: Vec<Shared<HttpRouteEntry>>,
    /// The HTTP matches across all `http` entries, in precedence order: (entry, match) indices.
    pub http_order: Vec<(usize, usize)>,
    /// GRPCRoute rules attached here (shared with the data plane's index: see [`Shared`]).
    pub grpc: Vec<Shared<GrpcRouteEntry>>,
    /// The gRPC matches across all `grpc` entries, in precedence order: (entry, match) indices.
    pub grpc_order: Vec<(usize, usize)>,
    /// TLSRoutes (by SNI), TCPRoutes or UDPRoutes attached here, in precedence order.
    pub l4: Vec<L4RouteEntry>,
}

/// TLS settings of a listener.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListenerTlsTable {
    /// Terminate or Passthrough.
    pub mode: TlsMode,
    /// Valid certificates, in certificateRefs order.
    pub certificates: Vec<CertificateEntry>,
    /// Client certificate validation (GEP-91).
    pub client_validation: Option<ClientValidation>,
}

/// A certificate with the Secret it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CertificateEntry {
    /// The Secret.
    pub secret: ObjectKey,
    /// The validated PEM (the key is never serialized).
    pub pair: CertificatePair,
}

/// Frontend client-certificate validation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClientValidation {
    /// Reject clients without a valid certificate (`AllowValidOnly`) or not.
    pub allow_insecure_fallback: bool,
    /// Trusted CA bundles (PEM).
    #[serde(skip)]
    pub ca_pem: Vec<String>,
}

/// Tie-breakers between routes: oldest first, then namespace/name.
///
/// Gateway API: "If ties still exist across multiple Routes, matching precedence MUST be
/// determined in order of the following criteria: The oldest Route based on creation timestamp.
/// The Route appearing first in alphabetical order by {namespace}/{name}."
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct RouteOrder {
    /// Creation time in nanoseconds since the epoch; routes without one sort last.
    pub created: Option<i128>,
    /// Namespace and name.
    pub key: ObjectKey,
}

impl RouteOrder {
    fn rank(&self) -> (bool, i128, &ObjectKey) {
        (self.created.is_none(), self.created.unwrap_or(0), &self.key)
    }

    /// Compares by the spec's tie-breakers (an absent timestamp sorts after every present one).
    pub fn spec_cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

/// A value match for headers and query parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValueMatch {
    /// Header name (as written; compare case-insensitively) or query parameter name (exact).
    pub name: String,
    /// Exact or regular expression.
    pub kind: StringMatchType,
    /// Value or pattern (regex validated at compile time).
    pub value: String,
}

/// A path match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathMatch {
    /// Exact, PathPrefix or RegularExpression.
    pub kind: PathMatchType,
    /// Value; prefixes have no trailing `/` except the root `/`.
    pub value: String,
}

impl PathMatch {
    /// The cookie `Path` for a session established through this match (GEP-1619: "For an
    /// xRoute using a path that is a regex, the Path should be set to the longest non-regex
    /// prefix"): Exact and PathPrefix use their value; a regular expression its literal prefix
    /// up to the last `/` (at least `/`).
    pub fn cookie_path(&self) -> String {
        match self.kind {
            PathMatchType::Exact | PathMatchType::PathPrefix => self.value.clone(),
            PathMatchType::RegularExpression => {
                let body = self.value.strip_prefix('^').unwrap_or(&self.value);
                let literal_end = body
                    .find(|c: char| !(c.is_ascii_alphanumeric() || "/-_~".contains(c)))
                    .unwrap_or(body.len());
                let literal = &body[..literal_end];
                match literal.rfind('/') {
                    Some(0) | None => "/".to_owned(),
                    Some(i) => literal[..i].to_owned(),
                }
            }
        }
    }
}

/// One HTTPRoute match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpMatch {
    /// Path.
    pub path: PathMatch,
    /// Method.
    pub method: Option<String>,
    /// Headers (all must match).
    pub headers: Vec<ValueMatch>,
    /// Query parameters (all must match).
    pub query: Vec<ValueMatch>,
}

/// The tie-breakers shared by HTTPRoute and GRPCRoute matches, after their own criteria:
/// [`RouteOrder`] (oldest route first; objects without a creation time last; then
/// namespace/name), then rule order, then match order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct TieBreak {
    /// See [`age`].
    route_age: (bool, i128),
    route_key: ObjectKey,
    rule: usize,
    match_index: usize,
}

/// The first tie-breaker: oldest route first, routes without a creation time last.
fn age(order: &RouteOrder) -> (bool, i128) {
    (order.created.is_none(), order.created.unwrap_or(0))
}

impl TieBreak {
    fn new(order: &RouteOrder, rule: usize, match_index: usize) -> Self {
        TieBreak {
            route_age: age(order),
            route_key: order.key.clone(),
            rule,
            match_index,
        }
    }

    fn decided_by(&self, other: &Self) -> Precedence {
        if self.route_age != other.route_age {
            Precedence::CreationTimestamp
        } else if self.route_key != other.route_key {
            Precedence::RouteName
        } else if self.rule != other.rule {
            Precedence::RuleOrder
        } else if self.match_index != other.match_index {
            Precedence::MatchOrder
        } else {
            Precedence::Same
        }
    }
}

/// The explicit precedence key of an HTTPRoute match; smaller sorts first.
///
/// HTTPRoute spec: "precedence must be given to the match having: Exact path match. Prefix path
/// match with largest number of characters. Method match. Largest number of header matches.
/// Largest number of query param matches." Then the [`RouteOrder`] tie-breakers, then rule order,
/// then match order. RegularExpression paths (implementation-specific) rank after every Exact and
/// PathPrefix match, longer patterns first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HttpMatchKey {
    rank: MatchRank,
    tie: TieBreak,
}

/// The HTTPRoute spec's own precedence criteria of a match, in the spec's order (the
/// tie-breakers follow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct MatchRank {
    /// Exact, PathPrefix, RegularExpression.
    path_class: u8,
    path_len: Reverse<usize>,
    no_method: bool,
    headers: Reverse<usize>,
    query: Reverse<usize>,
}

impl MatchRank {
    /// The rank as one integer that sorts as the rank does: the fields from the most
    /// significant bits down, the reversed ones complemented. Header and query match counts
    /// are kept to 30 bits (a rule cannot hold 2^30 matches: the CRD allows 16 of each).
    fn packed(self) -> u128 {
        const COUNT: u128 = (1 << 30) - 1;
        let count = |n: usize| u128::try_from(n).map_or(COUNT, |n| n.min(COUNT));
        let len = u64::try_from(self.path_len.0).unwrap_or(u64::MAX);
        (u128::from(self.path_class) << 126)
            | (u128::from(u64::MAX - len) << 62)
            | (u128::from(self.no_method) << 61)
            | ((COUNT - count(self.headers.0)) << 31)
            | ((COUNT - count(self.query.0)) << 1)
    }

    fn of(m: &HttpMatch) -> Self {
        MatchRank {
            path_class: match m.path.kind {
                PathMatchType::Exact => 0,
                PathMatchType::PathPrefix => 1,
                PathMatchType::RegularExpression => 2,
            },
            path_len: Reverse(m.path.value.len()),
            no_method: m.method.is_none(),
            headers: Reverse(m.headers.len()),
            query: Reverse(m.query.len()),
        }
    }
}

/// The (entry, match) pairs of a listener's HTTPRoute rules in precedence order: the order of
/// their [`HttpMatchKey`]s, compared without copying each route's key into a key of its own.
pub(crate) fn http_precedence(entries: &[Shared<HttpRouteEntry>]) -> Vec<(usize, usize)> {
    let pairs = || {
        entries
            .iter()
            .enumerate()
            .flat_map(|(e, entry)| (0..entry.matches.len()).map(move |m| (e, m)))
    };
    // HttpMatchKey's criteria, packed into one integer: a sort of 5,000 keys compared five
    // fields and moved 112-byte keys (5 million instructions per compile at 5,000 routes).
    let rank = |e: usize, m: usize| MatchRank::of(&entries[e].matches[m]).packed();
    // Entries are placed route by route in key order, rules in order: then the rest of the
    // tie-break (route key, rule index) is the entry's position, and no key is compared.
    let in_key_order = entries
        .windows(2)
        .all(|w| (&w[0].route.key, w[0].rule_index) <= (&w[1].route.key, w[1].rule_index));
    if in_key_order {
        // The whole key as two integers: the rank, then age, entry and match packed. A sort
        // of 5,000 keys compared tuples field by field (3.4 million instructions per compile).
        let packed: Option<Vec<[u128; 2]>> = pairs()
            .map(|(e, m)| Some([rank(e, m), packed_tail(entries[e].route.created, e, m)?]))
            .collect();
        if let Some(mut keys) = packed {
            keys.sort_unstable();
            return keys.iter().map(|k| unpack_tail(k[1])).collect();
        }
    }
    // Keys computed once, side by side (they borrow the route keys, no copy).
    let mut all: Vec<(usize, usize)> = pairs().collect();
    let spec = |e: usize, m: usize| (rank(e, m), age(&entries[e].route));
    if in_key_order {
        all.sort_by_cached_key(|&(e, m)| (spec(e, m), e, m));
    } else {
        all.sort_by_cached_key(|&(e, m)| {
            (spec(e, m), &entries[e].route.key, entries[e].rule_index, m)
        });
    }
    all
}

/// Bits of [`packed_tail`]: the entry index, the match index below it.
const TAIL_ENTRY_BITS: u32 = 32;
const TAIL_MATCH_BITS: u32 = 25;
/// Creation times (nanoseconds) from -2^69 to 2^69 exclusive: every time a `Timestamp` holds
/// (years -9999 to 9999), offset to be positive; one more value for "no timestamp".
const TAIL_AGE_OFFSET: i128 = 1 << 69;

/// The tie-break of [`http_precedence`] for entries in key order (age, then entry position,
/// then match index) as one integer that sorts as the tuple does; `None` when a value does not
/// fit its bits (the sort then compares the tuple).
fn packed_tail(created: Option<i128>, entry: usize, m: usize) -> Option<u128> {
    let age = match created {
        // Routes without a timestamp sort after every route with one.
        None => 2 * TAIL_AGE_OFFSET,
        Some(c) if (-TAIL_AGE_OFFSET..TAIL_AGE_OFFSET).contains(&c) => c + TAIL_AGE_OFFSET,
        Some(_) => return None,
    };
    let age = u128::try_from(age).ok()?;
    let entry = u128::try_from(entry)
        .ok()
        .filter(|&e| e < 1 << TAIL_ENTRY_BITS)?;
    let m = u128::try_from(m)
        .ok()
        .filter(|&m| m < 1 << TAIL_MATCH_BITS)?;
    Some((age << (TAIL_ENTRY_BITS + TAIL_MATCH_BITS)) | (entry << TAIL_MATCH_BITS) | m)
}

/// The (entry, match) pair of a [`packed_tail`].
fn unpack_tail(tail: u128) -> (usize, usize) {
    let field = |shift: u32, bits: u32| {
        usize::try_from((tail >> shift) & ((1 << bits) - 1)).unwrap_or(usize::MAX)
    };
    (
        field(TAIL_MATCH_BITS, TAIL_ENTRY_BITS),
        field(0, TAIL_MATCH_BITS),
    )
}

impl HttpMatchKey {
    /// The key of match `match_index` of rule `rule` of a route.
    pub fn new(m: &HttpMatch, order: &RouteOrder, rule: usize, match_index: usize) -> Self {
        HttpMatchKey {
            rank: MatchRank::of(m),
            tie: TieBreak::new(order, rule, match_index),
        }
    }
}

impl HttpMatchKey {
    /// The precedence criterion that orders `self` and `other`: the first one, in the order of
    /// the spec's list, in which they differ. For "explain" tooling: why one match beat
    /// another.
    pub fn decided_by(&self, other: &Self) -> Precedence {
        let (a, b) = (&self.rank, &other.rank);
        if a.path_class != b.path_class {
            Precedence::PathType
        } else if a.path_len != b.path_len {
            Precedence::PathLength
        } else if a.no_method != b.no_method {
            Precedence::Method
        } else if a.headers != b.headers {
            Precedence::HeaderCount
        } else if a.query != b.query {
            Precedence::QueryCount
        } else {
            self.tie.decided_by(&other.tie)
        }
    }
}

/// A criterion of the route match precedence order (see [`HttpMatchKey`] and
/// [`GrpcMatchKey`]), as reported by their `decided_by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub enum Precedence {
    /// Path match type: Exact, then PathPrefix, then RegularExpression.
    PathType,
    /// The longer path value (PathPrefix: "largest number of characters"; regular
    /// expressions: the longer pattern).
    PathLength,
    /// A match with a method before one without.
    Method,
    /// More header matches.
    HeaderCount,
    /// More query parameter matches.
    QueryCount,
    /// gRPC: more characters in the matching service.
    ServiceLength,
    /// gRPC: more characters in the matching method.
    MethodLength,
    /// The older route by creation timestamp.
    CreationTimestamp,
    /// The route first in alphabetical order by `{namespace}/{name}`.
    RouteName,
    /// The earlier rule within the route.
    RuleOrder,
    /// The earlier match within the rule.
    MatchOrder,
    /// Equal keys: the same match.
    Same,
}

impl Precedence {
    /// The rule in words, as the spec states it.
    pub fn describe(self) -> &'static str {
        match self {
            Precedence::PathType => {
                "path match type: Exact before PathPrefix before RegularExpression"
            }
            Precedence::PathLength => "path match with the largest number of characters",
            Precedence::Method => "method match",
            Precedence::HeaderCount => "largest number of header matches",
            Precedence::QueryCount => "largest number of query param matches",
            Precedence::ServiceLength => "characters in a matching service",
            Precedence::MethodLength => "characters in a matching method",
            Precedence::CreationTimestamp => "the oldest Route based on creation timestamp",
            Precedence::RouteName => {
                "the Route appearing first in alphabetical order by {namespace}/{name}"
            }
            Precedence::RuleOrder => "the first matching rule (in list order) within the Route",
            Precedence::MatchOrder => "the first match (in list order) within the rule",
            Precedence::Same => "the same match",
        }
    }
}

/// One GRPCRoute match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrpcMatch {
    /// Service/method; `None` matches every method.
    pub method: Option<GrpcMethodMatch>,
    /// Header (metadata) matches.
    pub headers: Vec<ValueMatch>,
}

/// The explicit precedence key of a GRPCRoute match; smaller sorts first.
///
/// GRPCRoute spec: "Precedence MUST be given to the rule with the largest number of: Characters
/// in a matching non-wildcard hostname. Characters in a matching hostname. Characters in a
/// matching service. Characters in a matching method. Header matches." Hostnames are handled by
/// the per-hostname index; within a hostname, this key orders the rest, then [`RouteOrder`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GrpcMatchKey {
    service: Reverse<usize>,
    method: Reverse<usize>,
    headers: Reverse<usize>,
    tie: TieBreak,
}

impl GrpcMatchKey {
    /// The key of a gRPC match.
    pub fn new(m: &GrpcMatch, order: &RouteOrder, rule: usize, match_index: usize) -> Self {
        let (service, method) = m.method.as_ref().map_or((0, 0), |mm| {
            (
                mm.service.as_deref().map_or(0, str::len),
                mm.method.as_deref().map_or(0, str::len),
            )
        });
        GrpcMatchKey {
            service: Reverse(service),
            method: Reverse(method),
            headers: Reverse(m.headers.len()),
            tie: TieBreak::new(order, rule, match_index),
        }
    }
}

impl GrpcMatchKey {
    /// The precedence criterion that orders `self` and `other` (see
    /// [`HttpMatchKey::decided_by`]).
    pub fn decided_by(&self, other: &Self) -> Precedence {
        if self.service != other.service {
            Precedence::ServiceLength
        } else if self.method != other.method {
            Precedence::MethodLength
        } else if self.headers != other.headers {
            Precedence::HeaderCount
        } else {
            self.tie.decided_by(&other.tie)
        }
    }
}

/// What a rule does with a request it matched.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleAction {
    /// Filters, in order.
    pub filters: Vec<HttpFilter>,
    /// Weighted backends; empty with no redirect filter means 500.
    pub backends: Vec<WeightedBackend>,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Retry policy.
    pub retry: Option<Box<Retry>>,
    /// Session persistence of the rule (GEP-1619), validated; it covers every backend of the
    /// rule and overrides the backends' own (XBackendTrafficPolicy) session persistence.
    pub session_persistence: Option<Box<SessionConfig>>,
}

/// A table entry behind a reference count, so that the data plane's index (and anything else
/// that keeps entries beyond the table's life) holds the same entry instead of a copy: at 5,000
/// routes a copy of every rule in the router's index costs megabytes.
///
/// It reads as the entry ([`Deref`]); writing through it ([`DerefMut`]) copies the entry first
/// when another holder shares it (copy on write, [`Arc::make_mut`]), so no holder ever sees
/// another's change. [`Shared::ptr_eq`] tells whether two holders share one entry.
///
/// ```
/// use gw_model::table::Shared;
///
/// let mut a = Shared::new(String::from("rule"));
/// let b = a.clone();
/// assert!(Shared::ptr_eq(&a, &b));
/// a.push_str(" changed"); // copies: `b` still reads "rule"
/// assert_eq!((a.as_str(), b.as_str()), ("rule changed", "rule"));
/// assert!(!Shared::ptr_eq(&a, &b));
/// ```
#[derive(Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Shared<T>(Arc<T>);

impl<T> Shared<T> {
    /// Wraps an entry.
    pub fn new(value: T) -> Self {
        Shared(Arc::new(value))
    }

    /// Whether both hold the same entry (not a copy).
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }

    /// The shared entry.
    pub fn as_arc(&self) -> &Arc<T> {
        &self.0
    }
}

impl<T> Clone for Shared<T> {
    /// Another holder of the same entry (a reference-count increment).
    fn clone(&self) -> Self {
        Shared(Arc::clone(&self.0))
    }
}

impl<T> From<T> for Shared<T> {
    fn from(value: T) -> Self {
        Shared::new(value)
    }
}

impl<T> Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Clone> DerefMut for Shared<T> {
    /// The entry, copied first if another holder shares it.
    fn deref_mut(&mut self) -> &mut T {
        Arc::make_mut(&mut self.0)
    }
}

/// One HTTPRoute rule attached to a listener.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpRouteEntry {
    /// The route.
    pub route: RouteOrder,
    /// Rule index within the route.
    pub rule_index: usize,
    /// Rule name, if any.
    pub rule_name: Option<String>,
    /// Hostnames served on this listener (empty: every hostname the listener accepts).
    pub hostnames: Vec<String>,
    /// Matches (ORed).
    pub matches: Vec<HttpMatch>,
    /// What to do.
    pub action: RuleAction,
    /// The effective TrafficPolicy of this rule on this listener (`None`: no policy applies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<Box<RulePolicy>>,
}

/// One GRPCRoute rule attached to a listener.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GrpcRouteEntry {
    /// The route.
    pub route: RouteOrder,
    /// Rule index within the route.
    pub rule_index: usize,
    /// Rule name, if any.
    pub rule_name: Option<String>,
    /// Hostnames served on this listener (empty: every hostname).
    pub hostnames: Vec<String>,
    /// Matches (ORed); a rule without matches matches everything.
    pub matches: Vec<GrpcMatch>,
    /// What to do.
    pub action: RuleAction,
    /// The effective TrafficPolicy of this rule on this listener (`None`: no policy applies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<Box<RulePolicy>>,
}

/// A TLSRoute, TCPRoute or UDPRoute attached to a listener.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct L4RouteEntry {
    /// Kind of route.
    pub kind: Kind,
    /// The route.
    pub route: RouteOrder,
    /// SNI hostnames (TLSRoute; empty: any).
    pub hostnames: Vec<String>,
    /// Weighted backends.
    pub backends: Vec<WeightedBackend>,
}

/// Request and backend-request timeouts (GEP-1742). `None`: no timeout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Timeouts {
    /// Whole request, including retries.
    pub request: Option<Duration>,
    /// Each request to a backend.
    pub backend_request: Option<Duration>,
}

/// Retry policy (GEP-1731).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Retry {
    /// Retried status codes.
    pub codes: Vec<u16>,
    /// Maximum retries. Unset in the spec is implementation-specific; gw retries once.
    pub attempts: u32,
    /// Minimum backoff.
    pub backoff: Option<Duration>,
}

/// Session persistence (GEP-1619), validated: from a route rule's `sessionPersistence` or an
/// XBackendTrafficPolicy's.
///
/// The session token identifies an endpoint (and with it the backend) of the rule; how it is
/// encoded is up to the data plane. Sessions are never shared between route rules, even when
/// the configuration comes from a policy on a Service that several rules use (GEP-1619: "Route
/// rules referencing the same service MUST NOT share persistent sessions").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionConfig {
    /// Where the token travels.
    pub kind: SessionKind,
    /// Cookie or header name: `sessionName`, or a name derived from the rule or policy
    /// (`gw-session-` and 8 hex digits) when it is unset (GEP-1619: "If SessionName is not
    /// specified, then a unique cookie name should be generated").
    pub name: String,
    /// A session older than this is over (`absoluteTimeout`).
    pub absolute_timeout: Option<Duration>,
    /// A session unused for this long is over (`idleTimeout`).
    pub idle_timeout: Option<Duration>,
}

/// How a session token travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SessionKind {
    /// A cookie set by the gateway.
    Cookie {
        /// `lifetimeType: Permanent`: the cookie gets `Max-Age` from `absoluteTimeout`;
        /// otherwise it is a session cookie (no `Expires`/`Max-Age`).
        permanent: bool,
    },
    /// A header: the gateway sends it in responses, the client echoes it in requests.
    Header,
}

/// The retry budget of a backend (GEP-3388, XBackendTrafficPolicy `retryConstraint`).
///
/// A retry is allowed while retries make up at most `percent` of the requests sent to the
/// backend in the last `interval`, or while fewer than `min_retry_count` retries were sent in
/// the last `min_retry_interval`. A retry that is not allowed is answered 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RetryBudget {
    /// Largest share of retries, 0 to 100.
    pub percent: u32,
    /// Window of the share (1 s to 1 h).
    pub interval: Duration,
    /// Retries always allowed per `min_retry_interval` (at least 1).
    pub min_retry_count: u32,
    /// Window of the minimum (above 0, at most 1 h).
    pub min_retry_interval: Duration,
}

/// What an accepted XBackendTrafficPolicy sets on a backend.
///
/// ```
/// use gw_model::resources::{Kind, ObjectKey, Resources};
/// use gw_model::status::ObjectStatus;
/// use gw_model::table::{Backend, SessionKind};
/// use gw_model::{CompileOptions, compile, load};
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
/// spec: {gatewayClassName: gw, listeners: [{name: http, port: 80, protocol: HTTP}]}
/// ---
/// apiVersion: v1
/// kind: Service
/// metadata: {name: web, namespace: default}
/// spec: {ports: [{port: 80}]}
/// ---
/// apiVersion: gateway.networking.k8s.io/v1
/// kind: HTTPRoute
/// metadata: {name: web, namespace: default}
/// spec:
///   parentRefs: [{name: edge}]
///   rules: [{backendRefs: [{name: web, port: 80}]}]
/// ---
/// apiVersion: gateway.networking.x-k8s.io/v1alpha1
/// kind: XBackendTrafficPolicy
/// metadata: {name: web, namespace: default}
/// spec:
///   targetRefs: [{group: "", kind: Service, name: web}]
///   retryConstraint: {budget: {percent: 25}}
///   sessionPersistence: {type: Header, sessionName: x-session}
/// "#;
/// let mut res = Resources::new();
/// res.extend(load::parse("policy.yaml", yaml).objects);
/// let compiled = compile(&res, &CompileOptions::new("gw.dev/gateway"));
///
/// let rule = &compiled.table.gateways[0].listeners[0].http[0];
/// let Backend::Service(web) = &rule.action.backends[0].backend else { panic!() };
/// let traffic = web.traffic.as_ref().expect("the policy applies");
/// assert_eq!(traffic.retry_budget.map(|b| b.percent), Some(25));
/// assert_eq!(traffic.session.as_ref().map(|s| s.kind), Some(SessionKind::Header));
///
/// // GEP-713 status: accepted on the Gateway whose route uses the Service.
/// let Some(ObjectStatus::Policy(status)) = compiled
///     .status
///     .get(Kind::XBackendTrafficPolicy, &ObjectKey::new("default", "web"))
/// else { panic!() };
/// assert_eq!(status.ancestors[0].ancestor_ref.name, "edge");
/// assert_eq!(status.ancestors[0].conditions[0].reason, "Accepted");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendTraffic {
    /// The policy.
    pub policy: ObjectKey,
    /// Retry budget (`retryConstraint`).
    pub retry_budget: Option<RetryBudget>,
    /// Session persistence, unless the route rule sets its own.
    pub session: Option<SessionConfig>,
}

/// A compiled filter.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub enum HttpFilter {
    /// Modify request headers.
    RequestHeaderModifier(HeaderModifier),
    /// Modify response headers.
    ResponseHeaderModifier(HeaderModifier),
    /// Answer with a redirect.
    RequestRedirect(RequestRedirect),
    /// Rewrite host/path before forwarding.
    UrlRewrite(UrlRewrite),
    /// Mirror to a backend.
    RequestMirror {
        /// The mirror backend.
        backend: Backend,
        /// Mirrored share as numerator/denominator.
        fraction: (u32, u32),
    },
    /// CORS.
    Cors(Cors),
    /// External authorization (GEP-1494).
    ExternalAuth {
        /// `HTTP` or `GRPC`.
        protocol: String,
        /// The auth service.
        backend: Backend,
        /// The filter as written.
        config: Box<crate::resources::ExternalAuth>,
    },
    /// A filter that could not be resolved: requests get a 500 (HTTPRoute spec: "requests that
    /// would have been processed by that filter MUST receive a HTTP error response").
    Unresolved {
        /// Why.
        reason: String,
    },
}

/// A backend with its weight and backend-level filters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeightedBackend {
    /// Relative weight.
    pub weight: u32,
    /// The backend.
    pub backend: Backend,
    /// Filters applied when this backend is picked.
    pub filters: Vec<HttpFilter>,
}

/// Application protocol towards a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum AppProtocol {
    /// HTTP/1.1 (also the default for unspecified).
    Http1,
    /// Cleartext HTTP/2 (`kubernetes.io/h2c`).
    H2c,
    /// WebSocket over HTTP/1.1 (`kubernetes.io/ws`).
    WebSocket,
    /// HTTP over TLS (`https`, `kubernetes.io/wss`).
    Https,
    /// Raw TCP/UDP (L4 routes).
    Raw,
}

/// A resolved backend.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub enum Backend {
    /// A Service port with its ready endpoints.
    Service(ServiceBackend),
    /// A backend outside the cluster, reached by DNS name (`XBackend` of type
    /// `ExternalHostname`). The data plane resolves the name.
    External(Box<ExternalBackend>),
    /// A reference that could not be resolved: its share of requests is answered 500.
    Invalid {
        /// Why (for logs and the config dump).
        reason: String,
    },
}

/// A Service port resolved to endpoints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceBackend {
    /// The Service.
    pub service: ObjectKey,
    /// Service port.
    pub port: u16,
    /// Protocol to speak.
    pub app_protocol: AppProtocol,
    /// Ready endpoints (IP and target port). Empty: 503.
    pub endpoints: Vec<SocketAddr>,
    /// Backend TLS (BackendTLSPolicy), when a valid policy targets this port.
    pub tls: Option<Box<BackendTls>>,
    /// Retry budget and session persistence (XBackendTrafficPolicy), when an accepted policy
    /// targets this Service.
    pub traffic: Option<Box<BackendTraffic>>,
}

/// An `XBackend` of type `ExternalHostname`: a DNS name and port, with its TLS settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExternalBackend {
    /// The XBackend.
    pub backend: ObjectKey,
    /// The DNS name to resolve and connect to.
    pub hostname: String,
    /// The port.
    pub port: u16,
    /// Protocol to speak.
    pub app_protocol: AppProtocol,
    /// TLS towards the backend (`spec.tls` with mode `ServerOnly` or `ClientAndServer`).
    pub tls: Option<Box<BackendTls>>,
    /// The client certificate of mode `ClientAndServer`; it replaces the Gateway's
    /// (GEP-3155) for this backend.
    pub client_certificate: Option<CertificatePair>,
    /// Retry budget and session persistence (XBackendTrafficPolicy), when an accepted policy
    /// targets this XBackend.
    pub traffic: Option<Box<BackendTraffic>>,
}

/// TLS towards a backend (BackendTLSPolicy, GEP-1897).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendTls {
    /// The policy.
    pub policy: ObjectKey,
    /// SNI and, without `subject_alt_names`, the name to verify.
    pub hostname: String,
    /// Trusted CA bundles (PEM); empty with `system_roots`.
    #[serde(skip)]
    pub ca_pem: Vec<String>,
    /// Trust the platform's roots.
    pub system_roots: bool,
    /// Names to verify instead of `hostname`: DNS names and URIs.
    pub subject_alt_names: Vec<SubjectAltNameMatch>,
}

/// A SAN to verify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum SubjectAltNameMatch {
    /// A DNS name.
    Dns(String),
    /// A URI.
    Uri(String),
}

/// The effective [`TrafficPolicy`](crate::resources::TrafficPolicy) of one route rule on one
/// listener: for each section, the settings of the policy that won it (GEP-713 defaults and
/// overrides; see [`compile`](crate::compile())). Plain, validated data; a data plane builds
/// its policy layers from it once per table.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RulePolicy {
    /// CORS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<Applied<Cors>>,
    /// Rate limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<Applied<RateLimitSettings>>,
    /// Basic authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<Applied<BasicAuthSettings>>,
    /// API keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_auth: Option<Applied<ApiKeySettings>>,
    /// JWT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<Applied<JwtSettings>>,
    /// External authorization.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ext_auth: Option<Applied<ExtAuthSettings>>,
    /// CEL transformations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transformation: Option<Applied<TransformationSettings>>,
}

impl RulePolicy {
    /// Whether no section applies.
    pub fn is_empty(&self) -> bool {
        self.cors.is_none()
            && self.rate_limit.is_none()
            && self.basic_auth.is_none()
            && self.api_key_auth.is_none()
            && self.jwt.is_none()
            && self.ext_auth.is_none()
            && self.transformation.is_none()
    }
}

/// Validated external authorization settings (TrafficPolicy `extAuth`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtAuthSettings {
    /// The auth service, resolved as the `ExternalAuth` filter's backendRef is;
    /// [`Backend::Invalid`] when it does not resolve (requests through the policy then get
    /// 500, and the policy reports `ResolvedRefs` false).
    pub backend: Backend,
    /// The `ExternalAuth` fields as written (protocol, `http`, `grpc`, `forwardBody`),
    /// validated as the filter's are.
    pub config: crate::resources::ExternalAuth,
    /// How long the auth service has to answer.
    pub timeout: Duration,
    /// Whether a request goes on when the auth service cannot be asked (`false`: 403).
    pub fail_open: bool,
}

/// Header edits of a transformation: header names validated and lowercase, each named once
/// across `set`, `add` and `remove`; values are CEL expressions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HeaderEdits {
    /// `(name, expression)`: the header is replaced by the value.
    pub set: Vec<(String, String)>,
    /// `(name, expression)`: the value is appended.
    pub add: Vec<(String, String)>,
    /// Headers removed.
    pub remove: Vec<String>,
}

impl HeaderEdits {
    /// Whether there is no edit.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// Validated transformation settings (TrafficPolicy `transformation`). gw-model checks the
/// structure; the expressions are compiled by the data plane's
/// [`PolicyValidator`](crate::compile::PolicyValidator).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TransformationSettings {
    /// Request header edits.
    pub request: HeaderEdits,
    /// A CEL expression giving the new request path.
    pub path: Option<String>,
    /// Response header edits.
    pub response: HeaderEdits,
}

/// Which block of a policy a section comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum PolicyBlock {
    /// `spec.default`.
    Default,
    /// `spec.override`.
    Override,
}

/// A section of a policy as it applies to a rule, with where it comes from.
///
/// Two rules whose section comes from the same policy, target and block share `settings`
/// (the same `Arc`): a data plane keys shared state (rate-limit buckets) on
/// [`Applied::origin`], so a limit attached to a Gateway counts the Gateway's traffic as a
/// whole and one attached to a route counts that route's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Applied<T> {
    /// The policy.
    pub policy: ObjectKey,
    /// Index of the policy's `targetRefs` entry through which it applies.
    pub target: usize,
    /// `default` or `override`.
    pub block: PolicyBlock,
    /// The settings.
    pub settings: std::sync::Arc<T>,
}

impl<T> Applied<T> {
    /// The identity of this section's source: policy, target and block.
    pub fn origin(&self) -> (&ObjectKey, usize, PolicyBlock) {
        (&self.policy, self.target, self.block)
    }
}

/// What a rate limit counts requests against.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub enum RateLimitKey {
    /// Every request of the target shares one bucket.
    Shared,
    /// One bucket per client IP.
    ClientIp,
    /// One bucket per value of this (validated, lowercase) header.
    Header(String),
}

/// A validated rate limit: a token bucket of `burst` tokens refilled at `requests` per
/// `period`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RateLimitSettings {
    /// Tokens per period (at least 1).
    pub requests: u32,
    /// The period.
    pub period: Duration,
    /// Bucket size (at least 1).
    pub burst: u32,
    /// What requests are counted against.
    pub key: RateLimitKey,
}

/// Validated basic authentication settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BasicAuthSettings {
    /// The realm of `WWW-Authenticate`.
    pub realm: String,
    /// The Secret the htpasswd file came from.
    pub secret: ObjectKey,
    /// The htpasswd file (never serialized).
    #[serde(skip)]
    pub htpasswd: String,
}

/// Where API keys are read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub enum ApiKeyLocation {
    /// A request header (validated, lowercase).
    Header(String),
    /// A query parameter.
    Query(String),
}

/// Validated API key settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeySettings {
    /// Where keys are read.
    pub location: ApiKeyLocation,
    /// Client names, in order.
    pub clients: Vec<String>,
    /// `(client, key)` pairs (never serialized).
    #[serde(skip)]
    pub keys: Vec<(String, Vec<u8>)>,
}

/// Where a JWT provider's keys come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum JwksSettings {
    /// A JWKS document (JSON) given in the configuration (inline, Secret or ConfigMap); never
    /// serialized.
    Static(#[serde(skip)] String),
    /// A JWKS fetched over HTTPS.
    Remote(RemoteJwksSettings),
}

/// A JWKS served over HTTPS: fetched by the data plane, cached for `cache_duration` and
/// refreshed in the background.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteJwksSettings {
    /// The `https://` URL, validated (scheme, host, optional port, no user information, no
    /// fragment).
    pub uri: String,
    /// How long a fetched set is used before it is fetched again.
    pub cache_duration: Duration,
    /// CA bundles (PEM) trusted for the server's certificate; empty: the platform's roots.
    #[serde(skip)]
    pub ca_pem: Vec<String>,
}

/// Validated JWT settings: a token passes when one provider accepts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JwtSettings {
    /// The providers, in order.
    pub providers: Vec<JwtProviderSettings>,
}

/// One JWT provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JwtProviderSettings {
    /// Provider name.
    pub name: String,
    /// Required issuer, if any.
    pub issuer: Option<String>,
    /// Accepted audiences (empty: any).
    pub audiences: Vec<String>,
    /// Where the keys came from (`inline`, `Secret ns/name key`, the URL, ...), for humans.
    pub jwks_source: String,
    /// The keys: a document, or a URL to fetch them from.
    pub jwks: JwksSettings,
    /// `(claim, header)` pairs; header names validated and lowercase.
    pub claim_to_headers: Vec<(String, String)>,
    /// Tolerance for `exp` and `nbf`.
    pub clock_skew: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rank(path_class: u8, path_len: usize, no_method: bool, h: usize, q: usize) -> MatchRank {
        MatchRank {
            path_class,
            path_len: Reverse(path_len),
            no_method,
            headers: Reverse(h),
            query: Reverse(q),
        }
    }

    proptest! {
        /// HTTPRoute spec precedence ("Exact path match. Prefix path match with largest number
        /// of characters. Method match. Largest number of header matches. Largest number of
        /// query param matches."): the packed rank the table sorts by orders matches exactly
        /// as the rank's fields do.
        #[test]
        fn packed_rank_sorts_as_the_rank(
            a in (0u8..3, 0usize..5000, any::<bool>(), 0usize..20, 0usize..20),
            b in (0u8..3, 0usize..5000, any::<bool>(), 0usize..20, 0usize..20),
        ) {
            let (a, b) = (rank(a.0, a.1, a.2, a.3, a.4), rank(b.0, b.1, b.2, b.3, b.4));
            prop_assert_eq!(a.packed().cmp(&b.packed()), a.cmp(&b));
        }
    }

    proptest! {
        /// HTTPRoute spec tie-breakers ("The oldest Route based on creation timestamp", then
        /// the route's name, rule and match order; the name and rule order are the entry's
        /// position when entries are in key order): the packed tail sorts as they do, and
        /// gives the entry and match back.
        #[test]
        fn packed_tail_sorts_as_age_entry_match(
            a in (proptest::option::of(-(1i128 << 69)..(1i128 << 69)), 0usize..1 << 32, 0usize..1 << 25),
            b in (proptest::option::of(-(1i128 << 69)..(1i128 << 69)), 0usize..1 << 32, 0usize..1 << 25),
        ) {
            let (pa, pb) = (packed_tail(a.0, a.1, a.2), packed_tail(b.0, b.1, b.2));
            let (pa, pb) = (pa.expect("fits"), pb.expect("fits"));
            let key = |x: &(Option<i128>, usize, usize)| (age_of(x.0), x.1, x.2);
            prop_assert_eq!(pa.cmp(&pb), key(&a).cmp(&key(&b)));
            prop_assert_eq!(unpack_tail(pa), (a.1, a.2));
        }
    }

    fn age_of(created: Option<i128>) -> (bool, i128) {
        (created.is_none(), created.unwrap_or(0))
    }

    #[test]
    fn packed_tail_refuses_what_does_not_fit() {
        assert_eq!(packed_tail(Some(1 << 69), 0, 0), None);
        assert_eq!(packed_tail(Some(-(1 << 69) - 1), 0, 0), None);
        assert_eq!(packed_tail(Some(i128::MAX), 0, 0), None);
        assert_eq!(packed_tail(None, 1 << 32, 0), None);
        assert_eq!(packed_tail(None, 0, 1 << 25), None);
        // The newest timestamp that fits still sorts before "no timestamp".
        assert!(packed_tail(Some((1 << 69) - 1), 0, 0) < packed_tail(None, 0, 0));
    }

    #[test]
    fn packed_rank_keeps_the_extremes_in_order() {
        let exact_long = rank(0, usize::MAX, false, 0, 0);
        let exact_short = rank(0, 0, true, 16, 16);
        let prefix = rank(1, usize::MAX, false, 1 << 40, 1 << 40);
        assert!(exact_long.packed() < exact_short.packed());
        assert!(exact_short.packed() < prefix.packed());
        assert!(rank(2, 0, true, 0, 0).packed() > prefix.packed());
    }
}
