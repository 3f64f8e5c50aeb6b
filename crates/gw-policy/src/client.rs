//! The client address request extension that policies read.

use std::net::{IpAddr, SocketAddr};

/// The address of the client that sent a request, as a request extension.
///
/// The server that accepts connections inserts it; policies that key on the client (the
/// [`ratelimit`](crate::ratelimit) `ClientIp` key) read it. When it is absent they fall back to
/// a bare [`SocketAddr`] extension, which some servers insert.
///
/// ```
/// use gw_policy::ClientAddr;
///
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(ClientAddr("192.0.2.7:50123".parse()?));
/// assert_eq!(ClientAddr::ip_of(req.extensions()), Some("192.0.2.7".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub SocketAddr);

impl ClientAddr {
    /// The client IP from request extensions: [`ClientAddr`], else a bare [`SocketAddr`].
    pub fn ip_of(extensions: &http::Extensions) -> Option<IpAddr> {
        extensions
            .get::<ClientAddr>()
            .map(|c| c.0.ip())
            .or_else(|| extensions.get::<SocketAddr>().map(SocketAddr::ip))
    }
}
