//! Where a request came in: the [`Incoming`] request extension.

use std::net::SocketAddr;

use gw_model::resources::ObjectKey;

/// Where a request came in. The server that accepts connections for a Gateway's listeners
/// inserts it into every request's extensions before calling the [`Router`](crate::Router):
///
/// ```
/// use gw_router::{Incoming, Scheme};
/// use gw_router::gw_model::resources::ObjectKey;
///
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(Incoming {
///     gateway: ObjectKey::new("default", "edge"),
///     port: 8080,
///     scheme: Scheme::Http,
///     peer: Some("192.0.2.7:50123".parse().unwrap()),
///     sni: None,
/// });
/// ```
///
/// A request without it is answered 404 (and logged): the router cannot tell which listener
/// it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The Gateway whose listener accepted the connection.
    pub gateway: ObjectKey,
    /// The listener port the connection came in on.
    pub port: u16,
    /// Whether the connection is TLS-terminated (`Https`) or cleartext.
    pub scheme: Scheme,
    /// The client's address, for `X-Forwarded-For`.
    pub peer: Option<SocketAddr>,
    /// The server name the client sent in its TLS ClientHello (SNI), for TLS connections.
    /// When set, a request whose host selects another HTTPS listener than the SNI did is
    /// answered 421 Misdirected Request (GEP-3567); `None` routes by host alone.
    pub sni: Option<String>,
}

/// The scheme a request came in with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Cleartext HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// 80 or 443.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}
