//! The conformance corpus on disk: where it is, and its `test.yaml` files as typed data.
//!
//! The schema is the one of the corpus README ("test.yaml schema"); only the keys the status
//! harness needs are modelled, serde ignores the rest.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

/// The wildcard the corpus uses for "any status" / "any reason" (Go passes an empty string).
pub const ANY: &str = "any";

/// The corpus root, as found on disk.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// The corpus root (holds `README.md`, `base/` and `tests/`).
    pub root: PathBuf,
}

impl Corpus {
    /// The corpus named by `GW_CONFORMANCE_DIR`, or the shared checkout next to the workspace.
    /// `Err` explains why there is none (the caller skips).
    pub fn locate() -> Result<Corpus, String> {
        let root = match std::env::var_os("GW_CONFORMANCE_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/conformance"
            )),
        };
        if root.join("base/manifests.yaml").is_file() && root.join("tests").is_dir() {
            Ok(Corpus { root })
        } else {
            Err(format!(
                "no conformance corpus at {} (set GW_CONFORMANCE_DIR to the folder holding \
                 base/manifests.yaml and tests/)",
                root.display()
            ))
        }
    }

    /// `base/manifests.yaml`.
    pub fn base_manifests(&self) -> PathBuf {
        self.root.join("base/manifests.yaml")
    }

    /// Every test folder, sorted by name.
    pub fn test_dirs(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(self.root.join("tests"))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.join("test.yaml").is_file())
            .collect();
        dirs.sort();
        Ok(dirs)
    }
}

/// One `tests/<Name>/test.yaml`.
#[derive(Debug, Clone, Deserialize)]
pub struct TestSpec {
    /// Go ShortName (= folder name).
    pub name: String,
    /// Features the test needs (the suite skips it unless all are supported).
    #[serde(default)]
    pub features: Vec<String>,
    /// Go `Provisional`: run, but not counted in conformance reports.
    #[serde(default)]
    pub provisional: bool,
    /// Go early returns, as prose naming a `SupportedFeatures.Has(...)` condition.
    #[serde(default)]
    pub preconditions: Vec<String>,
    /// Manifest files, relative to the test folder, applied in order after base.
    pub manifests: Vec<String>,
    /// Gateways (or ListenerSets) whose address the Go code waits for, kept raw.
    #[serde(default)]
    pub gateways: Vec<Value>,
    /// Routes the Go code waits to be Accepted (`{kind, name, namespace}`), kept raw.
    #[serde(default)]
    pub routes: Vec<Value>,
    /// Requests and expectations (`cases:`), kept raw so that one malformed entry is reported
    /// on its own (the live replay parses them, see `live::cases`).
    #[serde(default)]
    pub cases: Vec<Value>,
    /// Status checks, kept raw so that one malformed entry is reported on its own.
    #[serde(default)]
    pub status_checks: Vec<Value>,
    /// Prose checks; the `mutation` ones define the mutation sequence.
    #[serde(default)]
    pub other_checks: Vec<OtherCheck>,
}

impl TestSpec {
    /// Reads and parses `dir/test.yaml`.
    pub fn read(dir: &Path) -> Result<TestSpec, String> {
        let path = dir.join("test.yaml");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let value: Value = serde_saphyr::from_str(&text)
            .map_err(|e| format!("{}: not YAML: {e}", path.display()))?;
        serde_json::from_value(value)
            .map_err(|e| format!("{}: does not match the schema: {e}", path.display()))
    }

    /// The texts of the `mutation` other_checks, in the order the Go test performs them.
    pub fn mutation_sequence(&self) -> Vec<&str> {
        self.other_checks
            .iter()
            .filter(|c| c.check == "mutation")
            .map(|c| c.text.as_str())
            .collect()
    }
}

/// An `other_checks` entry (prose).
#[derive(Debug, Clone, Deserialize)]
pub struct OtherCheck {
    /// Category (`mutation`, `observed_generation`, ...).
    pub check: String,
    /// The prose.
    pub text: String,
}

/// One `status_checks` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct StatusCheck {
    /// Kind of the object checked.
    pub kind: String,
    /// Name of the object checked.
    pub name: String,
    /// Namespace (null for the cluster-scoped GatewayClass).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Mutations (texts of `other_checks`) performed before this check, in order.
    #[serde(default)]
    pub after_mutations: Vec<String>,
    /// What is checked.
    #[serde(flatten)]
    pub check: Check,
}

