//! DNS resolution of external backends (`XBackend` of type `ExternalHostname`), cached.
//!
//! Every name a routing table uses gets one shared [`Name`] entry in a [`Resolver`]. Resolution
//! runs in the background: it starts when the table is built, answers are kept for
//! [`ResolverConfig::ttl`] and refreshed in the background when they get older (requests keep
//! using the previous answer meanwhile), and a failure is retried after
//! [`ResolverConfig::retry`]. A request never waits on DNS longer than
//! [`ResolverConfig::first_answer_wait`], and only for a name that has never been answered; a
//! name that does not resolve is answered 503 at once.
//!
//! The default [`Resolver`] uses the operating system's resolver (`getaddrinfo`, so
//! `/etc/hosts` and the system's DNS configuration apply) through Tokio; embedders plug in their
//! own lookup with [`Resolver::with_lookup`], and pin names with [`StaticLookup`].

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The future a [`Lookup`] returns.
pub type LookupFuture = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>>;

/// A way to turn a host name into addresses.
pub trait Lookup: Send + Sync + fmt::Debug + 'static {
    /// The addresses of `host`, or why there are none.
    fn lookup(&self, host: &str) -> LookupFuture;
}

/// The operating system's resolver, through [`tokio::net::lookup_host`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: &str) -> LookupFuture {
        let host = host.to_owned();
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// Fixed answers for some names (like curl's `--resolve`), the rest from another lookup.
///
/// ```
/// use gw_router::dns::{Lookup, StaticLookup, SystemLookup};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let lookup = StaticLookup::new(SystemLookup).with("api.internal", ["127.0.0.1".parse().unwrap()]);
/// assert_eq!(lookup.lookup("api.internal").await?, ["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct StaticLookup<L> {
    names: HashMap<String, Vec<IpAddr>>,
    fallback: L,
}

impl<L: Lookup> StaticLookup<L> {
    /// No fixed names yet; everything goes to `fallback`.
    pub fn new(fallback: L) -> Self {
        StaticLookup {
            names: HashMap::new(),
            fallback,
        }
    }

    /// Answers `host` (case-insensitive) with `addrs`.
    #[must_use]
    pub fn with(mut self, host: &str, addrs: impl IntoIterator<Item = IpAddr>) -> Self {
        self.names
            .insert(host.to_ascii_lowercase(), addrs.into_iter().collect());
        self
    }
}

impl<L: Lookup> Lookup for StaticLookup<L> {
    fn lookup(&self, host: &str) -> LookupFuture {
        match self.names.get(&host.to_ascii_lowercase()) {
            Some(addrs) => {
                let addrs = addrs.clone();
                Box::pin(async move { Ok(addrs) })
            }
            None => self.fallback.lookup(host),
        }
    }
}

/// Timing of a [`Resolver`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ResolverConfig {
    /// How long an answer is used before it is refreshed (default 30 s). The OS resolver does
    /// not report record TTLs, so this is the refresh period.
    pub ttl: Duration,
    /// How long after a failure the name is tried again (default 5 s).
    pub retry: Duration,
    /// The longest a single lookup may take before it counts as failed (default 5 s).
    pub lookup_timeout: Duration,
    /// How long a request waits for a name that has never been answered (default 2 s); after
    /// that it is answered 503.
    pub first_answer_wait: Duration,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            ttl: Duration::from_secs(30),
            retry: Duration::from_secs(5),
            lookup_timeout: Duration::from_secs(5),
            first_answer_wait: Duration::from_secs(2),
        }
    }
}

impl ResolverConfig {
    /// Sets [`ttl`](Self::ttl).
    #[must_use]
    pub fn with_ttl(mut self, d: Duration) -> Self {
        self.ttl = d;
        self
    }
    /// Sets [`retry`](Self::retry).
    #[must_use]
    pub fn with_retry(mut self, d: Duration) -> Self {
        self.retry = d;
        self
    }
    /// Sets [`lookup_timeout`](Self::lookup_timeout).
    #[must_use]
    pub fn with_lookup_timeout(mut self, d: Duration) -> Self {
        self.lookup_timeout = d;
        self
    }
    /// Sets [`first_answer_wait`](Self::first_answer_wait).
    #[must_use]
    pub fn with_first_answer_wait(mut self, d: Duration) -> Self {
        self.first_answer_wait = d;
        self
    }
}

/// A cache of name entries shared by every routing table built with it. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct Resolver {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    lookup: Arc<dyn Lookup>,
    config: ResolverConfig,
    names: Mutex<HashMap<(String, u16), Weak<Name>>>,
}

