//! Typed Kubernetes objects: the Gateway API kinds and the core kinds gw reads.
//!
//! The types are deliberately lean: they carry the fields of Gateway API v1.6 (standard and
//! experimental channels) with the CRD defaults applied at deserialization, and nothing of the
//! Kubernetes client machinery. [`Resources`] holds one consistent set of them, the input of
//! [`compile`](crate::compile()).

mod backend;
mod core;
mod gateway;
mod meta;
mod policy;
mod route;
mod traffic_policy;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use self::backend::*;
pub use self::core::*;
pub use self::gateway::*;
pub use self::meta::*;
pub use self::policy::*;
pub use self::route::*;
pub use self::traffic_policy::*;

/// The kinds gw understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Kind {
    /// `gateway.networking.k8s.io` GatewayClass.
    GatewayClass,
    /// `gateway.networking.k8s.io` Gateway.
    Gateway,
    /// `gateway.networking.k8s.io` ListenerSet.
    ListenerSet,
    /// `gateway.networking.k8s.io` HTTPRoute.
    #[serde(rename = "HTTPRoute")]
    HttpRoute,
    /// `gateway.networking.k8s.io` GRPCRoute.
    #[serde(rename = "GRPCRoute")]
    GrpcRoute,
    /// `gateway.networking.k8s.io` TLSRoute.
    #[serde(rename = "TLSRoute")]
    TlsRoute,
    /// `gateway.networking.k8s.io` TCPRoute.
    #[serde(rename = "TCPRoute")]
    TcpRoute,
    /// `gateway.networking.k8s.io` UDPRoute.
    #[serde(rename = "UDPRoute")]
    UdpRoute,
    /// `gateway.networking.k8s.io` ReferenceGrant.
    ReferenceGrant,
    /// `gateway.networking.k8s.io` BackendTLSPolicy.
    #[serde(rename = "BackendTLSPolicy")]
    BackendTlsPolicy,
    /// `gateway.networking.x-k8s.io` XBackend.
    XBackend,
    /// `gateway.networking.x-k8s.io` XBackendTrafficPolicy.
    XBackendTrafficPolicy,
    /// Core Service.
    Service,
    /// `discovery.k8s.io` EndpointSlice.
    EndpointSlice,
    /// Core Secret.
    Secret,
    /// Core ConfigMap.
    ConfigMap,
    /// Core Namespace.
    Namespace,
    /// `policy.gw.dev` TrafficPolicy (gw's own policy).
    TrafficPolicy,
}

impl Kind {
    /// Every kind, in the order objects are listed.
    pub const ALL: [Kind; 18] = [
        Kind::GatewayClass,
        Kind::Gateway,
        Kind::ListenerSet,
        Kind::HttpRoute,
        Kind::GrpcRoute,
        Kind::TlsRoute,
        Kind::TcpRoute,
        Kind::UdpRoute,
        Kind::ReferenceGrant,
        Kind::BackendTlsPolicy,
        Kind::XBackend,
        Kind::XBackendTrafficPolicy,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::Secret,
        Kind::ConfigMap,
        Kind::Namespace,
        Kind::TrafficPolicy,
    ];

