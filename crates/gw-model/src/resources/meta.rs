//! Object metadata and the reference types shared by many Gateway API kinds.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The API group of the Gateway API (`gateway.networking.k8s.io`).
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
/// The API group of the experimental Gateway API kinds (`gateway.networking.x-k8s.io`).
pub const GATEWAY_X_GROUP: &str = "gateway.networking.x-k8s.io";
/// The core API group, spelled as the empty string.
pub const CORE_GROUP: &str = "";

/// The part of Kubernetes `metadata` that gw reads (the loader accepts the other standard
/// fields, such as `uid` and `annotations`, without a warning and does not keep them).
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
    #[serde(default, skip_serializing_if = "StringMap::is_empty")]
    pub labels: StringMap,
    /// `metadata.generation`; objects without one are treated as generation 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// `metadata.creationTimestamp` (RFC 3339). Oldest wins precedence ties between routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
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
    // The Gateway API groups are borrowed, not copied per reference (see `known_name`); a
    // regular comment, as doc comments end up in the TrafficPolicy CRD's schema.
    #[serde(default = "gateway_group", deserialize_with = "known_name_de")]
    pub group: Cow<'static, str>,
    /// Kind; defaults to `Gateway`.
    // `Gateway` and `ListenerSet` are borrowed.
    #[serde(default = "gateway_kind", deserialize_with = "known_name_de")]
    pub kind: Cow<'static, str>,
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
    pub fn matches(&self, labels: &StringMap) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v.as_str()))
            && self.match_expressions.iter().all(|req| {
                let value = labels.get(&req.key);
                match req.operator.as_str() {
                    "In" => value.is_some_and(|v| req.values.iter().any(|x| x == v)),
                    "NotIn" => value.is_none_or(|v| req.values.iter().all(|x| x != v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => false,
                }
            })
    }
}

/// A map of strings (`map[string]string`: labels, annotations), kept as a list sorted by key.
///
/// Objects carry few labels, most often one (an EndpointSlice's
/// `kubernetes.io/service-name`): a `BTreeMap` allocates a whole node of eleven entries for
/// it (544 bytes), the list one entry (48 bytes). Lookups are binary searches; a key given
/// twice keeps its last value, as a map would.
///
/// ```
/// use gw_model::resources::StringMap;
///
/// let mut labels: StringMap = [("tier", "web"), ("app", "shop")].into_iter().collect();
/// assert_eq!(labels.get("app"), Some("shop"));
/// labels.insert("tier".into(), "db".into());
/// assert_eq!(labels.get("tier"), Some("db"));
/// let keys: Vec<&str> = labels.iter().map(|(k, _)| k).collect();
/// assert_eq!(keys, ["app", "tier"]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct StringMap(Vec<(String, String)>);

impl StringMap {
    /// An empty map (no allocation).
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.find(key).ok().map(|i| self.0[i].1.as_str())
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`; returns the value it replaced.
    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.find(key).ok().map(|i| self.0.remove(i).1)
    }

    /// The entries, sorted by key.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for StringMap {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut entries: Vec<(String, String)> = iter
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        // Stable: of equal keys, the last one given is last, and it is the one kept.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.reverse();
        entries.dedup_by(|later, earlier| later.0 == earlier.0);
        entries.reverse();
        entries.shrink_to_fit();
        StringMap(entries)
    }
}

impl From<BTreeMap<String, String>> for StringMap {
    fn from(map: BTreeMap<String, String>) -> Self {
        let mut entries: Vec<(String, String)> = map.into_iter().collect();
        entries.shrink_to_fit();
        StringMap(entries)
    }
}

impl Serialize for StringMap {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de> Deserialize<'de> for StringMap {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = StringMap;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of strings to strings")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<StringMap, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some(entry) = map.next_entry::<String, String>()? {
                    entries.push(entry);
                }
                Ok(entries.into_iter().collect())
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

fn gateway_group() -> Cow<'static, str> {
    Cow::Borrowed(GATEWAY_GROUP)
}
fn gateway_kind() -> Cow<'static, str> {
    Cow::Borrowed("Gateway")
}

/// The group and kind names a [`ParentReference`] usually holds.
const KNOWN_NAMES: [&str; 4] = [GATEWAY_GROUP, GATEWAY_X_GROUP, "Gateway", "ListenerSet"];

/// A string of `KNOWN_NAMES` as a borrowed `&'static str`, any other as an owned one: every
/// route's parentRefs (and their copies in its status) name the same group and kind, which
/// need no memory of their own.
pub(crate) fn known_name(s: String) -> Cow<'static, str> {
    match KNOWN_NAMES.iter().find(|k| **k == s) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(s),
    }
}

/// Deserializes a string with [`known_name`].
fn known_name_de<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Cow<'static, str>, D::Error> {
    String::deserialize(d).map(known_name)
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

    #[test]
    fn parent_ref_group_and_kind_are_borrowed_when_known() {
        let parse = |json: &str| serde_json::from_str::<ParentReference>(json).unwrap();
        let is_borrowed = |c: &Cow<'static, str>| matches!(c, Cow::Borrowed(_));
        // Defaults (ParentReference API spec: "group ... defaults to gateway.networking.k8s.io",
        // "kind ... defaults to Gateway").
        let p = parse(r#"{"name": "edge"}"#);
        assert_eq!((&*p.group, &*p.kind), (GATEWAY_GROUP, "Gateway"));
        assert!(is_borrowed(&p.group) && is_borrowed(&p.kind));
        // Spelled out: the same static strings.
        let p =
            parse(r#"{"group": "gateway.networking.k8s.io", "kind": "ListenerSet", "name": "a"}"#);
        assert_eq!(&*p.kind, "ListenerSet");
        assert!(is_borrowed(&p.group) && is_borrowed(&p.kind));
        // Anything else is kept as written.
        let p = parse(r#"{"group": "example.com", "kind": "Mesh", "name": "m"}"#);
        assert_eq!((&*p.group, &*p.kind), ("example.com", "Mesh"));
        assert!(!is_borrowed(&p.group) && !is_borrowed(&p.kind));
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!({"group": "example.com", "kind": "Mesh", "name": "m"})
        );
    }

    fn labels<T: FromIterator<(String, String)>>(pairs: &[(&str, &str)]) -> T {
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

    // metav1.ObjectMeta: labels are a `map[string]string`. Read and written as
    // a map; a key given twice keeps its last value, as a map built from the document would.
    #[test]
    fn string_maps_read_and_write_as_maps() {
        let meta: ObjectMeta = serde_json::from_value(serde_json::json!({
            "name": "web",
            "labels": {"tier": "web", "app": "shop"},
        }))
        .expect("metadata");
        assert_eq!(meta.labels.get("app"), Some("shop"));
        assert_eq!(meta.labels.get("tier"), Some("web"));
        assert_eq!(meta.labels.get("missing"), None);
        let json = serde_json::to_value(&meta).expect("json");
        assert_eq!(
            json["labels"],
            serde_json::json!({"app": "shop", "tier": "web"})
        );
        let unlabelled = serde_json::to_value(ObjectMeta::default()).expect("json");
        assert!(
            unlabelled.get("labels").is_none(),
            "empty maps are left out"
        );

        let twice: StringMap = [("k", "first"), ("a", "x"), ("k", "last")]
            .into_iter()
            .collect();
        assert_eq!(twice.len(), 2);
        assert_eq!(twice.get("k"), Some("last"));
        assert!(serde_json::from_value::<StringMap>(serde_json::json!({"k": 1})).is_err());
    }
}
