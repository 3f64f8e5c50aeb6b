//! References across objects: ReferenceGrant checks and backend resolution.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use crate::resources::{
    BackendRef, CORE_GROUP, EndpointSlice, GATEWAY_X_GROUP, ObjectKey, Resources,
};
use crate::table::{AppProtocol, Backend, ServiceBackend};

/// One side of a reference: group, kind and namespace.
#[derive(Debug, Clone, Copy)]
pub struct From<'a> {
    /// API group of the referring object.
    pub group: &'a str,
    /// Kind of the referring object.
    pub kind: &'a str,
    /// Namespace of the referring object.
    pub namespace: &'a str,
}

/// Whether an object described by `from` may refer to `group`/`kind` `namespace/name`.
///
/// ReferenceGrant (GEP-709): references within a namespace are always allowed; a reference to
/// another namespace is allowed only when a ReferenceGrant in the target namespace lists the
/// referring group, kind and namespace in `from` and the target's group, kind (and, when set,
/// name) in `to`.
pub fn reference_allowed(
    res: &Resources,
    from: From<'_>,
    group: &str,
    kind: &str,
    namespace: &str,
    name: &str,
) -> bool {
    if from.namespace == namespace {
        return true;
    }
    res.reference_grants
        .iter()
        .filter(|(k, _)| k.namespace == namespace)
        .any(|(_, grant)| {
            grant.spec.from.iter().any(|f| {
                f.group == from.group && f.kind == from.kind && f.namespace == from.namespace
            }) && grant.spec.to.iter().any(|t| {
                t.group == group && t.kind == kind && t.name.as_deref().is_none_or(|n| n == name)
            })
        })
}

/// Why a backendRef does not resolve: the route condition reason and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    /// `InvalidKind`, `RefNotPermitted`, `BackendNotFound` or `UnsupportedProtocol`.
    pub reason: &'static str,
    /// Detail for the condition message.
    pub message: String,
}

/// Resources with the indexes backend resolution needs, built once per compile so that
/// resolving a backend does not scan every EndpointSlice.
pub struct Lookup<'a> {
    /// The resources.
    pub res: &'a Resources,
    /// XBackends, checked.
    pub(crate) x_backends: BTreeMap<ObjectKey, super::xbackend::Evaluated>,
    /// EndpointSlices by namespace and their `kubernetes.io/service-name` label: built for
    /// this lookup, or kept between compiles by a [`Compiler`](super::Compiler).
    slices: Cow<'a, SliceIndex>,
    /// `res.endpoint_slices` in key order: positions in `slices` are positions here.
    all: Vec<(&'a ObjectKey, &'a EndpointSlice)>,
}

/// Where each labelled EndpointSlice is in [`Resources::endpoint_slices`] (its position in key
/// order), sorted by a hash of its namespace and `kubernetes.io/service-name` label. Kept by a
/// [`Compiler`](super::Compiler) between compiles while no EndpointSlice changes: 16 bytes a
/// slice, where a map of owned names and keys took about 230 (1.1 MB at 5,000 Services).
#[derive(Debug, Default, Clone)]
pub(crate) struct SliceIndex {
    /// (hash of namespace and Service name, position), sorted.
    entries: Vec<(u64, u32)>,
    /// How many EndpointSlices the resources held: an index of another set is not used.
    slices: usize,
}

impl SliceIndex {
    pub(crate) fn new(res: &Resources) -> Self {
        let mut entries: Vec<(u64, u32)> = res
            .endpoint_slices
            .iter()
            .enumerate()
            .filter_map(|(i, (key, slice))| {
                let service = service_label(slice)?;
                Some((
                    service_hash(&key.namespace, service),
                    u32::try_from(i).ok()?,
                ))
            })
            .collect();
        entries.sort_unstable();
        entries.shrink_to_fit();
        SliceIndex {
            entries,
            slices: res.endpoint_slices.len(),
        }
    }
}

