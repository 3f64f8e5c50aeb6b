//! Embedding gw in an axum application.
//!
//! [`app`] builds an axum `Router` with:
//!
//! - `GET /healthz`: a plain axum handler;
//! - `GET /api/me`: an axum handler behind two gw-policy layers, a [`JwtLayer`] (bearer tokens
//!   checked against a JWKS) and a [`RateLimitLayer`] keyed by the token's subject with a CEL
//!   expression (`jwt.sub`), so each user has their own bucket;
//! - everything else: gw-router's [`Router`](gw_router::Router) as the fallback service,
//!   routing by the Gateway API resources given (HTTPRoutes of one Gateway listener), with a
//!   middleware that tells it which listener the request came in on
//!   ([`Incoming`]).
//!
//! ```no_run
//! # async fn run(jwks: gw_policy::jwt::StaticJwks, yaml: &str) -> Result<(), Box<dyn std::error::Error>> {
//! let app = gw_axum_example::app(gw_axum_example::Config::new(jwks, yaml, "default", "edge", 8080))?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(
//!     listener,
//!     app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
//! )
//! .await?;
//! # Ok(())
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::routing::get;
use gw_policy::ClientAddr;
use gw_policy::jwt::{CompiledJwt, JwtClaims, JwtConfig, JwtLayer, StaticJwks};
use gw_policy::ratelimit::{KeySource, RateLimitConfig, RateLimitLayer};
use gw_router::gw_model::{self, CompileOptions, resources::ObjectKey, resources::Resources};
use gw_router::{Incoming, Routes, Scheme};
use tower::ServiceBuilder;

/// What the app needs.
#[derive(Debug)]
#[non_exhaustive]
pub struct Config {
    /// Keys that sign accepted tokens.
    pub jwks: StaticJwks,
    /// Gateway API manifests (YAML) for gw-router: a GatewayClass with controller
    /// `gw.dev/gateway`, the Gateway, HTTPRoutes, Services and EndpointSlices.
    pub routes_yaml: String,
    /// The Gateway (namespace, name) and listener port that requests are routed as.
    pub gateway: ObjectKey,
    /// The listener port.
    pub port: u16,
    /// Requests per user per minute on `/api` (bursts of that size).
    pub per_user_per_minute: u32,
}

impl Config {
    /// A configuration with 60 requests per user per minute.
    pub fn new(jwks: StaticJwks, routes_yaml: &str, ns: &str, gateway: &str, port: u16) -> Self {
        Config {
            jwks,
            routes_yaml: routes_yaml.to_owned(),
            gateway: ObjectKey::new(ns, gateway),
            port,
            per_user_per_minute: 60,
        }
    }
}

/// Why the app cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// A manifest does not load (file, document and field in the message).
    #[error("routes: {0}")]
    Routes(String),
    /// The JWT settings do not compile.
    #[error("JWT: {0}")]
    Jwt(#[from] gw_policy::jwt::JwtError),
    /// The rate limit does not compile.
    #[error("rate limit: {0}")]
    RateLimit(#[from] gw_policy::ratelimit::RateLimitError),
}

/// The application; serve it with `into_make_service_with_connect_info::<SocketAddr>()` so
/// that gw-router and the policies see the client address.
pub fn app(config: Config) -> Result<axum::Router, AppError> {
    let loaded = gw_model::load::parse("routes.yaml", &config.routes_yaml);
    if let Some(e) = loaded.errors.first() {
        return Err(AppError::Routes(e.to_string()));
    }
    let mut resources = Resources::new();
    resources.extend(loaded.objects);
    let compiled = gw_model::compile(&resources, &CompileOptions::new("gw.dev/gateway"));
    let gw = gw_router::Router::new(gw_router::RouterConfig::default());
    gw.swap(Routes::build(&compiled.table));

    let (gateway, port) = (config.gateway, config.port);
    let gateway_service = ServiceBuilder::new()
        .map_request(move |mut req: Request| {
            let peer = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0);
            req.extensions_mut().insert(Incoming {
                gateway: gateway.clone(),
                port,
                scheme: Scheme::Http,
                peer,
                sni: None,
            });
            req
        })
        .service(gw);

    let jwt = CompiledJwt::new(JwtConfig::new(), Arc::new(config.jwks))?;
    let limit = RateLimitConfig::new(
        config.per_user_per_minute,
        config.per_user_per_minute,
        Duration::from_secs(60),
    )
    .key(KeySource::cel("jwt.sub")?)
    .compile()?;
    let api = ServiceBuilder::new()
        // The client address for policies (ClientIp keys, CEL `source.address`).
        .map_request(|mut req: Request| {
            if let Some(ConnectInfo(addr)) =
                req.extensions().get::<ConnectInfo<SocketAddr>>().copied()
            {
                req.extensions_mut().insert(ClientAddr(addr));
            }
            req
        })
        .layer(JwtLayer::new(jwt))
        .layer(RateLimitLayer::new(limit));

    Ok(axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/me", get(me).route_layer(api))
        .fallback_service(gateway_service))
}

/// The caller's token subject (the JWT layer put the claims in the request).
async fn me(req: Request) -> impl axum::response::IntoResponse {
    let sub = req
        .extensions()
        .get::<JwtClaims>()
        .and_then(|c| c.0.get("sub").cloned())
        .unwrap_or(serde_json::Value::Null);
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "sub": sub }).to_string(),
    )
}
