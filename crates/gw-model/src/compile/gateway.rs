//! GatewayClasses, Gateways, ListenerSets and listeners: acceptance, conflicts, TLS references.

use std::net::IpAddr;

use super::refs::{From, reference_allowed};
use super::tls::{validate_ca_bundle, validate_certificate_pair};
use super::{CompileOptions, Problem, hostname};
use crate::resources::{
    CORE_GROUP, FromNamespaces, GATEWAY_GROUP, Gateway, Kind, Listener, ListenerSet, ObjectKey,
    ObjectReference, Resources, RouteGroupKind, TlsMode,
};
use crate::status::{Condition, GatewayClassStatus, GatewayStatusAddress};
use crate::table::{
    CertificateEntry, CertificatePair, ClientValidation, ListenerOwner, ListenerTlsTable, Protocol,
};

/// The status of an accepted-or-not GatewayClass of ours.
pub(crate) fn gateway_class_status(
    res: &Resources,
    class: &crate::resources::GatewayClass,
    options: &CompileOptions,
) -> GatewayClassStatus {
    let generation = class.metadata.generation();
    let accepted = match &class.spec.parameters_ref {
        None => Ok(()),
        Some(p) => class_parameters(res, p),
    };
    let mut conditions = vec![match &accepted {
        Ok(()) => Condition::ok("Accepted", "Accepted", "gw accepts this class", generation),
        Err(p) => Condition::fail(
            "Accepted",
            "InvalidParameters",
            p.message.clone(),
            generation,
        ),
    }];
    conditions.push(Condition::ok(
        "SupportedVersion",
        "SupportedVersion",
        "Gateway API v1.6 is supported",
        generation,
    ));
    GatewayClassStatus {
        conditions,
        supported_features: options
            .supported_features
            .iter()
            .map(|f| crate::status::SupportedFeature { name: f.clone() })
            .collect(),
    }
}

/// GatewayClass spec: "If the referent cannot be found, refers to an unsupported kind, or when
/// the data within that resource is malformed, the GatewayClass SHOULD be rejected with the
/// `Accepted` status condition set to `False` and an `InvalidParameters` reason." gw reads no
/// parameters itself but accepts a reference to an existing ConfigMap or Secret.
fn class_parameters(res: &Resources, p: &ObjectReference) -> Result<(), Problem> {
    let ns = p.namespace.as_deref().unwrap_or("");
    let key = ObjectKey::new(ns, p.name.clone());
    let found = p.group == CORE_GROUP
        && match p.kind.as_str() {
            "ConfigMap" => res.config_maps.contains_key(&key),
            "Secret" => res.secrets.contains_key(&key),
            _ => false,
        };
    if found {
        Ok(())
    } else {
        Err(Problem::new(
            "InvalidParameters",
            format!(
                "parametersRef {}/{} {key} does not name an existing ConfigMap or Secret",
                p.group, p.kind
            ),
        ))
    }
}

/// One listener of a Gateway, from the Gateway itself or from an attached ListenerSet, with its
/// computed state.
#[derive(Debug, Clone)]
pub(crate) struct ListenerState {
    pub owner: ListenerOwner,
    pub spec: Listener,
    pub protocol: Option<Protocol>,
    pub supported_kinds: Vec<RouteGroupKind>,
    /// `Accepted=False` problem.
    pub not_accepted: Option<Problem>,
    /// `ResolvedRefs=False` problem.
    pub unresolved: Option<Problem>,
    /// `Conflicted=True` reason.
    pub conflicted: Option<Problem>,
    pub tls: Option<ListenerTlsTable>,
    pub attached_routes: i32,
    pub generation: i64,
}

impl ListenerState {
    /// Accepted and with usable configuration: traffic is served.
    pub(crate) fn programmed(&self) -> bool {
        self.not_accepted.is_none()
            && self.conflicted.is_none()
            && (self.unresolved.is_none() || self.has_usable_certificates())
            && !self.invalid_route_kinds_only()
    }

