use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Response, StatusCode};
use pin_project_lite::pin_project;

use super::Loading;
use crate::outcome::{Outcome, status_response};

/// What a request waiting for the first keys of a source does once they are in.
pub(super) type Then<F, B> = Box<dyn FnOnce() -> Outcome<F, B> + Send>;

pin_project! {
    /// Response future of [`Jwt`](super::Jwt): the 401 answer, or the inner
    /// service's response.
    pub struct ResponseFuture<F, B> {
        #[pin]
        pub(super) state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    pub(super) enum State<F, B> {
        /// The token was checked.
        Decided {
            #[pin]
            outcome: Outcome<F, B>,
        },
        /// A source was still loading its first keys; the token is checked again when the
        /// (bounded) wait ends.
        Waiting {
            wait: Loading,
            then: Option<Then<F, B>>,
        },
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(super) fn decided(outcome: Outcome<F, B>) -> Self {
        ResponseFuture {
            state: State::Decided { outcome },
        }
    }

    pub(super) fn waiting(wait: Loading, then: Then<F, B>) -> Self {
        ResponseFuture {
            state: State::Waiting {
                wait,
                then: Some(then),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project().state.project() {
                StateProj::Decided { outcome } => return outcome.poll(cx),
                StateProj::Waiting { wait, then } => {
                    ready!(wait.as_mut().poll(cx));
                    match then.take() {
                        Some(then) => then(),
                        // Polled again after the decision was taken: a caller bug; answer 500
                        // rather than panic.
                        None => Outcome::ready(status_response(StatusCode::INTERNAL_SERVER_ERROR)),
                    }
                }
            };
            self.as_mut()
                .project()
                .state
                .set(State::Decided { outcome: next });
        }
    }
}
