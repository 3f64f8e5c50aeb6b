//! Layer-4 routing: TLS by SNI (TLSRoute, Passthrough and Terminate), TCP (TCPRoute) and UDP
//! (UDPRoute).
//!
//! The pieces are plain async functions and types, so an embedder can put them together in
//! its own accept loop (the `gw-gateway` binary does exactly this):
//!
//! 1. [`sni::peek`] reads the ClientHello of a TCP connection, without consuming it, and tells
//!    its server name. [`sni::parse_client_hello`] is the pure parser underneath.
//! 2. [`L4Routes`] (built from the compiled table with [`L4Routes::build`]) chooses the
//!    listener by server name ([`L4Routes::tls_listener`]: the most specific hostname, HTTPS
//!    and TLS listeners of the port together, GEP-2643), then the route
//!    ([`Listener::route`]: the TLSRoute with the most specific hostname, or the oldest
//!    TCPRoute/UDPRoute), then a backend ([`Route::backend`]: by weight, then round-robin over
//!    the endpoints; [`Route::choose`] then [`BackendChoice::resolve`] to wait for the first
//!    DNS answer of an external backend). Every failure is a [`SelectError`]: close the
//!    connection.
//! 3. [`tcp::connect`] and [`tcp::proxy`] carry the bytes (with the peeked ones replayed
//!    first: [`sni::Peeked::into_stream`]); [`udp::UdpProxy`] relays datagrams per client
//!    (with a [`udp::SessionObserver`] per session for metrics).
//!
//! ```no_run
//! # async fn serve(routes: gw_router::l4::L4Routes, gateway: gw_router::gw_model::resources::ObjectKey)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use gw_router::l4::{sni, tcp, TlsAction};
//!
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:443").await?;
//! let (mut client, _) = listener.accept().await?;
//! let peeked = sni::peek(&mut client, sni::PeekConfig::default()).await?;
//! let server_name = peeked.server_name.as_deref();
//! let tls_listener = routes.tls_listener(&gateway, 443, server_name)?;
//! if tls_listener.action() == Some(TlsAction::Passthrough) {
//!     let backend = tls_listener.route(server_name)?.backend()?;
//!     let config = tcp::TcpProxyConfig::default();
//!     let mut upstream = tcp::connect(backend, &config).await?;
//!     // The ClientHello goes to the backend first, then everything else.
//!     let mut client = peeked.into_stream(client);
//!     tcp::proxy(&mut client, &mut upstream, &config).await?;
//! }
//! # Ok(()) }
//! ```

mod select;
pub mod sni;
pub mod tcp;
pub mod udp;

#[cfg(test)]
mod tests;

pub use self::select::{BackendChoice, L4Routes, Listener, Route, SelectError, TlsAction};
