//! Object metadata and the reference types shared by many Gateway API kinds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The API group of the Gateway API (`gateway.networking.k8s.io`).
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
/// The API group of the experimental Gateway API kinds (`gateway.networking.x-k8s.io`).
pub const GATEWAY_X_GROUP: &str = "gateway.networking.x-k8s.io";
/// The core API group, spelled as the empty string.
pub const CORE_GROUP: &str = "";

/// The part of Kubernetes `metadata` that gw reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// `metadata.name`.
    #[serde(default)]
    pub name: String,
    /// `metadata.namespace`; the loader fills in `default` for namespaced kinds that omit it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `metadata.labels`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// `metadata.generation`; objects without one are treated as generation 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// `metadata.creationTimestamp` (RFC 3339). Oldest wins precedence ties between routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    /// `metadata.uid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// `metadata.resourceVersion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
}

impl ObjectMeta {
    /// The namespace, or `""` for cluster-scoped objects.
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("")
    }

    /// The generation that status conditions must report as `observedGeneration`.
    ///
    /// An object without `metadata.generation` is generation 1 (DESIGN.md, reference binary contract).
    pub fn generation(&self) -> i64 {
        self.generation.unwrap_or(1)
    }
}

/// A reference from a route (or ListenerSet) to its parent (Gateway API `ParentReference`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    /// API group; defaults to `gateway.networking.k8s.io`.
    #[serde(default = "default_gateway_group")]
    pub group: String,
    /// Kind; defaults to `Gateway`.
    #[serde(default = "default_gateway_kind")]
    pub kind: String,
    /// Namespace; defaults to the namespace of the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the parent.
    pub name: String,
    /// Listener name to attach to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    /// Listener port to attach to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

/// A reference to a Secret or another object holding TLS material (`SecretObjectReference`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretObjectReference {
    /// API group; defaults to the core group `""`.
    #[serde(default)]
    pub group: String,
    /// Kind; defaults to `Secret`.
    #[serde(default = "default_secret_kind")]
    pub kind: String,
    /// Name of the referent.
    pub name: String,
    /// Namespace; defaults to the namespace of the referring object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A reference to an object in the same namespace (`LocalObjectReference`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectReference {
    /// API group (`""` for core).
    #[serde(default)]
    pub group: String,
    /// Kind of the referent.
    pub kind: String,
    /// Name of the referent.
    pub name: String,
}

/// A reference to an object, possibly in another namespace (`ObjectReference` in Gateway API).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    /// API group (`""` for core).
    #[serde(default)]
    pub group: String,
    /// Kind of the referent.
    pub kind: String,
    /// Name of the referent.
    pub name: String,
    /// Namespace; defaults to the namespace of the referring object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A reference to a policy target (`LocalPolicyTargetReferenceWithSectionName`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PolicyTargetReference {
    /// API group of the target.
    #[serde(default)]
    pub group: String,
    /// Kind of the target.
    pub kind: String,
    /// Name of the target.
    pub name: String,
    /// Section (port name, listener name, ...) of the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

/// A reference to a backend (`BackendObjectReference` plus `weight`), as used by every route kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendRef {
    /// API group; defaults to the core group `""`.
    #[serde(default)]
    pub group: String,
    /// Kind; defaults to `Service`.
    #[serde(default = "default_service_kind")]
    pub kind: String,
    /// Name of the backend.
    pub name: String,
    /// Namespace; defaults to the namespace of the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Destination port; required when the referent is a Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// Relative weight; defaults to 1.
    #[serde(default = "default_weight")]
    pub weight: i32,
}

/// A label selector (`metav1.LabelSelector`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels that must all be present with these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One set-based requirement of a [`LabelSelector`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    /// Label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// Values for `In` / `NotIn`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

impl LabelSelector {
    /// Whether `labels` satisfy this selector, as Kubernetes evaluates it.
    ///
    /// An unknown operator matches nothing, so a typo never widens a selector.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|req| {
                let value = labels.get(&req.key);
                match req.operator.as_str() {
                    "In" => value.is_some_and(|v| req.values.contains(v)),
                    "NotIn" => value.is_none_or(|v| !req.values.contains(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => false,
                }
            })
    }
}

pub(crate) fn default_gateway_group() -> String {
    GATEWAY_GROUP.to_owned()
}
pub(crate) fn default_gateway_kind() -> String {
    "Gateway".to_owned()
}
pub(crate) fn default_secret_kind() -> String {
    "Secret".to_owned()
}
pub(crate) fn default_service_kind() -> String {
    "Service".to_owned()
}
pub(crate) fn default_weight() -> i32 {
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    // Kubernetes label selectors: "matchLabels ... and matchExpressions are ANDed".
    #[test]
    fn label_selector_ands_labels_and_expressions() {
        let sel = LabelSelector {
            match_labels: labels(&[("env", "prod")]),
            match_expressions: vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: vec!["web".into(), "api".into()],
            }],
        };
        assert!(sel.matches(&labels(&[("env", "prod"), ("tier", "web")])));
        assert!(!sel.matches(&labels(&[("env", "prod"), ("tier", "db")])));
        assert!(!sel.matches(&labels(&[("tier", "web")])));
    }

    #[test]
    fn label_selector_operators() {
        let req = |op: &str| LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![LabelSelectorRequirement {
                key: "k".into(),
                operator: op.into(),
                values: vec!["v".into()],
            }],
        };
        let with = labels(&[("k", "v")]);
        let other = labels(&[("k", "w")]);
        let without = labels(&[]);
        assert!(req("NotIn").matches(&other) && req("NotIn").matches(&without));
        assert!(!req("NotIn").matches(&with));
        assert!(req("Exists").matches(&other) && !req("Exists").matches(&without));
        assert!(req("DoesNotExist").matches(&without) && !req("DoesNotExist").matches(&with));
        assert!(!req("Bogus").matches(&with));
        // "An empty label selector matches all objects."
        assert!(LabelSelector::default().matches(&without));
    }

    #[test]
    fn missing_generation_is_one() {
        assert_eq!(ObjectMeta::default().generation(), 1);
    }
}
