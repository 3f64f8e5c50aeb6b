//! Where a request came in: the [`Incoming`] request extension.

use std::net::SocketAddr;

use gw_model::resources::ObjectKey;
use gw_policy::TlsPeer;

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

/// What the policy layers and the ExternalAuth check learn about a TLS connection: the SNI
/// and, when the client presented a certificate that was verified, its subject (RFC 4514) and
/// its URI and DNS subjectAltNames. A server inserts the result into each request's extensions
/// (the router adds an SNI-only one when a server does not); CEL sees it as `connection.*`
/// and the Envoy `ext_authz` check as the peer's principal.
///
/// `verified_client_certificate` is the DER of the client's end-entity certificate, given only
/// when the handshake verified it: a server that lets invalid certificates through (GEP-91
/// `AllowInsecureFallback`) passes `None` for those, so an unverified certificate never
/// becomes an identity. A certificate that does not parse gives no identity either.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let key = rcgen::KeyPair::generate()?;
/// let mut params = rcgen::CertificateParams::new(vec!["client.example.com".to_owned()])?;
/// params.distinguished_name.push(rcgen::DnType::CommonName, "billing");
/// params.subject_alt_names.push(rcgen::SanType::URI("spiffe://example.com/billing".try_into()?));
/// let cert = params.self_signed(&key)?;
///
/// let peer = gw_router::tls_peer(Some("api.example.com"), Some(cert.der()));
/// assert_eq!(peer.sni.as_deref(), Some("api.example.com"));
/// assert_eq!(peer.subject.as_deref(), Some("CN=billing"));
/// assert_eq!(peer.uri_sans, ["spiffe://example.com/billing"]);
/// assert_eq!(peer.dns_sans, ["client.example.com"]);
/// assert_eq!(peer.principal(), Some("spiffe://example.com/billing"));
/// # Ok(())
/// # }
/// ```
pub fn tls_peer(sni: Option<&str>, verified_client_certificate: Option<&[u8]>) -> TlsPeer {
    let mut peer = TlsPeer::new();
    if let Some(sni) = sni {
        peer = peer.sni(sni);
    }
    let Some(Ok((_, cert))) = verified_client_certificate.map(x509_parser::parse_x509_certificate)
    else {
        return peer;
    };
    let subject = rfc4514(cert.subject());
    if !subject.is_empty() {
        peer = peer.subject(subject);
    }
    let names = alt_names(&cert);
    peer.uri_sans = names.uri;
    peer.dns_sans = names.dns;
    peer
}

/// A certificate's URI and DNS subjectAltNames, each in certificate order.
#[derive(Debug, Default)]
pub(crate) struct AltNames {
    pub(crate) uri: Vec<String>,
    pub(crate) dns: Vec<String>,
}

/// The subjectAltNames of a parsed certificate (none when the extension is absent or invalid):
/// the client identity of [`tls_peer`] and the backend check of BackendTLSPolicy's URI SANs.
pub(crate) fn alt_names(cert: &x509_parser::certificate::X509Certificate<'_>) -> AltNames {
    use x509_parser::extensions::GeneralName;
    let mut names = AltNames::default();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(u) => names.uri.push((*u).to_owned()),
                GeneralName::DNSName(d) => names.dns.push((*d).to_owned()),
                _ => {}
            }
        }
    }
    names
}

/// A distinguished name as RFC 4514 writes it: the last RDN first, attributes of one RDN
/// joined by `+`, known attribute types by their short names (`CN`, `O`, ...) and others as
/// dotted OIDs with a `#`-hex value, special characters escaped.
fn rfc4514(name: &x509_parser::x509::X509Name<'_>) -> String {
    use std::fmt::Write as _;
    let registry = x509_parser::objects::oid_registry();
    let mut out = String::new();
    for (i, rdn) in name
        .iter()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .enumerate()
    {
        if i > 0 {
            out.push(',');
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = attr.attr_type();
            match (
                x509_parser::objects::oid2abbrev(oid, registry),
                attr.as_str(),
            ) {
                (Ok(short), Ok(value)) => {
                    out.push_str(short);
                    out.push('=');
                    escape_value(value, &mut out);
                }
                _ => {
                    let _ = write!(out, "{oid}=#");
                    for b in attr.attr_value().as_bytes() {
                        let _ = write!(out, "{b:02x}");
                    }
                }
            }
        }
    }
    out
}

/// RFC 4514 §2.4: `"`, `+`, `,`, `;`, `<`, `>` and `\` escaped anywhere, a leading space or
/// `#` and a trailing space escaped, NUL as `\00`.
fn escape_value(value: &str, out: &mut String) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '#' if i == 0 => out.push_str("\\#"),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{escape_value, tls_peer};

    fn cert(build: impl FnOnce(&mut rcgen::CertificateParams)) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        build(&mut params);
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    // RFC 4514 §2.1: "the output consists of the string encodings of each RelativeDistinguishedName
    // in the RDNSequence (according to Section 2.2), starting with the last element of the
    // sequence and moving backwards toward the first", separated by commas.
    #[test]
    fn the_subject_is_written_last_rdn_first() {
        let der = cert(|p| {
            p.distinguished_name.push(rcgen::DnType::CountryName, "DE");
            p.distinguished_name
                .push(rcgen::DnType::OrganizationName, "Example, Inc.");
            p.distinguished_name
                .push(rcgen::DnType::CommonName, "billing");
        });
        let peer = tls_peer(None, Some(&der));
        assert_eq!(
            peer.subject.as_deref(),
            Some("CN=billing,O=Example\\, Inc.,C=DE")
        );
        assert_eq!(peer.principal(), Some("CN=billing,O=Example\\, Inc.,C=DE"));
    }

    // RFC 4514 §2.4: special characters, a leading space or '#', and a trailing space are
    // escaped with a backslash.
    #[test]
    fn special_characters_are_escaped() {
        let mut out = String::new();
        escape_value("#a+b;c<d>\"e\\ ", &mut out);
        assert_eq!(out, "\\#a\\+b\\;c\\<d\\>\\\"e\\\\\\ ");
    }

    #[test]
    fn sans_are_kept_in_order_and_garbage_gives_no_identity() {
        let der = cert(|p| {
            p.subject_alt_names = vec![
                rcgen::SanType::DnsName("b.example.com".try_into().expect("dns")),
                rcgen::SanType::URI("spiffe://example.com/a".try_into().expect("uri")),
                rcgen::SanType::DnsName("a.example.com".try_into().expect("dns")),
            ];
        });
        let peer = tls_peer(Some("h"), Some(&der));
        assert_eq!(peer.subject, None, "an empty subject is no subject");
        assert_eq!(peer.dns_sans, ["b.example.com", "a.example.com"]);
        assert_eq!(peer.uri_sans, ["spiffe://example.com/a"]);

        let peer = tls_peer(Some("h"), Some(b"not a certificate"));
        assert_eq!(peer.sni.as_deref(), Some("h"));
        assert_eq!(peer.principal(), None);
        assert_eq!(tls_peer(None, None).principal(), None);
    }
}
