//! Test helpers shared by the policy modules.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Request, Response};
use tower::{BoxError, Service, ServiceExt, service_fn};

/// A backend that answers 200 with body `backend` and counts its calls.
pub(crate) fn backend() -> (
    impl Service<Request<String>, Response = Response<String>, Error = Infallible, Future = impl Send>
    + Clone,
    Arc<AtomicUsize>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let svc = service_fn(move |req: Request<String>| {
        counter.fetch_add(1, Ordering::SeqCst);
        let mut resp = Response::new(String::from("backend"));
        // Echo request extensions the tests look for.
        resp.extensions_mut().clone_from(req.extensions());
        async move { Ok::<_, Infallible>(resp) }
    });
    (svc, calls)
}

/// Sends `req` through `svc`.
pub(crate) async fn send<S>(svc: &S, req: Request<String>) -> Response<String>
where
    S: Service<Request<String>, Response = Response<String>> + Clone,
    S::Error: Into<BoxError> + std::fmt::Debug,
{
    match svc.clone().oneshot(req).await {
        Ok(r) => r,
        Err(e) => panic!("service failed: {e:?}"),
    }
}

/// Number of calls so far.
pub(crate) fn calls(c: &AtomicUsize) -> usize {
    c.load(Ordering::SeqCst)
}