/// The `kubernetes.io/service-name` label: the Service an EndpointSlice belongs to.
fn service_label(slice: &EndpointSlice) -> Option<&str> {
    slice.metadata.labels.get("kubernetes.io/service-name")
}

/// The hash [`SliceIndex`] sorts by (fixed keys: the same in every compile).
fn service_hash(namespace: &str, service: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    (namespace, service).hash(&mut h);
    h.finish()
}

impl<'a> Lookup<'a> {
    /// Indexes `res`.
    pub fn new(res: &'a Resources) -> Self {
        Lookup::indexed(res, Cow::Owned(SliceIndex::new(res)))
    }

    /// A lookup with an index of `res`'s EndpointSlices built before (one of other
    /// resources is not used: `res` is indexed again).
    pub(crate) fn with_slices(res: &'a Resources, index: &'a SliceIndex) -> Self {
        if index.slices != res.endpoint_slices.len() {
            return Lookup::new(res);
        }
        Lookup::indexed(res, Cow::Borrowed(index))
    }

    fn indexed(res: &'a Resources, slices: Cow<'a, SliceIndex>) -> Self {
        Lookup {
            res,
            slices,
            all: res
                .endpoint_slices
                .iter()
                .map(|(key, slice)| (key, &**slice))
                .collect(),
            x_backends: BTreeMap::new(),
        }
    }

    /// The EndpointSlices labelled with a Service's name, in its namespace (in key order).
    fn slices_of(&self, service: &ObjectKey) -> Vec<&'a EndpointSlice> {
        let entries = &self.slices.entries;
        let hash = service_hash(&service.namespace, &service.name);
        let from = entries.partition_point(|&(h, _)| h < hash);
        entries[from..]
            .iter()
            .take_while(|&&(h, _)| h == hash)
            .filter_map(|&(_, i)| self.all.get(i as usize))
            // Another Service's slices may share the hash.
            .filter(|(key, slice)| {
                key.namespace == service.namespace
                    && service_label(slice) == Some(service.name.as_str())
            })
            .map(|&(_, slice)| slice)
            .collect()
    }

    /// Resolves a backendRef: a Service port, or an XBackend.
    pub(crate) fn resolve(
        &self,
        from: From<'_>,
        backend: &BackendRef,
        l4: bool,
    ) -> Result<Backend, Unresolved> {
        if backend.group == GATEWAY_X_GROUP && backend.kind == "XBackend" {
            super::xbackend::resolve(self.res, &self.x_backends, from, backend, l4)
                .map(|b| Backend::External(Box::new(b)))
        } else {
            resolve_backend(self, from, backend, l4).map(Backend::Service)
        }
    }

    /// Ready endpoints of a Service port, from the EndpointSlices labelled
    /// `kubernetes.io/service-name`, matching the Service port to the slice port by name as
    /// Kubernetes does. Endpoints whose `ready` condition is false are left out ("nil should be
    /// interpreted as ready").
    pub fn endpoints(&self, service: &ObjectKey, port_name: &str) -> Vec<SocketAddr> {
        let slices = self.slices_of(service);
        let mut out: Vec<SocketAddr> = slices
            .iter()
            .flat_map(|slice| {
                let port = slice
                    .ports
                    .iter()
                    .find(|p| p.name.as_deref().unwrap_or("") == port_name)
                    .and_then(|p| p.port)
                    .and_then(|p| u16::try_from(p).ok());
                slice
                    .endpoints
                    .iter()
                    .filter(|e| e.conditions.ready != Some(false))
                    .flat_map(|e| e.addresses.iter())
                    .filter_map(move |a| Some(SocketAddr::new(a.parse::<IpAddr>().ok()?, port?)))
            })
            .collect();
        out.sort();
        out.dedup();
        // The compiled backend keeps this list (collected from a flat_map, it has room for four).
        out.shrink_to_fit();
        out
    }
}

