//! Retry budgets (GEP-3388): retries may make up at most a share of the requests recently sent
//! to a backend, plus a minimum rate that low traffic always gets.
//!
//! [`RetryBudget`] counts, over a sliding window of `interval`, the requests sent to a backend
//! (first attempts and retries) and the retries among them. A retry is allowed when
//!
//! - after it, retries would still be at most `percent` % of the window's requests
//!   ("Percent defines the maximum percentage of active requests that may be made up of
//!   retries"), or
//! - fewer than `min_retry_count` retries were sent in the last `min_retry_interval` ("This
//!   ensures that requests can still be retried during periods of low traffic").
//!
//! Every allowed retry is counted ("Retrying the same original request multiple times within
//! the retry budget interval will lead to each retry being counted"). What to do when a retry
//! is refused is the caller's: GEP-3388 says "additional retries to the backend MUST return a
//! 503 response to the client", which is what gw-router does.
//!
//! Windows are kept as 10 buckets of `interval / 10` each, so a count leaves the window between
//! 0.9 and 1 `interval` after it was made. Time is Tokio's clock ([`tokio::time::Instant`]), so
//! tests run on paused time.
//!
//! The budget implements [`tower::retry::budget::Budget`], so it also drives tower's
//! [`Retry`](tower::retry::Retry) middleware in any tower stack.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//!
//! use gw_policy::gw_model::table::RetryBudget as Config;
//! use gw_policy::retry_budget::RetryBudget;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let budget = RetryBudget::new(Config {
//!     percent: 20,
//!     interval: Duration::from_secs(10),
//!     min_retry_count: 1,
//!     min_retry_interval: Duration::from_secs(1),
//! });
//! // Ten requests are sent. Two retries fit the 20 % budget (2 of 12 requests); a third
//! // would be 3 of 13 (23 %), and the minimum (1 per second) is used up: refused.
//! for _ in 0..10 {
//!     budget.deposit();
//! }
//! assert!(budget.try_withdraw());
//! assert!(budget.try_withdraw());
//! assert!(!budget.try_withdraw());
//! # }
//! ```

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use gw_model::table::RetryBudget as Config;
use tokio::time::Instant;

/// Buckets per window.
const BUCKETS: u32 = 10;

/// A sliding count of requests and retries over one window.
#[derive(Debug)]
struct Window {
    /// Width of one bucket (at least 1 ms).
    width: Duration,
    /// Per bucket: (bucket number since `start`, requests, retries).
    buckets: [(u64, u64, u64); BUCKETS as usize],
}

impl Window {
    fn new(interval: Duration) -> Window {
        Window {
            width: (interval / BUCKETS).max(Duration::from_millis(1)),
            // Bucket number u64::MAX is never current: every bucket starts empty.
            buckets: [(u64::MAX, 0, 0); BUCKETS as usize],
        }
    }

    fn number(&self, elapsed: Duration) -> u64 {
        u64::try_from(elapsed.as_nanos() / self.width.as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// (requests, retries) in the window ending at `elapsed`.
    fn totals(&self, elapsed: Duration) -> (u64, u64) {
        let now = self.number(elapsed);
        self.buckets
            .iter()
            .filter(|(n, _, _)| *n != u64::MAX && *n <= now && now - n < u64::from(BUCKETS))
            .fold((0, 0), |(a, b), (_, r, x)| (a + r, b + x))
    }

    fn add(&mut self, elapsed: Duration, requests: u64, retries: u64) {
        let n = self.number(elapsed);
        let slot = &mut self.buckets[(n % u64::from(BUCKETS)) as usize];
        if slot.0 != n {
            *slot = (n, 0, 0);
        }
        slot.1 += requests;
        slot.2 += retries;
    }
}

#[derive(Debug)]
struct State {
    budget: Window,
    minimum: Window,
}

/// The retry budget of one backend; share it (it is `Sync`) between every request to it.
///
/// See the [module documentation](self) for the rules.
#[derive(Debug)]
pub struct RetryBudget {
    config: Config,
    start: Instant,
    state: Mutex<State>,
}

impl RetryBudget {
    /// An empty budget with compiled (validated) settings.
    pub fn new(config: Config) -> RetryBudget {
        RetryBudget {
            state: Mutex::new(State {
                budget: Window::new(config.interval),
                minimum: Window::new(config.min_retry_interval),
            }),
            start: Instant::now(),
            config,
        }
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Poisoning only means another request panicked between two counter updates; the
        // counters are still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a first attempt sent to the backend.
    pub fn deposit(&self) {
        let elapsed = self.start.elapsed();
        self.lock().budget.add(elapsed, 1, 0);
    }

    /// Whether a retry may be sent now; if so, it is counted (as a request and a retry).
    pub fn try_withdraw(&self) -> bool {
        let elapsed = self.start.elapsed();
        let mut state = self.lock();
        let (requests, retries) = state.budget.totals(elapsed);
        let within_percent = (retries + 1) * 100 <= u64::from(self.config.percent) * (requests + 1);
        let (_, recent_retries) = state.minimum.totals(elapsed);
        let within_minimum = recent_retries < u64::from(self.config.min_retry_count);
        if !(within_percent || within_minimum) {
            return false;
        }
        state.budget.add(elapsed, 1, 1);
        state.minimum.add(elapsed, 0, 1);
        true
    }

    /// Requests and retries counted in the current window.
    pub fn counts(&self) -> (u64, u64) {
        let elapsed = self.start.elapsed();
        self.lock().budget.totals(elapsed)
    }
}

impl tower::retry::budget::Budget for RetryBudget {
    fn deposit(&self) {
        RetryBudget::deposit(self);
    }

    fn withdraw(&self) -> bool {
        self.try_withdraw()
    }
}

#[cfg(test)]
mod tests;