    fn has_usable_certificates(&self) -> bool {
        // A listener whose only problem is a partly invalid certificate list still serves with
        // the valid ones; without any valid certificate a terminating listener cannot serve.
        match (&self.tls, self.protocol) {
            (Some(t), Some(Protocol::Https | Protocol::Tls)) => {
                t.mode == TlsMode::Passthrough || !t.certificates.is_empty()
            }
            _ => self
                .unresolved
                .as_ref()
                .is_some_and(|p| p.reason == "InvalidRouteKinds"),
        }
    }

    fn invalid_route_kinds_only(&self) -> bool {
        self.supported_kinds.is_empty()
            && self
                .unresolved
                .as_ref()
                .is_some_and(|p| p.reason == "InvalidRouteKinds")
    }

    /// The listener's status conditions, as the Gateway API names them.
    pub(crate) fn conditions(&self) -> Vec<Condition> {
        let g = self.generation;
        let mut out = Vec::with_capacity(4);
        let accept_problem = self.not_accepted.as_ref().or(self.conflicted.as_ref());
        out.push(match accept_problem {
            None => Condition::ok("Accepted", "Accepted", "listener accepted", g),
            Some(p) => Condition::fail("Accepted", p.reason, p.message.clone(), g),
        });
        out.push(match &self.unresolved {
            None => Condition::ok("ResolvedRefs", "ResolvedRefs", "all references resolved", g),
            Some(p) => Condition::fail("ResolvedRefs", p.reason, p.message.clone(), g),
        });
        out.push(match &self.conflicted {
            None => Condition::fail("Conflicted", "NoConflicts", "no conflicts", g),
            Some(p) => Condition::ok("Conflicted", p.reason, p.message.clone(), g),
        });
        out.push(if self.programmed() {
            Condition::ok("Programmed", "Programmed", "listener programmed", g)
        } else {
            let reason = match accept_problem {
                Some(p) if self.conflicted.is_some() => p.reason,
                _ => "Invalid",
            };
            Condition::fail("Programmed", reason, "listener is not programmed", g)
        });
        out
    }
}

/// The route kinds a protocol can carry.
///
/// Gateway API: HTTP and HTTPS listeners carry HTTPRoute and GRPCRoute; TLS listeners carry
/// TLSRoute (Passthrough, and Terminate with TLSRouteModeTerminate); TCP carries TCPRoute; UDP
/// carries UDPRoute.
pub(crate) fn kinds_for(protocol: Protocol) -> &'static [&'static str] {
    match protocol {
        Protocol::Http | Protocol::Https => &["HTTPRoute", "GRPCRoute"],
        Protocol::Tls => &["TLSRoute"],
        Protocol::Tcp => &["TCPRoute"],
        Protocol::Udp => &["UDPRoute"],
    }
}

/// Resolves `allowedRoutes.kinds` against the protocol: the supported kinds, and the
/// `InvalidRouteKinds` problem when some listed kind is not supported.
///
/// Gateway API Listener.AllowedRoutes.Kinds: "Invalid values ... MUST be rejected by the
/// implementation ... the ResolvedRefs condition set to False with the InvalidRouteKinds reason",
/// and "supportedKinds ... MUST only contain the kinds that are supported".
pub(crate) fn supported_kinds(
    protocol: Protocol,
    allowed: &[RouteGroupKind],
) -> (Vec<RouteGroupKind>, Option<Problem>) {
    let kinds = kinds_for(protocol);
    if allowed.is_empty() {
        return (
            kinds
                .iter()
                .map(|k| RouteGroupKind::gateway_api(k))
                .collect(),
            None,
        );
    }
    let mut out = Vec::new();
    let mut invalid = Vec::new();
    for k in allowed {
        if k.group == GATEWAY_GROUP && kinds.contains(&k.kind.as_str()) {
            if !out.contains(k) {
                out.push(k.clone());
            }
        } else {
            invalid.push(format!("{}/{}", k.group, k.kind));
        }
    }
    let problem = (!invalid.is_empty()).then(|| {
        Problem::new(
            "InvalidRouteKinds",
            format!(
                "route kinds {} are not supported on this listener",
                invalid.join(", ")
            ),
        )
    });
    (out, problem)
}

