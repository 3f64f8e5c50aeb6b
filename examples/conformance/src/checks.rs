//! Evaluation of `status_checks` against a status view, by the matching rules of the corpus
//! README (which restate conformance/utils/kubernetes/helpers.go):
//!
//! - a condition matches on type, status (unless `any`) and reason (unless `any`); extra
//!   conditions are allowed;
//! - the object's conditions must all carry `observedGeneration == metadata.generation` (the Go
//!   helpers skip objects whose conditions are stale), where the generation is the harness's own
//!   (1 unless a mutation bumped it);
//! - checks about an object whose status gw must own (Gateway, ListenerSet, GatewayClass) also
//!   require that gw reported it with at least one condition, so that an empty report cannot pass
//!   vacuously (the Go helpers would be waiting for the controller's first write there).

use crate::cluster::{CONTROLLER_NAME, Cluster, ObjectId};
use crate::corpus::{
    ANY, Check, ExpectedCondition, ExpectedGroupKind, ExpectedListener, ExpectedParent, ObjectRef,
    StatusCheck,
};
use crate::status::{Condition, GroupKind, ListenerStatus, ObjectStatus, ParentRef, StatusView};

/// The Gateway API group, the default of group fields.
const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
/// The listener conditions Gateway...RoutesMustBeAccepted requires (any reason).
const READY_LISTENER: [(&str, &str); 3] = [
    ("ResolvedRefs", "True"),
    ("Accepted", "True"),
    ("Programmed", "True"),
];

/// What a check looks at: the compiled status and the objects it was compiled from.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// gw-model's status.
    pub status: &'a StatusView,
    /// The cluster the status was compiled from (generations, spec listener names).
    pub cluster: &'a Cluster,
}

/// Evaluates one check: `Err` carries the diff (expected vs actual).
pub fn evaluate(check: &StatusCheck, ctx: Ctx<'_>) -> Result<(), String> {
    if !ctx.status.errors.is_empty() {
        return Err(format!(
            "malformed status list: {}",
            ctx.status.errors.join("; ")
        ));
    }
    let id = ObjectId::new(
        &check.kind,
        check.namespace.as_deref().unwrap_or_default(),
        &check.name,
    );
    let generation = ctx.cluster.generation(&id);
    let status = ctx.status.get(&id)?;
    let empty = ObjectStatus::default();
    let actual = status.unwrap_or(&empty);
    fresh(actual, generation)?;
    match &check.check {
        Check::RouteMustHaveParents {
            namespace_required,
            parents,
            implicit,
        } => {
            route_must_have_parents(actual, parents, *namespace_required)?;
            if implicit.is_some() {
                implicit_parent_requirements(ctx, parents)?;
            }
            Ok(())
        }
        Check::RouteMustHaveCondition { parent, condition } => {
            route_must_have_condition(actual, parent, condition)
        }
        Check::RouteMustHaveNoAcceptedParents {} => no_accepted_parents(actual),
        Check::MustHaveCondition { condition } => {
            reported(status)?;
            has_condition(&actual.conditions, condition)
        }
        Check::StatusMustHaveListeners { listeners } => {
            reported(status)?;
            listeners_match(listeners, &actual.listeners)
        }
        Check::ListenersMustHaveConditions {
            listeners,
            conditions,
        } => {
            reported(status)?;
            let names = if listeners.is_empty() {
                ctx.cluster.listener_names(&id)
            } else {
                listeners.clone()
            };
            listeners_have_conditions(&actual.listeners, &names, conditions)
        }
        Check::ParentListenersMustHaveConditions { conditions } => {
            reported(status)?;
            let names = ctx.cluster.listener_names(&id);
            listeners_have_conditions(&actual.listeners, &names, conditions)
        }
        Check::GatewayMustHaveZeroRoutes {} => {
            reported(status)?;
            zero_routes(&actual.listeners)
        }
        Check::GatewayMustHaveAttachedListeners {
            attached_listener_sets,
        } => {
            reported(status)?;
            let got = actual.attached_listener_sets.unwrap_or(0);
            if got == *attached_listener_sets {
                Ok(())
            } else {
                Err(format!(
                    "expected attachedListenerSets {attached_listener_sets}, got {got}"
                ))
            }
        }
        Check::PolicyMustHaveCondition {
            ancestor,
            condition,
        } => policy_must_have_condition(actual, ancestor, condition),
        Check::MustHaveLatestObservedGeneration {} => {
            if actual.all_conditions().next().is_none() {
                Err("no status conditions reported".to_owned())
            } else {
                Ok(())
            }
        }
    }
}

