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

/// The programmatic Secrets and ConfigMaps, as Kubernetes manifests (generated once).
pub(crate) fn programmatic_objects() -> &'static [Value] {
    static OBJECTS: OnceLock<Vec<Value>> = OnceLock::new();
    OBJECTS.get_or_init(generate)
}

fn generate() -> Vec<Value> {
    let mut objects = vec![
        self_signed_secret(WEB_BACKEND, "certificate", &["*"]),
        self_signed_secret(
            INFRA,
            "tls-validity-checks-certificate",
            &["*", "*.org", "*.wildcard.org"],
        ),
    ];

    let web_ca = Ca::new("web-backend-ca");
    objects.push(web_ca.config_map(WEB_BACKEND, "web-backend-cm"));

    for prefix in ["tls-validity-checks", "tls-validity-checks-per-port"] {
        let ca = Ca::new(prefix);
        objects.push(ca.config_map(INFRA, &format!("{prefix}-ca-certificate")));
        objects.push(ca.signed_secret(INFRA, &format!("{prefix}-client-certificate"), &[]));
    }

    let tls_checks = Ca::new("tls-checks-ca");
    objects.push(tls_checks.config_map(INFRA, "tls-checks-ca-certificate"));
    objects.push(tls_checks.signed_secret(
        INFRA,
        "tls-checks-certificate",
        &[
            San::Dns("abc.example.com"),
            San::Uri("spiffe://abc.example.com/test-identity"),
            San::Dns("other.example.com"),
        ],
    ));
    objects.push(tls_checks.signed_secret(INFRA, "tls-checks-client-certificate", &[]));
    for ns in [INFRA, APP_BACKEND] {
        objects.push(tls_checks.signed_secret(
            ns,
            "tls-passthrough-checks-certificate",
            &[San::Dns("abc.example.com")],
        ));
    }
    objects.push(tls_checks.signed_secret(
        INFRA,
        "tls-terminate-checks-certificate",
        &[San::Dns("tls.example.com")],
    ));

    objects.push(Ca::new("mismatch-ca").config_map(INFRA, "mismatch-ca-certificate"));
    objects
}

/// A subjectAltName of a generated certificate.
#[derive(Debug, Clone, Copy)]
enum San<'a> {
    Dns(&'a str),
    Uri(&'a str),
}

impl San<'_> {
    fn to_rcgen(self) -> SanType {
        match self {
            San::Dns(name) => SanType::DnsName(name.try_into().expect("DNS SAN is IA5")),
            San::Uri(uri) => SanType::URI(uri.try_into().expect("URI SAN is IA5")),
        }
    }
}

/// A self-signed CA that signs leaf certificates.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(common_name: &str) -> Ca {
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
        let key = KeyPair::generate().expect("generate CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("self-sign CA");
        Ca { issuer }
    }

    fn config_map(&self, namespace: &str, name: &str) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace},
            "data": {"ca.crt": self.issuer.pem()},
        })
    }

    fn signed_secret(&self, namespace: &str, name: &str, sans: &[San<'_>]) -> Value {
        let mut params = leaf_params(name, sans);
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("generate leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        tls_secret(namespace, name, &cert.pem(), &key.serialize_pem())
    }
}

fn leaf_params(common_name: &str, sans: &[San<'_>]) -> CertificateParams {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.subject_alt_names = sans.iter().map(|s| s.to_rcgen()).collect();
    params
}

fn self_signed_secret(namespace: &str, name: &str, hosts: &[&str]) -> Value {
    let sans: Vec<San<'_>> = hosts.iter().map(|h| San::Dns(h)).collect();
    let key = KeyPair::generate().expect("generate key");
    let cert = leaf_params(name, &sans)
        .self_signed(&key)
        .expect("self-sign certificate");
    tls_secret(namespace, name, &cert.pem(), &key.serialize_pem())
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