/// Validates one listener in isolation (everything except conflicts).
pub(crate) fn validate_listener(
    res: &Resources,
    gateway: &Gateway,
    owner: ListenerOwner,
    owner_namespace: &str,
    listener: &Listener,
    generation: i64,
) -> ListenerState {
    let mut state = ListenerState {
        owner,
        spec: listener.clone(),
        protocol: Protocol::from_name(&listener.protocol),
        supported_kinds: Vec::new(),
        not_accepted: None,
        unresolved: None,
        conflicted: None,
        tls: None,
        attached_routes: 0,
        generation,
    };
    let Some(protocol) = state.protocol else {
        state.not_accepted = Some(Problem::new(
            "UnsupportedProtocol",
            format!("protocol {:?} is not supported", listener.protocol),
        ));
        return state;
    };
    if !(1..=65535).contains(&listener.port) {
        state.not_accepted = Some(Problem::new(
            "PortUnavailable",
            format!("port {} is out of range", listener.port),
        ));
        return state;
    }
    if let Some(h) = &listener.hostname
        && matches!(protocol, Protocol::Http | Protocol::Https | Protocol::Tls)
        && !hostname::is_valid_hostname(h)
    {
        state.not_accepted = Some(Problem::new(
            "UnsupportedValue",
            format!("hostname {h:?} is not a valid DNS name or wildcard"),
        ));
        return state;
    }
    let (kinds, kinds_problem) = supported_kinds(protocol, &listener.allowed_routes.kinds);
    state.supported_kinds = kinds;
    state.unresolved = kinds_problem;
    match protocol {
        Protocol::Https | Protocol::Tls => {
            let tls = listener.tls.clone().unwrap_or_default();
            if protocol == Protocol::Https && tls.mode == TlsMode::Passthrough {
                state.not_accepted = Some(Problem::new(
                    "UnsupportedValue",
                    "HTTPS listeners terminate TLS; use a TLS listener for Passthrough",
                ));
                return state;
            }
            let from = From {
                group: GATEWAY_GROUP,
                kind: state.owner.kind.as_str(),
                namespace: owner_namespace,
            };
            let mut certificates = Vec::new();
            if tls.mode == TlsMode::Terminate {
                if tls.certificate_refs.is_empty() {
                    state.unresolved.get_or_insert(Problem::new(
                        "InvalidCertificateRef",
                        "a terminating listener needs at least one certificateRef",
                    ));
                }
                for cref in &tls.certificate_refs {
                    match certificate(res, from, cref) {
                        Ok(entry) => certificates.push(entry),
                        Err(p) => {
                            state.unresolved.get_or_insert(p);
                        }
                    }
                }
            }
            let client_validation = if protocol == Protocol::Https
                || (protocol == Protocol::Tls && tls.mode == TlsMode::Terminate)
            {
                match frontend_validation(res, gateway, listener.port, from) {
                    Ok(v) => v,
                    Err(p) => {
                        state.not_accepted = Some(Problem::new(
                            "NoValidCACertificate",
                            format!(
                                "no valid CA certificate for client validation: {}",
                                p.message
                            ),
                        ));
                        state.unresolved = Some(p);
                        None
                    }
                }
            } else {
                None
            };
            state.tls = Some(ListenerTlsTable {
                mode: tls.mode,
                certificates,
                client_validation,
            });
        }
        Protocol::Http | Protocol::Tcp | Protocol::Udp => {}
    }
    state
}

fn certificate(
    res: &Resources,
    from: From<'_>,
    cref: &crate::resources::SecretObjectReference,
) -> Result<CertificateEntry, Problem> {
    let ns = cref.namespace.as_deref().unwrap_or(from.namespace);
    let key = ObjectKey::new(ns, cref.name.clone());
    if cref.group != CORE_GROUP || cref.kind != "Secret" {
        return Err(Problem::new(
            "InvalidCertificateRef",
            format!(
                "certificateRef {key}: kind {}/{} is not supported; use a core Secret",
                cref.group, cref.kind
            ),
        ));
    }
    if !reference_allowed(res, from, CORE_GROUP, "Secret", ns, &cref.name) {
        return Err(Problem::new(
            "RefNotPermitted",
            format!("certificateRef to Secret {key} is not permitted by any ReferenceGrant"),
        ));
    }
    let secret = res
        .secrets
        .get(&key)
        .ok_or_else(|| Problem::new("InvalidCertificateRef", format!("Secret {key} not found")))?;
    let pair: CertificatePair = validate_certificate_pair(
        secret.data.get("tls.crt").map(Vec::as_slice),
        secret.data.get("tls.key").map(Vec::as_slice),
    )
    .map_err(|e| Problem::new("InvalidCertificateRef", format!("Secret {key}: {e}")))?;
    Ok(CertificateEntry { secret: key, pair })
}

