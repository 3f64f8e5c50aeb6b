//! How the connection to the API server is doing, per watched kind.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

/// The controller's view of the API server, published on [`Controller::health`](crate::Controller::health).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// Every required kind has been listed once and a first [`ClusterState`](crate::ClusterState)
    /// was published.
    pub synced: bool,
    /// Kinds whose watch is failing now (the last attempt failed and no event arrived since),
    /// with the error. Empty when the API server answers.
    pub failing: BTreeMap<String, String>,
    /// Kinds not listed yet.
    pub waiting_for: Vec<String>,
    /// Whether this replica holds the status Lease (or needs none) and writes status.
    pub leader: bool,
    /// The last status write that failed, if the writer is retrying it.
    pub status_error: Option<String>,
}

impl Health {
    /// Whether the API server answered every watch recently.
    pub fn connected(&self) -> bool {
        self.failing.is_empty()
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.synced {
            write!(
                f,
                "kubernetes: waiting for the initial list of {}",
                self.waiting_for.join(", ")
            )?;
        } else if self.failing.is_empty() {
            write!(f, "kubernetes: connected")?;
        } else {
            write!(
                f,
                "kubernetes: serving the last good configuration; retrying"
            )?;
        }
        for (kind, error) in &self.failing {
            write!(f, "\n  {kind}: {error}")?;
        }
        write!(
            f,
            "\nstatus writer: {}",
            if self.leader { "leader" } else { "standby" }
        )?;
        if let Some(e) = &self.status_error {
            write!(f, " (retrying: {e})")?;
        }
        Ok(())
    }
}

/// Per-kind watch outcomes, turned into a [`Health`].
#[derive(Debug)]
pub(crate) struct Tracker {
    /// An error older than this, with no event after it, no longer counts: the watcher retries
    /// at most every `max backoff`, so a kind that stopped failing is quiet for longer.
    stale_after: Duration,
    kinds: BTreeMap<&'static str, KindState>,
}

#[derive(Debug, Default)]
struct KindState {
    required: bool,
    synced: bool,
    error: Option<(Instant, String)>,
}

impl Tracker {
    pub(crate) fn new(stale_after: Duration) -> Self {
        Tracker {
            stale_after,
            kinds: BTreeMap::new(),
        }
    }

    pub(crate) fn register(&mut self, kind: &'static str, required: bool) {
        self.kinds.insert(
            kind,
            KindState {
                required,
                ..KindState::default()
            },
        );
    }

    /// An event arrived: the watch works.
    pub(crate) fn ok(&mut self, kind: &'static str) {
        if let Some(k) = self.kinds.get_mut(kind) {
            k.error = None;
        }
    }

    /// The kind's initial list is complete (or, for an optional kind, the API server does not
    /// serve it).
    pub(crate) fn synced(&mut self, kind: &'static str) {
        if let Some(k) = self.kinds.get_mut(kind) {
            k.synced = true;
            k.error = None;
        }
    }

    pub(crate) fn failed(&mut self, kind: &'static str, error: String, now: Instant) {
        if let Some(k) = self.kinds.get_mut(kind) {
            k.error = Some((now, error));
        }
    }

    /// Whether every required kind has been listed.
    pub(crate) fn all_synced(&self) -> bool {
        self.kinds.values().all(|k| k.synced || !k.required)
    }

    pub(crate) fn is_synced(&self, kind: &str) -> bool {
        self.kinds.get(kind).is_some_and(|k| k.synced)
    }

    pub(crate) fn health(&self, now: Instant, published: bool) -> Health {
        Health {
            synced: published,
            failing: self
                .kinds
                .iter()
                .filter_map(|(name, k)| {
                    let (at, e) = k.error.as_ref()?;
                    (now.saturating_duration_since(*at) <= self.stale_after)
                        .then(|| ((*name).to_owned(), e.clone()))
                })
                .collect(),
            waiting_for: self
                .kinds
                .iter()
                .filter(|(_, k)| k.required && !k.synced)
                .map(|(name, _)| (*name).to_owned())
                .collect(),
            leader: false,
            status_error: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_count_until_an_event_or_until_stale() {
        let t0 = Instant::now();
        let mut t = Tracker::new(Duration::from_secs(10));
        t.register("Gateway", true);
        t.register("TCPRoute", false);
        assert!(!t.all_synced());
        assert_eq!(t.health(t0, false).waiting_for, ["Gateway"]);
        t.synced("Gateway");
        assert!(t.all_synced());
        t.failed("Gateway", "connection refused".into(), t0);
        let h = t.health(t0 + Duration::from_secs(5), true);
        assert!(!h.connected());
        assert!(h.to_string().contains("connection refused"), "{h}");
        assert!(t.health(t0 + Duration::from_secs(11), true).connected());
        t.failed("Gateway", "connection refused".into(), t0);
        t.ok("Gateway");
        assert!(t.health(t0, true).connected());
    }
}
