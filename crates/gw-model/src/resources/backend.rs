//! `XBackend` (`gateway.networking.x-k8s.io/v1alpha1`): a backend outside the cluster.

use serde::{Deserialize, Serialize};

use super::meta::{ObjectMeta, SecretObjectReference};
use super::policy::BackendTlsValidation;

/// `XBackend`: a backend that is not a Service, such as an external DNS name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct XBackend {
    /// Object metadata.
    pub metadata: ObjectMeta,
    /// Desired state.
    pub spec: XBackendSpec,
}

/// `XBackend.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct XBackendSpec {
    /// Backend type; `ExternalHostname` is the only one defined.
    #[serde(rename = "type")]
    pub type_: String,
    /// The DNS name, for `ExternalHostname`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_hostname: Option<ExternalHostname>,
    /// The port to connect to.
    pub port: XBackendPort,
    /// `TCP`, `HTTP`, `HTTP2`, `HTTP11`, `H2C` or `MCP`; unset: what the route implies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// TLS towards the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<XBackendTls>,
}

/// `XBackend.spec.externalHostname`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalHostname {
    /// Fully qualified domain name (no IP address).
    pub hostname: String,
}

/// `XBackend.spec.port`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct XBackendPort {
    /// Port name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Port number.
    pub port: i32,
}

/// `XBackend.spec.tls`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct XBackendTls {
    /// `None`, `ServerOnly` or `ClientAndServer`.
    pub mode: String,
    /// Client certificate for `ClientAndServer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_ref: Option<SecretObjectReference>,
    /// How to validate the server's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<BackendTlsValidation>,
}
