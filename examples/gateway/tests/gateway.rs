//! End-to-end tests of the `gw-gateway` binary: configuration directory, hot reload (in-place
//! writes, new and deleted files, renames, symlink swaps), last good configuration, the admin
//! endpoints, and traffic through a reload.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Gateway, free_port, http_get};
use serde_json::Value;

fn has(status: &Value, kind: &str, name: &str) -> bool {
    items(status)
        .iter()
        .any(|i| i["kind"] == kind && i["metadata"]["name"] == name)
}

fn items(status: &Value) -> Vec<Value> {
    status["items"].as_array().cloned().unwrap_or_default()
}

fn class() -> &'static str {
    "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gw}
spec: {controllerName: gw.dev/gateway}
"
}

fn gateway(name: &str, port: u16) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: default}}
spec:
  gatewayClassName: gw
  listeners: [{{name: http, port: {port}, protocol: HTTP}}]
"
    )
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
}

#[test]
fn reload_sees_writes_new_files_deletes_renames_and_symlink_swaps() {
    let gw = Gateway::start("reload", "127.0.41.0/24");
    let dir = gw.config();
    write(&dir.join("class.yaml"), class());
    gw.wait_until("the class", |s| has(s, "GatewayClass", "gw"));

    // A new file.
    write(&dir.join("a.yaml"), &gateway("a", free_port()));
    gw.wait_until("gateway a", |s| has(s, "Gateway", "a"));

    // An in-place write.
    write(&dir.join("a.yaml"), &gateway("a2", free_port()));
    gw.wait_until("a replaced by a2", |s| {
        has(s, "Gateway", "a2") && !has(s, "Gateway", "a")
    });

    // A rename into place (how editors save).
    let tmp = dir.join(".b.yaml.tmp");
    write(&tmp, &gateway("b", free_port()));
    std::fs::rename(&tmp, dir.join("b.yaml")).expect("rename");
    gw.wait_until("gateway b", |s| has(s, "Gateway", "b"));

    // A Kubernetes ConfigMap volume: files are symlinks into `..data`, itself a symlink that is
    // swapped atomically to a new timestamped directory.
    let v1 = dir.join("..2026_01_01_v1");
    std::fs::create_dir_all(&v1).expect("v1");
    write(&v1.join("c.yaml"), &gateway("c1", free_port()));
    std::os::unix::fs::symlink("..2026_01_01_v1", dir.join("..data")).expect("..data");
    std::os::unix::fs::symlink("..data/c.yaml", dir.join("c.yaml")).expect("c.yaml");
    gw.wait_until("gateway c1", |s| has(s, "Gateway", "c1"));
    let v2 = dir.join("..2026_01_01_v2");
    std::fs::create_dir_all(&v2).expect("v2");
    write(&v2.join("c.yaml"), &gateway("c2", free_port()));
    std::os::unix::fs::symlink("..2026_01_01_v2", dir.join("..data_tmp")).expect("..data_tmp");
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).expect("swap");
    gw.wait_until("gateway c2 after the symlink swap", |s| {
        has(s, "Gateway", "c2") && !has(s, "Gateway", "c1")
    });

    // A deleted file.
    std::fs::remove_file(dir.join("b.yaml")).expect("remove");
    gw.wait_until("b removed", |s| !has(s, "Gateway", "b"));
}

#[test]
fn an_invalid_change_keeps_the_last_good_configuration() {
    let gw = Gateway::start("invalid", "127.0.42.0/24");
    let dir = gw.config();
    write(&dir.join("class.yaml"), class());
    write(&dir.join("gw.yaml"), &gateway("good", free_port()));
    gw.wait_until("gateway good", |s| has(s, "Gateway", "good"));

    write(
        &dir.join("gw.yaml"),
        &format!(
            "{}---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r}}\nspec:\n  rules: [{{matches: [{{path: {{type: Prefix}}}}]}}]\n",
            gateway("bad", free_port())
        ),
    );
    let s = gw.wait_until("the error to be reported", |s| {
        s["errors"].as_array().is_some_and(|e| !e.is_empty())
    });
    let error = s["errors"][0].as_str().unwrap_or_default().to_owned();
    assert!(error.contains("gw.yaml (document 1)"), "{error}");
    assert!(
        error.contains("spec.rules[0].matches[0].path.type"),
        "{error}"
    );
    assert!(
        has(&s, "Gateway", "good") && !has(&s, "Gateway", "bad"),
        "last good config serves"
    );

    write(&dir.join("gw.yaml"), &gateway("fixed", free_port()));
    gw.wait_until("the fix", |s| {
        has(s, "Gateway", "fixed") && s["errors"].as_array().is_some_and(Vec::is_empty)
    });
}

