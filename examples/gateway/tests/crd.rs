//! The committed CRD (`deploy/crds/policy.gw.dev_trafficpolicies.yaml`) is what the types
//! generate. Regenerate it with `cargo run -p gw-gateway -- crd > deploy/crds/policy.gw.dev_trafficpolicies.yaml`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

const COMMITTED: &str = "../../deploy/crds/policy.gw.dev_trafficpolicies.yaml";

#[test]
fn committed_crd_is_up_to_date() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gw-gateway"))
        .arg("crd")
        .output()
        .expect("run gw-gateway crd");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = String::from_utf8(out.stdout).expect("utf-8");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(COMMITTED);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        generated == committed,
        "{} is stale; regenerate it with `cargo run -p gw-gateway -- crd > deploy/crds/policy.gw.dev_trafficpolicies.yaml`",
        path.display()
    );
}

// The CRD is a structural schema as Kubernetes requires: every property has a type, and
// nothing Kubernetes rejects (`$ref`, `nullable` without type, JSON Schema 2020 keywords) is
// left.
#[test]
fn crd_schema_is_structural() {
    let crd = gw_model::crd::traffic_policy_crd();
    fn walk(v: &serde_json::Value, path: &str) {
        let Some(m) = v.as_object() else { return };
        for bad in [
            "$ref",
            "$defs",
            "const",
            "prefixItems",
            "unevaluatedProperties",
            "nullable",
        ] {
            assert!(!m.contains_key(bad), "{path}: {bad}");
        }
        if let Some(props) = m.get("properties").and_then(|p| p.as_object()) {
            for (k, p) in props {
                assert!(p.get("type").is_some(), "{path}.{k} has no type: {p}");
                walk(p, &format!("{path}.{k}"));
            }
        }
        if let Some(items) = m.get("items") {
            assert!(items.get("type").is_some(), "{path}[] has no type");
            walk(items, &format!("{path}[]"));
        }
    }
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    walk(schema, "");
    let spec = &schema["properties"]["spec"]["properties"];
    let settings = &spec["default"]["properties"];
    for section in [
        "cors",
        "rateLimit",
        "basicAuth",
        "apiKeyAuth",
        "jwt",
        "transformation",
        "extAuth",
    ] {
        assert!(settings[section].is_object(), "{section} missing");
    }
    assert_eq!(
        settings["rateLimit"]["properties"]["unit"]["enum"],
        serde_json::json!(["Second", "Minute", "Hour", "Day"])
    );
    assert_eq!(
        schema["properties"]["spec"]["required"],
        serde_json::json!(["targetRefs"])
    );
}
