//! TLS termination for HTTPS listeners: certificates chosen by SNI, ALPN, client certificates.

use std::sync::Arc;

use gw_model::table::{CertificateEntry, ClientValidation, ListenerTable};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

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
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("client certificate validation: {e}"))?;
            let verifier: Arc<dyn ClientCertVerifier> = if v.allow_insecure_fallback {
                Arc::new(InsecureFallback(verifier))
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

tokio::task_local! {
    /// Set during a handshake run by [`handshake`] when [`InsecureFallback`] let a client
    /// certificate through that did not verify.
    static UNVERIFIED: std::cell::Cell<bool>;
}

fn mark_unverified() {
    let _ = UNVERIFIED.try_with(|u| u.set(true));
}

/// Runs a TLS handshake and tells whether a client certificate it accepted was verified:
/// `false` when `AllowInsecureFallback` let an invalid one through. (rustls calls the verifier
/// inside the handshake future's poll, so a task-local set around that future sees it.)
pub(crate) async fn handshake<F: Future>(handshake: F) -> (F::Output, bool) {
    UNVERIFIED
        .scope(std::cell::Cell::new(false), async {
            let out = handshake.await;
            (out, !UNVERIFIED.with(std::cell::Cell::get))
        })
        .await
}

/// GEP-91 `AllowInsecureFallback`: "Connections are allowed even if client certificate
/// validation fails or the client does not present a certificate". The certificate is still
/// requested (with the CA names as hints) and verified; a missing or invalid one is logged and
/// accepted. (`AllowValidOnly` uses rustls's `WebPkiClientVerifier` as is: a valid certificate
/// is required.)
#[derive(Debug)]
struct InsecureFallback(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for InsecureFallback {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0
            .verify_client_cert(end_entity, intermediates, now)
            .or_else(|e| {
                tracing::debug!(error = %e, "invalid client certificate accepted (AllowInsecureFallback)");
                mark_unverified();
                Ok(ClientCertVerified::assertion())
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .verify_tls12_signature(message, cert, dss)
            .or_else(|e| {
                tracing::debug!(error = %e, "client certificate signature not verified (AllowInsecureFallback)");
                mark_unverified();
                Ok(HandshakeSignatureValid::assertion())
            })
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .verify_tls13_signature(message, cert, dss)
            .or_else(|e| {
                tracing::debug!(error = %e, "client certificate signature not verified (AllowInsecureFallback)");
                mark_unverified();
                Ok(HandshakeSignatureValid::assertion())
            })
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