impl Default for Resolver {
    fn default() -> Self {
        Resolver::with_lookup(SystemLookup, ResolverConfig::default())
    }
}

impl Resolver {
    /// A resolver with its own cache, using `lookup`.
    pub fn with_lookup(lookup: impl Lookup, config: ResolverConfig) -> Resolver {
        Resolver {
            inner: Arc::new(Inner {
                lookup: Arc::new(lookup),
                config,
                names: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The process-wide resolver (system lookups, default timing) that
    /// [`Routes::build`](crate::Routes::build) uses.
    pub fn shared() -> Resolver {
        static SHARED: OnceLock<Resolver> = OnceLock::new();
        SHARED.get_or_init(Resolver::default).clone()
    }

    /// The entry for `host:port`, shared with every table that uses the same name. Starts
    /// resolving it when called inside a Tokio runtime (otherwise at first use).
    pub fn name(&self, host: &str, port: u16) -> Arc<Name> {
        let key = (host.to_ascii_lowercase(), port);
        let mut names = self
            .inner
            .names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(existing) = names.get(&key).and_then(Weak::upgrade) {
            return existing;
        }
        names.retain(|_, w| w.strong_count() > 0);
        let name = Arc::new(Name {
            host: key.0.clone(),
            port,
            lookup: self.inner.lookup.clone(),
            config: self.inner.config.clone(),
            state: ArcSwap::from_pointee(State::default()),
            refreshing: AtomicBool::new(false),
            answered: Notify::new(),
            next: AtomicUsize::new(0),
        });
        names.insert(key, Arc::downgrade(&name));
        drop(names);
        name.refresh_if_due();
        name
    }

    /// Every name in use, with its last answer.
    pub fn snapshot(&self) -> Vec<NameStatus> {
        let names = self
            .inner
            .names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out: Vec<NameStatus> = names
            .values()
            .filter_map(Weak::upgrade)
            .map(|n| n.status())
            .collect();
        out.sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
        out
    }
}

/// What is known about a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameStatus {
    /// The host name.
    pub host: String,
    /// The port.
    pub port: u16,
    /// The addresses of the last successful answer (kept while a refresh fails, until the
    /// answer is older than twice the TTL).
    pub addresses: Vec<SocketAddr>,
    /// Why the last lookup failed, if it did.
    pub error: Option<String>,
    /// Whether the name has been looked up at least once.
    pub answered: bool,
}

#[derive(Debug, Default)]
struct State {
    addrs: Arc<[SocketAddr]>,
    error: Option<String>,
    /// When `addrs` were obtained.
    resolved_at: Option<Instant>,
    /// When the last lookup finished (successful or not).
    checked_at: Option<Instant>,
}

/// One host name and port, resolved in the background.
pub struct Name {
    host: String,
    port: u16,
    lookup: Arc<dyn Lookup>,
    config: ResolverConfig,
    state: ArcSwap<State>,
    refreshing: AtomicBool,
    answered: Notify,
    next: AtomicUsize,
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Name")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// Why a name gives no address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The lookup failed (or returned no address).
    #[error("{host} does not resolve: {reason}")]
    Failed {
        /// The name.
        host: String,
        /// The resolver's error.
        reason: String,
    },
    /// No answer came within [`ResolverConfig::first_answer_wait`].
    #[error("{host} did not resolve within {waited:?}")]
    Pending {
        /// The name.
        host: String,
        /// How long the request waited.
        waited: Duration,
    },
}

impl Name {
    /// The host name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the name currently has no usable answer because the last lookup failed (so a
    /// request can be answered 503 at once, without waiting).
    pub fn failed(&self) -> bool {
        let s = self.state.load();
        s.checked_at.is_some() && self.usable(&s).is_none()
    }

    /// The next address, round-robin, without waiting: `None` before the first answer or when
    /// the name does not resolve. Starts a refresh when the answer is due.
    pub fn endpoint(self: &Arc<Self>) -> Option<SocketAddr> {
        self.refresh_if_due();
        let s = self.state.load();
        let addrs = self.usable(&s)?;
        let i = self.next.fetch_add(1, Ordering::Relaxed) % addrs.len();
        addrs.get(i).copied()
    }

    /// The next address, waiting up to [`ResolverConfig::first_answer_wait`] for the first
    /// answer.
    pub async fn resolve(self: &Arc<Self>) -> Result<SocketAddr, ResolveError> {
        let deadline = Instant::now() + self.config.first_answer_wait;
        loop {
            let notified = self.answered.notified();
            if let Some(a) = self.endpoint() {
                return Ok(a);
            }
            let s = self.state.load();
            if s.checked_at.is_some() {
                return Err(ResolveError::Failed {
                    host: self.host.clone(),
                    reason: s.error.clone().unwrap_or_else(|| "no address".to_owned()),
                });
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(ResolveError::Pending {
                    host: self.host.clone(),
                    waited: self.config.first_answer_wait,
                });
            }
        }
    }

    /// The first address of the current usable answer that `pred` accepts (no waiting, no
    /// refresh): how a session finds the address it sticks to.
    pub(crate) fn find(&self, pred: impl FnMut(&SocketAddr) -> bool) -> Option<SocketAddr> {
        let s = self.state.load();
        self.usable(&s)?.iter().copied().find(pred)
    }

    /// The status for admin pages.
    pub fn status(&self) -> NameStatus {
        let s = self.state.load();
        NameStatus {
            host: self.host.clone(),
            port: self.port,
            addresses: s.addrs.to_vec(),
            error: s.error.clone(),
            answered: s.checked_at.is_some(),
        }
    }

    /// The addresses still worth using: the last answer, unless it is older than twice the TTL
    /// while lookups fail.
    fn usable<'a>(&self, s: &'a State) -> Option<&'a [SocketAddr]> {
        if s.addrs.is_empty() {
            return None;
        }
        if s.error.is_some()
            && s.resolved_at
                .is_none_or(|at| at.elapsed() > self.config.ttl.saturating_mul(2))
        {
            return None;
        }
        Some(&s.addrs)
    }

    fn due(&self, s: &State) -> bool {
        match (s.checked_at, &s.error) {
            (None, _) => true,
            (Some(at), None) => at.elapsed() >= self.config.ttl,
            (Some(at), Some(_)) => at.elapsed() >= self.config.retry,
        }
    }

    /// Starts one background lookup if the answer is due and none is running.
    fn refresh_if_due(self: &Arc<Name>) {
        if !self.due(&self.state.load()) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let lookup = self.lookup.lookup(&self.host);
        let timeout = self.config.lookup_timeout;
        // The task holds a weak handle: a Name dropped by every table is freed.
        let host = self.host.clone();
        let port = self.port;
        let this = Arc::downgrade(self);
        handle.spawn(async move {
            let result = match tokio::time::timeout(timeout, lookup).await {
                Ok(Ok(ips)) if ips.is_empty() => Err("no address".to_owned()),
                Ok(Ok(ips)) => Ok(ips),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("lookup timed out after {timeout:?}")),
            };
            if let Some(name) = this.upgrade() {
                name.record(result.map(|ips| {
                    ips.into_iter()
                        .map(|ip| SocketAddr::new(ip, port))
                        .collect()
                }));
            } else {
                tracing::trace!(%host, "name no longer used; dropping the answer");
            }
        });
    }

