//! `XBackend` (`gateway.networking.x-k8s.io`): backends outside the cluster, reached by DNS
//! name, with their own TLS settings.
//!
//! gw-model validates the object and resolves its references (CA ConfigMaps, the client
//! certificate Secret); the data plane resolves the name. Routes refer to an XBackend with a
//! backendRef of group `gateway.networking.x-k8s.io` and kind `XBackend`; the backendRef's port
//! is not needed (the XBackend has one).

use std::collections::{BTreeMap, BTreeSet};

use super::gateway::note_change;
use super::policy::validation;
use super::refs::{From, Unresolved, reference_allowed};
use super::{CompileOptions, Problem, hostname, tls};
use crate::resources::{
    BackendRef, CORE_GROUP, GATEWAY_GROUP, GATEWAY_X_GROUP, Kind, ObjectKey, ParentReference,
    Resources, XBackend,
};
use crate::status::{Condition, ObjectStatus, RouteParentStatus, RouteStatus, StatusEntry};
use crate::table::{AppProtocol, BackendTls, ExternalBackend};

/// One XBackend, checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Evaluated {
    /// `Accepted=False` problem (`Invalid`).
    pub rejected: Option<Problem>,
    /// `ResolvedRefs=False` problem.
    pub unresolved: Option<Problem>,
    /// The backend, when usable.
    pub backend: Option<ExternalBackend>,
}

/// Checks every XBackend.
pub(crate) fn evaluate_all(
    res: &Resources,
    options: &CompileOptions,
    refresh_at: &mut Option<i64>,
) -> BTreeMap<ObjectKey, Evaluated> {
    res.x_backends
        .iter()
        .map(|(key, b)| (key.clone(), evaluate(res, key, b, options, refresh_at)))
        .collect()
}

fn invalid(message: String) -> Evaluated {
    Evaluated {
        rejected: Some(Problem::new("Invalid", message)),
        unresolved: None,
        backend: None,
    }
}

/// Validates one XBackend as its CRD and the Gateway API rules say.
fn evaluate(
    res: &Resources,
    key: &ObjectKey,
    b: &XBackend,
    options: &CompileOptions,
    refresh_at: &mut Option<i64>,
) -> Evaluated {
    let spec = &b.spec;
    // CRD: "externalHostname must be set when type is ExternalHostname and must be unset
    // otherwise"; ExternalHostname is the only type.
    if spec.type_ != "ExternalHostname" {
        return invalid(format!(
            "type {:?} is not supported; use ExternalHostname",
            spec.type_
        ));
    }
    let Some(external) = &spec.external_hostname else {
        return invalid("type ExternalHostname needs spec.externalHostname".to_owned());
    };
    // CRD: "Hostname specifies the FQDN used to reach this backend. IP addresses are not
    // allowed"; "hostname must not be an IP address or end with .cluster.local".
    let host = &external.hostname;
    if !hostname::is_valid_hostname(host) || host.starts_with('*') {
        return invalid(format!(
            "externalHostname.hostname {host:?} is not a DNS name (IP addresses and wildcards \
             are not allowed)"
        ));
    }
    if host.ends_with(".cluster.local") {
        return invalid(format!(
            "externalHostname.hostname {host:?} is a cluster name; refer to the Service instead"
        ));
    }
    let Some(port) = u16::try_from(spec.port.port).ok().filter(|p| *p > 0) else {
        return invalid(format!("port {} is out of range 1-65535", spec.port.port));
    };
    // CRD: "Support: Core - HTTP, HTTP2, H2C, and HTTP11; Extended - GRPC, MCP, TCP". MCP is
    // HTTP (streamable HTTP transport); HTTP2 with TLS negotiates h2 by ALPN.
    let app_protocol = match spec.protocol.as_deref() {
        None | Some("HTTP" | "HTTP11" | "MCP") => AppProtocol::Http1,
        Some("HTTP2" | "H2C") => AppProtocol::H2c,
        Some("TCP") => AppProtocol::Raw,
        Some(other) => return invalid(format!("protocol {other:?} is not supported")),
    };
    let from = From {
        group: GATEWAY_X_GROUP,
        kind: "XBackend",
        namespace: &key.namespace,
    };
    let mut out = Evaluated {
        rejected: None,
        unresolved: None,
        backend: None,
    };
    let mut tls: Option<BackendTls> = None;
    let mut client_certificate = None;
    if let Some(t) = &spec.tls {
        match t.mode.as_str() {
            "None" => {
                if t.client_certificate_ref.is_some() {
                    return invalid(
                        "tls.clientCertificateRef must be set if and only if mode is \
                         ClientAndServer"
                            .to_owned(),
                    );
                }
            }
            "ServerOnly" | "ClientAndServer" => {
                tls = Some(match &t.validation {
                    Some(v) => {
                        let checked = validation(res, from, key, v);
                        if let Some(p) = checked.rejected {
                            return Evaluated {
                                rejected: Some(p),
                                unresolved: checked.unresolved,
                                backend: None,
                            };
                        }
                        out.unresolved = checked.unresolved;
                        match checked.tls {
                            Some(t) => t,
                            None => return invalid("tls.validation is not usable".to_owned()),
                        }
                    }
                    // No validation block: verify the external name against the platform's
                    // roots. An external backend is never trusted blindly.
                    None => BackendTls {
                        policy: key.clone(),
                        hostname: host.clone(),
                        ca_pem: Vec::new(),
                        system_roots: true,
                        subject_alt_names: Vec::new(),
                    },
                });
                if t.mode == "ClientAndServer" {
                    let Some(r) = &t.client_certificate_ref else {
                        return invalid(
                            "tls.mode ClientAndServer needs tls.clientCertificateRef".to_owned(),
                        );
                    };
                    match client_cert(res, from, r, options, refresh_at) {
                        Ok(pair) => client_certificate = Some(pair),
                        Err(p) => {
                            // Mutual TLS cannot work without the certificate: not usable.
                            out.unresolved = Some(p);
                            return out;
                        }
                    }
                } else if t.client_certificate_ref.is_some() {
                    return invalid(
                        "tls.clientCertificateRef must be set if and only if mode is \
                         ClientAndServer"
                            .to_owned(),
                    );
                }
            }
            other => return invalid(format!("tls.mode {other:?} is not supported")),
        }
    }
    out.backend = Some(ExternalBackend {
        backend: key.clone(),
        hostname: host.clone(),
        port,
        app_protocol,
        tls: tls.map(Box::new),
        client_certificate,
        traffic: None,
    });
    out
}

