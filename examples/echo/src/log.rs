//! The in-memory copy of what echo-basic prints to its pod log.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

/// How many lines an [`EchoLog`] keeps; older lines are dropped first.
pub const LOG_CAPACITY: usize = 100_000;

/// Handle on the log lines of a running [`EchoServer`](crate::EchoServer).
///
/// echo-basic prints one line per echoed request,
/// `Echoing back request made to <path incl. query> to client (<remote addr>)`, and the
/// conformance suite verifies request mirroring by counting those lines in the mirror
/// backend's pod log. This is the same log, kept in memory so an in-process harness can do
/// the same. Cloning is cheap (all clones share the lines). At most [`LOG_CAPACITY`]
/// lines are kept.
///
/// Lines written, in the order events happen:
/// - `Echoing back request made to <request-target> to client (<ip:port>)` (HTTP echo)
/// - `established websocket connection <ip:port>` (`/ws`)
/// - `Received over plaintext: <grpc method>` / `Received over TLS: <grpc method>` (gRPC)
/// - `Received UDP <payload> from <ip:port>` (UDP)
#[derive(Clone, Debug, Default)]
pub struct EchoLog {
    inner: Arc<LogInner>,
}

#[derive(Debug, Default)]
struct LogInner {
    lines: Mutex<VecDeque<String>>,
    to_stderr: bool,
    changed: Notify,
}

impl EchoLog {
    pub(crate) fn new(to_stderr: bool) -> Self {
        Self {
            inner: Arc::new(LogInner {
                to_stderr,
                ..LogInner::default()
            }),
        }
    }

    fn guard(&self) -> MutexGuard<'_, VecDeque<String>> {
        // A panic while holding this lock cannot leave the deque inconsistent.
        self.inner
            .lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn push(&self, line: String) {
        if self.inner.to_stderr {
            eprintln!("{line}");
        }
        tracing::info!(target: "gw_echo", "{line}");
        {
            let mut lines = self.guard();
            if lines.len() >= LOG_CAPACITY {
                lines.pop_front();
            }
            lines.push_back(line);
        }
        self.inner.changed.notify_waiters();
    }

    /// A snapshot of all lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.guard().iter().cloned().collect()
    }

    /// Number of lines containing `needle`.
    pub fn count_containing(&self, needle: &str) -> usize {
        self.guard().iter().filter(|l| l.contains(needle)).count()
    }

    /// Number of lines starting with `prefix`. The conformance suite's mirror check is
    /// `count_starting_with("Echoing back request made to <path> to client")`.
    pub fn count_starting_with(&self, prefix: &str) -> usize {
        self.guard()
            .iter()
            .filter(|l| l.starts_with(prefix))
            .count()
    }

    /// Number of lines currently kept.
    pub fn len(&self) -> usize {
        self.guard().len()
    }

    /// Whether no line is kept.
    pub fn is_empty(&self) -> bool {
        self.guard().is_empty()
    }

    /// Forgets all lines.
    pub fn clear(&self) {
        self.guard().clear();
    }

    /// Waits until at least `at_least` lines contain `needle`, or `timeout` elapses, and
    /// returns the count seen last (compare it with `at_least` to know which happened).
    pub async fn wait_for_containing(
        &self,
        needle: &str,
        at_least: usize,
        timeout: Duration,
    ) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            // Register before checking so a push between check and wait is not missed.
            notified.as_mut().enable();
            let count = self.count_containing(needle);
            if count >= at_least {
                return count;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.count_containing(needle);
            }
        }
    }
}
