//! The request body's minimum data rate (`--request-body-min-rate`, `--request-body-grace`):
//! a client that trickles its body ("slow POST") fails its request with 408 and the connection
//! is closed.
//!
//! Only the time the gateway spends waiting for the client counts: while the backend does not
//! read (back-pressure), the body is not polled and no time is charged to the client.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use gw_router::BoxError;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The rule: after `grace`, at least `rate` bytes per second of waiting time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MinRate {
    pub rate: u64,
    pub grace: Duration,
}

/// A request body that fails when the client sends slower than its [`MinRate`]; `tripped`
/// tells the server to answer 408 and close.
pub(crate) struct RateLimited<B> {
    inner: B,
    min: MinRate,
    received: u64,
    waited: Duration,
    waiting_since: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
    tripped: Arc<AtomicBool>,
}

impl<B> RateLimited<B> {
    pub(crate) fn new(inner: B, min: MinRate, tripped: Arc<AtomicBool>) -> Self {
        RateLimited {
            inner,
            min,
            received: 0,
            waited: Duration::ZERO,
            waiting_since: None,
            timer: None,
            tripped,
        }
    }

    /// How long the client may still keep the gateway waiting, counted from `since`.
    fn allowance(&self) -> Duration {
        let earned = Duration::from_secs_f64(self.received as f64 / self.min.rate as f64);
        (self.min.grace + earned).saturating_sub(self.waited)
    }
}

/// The client sent its body too slowly.
#[derive(Debug, thiserror::Error)]
#[error("request body slower than --request-body-min-rate")]
pub(crate) struct TooSlow;

impl<B> Body for RateLimited<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(since) = this.waiting_since.take() {
                    this.waited += since.elapsed();
                }
                if let Some(d) = frame.data_ref() {
                    this.received += d.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if this.min.rate == 0 {
                    return Poll::Pending;
                }
                let since = *this.waiting_since.get_or_insert_with(Instant::now);
                let deadline = since + this.allowance();
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.tripped.store(true, Ordering::Release);
                Poll::Ready(Some(Err(TooSlow.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    /// A body that yields `left` one-byte frames, one every `every`.
    struct Trickle {
        every: Duration,
        left: usize,
        sleep: Pin<Box<Sleep>>,
    }

    impl Trickle {
        fn new(every: Duration, left: usize) -> Self {
            Trickle {
                every,
                left,
                sleep: Box::pin(tokio::time::sleep(every)),
            }
        }
    }

    impl Body for Trickle {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if self.left == 0 {
                return Poll::Ready(None);
            }
            std::task::ready!(self.sleep.as_mut().poll(cx));
            self.left -= 1;
            let next = Instant::now() + self.every;
            self.sleep.as_mut().reset(next);
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"x")))))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_fails_after_the_grace_and_a_fast_body_passes() {
        let min = MinRate {
            rate: 100,
            grace: Duration::from_secs(2),
        };
        // One byte every 100 ms (10 B/s): allowed 2 s + n/100 s of waiting; fails near 2.2 s.
        let tripped = Arc::new(AtomicBool::new(false));
        let body = RateLimited::new(
            Trickle::new(Duration::from_millis(100), 1000),
            min,
            tripped.clone(),
        );
        let started = Instant::now();
        assert!(body.collect().await.is_err());
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(3),
            "{took:?}"
        );
        assert!(tripped.load(Ordering::Acquire));

        // 200 bytes at 1 ms each: well above the rate.
        let tripped = Arc::new(AtomicBool::new(false));
        let body = RateLimited::new(
            Trickle::new(Duration::from_millis(1), 200),
            min,
            tripped.clone(),
        );
        assert_eq!(
            body.collect().await.map(|b| b.to_bytes().len()).ok(),
            Some(200)
        );
        assert!(!tripped.load(Ordering::Acquire));
    }
}
