//! TLS termination for HTTPS listeners: certificates chosen by SNI, ALPN, client certificates.

use std::sync::Arc;

use gw_model::table::{CertificateEntry, ClientValidation, ListenerTable};
use rustls::RootCertStore;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// One certificate with the names it is valid for.
#[derive(Debug)]
struct Cert {
    key: Arc<CertifiedKey>,
}

impl Cert {
    fn load(entry: &CertificateEntry) -> Result<Cert, String> {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(entry.pair.cert_pem.as_bytes())
                .filter_map(Result::ok)
                .collect();
        let key = PrivateKeyDer::from_pem_slice(entry.pair.key_pem.as_bytes())
            .map_err(|e| format!("Secret {}: {e}", entry.secret))?;
        let provider = rustls::crypto::ring::default_provider();
        let key = CertifiedKey::from_der(chain, key, &provider)
            .map_err(|e| format!("Secret {}: {e}", entry.secret))?;
        Ok(Cert { key: Arc::new(key) })
    }

    /// Whether the certificate is valid for `sni` (its SANs, wildcards included).
    fn valid_for(&self, sni: &str) -> bool {
        let (Some(der), Ok(name)) = (self.key.cert.first(), ServerName::try_from(sni)) else {
            return false;
        };
        webpki::EndEntityCert::try_from(der)
            .is_ok_and(|ee| ee.verify_is_valid_for_subject_name(&name).is_ok())
    }
}

/// The certificates of one listener.
#[derive(Debug)]
struct ListenerCerts {
    hostname: Option<String>,
    certs: Vec<Cert>,
}

/// Chooses the certificate for a ClientHello: the listener whose hostname matches the SNI most
/// specifically (a listener without hostname matches any SNI, and a missing SNI), then, among
/// that listener's certificates, the first whose names cover the SNI, else its first.
#[derive(Debug)]
struct SniResolver {
    /// Most specific hostname first.
    listeners: Vec<ListenerCerts>,
}

impl SniResolver {
    fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let sni = sni.map(|s| s.trim_end_matches('.').to_ascii_lowercase());
        let listener = self.listeners.iter().find(|l| match (&l.hostname, &sni) {
            (None, _) => true,
            (Some(h), Some(s)) => gw_model::compile::hostname::wildcard_matches(h, s),
            (Some(_), None) => false,
        })?;
        let cert = match &sni {
            Some(s) => listener
                .certs
                .iter()
                .find(|c| c.valid_for(s))
                .or(listener.certs.first()),
            None => listener.certs.first(),
        }?;
        Some(cert.key.clone())
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name())
    }
}

/// Builds the TLS configuration of one socket from its HTTPS listeners.
pub(crate) fn server_config(
    listeners: &[&ListenerTable],
) -> Result<Arc<rustls::ServerConfig>, String> {
    let mut resolver = SniResolver {
        listeners: Vec::new(),
    };
    let mut validation: Option<&ClientValidation> = None;
    for l in listeners {
        let Some(tls) = &l.tls else { continue };
        let certs = tls
            .certificates
            .iter()
            .map(Cert::load)
            .collect::<Result<Vec<_>, _>>()?;
        resolver.listeners.push(ListenerCerts {
            hostname: l.hostname.clone(),
            certs,
        });
        if validation.is_none() {
            validation = tls.client_validation.as_ref();
        }
    }
    resolver.listeners.sort_by(|a, b| {
        gw_model::compile::hostname::specificity_cmp(
            a.hostname.as_deref().unwrap_or(""),
            b.hostname.as_deref().unwrap_or(""),
        )
    });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?;
    let builder = match validation {
        None => builder.with_no_client_auth(),
        Some(v) => {
            let mut roots = RootCertStore::empty();
            for pem in &v.ca_pem {
                let certs: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_slice_iter(pem.as_bytes())
                        .filter_map(Result::ok)
                        .collect();
                roots.add_parsable_certificates(certs);
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if v.allow_insecure_fallback {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| e.to_string())?)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
