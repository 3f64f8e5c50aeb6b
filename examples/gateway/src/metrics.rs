//! Request metrics: counts by gateway, listener, route, rule, backend and status code, and
//! latency histograms, written in the Prometheus text format. L4 metrics: TCP and TLS
//! connections by outcome, UDP sessions and datagrams, by gateway, listener, route and backend.
//!
//! Labels come from [`gw_router::RouteInfo`] and the L4 routes: shared strings built once per
//! configuration, so their number is bounded by the configuration (routes and backends, never
//! paths or client addresses), and recording a request costs two hash lookups under a read
//! lock and a few atomic additions. An L4 connection or UDP session looks its series up once;
//! its bytes and datagrams are atomic additions. Series stay after a reload removes their
//! route (counters never go back).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The metrics maps: keyed by labels from the configuration (never by what a client sends),
/// looked up on every request, so hashed with foldhash (hashbrown's default) rather than
/// SipHash.
use hashbrown::{Equivalent, HashMap};

/// Histogram bucket upper bounds, in seconds: 1 ms to 10 s.
pub(crate) const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The labels of a request series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct RouteKey {
    pub gateway: Arc<str>,
    pub listener: Arc<str>,
    pub route: Arc<str>,
    pub rule: Arc<str>,
    pub backend: Arc<str>,
}

/// Histogram bucket upper bounds of L4 connection durations, in seconds: 10 ms to 1 hour.
pub(crate) const CONNECTION_BUCKETS: [f64; 10] =
    [0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 900.0, 3600.0];

/// A latency histogram (cumulative buckets are computed when written).
#[derive(Debug)]
struct Histogram {
    /// Upper bounds of the buckets, in seconds.
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Default for Histogram {
    /// A histogram of request latencies ([`BUCKETS`]).
    fn default() -> Self {
        Histogram::new(&BUCKETS)
    }
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self.bounds.partition_point(|b| *b < secs);
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Ordering::Relaxed);
            let le = self
                .bounds
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let sum = Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed)).as_secs_f64();
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(
            out,
            "{name}_count{{{labels}}} {}",
            self.count.load(Ordering::Relaxed)
        );
    }
}

/// Timings of one route series.
#[derive(Debug, Default)]
struct Timings {
    request: Histogram,
    upstream: Histogram,
    retries: AtomicU64,
}

/// What is recorded of one request.
pub(crate) struct Observation {
    pub code: u16,
    pub duration: Duration,
    /// Time to first byte from the backend, when forwarded.
    pub upstream: Option<Duration>,
    pub retries: u32,
}

/// Request counters and histograms.
#[derive(Debug, Default)]
pub(crate) struct RequestMetrics {
    counts: RwLock<HashMap<(RouteKey, u16), Arc<AtomicU64>>>,
    timings: RwLock<HashMap<RouteKey, Arc<Timings>>>,
}

/// The labels of a request series, borrowed from the request: a lookup by these writes no
/// reference count, where a [`RouteKey`] would clone five strings that every worker thread
/// shares. Hashes as [`RouteKey`] does (field by field, each as its `str`).
#[derive(Debug, Clone, Copy, Hash)]
pub(crate) struct RouteKeyRef<'a> {
    pub gateway: &'a Arc<str>,
    pub listener: &'a Arc<str>,
    pub route: &'a Arc<str>,
    pub rule: &'a Arc<str>,
    pub backend: &'a Arc<str>,
}

impl RouteKeyRef<'_> {
    fn to_key(self) -> RouteKey {
        RouteKey {
            gateway: self.gateway.clone(),
            listener: self.listener.clone(),
            route: self.route.clone(),
            rule: self.rule.clone(),
            backend: self.backend.clone(),
        }
    }
}

impl Equivalent<RouteKey> for RouteKeyRef<'_> {
    fn equivalent(&self, k: &RouteKey) -> bool {
        **self.gateway == *k.gateway
            && **self.listener == *k.listener
            && **self.route == *k.route
            && **self.rule == *k.rule
            && **self.backend == *k.backend
    }
}

