//! [`ResponseFuture`], the future of the [`Router`](crate::Router).

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Response, StatusCode};

use crate::body::Body;

type Forward = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

/// The response future of the [`Router`](crate::Router).
///
/// Answers the gateway gives itself (404, redirects, CORS preflights, 500/503) are ready
/// without allocation; only forwarding to a backend, which does I/O anyway, is boxed.
pub struct ResponseFuture {
    state: State,
}

enum State {
    Ready(Option<Response<Body>>),
    Forward(Forward),
}

impl ResponseFuture {
    pub(crate) fn ready(response: Response<Body>) -> Self {
        ResponseFuture {
            state: State::Ready(Some(response)),
        }
    }

    pub(crate) fn forward(f: impl Future<Output = Response<Body>> + Send + 'static) -> Self {
        ResponseFuture {
            state: State::Forward(Box::pin(f)),
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Ready(_) => "ready",
            State::Forward(_) => "forwarding",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().state {
            State::Ready(r) => Poll::Ready(Ok(r.take().unwrap_or_else(|| {
                // Polled after completion: a caller bug; answer rather than panic.
                let mut resp = Response::new(crate::body::empty());
                *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                resp
            }))),
            State::Forward(f) => f.as_mut().poll(cx).map(Ok),
        }
    }
}
