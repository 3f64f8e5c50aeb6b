//! Loading Kubernetes manifests (YAML, multi-document YAML, JSON, `List`s) into typed objects.
//!
//! Loading is forgiving per document and strict per field: a malformed document becomes a
//! [`LoadError`] naming the source, the document index and the field path, while every other
//! document still loads; fields gw does not know become [`LoadWarning`]s with their path (typos
//! are the commonest mistake in hand-written manifests). Kinds gw does not read (Deployment, Pod,
//! ...) are skipped and counted.
//!
//! ```
//! let yaml = r#"
//! apiVersion: gateway.networking.k8s.io/v1
//! kind: HTTPRoute
//! metadata: {name: web, namespace: apps}
//! spec:
//!   parentRefs: [{name: gw}]
//!   hostnamse: [example.com]
//! ---
//! apiVersion: apps/v1
//! kind: Deployment
//! metadata: {name: web}
//! "#;
//! let loaded = gw_model::load::parse("routes.yaml", yaml);
//! assert_eq!(loaded.objects.len(), 1);
//! assert_eq!(loaded.skipped, 1);
//! // The typo is reported with its path, and the route still loads (with default rules).
//! assert_eq!(loaded.warnings[0].path, "spec.hostnamse");
//! ```

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::resources::{Kind, Object};

mod tracked;

/// Where a document came from: the source name (usually a file path) and the document index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DocumentRef {
    /// Source name, e.g. a file path.
    pub source: String,
    /// Zero-based index of the YAML document within the source.
    pub index: usize,
}

impl fmt::Display for DocumentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (document {})", self.source, self.index)
    }
}

/// A document that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The document is not valid YAML or JSON.
    #[error("{doc}: not valid YAML/JSON: {message}")]
    Syntax {
        /// The document.
        doc: DocumentRef,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The document is not a Kubernetes object (no `apiVersion`/`kind`, or not a mapping).
    #[error("{doc}: not a Kubernetes object: {message}")]
    NotAnObject {
        /// The document.
        doc: DocumentRef,
        /// What is missing.
        message: String,
    },
    /// A kind gw reads, under an apiVersion it does not.
    #[error("{doc}: {kind} {name}: apiVersion `{api_version}` is not supported; use `{expected}`")]
    UnsupportedVersion {
        /// The document.
        doc: DocumentRef,
        /// The kind.
        kind: Kind,
        /// The object's name.
        name: String,
        /// The apiVersion found.
        api_version: String,
        /// The apiVersion to use.
        expected: &'static str,
    },
    /// A field has the wrong type or value.
    #[error("{doc}: {kind} {name}: field `{path}`: {message}")]
    Field {
        /// The document.
        doc: DocumentRef,
        /// The kind.
        kind: Kind,
        /// The object's name (may be empty when metadata itself is broken).
        name: String,
        /// Dotted path of the field, e.g. `spec.rules[0].matches[0].path.type`.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl LoadError {
    /// The document the error is about.
    pub fn document(&self) -> &DocumentRef {
        match self {
            LoadError::Syntax { doc, .. }
            | LoadError::NotAnObject { doc, .. }
            | LoadError::UnsupportedVersion { doc, .. }
            | LoadError::Field { doc, .. } => doc,
        }
    }
}

/// A field gw does not know, probably a typo; the object loads without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadWarning {
    /// The document.
    pub doc: DocumentRef,
    /// The kind of the object.
    pub kind: Kind,
    /// The object's name.
    pub name: String,
    /// Dotted path of the unknown field.
    pub path: String,
}

impl fmt::Display for LoadWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} {}: unknown field `{}` ignored",
            self.doc, self.kind, self.name, self.path
        )
    }
}

/// The result of loading one source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Loaded {
    /// Objects, in document order, each with the document it came from.
    pub objects: Vec<Object>,
    /// Where each object of `objects` came from (same index).
    pub origins: Vec<DocumentRef>,
    /// Unknown fields.
    pub warnings: Vec<LoadWarning>,
    /// Documents that did not load.
    pub errors: Vec<LoadError>,
    /// Objects of kinds gw does not read.
    pub skipped: usize,
}

/// Parses a source holding YAML (one or many documents) or JSON (an object or a `List`).
///
/// Never panics, whatever the input.
pub fn parse(source: &str, text: &str) -> Loaded {
    let mut out = Loaded::default();
    for (index, doc_text) in documents(text).into_iter().enumerate() {
        parse_document_into(source, index, doc_text, &mut out);
    }
    out
}

