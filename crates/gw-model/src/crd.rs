//! The `CustomResourceDefinition` of gw's own kinds, generated from the Rust types (feature
//! `schemars`).
//!
//! The schema comes from the serde types themselves (field names, defaults, required fields,
//! documentation), turned into a Kubernetes structural schema: subschemas inlined, unit-enum
//! variants as `enum` lists, unsigned formats as Kubernetes integer formats, no `nullable`.
//! `deploy/crds/policy.gw.dev_trafficpolicies.yaml` is this output; a test fails when it is
//! stale.
//!
//! ```
//! let crd = gw_model::crd::traffic_policy_crd();
//! assert_eq!(crd["metadata"]["name"], "trafficpolicies.policy.gw.dev");
//! let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
//! assert!(spec["properties"]["targetRefs"].is_object());
//! ```

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::resources::{POLICY_GROUP, TRAFFIC_POLICY_VERSION, TrafficPolicySpec};
use crate::status::PolicyStatus;

fn schema_of<T: schemars::JsonSchema>() -> Value {
    let mut settings = SchemaSettings::openapi3();
    settings.inline_subschemas = true;
    let schema = settings.into_generator().into_root_schema_for::<T>();
    let mut v = schema.to_value();
    structural(&mut v);
    v
}

/// Rewrites a JSON Schema into the subset Kubernetes accepts as a structural schema.
fn structural(v: &mut Value) {
    let Value::Object(map) = v else {
        if let Value::Array(items) = v {
            items.iter_mut().for_each(structural);
        }
        return;
    };
    for k in ["$schema", "title", "nullable", "components", "$defs"] {
        map.remove(k);
    }
    if map.get("default").is_some_and(Value::is_null) {
        map.remove("default");
    }
    // Kubernetes knows int32/int64; the unsigned formats become the signed one that holds
    // them (their `minimum` stays).
    let format = map.get("format").and_then(Value::as_str).map(str::to_owned);
    match format.as_deref() {
        Some("uint8" | "uint16" | "int8" | "int16" | "int32") => {
            map.insert("format".into(), json!("int32"));
        }
        Some("uint32" | "uint" | "uint64" | "int64") => {
            map.insert("format".into(), json!("int64"));
        }
        _ => {}
    }
    // A unit enum with documented variants is a `oneOf` of single values: one `enum` list.
    if let Some(Value::Array(alts)) = map.get("oneOf") {
        let values: Option<Vec<Value>> = alts
            .iter()
            .map(|a| {
                let e = a.get("enum").and_then(Value::as_array)?;
                (e.len() == 1).then(|| e[0].clone())
            })
            .collect();
        if let Some(values) = values {
            let docs: Vec<String> = alts
                .iter()
                .filter_map(|a| {
                    let value = a.get("enum")?.get(0)?.as_str()?;
                    let d = a.get("description")?.as_str()?;
                    Some(format!("* {value}: {d}"))
                })
                .collect();
            map.remove("oneOf");
            map.insert("type".into(), json!("string"));
            map.insert("enum".into(), Value::Array(values));
            if !docs.is_empty() {
                let desc = map
                    .get("description")
                    .and_then(Value::as_str)
                    .map(|d| format!("{d}\n\n"))
                    .unwrap_or_default();
                map.insert(
                    "description".into(),
                    json!(format!("{desc}{}", docs.join("\n"))),
                );
            }
        }
    }
    for (_, child) in map.iter_mut() {
        structural(child);
    }
}

fn meta_property(description: &str) -> Value {
    json!({"description": description, "type": "string"})
}

/// The `CustomResourceDefinition` of `TrafficPolicy` (`trafficpolicies.policy.gw.dev`).
pub fn traffic_policy_crd() -> Value {
    let mut spec = schema_of::<TrafficPolicySpec>();
    if let Value::Object(m) = &mut spec {
        m.insert(
            "description".into(),
            json!("Spec defines the desired state of TrafficPolicy."),
        );
    }
    let mut status = schema_of::<PolicyStatus>();
    if let Value::Object(m) = &mut status {
        m.insert(
            "description".into(),
            json!(
                "Status defines the current state of TrafficPolicy: one entry per ancestor \
                 (usually a Gateway) the policy applies through (GEP-713 PolicyAncestorStatus)."
            ),
        );
    }
    let mut properties = Map::new();
    properties.insert(
        "apiVersion".into(),
        meta_property(
            "APIVersion defines the versioned schema of this representation of an object.",
        ),
    );
    properties.insert(
        "kind".into(),
        meta_property(
            "Kind is a string value representing the REST resource this object represents.",
        ),
    );
    properties.insert("metadata".into(), json!({"type": "object"}));
    properties.insert("spec".into(), spec);
    properties.insert("status".into(), status);
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": format!("trafficpolicies.{POLICY_GROUP}"),
            "labels": {"gateway.networking.k8s.io/policy": "Inherited"},
        },
        "spec": {
            "group": POLICY_GROUP,
            "names": {
                "categories": ["gateway-api", "gw"],
                "kind": "TrafficPolicy",
                "listKind": "TrafficPolicyList",
                "plural": "trafficpolicies",
                "shortNames": ["gwtp"],
                "singular": "trafficpolicy",
            },
            "scope": "Namespaced",
            "versions": [{
                "additionalPrinterColumns": [
                    {"jsonPath": ".spec.targetRefs[*].name", "name": "Targets", "type": "string"},
                    {
                        "jsonPath": ".status.ancestors[0].conditions[?(@.type==\"Accepted\")].reason",
                        "name": "Accepted",
                        "type": "string",
                    },
                    {"jsonPath": ".metadata.creationTimestamp", "name": "Age", "type": "date"},
                ],
                "name": TRAFFIC_POLICY_VERSION,
                "schema": {"openAPIV3Schema": {
                    "description": "TrafficPolicy configures CORS, rate limits, authentication \
                        (basic, API keys, JWT), external authorization and CEL transformations \
                        for the Gateways, listeners, ListenerSets, routes \
                        and route rules it targets (GEP-713 policy attachment with defaults and \
                        overrides).",
                    "properties": properties,
                    "required": ["spec"],
                    "type": "object",
                }},
                "served": true,
                "storage": true,
                "subresources": {"status": {}},
            }],
        },
    })
}

/// [`traffic_policy_crd`] as the YAML document committed in `deploy/crds/`; `Err` with the
/// serializer's message should YAML rendering fail.
pub fn traffic_policy_crd_yaml() -> Result<String, String> {
    let body = serde_saphyr::to_string(&traffic_policy_crd()).map_err(|e| e.to_string())?;
    Ok(format!(
        "# Generated from the gw-model types by `gw-gateway crd`; do not edit by hand.\n{body}"
    ))
}