/// Resolves a backendRef of a route in `from.namespace` to a Service port and its endpoints.
///
/// `l4` routes (TLS/TCP/UDP) ignore `appProtocol`; HTTP and gRPC routes reject protocols they
/// cannot speak (route ResolvedRefs reason `UnsupportedProtocol`).
pub fn resolve_backend(
    lookup: &Lookup<'_>,
    from: From<'_>,
    backend: &BackendRef,
    l4: bool,
) -> Result<ServiceBackend, Unresolved> {
    let res = lookup.res;
    let namespace = backend.namespace.as_deref().unwrap_or(from.namespace);
    if backend.group != CORE_GROUP || backend.kind != "Service" {
        return Err(Unresolved {
            reason: "InvalidKind",
            message: format!(
                "backendRef {}: kind {}{}{} is not supported; use a core Service or an XBackend",
                backend.name,
                backend.group,
                if backend.group.is_empty() { "" } else { "/" },
                backend.kind
            ),
        });
    }
    if !reference_allowed(res, from, CORE_GROUP, "Service", namespace, &backend.name) {
        return Err(Unresolved {
            reason: "RefNotPermitted",
            message: format!(
                "backendRef to Service {namespace}/{} is not permitted: no ReferenceGrant in \
                 {namespace} allows {} from {}",
                backend.name, from.kind, from.namespace
            ),
        });
    }
    let key = ObjectKey::new(namespace, backend.name.clone());
    let Some(service) = res.services.get(&key) else {
        return Err(Unresolved {
            reason: "BackendNotFound",
            message: format!("Service {key} not found"),
        });
    };
    let Some(port) = backend.port else {
        return Err(Unresolved {
            reason: "BackendNotFound",
            message: format!("backendRef to Service {key} needs a port"),
        });
    };
    let Some(service_port) = service.spec.ports.iter().find(|p| p.port == port) else {
        return Err(Unresolved {
            reason: "BackendNotFound",
            message: format!("Service {key} has no port {port}"),
        });
    };
    let app_protocol = if l4 {
        AppProtocol::Raw
    } else {
        app_protocol(service_port.app_protocol.as_deref()).ok_or_else(|| Unresolved {
            reason: "UnsupportedProtocol",
            message: format!(
                "Service {key} port {port} has appProtocol {:?}, which gw cannot speak",
                service_port.app_protocol.as_deref().unwrap_or_default()
            ),
        })?
    };
    let port_u16 = u16::try_from(port).map_err(|_| Unresolved {
        reason: "BackendNotFound",
        message: format!("port {port} is out of range"),
    })?;
    Ok(ServiceBackend {
        service: key.clone(),
        port: port_u16,
        app_protocol,
        endpoints: lookup.endpoints(&key, service_port.name.as_deref().unwrap_or("")),
        tls: None,
        traffic: None,
    })
}

/// Maps a Service port's `appProtocol` (Kubernetes and IANA names) to what gw speaks.
pub fn app_protocol(value: Option<&str>) -> Option<AppProtocol> {
    Some(match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("" | "http" | "http1" | "http/1.1" | "tcp") => AppProtocol::Http1,
        Some("kubernetes.io/h2c" | "h2c" | "grpc" | "http2") => AppProtocol::H2c,
        Some("kubernetes.io/ws" | "ws") => AppProtocol::WebSocket,
        Some("kubernetes.io/wss" | "https" | "wss" | "tls") => AppProtocol::Https,
        Some(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::load;

    fn resources(yaml: &str) -> Resources {
        let loaded = load::parse("t", yaml);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let mut r = Resources::new();
        r.extend(loaded.objects);
        r
    }

    const GRANT: &str = "
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: g, namespace: backend}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: apps}]
  to: [{group: '', kind: Service, name: allowed}]
