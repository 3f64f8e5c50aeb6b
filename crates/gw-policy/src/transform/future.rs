use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Response, StatusCode};
use pin_project_lite::pin_project;

use super::CompiledTransform;
use crate::expr::Vars;
use crate::outcome::status_response;

pin_project! {
    /// Response future of [`Transform`](super::Transform): the inner service's response with
    /// the response header transformations applied, or the 500 of a failed path rewrite.
    pub struct ResponseFuture<F, B> {
        #[pin]
        pub(super) state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    pub(super) enum State<F, B> {
        Inner {
            #[pin]
            future: F,
            // Set when the transformation has response header operations.
            response: Option<(Arc<CompiledTransform>, Vars)>,
        },
        Failed { response: Option<Response<B>> },
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { future, response } => {
                let mut resp = ready!(future.poll(cx))?;
                if let Some((config, vars)) = response.take() {
                    let vars = vars.with_response(resp.status(), resp.headers());
                    config.response.apply(&vars, resp.headers_mut(), "response");
                }
                Poll::Ready(Ok(resp))
            }
            // A second poll after completion is a caller bug; answer 500 rather than panic.
            StateProj::Failed { response } => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(|| status_response(StatusCode::INTERNAL_SERVER_ERROR)))),
        }
    }
}
