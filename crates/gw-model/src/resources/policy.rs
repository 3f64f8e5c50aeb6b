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
    /// `System` to trust the platform roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