fn client_cert(
    res: &Resources,
    from: From<'_>,
    r: &crate::resources::SecretObjectReference,
    options: &CompileOptions,
    refresh_at: &mut Option<i64>,
) -> Result<crate::table::CertificatePair, Problem> {
    let ns = r.namespace.as_deref().unwrap_or(from.namespace);
    let key = ObjectKey::new(ns, r.name.clone());
    if r.group != CORE_GROUP || r.kind != "Secret" {
        return Err(Problem::new(
            "InvalidKind",
            format!(
                "clientCertificateRef kind {}/{} is not supported; use a core Secret",
                r.group, r.kind
            ),
        ));
    }
    if !reference_allowed(res, from, CORE_GROUP, "Secret", ns, &r.name) {
        return Err(Problem::new(
            "RefNotPermitted",
            format!("clientCertificateRef to Secret {key} is not permitted by any ReferenceGrant"),
        ));
    }
    let secret = res.secrets.get(&key).ok_or_else(|| {
        Problem::new(
            "InvalidClientCertificateRef",
            format!("Secret {key} not found"),
        )
    })?;
    let pair = tls::validate_certificate_pair(
        secret.data.get("tls.crt").map(Vec::as_slice),
        secret.data.get("tls.key").map(Vec::as_slice),
    )
    .map_err(|e| Problem::new("InvalidClientCertificateRef", format!("Secret {key}: {e}")))?;
    if let Some(now) = options.now.map(jiff::Timestamp::as_second) {
        note_change(refresh_at, pair.validity.next_change(now));
        pair.validity.check(now).map_err(|e| {
            Problem::new("InvalidClientCertificateRef", format!("Secret {key}: {e}"))
        })?;
    }
    Ok(pair)
}

/// Resolves a backendRef to an XBackend (group `gateway.networking.x-k8s.io`).
///
/// Cross-namespace references need a ReferenceGrant, as for Services. An XBackend that is not
/// usable makes the route's ResolvedRefs False with `BackendNotFound` and the reason.
pub(crate) fn resolve(
    res: &Resources,
    evaluated: &BTreeMap<ObjectKey, Evaluated>,
    from: From<'_>,
    backend: &BackendRef,
    l4: bool,
) -> Result<ExternalBackend, Unresolved> {
    let namespace = backend.namespace.as_deref().unwrap_or(from.namespace);
    if !reference_allowed(
        res,
        from,
        GATEWAY_X_GROUP,
        "XBackend",
        namespace,
        &backend.name,
    ) {
        return Err(Unresolved {
            reason: "RefNotPermitted",
            message: format!(
                "backendRef to XBackend {namespace}/{} is not permitted: no ReferenceGrant in \
                 {namespace} allows {} from {}",
                backend.name, from.kind, from.namespace
            ),
        });
    }
    let key = ObjectKey::new(namespace, backend.name.clone());
    let Some(e) = evaluated.get(&key) else {
        return Err(Unresolved {
            reason: "BackendNotFound",
            message: format!("XBackend {key} not found"),
        });
    };
    let Some(b) = &e.backend else {
        let why = e
            .rejected
            .as_ref()
            .or(e.unresolved.as_ref())
            .map_or_else(String::new, |p| format!(": {}", p.message));
        return Err(Unresolved {
            reason: "BackendNotFound",
            message: format!("XBackend {key} is not usable{why}"),
        });
    };
    let mut b = b.clone();
    if l4 {
        b.app_protocol = AppProtocol::Raw;
    } else if b.app_protocol == AppProtocol::Raw {
        return Err(Unresolved {
            reason: "UnsupportedProtocol",
            message: format!("XBackend {key} speaks TCP; an HTTP or gRPC route cannot use it"),
        });
    }
    Ok(b)
}

