//! Timeouts (GEP-1742) and retries of timed-out attempts, on paused time against a backend that
//! accepts connections and never answers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{GATEWAY, call, get, router, service};
use http::StatusCode;
use tokio::net::TcpListener;

/// A backend that accepts and holds connections without answering; counts them.
async fn black_hole() -> (
    std::net::SocketAddr,
    Arc<AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(s);
        }
    });
    (addr, accepted, task)
}

fn route(rule: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: default}}\nspec:\n  parentRefs: [{{name: edge}}]\n  rules:\n  - {rule}\n"
    )
}

// "Request specifies the maximum duration for a gateway to respond to an HTTP request. If the
// gateway has not been able to respond before this deadline is met, the gateway MUST return a
// timeout error."
#[tokio::test(start_paused = true)]
async fn request_timeout_is_504() {
    let (addr, accepted, task) = black_hole().await;
    let yaml = format!(
        "{GATEWAY}{}{}",
        service("slow", &[addr], None),
        route("{timeouts: {request: 2s}, backendRefs: [{name: slow, port: 8080}]}")
    );
    let r = router(&yaml);
    let start = tokio::time::Instant::now();
    assert_eq!(
        call(&r, get("/", "e.com")).await.status(),
        StatusCode::GATEWAY_TIMEOUT
    );
    assert!(start.elapsed() >= std::time::Duration::from_secs(2));
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    task.abort();
}

// "BackendRequest specifies a timeout for an individual request from the gateway to a
// backend"; GEP-1731: "any retry attempts which reach the configured BackendRequest timeout
// duration without a response SHOULD be canceled ... before attempting to retry".
#[tokio::test(start_paused = true)]
async fn backend_request_timeouts_are_retried_then_504() {
    let (addr, accepted, task) = black_hole().await;
    let yaml = format!(
        "{GATEWAY}{}{}",
        service("slow", &[addr], None),
        route(
            "{timeouts: {request: 60s, backendRequest: 1s}, retry: {codes: [503], attempts: 2, backoff: 10ms}, backendRefs: [{name: slow, port: 8080}]}"
        )
    );
    let r = router(&yaml);
    assert_eq!(
        call(&r, get("/", "e.com")).await.status(),
        StatusCode::GATEWAY_TIMEOUT
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        3,
        "one attempt and two retries"
    );
    task.abort();
}

// The request timeout covers retries: it cuts them short.
#[tokio::test(start_paused = true)]
async fn request_timeout_bounds_retries() {
    let (addr, accepted, task) = black_hole().await;
    let yaml = format!(
        "{GATEWAY}{}{}",
        service("slow", &[addr], None),
        route(
            "{timeouts: {request: 3s, backendRequest: 2s}, retry: {codes: [503], attempts: 5, backoff: 10ms}, backendRefs: [{name: slow, port: 8080}]}"
        )
    );
    let r = router(&yaml);
    let start = tokio::time::Instant::now();
    assert_eq!(
        call(&r, get("/", "e.com")).await.status(),
        StatusCode::GATEWAY_TIMEOUT
    );
    let took = start.elapsed();
    assert!(
        took >= std::time::Duration::from_secs(3) && took < std::time::Duration::from_secs(4),
        "{took:?}"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    task.abort();
}