impl StatusCheck {
    /// `Kind ns/name` (or `Kind name`).
    pub fn target(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

/// The check kinds of the README, with their keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "check")]
pub enum Check {
    /// `status.parents` holds a matching entry for each listed parent.
    RouteMustHaveParents {
        /// Go's namespaceRequired argument.
        #[serde(rename = "namespaceRequired")]
        namespace_required: bool,
        /// The expected parents.
        parents: Vec<ExpectedParent>,
        /// Present on checks made by Gateway...RoutesMustBeAccepted (extra listener/address
        /// requirements on a Gateway parent).
        #[serde(default)]
        implicit: Option<String>,
    },
    /// Some parent named `parent` has `condition`.
    RouteMustHaveCondition {
        /// The parent (name, namespace).
        parent: ObjectRef,
        /// The condition.
        condition: ExpectedCondition,
    },
    /// No parent is accepted.
    RouteMustHaveNoAcceptedParents {},
    /// Top-level `status.conditions` has `condition` (Gateway, ListenerSet, GatewayClass).
    MustHaveCondition {
        /// The condition.
        condition: ExpectedCondition,
    },
    /// `status.listeners` matches exactly (count, names, kinds, attachedRoutes, conditions).
    StatusMustHaveListeners {
        /// The expected listeners.
        listeners: Vec<ExpectedListener>,
    },
    /// Every listener (or only the named ones) has all `conditions`.
    ListenersMustHaveConditions {
        /// Listener names; empty means every listener.
        #[serde(default)]
        listeners: Vec<String>,
        /// The conditions.
        conditions: Vec<ExpectedCondition>,
    },
    /// Every listener of the parent has all `conditions`.
    ParentListenersMustHaveConditions {
        /// The conditions.
        conditions: Vec<ExpectedCondition>,
    },
    /// No listeners in status, or exactly one with attachedRoutes 0.
    GatewayMustHaveZeroRoutes {},
    /// `status.attachedListenerSets` (absent = 0) equals the count.
    GatewayMustHaveAttachedListeners {
        /// The expected count.
        #[serde(rename = "attachedListenerSets")]
        attached_listener_sets: i64,
    },
    /// The ancestor entry of `ancestor` has `condition`.
    PolicyMustHaveCondition {
        /// The ancestor (name, namespace).
        ancestor: ObjectRef,
        /// The condition.
        condition: ExpectedCondition,
    },
    /// Every condition carries observedGeneration == metadata.generation.
    MustHaveLatestObservedGeneration {},
}

impl Check {
    /// The check kind as the corpus spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Check::RouteMustHaveParents { .. } => "RouteMustHaveParents",
            Check::RouteMustHaveCondition { .. } => "RouteMustHaveCondition",
            Check::RouteMustHaveNoAcceptedParents {} => "RouteMustHaveNoAcceptedParents",
            Check::MustHaveCondition { .. } => "MustHaveCondition",
            Check::StatusMustHaveListeners { .. } => "StatusMustHaveListeners",
            Check::ListenersMustHaveConditions { .. } => "ListenersMustHaveConditions",
            Check::ParentListenersMustHaveConditions { .. } => "ParentListenersMustHaveConditions",
            Check::GatewayMustHaveZeroRoutes {} => "GatewayMustHaveZeroRoutes",
            Check::GatewayMustHaveAttachedListeners { .. } => "GatewayMustHaveAttachedListeners",
            Check::PolicyMustHaveCondition { .. } => "PolicyMustHaveCondition",
            Check::MustHaveLatestObservedGeneration {} => "MustHaveLatestObservedGeneration",
        }
    }
}

/// `{name, namespace}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ObjectRef {
    /// Name.
    pub name: String,
    /// Namespace.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// `{type, status, reason}`; status and reason may be [`ANY`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ExpectedCondition {
    /// Condition type.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or [`ANY`].
    pub status: String,
    /// Reason or [`ANY`].
    pub reason: String,
}

impl std::fmt::Display for ExpectedCondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}/{}", self.type_, self.status, self.reason)
    }
}

/// An expected `status.parents` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpectedParent {
    /// The parentRef (sectionName and port are not compared, so not modelled).
    pub parent_ref: ExpectedParentRef,
    /// `${CONTROLLER_NAME}` or a literal controller name.
    pub controller_name: String,
    /// Conditions that must be present.
    pub conditions: Vec<ExpectedCondition>,
}

/// An expected parentRef.
#[derive(Debug, Clone, Deserialize)]
pub struct ExpectedParentRef {
    /// Group.
    #[serde(default)]
    pub group: Option<String>,
    /// Kind.
    #[serde(default)]
    pub kind: Option<String>,
    /// Name.
    pub name: String,
    /// Namespace.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// An expected `status.listeners` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpectedListener {
    /// Listener name.
    pub name: String,
    /// Kinds that must be present (empty: actual must be empty).
    #[serde(default)]
    pub supported_kinds: Vec<ExpectedGroupKind>,
    /// Exact attachedRoutes.
    pub attached_routes: i64,
    /// Conditions that must be present.
    #[serde(default)]
    pub conditions: Vec<ExpectedCondition>,
}

/// `{group, kind}`; a missing group is the Gateway API group.
#[derive(Debug, Clone, Deserialize)]
pub struct ExpectedGroupKind {
    /// Group.
    #[serde(default)]
    pub group: Option<String>,
    /// Kind.
    pub kind: String,
}
