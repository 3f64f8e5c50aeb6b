//! The objects the real suite creates programmatically before any test (README "What the real
//! suite does before each test", step 3): TLS Secrets and CA ConfigMaps, generated with rcgen
//! (ECDSA P-256) once per process.

use std::sync::OnceLock;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use serde_json::{Value, json};

const INFRA: &str = "gateway-conformance-infra";
const APP_BACKEND: &str = "gateway-conformance-app-backend";
const WEB_BACKEND: &str = "gateway-conformance-web-backend";

/// The programmatic Secrets and ConfigMaps, as Kubernetes manifests (generated once per
/// process). `Err` says which certificate rcgen could not generate.
pub fn programmatic_objects() -> Result<&'static [Value], String> {
    static OBJECTS: OnceLock<Result<Vec<Value>, String>> = OnceLock::new();
    OBJECTS
        .get_or_init(|| generate().map_err(|e| format!("generating certificates: {e}")))
        .as_deref()
        .map_err(Clone::clone)
}

/// The PEM `tls.crt` / `tls.key` of a programmatic Secret, or the `ca.crt` of a ConfigMap
/// (`key` names the data key), when it exists.
pub fn programmatic_pem(namespace: &str, name: &str, key: &str) -> Option<String> {
    let objects = programmatic_objects().ok()?;
    objects
        .iter()
        .find(|o| {
            o.pointer("/metadata/namespace").and_then(Value::as_str) == Some(namespace)
                && o.pointer("/metadata/name").and_then(Value::as_str) == Some(name)
        })
        .and_then(|o| {
            o.get("stringData")
                .or_else(|| o.get("data"))
                .and_then(|d| d.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
}

fn generate() -> Result<Vec<Value>, rcgen::Error> {
    let mut objects = vec![
        self_signed_secret(WEB_BACKEND, "certificate", &["*"])?,
        self_signed_secret(
            INFRA,
            "tls-validity-checks-certificate",
            &["*", "*.org", "*.wildcard.org"],
        )?,
    ];

    let web_ca = Ca::new("web-backend-ca")?;
    objects.push(web_ca.config_map(WEB_BACKEND, "web-backend-cm"));

    for prefix in ["tls-validity-checks", "tls-validity-checks-per-port"] {
        let ca = Ca::new(prefix)?;
        objects.push(ca.config_map(INFRA, &format!("{prefix}-ca-certificate")));
        objects.push(ca.signed_secret(INFRA, &format!("{prefix}-client-certificate"), &[])?);
    }

    let tls_checks = Ca::new("tls-checks-ca")?;
    objects.push(tls_checks.config_map(INFRA, "tls-checks-ca-certificate"));
    objects.push(tls_checks.signed_secret(
        INFRA,
        "tls-checks-certificate",
        &[
            San::Dns("abc.example.com"),
            San::Uri("spiffe://abc.example.com/test-identity"),
            San::Dns("other.example.com"),
        ],
    )?);
    objects.push(tls_checks.signed_secret(INFRA, "tls-checks-client-certificate", &[])?);
    for ns in [INFRA, APP_BACKEND] {
        objects.push(tls_checks.signed_secret(
            ns,
            "tls-passthrough-checks-certificate",
            &[San::Dns("abc.example.com")],
        )?);
    }
    objects.push(tls_checks.signed_secret(
        INFRA,
        "tls-terminate-checks-certificate",
        &[San::Dns("tls.example.com")],
    )?);

    objects.push(Ca::new("mismatch-ca")?.config_map(INFRA, "mismatch-ca-certificate"));
    Ok(objects)
}

/// A subjectAltName of a generated certificate.
#[derive(Debug, Clone, Copy)]
enum San<'a> {
    Dns(&'a str),
    Uri(&'a str),
}

impl San<'_> {
    fn to_rcgen(self) -> Result<SanType, rcgen::Error> {
        Ok(match self {
            San::Dns(name) => SanType::DnsName(name.try_into()?),
            San::Uri(uri) => SanType::URI(uri.try_into()?),
        })
    }
}

/// A self-signed CA that signs leaf certificates.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(common_name: &str) -> Result<Ca, rcgen::Error> {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let issuer = CertifiedIssuer::self_signed(params, key)?;
        Ok(Ca { issuer })
    }

    fn config_map(&self, namespace: &str, name: &str) -> Value {
        ca_config_map(namespace, name, &self.issuer.pem())
    }

    fn signed_secret(
        &self,
        namespace: &str,
        name: &str,
        sans: &[San<'_>],
    ) -> Result<Value, rcgen::Error> {
        let mut params = leaf_params(name, sans)?;
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(tls_secret(
            namespace,
            name,
            &cert.pem(),
            &key.serialize_pem(),
        ))
    }
}

fn leaf_params(common_name: &str, sans: &[San<'_>]) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.subject_alt_names = sans
        .iter()
        .map(|s| s.to_rcgen())
        .collect::<Result<_, _>>()?;
    Ok(params)
}

fn self_signed_secret(namespace: &str, name: &str, hosts: &[&str]) -> Result<Value, rcgen::Error> {
    let sans: Vec<San<'_>> = hosts.iter().map(|h| San::Dns(h)).collect();
    let key = KeyPair::generate()?;
    let cert = leaf_params(name, &sans)?.self_signed(&key)?;
    Ok(tls_secret(
        namespace,
        name,
        &cert.pem(),
        &key.serialize_pem(),
    ))
}

fn tls_secret(namespace: &str, name: &str, cert_pem: &str, key_pem: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": cert_pem, "tls.key": key_pem},
    })
}

/// A ConfigMap holding a CA bundle under `ca.crt`, as BackendTLSPolicy and frontend
/// client-certificate validation read it.
pub fn ca_config_map(namespace: &str, name: &str, pem: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"ca.crt": pem},
    })
}
