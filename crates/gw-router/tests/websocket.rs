//! WebSocket (HTTP/1.1 upgrade) passthrough, through a real hyper server in front of the Router.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::convert::Infallible;

use common::{GATEWAY, addr, echo, gateway, routes, service};
use futures_util::{SinkExt, StreamExt};
use gw_router::{Incoming, Router, RouterConfig, Scheme};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tower::ServiceExt;

#[tokio::test]
async fn websocket_upgrade_passthrough() {
    let backend = echo("ws-backend").await;
    let yaml = format!(
        "{GATEWAY}{}{}",
        service("ws", &[addr(&backend)], Some("kubernetes.io/ws")),
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: default}\nspec:\n  parentRefs: [{name: edge}]\n  rules: [{backendRefs: [{name: ws, port: 8080}]}]\n"
    );
    let router = Router::new(RouterConfig::default());
    router.swap(routes(&yaml));

    // The gateway's server: inserts `Incoming` and serves the router with upgrades.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw_addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (stream, peer) = listener.accept().await.unwrap();
        let svc =
            hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(Incoming {
                    gateway: gateway(),
                    port: 80,
                    scheme: Scheme::Http,
                    peer: Some(peer),
                    sni: None,
                });
                let router = router.clone();
                async move { Ok::<_, Infallible>(router.oneshot(req).await.unwrap()) }
            });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), svc)
            .with_upgrades()
            .await;
    });

    let tcp = tokio::net::TcpStream::connect(gw_addr).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async("ws://example.com/ws", tcp)
        .await
        .unwrap();
    assert_eq!(resp.status(), http::StatusCode::SWITCHING_PROTOCOLS);
    ws.send(Message::text("hello")).await.unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    assert_eq!(reply, Message::text("hello"));
    ws.close(None).await.unwrap();
    drop(ws);
    server.await.unwrap();
    backend.shutdown().await;
}
