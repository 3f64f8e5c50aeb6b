//! `gw-axum-example --routes routes.yaml --jwks jwks.json --gateway default/edge --port 8080
//! --listen 127.0.0.1:8080`: serves [`gw_axum_example::app`].

use std::net::SocketAddr;

use clap::Parser;
use gw_policy::jwt::StaticJwks;

/// An axum app with gw-router as its fallback and gw-policy layers on `/api`.
#[derive(Debug, Parser)]
struct Args {
    /// Gateway API manifests for gw-router (YAML).
    #[arg(long)]
    routes: std::path::PathBuf,
    /// The JWKS whose keys sign accepted tokens (JSON).
    #[arg(long)]
    jwks: std::path::PathBuf,
    /// The Gateway requests are routed as, `namespace/name`.
    #[arg(long, default_value = "default/edge")]
    gateway: String,
    /// The Gateway listener port requests are routed as.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let args = Args::parse();
    let yaml = std::fs::read_to_string(&args.routes)
        .map_err(|e| format!("cannot read {}: {e}", args.routes.display()))?;
    let jwks = StaticJwks::from_file(&args.jwks)?;
    let (ns, name) = args
        .gateway
        .split_once('/')
        .ok_or("--gateway must be namespace/name")?;
    let app = gw_axum_example::app(gw_axum_example::Config::new(
        jwks, &yaml, ns, name, args.port,
    ))?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(listen = %args.listen, "serving");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
