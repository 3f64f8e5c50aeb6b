use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body_util::{Either, Full};

type Boxed<B, E> =
    Pin<Box<dyn Future<Output = Result<Response<Either<B, Full<Bytes>>>, E>> + Send>>;

/// Response future of [`ExtAuthz`](super::ExtAuthz): the inner service's response (`Left`),
/// or the auth service's denial or the failure status (`Right`). Boxed: the check does I/O.
pub struct ResponseFuture<B, E> {
    pub(super) inner: Boxed<B, E>,
}

impl<B, E> fmt::Debug for ResponseFuture<B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture(..)")
    }
}

impl<B, E> Future for ResponseFuture<B, E> {
    type Output = Result<Response<Either<B, Full<Bytes>>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}