#[test]
fn admin_endpoints() {
    let gw = Gateway::start("admin", "127.0.43.0/24");
    write(
        &gw.config().join("all.yaml"),
        &format!("{}---\n{}", class(), gateway("edge", free_port())),
    );
    let s = gw.wait_until("the gateway to get a pool address", |s| {
        items(s)
            .iter()
            .any(|i| i["kind"] == "Gateway" && i["status"]["addresses"][0]["value"] == "127.0.43.1")
    });
    let gateway = items(&s)
        .into_iter()
        .find(|i| i["kind"] == "Gateway")
        .expect("gateway");
    assert_eq!(gateway["status"]["conditions"][0]["observedGeneration"], 1);
    assert!(gateway["metadata"]["generation"] == 1);
    assert_eq!(gw.get("/healthz").map(|r| r.0), Some(200));
    assert_eq!(gw.get("/readyz").map(|r| r.0), Some(200));
    let (code, dump) = gw.get("/config_dump").expect("config dump");
    assert_eq!(code, 200);
    assert!(dump.contains("\"gateways\""), "{dump}");
    let (code, metrics) = gw.get("/metrics").expect("metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains("gw_config_reloads_total"), "{metrics}");
    assert_eq!(gw.get("/nope").map(|r| r.0), Some(404));
}

/// Routes traffic to an echo backend, then changes the route while requests run: none fails.
#[test]
fn traffic_flows_and_survives_reloads() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let echo = rt
        .block_on(gw_echo::EchoServer::start(
            gw_echo::EchoConfig::loopback_http("web-abc-def", "default"),
        ))
        .expect("echo");
    let echo_port = echo.http_addr().expect("echo addr").port();
    let gw = Gateway::start("traffic", "127.0.44.0/24");
    let port = free_port();
    let route = |prefix: &str| {
        let web_backend = common::web_backend(echo_port);
        format!(
            "{}---\n{}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: default}}
spec:
  parentRefs: [{{name: edge}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]
    backendRefs: [{{name: web, port: 80}}]
  - matches: [{{path: {{type: PathPrefix, value: /}}}}]
    backendRefs: [{{name: web, port: 80}}]
---
{web_backend}
",
            class(),
            gateway("edge", port)
        )
    };
    write(&gw.config().join("all.yaml"), &route("/a"));
    let addr: SocketAddr = format!("127.0.44.1:{port}").parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some((200, body)) = http_get(addr, "example.com", "/a/x") {
            assert!(body.contains("\"pod\": \"web-abc-def\""), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "the route never served");
        std::thread::sleep(Duration::from_millis(25));
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failures = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, failures, sent) = (stop.clone(), failures.clone(), sent.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let got = http_get(addr, "example.com", "/a/x");
                    if got.as_ref().map(|r| r.0) != Some(200)
                        && failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0
                    {
                        let n = sent.load(std::sync::atomic::Ordering::Relaxed);
                        eprintln!("first failure after {n} requests: {got:?}");
                    }
                }
            })
        })
        .collect();
    for i in 0..20 {
        write(
            &gw.config().join("all.yaml"),
            &route(&format!("/a{}", i % 2)),
        );
        std::thread::sleep(Duration::from_millis(30));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker");
    }
    assert!(sent.load(std::sync::atomic::Ordering::Relaxed) > 20);
    assert_eq!(
        failures.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "requests failed during reloads; gateway log:\n{}",
        gw.log()
    );
    rt.block_on(echo.shutdown());
}