/// XBackend status: one `parents` entry per Gateway of ours that a route referring to the
/// XBackend names, with `Accepted` and `ResolvedRefs`.
pub(crate) fn status(
    res: &Resources,
    evaluated: &BTreeMap<ObjectKey, Evaluated>,
    our_gateways: &BTreeSet<ObjectKey>,
    options: &CompileOptions,
) -> Vec<StatusEntry> {
    // Without XBackends there is nothing to report: skip the pass over every route.
    if evaluated.is_empty() {
        return Vec::new();
    }
    let mut parents: BTreeMap<ObjectKey, BTreeSet<ObjectKey>> = BTreeMap::new();
    let mut note = |route_ns: &str,
                    parent_refs: &[ParentReference],
                    refs: &mut dyn Iterator<Item = &BackendRef>| {
        let mut refs = refs
            .filter(|r| r.group == GATEWAY_X_GROUP && r.kind == "XBackend")
            .peekable();
        if refs.peek().is_none() {
            return;
        }
        let gateways: Vec<ObjectKey> = parent_refs
            .iter()
            .filter(|p| p.group == GATEWAY_GROUP && p.kind == "Gateway")
            .map(|p| ObjectKey::new(p.namespace.as_deref().unwrap_or(route_ns), p.name.clone()))
            .filter(|g| our_gateways.contains(g))
            .collect();
        for r in refs {
            let key = ObjectKey::new(r.namespace.as_deref().unwrap_or(route_ns), r.name.clone());
            parents
                .entry(key)
                .or_default()
                .extend(gateways.iter().cloned());
        }
    };
    for (k, r) in &res.http_routes {
        let mut refs = r
            .spec
            .rules
            .iter()
            .flat_map(|rule| rule.backend_refs.iter().map(|b| &b.backend));
        note(&k.namespace, &r.spec.parent_refs, &mut refs);
    }
    for (k, r) in &res.grpc_routes {
        let mut refs = r
            .spec
            .rules
            .iter()
            .flat_map(|rule| rule.backend_refs.iter().map(|b| &b.backend));
        note(&k.namespace, &r.spec.parent_refs, &mut refs);
    }
    for routes in [&res.tls_routes, &res.tcp_routes, &res.udp_routes] {
        for (k, r) in routes {
            let mut refs = r
                .spec
                .rules
                .iter()
                .flat_map(|rule| rule.backend_refs.iter());
            note(&k.namespace, &r.spec.parent_refs, &mut refs);
        }
    }
    let mut out = Vec::new();
    for (key, e) in evaluated {
        let Some(gateways) = parents.get(key) else {
            continue;
        };
        let generation = res
            .x_backends
            .get(key)
            .map_or(0, |b| b.metadata.generation());
        let accepted = match &e.rejected {
            None => Condition::ok("Accepted", "Accepted", "XBackend accepted", generation),
            Some(p) => Condition::fail("Accepted", p.reason, p.message.clone(), generation),
        };
        let resolved = match &e.unresolved {
            None => Condition::ok(
                "ResolvedRefs",
                "ResolvedRefs",
                "all references resolved",
                generation,
            ),
            Some(p) => Condition::fail("ResolvedRefs", p.reason, p.message.clone(), generation),
        };
        let parents = gateways
            .iter()
            .map(|g| RouteParentStatus {
                parent_ref: ParentReference {
                    group: GATEWAY_GROUP.into(),
                    kind: "Gateway".into(),
                    namespace: Some(g.namespace.clone()),
                    name: g.name.clone(),
                    section_name: None,
                    port: None,
                },
                controller_name: options.controller_name.as_str().into(),
                conditions: vec![accepted.clone(), resolved.clone()],
            })
            .collect();
        out.push(StatusEntry {
            kind: Kind::XBackend,
            key: key.clone(),
            generation,
            status: ObjectStatus::Backend(RouteStatus { parents }),
        });
    }
    out
}
