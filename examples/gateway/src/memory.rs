//! The allocator, and giving memory back to the system after reloads.
//!
//! A reload builds the new route table and router index beside the old ones, then frees the
//! old ones: tens of thousands of small blocks at 5,000 routes. gw-gateway allocates with
//! jemalloc (feature `jemalloc`, on by default). With glibc's allocator, the blocks a reload
//! freed were sorted into its bins by the next allocation it could not serve from a cache,
//! which came at the start of the next reload and cost it several milliseconds (a one-route
//! change at 5,000 routes was visible in 17-23 ms; with jemalloc, in 9-11 ms, at the same
//! resident size). jemalloc's own background threads return freed pages to the system about
//! half a second after they are freed ([`MALLOC_CONF`]), off the threads that serve requests
//! and reload.
//!
//! On top of that, once the configuration has been quiet for [`QUIET`], whatever is still
//! free is returned at once ([`release_free_memory`]): a burst of changes pays nothing, and
//! memory comes back once it is over. Without jemalloc, that is glibc's `malloc_trim`, which
//! matters more there: glibc keeps most of what is freed (only the top of a heap is returned
//! on its own), so the resident size climbed from 62 MB after start to 87 MB after 20
//! one-route changes at 5,000 routes, and the trim brought it back to 62 MB.

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

/// jemalloc in place of the system allocator.
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts (`_RJEM_MALLOC_CONF` in the environment, the
/// prefixed build's name for `MALLOC_CONF`, still overrides them): pages freed and unused for
/// half a second go back to the system (`dirty_decay_ms`, with no second "muzzy" stage),
/// returned by jemalloc's background threads rather than by whichever thread frees next.
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[allow(unsafe_code)]
// SAFETY: the symbol jemalloc (built with tikv-jemalloc-sys's `_rjem_` prefix) reads its
// compile-time options from: a pointer to a NUL-terminated string that lives forever.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: ConfString =
    ConfString(c"dirty_decay_ms:500,muzzy_decay_ms:0,background_thread:true".as_ptr());

/// A pointer to a static C string, shareable between threads.
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[repr(transparent)]
struct ConfString(*const std::ffi::c_char);

// SAFETY: the string it points to is static and never written.
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[allow(unsafe_code)]
unsafe impl Sync for ConfString {}

/// Returns the free pages of every arena to the system now. With jemalloc, purges every arena
/// (`arena.<MALLCTL_ARENAS_ALL>.purge`) and returns whether the purge ran; with glibc,
/// `malloc_trim(0)`, which gives back free pages anywhere in a heap, not only at its top, and
/// returns whether anything was returned. Elsewhere (musl, other systems) it does nothing and
/// returns false. It locks each arena while walking it, so call it off the request path
/// ([`Trim::run`] uses a blocking thread).
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[allow(unsafe_code)]
pub(crate) fn release_free_memory() -> bool {
    // SAFETY: a NUL-terminated mallctl name; the purge reads and writes no value.
    unsafe {
        tikv_jemalloc_sys::mallctl(
            c"arena.4096.purge".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        ) == 0
    }
}

/// glibc: `malloc_trim(0)` (see the jemalloc version above).
#[cfg(all(
    not(all(feature = "jemalloc", not(target_env = "msvc"))),
    target_os = "linux",
    target_env = "gnu"
))]
#[allow(unsafe_code)]
pub(crate) fn release_free_memory() -> bool {
    // SAFETY: `malloc_trim` takes no pointer and has no precondition; glibc serializes it with
    // every other allocator call.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Neither jemalloc nor glibc: nothing to do.
#[cfg(not(any(
    all(feature = "jemalloc", not(target_env = "msvc")),
    all(target_os = "linux", target_env = "gnu")
)))]
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
        if cfg!(any(
            all(feature = "jemalloc", not(target_env = "msvc")),
            all(target_os = "linux", target_env = "gnu")
        )) {
            assert!(released, "nothing was returned after 10 MB were freed");
        } else {
            assert!(!released);
        }
    }

    /// jemalloc runs with gw-gateway's options: it found `_rjem_malloc_conf`.
    #[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
    #[test]
    #[allow(unsafe_code)]
    fn jemalloc_reads_the_gateways_options() {
        fn read<T: Default>(name: &std::ffi::CStr) -> T {
            let mut value = T::default();
            let mut len = std::mem::size_of::<T>();
            // SAFETY: a NUL-terminated name, and a value of the size and type the option has.
            let rc = unsafe {
                tikv_jemalloc_sys::mallctl(
                    name.as_ptr(),
                    (&raw mut value).cast(),
                    &raw mut len,
                    std::ptr::null_mut(),
                    0,
                )
            };
            assert_eq!(rc, 0, "mallctl {name:?}");
            value
        }
        assert_eq!(read::<isize>(c"opt.dirty_decay_ms"), 500);
        assert_eq!(read::<isize>(c"opt.muzzy_decay_ms"), 0);
        assert!(read::<bool>(c"opt.background_thread"));
    }
}
