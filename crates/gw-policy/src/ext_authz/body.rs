//! The request body after external authorization: what was buffered for the auth service,
//! then the rest of the stream, unchanged.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

/// The body the inner service receives from [`ExtAuthz`](super::ExtAuthz): the bytes buffered
/// to send to the auth service (`forwardBody`), then the rest of the client's body, frame by
/// frame. Without body forwarding it is the client's body, untouched.
#[derive(Debug)]
pub struct RequestBody<B> {
    prefix: Option<Bytes>,
    trailers: Option<HeaderMap>,
    rest: Option<B>,
}

impl<B> RequestBody<B> {
    /// The client's body, nothing buffered.
    pub fn new(body: B) -> Self {
        RequestBody {
            prefix: None,
            trailers: None,
            rest: Some(body),
        }
    }
}

impl<B> Body for RequestBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        if let Some(p) = this.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(p))));
        }
        if let Some(rest) = &mut this.rest {
            return Pin::new(rest).poll_frame(cx);
        }
        Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none()
            && self.trailers.is_none()
            && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let p = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        match &self.rest {
            None => SizeHint::with_exact(p),
            Some(r) => {
                let h = r.size_hint();
                let mut out = SizeHint::new();
                out.set_lower(h.lower().saturating_add(p));
                if let Some(u) = h.upper() {
                    out.set_upper(u.saturating_add(p));
                }
                out
            }
        }
    }
}

/// Reads `body` until at least `max` bytes are buffered or it ends. Returns the bytes for the
/// auth service (at most `max`), whether that is only part of the body, and the body to
/// forward (everything, in order).
pub(crate) async fn buffer<B>(
    mut body: B,
    max: usize,
) -> Result<(Bytes, bool, RequestBody<B>), B::Error>
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut buf = BytesMut::new();
    let mut trailers = None;
    let mut ended = body.is_end_stream();
    while !ended && buf.len() < max {
        match body.frame().await {
            None => ended = true,
            Some(frame) => match frame?.into_data() {
                Ok(data) => buf.extend_from_slice(&data),
                Err(frame) => {
                    // Trailers end the body.
                    trailers = frame.into_trailers().ok();
                    ended = true;
                }
            },
        }
        ended = ended || body.is_end_stream();
    }
    let all = buf.freeze();
    let partial = !ended || all.len() > max;
    let for_auth = all.slice(..all.len().min(max));
    let rest = RequestBody {
        prefix: (!all.is_empty()).then_some(all),
        trailers,
        rest: (!ended).then_some(body),
    };
    Ok((for_auth, partial, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    /// A body of several data frames.
    pub(crate) struct Chunks(pub(crate) std::collections::VecDeque<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.get_mut().0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    pub(crate) fn chunks(parts: &[&'static str]) -> Chunks {
        Chunks(
            parts
                .iter()
                .map(|p| Bytes::from_static(p.as_bytes()))
                .collect(),
        )
    }

    #[tokio::test]
    async fn buffers_up_to_max_and_replays_everything() {
        let (auth, partial, rest) = buffer(chunks(&["abc", "def", "ghi"]), 4).await.unwrap();
        assert_eq!(auth, "abcd");
        assert!(partial);
        let all = rest.collect().await.unwrap().to_bytes();
        assert_eq!(all, "abcdefghi");
    }

    #[tokio::test]
    async fn small_bodies_are_whole() {
        let (auth, partial, rest) = buffer(Full::new(Bytes::from("hi")), 10).await.unwrap();
        assert_eq!(auth, "hi");
        assert!(!partial);
        assert_eq!(rest.size_hint().exact(), Some(2));
        assert_eq!(rest.collect().await.unwrap().to_bytes(), "hi");
    }
}
