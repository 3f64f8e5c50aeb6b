//! Status: the conditions gw computes for every object it manages, in Kubernetes shape.
//!
//! [`StatusReport`] holds one entry per object whose status gw owns. It serializes to exactly the
//! `status` stanza Kubernetes expects, and [`StatusReport::to_list`] renders a Kubernetes `List`
//! (apiVersion, kind, metadata, status) as `gw-gateway`'s `/status` endpoint serves it.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::resources::{Kind, ObjectKey, ParentReference, RouteGroupKind};

/// `True`, `False` or `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known.
    Unknown,
}

/// A Kubernetes `metav1.Condition`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `Accepted`.
    #[serde(rename = "type")]
    pub type_: Cow<'static, str>,
    /// Status.
    pub status: ConditionStatus,
    /// CamelCase reason the spec names, e.g. `NotAllowedByListeners`.
    pub reason: Cow<'static, str>,
    /// Human-readable detail.
    pub message: Cow<'static, str>,
    /// The `metadata.generation` this condition was computed for.
    pub observed_generation: i64,
    /// When the status last changed; the model has no clock, so callers that keep history fill
    /// it in (see [`StatusReport::stamp_transition_times`]).
    // One stamping gives every condition it dates the same shared string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Arc<str>>,
}

impl Condition {
    /// A condition with status True.
    pub fn ok(
        type_: impl Into<Cow<'static, str>>,
        reason: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
        generation: i64,
    ) -> Self {
        Self::new(type_, ConditionStatus::True, reason, message, generation)
    }

    /// A condition with status False.
    pub fn fail(
        type_: impl Into<Cow<'static, str>>,
        reason: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
        generation: i64,
    ) -> Self {
        Self::new(type_, ConditionStatus::False, reason, message, generation)
    }

    /// A condition. Type, reason and message are most often fixed strings: those are held
    /// without a copy (a status report at 5,000 routes holds over ten thousand conditions).
    pub fn new(
        type_: impl Into<Cow<'static, str>>,
        status: ConditionStatus,
        reason: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
        generation: i64,
    ) -> Self {
        Condition {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message: message.into(),
            observed_generation: generation,
            last_transition_time: None,
        }
    }

    /// Whether this is `type_` with status True.
    pub fn is_true(&self, type_: &str) -> bool {
        self.type_ == type_ && self.status == ConditionStatus::True
    }
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// `GatewayClass.status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClassStatus {
    /// Conditions (`Accepted`, `SupportedVersion`).
    pub conditions: Vec<Condition>,
    /// Features this implementation supports (GEP-2162).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supported_features: Vec<SupportedFeature>,
}

/// A supported feature entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupportedFeature {
    /// Feature name.
    pub name: String,
}

/// A `status.addresses` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayStatusAddress {
    /// `IPAddress` or `Hostname`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The address.
    pub value: String,
}

/// Status of one listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    /// Listener name.
    pub name: String,
    /// Route kinds this listener accepts.
    pub supported_kinds: Vec<RouteGroupKind>,
    /// Number of routes attached.
    pub attached_routes: i32,
    /// Conditions (`Accepted`, `Programmed`, `ResolvedRefs`, `Conflicted`).
    pub conditions: Vec<Condition>,
}

/// `Gateway.status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    /// Addresses the Gateway is reachable at.
    #[serde(default)]
    pub addresses: Vec<GatewayStatusAddress>,
    /// Conditions (`Accepted`, `Programmed`, and `ResolvedRefs` when Gateway-level refs exist).
    pub conditions: Vec<Condition>,
    /// Per-listener status, in spec order.
    #[serde(default)]
    pub listeners: Vec<ListenerStatus>,
    /// Number of ListenerSets attached (GEP-1713).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attached_listener_sets: Option<i32>,
}

/// `ListenerSet.status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerSetStatus {
    /// Conditions (`Accepted`, `Programmed`).
    pub conditions: Vec<Condition>,
    /// Per-listener status.
    #[serde(default)]
    pub listeners: Vec<ListenerStatus>,
}

/// One `status.parents` entry of a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteParentStatus {
    /// The parentRef as written in the spec (defaults applied).
    pub parent_ref: ParentReference,
    /// The controller that wrote this entry (one string shared by every entry of a compile).
    pub controller_name: std::sync::Arc<str>,
    /// Conditions (`Accepted`, `ResolvedRefs`, ...).
    pub conditions: Vec<Condition>,
}

