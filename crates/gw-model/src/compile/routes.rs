//! Route attachment: parentRefs against listeners, with the reasons the spec names.

use super::gateway::{ListenerState, namespace_allowed};
use super::hostname::effective_hostnames;
use super::{GatewayState, Problem};
use crate::resources::{GATEWAY_GROUP, Kind, ObjectKey, ParentReference, Resources};
use crate::table::Protocol;

/// A route as attachment sees it.
pub(crate) struct RouteView<'a> {
    pub kind: Kind,
    pub key: &'a ObjectKey,
    pub parent_refs: &'a [ParentReference],
    pub hostnames: &'a [String],
}

/// Where a parentRef points, when it points at something of ours.
pub(crate) enum ParentTarget {
    /// A Gateway of ours (index into the gateway states): its own listeners.
    Gateway(usize),
    /// A ListenerSet attached to a Gateway of ours: that ListenerSet's listeners.
    ListenerSet {
        gateway: usize,
        key: ObjectKey,
        accepted: bool,
    },
}

/// Finds the Gateway or ListenerSet a parentRef names, among those gw manages. Parents that are
/// not ours get no status entry from gw (another controller may own them).
pub(crate) fn resolve_parent(
    res: &Resources,
    gateways: &[GatewayState<'_>],
    route_ns: &str,
    p: &ParentReference,
) -> Option<ParentTarget> {
    if p.group != GATEWAY_GROUP {
        return None;
    }
    let namespace = p.namespace.as_deref().unwrap_or(route_ns);
    match &*p.kind {
        "Gateway" => gateways
            .iter()
            .position(|g| g.key.name == p.name && g.key.namespace == namespace)
            .map(ParentTarget::Gateway),
        "ListenerSet" => {
            let key = ObjectKey::new(namespace, p.name.clone());
            let ls = res.listener_sets.get(&key)?;
            let gw_key = ObjectKey::new(
                ls.spec
                    .parent_ref
                    .namespace
                    .as_deref()
                    .unwrap_or(&key.namespace),
                ls.spec.parent_ref.name.clone(),
            );
            let gateway = gateways.iter().position(|g| g.key == gw_key)?;
            let accepted = gateways[gateway]
                .listener_sets
                .iter()
                .any(|s| s.key == key && s.allowed);
            Some(ParentTarget::ListenerSet {
                gateway,
                key,
                accepted,
            })
        }
        _ => None,
    }
}

/// The listeners a route attaches to through one parentRef, with the hostnames it serves on
/// each, or the reason it does not attach.
///
/// Route attachment, in the order the spec's reasons imply: the parentRef's `sectionName` and
/// `port` must select listeners (`NoMatchingParent`); some selected listener must allow the
/// route's kind and namespace (`NotAllowedByListeners`); and for HTTP, gRPC and TLS routes some
/// allowed listener's hostname must intersect the route's hostnames
/// (`NoMatchingListenerHostname`).
pub(crate) fn attach<'l>(
    res: &Resources,
    route: &RouteView<'_>,
    p: &ParentReference,
    listeners: impl Iterator<Item = (usize, &'l ListenerState)>,
    out: &mut Vec<(usize, Vec<String>)>,
) -> Result<(), Problem> {
    // One pass over the listeners (this runs for every parentRef of every route on every
    // reload); the reasons are then decided in the spec's order.
    out.clear();
    let route_ns = &route.key.namespace;
    let (mut selected, mut allowed) = (false, false);
    for (i, l) in listeners {
        if p.section_name.as_ref().is_some_and(|s| *s != l.spec.name)
            || p.port.is_some_and(|port| port != l.spec.port)
        {
            continue;
        }
        selected = true;
        let allows = l
            .supported_kinds
            .iter()
            .any(|k| k.group == GATEWAY_GROUP && k.kind == route.kind.as_str())
            && namespace_allowed(
                res,
                l.spec.allowed_routes.namespaces.from,
                l.spec.allowed_routes.namespaces.selector.as_ref(),
                &l.owner.key.namespace,
                route_ns,
            );
        if !allows {
            continue;
        }
        allowed = true;
        let uses_hostnames = matches!(
            l.protocol,
            Some(Protocol::Http | Protocol::Https | Protocol::Tls)
        );
        if !uses_hostnames {
            out.push((i, Vec::new()));
        } else if let Some(h) = effective_hostnames(l.spec.hostname.as_deref(), route.hostnames) {
            out.push((i, h));
        }
    }
    if !selected {
        let what = match (&p.section_name, p.port) {
            (Some(s), Some(port)) => format!("no listener named {s} on port {port}"),
            (Some(s), None) => format!("no listener named {s}"),
            (None, Some(port)) => format!("no listener on port {port}"),
            (None, None) => "the parent has no listeners".to_owned(),
        };
        return Err(Problem::new("NoMatchingParent", what));
    }
    if !allowed {
        return Err(Problem::new(
            "NotAllowedByListeners",
            format!(
                "no selected listener allows {} from namespace {route_ns}",
                route.kind
            ),
        ));
    }
    if out.is_empty() {
        return Err(Problem::new(
            "NoMatchingListenerHostname",
            "no hostname of the route intersects the hostnames of the allowed listeners",
        ));
    }
    Ok(())
}
