//! An emulated API server: the manifests applied so far, prepared the way the Go suite's Applier
//! prepares them, and compiled with gw-model into a status view.
//!
//! Objects are kept as raw manifests (JSON values), like the Go suite's `unstructured` objects, so
//! that placeholders and mutations are plain JSON edits independent of gw-model's Rust types. Every
//! compile loads them through `gw_model::load` again.

use std::collections::BTreeMap;

use gw_model::load::{self, DocumentRef};
use gw_model::resources::{Kind, ObjectKey, Resources};
use gw_model::status::GatewayStatusAddress;
use gw_model::{CompileOptions, compile};
use serde_json::{Value, json};

use crate::status::StatusView;

/// The controller name the harness runs gw-model as (Go `suite.ControllerName`).
pub const CONTROLLER_NAME: &str = "gw.dev/gateway";
/// The GatewayClass under test (Go `--gateway-class`); the harness creates it.
pub const GATEWAY_CLASS: &str = "gateway-conformance";
/// The network the harness "can bind" (`CompileOptions::usable_networks`); dynamic addresses
/// are `127.0.10.N` from it.
pub const POOL: &str = "127.0.10.0/24";
/// `--usable-network-addresses`: inside [`POOL`], never handed out dynamically.
pub const USABLE_ADDRESS: &str = "127.0.10.250";
/// `--unusable-network-addresses`: a documentation-range address outside [`POOL`].
pub const UNUSABLE_ADDRESS: &str = "192.0.2.1";

/// `creationTimestamp` of base and programmatic objects.
pub const BASE_CREATED: &str = "2025-01-01T00:00:00Z";
/// `creationTimestamp` of a test's manifests (applied after base).
pub const TEST_CREATED: &str = "2025-01-01T00:01:00Z";
/// `creationTimestamp` of objects created by mid-test mutations.
pub const MUTATION_CREATED: &str = "2025-01-01T00:02:00Z";

/// Kind, namespace (`""` when cluster scoped) and name of an object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId {
    /// Kind, e.g. `HTTPRoute`.
    pub kind: String,
    /// Namespace, or `""`.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectId {
    /// An id.
    pub fn new(kind: &str, namespace: &str, name: &str) -> ObjectId {
        ObjectId {
            kind: kind.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    /// The id of a manifest; namespaced gw kinds without a namespace land in `default`, as the
    /// API server (and gw's loader) would put them.
    pub fn of(manifest: &Value) -> Option<ObjectId> {
        let kind = manifest.get("kind")?.as_str()?;
        let meta = manifest.get("metadata")?;
        let name = meta.get("name")?.as_str()?;
        let namespace = match meta.get("namespace").and_then(Value::as_str) {
            Some(ns) => ns,
            None if Kind::from_name(kind).is_some_and(Kind::is_namespaced) => "default",
            None => "",
        };
        Some(ObjectId::new(kind, namespace, name))
    }
}

impl std::fmt::Display for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

#[derive(Debug, Clone)]
struct Stored {
    doc: DocumentRef,
    manifest: Value,
}

/// The objects of the emulated cluster.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    objects: BTreeMap<ObjectId, Stored>,
    /// Passed to gw-model as `CompileOptions::supported_features`.
    supported_features: Vec<String>,
}

/// The result of compiling a cluster.
#[derive(Debug)]
pub struct Compiled {
    /// Status of every object gw reported.
    pub status: StatusView,
    /// Errors of `gw_model::load` on the stored manifests (harness-built objects included).
    pub load_errors: Vec<String>,
}

