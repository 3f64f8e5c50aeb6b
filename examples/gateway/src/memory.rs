//! Giving memory back to the system after reloads.
//!
//! A reload builds the new route table and router index beside the old ones, then frees the
//! old ones. glibc's allocator keeps most of what is freed in its arenas (only the top of a heap
//! is returned on its own), so the resident size climbs with reloads towards twice the
//! structures: at 5,000 routes, 62 MB after start and 87 MB after 20 one-route changes. A trim
//! brings it back to 62 MB, but the pages it returns fault back in at the next reload (about
//! 10 ms at 5,000 routes). So the trim waits until the configuration has been quiet for
//! [`QUIET`]: a burst of changes pays nothing, and memory comes back once it is over.

use std::time::Duration;

/// How long after the last reload the free memory is returned.
pub(crate) const QUIET: Duration = Duration::from_secs(5);

/// When the next trim is due: [`QUIET`] after the last reload.
#[derive(Debug, Default)]
pub(crate) struct Trim {
    at: Option<tokio::time::Instant>,
}

impl Trim {
    /// A reload happened: trim once the configuration was quiet for [`QUIET`].
    pub(crate) fn reloaded(&mut self) {
        self.at = Some(tokio::time::Instant::now() + QUIET);
    }

    /// Resolves when a trim is due (never when none is).
    pub(crate) async fn due(&self) {
        match self.at {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }

    /// Trims on a blocking thread (off the runtime's workers) and clears the schedule.
    pub(crate) fn run(&mut self) {
        self.at = None;
        tokio::task::spawn_blocking(|| {
            let started = std::time::Instant::now();
            let released = release_free_memory();
            tracing::debug!(
                released,
                trim_ms = started.elapsed().as_secs_f64() * 1e3,
                "free memory returned to the system"
            );
        });
    }
}

/// Asks glibc to return the free pages of every arena to the system (`malloc_trim(0)`, which
/// gives back free pages anywhere in a heap, not only at its top). Returns whether anything
/// was returned. Elsewhere (musl, other systems) it does nothing and returns false. It locks each
/// arena while walking it, so call it off the request path ([`Trim::run`] uses a blocking
/// thread).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub(crate) fn release_free_memory() -> bool {
    // SAFETY: `malloc_trim` takes no pointer and has no precondition; glibc serializes it with
    // every other allocator call.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Not glibc: nothing to do.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn release_free_memory() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_trim_waits_for_a_quiet_configuration() {
        let mut trim = Trim::default();
        let idle = tokio::time::timeout(Duration::from_secs(3600), trim.due()).await;
        assert!(idle.is_err(), "no reload, no trim");
        trim.reloaded();
        let start = tokio::time::Instant::now();
        tokio::time::sleep(QUIET / 2).await;
        trim.reloaded();
        trim.due().await;
        assert_eq!(start.elapsed(), QUIET / 2 + QUIET);
        trim.run();
        assert!(trim.at.is_none());
    }

    #[test]
    fn freed_memory_can_be_given_back() {
        // Many small blocks freed below a live one: the pages they held are free inside the
        // heap, which is what a reload leaves behind.
        let blocks: Vec<Vec<u8>> = (0..20_000).map(|i| vec![(i % 251) as u8; 512]).collect();
        let keep = vec![1u8; 512];
        drop(blocks);
        let released = release_free_memory();
        assert_eq!(keep[0], 1);
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(
                released,
                "malloc_trim returned nothing after 10 MB were freed"
            );
        } else {
            assert!(!released);
        }
    }
}