/// Route status (`status.parents`), shared by every route kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteStatus {
    /// One entry per parentRef that names a Gateway of ours.
    pub parents: Vec<RouteParentStatus>,
}

/// A policy ancestor status (GEP-713 `PolicyAncestorStatus`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PolicyAncestorStatus {
    /// The ancestor (usually a Gateway).
    pub ancestor_ref: ParentReference,
    /// The controller that wrote this entry.
    pub controller_name: String,
    /// Conditions (`Accepted`, `ResolvedRefs`).
    pub conditions: Vec<Condition>,
}

/// Policy status (`status.ancestors`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct PolicyStatus {
    /// One entry per ancestor.
    pub ancestors: Vec<PolicyAncestorStatus>,
}

/// The status of one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum ObjectStatus {
    /// GatewayClass.
    GatewayClass(GatewayClassStatus),
    /// Gateway.
    Gateway(GatewayStatus),
    /// ListenerSet.
    ListenerSet(ListenerSetStatus),
    /// Any route kind.
    Route(RouteStatus),
    /// A policy (BackendTLSPolicy).
    Policy(PolicyStatus),
    /// A backend (XBackend): `status.parents`, shaped like a route's.
    Backend(RouteStatus),
}

impl ObjectStatus {
    /// Every condition in this status, wherever it sits.
    pub fn all_conditions(&self) -> Vec<&Condition> {
        match self {
            ObjectStatus::GatewayClass(s) => s.conditions.iter().collect(),
            ObjectStatus::Gateway(s) => s
                .conditions
                .iter()
                .chain(s.listeners.iter().flat_map(|l| &l.conditions))
                .collect(),
            ObjectStatus::ListenerSet(s) => s
                .conditions
                .iter()
                .chain(s.listeners.iter().flat_map(|l| &l.conditions))
                .collect(),
            ObjectStatus::Route(s) | ObjectStatus::Backend(s) => {
                s.parents.iter().flat_map(|p| &p.conditions).collect()
            }
            ObjectStatus::Policy(s) => s.ancestors.iter().flat_map(|p| &p.conditions).collect(),
        }
    }

    /// Stamps `lastTransitionTime` on every condition (see
    /// [`StatusReport::stamp_transition_times`]): each list of conditions against its own list
    /// in `old` (the same parent, ancestor or listener), none of them when `old` is another kind
    /// of status.
    fn stamp(&mut self, old: Option<&ObjectStatus>, now: &Arc<str>) {
        use ObjectStatus as S;
        match (self, old) {
            (S::GatewayClass(s), old) => {
                let old = match old {
                    Some(S::GatewayClass(o)) => &o.conditions[..],
                    _ => &[],
                };
                stamp_conditions(&mut s.conditions, old, now);
            }
            (S::Gateway(s), old) => {
                let (conditions, listeners) = match old {
                    Some(S::Gateway(o)) => (&o.conditions[..], &o.listeners[..]),
                    _ => (&[][..], &[][..]),
                };
                stamp_conditions(&mut s.conditions, conditions, now);
                stamp_lists(&mut s.listeners, listeners, now);
            }
            (S::ListenerSet(s), old) => {
                let (conditions, listeners) = match old {
                    Some(S::ListenerSet(o)) => (&o.conditions[..], &o.listeners[..]),
                    _ => (&[][..], &[][..]),
                };
                stamp_conditions(&mut s.conditions, conditions, now);
                stamp_lists(&mut s.listeners, listeners, now);
            }
            (S::Route(s), old) | (S::Backend(s), old) => {
                let parents = match old {
                    Some(S::Route(o) | S::Backend(o)) => &o.parents[..],
                    _ => &[],
                };
                stamp_lists(&mut s.parents, parents, now);
            }
            (S::Policy(s), old) => {
                let ancestors = match old {
                    Some(S::Policy(o)) => &o.ancestors[..],
                    _ => &[],
                };
                stamp_lists(&mut s.ancestors, ancestors, now);
            }
        }
    }
}

