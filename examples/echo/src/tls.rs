//! rustls server configuration and the TLS facts echo-basic reports.

use std::sync::Arc;

use rustls::server::{ServerConnection, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::EchoError;
use crate::go;

/// Builds a rustls server configuration like Go's `tls.Config` in echo-basic: TLS 1.2 and
/// 1.3, the given ALPN protocols and, when `client_ca_pem` is set, client certificates
/// requested and verified against it but not required (`tls.VerifyClientCertIfGiven`).
pub(crate) fn server_config(
    listener: &'static str,
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: Option<&str>,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, EchoError> {
    let tls_err = |reason: String| EchoError::Tls { listener, reason };
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(format!("cannot parse the certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(tls_err(
            "the certificate PEM holds no `-----BEGIN CERTIFICATE-----` block".to_owned(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| {
        tls_err(format!(
            "cannot read a PKCS#8, PKCS#1 or SEC1 private key from the key PEM: {e}"
        ))
    })?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| tls_err(format!("unsupported protocol versions: {e}")))?;

    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(ca_pem) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
                let cert =
                    cert.map_err(|e| tls_err(format!("cannot parse the client CA PEM: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| tls_err(format!("unusable client CA certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(tls_err(
                    "the client CA PEM holds no certificate (Go: unable to append certificate to CA pool)"
                        .to_owned(),
                ));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| {
                    tls_err(format!("cannot build the client certificate verifier: {e}"))
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };

    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        tls_err(format!(
            "certificate and key do not form a usable pair: {e}"
        ))
    })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// What the server learnt about a TLS connection once the handshake completed.
#[derive(Clone, Debug, Default)]
pub(crate) struct TlsInfo {
    /// `0x0303` (TLS 1.2) or `0x0304` (TLS 1.3).
    pub(crate) version: u16,
    pub(crate) server_name: String,
    pub(crate) negotiated_protocol: String,
    pub(crate) cipher_suite: String,
    pub(crate) curve: String,
    pub(crate) peer_certificates: Vec<String>,
}

impl TlsInfo {
    pub(crate) fn from_connection(conn: &ServerConnection) -> Self {
        Self {
            version: conn.protocol_version().map(u16::from).unwrap_or_default(),
            server_name: conn.server_name().unwrap_or_default().to_owned(),
            negotiated_protocol: conn
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .unwrap_or_default(),
            cipher_suite: conn
                .negotiated_cipher_suite()
                .map(|s| go::cipher_suite_name(u16::from(s.suite())))
                .unwrap_or_default(),
            curve: conn
                .negotiated_key_exchange_group()
                .map(|g| go::curve_name(u16::from(g.name())))
                .unwrap_or_default(),
            peer_certificates: conn
                .peer_certificates()
                .unwrap_or_default()
                .iter()
                .map(|c| go::pem_certificate(c.as_ref()))
                .collect(),
        }
    }

    /// The name echo-basic's HTTP and gRPC servers report (`"TLSv1.3"`).
    pub(crate) fn version_http(&self) -> &'static str {
        match self.version {
            0x0304 => "TLSv1.3",
            0x0303 => "TLSv1.2",
            0x0302 => "TLSv1.1",
            0x0301 => "TLSv1.0",
            _ => "",
        }
    }

    /// The name Go's `tls.VersionName` gives, used by the TCP echo (`"TLS 1.3"`).
    pub(crate) fn version_go_name(&self) -> String {
        match self.version {
            0x0304 => "TLS 1.3".to_owned(),
            0x0303 => "TLS 1.2".to_owned(),
            0x0302 => "TLS 1.1".to_owned(),
            0x0301 => "TLS 1.0".to_owned(),
            v => format!("0x{v:04X}"),
        }
    }
}
