//! The one future shape every policy shares: either the policy answered itself (a preflight,
//! a 401, a 429) or the inner service's response, with headers the policy adds to it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::header::VARY;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use pin_project_lite::pin_project;

pin_project! {
    /// The state of a policy's response future.
    #[project = OutcomeProj]
    pub(crate) enum Outcome<F, B> {
        /// The request went to the inner service; `headers` are merged into its response.
        Inner {
            #[pin]
            future: F,
            headers: HeaderMap,
        },
        /// The policy answered; taken on the first poll.
        Ready { response: Option<Response<B>> },
    }
}

impl<F, B> Outcome<F, B> {
    pub(crate) fn inner(future: F) -> Self {
        Outcome::Inner {
            future,
            headers: HeaderMap::new(),
        }
    }

    pub(crate) fn inner_with(future: F, headers: HeaderMap) -> Self {
        Outcome::Inner { future, headers }
    }

    pub(crate) fn ready(response: Response<B>) -> Self {
        Outcome::Ready {
            response: Some(response),
        }
    }
}

impl<F, B, E> Future for Outcome<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            OutcomeProj::Inner { future, headers } => {
                let mut response = ready!(future.poll(cx))?;
                merge_headers(response.headers_mut(), std::mem::take(headers));
                Poll::Ready(Ok(response))
            }
            // A second poll after completion is a caller bug; answering 500 instead of
            // panicking keeps the process up.
            OutcomeProj::Ready { response } => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(|| status_response(StatusCode::INTERNAL_SERVER_ERROR)))),
        }
    }
}

/// Merges policy headers into a response: `Vary` is appended (the backend may vary on other
/// headers too), every other header replaces the backend's.
pub(crate) fn merge_headers(target: &mut HeaderMap, headers: HeaderMap) {
    let mut last = None;
    for (name, value) in headers {
        // `HeaderMap::into_iter` yields the name only for the first of several values.
        if let Some(n) = name {
            last = Some(n);
        }
        let Some(name) = &last else { continue };
        if *name == VARY {
            target.append(name.clone(), value);
        } else {
            target.insert(name.clone(), value);
        }
    }
}

/// An empty response with `status`.
pub(crate) fn status_response<B: Default>(status: StatusCode) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = status;
    response
}

/// An empty response with `status` and `headers`.
pub(crate) fn response_with<B: Default>(status: StatusCode, headers: HeaderMap) -> Response<B> {
    let mut response = status_response(status);
    *response.headers_mut() = headers;
    response
}

/// A header value from a number.
pub(crate) fn number(n: u64) -> HeaderValue {
    HeaderValue::from(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, SET_COOKIE};

    #[test]
    fn merge_appends_vary_and_replaces_the_rest() {
        let mut target = HeaderMap::new();
        target.insert(VARY, HeaderValue::from_static("accept-encoding"));
        target.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        let mut add = HeaderMap::new();
        add.insert(VARY, HeaderValue::from_static("origin"));
        add.insert(
            ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("https://a"),
        );
        add.append(SET_COOKIE, HeaderValue::from_static("a=1"));
        add.append(SET_COOKIE, HeaderValue::from_static("b=2"));
        merge_headers(&mut target, add);
        assert_eq!(target.get_all(VARY).iter().count(), 2);
        assert_eq!(target[ACCESS_CONTROL_ALLOW_ORIGIN], "https://a");
        // Multi-valued policy headers: the last value wins under `insert`; policies only
        // emit single-valued headers besides `Vary`.
        assert_eq!(target.get_all(SET_COOKIE).iter().count(), 1);
    }
}
