//! The core Kubernetes kinds gw reads: Service, EndpointSlice, Secret, ConfigMap, Namespace.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::meta::ObjectMeta;

/// `Service` (`v1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// Object metadata.
    pub metadata: ObjectMeta,
    /// Desired state.
    #[serde(default)]
    pub spec: ServiceSpec,
}

/// `Service.spec`, the fields gw uses: the ports. Endpoints come from EndpointSlices, so the
/// selector, cluster IPs and type are not read (the Service is what a route names and which
/// ports it has); unmodelled fields of core kinds load without a warning.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Ports.
    #[serde(default)]
    pub ports: Vec<ServicePort>,
}

/// A port of a Service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// Port name (required when there are several).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default = "tcp")]
    pub protocol: String,
    /// Service port.
    pub port: i32,
    /// Target port on the pods (number or name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<IntOrString>,
    /// Application protocol, e.g. `kubernetes.io/h2c` or `kubernetes.io/ws`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
    /// Node port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<i32>,
}

fn tcp() -> String {
    "TCP".to_owned()
}

/// Kubernetes `IntOrString`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    /// A number.
    Int(i32),
    /// A name.
    String(String),
}

/// `EndpointSlice` (`discovery.k8s.io/v1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSlice {
    /// Object metadata; label `kubernetes.io/service-name` names the Service.
    pub metadata: ObjectMeta,
    /// `IPv4`, `IPv6` or `FQDN`.
    #[serde(default = "ipv4")]
    pub address_type: String,
    /// Endpoints.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// Ports, matched to Service ports by name.
    #[serde(default)]
    pub ports: Vec<EndpointPort>,
}

fn ipv4() -> String {
    "IPv4".to_owned()
}

/// One endpoint of an EndpointSlice: the fields gw uses (the addresses and whether they are
/// ready; the host name, node, zone and Pod are not read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Addresses (one per endpoint in practice).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Readiness conditions.
    #[serde(default)]
    pub conditions: EndpointConditions,
}

/// Endpoint conditions. An absent `ready` means ready, as Kubernetes specifies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointConditions {
    /// Ready to receive traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// Serving (may be true while terminating).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<bool>,
    /// Terminating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminating: Option<bool>,
}

/// A port of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointPort {
    /// Name; matches the Service port's name (`""` when unnamed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Port number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// Protocol.
    #[serde(default = "tcp")]
    pub protocol: String,
    /// Application protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

/// `Secret` (`v1`). `stringData` is merged into `data` by the loader, as the API server does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    /// Object metadata.
    pub metadata: ObjectMeta,
    /// Secret type, e.g. `kubernetes.io/tls`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Decoded data (the YAML carries base64).
    #[serde(default, with = "base64_map")]
    pub data: BTreeMap<String, Vec<u8>>,
    /// Plain-text data, merged into `data`.
    #[serde(default, skip_serializing)]
    pub string_data: BTreeMap<String, String>,
}

/// `ConfigMap` (`v1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMap {
    /// Object metadata.
    pub metadata: ObjectMeta,
    /// Data.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    /// Binary data (base64 in YAML).
    #[serde(default, with = "base64_map")]
    pub binary_data: BTreeMap<String, Vec<u8>>,
}

/// `Namespace` (`v1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Namespace {
    /// Object metadata (labels are what route selectors see).
    pub metadata: ObjectMeta,
}

mod base64_map {
    use std::collections::BTreeMap;

    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        map: &BTreeMap<String, Vec<u8>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_map(map.iter().map(|(k, v)| (k, STANDARD.encode(v))))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Vec<u8>>, D::Error> {
        let raw = BTreeMap::<String, String>::deserialize(d)?;
        raw.into_iter()
            .map(|(k, v)| {
                let cleaned: String = v.chars().filter(|c| !c.is_whitespace()).collect();
                STANDARD
                    .decode(cleaned.as_bytes())
                    .map(|bytes| (k.clone(), bytes))
                    .map_err(|e| D::Error::custom(format!("key `{k}` is not valid base64: {e}")))
            })
            .collect()
    }
}
