//! Outlier detection: endpoints that keep failing are ejected for a while, then come back.
//!
//! [`OutlierDetector`] follows Envoy's consecutive-failure detection:
//!
//! - `consecutive_failures` failures in a row (what a failure is is the caller's: gw-router
//!   counts 5xx responses, connection failures, resets and backend timeouts) eject an endpoint;
//!   any success resets the count.
//! - An ejection lasts `base_ejection_time` × the number of times the endpoint was ejected, at
//!   most `max_ejection_time`; that number goes down by one for every `base_ejection_time` the
//!   endpoint then stays in, so an endpoint that recovered starts again from the base time.
//! - At most `max_ejection_percent` % of the endpoints are ejected at once, but at least one may
//!   always be (as in Envoy), so a single bad endpoint of a small Service is still ejected.
//! - [`select`](OutlierDetector::select) skips ejected endpoints; when every endpoint is
//!   ejected it picks among all of them anyway (Envoy's panic threshold): a request that might
//!   work beats a certain 503.
//!
//! There is no Gateway API field for this yet: embedders configure it in code (gw-router's
//! `RouterConfig::outlier_detection`), off by default. Time is Tokio's clock, so tests run on
//! paused time. No tower `Layer` is offered: ejection only means something where endpoints are
//! chosen, which is inside the router.
//!
//! # Example
//!
//! ```
//! use std::net::SocketAddr;
//! use std::time::Duration;
//!
//! use gw_policy::outlier::{Outcome, OutlierConfig, OutlierDetector};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let detector = OutlierDetector::new(OutlierConfig {
//!     consecutive_failures: 2,
//!     base_ejection_time: Duration::from_secs(30),
//!     max_ejection_percent: 50,
//!     ..OutlierConfig::default()
//! })?;
//! let endpoints: Vec<SocketAddr> = vec!["10.0.0.1:80".parse()?, "10.0.0.2:80".parse()?];
//! detector.report(endpoints[0], Outcome::Failure, endpoints.len());
//! detector.report(endpoints[0], Outcome::Failure, endpoints.len());
//! assert!(detector.is_ejected(endpoints[0]));
//! // Selection skips the ejected endpoint, whichever position round-robin is at.
//! assert_eq!(detector.select(&endpoints, 0), Some(endpoints[1]));
//! assert_eq!(detector.select(&endpoints, 1), Some(endpoints[1]));
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Outlier detection settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierConfig {
    /// Failures in a row that eject an endpoint (default 5, at least 1).
    pub consecutive_failures: u32,
    /// Length of a first ejection (default 30 s, above 0).
    pub base_ejection_time: Duration,
    /// Longest ejection (default 300 s, at least `base_ejection_time`).
    pub max_ejection_time: Duration,
    /// Largest share of a Service's endpoints ejected at once, 0 to 100 (default 10; one
    /// endpoint may always be ejected).
    pub max_ejection_percent: u32,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            consecutive_failures: 5,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
        }
    }
}

/// Why an [`OutlierConfig`] is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutlierError {
    /// `consecutive_failures` is 0: every endpoint would be ejected without failing.
    #[error("outlier detection: consecutive_failures must be at least 1")]
    NoFailures,
    /// `base_ejection_time` is 0, or `max_ejection_time` is below it.
    #[error("outlier detection: base_ejection_time must be above 0 and at most max_ejection_time")]
    EjectionTime,
    /// `max_ejection_percent` is above 100.
    #[error("outlier detection: max_ejection_percent {0} is above 100")]
    Percent(u32),
}

/// What one request to an endpoint showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered well.
    Success,
    /// The endpoint failed (5xx, connection failure, reset, timeout).
    Failure,
}

#[derive(Debug, Clone, Copy, Default)]
struct EndpointState {
    consecutive: u32,
    /// Ejections counted towards the next ejection's length.
    ejections: u32,
    ejected_until: Option<Instant>,
    /// When the last ejection ended (for the decay of `ejections`).
    returned: Option<Instant>,
}

/// Tracks the endpoints of one backend; share it between every request to it.
#[derive(Debug)]
pub struct OutlierDetector {
    config: OutlierConfig,
    endpoints: Mutex<HashMap<SocketAddr, EndpointState>>,
}