/// Removes the certificates of a listener that are not valid at `now` (seconds since the epoch)
/// and records when validity next changes.
///
/// Gateway API (Listener `ResolvedRefs`): "InvalidCertificateRef ... the referenced Secret ...
/// is malformed"; a certificate outside its validity window cannot complete a handshake, so it
/// is reported the same way and not served. The listener keeps serving with its other
/// certificates; without any it is not programmed.
pub(crate) fn drop_invalid_certificates(
    state: &mut ListenerState,
    now: i64,
    refresh_at: &mut Option<i64>,
) {
    let Some(tls) = state.tls.as_mut() else {
        return;
    };
    let mut first_problem = None;
    tls.certificates.retain(|c| {
        note_change(refresh_at, c.pair.validity.next_change(now));
        match c.pair.validity.check(now) {
            Ok(()) => true,
            Err(e) => {
                first_problem.get_or_insert_with(|| {
                    Problem::new("InvalidCertificateRef", format!("Secret {}: {e}", c.secret))
                });
                false
            }
        }
    });
    if let Some(p) = first_problem {
        state.unresolved.get_or_insert(p);
    }
}

/// Keeps the earliest of `at` and `next` in `at`.
pub(crate) fn note_change(at: &mut Option<i64>, next: Option<i64>) {
    if let Some(n) = next {
        *at = Some(at.map_or(n, |a| a.min(n)));
    }
}

/// Frontend client-certificate validation for a listener port (GEP-91): the per-port entry, or
/// the default.
fn frontend_validation(
    res: &Resources,
    gateway: &Gateway,
    port: i32,
    from: From<'_>,
) -> Result<Option<ClientValidation>, Problem> {
    let Some(frontend) = gateway.spec.tls.as_ref().and_then(|t| t.frontend.as_ref()) else {
        return Ok(None);
    };
    let config = frontend
        .per_port
        .iter()
        .find(|p| p.port == port)
        .map(|p| &p.tls)
        .or(frontend.default.as_ref());
    let Some(validation) = config.and_then(|c| c.validation.as_ref()) else {
        return Ok(None);
    };
    let mut ca_pem = Vec::new();
    let mut first_problem = None;
    // The Gateway is the referrer for frontend CA references, whoever owns the listener.
    let from = From {
        kind: "Gateway",
        namespace: gateway.metadata.namespace(),
        ..from
    };
    for r in &validation.ca_certificate_refs {
        match ca_bundle(res, from, r) {
            Ok(pem) => ca_pem.push(pem),
            Err(p) => {
                first_problem.get_or_insert(p);
            }
        }
    }
    match first_problem {
        // GEP-91: "If any of the CACertificateRefs is invalid ... ResolvedRefs False", and a
        // listener without any valid CA is not accepted (NoValidCACertificate).
        Some(p) => Err(p),
        None if ca_pem.is_empty() => Err(Problem::new(
            "InvalidCACertificateRef",
            "validation lists no caCertificateRefs",
        )),
        None => Ok(Some(ClientValidation {
            allow_insecure_fallback: validation.mode
                == crate::resources::FrontendValidationMode::AllowInsecureFallback,
            ca_pem,
        })),
    }
}

