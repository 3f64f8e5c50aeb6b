//! Request extensions that describe the connection a request came on. The server that accepts
//! connections (gw-router's listeners, or an embedder's own hyper/axum server) inserts them;
//! policies read them.

use std::net::{IpAddr, SocketAddr};

/// The address of the client that sent a request, as a request extension.
///
/// The server that accepts connections inserts it; policies that key on the client (the
/// [`ratelimit`](crate::ratelimit) `ClientIp` key, CEL's `source.address`, external
/// authorization's source peer) read it. When it is absent they fall back to a bare
/// [`SocketAddr`] extension, which some servers insert.
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
        Self::of(extensions).map(|a| a.ip())
    }

    /// The client address from request extensions: [`ClientAddr`], else a bare
    /// [`SocketAddr`].
    pub fn of(extensions: &http::Extensions) -> Option<SocketAddr> {
        extensions
            .get::<ClientAddr>()
            .map(|c| c.0)
            .or_else(|| extensions.get::<SocketAddr>().copied())
    }
}

/// What the TLS handshake established about a request's connection, as a request extension.
///
/// The server that terminates TLS inserts it (absent: the connection is cleartext). The peer
/// fields are set only for a client certificate the server *verified*; policies trust them
/// as the client's identity (CEL's `connection.*` attributes, external authorization's
/// `source.principal`).
///
/// ```
/// use gw_policy::TlsPeer;
///
/// let peer = TlsPeer::new()
///     .sni("api.example.com")
///     .uri_san("spiffe://example.com/ns/prod/sa/billing")
///     .subject("CN=billing,O=Example");
/// assert_eq!(peer.principal(), Some("spiffe://example.com/ns/prod/sa/billing"));
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(peer);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsPeer {
    /// The server name the client sent (SNI).
    pub sni: Option<String>,
    /// The verified client certificate's subject, as an RFC 4514 string.
    pub subject: Option<String>,
    /// The verified client certificate's URI subjectAltNames (SPIFFE IDs), in order.
    pub uri_sans: Vec<String>,
    /// The verified client certificate's DNS subjectAltNames, in order.
    pub dns_sans: Vec<String>,
}

impl TlsPeer {
    /// A TLS connection without SNI and without a client certificate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the SNI.
    pub fn sni(mut self, name: impl Into<String>) -> Self {
        self.sni = Some(name.into());
        self
    }

    /// Sets the client certificate's subject.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Adds a URI subjectAltName.
    pub fn uri_san(mut self, uri: impl Into<String>) -> Self {
        self.uri_sans.push(uri.into());
        self
    }

    /// Adds a DNS subjectAltName.
    pub fn dns_san(mut self, name: impl Into<String>) -> Self {
        self.dns_sans.push(name.into());
        self
    }

    /// The client's identity as Envoy reports it: the first URI SAN, else the first DNS SAN,
    /// else the subject; `None` without a client certificate.
    pub fn principal(&self) -> Option<&str> {
        self.uri_sans
            .first()
            .or(self.dns_sans.first())
            .or(self.subject.as_ref())
            .map(String::as_str)
    }
}