    fn record(&self, result: Result<Vec<SocketAddr>, String>) {
        let now = Instant::now();
        let old = self.state.load();
        let next = match result {
            Ok(mut addrs) => {
                addrs.sort();
                addrs.dedup();
                State {
                    addrs: addrs.into(),
                    error: None,
                    resolved_at: Some(now),
                    checked_at: Some(now),
                }
            }
            Err(error) => {
                tracing::warn!(host = %self.host, %error, "external backend name does not resolve");
                State {
                    addrs: old.addrs.clone(),
                    error: Some(error),
                    resolved_at: old.resolved_at,
                    checked_at: Some(now),
                }
            }
        };
        self.state.store(Arc::new(next));
        self.refreshing.store(false, Ordering::Release);
        self.answered.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A lookup whose answers the test scripts, counting calls.
    #[derive(Debug, Default)]
    struct Scripted {
        calls: AtomicUsize,
        answer: Mutex<Option<Result<Vec<IpAddr>, String>>>,
    }

    impl Scripted {
        fn set(&self, a: Option<Result<Vec<IpAddr>, String>>) {
            *self.answer.lock().unwrap() = a;
        }
    }

    #[derive(Debug)]
    struct Shared(Arc<Scripted>);

    impl Lookup for Shared {
        fn lookup(&self, _host: &str) -> LookupFuture {
            self.0.calls.fetch_add(1, Ordering::SeqCst);
            let answer = self.0.answer.lock().unwrap().clone();
            Box::pin(async move {
                match answer {
                    Some(Ok(ips)) => Ok(ips),
                    Some(Err(e)) => Err(io::Error::other(e)),
                    // Never answers: the lookup timeout must end it.
                    None => std::future::pending().await,
                }
            })
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn resolver(script: &Arc<Scripted>) -> Resolver {
        Resolver::with_lookup(
            Shared(script.clone()),
            ResolverConfig::default()
                .with_ttl(Duration::from_secs(30))
                .with_retry(Duration::from_secs(5))
                .with_lookup_timeout(Duration::from_secs(3))
                .with_first_answer_wait(Duration::from_secs(1)),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn answers_are_cached_shared_and_refreshed_in_the_background() {
        let script = Arc::new(Scripted::default());
        script.set(Some(Ok(vec![ip("127.0.0.2"), ip("127.0.0.1")])));
        let r = resolver(&script);
        let a = r.name("API.example.com", 443);
        // One entry per name and port, whatever the case.
        let b = r.name("api.example.com", 443);
        assert!(Arc::ptr_eq(&a, &b));
        let first = a.resolve().await.unwrap();
        let second = a.resolve().await.unwrap();
        // Round-robin over the sorted answer.
        assert_eq!(
            [first, second],
            [
                "127.0.0.1:443".parse().unwrap(),
                "127.0.0.2:443".parse().unwrap()
            ]
        );
        assert_eq!(script.calls.load(Ordering::SeqCst), 1, "cached");

        // Past the TTL, the old answer keeps serving while one refresh runs.
        script.set(Some(Ok(vec![ip("127.0.0.3")])));
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(a.endpoint().is_some());
        assert!(a.endpoint().is_some());
        tokio::task::yield_now().await;
        assert_eq!(script.calls.load(Ordering::SeqCst), 2, "one refresh");
        assert_eq!(a.endpoint(), Some("127.0.0.3:443".parse().unwrap()));
        assert_eq!(r.snapshot().len(), 1);
        // A name no table uses any more is forgotten.
        drop((a, b));
        let _other = r.name("other.example.com", 80);
        assert_eq!(r.snapshot().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_name_that_does_not_resolve_fails_fast_and_is_retried() {
        let script = Arc::new(Scripted::default());
        script.set(Some(Err("NXDOMAIN".into())));
        let r = resolver(&script);
        let n = r.name("nowhere.invalid", 80);
        let err = n.resolve().await.unwrap_err();
        assert!(
            matches!(&err, ResolveError::Failed { reason, .. } if reason.contains("NXDOMAIN")),
            "{err}"
        );
        assert!(n.failed(), "later requests are answered at once");
        assert!(n.status().error.is_some());
        // Retried after `retry`, and recovers.
        script.set(Some(Ok(vec![ip("127.0.0.9")])));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(n.endpoint(), None, "not retried before `retry`");
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(n.endpoint(), None, "the retry runs in the background");
        tokio::task::yield_now().await;
        assert_eq!(n.endpoint(), Some("127.0.0.9:80".parse().unwrap()));
        assert!(!n.failed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_refresh_keeps_the_last_answer_for_a_while() {
        let script = Arc::new(Scripted::default());
        script.set(Some(Ok(vec![ip("127.0.0.1")])));
        let r = resolver(&script);
        let n = r.name("api.example.com", 80);
        n.resolve().await.unwrap();
        script.set(Some(Err("SERVFAIL".into())));
        tokio::time::advance(Duration::from_secs(31)).await;
        n.endpoint();
        tokio::task::yield_now().await;
        assert!(n.status().error.is_some());
        assert!(n.endpoint().is_some(), "stale answer still used");
        // After twice the TTL without a good answer, the name is down.
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(n.endpoint(), None);
        assert!(n.failed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_lookup_never_holds_a_request_past_the_wait() {
        let script = Arc::new(Scripted::default());
        script.set(None);
        let r = resolver(&script);
        let n = r.name("slow.example.com", 80);
        let started = Instant::now();
        let err = n.resolve().await.unwrap_err();
        assert!(matches!(err, ResolveError::Pending { .. }), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        // The lookup itself times out and counts as a failure.
        tokio::time::advance(Duration::from_secs(3)).await;
        tokio::task::yield_now().await;
        assert!(n.failed());
        assert!(n.status().error.unwrap().contains("timed out"));
    }

    #[tokio::test]
    async fn static_answers_win_over_the_fallback() {
        let lookup = StaticLookup::new(SystemLookup).with("Pinned.Test", [ip("127.0.0.7")]);
        assert_eq!(
            lookup.lookup("pinned.test").await.unwrap(),
            [ip("127.0.0.7")]
        );
        // `.invalid` never resolves (RFC 6761).
        assert!(lookup.lookup("name.invalid").await.is_err());
    }
}