/// A count series' key, borrowed; hashes as `(RouteKey, u16)` does.
#[derive(Hash)]
struct CountKeyRef<'a>(RouteKeyRef<'a>, u16);

impl Equivalent<(RouteKey, u16)> for CountKeyRef<'_> {
    fn equivalent(&self, k: &(RouteKey, u16)) -> bool {
        self.1 == k.1 && self.0.equivalent(&k.0)
    }
}

/// Runs `f` on the series of `key`, created (from `owned()`) if there is none; the series is
/// not cloned out of the map, whose lock is held meanwhile.
fn with_series<K, Q, V, R>(
    map: &RwLock<HashMap<K, Arc<V>>>,
    key: &Q,
    owned: impl FnOnce() -> K,
    f: impl FnOnce(&Arc<V>) -> R,
) -> R
where
    K: std::hash::Hash + Eq,
    Q: std::hash::Hash + Equivalent<K>,
    V: Default,
{
    if let Some(v) = map
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(key)
    {
        return f(v);
    }
    f(map
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(owned())
        .or_default())
}

/// The series of `key`, created if there is none (for series kept for a connection's life).
fn get_or_insert<K: std::hash::Hash + Eq + Clone, V: Default>(
    map: &RwLock<HashMap<K, Arc<V>>>,
    key: &K,
) -> Arc<V> {
    with_series(map, key, || key.clone(), Arc::clone)
}

impl RequestMetrics {
    /// Records one finished request.
    pub(crate) fn observe(&self, key: RouteKeyRef<'_>, o: &Observation) {
        with_series(
            &self.timings,
            &key,
            || key.to_key(),
            |timings| {
                timings.request.observe(o.duration);
                if let Some(u) = o.upstream {
                    timings.upstream.observe(u);
                }
                if o.retries > 0 {
                    timings
                        .retries
                        .fetch_add(u64::from(o.retries), Ordering::Relaxed);
                }
            },
        );
        let count = CountKeyRef(key, o.code);
        with_series(
            &self.counts,
            &count,
            || (key.to_key(), o.code),
            |c| c.fetch_add(1, Ordering::Relaxed),
        );
    }

    /// Writes the request metric families.
    pub(crate) fn write(&self, out: &mut String) {
        let counts = {
            let map = self
                .counts
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut v: Vec<_> = map.iter().map(|(k, c)| (k.clone(), c.clone())).collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let timings = {
            let map = self
                .timings
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut v: Vec<_> = map.iter().map(|(k, t)| (k.clone(), t.clone())).collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        out.push_str(
            "# HELP gw_requests_total HTTP requests answered, by gateway, listener, route, rule, backend and status code.\n\
             # TYPE gw_requests_total counter\n",
        );
        for ((key, code), c) in &counts {
            let _ = writeln!(
                out,
                "gw_requests_total{{{},code=\"{code}\"}} {}",
                labels(key),
                c.load(Ordering::Relaxed)
            );
        }
        out.push_str(
            "# HELP gw_request_duration_seconds Time from receiving the request head to the end of the response body.\n\
             # TYPE gw_request_duration_seconds histogram\n",
        );
        for (key, t) in &timings {
            t.request
                .write(out, "gw_request_duration_seconds", &labels(key));
        }
        out.push_str(
            "# HELP gw_upstream_duration_seconds Time from sending a request to a backend to its response head (retries included).\n\
             # TYPE gw_upstream_duration_seconds histogram\n",
        );
        for (key, t) in &timings {
            if t.upstream.count.load(Ordering::Relaxed) > 0 {
                t.upstream
                    .write(out, "gw_upstream_duration_seconds", &labels(key));
            }
        }
        out.push_str(
            "# HELP gw_upstream_retries_total Requests re-sent to a backend by a retry policy.\n\
             # TYPE gw_upstream_retries_total counter\n",
        );
        for (key, t) in &timings {
            if t.upstream.count.load(Ordering::Relaxed) > 0 {
                let _ = writeln!(
                    out,
                    "gw_upstream_retries_total{{{}}} {}",
                    labels(key),
                    t.retries.load(Ordering::Relaxed)
                );
            }
        }
    }
}

/// The labels of an L4 series. `listener`, `route` and `backend` are empty when the
/// connection or datagram got no further.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct L4Key {
    pub gateway: Arc<str>,
    pub listener: Arc<str>,
    pub route: Arc<str>,
    pub backend: Arc<str>,
}

/// How a TCP or TLS connection of a TLS or TCP listener went: exactly one per connection,
/// recorded when it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Connected to the backend; bytes are being copied.
    Forwarded,
    /// Handed to an HTTPS listener of the port (then measured as HTTP requests).
    Https,
    /// No listener accepts the server name, or the listener has no route for it.
    NoRoute,
    /// The route has no usable backend: weights all 0, an invalid reference, a Service
    /// without endpoints, or an external name that does not resolve.
    NoBackend,
    /// The backend refused the connection or did not accept it in time.
    BackendConnectError,
    /// No complete ClientHello within the TLS handshake timeout.
    PeekTimeout,
    /// Not TLS, a malformed or too large ClientHello.
    InvalidClientHello,
    /// The client closed the connection (or it failed) before its ClientHello was complete.
    ClientClosed,
    /// The TLS handshake of a Terminate listener failed or timed out.
    TlsHandshakeError,
}