";

    fn from(ns: &str) -> From<'_> {
        From {
            group: "gateway.networking.k8s.io",
            kind: "HTTPRoute",
            namespace: ns,
        }
    }

    // GEP-709: "ReferenceGrant ... allows references from the `from` list to the `to` list";
    // "to.name: When unspecified, this policy refers to all resources of the specified Group
    // and Kind in the local namespace."
    #[test]
    fn reference_grant_rules() {
        let res = resources(GRANT);
        assert!(reference_allowed(
            &res,
            from("apps"),
            "",
            "Service",
            "backend",
            "allowed"
        ));
        assert!(!reference_allowed(
            &res,
            from("apps"),
            "",
            "Service",
            "backend",
            "other"
        ));
        assert!(!reference_allowed(
            &res,
            from("other"),
            "",
            "Service",
            "backend",
            "allowed"
        ));
        assert!(reference_allowed(
            &res,
            from("backend"),
            "",
            "Service",
            "backend",
            "x"
        ));
        let unnamed = resources(&GRANT.replace(", name: allowed", ""));
        assert!(reference_allowed(
            &unnamed,
            from("apps"),
            "",
            "Service",
            "backend",
            "any"
        ));
        let tcp = From {
            kind: "TCPRoute",
            ..from("apps")
        };
        assert!(!reference_allowed(
            &res, tcp, "", "Service", "backend", "allowed"
        ));
    }

    // backendRef reasons: InvalidKind, RefNotPermitted, BackendNotFound (HTTPRoute ResolvedRefs).
    #[test]
    fn backend_resolution_reasons_and_endpoints() {
        let res = resources(
            "
apiVersion: v1
kind: Service
metadata: {name: web, namespace: apps}
spec:
  ports:
  - {name: http, port: 8080, targetPort: 3000}
  - {name: grpc, port: 8081, appProtocol: kubernetes.io/h2c}
  - {name: odd, port: 9000, appProtocol: example.com/custom}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: apps
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 3000}, {name: grpc, port: 3001}]
endpoints:
- addresses: [127.0.20.1]
- addresses: [127.0.20.2]
  conditions: {ready: false}
",
        );
        let br = |kind: &str, name: &str, ns: Option<&str>, port: Option<i32>| BackendRef {
            group: String::new(),
            kind: kind.into(),
            name: name.into(),
            namespace: ns.map(Into::into),
            port,
            weight: 1,
        };
        let ok = resolve_backend(
            &Lookup::new(&res),
            from("apps"),
            &br("Service", "web", None, Some(8080)),
            false,
        )
        .unwrap();
        assert_eq!(ok.endpoints, vec!["127.0.20.1:3000".parse().unwrap()]);
        assert_eq!(ok.app_protocol, AppProtocol::Http1);
        let grpc = resolve_backend(
            &Lookup::new(&res),
            from("apps"),
            &br("Service", "web", None, Some(8081)),
            false,
        )
        .unwrap();
        assert_eq!(grpc.app_protocol, AppProtocol::H2c);
        assert_eq!(grpc.endpoints, vec!["127.0.20.1:3001".parse().unwrap()]);
        let reason = |b: BackendRef| {
            resolve_backend(&Lookup::new(&res), from("other"), &b, false)
                .unwrap_err()
                .reason
        };
        assert_eq!(
            reason(br("Pod", "web", Some("apps"), Some(1))),
            "InvalidKind"
        );
        assert_eq!(
            reason(br("Service", "web", Some("apps"), Some(8080))),
            "RefNotPermitted"
        );
        assert_eq!(
            reason(br("Service", "nope", None, Some(8080))),
            "BackendNotFound"
        );
        let in_apps = |b: BackendRef| {
            resolve_backend(&Lookup::new(&res), from("apps"), &b, false)
                .unwrap_err()
                .reason
        };
        assert_eq!(
            in_apps(br("Service", "web", None, Some(1))),
            "BackendNotFound"
        );
        assert_eq!(in_apps(br("Service", "web", None, None)), "BackendNotFound");
        assert_eq!(
            in_apps(br("Service", "web", None, Some(9000))),
            "UnsupportedProtocol"
        );
        // L4 routes ignore appProtocol.
        assert!(
            resolve_backend(
                &Lookup::new(&res),
                from("apps"),
                &br("Service", "web", None, Some(9000)),
                true
            )
            .is_ok()
        );
    }
}
