//! TLS towards backends (BackendTLSPolicy, GEP-1897): the rustls client configuration of a
//! backend, built once per routing table, and the key that pools its connections.
//!
//! # Rules
//!
//! - **BackendTLSPolicy**: SNI is `validation.hostname`. The server certificate is verified
//!   against the policy's CA certificates, or the platform's trust store with
//!   `wellKnownCACertificates: System`. Without `subjectAltNames` the certificate must be valid
//!   for the hostname. GEP-1897: "When specified, the certificate served from the backend MUST
//!   have at least one Subject Alternate Name matching one of the specified SubjectAltNames"
//!   (and then the hostname is used for SNI only): DNS names match as in any TLS name check
//!   (wildcard certificates included), URIs (e.g. SPIFFE IDs) compare exactly.
//! - **`appProtocol: https` / `kubernetes.io/wss` without a policy**: TLS with the platform's
//!   trust store, SNI and verified name `<service>.<namespace>.svc` (the name Kubernetes
//!   service certificates carry). gw never talks TLS to a backend without verifying it: a
//!   backend with a private CA needs a BackendTLSPolicy.
//! - **Client certificate** (GEP-3155): the Gateway's `tls.backend.clientCertificateRef`, when
//!   set and valid, is presented to every TLS backend of that Gateway's routes.
//! - **ALPN**: `http/1.1` for HTTP/1.1 (also WebSocket) and `h2` for HTTP/2 (`kubernetes.io/h2c`
//!   ports with a policy, gRPC). HTTP/2 is spoken with prior knowledge whatever the server
//!   selects, as for h2c; `appProtocol: https` means HTTP/1.1 unless the request is gRPC.
//! - TLS 1.2 and 1.3, ring provider.
//!
//! Platform roots come from `rustls-native-certs` (the OS store: `/etc/ssl/certs` and
//! `SSL_CERT_FILE`/`SSL_CERT_DIR` on Linux), not `webpki-roots`: `System` names the platform's
//! store, which is where operators add their internal CAs, and it is updated with the OS instead
//! of with gw. It is read once per process, on first use.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use gw_model::resources::ObjectKey;
use gw_model::table::{AppProtocol, BackendTls, CertificatePair, SubjectAltNameMatch};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// What identifies a backend TLS setup: connections are pooled per key (and endpoint), so two
/// backends share connections only when everything that shapes the handshake is equal.
#[derive(Clone, Debug)]
pub(crate) struct TlsKey(Arc<KeyInner>);

#[derive(Debug, PartialEq, Eq, Hash)]
struct KeyInner {
    server_name: String,
    ca_pem: Vec<String>,
    system_roots: bool,
    /// `(is_uri, name)`.
    subject_alt_names: Vec<(bool, String)>,
    /// The client certificate chain (the key follows from it).
    client_cert: Option<String>,
}

impl PartialEq for TlsKey {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Eq for TlsKey {}

impl Hash for TlsKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.server_name.hash(state);
        self.0.ca_pem.len().hash(state);
        self.0.client_cert.is_some().hash(state);
    }
}

/// The TLS side of a backend, ready to connect.
#[derive(Debug)]
pub(crate) struct TlsTarget {
    pub(crate) key: TlsKey,
    pub(crate) server_name: ServerName<'static>,
    /// ALPN `http/1.1`.
    pub(crate) http1: Arc<ClientConfig>,
    /// ALPN `h2`.
    pub(crate) h2: Arc<ClientConfig>,
}

