//! `gw-gateway check PATH`: validate manifests offline and print every object's status.

use std::path::Path;

use gw_model::resources::Object;
use gw_model::status::{ConditionStatus, StatusEntry, StatusReport};
use serde_json::{Value, json};

use crate::controller::Controller;
use crate::files;

/// Exit code: everything is valid.
pub(crate) const OK: u8 = 0;
/// Exit code: a file or document could not be loaded.
pub(crate) const LOAD_ERRORS: u8 = 1;
/// Exit code: everything loaded, but some object is not accepted or has unresolved references.
pub(crate) const INVALID_OBJECTS: u8 = 2;

/// Loads and compiles `path` as the gateway would, writes every object (in file order) as a YAML
/// document the way `kubectl get -o yaml` shows it (apiVersion, kind, metadata, spec with the
/// CRD defaults applied, and the status gw computes for the objects it manages; Secret values
/// are redacted) to `out`, and the errors and warnings to `err`; returns the exit code.
pub(crate) fn run(
    path: &Path,
    controller_name: &str,
    out: &mut dyn std::io::Write,
    err: &mut dyn std::io::Write,
) -> u8 {
    let config = files::Scanner::default().scan(path);
    let mut controller = Controller::new(controller_name.to_owned(), None);
    let snapshot = controller.reload(&config, &[]);
    for w in &snapshot.warnings {
        let _ = writeln!(err, "warning: {w}");
    }
    for e in &snapshot.errors {
        let _ = writeln!(err, "error: {e}");
    }
    let report = &snapshot.compiled.status;
    let mut objects = Vec::new();
    for path in config.files.keys() {
        // The controller read these files a moment ago; a file that cannot be read now was
        // reported by then or is reported here.
        match files::read_text(path) {
            Ok(text) => {
                objects.extend(gw_model::load::parse(&path.display().to_string(), &text).objects);
            }
            Err(e) => {
                let _ = writeln!(err, "error: {e}");
            }
        }
    }
    for o in &objects {
        let status = report
            .entries
            .binary_search_by(|e| (e.kind, &e.key).cmp(&(o.kind(), &o.key())))
            .ok()
            .and_then(|i| report.entries.get(i));
        match serde_saphyr::to_string(&manifest(o, status)) {
            Ok(yaml) => {
                let _ = write!(out, "---\n{yaml}");
            }
            Err(e) => {
                let _ = writeln!(err, "error: cannot render {} {}: {e}", o.kind(), o.key());
            }
        }
    }
    if !snapshot.errors.is_empty() {
        LOAD_ERRORS
    } else if has_invalid(&snapshot.compiled.status) {
        INVALID_OBJECTS
    } else {
        OK
    }
}

/// An object as `kubectl get -o yaml` shows it.
fn manifest(o: &Object, status: Option<&StatusEntry>) -> Value {
    let kind = o.kind();
    let mut metadata = serde_json::to_value(o.metadata()).unwrap_or(Value::Null);
    if let (Some(entry), Some(m)) = (status, metadata.as_object_mut()) {
        m.entry("generation").or_insert(json!(entry.generation));
    }
    let mut v = json!({
        "apiVersion": kind.api_version(),
        "kind": kind.as_str(),
        "metadata": metadata,
    });
    let spec = o.spec_json();
    match o {
        Object::Secret(_) => {
            // Key names only: check output ends up in CI logs.
            if let Value::Object(data) = spec {
                let redacted: serde_json::Map<String, Value> = data
                    .into_iter()
                    .map(|(k, _)| (k, json!("<redacted>")))
                    .collect();
                v["data"] = Value::Object(redacted);
            }
        }
        Object::ConfigMap(_) | Object::EndpointSlice(_) => {
            let names = if matches!(o, Object::ConfigMap(_)) {
                ["data", "binaryData"]
            } else {
                ["endpoints", "ports"]
            };
            if let Value::Array(parts) = spec {
                for (name, part) in names.into_iter().zip(parts) {
                    if !part.is_null() {
                        v[name] = part;
                    }
                }
            }
        }
        Object::Namespace(_) => {}
        _ => v["spec"] = spec,
    }
    if let Some(entry) = status {
        v["status"] = serde_json::to_value(&entry.status).unwrap_or(Value::Null);
    }
    v
}