/// Parses document `index` of `source` (one of [`documents`]), as [`parse`] does: errors and
/// warnings name that document.
///
/// ```
/// use gw_model::load;
///
/// let text = "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: default}\n---\nnot: [closed\n";
/// let docs = load::documents(text);
/// let first = load::parse_document("s.yaml", 0, docs[0]);
/// assert_eq!(first.objects.len(), 1);
/// let second = load::parse_document("s.yaml", 1, docs[1]);
/// assert_eq!(second.errors[0].document().index, 1);
/// ```
pub fn parse_document(source: &str, index: usize, text: &str) -> Loaded {
    let mut out = Loaded::default();
    parse_document_into(source, index, text, &mut out);
    out
}

fn parse_document_into(source: &str, index: usize, doc_text: &str, out: &mut Loaded) {
    let doc = DocumentRef {
        source: source.to_owned(),
        index,
    };
    if is_blank(doc_text) {
        return;
    }
    // YAML 1.2 core booleans: `n`, `no`, `on`, `y` stay strings (a namespace may be `n`).
    let options = serde_saphyr::options! { strict_booleans: true };
    let value: Value = match serde_saphyr::from_str_with_options(doc_text, options) {
        Ok(v) => v,
        Err(e) => {
            out.errors.push(LoadError::Syntax {
                doc,
                message: e.to_string(),
            });
            return;
        }
    };
    load_value(&doc, value, out, 0);
}

/// Loads one already-parsed JSON value (an object or a `List`).
pub fn parse_value(doc: &DocumentRef, value: Value) -> Loaded {
    let mut out = Loaded::default();
    load_value(doc, value, &mut out, 0);
    out
}

/// The documents of a source, as [`parse`] splits it: at `---` lines (content after `--- ` on
/// the same line starts the next document) and `...` end markers. JSON has no such lines and
/// stays whole. Parsed one by one, a broken document does not hide the others. A tool that
/// reloads a changed source can parse again only the documents whose text changed, with
/// [`parse_document`], and get what [`parse`] would give.
///
/// ```
/// use gw_model::load;
///
/// let text = "kind: A\n---\nkind: B\n";
/// assert_eq!(load::documents(text), vec!["kind: A\n", "kind: B\n"]);
/// ```
pub fn documents(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    // Only a line that starts with `---` or `...` can be a marker: those lines are found with
    // a vectorized search instead of walking every line (a file of 500 routes has ~15,000).
    let mut candidates: Vec<usize> = memchr::memmem::find_iter(bytes, "---")
        .chain(memchr::memmem::find_iter(bytes, "..."))
        .filter(|&i| i == 0 || bytes.get(i - 1) == Some(&b'\n'))
        .collect();
    candidates.sort_unstable();
    let mut docs = Vec::new();
    let mut start = 0;
    for offset in candidates {
        let rest = text.get(offset..).unwrap_or_default();
        let line = rest.split_inclusive('\n').next().unwrap_or_default();
        if let Some(next) = marker(line) {
            docs.push(text.get(start..offset).unwrap_or_default());
            start = offset + next;
        }
    }
    docs.push(text.get(start..).unwrap_or_default());
    // The text before a leading `---` is an empty document; keep indices stable anyway.
    docs
}

/// When `line` (with its line break) is a document marker (`---` or `...`, alone or followed
/// by a space or tab), where in it the next document starts.
fn marker(line: &str) -> Option<usize> {
    let trimmed = line.trim_end_matches(['\n', '\r']);
    let is_marker = |m: &str| {
        trimmed == m
            || trimmed
                .strip_prefix(m)
                .is_some_and(|rest| rest.starts_with([' ', '\t']))
    };
    if is_marker("---") && trimmed.len() > 3 {
        // Content after `--- ` on the same line belongs to the next document.
        Some(4)
    } else if is_marker("---") || is_marker("...") {
        Some(line.len())
    } else {
        None
    }
}

fn is_blank(doc: &str) -> bool {
    doc.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t.starts_with('%')
    })
}

const MAX_LIST_DEPTH: usize = 8;

