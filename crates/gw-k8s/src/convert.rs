//! Watched objects into gw-model's types: one code path for every kind.
//!
//! An object from the API server (a `gateway-api` or `k8s-openapi` type, or a
//! [`DynamicObject`](kube::api::DynamicObject) for kinds without Rust types) is serialized to
//! JSON exactly as the API server sent it and handed to [`gw_model::load::parse_value`], the
//! loader `gw-gateway --config` uses for files. So CRD defaults, validation and unknown-field
//! warnings are the same whether a manifest comes from a file or from the cluster, and a kind
//! gw-model learns later is read without a change here. The conversion is tested over every
//! manifest of the Gateway API conformance corpus (`tests/convert_corpus.rs`): each object
//! converts to the same gw-model value as loading its YAML directly.
//!
//! ```
//! use gw_k8s::convert::convert;
//! use gw_model::resources::Kind;
//! use k8s_openapi::api::core::v1::Namespace;
//!
//! let mut ns = Namespace::default();
//! ns.metadata.name = Some("apps".into());
//! ns.metadata.labels = Some([("team".to_owned(), "web".to_owned())].into());
//! let converted = convert(&ns).unwrap();
//! let object = converted.object.unwrap();
//! assert_eq!(object.kind(), Kind::Namespace);
//! assert_eq!(object.metadata().labels.get("team"), Some("web"));
//! ```

use gw_model::load::{self, DocumentRef, LoadError, LoadWarning};
use gw_model::resources::Object;
use kube::ResourceExt;
use serde::Serialize;

/// The result of converting one object.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    /// The gw-model object; `None` for a kind gw-model does not read (yet).
    pub object: Option<Object>,
    /// Fields gw-model does not know (typos in hand-written manifests, or fields of a newer
    /// Gateway API release).
    pub warnings: Vec<LoadWarning>,
}

/// An object that could not be converted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// The object could not be serialized to JSON (a bug of its Rust type).
    #[error("{object}: cannot serialize to JSON: {source}")]
    Serialize {
        /// `Kind namespace/name`.
        object: String,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// gw-model rejected the object (a field has a value gw cannot use); the message names
    /// the field. The rest of the cluster's configuration still loads.
    #[error("{0}")]
    Load(LoadError),
}

/// Converts one object through gw-model's loader.
///
/// The object must serialize with its `apiVersion` and `kind`, as every `kube::Resource` type
/// of `k8s-openapi`, `gateway-api` and [`DynamicObject`](kube::api::DynamicObject) does.
pub fn convert<K>(object: &K) -> Result<Conversion, ConvertError>
where
    K: Serialize + ResourceExt,
{
    let label = describe(object);
    let value = serde_json::to_value(object).map_err(|source| ConvertError::Serialize {
        object: label.clone(),
        source,
    })?;
    let doc = DocumentRef {
        source: label,
        index: 0,
    };
    let mut loaded = load::parse_value(&doc, value);
    if let Some(error) = loaded.errors.drain(..).next() {
        return Err(ConvertError::Load(error));
    }
    Ok(Conversion {
        object: loaded.objects.into_iter().next(),
        warnings: loaded.warnings,
    })
}

/// `namespace/name` or `name`, as messages name an object.
pub(crate) fn describe<K: ResourceExt>(object: &K) -> String {
    match object.namespace() {
        Some(ns) => format!("{ns}/{}", object.name_any()),
        None => object.name_any(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use gw_model::resources::Kind;
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};

    #[test]
    fn typed_gateway_api_object_converts_with_crd_defaults() {
        let route: gateway_api::experimental::httproutes::HttpRoute =
            serde_json::from_value(serde_json::json!({
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "metadata": {"name": "web", "namespace": "apps", "generation": 3,
                             "creationTimestamp": "2026-01-02T03:04:05Z"},
                "spec": {"parentRefs": [{"name": "edge"}],
                         "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}
            }))
            .unwrap();
        let converted = convert(&route).unwrap();
        let Some(Object::HttpRoute(r)) = converted.object else {
            panic!("not an HTTPRoute: {converted:?}")
        };
        assert_eq!(r.metadata.generation, Some(3));
        assert_eq!(
            r.metadata.creation_timestamp.as_deref(),
            Some("2026-01-02T03:04:05Z")
        );
        // The CRD default (one PathPrefix "/" match) comes from gw-model's loader.
        assert_eq!(r.spec.rules[0].matches[0].path.value, "/");
        assert_eq!(r.spec.parent_refs[0].kind, "Gateway");
    }

    #[test]
    fn kinds_gw_model_does_not_read_are_ignored() {
        let gvk = GroupVersionKind::gvk("example.com", "v1", "Widget");
        let resource = ApiResource::from_gvk(&gvk);
        let widget = DynamicObject::new("w", &resource).within("apps");
        let converted = convert(&widget).unwrap();
        assert!(converted.object.is_none());
        assert!(converted.warnings.is_empty());
    }

    #[test]
    fn gw_policy_kinds_convert_through_the_loader() {
        let gvk = GroupVersionKind::gvk("policy.gw.dev", "v1alpha1", "TrafficPolicy");
        let resource = ApiResource::from_gvk(&gvk);
        let mut policy = DynamicObject::new("p", &resource).within("apps");
        policy.data = serde_json::json!({"spec": {"targetRefs": [
            {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "edge"}]}});
        let converted = convert(&policy).unwrap();
        assert!(
            matches!(converted.object, Some(Object::TrafficPolicy(_))),
            "{converted:?}"
        );
    }

    #[test]
    fn invalid_values_are_errors_naming_the_field() {
        let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
        let resource = ApiResource::from_gvk(&gvk);
        let mut route = DynamicObject::new("bad", &resource).within("apps");
        route.data =
            serde_json::json!({"spec": {"rules": [{"matches": [{"path": {"type": "Glob"}}]}]}});
        let err = convert(&route).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("apps/bad") && msg.contains("spec.rules[0].matches[0].path.type"),
            "{msg}"
        );
        let ConvertError::Load(LoadError::Field { kind, .. }) = err else {
            panic!("not a field error")
        };
        assert_eq!(kind, Kind::HttpRoute);
    }
}