/// The backend's TLS setup: `Ok(None)` for cleartext backends, `Err` (a reason, answered 500)
/// when the material cannot be used (gw-model validated it, so this is unexpected).
pub(crate) fn target(
    service: &ObjectKey,
    protocol: AppProtocol,
    tls: Option<&BackendTls>,
    client_cert: Option<&CertificatePair>,
) -> Result<Option<Arc<TlsTarget>>, String> {
    let key = match (tls, protocol) {
        (Some(t), _) => KeyInner {
            server_name: t.hostname.clone(),
            ca_pem: t.ca_pem.clone(),
            system_roots: t.system_roots,
            subject_alt_names: t
                .subject_alt_names
                .iter()
                .map(|s| match s {
                    SubjectAltNameMatch::Dns(d) => (false, d.clone()),
                    SubjectAltNameMatch::Uri(u) => (true, u.clone()),
                })
                .collect(),
            client_cert: client_cert.map(|c| c.cert_pem.clone()),
        },
        (None, AppProtocol::Https) => KeyInner {
            server_name: format!("{}.{}.svc", service.name, service.namespace),
            ca_pem: Vec::new(),
            system_roots: true,
            subject_alt_names: Vec::new(),
            client_cert: client_cert.map(|c| c.cert_pem.clone()),
        },
        (
            None,
            AppProtocol::Http1 | AppProtocol::H2c | AppProtocol::WebSocket | AppProtocol::Raw,
        ) => {
            return Ok(None);
        }
    };
    let server_name = ServerName::try_from(key.server_name.clone())
        .map_err(|e| format!("TLS server name {:?}: {e}", key.server_name))?;
    let config = client_config(&key, client_cert)?;
    let with_alpn = |alpn: &[u8]| {
        let mut c = config.clone();
        c.alpn_protocols = vec![alpn.to_vec()];
        Arc::new(c)
    };
    Ok(Some(Arc::new(TlsTarget {
        http1: with_alpn(b"http/1.1"),
        h2: with_alpn(b"h2"),
        server_name,
        key: TlsKey(Arc::new(key)),
    })))
}

/// The platform's trust store, read once.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(error = %e, "could not read part of the platform's CA certificates");
        }
        if found.certs.is_empty() {
            tracing::warn!(
                "no platform CA certificates found (wellKnownCACertificates: System and \
                 appProtocol: https backends will fail verification); set SSL_CERT_FILE"
            );
        }
        found.certs
    })
}

fn client_config(
    key: &KeyInner,
    client_cert: Option<&CertificatePair>,
) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for pem in &key.ca_pem {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
            .filter_map(Result::ok)
            .collect();
        roots.add_parsable_certificates(certs);
    }
    if key.system_roots {
        roots.add_parsable_certificates(system_roots().iter().cloned());
    }
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?;
    let builder = if key.subject_alt_names.is_empty() {
        builder.with_root_certificates(roots)
    } else {
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("backend CA certificates: {e}"))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SanVerifier::new(
                inner,
                &key.subject_alt_names,
            )))
    };
    match client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some(pair) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(pair.cert_pem.as_bytes())
                    .filter_map(Result::ok)
                    .collect();
            let key = PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes())
                .map_err(|e| format!("backend client certificate key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("backend client certificate: {e}"))
        }
    }
}

/// Verifies the chain like webpki, then accepts the certificate when any of the listed
/// subjectAltNames matches, instead of the SNI hostname (GEP-1897).
#[derive(Debug)]
struct SanVerifier {
    inner: Arc<WebPkiServerVerifier>,
    dns: Vec<ServerName<'static>>,
    uris: Vec<String>,
}

impl SanVerifier {
    fn new(inner: Arc<WebPkiServerVerifier>, sans: &[(bool, String)]) -> SanVerifier {
        let mut dns = Vec::new();
        let mut uris = Vec::new();
        for (is_uri, name) in sans {
            if *is_uri {
                uris.push(name.clone());
            } else {
                match ServerName::try_from(name.clone()) {
                    Ok(n) => dns.push(n),
                    Err(e) => {
                        tracing::warn!(%name, error = %e, "subjectAltName is not a DNS name; ignored")
                    }
                }
            }
        }
        SanVerifier { inner, dns, uris }
    }
}

fn is_name_error(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        )
    )
}

/// The URI subjectAltNames of a DER certificate (empty when it cannot be parsed).
fn uri_sans(der: &[u8]) -> Vec<String> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| crate::incoming::alt_names(&cert).uri)
        .unwrap_or_default()
}

/// GEP-1897 subjectAltNames: "the certificate served from the backend MUST have at least one
/// Subject Alternate Name matching one of the specified SubjectAltNames".
fn matches_uri_sans(der: &[u8], wanted: &[String]) -> bool {
    uri_sans(der).iter().any(|u| wanted.contains(u))
}

