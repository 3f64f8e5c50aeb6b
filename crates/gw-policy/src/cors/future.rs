use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

use crate::outcome::Outcome;

pin_project! {
    /// Response future of [`Cors`](super::Cors): the preflight answer, or the inner
    /// service's response with the CORS headers added.
    pub struct ResponseFuture<F, B> {
        #[pin]
        pub(super) inner: Outcome<F, B>,
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}