impl Outcome {
    const ALL: [Outcome; 9] = [
        Outcome::Forwarded,
        Outcome::Https,
        Outcome::NoRoute,
        Outcome::NoBackend,
        Outcome::BackendConnectError,
        Outcome::PeekTimeout,
        Outcome::InvalidClientHello,
        Outcome::ClientClosed,
        Outcome::TlsHandshakeError,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::Forwarded => "forwarded",
            Outcome::Https => "https",
            Outcome::NoRoute => "no_route",
            Outcome::NoBackend => "no_backend",
            Outcome::BackendConnectError => "backend_connect_error",
            Outcome::PeekTimeout => "peek_timeout",
            Outcome::InvalidClientHello => "invalid_client_hello",
            Outcome::ClientClosed => "client_closed",
            Outcome::TlsHandshakeError => "tls_handshake_error",
        }
    }
}

/// The counters of one TCP series.
#[derive(Debug)]
pub(crate) struct TcpSeries {
    /// By [`Outcome`] (its discriminant, the order of [`Outcome::ALL`]).
    outcomes: [AtomicU64; Outcome::ALL.len()],
    open: AtomicU64,
    /// Bytes read from clients.
    pub received: AtomicU64,
    /// Bytes written to clients.
    pub sent: AtomicU64,
    duration: Histogram,
}

impl Default for TcpSeries {
    fn default() -> Self {
        TcpSeries {
            outcomes: Default::default(),
            open: AtomicU64::new(0),
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            duration: Histogram::new(&CONNECTION_BUCKETS),
        }
    }
}

