//! `gw-gateway check PATH`: validate manifests offline and print every object's status.

use std::path::Path;

use gw_model::status::{ConditionStatus, StatusReport};

use crate::controller::Controller;
use crate::files;

/// Exit code: everything is valid.
pub(crate) const OK: u8 = 0;
/// Exit code: a file or document could not be loaded.
pub(crate) const LOAD_ERRORS: u8 = 1;
/// Exit code: everything loaded, but some object is not accepted or has unresolved references.
pub(crate) const INVALID_OBJECTS: u8 = 2;

/// Loads and compiles `path` as the gateway would, writes each object with its status as YAML
/// documents to `out` (as `kubectl get -o yaml` shows them) and the errors and warnings to
/// `err`; returns the exit code.
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
    for entry in &snapshot.compiled.status.entries {
        match serde_saphyr::to_string(&entry.to_object()) {
            Ok(yaml) => {
                let _ = write!(out, "---\n{yaml}");
            }
            Err(e) => {
                let _ = writeln!(
                    err,
                    "error: cannot render {} {}: {e}",
                    entry.kind, entry.key
                );
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

fn has_invalid(report: &StatusReport) -> bool {
    report.entries.iter().any(|e| {
        e.status.all_conditions().iter().any(|c| {
            matches!(c.type_.as_str(), "Accepted" | "ResolvedRefs" | "Programmed")
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
