//! GatewayClass, Gateway and ListenerSet.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::meta::{
    GATEWAY_GROUP, LabelSelector, ObjectMeta, ObjectReference, ParentReference,
    SecretObjectReference,
};

/// `GatewayClass` (cluster scoped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClass {
    /// Object metadata.
    pub metadata: ObjectMeta,
    /// Desired state.
    pub spec: GatewayClassSpec,
}

/// `GatewayClass.spec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClassSpec {
    /// The controller that manages Gateways of this class.
    pub controller_name: String,
    /// Implementation-specific parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters_ref: Option<ObjectReference>,
    /// Free-form description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `Gateway`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Gateway {
    /// Object metadata.
    pub metadata: ObjectMeta,
    /// Desired state.
    pub spec: GatewaySpec,
}

/// `Gateway.spec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// Name of the GatewayClass.
    pub gateway_class_name: String,
    /// Listeners (at least one per the CRD; an empty list is reported, not rejected).
    #[serde(default)]
    pub listeners: Vec<Listener>,
    /// Requested addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<GatewaySpecAddress>,
    /// Infrastructure labels, annotations and parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infrastructure: Option<GatewayInfrastructure>,
    /// Which ListenerSets may attach (defaults to none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_listeners: Option<AllowedListeners>,
    /// Gateway-level TLS configuration (frontend client validation, backend client certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<GatewayTlsConfig>,
    /// Default-gateway scope (GEP-3793).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_scope: Option<String>,
}

/// An entry of `Gateway.spec.addresses`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpecAddress {
    /// `IPAddress` (default), `Hostname`, or a domain-prefixed type.
    #[serde(rename = "type", default = "default_address_type")]
    pub type_: String,
    /// The address; empty means "assign one of this type".
    #[serde(default)]
    pub value: String,
}

fn default_address_type() -> String {
    "IPAddress".to_owned()
}

/// `Gateway.spec.infrastructure`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayInfrastructure {
    /// Labels to put on generated resources.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations to put on generated resources.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Implementation-specific parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters_ref: Option<super::meta::LocalObjectReference>,
}

/// `Gateway.spec.allowedListeners`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowedListeners {
    /// Namespaces whose ListenerSets may attach; defaults to `from: None`.
    #[serde(default = "default_listener_namespaces")]
    pub namespaces: ListenerNamespaces,
}

/// `Gateway.spec.allowedListeners.namespaces`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerNamespaces {
    /// `All`, `Selector`, `Same` or `None` (default).
    #[serde(default)]
    pub from: FromNamespaces,
    /// Used with `from: Selector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

fn default_listener_namespaces() -> ListenerNamespaces {
    ListenerNamespaces {
        from: FromNamespaces::None,
        selector: None,
    }
}

/// Which namespaces are allowed (`FromNamespaces`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FromNamespaces {
    /// Every namespace.
    All,
    /// Namespaces selected by a label selector.
    Selector,
    /// The namespace of the Gateway (or ListenerSet).
    Same,
    /// None (only for `allowedListeners`).
    #[default]
    None,
}

/// A listener of a Gateway or ListenerSet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    /// Unique name within the Gateway (or ListenerSet).
    pub name: String,
    /// Hostname to match; absent matches every hostname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Network port.
    pub port: i32,
    /// Protocol (`HTTP`, `HTTPS`, `TLS`, `TCP`, `UDP`, or a domain-prefixed name).
    pub protocol: String,
    /// TLS configuration (HTTPS and TLS listeners).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    /// Which routes may attach; defaults to routes of the same namespace.
    #[serde(default)]
    pub allowed_routes: AllowedRoutes,
}

/// `Listener.tls`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerTls {
    /// `Terminate` (default) or `Passthrough`.
    #[serde(default)]
    pub mode: TlsMode,
    /// Certificates, chosen by SNI.
    #[serde(default)]
    pub certificate_refs: Vec<SecretObjectReference>,
    /// Implementation-specific options.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// TLS mode of a listener.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TlsMode {
    /// The gateway terminates TLS.
    #[default]
    Terminate,
    /// TLS passes through to the backend, routed by SNI.
    Passthrough,
}