/// Resolves a CA bundle reference (ConfigMap or Secret with `ca.crt`).
pub(crate) fn ca_bundle(
    res: &Resources,
    from: From<'_>,
    r: &ObjectReference,
) -> Result<String, Problem> {
    let ns = r.namespace.as_deref().unwrap_or(from.namespace);
    let key = ObjectKey::new(ns, r.name.clone());
    if r.group != CORE_GROUP || !matches!(r.kind.as_str(), "ConfigMap" | "Secret") {
        return Err(Problem::new(
            "InvalidCACertificateKind",
            format!(
                "caCertificateRef {key}: kind {}/{} is not supported; use a ConfigMap or Secret",
                r.group, r.kind
            ),
        ));
    }
    if !reference_allowed(res, from, CORE_GROUP, &r.kind, ns, &r.name) {
        return Err(Problem::new(
            "RefNotPermitted",
            format!(
                "caCertificateRef to {} {key} is not permitted by any ReferenceGrant",
                r.kind
            ),
        ));
    }
    let data: Option<Vec<u8>> = match r.kind.as_str() {
        "ConfigMap" => res.config_maps.get(&key).map(|c| {
            c.data
                .get("ca.crt")
                .map(|s| s.clone().into_bytes())
                .or_else(|| c.binary_data.get("ca.crt").cloned())
                .unwrap_or_default()
        }),
        _ => res
            .secrets
            .get(&key)
            .map(|s| s.data.get("ca.crt").cloned().unwrap_or_default()),
    };
    let data = data.ok_or_else(|| {
        Problem::new(
            "InvalidCACertificateRef",
            format!("{} {key} not found", r.kind),
        )
    })?;
    validate_ca_bundle(Some(&data))
        .map_err(|e| Problem::new("InvalidCACertificateRef", format!("{} {key}: {e}", r.kind)))
}

/// Which class a listener belongs to for conflict detection on one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortClass {
    Http,
    TlsFamily,
    Tcp,
    Udp,
}

fn port_class(p: Protocol) -> PortClass {
    match p {
        Protocol::Http => PortClass::Http,
        Protocol::Https | Protocol::Tls => PortClass::TlsFamily,
        Protocol::Tcp => PortClass::Tcp,
        Protocol::Udp => PortClass::Udp,
    }
}

/// Why two listeners cannot both be served, if they cannot.
///
/// Gateway API Listener: "HTTP, HTTPS, TLS: Port, Hostname" and "TCP, UDP: Port" must differ;
/// "all the Listeners that share a port with the TCP Listener are not distinct and so MUST NOT
/// be accepted." gw serves HTTPS and TLS on one port (routed by SNI) and UDP beside TCP-based
/// protocols (different transports); HTTP shares a port only with HTTP.
pub(crate) fn conflict(a: &ListenerState, b: &ListenerState) -> Option<&'static str> {
    let (Some(pa), Some(pb)) = (a.protocol, b.protocol) else {
        return None;
    };
    if a.spec.port != b.spec.port || pa.is_udp() != pb.is_udp() {
        return None;
    }
    let (ca, cb) = (port_class(pa), port_class(pb));
    if ca != cb || ca == PortClass::Tcp || ca == PortClass::Udp {
        return Some("ProtocolConflict");
    }
    (a.spec.hostname == b.spec.hostname).then_some("HostnameConflict")
}

/// Marks conflicts. The Gateway's own listeners conflict symmetrically ("The implementation MUST
/// NOT pick one conflicting Listener as the winner"); ListenerSet listeners are then admitted one
/// by one in precedence order and lose to any earlier listener they conflict with (GEP-1713:
/// "parent Gateway; ListenerSet ordered by creation time (oldest first); ListenerSet ordered
/// alphabetically by {namespace}/{name}").
pub(crate) fn mark_conflicts(listeners: &mut [ListenerState]) {
    let own: Vec<usize> = (0..listeners.len())
        .filter(|&i| listeners[i].owner.kind == Kind::Gateway)
        .collect();
    for &i in &own {
        if listeners[i].not_accepted.is_some() {
            continue;
        }
        for &j in &own {
            if i != j
                && listeners[j].not_accepted.is_none()
                && let Some(reason) = conflict(&listeners[i], &listeners[j])
            {
                let other = listeners[j].spec.name.clone();
                listeners[i].conflicted = Some(Problem::new(
                    reason,
                    format!(
                        "conflicts with listener {other} on port {}",
                        listeners[i].spec.port
                    ),
                ));
                break;
            }
        }
    }
    for i in 0..listeners.len() {
        if listeners[i].owner.kind == Kind::Gateway || listeners[i].not_accepted.is_some() {
            continue;
        }
        let winner = (0..i).find(|&j| {
            listeners[j].not_accepted.is_none()
                && (listeners[j].owner.kind == Kind::Gateway || listeners[j].conflicted.is_none())
                && conflict(&listeners[i], &listeners[j]).is_some()
        });
        if let Some(j) = winner {
            let reason = conflict(&listeners[i], &listeners[j]).unwrap_or("ProtocolConflict");
            let msg = format!(
                "conflicts with listener {} of {} {} on port {}, which takes precedence",
                listeners[j].spec.name,
                listeners[j].owner.kind,
                listeners[j].owner.key,
                listeners[i].spec.port
            );
            listeners[i].conflicted = Some(Problem::new(reason, msg));
        }
    }
}