/// Every condition of the object carries the object's generation.
pub fn fresh(status: &ObjectStatus, generation: i64) -> Result<(), String> {
    let stale: Vec<String> = status
        .all_conditions()
        .filter(|c| c.observed_generation != Some(generation))
        .map(ToString::to_string)
        .collect();
    if stale.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "stale conditions (metadata.generation is {generation}): {}",
            stale.join(", ")
        ))
    }
}

fn reported(status: Option<&ObjectStatus>) -> Result<(), String> {
    match status {
        Some(s) if !s.conditions.is_empty() => Ok(()),
        Some(_) => Err("reported without status.conditions".to_owned()),
        None => Err("not in gw's status report".to_owned()),
    }
}

/// Go `findConditionInList`: type equal, status and reason equal unless `any`.
pub fn condition_matches(expected: &ExpectedCondition, actual: &Condition) -> bool {
    actual.type_ == expected.type_
        && (expected.status == ANY || actual.status == expected.status)
        && (expected.reason == ANY || actual.reason == expected.reason)
}

/// One expected condition is among `actual`.
pub fn has_condition(actual: &[Condition], expected: &ExpectedCondition) -> Result<(), String> {
    if actual.iter().any(|c| condition_matches(expected, c)) {
        Ok(())
    } else {
        Err(format!(
            "expected condition {expected}, actual [{}]",
            list(actual)
        ))
    }
}

/// Go `conditionsMatch`: every expected condition is among `actual` (extras allowed).
pub fn conditions_match(
    expected: &[ExpectedCondition],
    actual: &[Condition],
) -> Result<(), String> {
    let missing: Vec<String> = expected
        .iter()
        .filter(|e| !actual.iter().any(|a| condition_matches(e, a)))
        .map(ToString::to_string)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "missing [{}], actual [{}]",
            missing.join(", "),
            list(actual)
        ))
    }
}

