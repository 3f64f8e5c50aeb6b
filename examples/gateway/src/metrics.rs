//! Request metrics: counts by gateway, listener, route, rule, backend and status code, and
//! latency histograms, written in the Prometheus text format.
//!
//! Labels come from [`gw_router::RouteInfo`]: shared strings built once per configuration, so
//! their number is bounded by the configuration (routes and backends, never paths), and
//! recording a request costs two hash lookups under a read lock and a few atomic additions.
//! Series stay after a reload removes their route (counters never go back).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

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

/// A latency histogram (cumulative buckets are computed when written).
#[derive(Debug, Default)]
struct Histogram {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS.partition_point(|b| *b < secs);
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
            let le = BUCKETS
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

fn get_or_insert<K: std::hash::Hash + Eq + Clone, V: Default>(
    map: &RwLock<HashMap<K, Arc<V>>>,
    key: &K,
) -> Arc<V> {
    if let Some(v) = map
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(key)
    {
        return v.clone();
    }
    map.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(key.clone())
        .or_default()
        .clone()
}

impl RequestMetrics {
    /// Records one finished request.
    pub(crate) fn observe(&self, key: RouteKey, o: &Observation) {
        let timings = get_or_insert(&self.timings, &key);
        timings.request.observe(o.duration);
        if let Some(u) = o.upstream {
            timings.upstream.observe(u);
        }
        if o.retries > 0 {
            timings
                .retries
                .fetch_add(u64::from(o.retries), Ordering::Relaxed);
        }
        get_or_insert(&self.counts, &(key, o.code)).fetch_add(1, Ordering::Relaxed);
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

    #[test]
    fn counts_and_cumulative_histograms() {
        let m = RequestMetrics::default();
        for (code, ms) in [(200, 3), (200, 40), (503, 2000)] {
            m.observe(
                key("default/r"),
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
}