fn load_value(doc: &DocumentRef, value: Value, out: &mut Loaded, depth: usize) {
    let Value::Object(map) = &value else {
        if !value.is_null() {
            out.errors.push(LoadError::NotAnObject {
                doc: doc.clone(),
                message: "the document is not a mapping".into(),
            });
        }
        return;
    };
    let api_version = map
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let Some(kind_name) = map.get("kind").and_then(Value::as_str).map(str::to_owned) else {
        out.errors.push(LoadError::NotAnObject {
            doc: doc.clone(),
            message: "`kind` is missing".into(),
        });
        return;
    };
    if api_version.is_empty() {
        out.errors.push(LoadError::NotAnObject {
            doc: doc.clone(),
            message: format!("`apiVersion` of {kind_name} is missing"),
        });
        return;
    }
    if kind_name == "List" || (kind_name.ends_with("List") && map.contains_key("items")) {
        if depth >= MAX_LIST_DEPTH {
            out.errors.push(LoadError::NotAnObject {
                doc: doc.clone(),
                message: "Lists nested too deeply".into(),
            });
            return;
        }
        if let Value::Object(mut map) = value {
            match map.remove("items") {
                Some(Value::Array(items)) => {
                    for item in items {
                        load_value(doc, item, out, depth + 1);
                    }
                }
                Some(Value::Null) | None => {}
                Some(_) => out.errors.push(LoadError::NotAnObject {
                    doc: doc.clone(),
                    message: format!("`items` of {kind_name} is not a list"),
                }),
            }
        }
        return;
    }
    let Some(kind) = Kind::from_name(&kind_name) else {
        out.skipped += 1;
        return;
    };
    let (group, version) = match api_version.rsplit_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version.as_str()),
    };
    let group_ok = group == kind.group()
        || (kind.group() == crate::resources::GATEWAY_GROUP
            && group == crate::resources::GATEWAY_X_GROUP
            && kind == Kind::ListenerSet);
    if !group_ok {
        // Same kind name in another API group (e.g. a different `Gateway` CRD): not ours.
        out.skipped += 1;
        return;
    }
    let name = map
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !kind.accepts_version(version) {
        out.errors.push(LoadError::UnsupportedVersion {
            doc: doc.clone(),
            kind,
            name,
            api_version,
            expected: kind.api_version(),
        });
        return;
    }
    let result = match kind {
        Kind::GatewayClass => typed(doc, kind, &name, value, out).map(Object::GatewayClass),
        Kind::Gateway => typed(doc, kind, &name, value, out).map(Object::Gateway),
        Kind::ListenerSet => typed(doc, kind, &name, value, out).map(Object::ListenerSet),
        Kind::HttpRoute => typed(doc, kind, &name, value, out).map(Object::HttpRoute),
        Kind::GrpcRoute => typed(doc, kind, &name, value, out).map(Object::GrpcRoute),
        Kind::TlsRoute => typed(doc, kind, &name, value, out).map(Object::TlsRoute),
        Kind::TcpRoute => typed(doc, kind, &name, value, out).map(Object::TcpRoute),
        Kind::UdpRoute => typed(doc, kind, &name, value, out).map(Object::UdpRoute),
        Kind::ReferenceGrant => typed(doc, kind, &name, value, out).map(Object::ReferenceGrant),
        Kind::BackendTlsPolicy => typed(doc, kind, &name, value, out).map(Object::BackendTlsPolicy),
        Kind::XBackend => typed(doc, kind, &name, value, out).map(Object::XBackend),
        Kind::XBackendTrafficPolicy => {
            typed(doc, kind, &name, value, out).map(Object::XBackendTrafficPolicy)
        }
        Kind::Service => typed(doc, kind, &name, value, out).map(Object::Service),
        Kind::EndpointSlice => typed(doc, kind, &name, value, out).map(Object::EndpointSlice),
        Kind::Secret => {
            typed(doc, kind, &name, value, out).map(|mut s: crate::resources::Secret| {
                // The API server merges stringData into data, stringData winning.
                for (k, v) in std::mem::take(&mut s.string_data) {
                    s.data.insert(k, v.into_bytes());
                }
                Object::Secret(s)
            })
        }
        Kind::ConfigMap => typed(doc, kind, &name, value, out).map(Object::ConfigMap),
        Kind::Namespace => typed(doc, kind, &name, value, out).map(Object::Namespace),
        Kind::TrafficPolicy => typed(doc, kind, &name, value, out).map(Object::TrafficPolicy),
    };
    if let Some(mut object) = result {
        if object.metadata().name.is_empty() {
            out.errors.push(LoadError::Field {
                doc: doc.clone(),
                kind,
                name,
                path: "metadata.name".into(),
                message: "a name is required".into(),
            });
            return;
        }
        let meta = object.metadata_mut();
        if kind.is_namespaced() {
            if meta.namespace.as_deref().is_none_or(str::is_empty) {
                // As `kubectl apply` does without `-n`.
                meta.namespace = Some("default".to_owned());
            }
        } else {
            meta.namespace = None;
        }
        out.objects.push(object);
        out.origins.push(doc.clone());
    }
}

