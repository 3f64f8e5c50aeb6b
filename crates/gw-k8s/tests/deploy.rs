//! `deploy/base` renders with `kubectl kustomize`, and what it deploys fits the controller:
//! RBAC grants list and watch on every resource gw-k8s watches and patch on every status it
//! writes, the Lease for leader election, and the probes use the admin endpoints.
//! Runs when `kubectl` is on PATH (CI installs it); says so and passes otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use serde_json::Value;

fn render(dir: &str) -> Option<Vec<Value>> {
    let base = format!("{}/../../deploy/{dir}", env!("CARGO_MANIFEST_DIR"));
    let out = match Command::new("kubectl").args(["kustomize", &base]).output() {
        Ok(out) => out,
        Err(e) => {
            println!("SKIPPED: kubectl not found ({e}); install kubectl to check deploy/");
            return None;
        }
    };
    assert!(
        out.status.success(),
        "kubectl kustomize {base} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    Some(
        text.split("\n---\n")
            .map(|doc| serde_saphyr::from_str::<Value>(doc).unwrap())
            .collect(),
    )
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name} is not rendered"))
}

fn allows(role: &Value, group: &str, resource: &str, verb: &str) -> bool {
    role["rules"].as_array().unwrap().iter().any(|r| {
        let has = |field: &str, v: &str| {
            r[field]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == v || x == "*"))
        };
        has("apiGroups", group) && has("resources", resource) && has("verbs", verb)
    })
}

#[test]
fn deploy_base_renders_and_fits_the_controller() {
    let Some(docs) = render("base") else { return };
    let role = find(&docs, "ClusterRole", "gw-gateway");
    for r in gw_k8s::watched_resources() {
        for verb in ["list", "watch"] {
            assert!(
                allows(role, &r.group, &r.plural, verb),
                "{verb} {}/{}",
                r.group,
                r.plural
            );
        }
        if gw_k8s::STATUS_KINDS.contains(&r.kind.as_str()) {
            let status = format!("{}/status", r.plural);
            assert!(
                allows(role, &r.group, &status, "patch"),
                "patch {}/{status}",
                r.group
            );
        }
    }
    // Nothing beyond reading and status: no write on specs, no Secret writes.
    for rule in role["rules"].as_array().unwrap() {
        for verb in rule["verbs"].as_array().unwrap() {
            let v = verb.as_str().unwrap();
            let status_only = rule["resources"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r.as_str().unwrap().ends_with("/status"));
            assert!(
                matches!(v, "get" | "list" | "watch") || status_only,
                "{v} on {rule}"
            );
        }
    }
    let lease_role = find(&docs, "Role", "gw-gateway-leader-election");
    for verb in ["get", "create", "update"] {
        assert!(allows(lease_role, "coordination.k8s.io", "leases", verb));
    }

    let deployment = find(&docs, "Deployment", "gw-gateway");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "gw-gateway");
    let container = &pod["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.contains(&"--kubernetes"), "{args:?}");
    assert!(args.contains(&"--admin=0.0.0.0:15000"), "{args:?}");
    assert!(
        args.iter()
            .any(|a| a.starts_with("--leader-election-lease=")),
        "{args:?}"
    );
    let service = find(&docs, "Service", "gw-gateway");
    let svc_ref = args
        .iter()
        .find_map(|a| a.strip_prefix("--gateway-service="))
        .unwrap();
    assert_eq!(svc_ref, "$(POD_NAMESPACE)/gw-gateway");
    assert_eq!(
        service["metadata"]["namespace"],
        deployment["metadata"]["namespace"]
    );
    let admin_port = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "admin")
        .unwrap();
    assert_eq!(admin_port["containerPort"], 15000);
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], "admin");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], "admin");

    let class = find(&docs, "GatewayClass", "gw");
    assert_eq!(class["spec"]["controllerName"], gw_model_default());
    assert!(
        class["metadata"].get("namespace").is_none(),
        "cluster-scoped"
    );
}

fn gw_model_default() -> &'static str {
    gw_k8s::gw_model::DEFAULT_CONTROLLER_NAME
}

#[test]
fn the_conformance_overlay_exposes_every_listener_port_of_the_suite() {
    let Some(docs) = render("overlays/conformance") else {
        return;
    };
    let service = find(&docs, "Service", "gw-gateway");
    let ports: Vec<(i64, &str)> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["port"].as_i64().unwrap(),
                p["protocol"].as_str().unwrap_or("TCP"),
            )
        })
        .collect();
    for wanted in [
        (80, "TCP"),
        (443, "TCP"),
        (8080, "TCP"),
        (5300, "TCP"),
        (5300, "UDP"),
        (5312, "UDP"),
    ] {
        assert!(ports.contains(&wanted), "{wanted:?} in {ports:?}");
    }
    // The base is unchanged otherwise.
    find(&docs, "Deployment", "gw-gateway");
    find(&docs, "GatewayClass", "gw");
}