impl TcpSeries {
    /// Counts one connection with `outcome`.
    pub(crate) fn count(&self, outcome: Outcome) {
        if let Some(c) = self.outcomes.get(outcome as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a connection as open until the guard is dropped.
    pub(crate) fn open(self: &Arc<Self>) -> OpenGuard {
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(self.clone())
    }

    /// Records how long a forwarded connection lasted.
    pub(crate) fn observe_duration(&self, d: Duration) {
        self.duration.observe(d);
    }

    fn outcome(&self, o: Outcome) -> u64 {
        self.outcomes
            .get(o as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// Keeps a connection counted in `gw_tcp_connections_open` (also when its task is aborted).
pub(crate) struct OpenGuard(Arc<TcpSeries>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a UDP datagram was not relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UdpDrop {
    /// A new client's datagram: no UDP listener or no route.
    NoRoute,
    /// A new client's datagram: the route has no usable backend.
    NoBackend,
    /// A new client's datagram: the session limit is reached.
    SessionLimit,
    /// Sending it failed (or the session's socket could not be opened).
    SendError,
}

impl UdpDrop {
    const ALL: [UdpDrop; 4] = [
        UdpDrop::NoRoute,
        UdpDrop::NoBackend,
        UdpDrop::SessionLimit,
        UdpDrop::SendError,
    ];

    fn label(self) -> &'static str {
        match self {
            UdpDrop::NoRoute => "no_route",
            UdpDrop::NoBackend => "no_backend",
            UdpDrop::SessionLimit => "session_limit",
            UdpDrop::SendError => "send_error",
        }
    }
}

/// The counters of one UDP series. Directions are seen from the client: `received` from it,
/// `sent` to it.
#[derive(Debug, Default)]
pub(crate) struct UdpSeries {
    pub sessions: AtomicU64,
    pub open: AtomicU64,
    pub expired: AtomicU64,
    pub received_datagrams: AtomicU64,
    pub received_bytes: AtomicU64,
    pub sent_datagrams: AtomicU64,
    pub sent_bytes: AtomicU64,
    /// By [`UdpDrop`] (its discriminant, the order of [`UdpDrop::ALL`]).
    dropped: [AtomicU64; UdpDrop::ALL.len()],
}

impl UdpSeries {
    /// Counts one dropped datagram.
    pub(crate) fn drop_datagram(&self, why: UdpDrop) {
        if let Some(c) = self.dropped.get(why as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// TCP, TLS and UDP series.
#[derive(Debug, Default)]
pub(crate) struct L4Metrics {
    tcp: RwLock<HashMap<L4Key, Arc<TcpSeries>>>,
    udp: RwLock<HashMap<L4Key, Arc<UdpSeries>>>,
}

impl L4Metrics {
    /// The series of TCP and TLS connections with these labels (created on first use).
    pub(crate) fn tcp(&self, key: &L4Key) -> Arc<TcpSeries> {
        get_or_insert(&self.tcp, key)
    }

    /// The series of UDP sessions and datagrams with these labels (created on first use).
    pub(crate) fn udp(&self, key: &L4Key) -> Arc<UdpSeries> {
        get_or_insert(&self.udp, key)
    }

    /// Writes the L4 metric families.
    pub(crate) fn write(&self, out: &mut String) {
        let tcp = sorted(&self.tcp);
        let udp = sorted(&self.udp);
        out.push_str(
            "# HELP gw_tcp_connections_total Connections of TLS and TCP listeners, by gateway, listener, route, backend and outcome.\n\
             # TYPE gw_tcp_connections_total counter\n",
        );
        for (key, s) in &tcp {
            for o in Outcome::ALL {
                let n = s.outcome(o);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "gw_tcp_connections_total{{{},outcome=\"{}\"}} {n}",
                        l4_labels(key),
                        o.label()
                    );
                }
            }
        }
        // The other TCP families only for series that forwarded connections.
        let forwarded: Vec<_> = tcp
            .iter()
            .filter(|(_, s)| s.outcome(Outcome::Forwarded) > 0)
            .collect();
        out.push_str(
            "# HELP gw_tcp_connections_open Connections of TLS and TCP listeners being forwarded now.\n\
             # TYPE gw_tcp_connections_open gauge\n",
        );
        for (key, s) in &forwarded {
            let _ = writeln!(
                out,
                "gw_tcp_connections_open{{{}}} {}",
                l4_labels(key),
                s.open.load(Ordering::Relaxed)
            );
        }
        out.push_str(
            "# HELP gw_tcp_bytes_total Bytes of forwarded connections: received from clients, sent to clients (decrypted bytes for TLS Terminate).\n\
             # TYPE gw_tcp_bytes_total counter\n",
        );
        for (key, s) in &forwarded {
            let l = l4_labels(key);
            let _ = writeln!(
                out,
                "gw_tcp_bytes_total{{{l},direction=\"received\"}} {}\n\
                 gw_tcp_bytes_total{{{l},direction=\"sent\"}} {}",
                s.received.load(Ordering::Relaxed),
                s.sent.load(Ordering::Relaxed)
            );
        }
        out.push_str(
            "# HELP gw_tcp_connection_duration_seconds How long forwarded connections lasted, from the backend connection to the close of both sides.\n\
             # TYPE gw_tcp_connection_duration_seconds histogram\n",
        );
        for (key, s) in &forwarded {
            s.duration
                .write(out, "gw_tcp_connection_duration_seconds", &l4_labels(key));
        }

        let sessions: Vec<_> = udp
            .iter()
            .filter(|(_, s)| s.sessions.load(Ordering::Relaxed) > 0)
            .collect();
        let families: [UdpFamily; 3] = [
            (
                "gw_udp_sessions_total",
                "counter",
                "UDP sessions opened (one per client address and port), by gateway, listener, route and backend.",
                |s| s.sessions.load(Ordering::Relaxed),
            ),
            (
                "gw_udp_sessions_open",
                "gauge",
                "UDP sessions open now.",
                |s| s.open.load(Ordering::Relaxed),
            ),
            (
                "gw_udp_sessions_expired_total",
                "counter",
                "UDP sessions closed after their idle timeout.",
                |s| s.expired.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, value) in families {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
            for (key, s) in &sessions {
                let _ = writeln!(out, "{name}{{{}}} {}", l4_labels(key), value(s));
            }
        }
        let directions: [UdpDirections; 2] = [
            (
                "gw_udp_datagrams_total",
                "UDP datagrams relayed: received from clients, sent to clients.",
                |s| {
                    (
                        s.received_datagrams.load(Ordering::Relaxed),
                        s.sent_datagrams.load(Ordering::Relaxed),
                    )
                },
            ),
            (
                "gw_udp_bytes_total",
                "UDP payload bytes relayed: received from clients, sent to clients.",
                |s| {
                    (
                        s.received_bytes.load(Ordering::Relaxed),
                        s.sent_bytes.load(Ordering::Relaxed),
                    )
                },
            ),
        ];
        for (name, help, value) in directions {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} counter\n");
            for (key, s) in &sessions {
                let l = l4_labels(key);
                let (received, sent) = value(s);
                let _ = writeln!(
                    out,
                    "{name}{{{l},direction=\"received\"}} {received}\n\
                     {name}{{{l},direction=\"sent\"}} {sent}"
                );
            }
        }
        out.push_str(
            "# HELP gw_udp_datagrams_dropped_total UDP datagrams not relayed, by reason.\n\
             # TYPE gw_udp_datagrams_dropped_total counter\n",
        );
        for (key, s) in &udp {
            for (why, c) in UdpDrop::ALL.iter().zip(&s.dropped) {
                let n = c.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "gw_udp_datagrams_dropped_total{{{},reason=\"{}\"}} {n}",
                        l4_labels(key),
                        why.label()
                    );
                }
            }
        }
    }
}

/// A UDP metric's name, type, help text, and how to read it.
type UdpFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&UdpSeries) -> u64,
);

/// A UDP metric by direction: its name, help text, and how to read it (received, sent).
type UdpDirections = (&'static str, &'static str, fn(&UdpSeries) -> (u64, u64));

/// The series of `map`, sorted by labels.
fn sorted<K: Ord + Clone, V>(map: &RwLock<HashMap<K, Arc<V>>>) -> Vec<(K, Arc<V>)> {
    let map = map
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut v: Vec<_> = map.iter().map(|(k, s)| (k.clone(), s.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn l4_labels(k: &L4Key) -> String {
    format!(
        "gateway=\"{}\",listener=\"{}\",route=\"{}\",backend=\"{}\"",
        escape_label(&k.gateway),
        escape_label(&k.listener),
        escape_label(&k.route),
        escape_label(&k.backend)
    )
}

fn labels(k: &RouteKey) -> String {
    format!(
        "gateway=\"{}\",listener=\"{}\",route=\"{}\",rule=\"{}\",backend=\"{}\"",
        escape_label(&k.gateway),
        escape_label(&k.listener),
        escape_label(&k.route),
        escape_label(&k.rule),
        escape_label(&k.backend)
    )
}

/// Escapes a Prometheus label value.
pub(crate) fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(route: &str) -> RouteKey {
        RouteKey {
            gateway: "default/edge".into(),
            listener: "http".into(),
            route: route.into(),
            rule: "0".into(),
            backend: "default/web:80".into(),
        }
    }

    fn borrowed(k: &RouteKey) -> RouteKeyRef<'_> {
        RouteKeyRef {
            gateway: &k.gateway,
            listener: &k.listener,
            route: &k.route,
            rule: &k.rule,
            backend: &k.backend,
        }
    }

    // A borrowed key that hashed differently from the stored one would miss on every
    // request and take the write lock instead.
    #[test]
    fn borrowed_keys_hash_and_compare_as_the_stored_keys() {
        use std::hash::BuildHasher;
        let hasher = hashbrown::DefaultHashBuilder::default();
        let stored = key("default/r");
        // Equal labels in other allocations, as after a reload.
        let other = key("default/r");
        let k = borrowed(&other);
        assert_eq!(hasher.hash_one(k), hasher.hash_one(&stored));
        assert!(k.equivalent(&stored));
        assert!(!borrowed(&key("default/s")).equivalent(&stored));
        let count = (stored.clone(), 503);
        assert_eq!(
            hasher.hash_one(CountKeyRef(k, 503)),
            hasher.hash_one(&count)
        );
        assert!(CountKeyRef(k, 503).equivalent(&count));
        assert!(!CountKeyRef(k, 200).equivalent(&count));

        let m = RequestMetrics::default();
        let o = Observation {
            code: 200,
            duration: Duration::from_millis(1),
            upstream: None,
            retries: 0,
        };
        m.observe(borrowed(&stored), &o);
        m.observe(k, &o);
        let counts = m.counts.read().expect("not poisoned");
        assert_eq!(counts.len(), 1);
        let c = counts.get(&CountKeyRef(k, 200)).expect("one series");
        assert_eq!(c.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn counts_and_cumulative_histograms() {
        let m = RequestMetrics::default();
        for (code, ms) in [(200, 3), (200, 40), (503, 2000)] {
            let k = key("default/r");
            m.observe(
                borrowed(&k),
                &Observation {
                    code,
                    duration: Duration::from_millis(ms),
                    upstream: Some(Duration::from_millis(ms / 2)),
                    retries: 1,
                },
            );
        }
        let mut out = String::new();
        m.write(&mut out);
        let l = "gateway=\"default/edge\",listener=\"http\",route=\"default/r\",rule=\"0\",backend=\"default/web:80\"";
        assert!(
            out.contains(&format!("gw_requests_total{{{l},code=\"200\"}} 2")),
            "{out}"
        );
        assert!(
            out.contains(&format!("gw_requests_total{{{l},code=\"503\"}} 1")),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "gw_request_duration_seconds_bucket{{{l},le=\"0.005\"}} 1"
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "gw_request_duration_seconds_bucket{{{l},le=\"0.05\"}} 2"
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "gw_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} 3"
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!("gw_request_duration_seconds_count{{{l}}} 3")),
            "{out}"
        );
        assert!(
            out.contains(&format!("gw_request_duration_seconds_sum{{{l}}} 2.043")),
            "{out}"
        );
        assert!(
            out.contains(&format!("gw_upstream_retries_total{{{l}}} 3")),
            "{out}"
        );
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    fn l4_key(listener: &str, route: &str, backend: &str) -> L4Key {
        L4Key {
            gateway: "default/edge".into(),
            listener: listener.into(),
            route: route.into(),
            backend: backend.into(),
        }
    }

    #[test]
    fn l4_series_by_outcome_direction_and_reason() {
        let m = L4Metrics::default();
        let fwd = m.tcp(&l4_key("tcp", "default/db", "default/db:5432"));
        fwd.count(Outcome::Forwarded);
        fwd.count(Outcome::Forwarded);
        fwd.count(Outcome::BackendConnectError);
        let open = fwd.open();
        fwd.received.fetch_add(5, Ordering::Relaxed);
        fwd.sent.fetch_add(12, Ordering::Relaxed);
        fwd.observe_duration(Duration::from_millis(700));
        m.tcp(&l4_key("", "", "")).count(Outcome::NoRoute);
        let udp = m.udp(&l4_key("udp", "default/dns", "default/dns:53"));
        udp.sessions.fetch_add(1, Ordering::Relaxed);
        udp.received_datagrams.fetch_add(2, Ordering::Relaxed);
        udp.received_bytes.fetch_add(7, Ordering::Relaxed);
        udp.drop_datagram(UdpDrop::SendError);
        m.udp(&l4_key("udp", "", ""))
            .drop_datagram(UdpDrop::SessionLimit);

        let mut out = String::new();
        m.write(&mut out);
        let l = "gateway=\"default/edge\",listener=\"tcp\",route=\"default/db\",backend=\"default/db:5432\"";
        let none = "gateway=\"default/edge\",listener=\"\",route=\"\",backend=\"\"";
        let u = "gateway=\"default/edge\",listener=\"udp\",route=\"default/dns\",backend=\"default/dns:53\"";
        let u0 = "gateway=\"default/edge\",listener=\"udp\",route=\"\",backend=\"\"";
        for line in [
            format!("gw_tcp_connections_total{{{l},outcome=\"forwarded\"}} 2"),
            format!("gw_tcp_connections_total{{{l},outcome=\"backend_connect_error\"}} 1"),
            format!("gw_tcp_connections_total{{{none},outcome=\"no_route\"}} 1"),
            format!("gw_tcp_connections_open{{{l}}} 1"),
            format!("gw_tcp_bytes_total{{{l},direction=\"received\"}} 5"),
            format!("gw_tcp_bytes_total{{{l},direction=\"sent\"}} 12"),
            format!("gw_tcp_connection_duration_seconds_bucket{{{l},le=\"0.5\"}} 0"),
            format!("gw_tcp_connection_duration_seconds_bucket{{{l},le=\"1\"}} 1"),
            format!("gw_tcp_connection_duration_seconds_count{{{l}}} 1"),
            format!("gw_udp_sessions_total{{{u}}} 1"),
            format!("gw_udp_sessions_open{{{u}}} 0"),
            format!("gw_udp_datagrams_total{{{u},direction=\"received\"}} 2"),
            format!("gw_udp_datagrams_total{{{u},direction=\"sent\"}} 0"),
            format!("gw_udp_bytes_total{{{u},direction=\"received\"}} 7"),
            format!("gw_udp_datagrams_dropped_total{{{u},reason=\"send_error\"}} 1"),
            format!("gw_udp_datagrams_dropped_total{{{u0},reason=\"session_limit\"}} 1"),
        ] {
            assert!(out.lines().any(|x| x == line), "{line} not in\n{out}");
        }
        // Outcomes never seen are not written; series without forwarded connections (or
        // sessions) have no gauge, bytes or histogram.
        assert!(!out.contains("outcome=\"peek_timeout\""), "{out}");
        assert!(
            !out.contains(&format!("gw_tcp_connections_open{{{none}}}")),
            "{out}"
        );
        assert!(
            !out.contains(&format!("gw_udp_sessions_total{{{u0}}}")),
            "{out}"
        );
        drop(open);
        let mut out = String::new();
        m.write(&mut out);
        assert!(
            out.lines()
                .any(|x| x == format!("gw_tcp_connections_open{{{l}}} 0")),
            "{out}"
        );
    }
}