/// Whether `namespace` is allowed by a `from`/`selector` pair, relative to `own` namespace.
pub(crate) fn namespace_allowed(
    res: &Resources,
    from: FromNamespaces,
    selector: Option<&crate::resources::LabelSelector>,
    own: &str,
    namespace: &str,
) -> bool {
    match from {
        FromNamespaces::All => true,
        FromNamespaces::Same => own == namespace,
        FromNamespaces::None => false,
        FromNamespaces::Selector => {
            selector.is_some_and(|s| s.matches(&res.namespace_labels(namespace)))
        }
    }
}

/// Whether a ListenerSet may attach to its Gateway (`Gateway.spec.allowedListeners`, default
/// `from: None`).
pub(crate) fn listener_set_allowed(res: &Resources, gateway: &Gateway, ls: &ListenerSet) -> bool {
    let allowed = gateway.spec.allowed_listeners.clone().unwrap_or_default();
    namespace_allowed(
        res,
        allowed.namespaces.from,
        allowed.namespaces.selector.as_ref(),
        gateway.metadata.namespace(),
        ls.metadata.namespace(),
    )
}

/// The outcome of a Gateway's addresses.
pub(crate) struct Addresses {
    pub status: Vec<GatewayStatusAddress>,
    pub bind: Vec<IpAddr>,
    pub unsupported: Option<Problem>,
    pub unusable: Option<Problem>,
}

/// Resolves `spec.addresses` (or the embedder's assignment).
///
/// Gateway spec: "If a requested address is invalid or unavailable, the implementation MUST
/// indicate this in an associated entry in GatewayStatus.Conditions" — an unsupported type is
/// `Accepted=False` / `UnsupportedAddress`; an address gw cannot use is `Programmed=False` /
/// `AddressNotUsable`. An entry without a value asks for an address to be assigned
/// (GatewayAddressEmpty).
pub(crate) fn addresses(gateway: &Gateway, options: &CompileOptions) -> Addresses {
    let key = ObjectKey::of(&gateway.metadata);
    let assigned = options
        .assigned_addresses
        .get(&key)
        .cloned()
        .unwrap_or_default();
    let mut out = Addresses {
        status: Vec::new(),
        bind: Vec::new(),
        unsupported: None,
        unusable: None,
    };
    if gateway.spec.addresses.is_empty() {
        for a in assigned {
            if let Ok(ip) = a.value.parse() {
                out.bind.push(ip);
            }
            out.status.push(a);
        }
        return out;
    }
    let mut wants_assignment = false;
    for a in &gateway.spec.addresses {
        if a.type_ != "IPAddress" {
            out.unsupported.get_or_insert(Problem::new(
                "UnsupportedAddress",
                format!("address type {:?} is not supported; use IPAddress", a.type_),
            ));
            continue;
        }
        if a.value.is_empty() {
            wants_assignment = true;
            continue;
        }
        let Ok(ip) = a.value.parse::<IpAddr>() else {
            out.unsupported.get_or_insert(Problem::new(
                "UnsupportedAddress",
                format!("{:?} is not an IP address", a.value),
            ));
            continue;
        };
        if !options.usable_networks.is_empty()
            && !options.usable_networks.iter().any(|n| n.contains(&ip))
        {
            out.unusable.get_or_insert(Problem::new(
                "AddressNotUsable",
                format!("address {ip} is not usable by this gateway"),
            ));
            continue;
        }
        out.bind.push(ip);
        out.status.push(GatewayStatusAddress {
            type_: "IPAddress".into(),
            value: ip.to_string(),
        });
    }
    if wants_assignment {
        for a in assigned {
            if let Ok(ip) = a.value.parse() {
                out.bind.push(ip);
            }
            out.status.push(a);
        }
    }
    out
}