impl Cluster {
    /// The cluster every test starts from: the conformance GatewayClass, `base/manifests.yaml` and
    /// the programmatic objects, compiled with the claimed features.
    pub fn base(
        supported_features: Vec<String>,
        base_source: &str,
        base_manifests: Vec<Value>,
        programmatic: &[Value],
    ) -> Self {
        let mut cluster = Cluster {
            objects: BTreeMap::new(),
            supported_features,
        };
        let class = json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": GATEWAY_CLASS},
            "spec": {"controllerName": CONTROLLER_NAME},
        });
        cluster.apply("harness:gatewayclass", 0, class, BASE_CREATED);
        for (index, manifest) in base_manifests.into_iter().enumerate() {
            cluster.apply(base_source, index, manifest, BASE_CREATED);
        }
        for (index, manifest) in programmatic.iter().enumerate() {
            cluster.apply(
                "harness:programmatic",
                index,
                manifest.clone(),
                BASE_CREATED,
            );
        }
        cluster
    }

    /// Creates or replaces an object after preparing it as the Go Applier does (GatewayClass
    /// controllerName, Gateway class name and static-address placeholders) and stamping a
    /// creationTimestamp if it has none.
    pub fn apply(&mut self, source: &str, index: usize, mut manifest: Value, created: &str) {
        prepare(&mut manifest);
        if let Some(meta) = manifest.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.entry("creationTimestamp")
                .or_insert_with(|| json!(created));
        }
        // A document that is not an object (e.g. a List) is kept under a synthetic id so that
        // the loader still reports or expands it.
        let id = ObjectId::of(&manifest)
            .unwrap_or_else(|| ObjectId::new("", source, &index.to_string()));
        self.insert(id, source, index, manifest);
    }

    fn insert(&mut self, id: ObjectId, source: &str, index: usize, manifest: Value) {
        let doc = DocumentRef {
            source: source.to_owned(),
            index,
        };
        self.objects.insert(id, Stored { doc, manifest });
    }

    /// The manifest of an object.
    pub fn get(&self, id: &ObjectId) -> Option<&Value> {
        self.objects.get(id).map(|s| &s.manifest)
    }

    /// The manifest of an object, for in-place patches.
    pub fn get_mut(&mut self, id: &ObjectId) -> Option<&mut Value> {
        self.objects.get_mut(id).map(|s| &mut s.manifest)
    }

    /// Every object with its (prepared) manifest, in id order.
    pub fn objects(&self) -> impl Iterator<Item = (&ObjectId, &Value)> {
        self.objects.iter().map(|(id, s)| (id, &s.manifest))
    }

    /// Deletes an object; whether it existed.
    pub fn remove(&mut self, id: &ObjectId) -> bool {
        self.objects.remove(id).is_some()
    }

    /// `metadata.generation` of an object (1 when absent or unknown, as in gw-model).
    pub fn generation(&self, id: &ObjectId) -> i64 {
        self.get(id).map_or(1, generation_of)
    }

    /// Names of `spec.listeners` of a Gateway or ListenerSet (empty if unknown).
    pub fn listener_names(&self, id: &ObjectId) -> Vec<String> {
        self.get(id)
            .and_then(|m| m.pointer("/spec/listeners"))
            .and_then(Value::as_array)
            .map(|ls| {
                ls.iter()
                    .filter_map(|l| l.get("name").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Loads every manifest with `gw_model::load` and compiles.
    pub fn compile(&self) -> Compiled {
        let mut resources = Resources::new();
        let mut load_errors = Vec::new();
        for stored in self.objects.values() {
            let loaded = load::parse_value(&stored.doc, stored.manifest.clone());
            load_errors.extend(loaded.errors.iter().map(ToString::to_string));
            resources.extend(loaded.objects);
        }
        let mut options = CompileOptions::new(CONTROLLER_NAME);
        options.assigned_addresses = self.assigned_addresses();
        options.usable_networks = POOL.parse().into_iter().collect();
        options.supported_features = self.supported_features.clone();
        let compiled = compile(&resources, &options);
        Compiled {
            status: StatusView::from_list(&compiled.status.to_list()),
            load_errors,
        }
    }

    /// The addresses the harness hands gw-model: each Gateway without a static address (no
    /// `spec.addresses` entry with a value) gets the next `127.0.10.N` from [`POOL`], in
    /// namespace/name order.
    fn assigned_addresses(&self) -> BTreeMap<ObjectKey, Vec<GatewayStatusAddress>> {
        self.objects
            .iter()
            .filter(|(id, stored)| id.kind == "Gateway" && !has_static_address(&stored.manifest))
            .enumerate()
            .map(|(i, (id, _))| {
                let address = GatewayStatusAddress {
                    type_: "IPAddress".to_owned(),
                    value: format!("127.0.10.{}", i + 1),
                };
                (ObjectKey::new(&id.namespace, &id.name), vec![address])
            })
            .collect()
    }
}

/// `metadata.generation` of a manifest (1 when absent).
pub fn generation_of(manifest: &Value) -> i64 {
    manifest
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

/// Whether `spec.addresses` has an entry with a value (a static address request).
fn has_static_address(gateway: &Value) -> bool {
    gateway
        .pointer("/spec/addresses")
        .and_then(Value::as_array)
        .is_some_and(|addrs| {
            addrs
                .iter()
                .filter_map(|a| a.get("value").and_then(Value::as_str))
                .any(|v| !v.is_empty())
        })
}

/// README step 2: every GatewayClass gets our controllerName, every Gateway our class, and the
/// static-address placeholders become the harness's usable/unusable addresses.
fn prepare(manifest: &mut Value) {
    let kind = manifest
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let Some(spec) = manifest.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    match kind.as_str() {
        "GatewayClass" => {
            spec.insert("controllerName".to_owned(), json!(CONTROLLER_NAME));
        }
        "Gateway" => {
            spec.insert("gatewayClassName".to_owned(), json!(GATEWAY_CLASS));
            if let Some(addresses) = spec.get_mut("addresses").and_then(Value::as_array_mut) {
                addresses.iter_mut().for_each(replace_address_placeholder);
            }
        }
        _ => {}
    }
}

/// The Go Applier writes the suite's addresses with their type (IPAddress when unset).
fn replace_address_placeholder(address: &mut Value) {
    let replacement = match address.get("value").and_then(Value::as_str) {
        Some("PLACEHOLDER_USABLE_ADDRS") => USABLE_ADDRESS,
        Some("PLACEHOLDER_UNUSABLE_ADDRS") => UNUSABLE_ADDRESS,
        _ => return,
    };
    *address = json!({"type": "IPAddress", "value": replacement});
}

/// Splits a YAML manifest file into documents (empty documents dropped).
pub fn parse_manifests(text: &str) -> Result<Vec<Value>, String> {
    // Same YAML options as gw_model::load (YAML 1.2 core booleans).
    let options = serde_saphyr::options! { strict_booleans: true };
    serde_saphyr::from_multiple_with_options::<Value>(text, options)
        .map(|docs| docs.into_iter().filter(|d| !d.is_null()).collect())
        .map_err(|e| e.to_string())
}