/// `Listener.allowedRoutes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowedRoutes {
    /// Namespaces whose routes may attach; defaults to `from: Same`.
    #[serde(default = "default_route_namespaces")]
    pub namespaces: RouteNamespaces,
    /// Route kinds that may attach; empty means the kinds the protocol supports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<RouteGroupKind>,
}

impl Default for AllowedRoutes {
    fn default() -> Self {
        AllowedRoutes {
            namespaces: default_route_namespaces(),
            kinds: Vec::new(),
        }
    }
}

/// `allowedRoutes.namespaces`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteNamespaces {
    /// `All`, `Selector` or `Same` (default).
    #[serde(default = "same")]
    pub from: FromNamespaces,
    /// Used with `from: Selector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

fn same() -> FromNamespaces {
    FromNamespaces::Same
}

fn default_route_namespaces() -> RouteNamespaces {
    RouteNamespaces {
        from: FromNamespaces::Same,
        selector: None,
    }
}

/// A route group and kind (`RouteGroupKind`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteGroupKind {
    /// Group; defaults to `gateway.networking.k8s.io`.
    #[serde(default = "super::meta::default_gateway_group")]
    pub group: String,
    /// Kind, e.g. `HTTPRoute`.
    pub kind: String,
}

impl RouteGroupKind {
    /// A kind in the Gateway API group.
    pub fn gateway_api(kind: &str) -> Self {
        RouteGroupKind {
            group: GATEWAY_GROUP.to_owned(),
            kind: kind.to_owned(),
        }
    }
}

/// `Gateway.spec.tls`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayTlsConfig {
    /// Client certificate the gateway presents to backends (GEP-3155).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<GatewayBackendTls>,
    /// Client-certificate validation of frontend connections (GEP-91).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frontend: Option<FrontendTlsConfig>,
}

/// `Gateway.spec.tls.backend`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayBackendTls {
    /// The client certificate Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_ref: Option<SecretObjectReference>,
}

/// `Gateway.spec.tls.frontend`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FrontendTlsConfig {
    /// Applies to every HTTPS listener without a per-port entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<TlsConfig>,
    /// Per-port overrides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_port: Vec<TlsPortConfig>,
}

/// A frontend TLS configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsConfig {
    /// Client certificate validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<FrontendTlsValidation>,
}

/// `perPort` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsPortConfig {
    /// The port this applies to.
    pub port: i32,
    /// Its configuration.
    pub tls: TlsConfig,
}

/// `validation` of frontend TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FrontendTlsValidation {
    /// CA bundles (ConfigMap or Secret).
    #[serde(default)]
    pub ca_certificate_refs: Vec<ObjectReference>,
    /// `AllowValidOnly` (default) or `AllowInsecureFallback`.
    #[serde(default)]
    pub mode: FrontendValidationMode,
}

/// Frontend validation mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FrontendValidationMode {
    /// Reject connections without a valid client certificate.
    #[default]
    AllowValidOnly,
    /// Accept connections without a valid client certificate.
    AllowInsecureFallback,
}

/// `ListenerSet` (GEP-1713).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerSet {
    /// Object metadata.
    pub metadata: ObjectMeta,
    /// Desired state.
    pub spec: ListenerSetSpec,
}

/// `ListenerSet.spec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerSetSpec {
    /// The Gateway to attach to.
    pub parent_ref: ParentGatewayReference,
    /// Listeners added to the parent.
    #[serde(default)]
    pub listeners: Vec<Listener>,
}

/// `ListenerSet.spec.parentRef`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentGatewayReference {
    /// Group; defaults to `gateway.networking.k8s.io`.
    #[serde(default = "super::meta::default_gateway_group")]
    pub group: String,
    /// Kind; defaults to `Gateway`.
    #[serde(default = "super::meta::default_gateway_kind")]
    pub kind: String,
    /// Name of the Gateway.
    pub name: String,
    /// Namespace; defaults to the ListenerSet's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl ParentGatewayReference {
    /// As a general parent reference.
    pub fn as_parent_ref(&self) -> ParentReference {
        ParentReference {
            group: super::meta::known_name(self.group.clone()),
            kind: super::meta::known_name(self.kind.clone()),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            section_name: None,
            port: None,
        }
    }
}