/// A status that holds its own list of conditions within an object's status: a listener, a
/// route's parent, a policy's ancestor.
trait ConditionList {
    /// Whether `other` (in another report) is the same listener, parent or ancestor.
    fn same(&self, other: &Self) -> bool;
    fn conditions(&self) -> &[Condition];
    fn conditions_mut(&mut self) -> &mut [Condition];
}

impl ConditionList for ListenerStatus {
    fn same(&self, other: &Self) -> bool {
        self.name == other.name
    }
    fn conditions(&self) -> &[Condition] {
        &self.conditions
    }
    fn conditions_mut(&mut self) -> &mut [Condition] {
        &mut self.conditions
    }
}

impl ConditionList for RouteParentStatus {
    fn same(&self, other: &Self) -> bool {
        self.parent_ref == other.parent_ref && self.controller_name == other.controller_name
    }
    fn conditions(&self) -> &[Condition] {
        &self.conditions
    }
    fn conditions_mut(&mut self) -> &mut [Condition] {
        &mut self.conditions
    }
}

impl ConditionList for PolicyAncestorStatus {
    fn same(&self, other: &Self) -> bool {
        self.ancestor_ref == other.ancestor_ref && self.controller_name == other.controller_name
    }
    fn conditions(&self) -> &[Condition] {
        &self.conditions
    }
    fn conditions_mut(&mut self) -> &mut [Condition] {
        &mut self.conditions
    }
}

/// Stamps each item's conditions against those of the item [`paired`] with it in `old`.
fn stamp_lists<T: ConditionList>(new: &mut [T], old: &[T], now: &Arc<str>) {
    for i in 0..new.len() {
        let before = paired(new, old, i, T::same).map_or(&[][..], T::conditions);
        if let Some(item) = new.get_mut(i) {
            stamp_conditions(item.conditions_mut(), before, now);
        }
    }
}

/// The item of `old` that stands for `new[i]`: the one `same` pairs it with (looked for first
/// at index `i`: lists keep their order from one report to the next), else the one at index
/// `i` when no item of `new` pairs with that one (a parentRef or listener edited in place).
fn paired<'o, T>(
    new: &[T],
    old: &'o [T],
    i: usize,
    same: impl Fn(&T, &T) -> bool,
) -> Option<&'o T> {
    let item = new.get(i)?;
    old.get(i)
        .filter(|o| same(o, item))
        .or_else(|| old.iter().find(|o| same(o, item)))
        .or_else(|| old.get(i).filter(|o| !new.iter().any(|n| same(o, n))))
}

/// A condition keeps the time of the condition of its type in `old` when its status is the
/// same there; it gets `now` otherwise.
fn stamp_conditions(conditions: &mut [Condition], old: &[Condition], now: &Arc<str>) {
    for c in conditions {
        let kept = old
            .iter()
            .find(|o| o.type_ == c.type_)
            .filter(|o| o.status == c.status)
            .and_then(|o| o.last_transition_time.as_ref());
        c.last_transition_time = Some(Arc::clone(kept.unwrap_or(now)));
    }
}

/// The status of one object, with its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEntry {
    /// Kind.
    pub kind: Kind,
    /// Namespace and name.
    pub key: ObjectKey,
    /// `metadata.generation` (1 when absent).
    pub generation: i64,
    /// The status.
    pub status: ObjectStatus,
}

/// Status of every object gw manages, sorted by kind, namespace and name (keep it sorted when
/// building one by hand: lookups rely on the order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusReport {
    /// The entries.
    pub entries: Vec<StatusEntry>,
}

impl StatusReport {
    /// The status of one object (binary search: entries are sorted by kind, then key).
    pub fn get(&self, kind: Kind, key: &ObjectKey) -> Option<&ObjectStatus> {
        self.entries
            .binary_search_by(|e| (e.kind, &e.key).cmp(&(kind, key)))
            .ok()
            .and_then(|i| self.entries.get(i))
            .map(|e| &e.status)
    }

    /// The Gateway status of `key`.
    pub fn gateway(&self, key: &ObjectKey) -> Option<&GatewayStatus> {
        match self.get(Kind::Gateway, key) {
            Some(ObjectStatus::Gateway(s)) => Some(s),
            _ => None,
        }
    }