/// Top-level and metadata fields every Kubernetes object may carry that gw ignores on purpose.
fn is_expected_extra(path: &str) -> bool {
    const TOP: [&str; 3] = ["apiVersion", "kind", "status"];
    const META: [&str; 12] = [
        "uid",
        "resourceVersion",
        "annotations",
        "managedFields",
        "ownerReferences",
        "finalizers",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generateName",
        "selfLink",
        "clusterName",
        "creationTimestamp",
    ];
    TOP.contains(&path)
        || path
            .strip_prefix("metadata.")
            .is_some_and(|rest| META.iter().any(|m| rest == *m || rest.starts_with(&format!("{m}."))))
        // Core kinds carry many fields gw does not need (Service.spec.sessionAffinity, ...).
        || path.starts_with("immutable")
}

fn typed<T: DeserializeOwned>(
    doc: &DocumentRef,
    kind: Kind,
    name: &str,
    value: Value,
    out: &mut Loaded,
) -> Option<T> {
    let (result, unknown) = tracked::deserialize::<T>(value);
    match result {
        Ok(v) => {
            let core = !matches!(
                kind.group(),
                crate::resources::GATEWAY_GROUP | crate::resources::GATEWAY_X_GROUP
            );
            for path in unknown {
                if is_expected_extra(&path) || (core && !path.starts_with("metadata.")) {
                    // Core kinds have far more fields than gw models; only Gateway API kinds
                    // (whose schema gw covers completely) get unknown-field warnings.
                    continue;
                }
                out.warnings.push(LoadWarning {
                    doc: doc.clone(),
                    kind,
                    name: name.to_owned(),
                    path,
                });
            }
            Some(v)
        }
        Err(e) => {
            out.errors.push(LoadError::Field {
                doc: doc.clone(),
                kind,
                name: name.to_owned(),
                path: e.path,
                message: e.error.to_string(),
            });
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The line-by-line split `documents` replaced (every line looked at): the reference its
    /// search for marker lines must agree with.
    fn by_lines(text: &str) -> Vec<&str> {
        let (mut docs, mut start, mut offset) = (Vec::new(), 0, 0);
        for line in text.split_inclusive('\n') {
            if let Some(next) = marker(line) {
                docs.push(&text[start..offset]);
                start = offset + next;
            }
            offset += line.len();
        }
        docs.push(&text[start..]);
        docs
    }

    proptest::proptest! {
        /// `documents` agrees with the line split on any text made of marker characters.
        #[test]
        fn documents_agree_with_the_line_split(text in "[-. \t\r\na:é]{0,80}") {
            proptest::prop_assert_eq!(documents(&text), by_lines(&text));
        }
    }

    /// `documents` against the line-by-line split it replaced, on markers in every position.
    #[test]
    fn documents_split_on_markers_only() {
        for text in [
            "",
            "---",
            "---\n",
            "kind: A\n---\nkind: B\n",
            "--- kind: A\n---\tkind: B\n...\n",
            "a: ---\nb: x---\n----\n---x\n--- \n",
            "kind: A\r\n---\r\nkind: B\r\n...\r\n",
            "a: 1\n---",
            "......\n...\n.. .\n--- # comment\n",
            "é: ü\n---\nö: 1\n",
        ] {
            assert_eq!(documents(text), by_lines(text), "{text:?}");
        }
        // The marker rules themselves: `--- ` and `---<tab>` start the next document on their
        // own line; `----`, `---x` and markers inside a line are content.
        assert_eq!(
            documents("--- kind: A\n---\tkind: B\n...\n"),
            ["", "kind: A\n", "kind: B\n", ""]
        );
        assert_eq!(
            documents("a: ---\nb: x---\n----\n---x\n--- \n"),
            ["a: ---\nb: x---\n----\n---x\n", "\n"]
        );
        assert_eq!(
            documents("kind: A\r\n---\r\nkind: B\r\n"),
            ["kind: A\r\n", "kind: B\r\n"]
        );
    }

    #[test]
    fn multi_document_yaml_with_errors_keeps_the_good_documents() {
        let text = "\
apiVersion: v1
kind: Namespace
metadata: {name: a}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: a}
spec:
  rules:
  - matches:
    - path: {type: Prefix, value: /}
---
: [broken
---
apiVersion: v1
kind: Namespace
metadata: {name: b}
";
        let loaded = parse("f.yaml", text);
        assert_eq!(loaded.objects.len(), 2, "{:?}", loaded.errors);
        assert_eq!(loaded.errors.len(), 2);
        match &loaded.errors[0] {
            LoadError::Field { doc, path, .. } => {
                assert_eq!(doc.index, 1);
                assert_eq!(path, "spec.rules[0].matches[0].path.type");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(loaded.errors[1].document().index, 2);
        let msg = loaded.errors[0].to_string();
        assert!(
            msg.contains("f.yaml (document 1)") && msg.contains("HTTPRoute r"),
            "{msg}"
        );
    }

    #[test]
    fn json_and_lists_load() {
        let text = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"Namespace","metadata":{"name":"x"}},
            {"apiVersion":"gateway.networking.k8s.io/v1","kind":"GatewayClass",
             "metadata":{"name":"gc"},"spec":{"controllerName":"example.com/gw"}}]}"#;
        let loaded = parse("f.json", text);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        assert_eq!(loaded.objects.len(), 2);
        assert_eq!(loaded.objects[1].kind(), Kind::GatewayClass);
    }

    // Gateway API CRD defaults: HTTPRoute rules default to one PathPrefix "/" match; backendRefs
    // default to kind Service, weight 1; listener allowedRoutes to `from: Same`.
    #[test]
    fn crd_defaults_are_applied() {
        let text = "\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: g}]
  rules:
  - backendRefs: [{name: svc, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: g}
spec:
  gatewayClassName: c
  listeners: [{name: http, port: 80, protocol: HTTP}]
";
        let loaded = parse("f.yaml", text);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let Object::HttpRoute(r) = &loaded.objects[0] else {
            panic!("not a route")
        };
        assert_eq!(r.metadata.namespace.as_deref(), Some("default"));
        let rule = &r.spec.rules[0];
        assert_eq!(rule.matches.len(), 1);
        assert_eq!(
            rule.matches[0].path.type_,
            crate::resources::PathMatchType::PathPrefix
        );
        assert_eq!(rule.matches[0].path.value, "/");
        assert_eq!(rule.backend_refs[0].backend.kind, "Service");
        assert_eq!(rule.backend_refs[0].backend.weight, 1);
        assert_eq!(r.spec.parent_refs[0].kind, "Gateway");
        assert_eq!(r.spec.parent_refs[0].group, "gateway.networking.k8s.io");
        let Object::Gateway(g) = &loaded.objects[1] else {
            panic!("not a gateway")
        };
        assert_eq!(
            g.spec.listeners[0].allowed_routes.namespaces.from,
            crate::resources::FromNamespaces::Same
        );
    }

    #[test]
    fn unknown_fields_warn_with_their_path() {
        let text = "\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: g, uid: abc, resourceVersion: \"7\", annotations: {a: b}, managedFields: []}
spec:
  gatewayClassName: c
  listeners: [{name: http, port: 80, protocol: HTTP, hostnme: x}]
status: {}
";
        let loaded = parse("f.yaml", text);
        assert_eq!(loaded.objects.len(), 1);
        let paths: Vec<_> = loaded.warnings.iter().map(|w| w.path.as_str()).collect();
        assert_eq!(paths, ["spec.listeners[0].hostnme"]);
    }

    #[test]
    fn secrets_decode_base64_and_merge_string_data() {
        let text = "\
apiVersion: v1
kind: Secret
metadata: {name: s, namespace: n}
data: {a: aGVsbG8=}
stringData: {b: world}
---
apiVersion: v1
kind: Secret
metadata: {name: bad}
data: {a: '***'}
";
        let loaded = parse("f.yaml", text);
        assert_eq!(loaded.objects.len(), 1, "{:?}", loaded.errors);
        let Object::Secret(s) = &loaded.objects[0] else {
            panic!("not a secret")
        };
        assert_eq!(s.data["a"], b"hello");
        assert_eq!(s.data["b"], b"world");
        assert_eq!(loaded.errors.len(), 1);
        assert!(loaded.errors[0].to_string().contains("base64"));
    }

    #[test]
    fn unsupported_versions_and_foreign_kinds() {
        let text = "\
apiVersion: gateway.networking.k8s.io/v9
kind: Gateway
metadata: {name: g}
spec: {gatewayClassName: c}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
---
apiVersion: example.com/v1
kind: Gateway
metadata: {name: other}
";
        let loaded = parse("f.yaml", text);
        assert_eq!(loaded.skipped, 2);
        assert!(matches!(
            loaded.errors[0],
            LoadError::UnsupportedVersion { .. }
        ));
    }

    #[test]
    fn garbage_never_panics() {
        for text in [
            "",
            "---\n---\n",
            "[1,2",
            "42",
            "kind: 5",
            "{\"kind\": \"List\", \"apiVersion\": \"v1\", \"items\": 3}",
            "\u{0}\u{1}",
        ] {
            let _ = parse("x", text);
        }
    }
}
