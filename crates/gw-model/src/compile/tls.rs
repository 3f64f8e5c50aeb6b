//! Validation of TLS material held in Secrets and ConfigMaps.
//!
//! Gateway API: "If an entry in this list omits or specifies an invalid certificate ... the
//! Listener's ResolvedRefs condition MUST be False (InvalidCertificateRef)". gw checks what a TLS
//! server would: the Secret has `tls.crt` and `tls.key`, both are PEM, the key is one rustls can
//! sign with, and it belongs to the first certificate.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS material is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsMaterialError {
    /// A required key of the Secret or ConfigMap is absent.
    #[error("key `{0}` is missing")]
    MissingKey(&'static str),
    /// No PEM certificate could be read.
    #[error("`{0}` holds no PEM certificate")]
    NoCertificate(&'static str),
    /// The private key is not PEM, or of a type rustls cannot use.
    #[error("`tls.key` is not a usable PEM private key: {0}")]
    BadKey(String),
    /// The private key does not belong to the certificate, or the certificate does not parse.
    #[error("`tls.crt` and `tls.key` do not form a valid pair: {0}")]
    Mismatch(String),
}

/// A validated certificate chain and key, as PEM. The key is never serialized.
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertificatePair {
    /// Certificate chain, PEM.
    pub cert_pem: String,
    /// Private key, PEM.
    #[serde(skip)]
    pub key_pem: String,
    /// Validity window of the leaf (first) certificate.
    pub validity: Validity,
}

/// The `notBefore`/`notAfter` window of a certificate, in seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Validity {
    /// First second the certificate is valid.
    pub not_before: i64,
    /// Last second the certificate is valid.
    pub not_after: i64,
}

impl Validity {
    /// Why the certificate cannot be used at `now` (seconds since the epoch), if it cannot.
    ///
    /// ```
    /// use gw_model::table::Validity;
    ///
    /// let v = Validity { not_before: 100, not_after: 200 };
    /// assert!(v.check(150).is_ok());
    /// assert!(v.check(201).unwrap_err().contains("expired"));
    /// assert!(v.check(99).unwrap_err().contains("not valid before"));
    /// ```
    pub fn check(&self, now: i64) -> Result<(), String> {
        if now > self.not_after {
            Err(format!(
                "certificate expired at {}",
                rfc3339(self.not_after)
            ))
        } else if now < self.not_before {
            Err(format!(
                "certificate is not valid before {}",
                rfc3339(self.not_before)
            ))
        } else {
            Ok(())
        }
    }

    /// The next instant after `now` at which [`check`](Self::check) changes its answer.
    pub fn next_change(&self, now: i64) -> Option<i64> {
        if now < self.not_before {
            Some(self.not_before)
        } else if now <= self.not_after {
            self.not_after.checked_add(1)
        } else {
            None
        }
    }
}

fn rfc3339(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map_or_else(|_| format!("{secs}s since the epoch"), |t| t.to_string())
}

/// The validity window of a DER certificate.
fn validity(der: &[u8]) -> Result<Validity, String> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| format!("certificate: {e}"))?;
    let v = cert.validity();
    Ok(Validity {
        not_before: v.not_before.timestamp(),
        not_after: v.not_after.timestamp(),
    })
}

impl std::fmt::Debug for CertificatePair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificatePair")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Validates a `kubernetes.io/tls` Secret's data.
pub fn validate_certificate_pair(
    cert: Option<&[u8]>,
    key: Option<&[u8]>,
) -> Result<CertificatePair, TlsMaterialError> {
    let cert = cert.ok_or(TlsMaterialError::MissingKey("tls.crt"))?;
    let key = key.ok_or(TlsMaterialError::MissingKey("tls.key"))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsMaterialError::NoCertificate("tls.crt"));
    }
    let validity = chain
        .first()
        .map(|c| validity(c))
        .transpose()
        .map_err(TlsMaterialError::Mismatch)?
        .ok_or(TlsMaterialError::NoCertificate("tls.crt"))?;
    let key_der =
        PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsMaterialError::BadKey(e.to_string()))?;
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(chain, key_der, &provider)
        .map_err(|e| TlsMaterialError::Mismatch(e.to_string()))?;
    Ok(CertificatePair {
        cert_pem: String::from_utf8_lossy(cert).into_owned(),
        key_pem: String::from_utf8_lossy(key).into_owned(),
        validity,
    })
}

/// Validates a CA bundle (`ca.crt`): at least one PEM certificate that parses as X.509.
pub fn validate_ca_bundle(bundle: Option<&[u8]>) -> Result<String, TlsMaterialError> {
    let bundle = bundle.ok_or(TlsMaterialError::MissingKey("ca.crt"))?;
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(bundle)
        .filter_map(Result::ok)
        .collect();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsMaterialError::NoCertificate("ca.crt"));
    }
    Ok(String::from_utf8_lossy(bundle).into_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn self_signed(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_matching_pair_is_valid() {
        let (cert, key) = self_signed("example.com");
        assert!(validate_certificate_pair(Some(cert.as_bytes()), Some(key.as_bytes())).is_ok());
        assert!(validate_ca_bundle(Some(cert.as_bytes())).is_ok());
    }

    // "InvalidCertificateRef ... the referenced Secret ... is malformed" (Listener ResolvedRefs).
    #[test]
    fn malformed_or_mismatched_material_is_rejected() {
        let (cert, key) = self_signed("a.example.com");
        let (_, other_key) = self_signed("b.example.com");
        assert_eq!(
            validate_certificate_pair(None, Some(key.as_bytes())),
            Err(TlsMaterialError::MissingKey("tls.crt"))
        );
        assert!(matches!(
            validate_certificate_pair(Some(b"garbage"), Some(key.as_bytes())),
            Err(TlsMaterialError::NoCertificate(_))
        ));
        assert!(matches!(
            validate_certificate_pair(Some(cert.as_bytes()), Some(b"nope")),
            Err(TlsMaterialError::BadKey(_))
        ));
        assert!(matches!(
            validate_certificate_pair(Some(cert.as_bytes()), Some(other_key.as_bytes())),
            Err(TlsMaterialError::Mismatch(_))
        ));
        assert!(
            validate_ca_bundle(Some(
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
            ))
            .is_err()
        );
    }
}