    /// The route status of a route of `kind`.
    pub fn route(&self, kind: Kind, key: &ObjectKey) -> Option<&RouteStatus> {
        match self.get(kind, key) {
            Some(ObjectStatus::Route(s)) => Some(s),
            _ => None,
        }
    }

    /// Fills `lastTransitionTime` of every condition: kept from `previous` when the condition's
    /// status is unchanged there, `now` otherwise. A condition is compared with the one of its
    /// type in the same list of the previous report: the same parent of a route, ancestor of a
    /// policy or listener of a Gateway.
    pub fn stamp_transition_times(&mut self, previous: Option<&StatusReport>, now: &str) {
        let now: Arc<str> = Arc::from(now);
        // Both reports are sorted by kind and key: one walk pairs each entry with its
        // previous one (at 5,000 routes, a reload stamps over ten thousand conditions).
        let mut old_entries = previous
            .map_or(&[][..], |p| &p.entries[..])
            .iter()
            .peekable();
        for entry in &mut self.entries {
            let here = (entry.kind, &entry.key);
            // One key comparison per entry looked at.
            let old = loop {
                match old_entries.peek().map(|o| (o.kind, &o.key).cmp(&here)) {
                    Some(std::cmp::Ordering::Less) => drop(old_entries.next()),
                    Some(std::cmp::Ordering::Equal) => break old_entries.next(),
                    _ => break None,
                }
            };
            entry.status.stamp(old.map(|o| &o.status), &now);
        }
    }

    /// A Kubernetes `List` of every object with its status, as `gw-gateway` serves on `/status`.
    /// This builds a JSON tree of the whole report (several times the report's own size); to
    /// write the list out, serialize [`list_view`](Self::list_view) instead.
    pub fn to_list(&self) -> Value {
        let items: Vec<Value> = self.entries.iter().map(StatusEntry::to_object).collect();
        json!({"apiVersion": "v1", "kind": "List", "items": items})
    }

    /// The same `List` as [`to_list`](Self::to_list), serialized straight from the report
    /// without an intermediate JSON tree.
    ///
    /// ```
    /// use gw_model::status::StatusReport;
    ///
    /// let report = StatusReport::default();
    /// let text = serde_json::to_string(&report.list_view()).unwrap();
    /// assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap(), report.to_list());
    /// ```
    pub fn list_view(&self) -> ListView<'_> {
        ListView {
            api_version: "v1",
            kind: "List",
            items: ItemsView(&self.entries),
        }
    }
}

/// A [`StatusReport`] as a Kubernetes `List`, for serialization (see
/// [`StatusReport::list_view`]).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ListView<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    items: ItemsView<'a>,
}

#[derive(Debug, Clone, Copy)]
struct ItemsView<'a>(&'a [StatusEntry]);

impl Serialize for ItemsView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(StatusEntry::object_view))
    }
}

/// A [`StatusEntry`] as the Kubernetes object it stands for, for serialization (see
/// [`StatusEntry::object_view`]).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ObjectView<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    metadata: MetadataView<'a>,
    status: &'a ObjectStatus,
}

#[derive(Debug, Clone, Copy, Serialize)]
struct MetadataView<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    namespace: &'a str,
    generation: i64,
}

impl StatusEntry {
    /// The object as Kubernetes shows it: apiVersion, kind, metadata and status.
    pub fn to_object(&self) -> Value {
        serde_json::to_value(self.object_view()).unwrap_or(Value::Null)
    }

    /// The object of [`to_object`](Self::to_object), serialized straight from the entry.
    pub fn object_view(&self) -> ObjectView<'_> {
        ObjectView {
            api_version: self.kind.api_version(),
            kind: self.kind.as_str(),
            metadata: MetadataView {
                name: &self.key.name,
                namespace: &self.key.namespace,
                generation: self.generation,
            },
            status: &self.status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, accepted: bool) -> StatusEntry {
        let c = if accepted {
            Condition::ok("Accepted", "Accepted", "ok", 1)
        } else {
            Condition::fail("Accepted", "InvalidParameters", "bad", 1)
        };
        StatusEntry {
            kind: Kind::GatewayClass,
            key: ObjectKey::new("", name),
            generation: 1,
            status: ObjectStatus::GatewayClass(GatewayClassStatus {
                conditions: vec![
                    c,
                    Condition::ok("SupportedVersion", "SupportedVersion", "", 1),
                ],
                supported_features: Vec::new(),
            }),
        }
    }

