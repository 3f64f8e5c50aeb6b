//! gw-model's status report as the Kubernetes API would show it, read back from the JSON `List`
//! (`StatusReport::to_list`) only, so that the harness does not depend on gw-model's Rust status
//! types. Parsing is lenient: a missing field reads as its default and fails the check that
//! needs it.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use crate::cluster::ObjectId;

/// Status of every object in the `List`, by id.
#[derive(Debug, Default)]
pub struct StatusView {
    items: HashMap<ObjectId, Result<ObjectStatus, String>>,
    /// Problems with the list itself (not a list, items without kind/name).
    pub errors: Vec<String>,
}

impl StatusView {
    /// Reads `{"kind":"List","items":[{kind, metadata:{name, namespace?}, status}]}`.
    pub fn from_list(list: &Value) -> StatusView {
        let mut view = StatusView::default();
        let Some(items) = list.get("items").and_then(Value::as_array) else {
            view.errors
                .push(format!("status list has no `items` array: {list}"));
            return view;
        };
        for item in items {
            let kind = item.get("kind").and_then(Value::as_str);
            let name = item.pointer("/metadata/name").and_then(Value::as_str);
            let (Some(kind), Some(name)) = (kind, name) else {
                view.errors
                    .push(format!("status item without kind/name: {item}"));
                continue;
            };
            let namespace = item
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let status = item.get("status").cloned().unwrap_or(Value::Null);
            let parsed = if status.is_null() {
                Ok(ObjectStatus::default())
            } else {
                serde_json::from_value(status).map_err(|e| format!("malformed status: {e}"))
            };
            view.items
                .insert(ObjectId::new(kind, namespace, name), parsed);
        }
        view
    }

    /// The status of an object: `Ok(None)` when gw reported nothing for it.
    pub fn get(&self, id: &ObjectId) -> Result<Option<&ObjectStatus>, String> {
        match self.items.get(id) {
            None => Ok(None),
            Some(Ok(status)) => Ok(Some(status)),
            Some(Err(e)) => Err(format!("{id}: {e}")),
        }
    }
}

/// The union of the status shapes of every kind gw reports (fields absent in a kind stay empty).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ObjectStatus {
    /// Top-level conditions (GatewayClass, Gateway, ListenerSet).
    pub conditions: Vec<Condition>,
    /// Gateway `status.addresses`.
    pub addresses: Vec<Address>,
    /// Gateway / ListenerSet `status.listeners`.
    pub listeners: Vec<ListenerStatus>,
    /// Gateway `status.attachedListenerSets`.
    pub attached_listener_sets: Option<i64>,
    /// Route `status.parents`.
    pub parents: Vec<RouteParentStatus>,
    /// Policy `status.ancestors`.
    pub ancestors: Vec<PolicyAncestorStatus>,
}

impl ObjectStatus {
    /// Every condition, wherever it sits.
    pub fn all_conditions(&self) -> impl Iterator<Item = &Condition> {
        self.conditions
            .iter()
            .chain(self.listeners.iter().flat_map(|l| &l.conditions))
            .chain(self.parents.iter().flat_map(|p| &p.conditions))
            .chain(self.ancestors.iter().flat_map(|a| &a.conditions))
    }
}

/// A `metav1.Condition`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Condition {
    /// Type.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True` / `False` / `Unknown`.
    pub status: String,
    /// Reason.
    pub reason: String,
    /// observedGeneration (absent reads as none, which never equals a generation).
    pub observed_generation: Option<i64>,
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}/{}", self.type_, self.status, self.reason)?;
        match self.observed_generation {
            Some(g) => write!(f, "@{g}"),
            None => write!(f, "@-"),
        }
    }
}

/// A Gateway `status.addresses` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Address {
    /// Type (the Go helper only takes addresses that have one).
    #[serde(rename = "type")]
    pub type_: Option<String>,
    /// Value.
    pub value: String,
}

/// A listener status (Gateway or ListenerSet).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ListenerStatus {
    /// Listener name.
    pub name: String,
    /// Supported route kinds.
    pub supported_kinds: Vec<GroupKind>,
    /// Attached routes.
    pub attached_routes: i64,
    /// Conditions.
    pub conditions: Vec<Condition>,
}

/// `{group, kind}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GroupKind {
    /// Group (absent means the Gateway API group).
    pub group: Option<String>,
    /// Kind.
    pub kind: String,
}

/// A parentRef / ancestorRef as written in status.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ParentRef {
    /// Group.
    pub group: Option<String>,
    /// Kind.
    pub kind: Option<String>,
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: Option<String>,
    /// Section name.
    pub section_name: Option<String>,
}

impl fmt::Display for ParentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind.as_deref().unwrap_or("<no kind>");
        let group = self.group.as_deref().unwrap_or("<no group>");
        match &self.namespace {
            Some(ns) => write!(f, "{kind}.{group} {ns}/{}", self.name)?,
            None => write!(f, "{kind}.{group} {}", self.name)?,
        }
        if let Some(section) = &self.section_name {
            write!(f, "#{section}")?;
        }
        Ok(())
    }
}

/// A route `status.parents` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RouteParentStatus {
    /// The parent.
    pub parent_ref: ParentRef,
    /// The controller that wrote the entry.
    pub controller_name: String,
    /// Conditions.
    pub conditions: Vec<Condition>,
}

/// A policy `status.ancestors` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PolicyAncestorStatus {
    /// The ancestor (Go compares neither controllerName nor group/kind here).
    pub ancestor_ref: ParentRef,
    /// Conditions.
    pub conditions: Vec<Condition>,
}