fn list<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Go `parentsForRouteMatch`: for each expected parent some actual entry matches.
pub fn route_must_have_parents(
    actual: &ObjectStatus,
    expected: &[ExpectedParent],
    namespace_required: bool,
) -> Result<(), String> {
    let mut problems = Vec::new();
    for parent in expected {
        if actual.parents.is_empty() {
            problems.push(format!(
                "expected {}, but status.parents is empty",
                describe_parent(parent)
            ));
            continue;
        }
        let results: Vec<Result<(), String>> = actual
            .parents
            .iter()
            .map(|a| {
                parent_matches(
                    parent,
                    &a.controller_name,
                    &a.parent_ref,
                    namespace_required,
                )
                .and_then(|()| conditions_match(&parent.conditions, &a.conditions))
                .map_err(|e| format!("{}: {e}", a.parent_ref))
            })
            .collect();
        if results.iter().any(Result::is_ok) {
            continue;
        }
        let why: Vec<String> = results.into_iter().filter_map(Result::err).collect();
        problems.push(format!(
            "no status.parents entry matches {}: {}",
            describe_parent(parent),
            why.join("; ")
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

fn describe_parent(parent: &ExpectedParent) -> String {
    let r = &parent.parent_ref;
    format!(
        "parent {}.{} {}/{} ({}) with [{}]",
        r.kind.as_deref().unwrap_or("<no kind>"),
        r.group.as_deref().unwrap_or("<no group>"),
        r.namespace.as_deref().unwrap_or("-"),
        r.name,
        controller(&parent.controller_name),
        list(&parent.conditions)
    )
}

/// `${CONTROLLER_NAME}` substituted.
fn controller(expected: &str) -> String {
    expected.replace("${CONTROLLER_NAME}", CONTROLLER_NAME)
}

/// Identity part of Go `parentsForRouteMatch` (group and kind compared as optional values).
pub fn parent_matches(
    expected: &ExpectedParent,
    actual_controller: &str,
    actual: &ParentRef,
    namespace_required: bool,
) -> Result<(), String> {
    let e = &expected.parent_ref;
    let want_controller = controller(&expected.controller_name);
    if actual_controller != want_controller {
        return Err(format!(
            "controllerName {actual_controller:?} != {want_controller:?}"
        ));
    }
    if actual.group != e.group {
        return Err(format!("group {:?} != {:?}", actual.group, e.group));
    }
    if actual.kind != e.kind {
        return Err(format!("kind {:?} != {:?}", actual.kind, e.kind));
    }
    if actual.name != e.name {
        return Err(format!("name {:?} != {:?}", actual.name, e.name));
    }
    if actual.namespace != e.namespace && (namespace_required || actual.namespace.is_some()) {
        return Err(format!(
            "namespace {:?} != {:?}",
            actual.namespace, e.namespace
        ));
    }
    Ok(())
}

/// The extra requirements of Gateway...RoutesMustBeAccepted on a Gateway parent: an address in
/// status (with a type) and every listener ResolvedRefs/Accepted/Programmed=True. ListenerSet
/// parents come with their own ParentListenersMustHaveConditions check in the corpus.
fn implicit_parent_requirements(ctx: Ctx<'_>, parents: &[ExpectedParent]) -> Result<(), String> {
    let mut gateways: Vec<ObjectId> = parents
        .iter()
        .map(|p| &p.parent_ref)
        .filter(|r| r.kind.as_deref().unwrap_or("Gateway") == "Gateway")
        .map(|r| {
            ObjectId::new(
                "Gateway",
                r.namespace.as_deref().unwrap_or_default(),
                &r.name,
            )
        })
        .collect();
    gateways.dedup();
    for id in gateways {
        let prefix = |e: String| format!("parent {id}: {e}");
        let status = ctx.status.get(&id).map_err(prefix)?;
        let empty = ObjectStatus::default();
        let gateway = status.unwrap_or(&empty);
        fresh(gateway, ctx.cluster.generation(&id)).map_err(prefix)?;
        if !gateway.addresses.iter().any(|a| a.type_.is_some()) {
            let got: Vec<&str> = gateway.addresses.iter().map(|a| a.value.as_str()).collect();
            return Err(prefix(format!(
                "no status.addresses entry with a type, got [{}]",
                got.join(", ")
            )));
        }
        let ready: Vec<ExpectedCondition> = READY_LISTENER
            .iter()
            .map(|(type_, status)| ExpectedCondition {
                type_: (*type_).to_owned(),
                status: (*status).to_owned(),
                reason: ANY.to_owned(),
            })
            .collect();
        let names = ctx.cluster.listener_names(&id);
        listeners_have_conditions(&gateway.listeners, &names, &ready).map_err(prefix)?;
    }
    Ok(())
}

/// Go `HTTPRouteMustHaveCondition` & co: a parent named like `parent` (namespace unset or equal)
/// has the condition.
fn route_must_have_condition(
    actual: &ObjectStatus,
    parent: &ObjectRef,
    condition: &ExpectedCondition,
) -> Result<(), String> {
    let candidates: Vec<_> = actual
        .parents
        .iter()
        .filter(|p| refers_to(&p.parent_ref, parent))
        .collect();
    if candidates
        .iter()
        .any(|p| p.conditions.iter().any(|c| condition_matches(condition, c)))
    {
        return Ok(());
    }
    if candidates.is_empty() {
        return Err(format!(
            "no status.parents entry for {}; parents: [{}]",
            describe_ref(parent),
            list(
                &actual
                    .parents
                    .iter()
                    .map(|p| &p.parent_ref)
                    .collect::<Vec<_>>()
            )
        ));
    }
    let seen: Vec<String> = candidates
        .iter()
        .map(|p| format!("{}: [{}]", p.parent_ref, list(&p.conditions)))
        .collect();
    Err(format!("expected {condition}; {}", seen.join("; ")))
}

fn refers_to(actual: &ParentRef, expected: &ObjectRef) -> bool {
    actual.name == expected.name
        && actual
            .namespace
            .as_ref()
            .is_none_or(|ns| Some(ns) == expected.namespace.as_ref())
}

fn describe_ref(r: &ObjectRef) -> String {
    match &r.namespace {
        Some(ns) => format!("{ns}/{}", r.name),
        None => r.name.clone(),
    }
}

/// README: no parents, or parents none of which is accepted (each must say Accepted=False).
fn no_accepted_parents(actual: &ObjectStatus) -> Result<(), String> {
    let accepted_false = ExpectedCondition {
        type_: "Accepted".to_owned(),
        status: "False".to_owned(),
        reason: ANY.to_owned(),
    };
    let bad: Vec<String> = actual
        .parents
        .iter()
        .filter(|p| {
            !p.conditions
                .iter()
                .any(|c| condition_matches(&accepted_false, c))
        })
        .map(|p| format!("{}: [{}]", p.parent_ref, list(&p.conditions)))
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "expected no parent with Accepted other than False, got {}",
            bad.join("; ")
        ))
    }
}

/// Go `gatewayListenersMatch`: same count, each expected listener present by name with the
/// supported kinds, exact attachedRoutes and conditions.
pub fn listeners_match(
    expected: &[ExpectedListener],
    actual: &[ListenerStatus],
) -> Result<(), String> {
    if expected.len() != actual.len() {
        let names: Vec<&str> = actual.iter().map(|l| l.name.as_str()).collect();
        return Err(format!(
            "expected {} listeners, got {} [{}]",
            expected.len(),
            actual.len(),
            names.join(", ")
        ));
    }
    let mut problems = Vec::new();
    for e in expected {
        let Some(a) = actual.iter().find(|a| a.name == e.name) else {
            problems.push(format!("listener {}: missing from status", e.name));
            continue;
        };
        if let Err(err) = listener_matches(e, a) {
            problems.push(format!("listener {}: {err}", e.name));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

fn listener_matches(expected: &ExpectedListener, actual: &ListenerStatus) -> Result<(), String> {
    if expected.supported_kinds.is_empty() && !actual.supported_kinds.is_empty() {
        return Err(format!(
            "expected no supportedKinds, got [{}]",
            kinds(&actual.supported_kinds)
        ));
    }
    for kind in &expected.supported_kinds {
        if !actual.supported_kinds.iter().any(|a| same_kind(kind, a)) {
            return Err(format!(
                "supportedKinds lacks {}, got [{}]",
                kind.kind,
                kinds(&actual.supported_kinds)
            ));
        }
    }
    if actual.attached_routes != expected.attached_routes {
        return Err(format!(
            "attachedRoutes {} != expected {}",
            actual.attached_routes, expected.attached_routes
        ));
    }
    conditions_match(&expected.conditions, &actual.conditions)
}

fn same_kind(expected: &ExpectedGroupKind, actual: &GroupKind) -> bool {
    let group = |g: &Option<String>| g.clone().unwrap_or_else(|| GATEWAY_GROUP.to_owned());
    expected.kind == actual.kind && group(&expected.group) == group(&actual.group)
}

fn kinds(kinds: &[GroupKind]) -> String {
    kinds
        .iter()
        .map(|k| format!("{}/{}", k.group.as_deref().unwrap_or(GATEWAY_GROUP), k.kind))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every named listener is in status with all the conditions.
pub fn listeners_have_conditions(
    actual: &[ListenerStatus],
    names: &[String],
    conditions: &[ExpectedCondition],
) -> Result<(), String> {
    if names.is_empty() {
        return Err("no listener to check (none named, none in spec)".to_owned());
    }
    let mut problems = Vec::new();
    for name in names {
        match actual.iter().find(|l| &l.name == name) {
            None => problems.push(format!("listener {name}: missing from status")),
            Some(l) => {
                if let Err(e) = conditions_match(conditions, &l.conditions) {
                    problems.push(format!("listener {name}: {e}"));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

fn zero_routes(listeners: &[ListenerStatus]) -> Result<(), String> {
    match listeners {
        [] => Ok(()),
        [only] if only.attached_routes == 0 => Ok(()),
        _ => Err(format!(
            "expected no listeners or one with 0 attachedRoutes, got [{}]",
            listeners
                .iter()
                .map(|l| format!("{}: {}", l.name, l.attached_routes))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Go `BackendTLSPolicyMustHaveCondition`: the ancestor entry of `ancestor` has the condition.
fn policy_must_have_condition(
    actual: &ObjectStatus,
    ancestor: &ObjectRef,
    condition: &ExpectedCondition,
) -> Result<(), String> {
    let candidates: Vec<_> = actual
        .ancestors
        .iter()
        .filter(|a| refers_to(&a.ancestor_ref, ancestor))
        .collect();
    if candidates
        .iter()
        .any(|a| a.conditions.iter().any(|c| condition_matches(condition, c)))
    {
        return Ok(());
    }
    if candidates.is_empty() {
        return Err(format!(
            "no status.ancestors entry for {}; ancestors: [{}]",
            describe_ref(ancestor),
            list(
                &actual
                    .ancestors
                    .iter()
                    .map(|a| &a.ancestor_ref)
                    .collect::<Vec<_>>()
            )
        ));
    }
    let seen: Vec<String> = candidates
        .iter()
        .map(|a| format!("{}: [{}]", a.ancestor_ref, list(&a.conditions)))
        .collect();
    Err(format!("expected {condition}; {}", seen.join("; ")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn expected(type_: &str, status: &str, reason: &str) -> ExpectedCondition {
        ExpectedCondition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
        }
    }

    fn actual(type_: &str, status: &str, reason: &str, generation: i64) -> Condition {
        Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            observed_generation: Some(generation),
        }
    }

    fn status(value: serde_json::Value) -> ObjectStatus {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn any_reason_and_any_status_are_wildcards() {
        let accepted = actual("Accepted", "False", "NotAllowedByListeners", 1);
        assert!(condition_matches(
            &expected("Accepted", "False", ANY),
            &accepted
        ));
        assert!(condition_matches(
            &expected("Accepted", ANY, ANY),
            &accepted
        ));
        assert!(!condition_matches(
            &expected("Accepted", "True", ANY),
            &accepted
        ));
        assert!(!condition_matches(
            &expected("Accepted", "False", "Accepted"),
            &accepted
        ));
        assert!(!condition_matches(
            &expected("ResolvedRefs", ANY, ANY),
            &accepted
        ));
    }

    #[test]
    fn a_missing_condition_fails_and_extra_conditions_are_allowed() {
        let conditions = [
            actual("Accepted", "True", "Accepted", 1),
            actual("Programmed", "True", "Programmed", 1),
        ];
        assert!(has_condition(&conditions, &expected("ResolvedRefs", "True", ANY)).is_err());
        assert!(conditions_match(&[expected("Programmed", "True", ANY)], &conditions).is_ok());
        let err = conditions_match(
            &[
                expected("Accepted", "True", ANY),
                expected("Conflicted", "True", ANY),
            ],
            &conditions,
        )
        .unwrap_err();
        assert!(err.contains("missing [Conflicted=True/any]"), "{err}");
    }

    #[test]
    fn conditions_must_carry_the_generation() {
        let s = status(json!({"conditions": [
            {"type": "Accepted", "status": "True", "reason": "Accepted", "observedGeneration": 2},
        ]}));
        assert!(fresh(&s, 2).is_ok());
        assert!(fresh(&s, 3).is_err());
        let missing = status(
            json!({"parents": [{"parentRef": {"name": "gw"}, "conditions": [
                {"type": "Accepted", "status": "True", "reason": "Accepted"},
            ]}]}),
        );
        assert!(fresh(&missing, 1).is_err());
    }

    fn gateway_parent(namespace: Option<&str>) -> ExpectedParent {
        ExpectedParent {
            parent_ref: crate::corpus::ExpectedParentRef {
                group: Some(GATEWAY_GROUP.to_owned()),
                kind: Some("Gateway".to_owned()),
                name: "gw".to_owned(),
                namespace: namespace.map(str::to_owned),
            },
            controller_name: "${CONTROLLER_NAME}".to_owned(),
            conditions: vec![expected("Accepted", "True", "Accepted")],
        }
    }

    fn parent_ref(namespace: Option<&str>) -> ParentRef {
        ParentRef {
            group: Some(GATEWAY_GROUP.to_owned()),
            kind: Some("Gateway".to_owned()),
            name: "gw".to_owned(),
            namespace: namespace.map(str::to_owned),
            section_name: None,
        }
    }

    #[test]
    fn parent_namespace_is_compared_when_required_or_set() {
        let e = gateway_parent(Some("infra"));
        let ours = CONTROLLER_NAME;
        assert!(parent_matches(&e, ours, &parent_ref(Some("infra")), true).is_ok());
        assert!(parent_matches(&e, ours, &parent_ref(None), false).is_ok());
        assert!(parent_matches(&e, ours, &parent_ref(None), true).is_err());
        assert!(parent_matches(&e, ours, &parent_ref(Some("other")), false).is_err());
        assert!(parent_matches(&e, "someone/else", &parent_ref(Some("infra")), false).is_err());
    }

    #[test]
    fn route_parents_need_a_matching_entry_for_each_expected_parent() {
        let route = status(json!({"parents": [{
            "parentRef": {"group": GATEWAY_GROUP, "kind": "Gateway", "name": "gw", "namespace": "infra", "sectionName": "http"},
            "controllerName": CONTROLLER_NAME,
            "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "observedGeneration": 1}],
        }]}));
        let e = gateway_parent(Some("infra"));
        assert!(route_must_have_parents(&route, std::slice::from_ref(&e), false).is_ok());
        let mut other = gateway_parent(Some("infra"));
        other.parent_ref.name = "gw2".to_owned();
        assert!(route_must_have_parents(&route, &[e, other], false).is_err());
        assert!(
            route_must_have_parents(&ObjectStatus::default(), &[gateway_parent(None)], false)
                .is_err()
        );
    }

    fn listener(name: &str, kinds: serde_json::Value, attached: i64) -> ListenerStatus {
        serde_json::from_value(json!({
            "name": name, "supportedKinds": kinds, "attachedRoutes": attached,
            "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "observedGeneration": 1}],
        }))
        .unwrap()
    }

    fn expected_listener(name: &str, kinds: &[&str], attached: i64) -> ExpectedListener {
        ExpectedListener {
            name: name.to_owned(),
            supported_kinds: kinds
                .iter()
                .map(|k| ExpectedGroupKind {
                    group: None,
                    kind: (*k).to_owned(),
                })
                .collect(),
            attached_routes: attached,
            conditions: vec![expected("Accepted", "True", ANY)],
        }
    }

    #[test]
    fn listeners_match_count_kinds_and_attached_routes() {
        let http = listener(
            "http",
            json!([{"group": GATEWAY_GROUP, "kind": "HTTPRoute"}, {"kind": "GRPCRoute"}]),
            1,
        );
        let got = [http.clone()];
        assert!(listeners_match(&[expected_listener("http", &["HTTPRoute"], 1)], &got).is_ok());
        assert!(listeners_match(&[expected_listener("http", &["GRPCRoute"], 1)], &got).is_ok());
        assert!(listeners_match(&[expected_listener("http", &["HTTPRoute"], 2)], &got).is_err());
        assert!(listeners_match(&[expected_listener("http", &["TLSRoute"], 1)], &got).is_err());
        assert!(listeners_match(&[expected_listener("http", &[], 1)], &got).is_err());
        assert!(listeners_match(&[], &got).is_err());
        let two = [http, listener("https", json!([]), 0)];
        assert!(listeners_match(&[expected_listener("http", &["HTTPRoute"], 1)], &two).is_err());
    }

    #[test]
    fn named_listeners_must_be_present() {
        let got = [listener("http", json!([]), 0)];
        let accepted = [expected("Accepted", "True", ANY)];
        assert!(listeners_have_conditions(&got, &["http".to_owned()], &accepted).is_ok());
        assert!(listeners_have_conditions(&got, &["https".to_owned()], &accepted).is_err());
        assert!(listeners_have_conditions(&got, &[], &accepted).is_err());
    }

    #[test]
    fn zero_routes_allows_no_listeners_or_one_idle_listener() {
        assert!(zero_routes(&[]).is_ok());
        assert!(zero_routes(&[listener("a", json!([]), 0)]).is_ok());
        assert!(zero_routes(&[listener("a", json!([]), 1)]).is_err());
        assert!(zero_routes(&[listener("a", json!([]), 0), listener("b", json!([]), 0)]).is_err());
    }

    #[test]
    fn no_accepted_parents_rejects_an_accepted_parent() {
        let parent = |status: &str| {
            json!({"parentRef": {"name": "gw"}, "conditions": [
                {"type": "Accepted", "status": status, "reason": "x", "observedGeneration": 1},
            ]})
        };
        assert!(no_accepted_parents(&ObjectStatus::default()).is_ok());
        assert!(no_accepted_parents(&status(json!({"parents": [parent("False")]}))).is_ok());
        assert!(no_accepted_parents(&status(json!({"parents": [parent("True")]}))).is_err());
    }
}