impl ServerCertVerifier for SanVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        for name in &self.dns {
            match self
                .inner
                .verify_server_cert(end_entity, intermediates, name, ocsp, now)
            {
                Ok(v) => return Ok(v),
                Err(e) if is_name_error(&e) => {}
                // The chain itself is not trusted: no name can fix that.
                Err(e) => return Err(e),
            }
        }
        if !self.uris.is_empty() {
            // Verifies the chain; the SNI name's outcome does not matter here.
            match self
                .inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            {
                Ok(_) => {}
                Err(e) if is_name_error(&e) => {}
                Err(e) => return Err(e),
            }
            if matches_uri_sans(end_entity, &self.uris) {
                return Ok(ServerCertVerified::assertion());
            }
        }
        Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName,
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn ca_and_leaf(sans: &[&str]) -> (String, Vec<u8>) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        for s in sans {
            params.subject_alt_names.push(if s.contains("://") {
                rcgen::SanType::URI(rcgen::string::Ia5String::try_from(*s).unwrap())
            } else {
                rcgen::SanType::DnsName(rcgen::string::Ia5String::try_from(*s).unwrap())
            });
        }
        let leaf = params.signed_by(&key, &issuer).unwrap();
        (ca.pem(), leaf.der().to_vec())
    }

    fn verifier(ca_pem: &str, sans: &[(bool, &str)]) -> SanVerifier {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(
            CertificateDer::pem_slice_iter(ca_pem.as_bytes()).filter_map(Result::ok),
        );
        let inner = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let sans: Vec<(bool, String)> = sans.iter().map(|(u, s)| (*u, (*s).to_owned())).collect();
        SanVerifier::new(inner, &sans)
    }

    fn verify(
        v: &SanVerifier,
        leaf: &[u8],
        sni: &str,
    ) -> Result<ServerCertVerified, rustls::Error> {
        v.verify_server_cert(
            &CertificateDer::from(leaf.to_vec()),
            &[],
            &ServerName::try_from(sni.to_owned()).unwrap(),
            &[],
            UnixTime::now(),
        )
    }

    #[test]
    fn subject_alt_names_replace_the_hostname_when_any_matches() {
        // GEP-1897: "When specified, the certificate served from the backend MUST have at least
        // one Subject Alternate Name matching one of the specified SubjectAltNames."
        let (ca, leaf) =
            ca_and_leaf(&["abc.example.com", "spiffe://abc.example.com/test-identity"]);
        // SNI is not checked against the certificate once subjectAltNames are given.
        let v = verifier(
            &ca,
            &[(false, "nope.example.com"), (false, "abc.example.com")],
        );
        assert!(verify(&v, &leaf, "sni.example.net").is_ok());
        let v = verifier(&ca, &[(true, "spiffe://abc.example.com/test-identity")]);
        assert!(verify(&v, &leaf, "sni.example.net").is_ok());
        let v = verifier(&ca, &[(true, "spiffe://abc.example.com/other")]);
        assert!(verify(&v, &leaf, "abc.example.com").is_err());
        let v = verifier(&ca, &[(false, "other.example.com")]);
        assert!(verify(&v, &leaf, "abc.example.com").is_err());
    }

    #[test]
    fn subject_alt_names_never_bypass_the_chain() {
        let (_, leaf) = ca_and_leaf(&["abc.example.com", "spiffe://abc.example.com/id"]);
        let (other_ca, _) = ca_and_leaf(&["x.example.com"]);
        let v = verifier(
            &other_ca,
            &[
                (false, "abc.example.com"),
                (true, "spiffe://abc.example.com/id"),
            ],
        );
        let err = verify(&v, &leaf, "abc.example.com").unwrap_err();
        assert!(!is_name_error(&err), "{err:?}");
    }

    #[test]
    fn uri_sans_are_read_from_the_certificate() {
        let (_, leaf) = ca_and_leaf(&["a.example.com", "spiffe://a.example.com/x"]);
        assert_eq!(uri_sans(&leaf), vec!["spiffe://a.example.com/x".to_owned()]);
        assert!(uri_sans(b"not a certificate").is_empty());
    }

    #[test]
    fn https_app_protocol_without_policy_uses_the_service_name() {
        let svc = ObjectKey::new("shop", "cart");
        let t = target(&svc, AppProtocol::Https, None, None)
            .unwrap()
            .unwrap();
        assert_eq!(t.key.0.server_name, "cart.shop.svc");
        assert!(t.key.0.system_roots);
        assert_eq!(t.http1.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert_eq!(t.h2.alpn_protocols, vec![b"h2".to_vec()]);
        assert!(
            target(&svc, AppProtocol::Http1, None, None)
                .unwrap()
                .is_none()
        );
    }
}