    fn condition_times(report: &StatusReport, kind: Kind, key: &ObjectKey) -> Vec<String> {
        let status = report.get(kind, key).expect("entry");
        status
            .all_conditions()
            .iter()
            .map(|c| c.last_transition_time.as_deref().unwrap_or("-").to_owned())
            .collect()
    }

    fn times(report: &StatusReport, name: &str) -> Vec<String> {
        condition_times(report, Kind::GatewayClass, &ObjectKey::new("", name))
    }

    // metav1.Condition: "lastTransitionTime is the last time the condition transitioned from
    // one status to another." A condition whose status did not change keeps its time; one that
    // changed, or is new, gets the current time. Entries that appear or disappear between two
    // reports do not disturb the pairing of the others.
    #[test]
    fn transition_times_change_only_with_the_status() {
        let mut first = StatusReport {
            entries: vec![class("a", true), class("c", true), class("d", true)],
        };
        first.stamp_transition_times(None, "T1");
        assert_eq!(times(&first, "a"), ["T1", "T1"]);

        // "b" is new, "c" is gone, "d" flips Accepted to False.
        let mut second = StatusReport {
            entries: vec![class("a", true), class("b", true), class("d", false)],
        };
        second.stamp_transition_times(Some(&first), "T2");
        assert_eq!(times(&second, "a"), ["T1", "T1"]);
        assert_eq!(times(&second, "b"), ["T2", "T2"]);
        assert_eq!(times(&second, "d"), ["T2", "T1"]);

        let mut third = StatusReport {
            entries: vec![class("d", false)],
        };
        third.stamp_transition_times(Some(&second), "T3");
        assert_eq!(times(&third, "d"), ["T2", "T1"]);
    }

    fn route(parents: &[(&str, bool)]) -> StatusEntry {
        StatusEntry {
            kind: Kind::HttpRoute,
            key: ObjectKey::new("default", "web"),
            generation: 1,
            status: ObjectStatus::Route(RouteStatus {
                parents: parents
                    .iter()
                    .map(|&(gateway, accepted)| RouteParentStatus {
                        parent_ref: ParentReference {
                            group: "gateway.networking.k8s.io".into(),
                            kind: "Gateway".into(),
                            namespace: None,
                            name: gateway.to_owned(),
                            section_name: None,
                            port: None,
                        },
                        controller_name: Arc::from("gw.dev/gateway"),
                        conditions: vec![if accepted {
                            Condition::ok("Accepted", "Accepted", "ok", 1)
                        } else {
                            Condition::fail("Accepted", "NotAllowedByListeners", "no", 1)
                        }],
                    })
                    .collect(),
            }),
        }
    }

    fn parent_times(report: &StatusReport) -> Vec<String> {
        condition_times(report, Kind::HttpRoute, &ObjectKey::new("default", "web"))
    }

    // HTTPRoute status: "parents is a list of parent resources ... and the status of the route
    // with respect to each parent": each parent's conditions transition on their own. A
    // parent whose Accepted turns False gets the current time even when another parent's
    // Accepted was already False.
    #[test]
    fn transition_times_are_per_parent() {
        let mut first = StatusReport {
            entries: vec![route(&[("a", false), ("b", true)])],
        };
        first.stamp_transition_times(None, "T1");
        let mut second = StatusReport {
            entries: vec![route(&[("a", false), ("b", false)])],
        };
        second.stamp_transition_times(Some(&first), "T2");
        assert_eq!(parent_times(&second), ["T1", "T2"]);

        // Parents reordered: each still pairs with its own.
        let mut third = StatusReport {
            entries: vec![route(&[("b", false), ("a", true)])],
        };
        third.stamp_transition_times(Some(&second), "T3");
        assert_eq!(parent_times(&third), ["T2", "T3"]);

        // A parentRef edited in place ("a" now names "c") is the same parent: its unchanged
        // condition keeps its time; a parent added at the end is new.
        let mut fourth = StatusReport {
            entries: vec![route(&[("b", false), ("c", true), ("d", true)])],
        };
        fourth.stamp_transition_times(Some(&third), "T4");
        assert_eq!(parent_times(&fourth), ["T2", "T3", "T4"]);
    }
}