fn has_invalid(report: &StatusReport) -> bool {
    report.entries.iter().any(|e| {
        e.status.all_conditions().iter().any(|c| {
            matches!(&*c.type_, "Accepted" | "ResolvedRefs" | "Programmed")
                && c.status == ConditionStatus::False
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str) -> (u8, String, String) {
        let dir =
            std::env::temp_dir().join(format!("gw-check-{}-{}", std::process::id(), yaml.len()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("m.yaml"), yaml).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(&dir, "gw.dev/gateway", &mut out, &mut err);
        std::fs::remove_dir_all(&dir).unwrap();
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    const VALID: &str = "
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gw}
spec: {controllerName: gw.dev/gateway}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: default}
spec:
  gatewayClassName: gw
  listeners: [{name: http, port: 80, protocol: HTTP}]
";

    #[test]
    fn valid_manifests_exit_zero_and_print_status() {
        let (code, out, err) = check(VALID);
        assert_eq!(code, OK, "{err}");
        assert!(out.contains("kind: Gateway"), "{out}");
        assert!(out.contains("reason: Accepted"), "{out}");
    }

    // Every object, in file order, as `kubectl get -o yaml` shows it: metadata, spec (with
    // defaults), status; objects gw does not manage have no status; Secret values are redacted.
    #[test]
    fn every_object_is_printed_kubectl_style() {
        let yaml = format!(
            "{VALID}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: tls, namespace: default}}\ntype: kubernetes.io/tls\ndata: {{tls.crt: Zm9v, tls.key: c2VjcmV0}}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: default, labels: {{app: web}}}}\nspec:\n  parentRefs: [{{name: edge}}]\n  rules: [{{matches: [{{path: {{value: /x}}}}]}}]\n"
        );
        let (code, out, err) = check(&yaml);
        let docs: Vec<Value> = out
            .split("---\n")
            .filter(|d| !d.trim().is_empty())
            .map(|d| serde_saphyr::from_str(d).unwrap())
            .collect();
        assert_eq!(code, OK, "{err}");
        let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["GatewayClass", "Gateway", "Secret", "HTTPRoute"]);
        let gateway = &docs[1];
        assert_eq!(gateway["apiVersion"], "gateway.networking.k8s.io/v1");
        assert_eq!(gateway["metadata"]["name"], "edge");
        assert_eq!(gateway["metadata"]["generation"], 1);
        assert_eq!(gateway["spec"]["listeners"][0]["port"], 80);
        assert_eq!(gateway["status"]["listeners"][0]["name"], "http");
        let secret = &docs[2];
        assert_eq!(secret["data"]["tls.key"], "<redacted>");
        assert!(secret.get("status").is_none());
        assert!(!out.contains("c2VjcmV0"), "{out}");
        let route = &docs[3];
        assert_eq!(route["metadata"]["labels"]["app"], "web");
        // Defaults applied: the PathPrefix type, the parentRef's group and kind.
        assert_eq!(
            route["spec"]["rules"][0]["matches"][0]["path"]["type"],
            "PathPrefix"
        );
        assert_eq!(route["spec"]["parentRefs"][0]["kind"], "Gateway");
        assert_eq!(
            route["status"]["parents"][0]["conditions"][0]["type"],
            "Accepted"
        );
    }

    #[test]
    fn invalid_objects_and_load_errors_are_reported() {
        let (code, _, _) = check(&format!(
            "{VALID}---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: default}}\nspec:\n  parentRefs: [{{name: edge}}]\n  rules: [{{backendRefs: [{{name: missing, port: 80}}]}}]\n"
        ));
        assert_eq!(code, INVALID_OBJECTS);
        let (code, _, err) = check(
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: x}]}\n",
        );
        assert_eq!(code, LOAD_ERRORS);
        assert!(
            err.contains("m.yaml (document 0)") && err.contains("spec.ports[0].port"),
            "{err}"
        );
    }
}
