//! ReferenceGrant and BackendTLSPolicy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::meta::{LocalObjectReference, ObjectMeta, PolicyTargetReference};

/// `ReferenceGrant`: lets objects of other namespaces refer to objects of this one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrant {
    /// Object metadata.
    pub metadata: ObjectMeta,
    /// Desired state.
    pub spec: ReferenceGrantSpec,
}

/// `ReferenceGrant.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantSpec {
    /// Who may refer.
    #[serde(default)]
    pub from: Vec<ReferenceGrantFrom>,
    /// What may be referred to.
    #[serde(default)]
    pub to: Vec<ReferenceGrantTo>,
}

/// `ReferenceGrant.spec.from[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantFrom {
    /// Group of the referring kind.
    #[serde(default)]
    pub group: String,
    /// Referring kind.
    pub kind: String,
    /// Namespace of the referring objects.
    pub namespace: String,
}

/// `ReferenceGrant.spec.to[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantTo {
    /// Group of the referent kind.
    #[serde(default)]
    pub group: String,
    /// Referent kind.
    pub kind: String,
    /// A single referent; absent means every object of the kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `BackendTLSPolicy` (GEP-1897).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendTlsPolicy {
    /// Object metadata.
    pub metadata: ObjectMeta,
    /// Desired state.
    pub spec: BackendTlsPolicySpec,
}

/// `BackendTLSPolicy.spec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendTlsPolicySpec {
    /// Services (optionally a port by sectionName) this applies to.
    #[serde(default)]
    pub target_refs: Vec<PolicyTargetReference>,
    /// How to validate the backend's certificate.
    pub validation: BackendTlsValidation,
    /// Implementation-specific options.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// `BackendTLSPolicy.spec.validation`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendTlsValidation {
    /// CA certificates (ConfigMaps with `ca.crt`).
    #[serde(default)]
    pub ca_certificate_refs: Vec<LocalObjectReference>,
    /// `System` to trust the platform roots. (The field is `wellKnownCACertificates`, which
    /// camelCase renaming would spell `wellKnownCaCertificates`.)
    #[serde(
        default,
        rename = "wellKnownCACertificates",
        skip_serializing_if = "Option::is_none"
    )]
    pub well_known_ca_certificates: Option<String>,
    /// SNI and the name to verify.
    #[serde(default)]
    pub hostname: String,
    /// Names to verify instead of `hostname`.
    #[serde(default)]
    pub subject_alt_names: Vec<SubjectAltName>,
}

/// A subject alternative name to verify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubjectAltName {
    /// `Hostname` or `URI`.
    #[serde(rename = "type")]
    pub type_: String,
    /// DNS name, for `Hostname`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// URI, for `URI`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

/// `XBackendTrafficPolicy` (`gateway.networking.x-k8s.io/v1alpha1`): how traffic to a backend is
/// handled: a retry budget (GEP-3388) and session persistence (GEP-1619).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct XBackendTrafficPolicy {
    /// Object metadata.
    pub metadata: ObjectMeta,
    /// Desired state.
    pub spec: XBackendTrafficPolicySpec,
}

/// `XBackendTrafficPolicy.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct XBackendTrafficPolicySpec {
    /// Backends (Services, XBackends) this policy applies to, in the policy's namespace.
    #[serde(default)]
    pub target_refs: Vec<LocalObjectReference>,
    /// Retry budget for the targeted backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_constraint: Option<RetryConstraint>,
    /// Session persistence for the targeted backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_persistence: Option<super::SessionPersistence>,
}

/// `XBackendTrafficPolicy.spec.retryConstraint` (GEP-3388).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryConstraint {
    /// The budget: at most `percent` of the requests of the last `interval` may be retries.
    /// CRD default: `{interval: 10s, percent: 20}`.
    #[serde(default)]
    pub budget: RetryBudgetSpec,
    /// Retries always allowed, whatever the budget says. CRD default: `{count: 10, interval: 1s}`.
    #[serde(default = "default_min_retry_rate")]
    pub min_retry_rate: RequestRate,
}

/// `retryConstraint.budget`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryBudgetSpec {
    /// Window over which requests are counted (GEP-2257 duration, 1s to 1h). Default `10s`.
    #[serde(default = "ten_seconds")]
    pub interval: String,
    /// Largest share of the window's requests that may be retries, 0 to 100. Default 20.
    #[serde(default = "twenty")]
    pub percent: i32,
}

impl Default for RetryBudgetSpec {
    fn default() -> Self {
        RetryBudgetSpec {
            interval: ten_seconds(),
            percent: twenty(),
        }
    }
}

/// A rate of requests: `count` per `interval` (`minRetryRate`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRate {
    /// Requests per interval, 1 to 1000000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i32>,
    /// The interval (GEP-2257 duration, above 0 and at most 1h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
}

fn ten_seconds() -> String {
    "10s".to_owned()
}

fn twenty() -> i32 {
    20
}

fn default_min_retry_rate() -> RequestRate {
    RequestRate {
        count: Some(10),
        interval: Some("1s".to_owned()),
    }
}