impl OutlierDetector {
    /// A detector with validated settings.
    pub fn new(config: OutlierConfig) -> Result<OutlierDetector, OutlierError> {
        if config.consecutive_failures == 0 {
            return Err(OutlierError::NoFailures);
        }
        if config.base_ejection_time.is_zero()
            || config.max_ejection_time < config.base_ejection_time
        {
            return Err(OutlierError::EjectionTime);
        }
        if config.max_ejection_percent > 100 {
            return Err(OutlierError::Percent(config.max_ejection_percent));
        }
        Ok(OutlierDetector {
            config,
            endpoints: Mutex::new(HashMap::new()),
        })
    }

    /// The settings.
    pub fn config(&self) -> &OutlierConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SocketAddr, EndpointState>> {
        // Poisoning only means a panic between two plain field updates; the map is usable.
        self.endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends ejections that are over; returns how many endpoints are still ejected.
    fn expire(map: &mut HashMap<SocketAddr, EndpointState>, now: Instant) -> usize {
        let mut ejected = 0;
        for s in map.values_mut() {
            match s.ejected_until {
                Some(until) if until <= now => {
                    s.ejected_until = None;
                    s.returned = Some(until);
                }
                Some(_) => ejected += 1,
                None => {}
            }
        }
        ejected
    }

    /// Records the outcome of a request to `endpoint`, one of `total` endpoints of the backend;
    /// may eject it.
    pub fn report(&self, endpoint: SocketAddr, outcome: Outcome, total: usize) {
        let now = Instant::now();
        let mut map = self.lock();
        match outcome {
            Outcome::Success => {
                if let Some(s) = map.get_mut(&endpoint) {
                    s.consecutive = 0;
                    if s.ejections == 0 && s.ejected_until.is_none() {
                        map.remove(&endpoint);
                    }
                }
            }
            Outcome::Failure => {
                let ejected = Self::expire(&mut map, now);
                let s = map.entry(endpoint).or_default();
                if s.ejected_until.is_some() {
                    // Already out (a request that was sent before the ejection, or panic mode).
                    return;
                }
                s.consecutive += 1;
                if s.consecutive < self.config.consecutive_failures {
                    return;
                }
                let limit = (total * self.config.max_ejection_percent as usize / 100).max(1);
                if ejected >= limit {
                    return;
                }
                let base = self.config.base_ejection_time;
                if let Some(back) = s.returned {
                    let healthy = now.saturating_duration_since(back);
                    let decay = healthy.as_nanos() / base.as_nanos().max(1);
                    s.ejections = s
                        .ejections
                        .saturating_sub(u32::try_from(decay).unwrap_or(u32::MAX));
                }
                s.ejections = s.ejections.saturating_add(1);
                let length = base
                    .saturating_mul(s.ejections)
                    .min(self.config.max_ejection_time);
                s.ejected_until = Some(now + length);
                s.consecutive = 0;
                tracing::info!(%endpoint, ?length, ejections = s.ejections, "endpoint ejected after consecutive failures");
            }
        }
    }

    /// Whether `endpoint` is ejected now.
    pub fn is_ejected(&self, endpoint: SocketAddr) -> bool {
        let now = Instant::now();
        self.lock()
            .get(&endpoint)
            .and_then(|s| s.ejected_until)
            .is_some_and(|until| until > now)
    }

    /// The first endpoint from position `start` on (wrapping around) that is not ejected; when
    /// all are ejected, the one at `start` (panic mode). `None` only for an empty list.
    pub fn select(&self, endpoints: &[SocketAddr], start: usize) -> Option<SocketAddr> {
        if endpoints.is_empty() {
            return None;
        }
        let now = Instant::now();
        let map = self.lock();
        let len = endpoints.len();
        let out = |e: &SocketAddr| {
            map.get(e)
                .and_then(|s| s.ejected_until)
                .is_some_and(|until| until > now)
        };
        (0..len)
            .map(|i| endpoints[(start + i) % len])
            .find(|e| !out(e))
            .or(Some(endpoints[start % len]))
    }

    /// Forgets endpoints for which `keep` is false (e.g. gone from the Service).
    pub fn retain(&self, keep: impl Fn(&SocketAddr) -> bool) {
        self.lock().retain(|e, _| keep(e));
    }
}

#[cfg(test)]
mod tests;