    /// The Kubernetes kind name, e.g. `HTTPRoute`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::GatewayClass => "GatewayClass",
            Kind::Gateway => "Gateway",
            Kind::ListenerSet => "ListenerSet",
            Kind::HttpRoute => "HTTPRoute",
            Kind::GrpcRoute => "GRPCRoute",
            Kind::TlsRoute => "TLSRoute",
            Kind::TcpRoute => "TCPRoute",
            Kind::UdpRoute => "UDPRoute",
            Kind::ReferenceGrant => "ReferenceGrant",
            Kind::BackendTlsPolicy => "BackendTLSPolicy",
            Kind::XBackend => "XBackend",
            Kind::XBackendTrafficPolicy => "XBackendTrafficPolicy",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Secret => "Secret",
            Kind::ConfigMap => "ConfigMap",
            Kind::Namespace => "Namespace",
            Kind::TrafficPolicy => "TrafficPolicy",
        }
    }

    /// The kind with this Kubernetes name.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The API group (`""` for core).
    pub fn group(self) -> &'static str {
        match self {
            Kind::Service | Kind::Secret | Kind::ConfigMap | Kind::Namespace => CORE_GROUP,
            Kind::EndpointSlice => "discovery.k8s.io",
            Kind::XBackend => GATEWAY_X_GROUP,
            Kind::TrafficPolicy => POLICY_GROUP,
            Kind::XBackendTrafficPolicy => GATEWAY_X_GROUP,
            _ => GATEWAY_GROUP,
        }
    }

    /// The apiVersion gw writes for this kind (the v1.6 storage version).
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Service | Kind::Secret | Kind::ConfigMap | Kind::Namespace => "v1",
            Kind::EndpointSlice => "discovery.k8s.io/v1",
            Kind::XBackend => "gateway.networking.x-k8s.io/v1alpha1",
            Kind::TrafficPolicy => "policy.gw.dev/v1alpha1",
            Kind::XBackendTrafficPolicy => "gateway.networking.x-k8s.io/v1alpha1",
            _ => "gateway.networking.k8s.io/v1",
        }
    }

    /// The versions of the group that gw reads for this kind.
    pub fn accepts_version(self, version: &str) -> bool {
        match self {
            Kind::Service | Kind::Secret | Kind::ConfigMap | Kind::Namespace => version == "v1",
            Kind::EndpointSlice => matches!(version, "v1" | "v1beta1"),
            Kind::GatewayClass | Kind::Gateway | Kind::HttpRoute => {
                matches!(version, "v1" | "v1beta1")
            }
            Kind::ReferenceGrant => matches!(version, "v1" | "v1beta1" | "v1alpha2"),
            Kind::GrpcRoute => matches!(version, "v1" | "v1alpha2"),
            Kind::TlsRoute | Kind::TcpRoute | Kind::UdpRoute => {
                matches!(version, "v1" | "v1alpha2" | "v1alpha3")
            }
            Kind::BackendTlsPolicy => matches!(version, "v1" | "v1alpha3"),
            Kind::ListenerSet => matches!(version, "v1" | "v1alpha1"),
            Kind::XBackend => version == "v1alpha1",
            Kind::TrafficPolicy => version == TRAFFIC_POLICY_VERSION,
            Kind::XBackendTrafficPolicy => version == "v1alpha1",
        }
    }

    /// Whether objects of this kind live in a namespace.
    pub fn is_namespaced(self) -> bool {
        !matches!(self, Kind::GatewayClass | Kind::Namespace)
    }

    /// Whether this is a route kind.
    pub fn is_route(self) -> bool {
        matches!(
            self,
            Kind::HttpRoute | Kind::GrpcRoute | Kind::TlsRoute | Kind::TcpRoute | Kind::UdpRoute
        )
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Namespace and name of an object (namespace `""` for cluster-scoped kinds).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectKey {
    /// Namespace, or `""`.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// A key from namespace and name.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of an object's metadata.
    pub fn of(meta: &ObjectMeta) -> Self {
        ObjectKey::new(meta.namespace(), meta.name.clone())
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// One typed object.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
#[non_exhaustive]
pub enum Object {
    /// GatewayClass.
    GatewayClass(GatewayClass),
    /// Gateway.
    Gateway(Gateway),
    /// ListenerSet.
    ListenerSet(ListenerSet),
    /// HTTPRoute.
    HttpRoute(HttpRoute),
    /// GRPCRoute.
    GrpcRoute(GrpcRoute),
    /// TLSRoute.
    TlsRoute(L4Route),
    /// TCPRoute.
    TcpRoute(L4Route),
    /// UDPRoute.
    UdpRoute(L4Route),
    /// ReferenceGrant.
    ReferenceGrant(ReferenceGrant),
    /// BackendTLSPolicy.
    BackendTlsPolicy(BackendTlsPolicy),
    /// XBackend.
    XBackend(XBackend),
    /// XBackendTrafficPolicy.
    XBackendTrafficPolicy(XBackendTrafficPolicy),
    /// Service.
    Service(Service),
    /// EndpointSlice.
    EndpointSlice(EndpointSlice),
    /// Secret.
    Secret(Secret),
    /// ConfigMap.
    ConfigMap(ConfigMap),
    /// Namespace.
    Namespace(Namespace),
    /// TrafficPolicy.
    TrafficPolicy(TrafficPolicy),
}

impl Object {
    /// The object's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Object::GatewayClass(_) => Kind::GatewayClass,
            Object::Gateway(_) => Kind::Gateway,
            Object::ListenerSet(_) => Kind::ListenerSet,
            Object::HttpRoute(_) => Kind::HttpRoute,
            Object::GrpcRoute(_) => Kind::GrpcRoute,
            Object::TlsRoute(_) => Kind::TlsRoute,
            Object::TcpRoute(_) => Kind::TcpRoute,
            Object::UdpRoute(_) => Kind::UdpRoute,
            Object::ReferenceGrant(_) => Kind::ReferenceGrant,
            Object::BackendTlsPolicy(_) => Kind::BackendTlsPolicy,
            Object::XBackend(_) => Kind::XBackend,
            Object::XBackendTrafficPolicy(_) => Kind::XBackendTrafficPolicy,
            Object::Service(_) => Kind::Service,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::Secret(_) => Kind::Secret,
            Object::ConfigMap(_) => Kind::ConfigMap,
            Object::Namespace(_) => Kind::Namespace,
            Object::TrafficPolicy(_) => Kind::TrafficPolicy,
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        self.meta_ref()
    }

    /// The object's metadata, mutable.
    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Object::GatewayClass(o) => &mut o.metadata,
            Object::Gateway(o) => &mut o.metadata,
            Object::ListenerSet(o) => &mut o.metadata,
            Object::HttpRoute(o) => &mut o.metadata,
            Object::GrpcRoute(o) => &mut o.metadata,
            Object::TlsRoute(o) | Object::TcpRoute(o) | Object::UdpRoute(o) => &mut o.metadata,
            Object::ReferenceGrant(o) => &mut o.metadata,
            Object::BackendTlsPolicy(o) => &mut o.metadata,
            Object::XBackend(o) => &mut o.metadata,
            Object::XBackendTrafficPolicy(o) => &mut o.metadata,
            Object::Service(o) => &mut o.metadata,
            Object::EndpointSlice(o) => &mut o.metadata,
            Object::Secret(o) => &mut o.metadata,
            Object::ConfigMap(o) => &mut o.metadata,
            Object::Namespace(o) => &mut o.metadata,
            Object::TrafficPolicy(o) => &mut o.metadata,
        }
    }

    fn meta_ref(&self) -> &ObjectMeta {
        match self {
            Object::GatewayClass(o) => &o.metadata,
            Object::Gateway(o) => &o.metadata,
            Object::ListenerSet(o) => &o.metadata,
            Object::HttpRoute(o) => &o.metadata,
            Object::GrpcRoute(o) => &o.metadata,
            Object::TlsRoute(o) | Object::TcpRoute(o) | Object::UdpRoute(o) => &o.metadata,
            Object::ReferenceGrant(o) => &o.metadata,
            Object::BackendTlsPolicy(o) => &o.metadata,
            Object::XBackend(o) => &o.metadata,
            Object::XBackendTrafficPolicy(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::Secret(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
            Object::Namespace(o) => &o.metadata,
            Object::TrafficPolicy(o) => &o.metadata,
        }
    }

    /// The object's key.
    pub fn key(&self) -> ObjectKey {
        ObjectKey::of(self.metadata())
    }

    /// The spec as JSON, used to notice spec changes (generation bumps).
    pub fn spec_json(&self) -> serde_json::Value {
        let v = match self {
            Object::GatewayClass(o) => serde_json::to_value(&o.spec),
            Object::Gateway(o) => serde_json::to_value(&o.spec),
            Object::ListenerSet(o) => serde_json::to_value(&o.spec),
            Object::HttpRoute(o) => serde_json::to_value(&o.spec),
            Object::GrpcRoute(o) => serde_json::to_value(&o.spec),
            Object::TlsRoute(o) | Object::TcpRoute(o) | Object::UdpRoute(o) => {
                serde_json::to_value(&o.spec)
            }
            Object::ReferenceGrant(o) => serde_json::to_value(&o.spec),
            Object::BackendTlsPolicy(o) => serde_json::to_value(&o.spec),
            Object::XBackend(o) => serde_json::to_value(&o.spec),
            Object::XBackendTrafficPolicy(o) => serde_json::to_value(&o.spec),
            Object::Service(o) => serde_json::to_value(&o.spec),
            Object::EndpointSlice(o) => serde_json::to_value((&o.endpoints, &o.ports)),
            Object::Secret(o) => serde_json::to_value(&o.data),
            Object::ConfigMap(o) => serde_json::to_value((&o.data, &o.binary_data)),
            Object::Namespace(_) => Ok(serde_json::Value::Null),
            Object::TrafficPolicy(o) => serde_json::to_value(&o.spec),
        };
        v.unwrap_or(serde_json::Value::Null)
    }
}

/// One consistent set of objects: the input of [`compile`](crate::compile()).
///
/// Each object is boxed: a B-tree node has room for 11 entries and is about two thirds full,
/// so objects stored inline would leave a third of the node's slots (300 bytes each for a
/// Service) allocated and empty; boxed, an empty slot costs a pointer.
///
/// Objects are keyed by kind, namespace and name; inserting an object with the key of an existing
/// one replaces it, as `kubectl apply` would.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    /// GatewayClasses by name.
    pub gateway_classes: BTreeMap<ObjectKey, Box<GatewayClass>>,
    /// Gateways.
    pub gateways: BTreeMap<ObjectKey, Box<Gateway>>,
    /// ListenerSets.
    pub listener_sets: BTreeMap<ObjectKey, Box<ListenerSet>>,
    /// HTTPRoutes.
    pub http_routes: BTreeMap<ObjectKey, Box<HttpRoute>>,
    /// GRPCRoutes.
    pub grpc_routes: BTreeMap<ObjectKey, Box<GrpcRoute>>,
    /// TLSRoutes.
    pub tls_routes: BTreeMap<ObjectKey, Box<L4Route>>,
    /// TCPRoutes.
    pub tcp_routes: BTreeMap<ObjectKey, Box<L4Route>>,
    /// UDPRoutes.
    pub udp_routes: BTreeMap<ObjectKey, Box<L4Route>>,
    /// ReferenceGrants.
    pub reference_grants: BTreeMap<ObjectKey, Box<ReferenceGrant>>,
    /// BackendTLSPolicies.
    pub backend_tls_policies: BTreeMap<ObjectKey, Box<BackendTlsPolicy>>,
    /// XBackends.
    pub x_backends: BTreeMap<ObjectKey, Box<XBackend>>,
    /// XBackendTrafficPolicies.
    pub backend_traffic_policies: BTreeMap<ObjectKey, Box<XBackendTrafficPolicy>>,
    /// Services.
    pub services: BTreeMap<ObjectKey, Box<Service>>,
    /// EndpointSlices.
    pub endpoint_slices: BTreeMap<ObjectKey, Box<EndpointSlice>>,
    /// Secrets.
    pub secrets: BTreeMap<ObjectKey, Box<Secret>>,
    /// ConfigMaps.
    pub config_maps: BTreeMap<ObjectKey, Box<ConfigMap>>,
    /// Namespaces by name.
    pub namespaces: BTreeMap<ObjectKey, Box<Namespace>>,
    /// TrafficPolicies.
    pub traffic_policies: BTreeMap<ObjectKey, Box<TrafficPolicy>>,
}

impl Resources {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts (or replaces) an object; returns the object it replaced.
    pub fn insert(&mut self, object: Object) -> Option<Object> {
        let key = object.key();
        match object {
            Object::GatewayClass(o) => self
                .gateway_classes
                .insert(key, Box::new(o))
                .map(|o| Object::GatewayClass(*o)),
            Object::Gateway(o) => self
                .gateways
                .insert(key, Box::new(o))
                .map(|o| Object::Gateway(*o)),
            Object::ListenerSet(o) => self
                .listener_sets
                .insert(key, Box::new(o))
                .map(|o| Object::ListenerSet(*o)),
            Object::HttpRoute(o) => self
                .http_routes
                .insert(key, Box::new(o))
                .map(|o| Object::HttpRoute(*o)),
            Object::GrpcRoute(o) => self
                .grpc_routes
                .insert(key, Box::new(o))
                .map(|o| Object::GrpcRoute(*o)),
            Object::TlsRoute(o) => self
                .tls_routes
                .insert(key, Box::new(o))
                .map(|o| Object::TlsRoute(*o)),
            Object::TcpRoute(o) => self
                .tcp_routes
                .insert(key, Box::new(o))
                .map(|o| Object::TcpRoute(*o)),
            Object::UdpRoute(o) => self
                .udp_routes
                .insert(key, Box::new(o))
                .map(|o| Object::UdpRoute(*o)),
            Object::ReferenceGrant(o) => self
                .reference_grants
                .insert(key, Box::new(o))
                .map(|o| Object::ReferenceGrant(*o)),
            Object::BackendTlsPolicy(o) => self
                .backend_tls_policies
                .insert(key, Box::new(o))
                .map(|o| Object::BackendTlsPolicy(*o)),
            Object::XBackend(o) => self
                .x_backends
                .insert(key, Box::new(o))
                .map(|o| Object::XBackend(*o)),
            Object::XBackendTrafficPolicy(o) => self
                .backend_traffic_policies
                .insert(key, Box::new(o))
                .map(|o| Object::XBackendTrafficPolicy(*o)),
            Object::Service(o) => self
                .services
                .insert(key, Box::new(o))
                .map(|o| Object::Service(*o)),
            Object::EndpointSlice(o) => self
                .endpoint_slices
                .insert(key, Box::new(o))
                .map(|o| Object::EndpointSlice(*o)),
            Object::Secret(o) => self
                .secrets
                .insert(key, Box::new(o))
                .map(|o| Object::Secret(*o)),
            Object::ConfigMap(o) => self
                .config_maps
                .insert(key, Box::new(o))
                .map(|o| Object::ConfigMap(*o)),
            Object::Namespace(o) => self
                .namespaces
                .insert(key, Box::new(o))
                .map(|o| Object::Namespace(*o)),
            Object::TrafficPolicy(o) => self
                .traffic_policies
                .insert(key, Box::new(o))
                .map(|o| Object::TrafficPolicy(*o)),
        }
    }

    /// Removes an object; returns it if it was present.
    pub fn remove(&mut self, kind: Kind, key: &ObjectKey) -> Option<Object> {
        match kind {
            Kind::GatewayClass => self
                .gateway_classes
                .remove(key)
                .map(|o| Object::GatewayClass(*o)),
            Kind::Gateway => self.gateways.remove(key).map(|o| Object::Gateway(*o)),
            Kind::ListenerSet => self
                .listener_sets
                .remove(key)
                .map(|o| Object::ListenerSet(*o)),
            Kind::HttpRoute => self.http_routes.remove(key).map(|o| Object::HttpRoute(*o)),
            Kind::GrpcRoute => self.grpc_routes.remove(key).map(|o| Object::GrpcRoute(*o)),
            Kind::TlsRoute => self.tls_routes.remove(key).map(|o| Object::TlsRoute(*o)),
            Kind::TcpRoute => self.tcp_routes.remove(key).map(|o| Object::TcpRoute(*o)),
            Kind::UdpRoute => self.udp_routes.remove(key).map(|o| Object::UdpRoute(*o)),
            Kind::ReferenceGrant => self
                .reference_grants
                .remove(key)
                .map(|o| Object::ReferenceGrant(*o)),
            Kind::BackendTlsPolicy => self
                .backend_tls_policies
                .remove(key)
                .map(|o| Object::BackendTlsPolicy(*o)),
            Kind::XBackend => self.x_backends.remove(key).map(|o| Object::XBackend(*o)),
            Kind::XBackendTrafficPolicy => self
                .backend_traffic_policies
                .remove(key)
                .map(|o| Object::XBackendTrafficPolicy(*o)),
            Kind::Service => self.services.remove(key).map(|o| Object::Service(*o)),
            Kind::EndpointSlice => self
                .endpoint_slices
                .remove(key)
                .map(|o| Object::EndpointSlice(*o)),
            Kind::Secret => self.secrets.remove(key).map(|o| Object::Secret(*o)),
            Kind::ConfigMap => self.config_maps.remove(key).map(|o| Object::ConfigMap(*o)),
            Kind::Namespace => self.namespaces.remove(key).map(|o| Object::Namespace(*o)),
            Kind::TrafficPolicy => self
                .traffic_policies
                .remove(key)
                .map(|o| Object::TrafficPolicy(*o)),
        }
    }

    /// Inserts every object.
    pub fn extend(&mut self, objects: impl IntoIterator<Item = Object>) {
        for o in objects {
            self.insert(o);
        }
    }

    /// The labels of a namespace; a namespace without a Namespace object has only the
    /// `kubernetes.io/metadata.name` label that Kubernetes sets on every namespace.
    pub fn namespace_labels(&self, namespace: &str) -> StringMap {
        let mut labels = self
            .namespaces
            .get(&ObjectKey::new("", namespace))
            .map(|n| n.metadata.labels.clone())
            .unwrap_or_default();
        if !labels.contains_key("kubernetes.io/metadata.name") {
            labels.insert(
                "kubernetes.io/metadata.name".to_owned(),
                namespace.to_owned(),
            );
        }
        labels
    }

    /// The number of objects held.
    pub fn len(&self) -> usize {
        self.gateway_classes.len()
            + self.gateways.len()
            + self.listener_sets.len()
            + self.http_routes.len()
            + self.grpc_routes.len()
            + self.tls_routes.len()
            + self.tcp_routes.len()
            + self.udp_routes.len()
            + self.reference_grants.len()
            + self.backend_tls_policies.len()
            + self.x_backends.len()
            + self.backend_traffic_policies.len()
            + self.services.len()
            + self.endpoint_slices.len()
            + self.secrets.len()
            + self.config_maps.len()
            + self.namespaces.len()
            + self.traffic_policies.len()
    }

    /// Whether no object is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