/// ListenerSets attached to a Gateway in precedence order: oldest first, then namespace/name.
pub(crate) fn listener_sets_for<'a>(
    res: &'a Resources,
    gateway: &ObjectKey,
) -> Vec<(&'a ObjectKey, &'a ListenerSet)> {
    let mut sets: Vec<_> = res
        .listener_sets
        .iter()
        .filter(|(k, ls)| {
            let p = &ls.spec.parent_ref;
            p.group == GATEWAY_GROUP
                && p.kind == "Gateway"
                && p.name == gateway.name
                && p.namespace.as_deref().unwrap_or(&k.namespace) == gateway.namespace
        })
        .map(|(k, ls)| (k, &**ls))
        .collect();
    sets.sort_by(|(ka, a), (kb, b)| {
        super::created(&a.metadata)
            .map_or((true, 0), |t| (false, t))
            .cmp(&super::created(&b.metadata).map_or((true, 0), |t| (false, t)))
            .then_with(|| ka.cmp(kb))
    });
    sets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{AllowedRoutes, ListenerTls, SecretObjectReference};

    fn listener(name: &str, port: i32, protocol: &str, hostname: Option<&str>) -> Listener {
        Listener {
            name: name.into(),
            hostname: hostname.map(Into::into),
            port,
            protocol: protocol.into(),
            tls: None,
            allowed_routes: AllowedRoutes::default(),
        }
    }

    fn state(owner: Kind, l: Listener) -> ListenerState {
        ListenerState {
            owner: ListenerOwner {
                kind: owner,
                key: ObjectKey::new("ns", "o"),
            },
            protocol: Protocol::from_name(&l.protocol),
            spec: l,
            supported_kinds: vec![],
            not_accepted: None,
            unresolved: None,
            conflicted: None,
            tls: None,
            attached_routes: 0,
            generation: 1,
        }
    }

    // "HTTP, HTTPS, TLS: Port, Hostname" must differ between listeners of one protocol.
    #[test]
    fn same_port_and_hostname_is_a_hostname_conflict() {
        let a = state(Kind::Gateway, listener("a", 80, "HTTP", Some("a.com")));
        let b = state(Kind::Gateway, listener("b", 80, "HTTP", Some("a.com")));
        let c = state(Kind::Gateway, listener("c", 80, "HTTP", Some("c.com")));
        assert_eq!(conflict(&a, &b), Some("HostnameConflict"));
        assert_eq!(conflict(&a, &c), None);
    }

    // "all the Listeners that share a port with the TCP Listener are not distinct".
    #[test]
    fn tcp_shares_its_port_with_nobody() {
        let tcp = state(Kind::Gateway, listener("t", 80, "TCP", None));
        let http = state(Kind::Gateway, listener("h", 80, "HTTP", Some("a.com")));
        let tcp2 = state(Kind::Gateway, listener("t2", 80, "TCP", None));
        let udp = state(Kind::Gateway, listener("u", 80, "UDP", None));
        assert_eq!(conflict(&tcp, &http), Some("ProtocolConflict"));
        assert_eq!(conflict(&tcp, &tcp2), Some("ProtocolConflict"));
        assert_eq!(conflict(&tcp, &udp), None, "UDP is another transport");
        let https = state(Kind::Gateway, listener("s", 443, "HTTPS", Some("a.com")));
        let tls = state(Kind::Gateway, listener("p", 443, "TLS", Some("b.com")));
        assert_eq!(
            conflict(&https, &tls),
            None,
            "HTTPS and TLS share a port by SNI"
        );
        let http443 = state(Kind::Gateway, listener("x", 443, "HTTP", Some("c.com")));
        assert_eq!(conflict(&https, &http443), Some("ProtocolConflict"));
    }

    // "The implementation MUST NOT pick one conflicting Listener as the winner" (one Gateway),
    // while ListenerSet listeners lose to listeners of higher precedence (GEP-1713).
    #[test]
    fn gateway_conflicts_are_symmetric_listener_sets_lose() {
        let mut ls = vec![
            state(Kind::Gateway, listener("a", 80, "HTTP", None)),
            state(Kind::Gateway, listener("b", 80, "HTTP", None)),
            state(Kind::Gateway, listener("c", 81, "HTTP", None)),
            state(Kind::ListenerSet, listener("d", 81, "TCP", None)),
            state(Kind::ListenerSet, listener("e", 82, "HTTP", None)),
            state(Kind::ListenerSet, listener("f", 82, "TCP", None)),
        ];
        mark_conflicts(&mut ls);
        let conflicted: Vec<_> = ls.iter().map(|l| l.conflicted.is_some()).collect();
        assert_eq!(conflicted, [true, true, false, true, false, true]);
        assert_eq!(ls[3].conditions()[0].reason, "ProtocolConflict");
    }

    // AllowedRoutes.Kinds: unsupported kinds give ResolvedRefs=False/InvalidRouteKinds and are
    // left out of supportedKinds.
    #[test]
    fn invalid_route_kinds() {
        let (kinds, problem) = supported_kinds(
            Protocol::Http,
            &[
                RouteGroupKind::gateway_api("HTTPRoute"),
                RouteGroupKind::gateway_api("TCPRoute"),
            ],
        );
        assert_eq!(kinds, vec![RouteGroupKind::gateway_api("HTTPRoute")]);
        assert_eq!(problem.map(|p| p.reason), Some("InvalidRouteKinds"));
        let (kinds, problem) = supported_kinds(Protocol::Tls, &[]);
        assert_eq!(kinds, vec![RouteGroupKind::gateway_api("TLSRoute")]);
        assert!(problem.is_none());
    }

    // Listener TLS: "InvalidCertificateRef ... the referenced Secret does not exist" and
    // "RefNotPermitted ... in another namespace without a ReferenceGrant".
    #[test]
    fn certificate_refs_are_resolved() {
        let res = Resources::new();
        let gateway: Gateway = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "g", "namespace": "ns"},
            "spec": {"gatewayClassName": "c", "listeners": []}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let mut l = listener("https", 443, "HTTPS", None);
        l.tls = Some(ListenerTls {
            certificate_refs: vec![SecretObjectReference {
                group: String::new(),
                kind: "Secret".into(),
                name: "missing".into(),
                namespace: None,
            }],
            ..ListenerTls::default()
        });
        let owner = ListenerOwner {
            kind: Kind::Gateway,
            key: ObjectKey::new("ns", "g"),
        };
        let s = validate_listener(&res, &gateway, owner.clone(), "ns", &l, 1);
        assert_eq!(
            s.unresolved.as_ref().map(|p| p.reason),
            Some("InvalidCertificateRef")
        );
        assert!(!s.programmed());
        if let Some(t) = l.tls.as_mut() {
            t.certificate_refs[0].namespace = Some("other".into());
        }
        let s = validate_listener(&res, &gateway, owner, "ns", &l, 1);
        assert_eq!(
            s.unresolved.as_ref().map(|p| p.reason),
            Some("RefNotPermitted")
        );
    }

    #[test]
    fn unsupported_protocol_is_not_accepted() {
        let res = Resources::new();
        let gateway: Gateway = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "g", "namespace": "ns"},
            "spec": {"gatewayClassName": "c", "listeners": []}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let owner = ListenerOwner {
            kind: Kind::Gateway,
            key: ObjectKey::new("ns", "g"),
        };
        let s = validate_listener(
            &res,
            &gateway,
            owner,
            "ns",
            &listener("x", 80, "SCTP", None),
            1,
        );
        let c = s.conditions();
        assert_eq!(
            (&*c[0].type_, &*c[0].reason),
            ("Accepted", "UnsupportedProtocol")
        );
        assert!(!s.programmed());
    }
}
