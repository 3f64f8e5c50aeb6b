//! Token buckets as GCRA deadlines: one `Instant` per key, exact on integer time.
//!
//! A bucket is stored as its "theoretical arrival time" `tat`: the instant at which it is full
//! again. Taking a token moves `tat` one interval later; a request is refused when that would
//! put `tat` more than a whole bucket (`burst`) ahead of now. A key whose `tat` has passed has
//! a full bucket, which is the same as having no entry, so such keys can be forgotten at any
//! time without changing a decision.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use http::HeaderValue;
use tokio::time::Instant;

use super::CompiledRateLimit;

/// What a request is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    /// No key could be computed (or the whole route is one bucket).
    Shared,
    Ip(IpAddr),
    Header(HeaderValue),
    Text(String),
}

/// The outcome of taking a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Allowed {
        /// Tokens left after this one.
        remaining: u64,
        /// Until the bucket is full again.
        reset: Duration,
    },
    Limited {
        /// Until one token is available.
        retry_after: Duration,
        /// Until the bucket is full again.
        reset: Duration,
    },
}

#[derive(Debug)]
pub(crate) struct Buckets {
    limit: CompiledRateLimit,
    tats: Mutex<HashMap<Key, Instant>>,
}

impl Buckets {
    pub(crate) fn new(limit: CompiledRateLimit) -> Self {
        Buckets {
            limit,
            tats: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn limit(&self) -> &CompiledRateLimit {
        &self.limit
    }

    /// Takes one token from `key`'s bucket at `now`.
    pub(crate) fn take(&self, key: Key, now: Instant) -> Decision {
        let CompiledRateLimit {
            interval, burst, ..
        } = self.limit;
        // A poisoned lock only means another request panicked mid-update of plain instants;
        // the map is still consistent.
        let mut tats = self.tats.lock().unwrap_or_else(PoisonError::into_inner);
        let tat = tats.get(&key).copied().unwrap_or(now).max(now);
        let ahead = tat - now + interval;
        if ahead > burst {
            return Decision::Limited {
                retry_after: ahead - burst,
                reset: tat - now,
            };
        }
        let Some(new_tat) = now.checked_add(ahead) else {
            // Unreachable with the compiled bounds; refusing is the safe answer.
            return Decision::Limited {
                retry_after: interval,
                reset: burst,
            };
        };
        if !tats.contains_key(&key) && tats.len() >= self.limit.max_keys {
            evict(&mut tats, now, self.limit.max_keys);
        }
        tats.insert(key, new_tat);
        let remaining = (burst - ahead).as_nanos() / interval.as_nanos().max(1);
        Decision::Allowed {
            remaining: u64::try_from(remaining).unwrap_or(u64::MAX),
            reset: ahead,
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.tats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Makes room for one more key: forgets full buckets (no change in behaviour); if none is
/// full, forgets the eighth of the keys closest to full (they get a full bucket back early).
/// Each pass frees many slots, so the scan cost is shared by many insertions.
fn evict(tats: &mut HashMap<Key, Instant>, now: Instant, max_keys: usize) {
    tats.retain(|_, tat| *tat > now);
    if tats.len() < max_keys {
        return;
    }
    let mut deadlines: Vec<Instant> = tats.values().copied().collect();
    let n = (deadlines.len() / 8).max(1).min(deadlines.len());
    let (_, cutoff, _) = deadlines.select_nth_unstable(n - 1);
    let cutoff = *cutoff;
    let mut removed = 0;
    tats.retain(|_, tat| {
        if removed < n && *tat <= cutoff {
            removed += 1;
            false
        } else {
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::RateLimitConfig;

    fn buckets(capacity: u32, tokens: u32, period_ms: u64, max_keys: usize) -> Buckets {
        Buckets::new(
            RateLimitConfig::new(capacity, tokens, Duration::from_millis(period_ms))
                .max_keys(max_keys)
                .compile()
                .unwrap(),
        )
    }

    #[test]
    fn burst_then_refill_one_interval_at_a_time() {
        let b = buckets(3, 1, 1000, 10);
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(
            b.take(Key::Shared, t0),
            Decision::Allowed {
                remaining: 2,
                reset: s(1)
            }
        );
        assert_eq!(
            b.take(Key::Shared, t0),
            Decision::Allowed {
                remaining: 1,
                reset: s(2)
            }
        );
        assert_eq!(
            b.take(Key::Shared, t0),
            Decision::Allowed {
                remaining: 0,
                reset: s(3)
            }
        );
        assert_eq!(
            b.take(Key::Shared, t0),
            Decision::Limited {
                retry_after: s(1),
                reset: s(3)
            }
        );
        let t = t0 + Duration::from_millis(400);
        assert_eq!(
            b.take(Key::Shared, t),
            Decision::Limited {
                retry_after: Duration::from_millis(600),
                reset: Duration::from_millis(2600)
            }
        );
        assert!(matches!(
            b.take(Key::Shared, t0 + s(1)),
            Decision::Allowed { remaining: 0, .. }
        ));
        // Long idle: full again, never more than full.
        assert!(matches!(
            b.take(Key::Shared, t0 + s(100)),
            Decision::Allowed { remaining: 2, .. }
        ));
    }

    #[test]
    fn keys_are_independent() {
        let b = buckets(1, 1, 1000, 10);
        let t0 = Instant::now();
        let a = Key::Text("a".into());
        assert!(matches!(b.take(a.clone(), t0), Decision::Allowed { .. }));
        assert!(matches!(b.take(a, t0), Decision::Limited { .. }));
        assert!(matches!(
            b.take(Key::Ip([192, 0, 2, 1].into()), t0),
            Decision::Allowed { .. }
        ));
    }

    #[test]
    fn memory_is_bounded_and_full_buckets_go_first() {
        let b = buckets(2, 1, 1000, 16);
        let t0 = Instant::now();
        for i in 0..16u32 {
            b.take(Key::Text(i.to_string()), t0);
        }
        assert_eq!(b.len(), 16);
        // A new key at capacity: nothing is full yet, the eighth closest to full goes.
        b.take(Key::Text("new".into()), t0);
        assert!(b.len() <= 16);
        // After a refill every old bucket is full: they are all forgotten at once.
        b.take(Key::Text("later".into()), t0 + Duration::from_secs(10));
        for i in 0..100u32 {
            b.take(Key::Text(format!("x{i}")), t0 + Duration::from_secs(10));
            assert!(b.len() <= 16);
        }
    }
}
