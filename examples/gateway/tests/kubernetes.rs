//! `gw-gateway --kubernetes` against gw-k8s's fake API server: the cluster's objects are
//! served, status is written back, `/readyz` follows the initial sync, and traffic keeps
//! flowing while the API server is unreachable.
#![cfg(feature = "k8s")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "../../../crates/gw-k8s/tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, http_get, temp_dir};
use serde_json::json;
use support::FakeApi;

const GW: &str = "gateway.networking.k8s.io/v1";

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn route(name: &str, prefix: &str) -> serde_json::Value {
    json!({"apiVersion": GW, "kind": "HTTPRoute", "metadata": {"name": name, "namespace": "default"},
           "spec": {"parentRefs": [{"name": "edge"}],
                    "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
                               "backendRefs": [{"name": "web", "port": 80}]}]}})
}

#[test]
fn serves_the_cluster_writes_status_and_survives_an_api_outage() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let echo = rt
        .block_on(gw_echo::EchoServer::start(
            gw_echo::EchoConfig::loopback_http("web-abc-def", "default"),
        ))
        .unwrap();
    let echo_port = echo.http_addr().unwrap().port();
    let mut api = rt.block_on(FakeApi::start());
    let port = free_port();
    api.apply(
        json!({"apiVersion": GW, "kind": "GatewayClass", "metadata": {"name": "gw"},
                     "spec": {"controllerName": "gw.dev/gateway"}}),
    );
    api.apply(json!({"apiVersion": GW, "kind": "Gateway", "metadata": {"name": "edge", "namespace": "default"},
                     "spec": {"gatewayClassName": "gw",
                              "listeners": [{"name": "http", "port": port, "protocol": "HTTP"}]}}));
    api.apply(route("web", "/web"));
    api.apply(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
                     "spec": {"ports": [{"name": "http", "port": 80}]}}));
    api.apply(
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                     "metadata": {"name": "web-1", "namespace": "default",
                                  "labels": {"kubernetes.io/service-name": "web"}},
                     "addressType": "IPv4", "endpoints": [{"addresses": ["127.0.0.1"]}],
                     "ports": [{"name": "http", "port": echo_port}]}),
    );
    api.apply(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "gw-gateway", "namespace": "gw-system"},
                     "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.30"},
                     "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}}));

    let dir = temp_dir("kubernetes");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _gw = Killed(
        Command::new(env!("CARGO_BIN_EXE_gw-gateway"))
            .args([
                "--kubernetes",
                "--listen-address",
                "127.0.0.1",
                "--gateway-service",
                "gw-system/gw-gateway",
            ])
            .arg("--admin")
            .arg(admin.to_string())
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.join("gw.log"))
                    .map(Stdio::from)
                    .unwrap(),
            )
            .spawn()
            .unwrap(),
    );
    let log = || std::fs::read_to_string(dir.join("gw.log")).unwrap_or_default();
    let listener: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    wait("readiness", Duration::from_secs(20), || {
        http_get(admin, "127.0.0.1", "/readyz")
            .is_some_and(|(c, body)| c == 200 && body.contains("kubernetes: connected"))
    });
    let (code, body) = http_get(listener, "example.com", "/web/x").unwrap();
    assert_eq!(code, 200, "{body}\n{}", log());
    assert!(
        body.contains("web-abc-def"),
        "echoed by the backend: {body}"
    );

    // Status in the cluster: the Gateway's address is the Service's load balancer.
    wait("gateway status", Duration::from_secs(10), || {
        api.get(GW, "Gateway", "default", "edge")
            .is_some_and(|g| g["status"]["addresses"][0]["value"] == "203.0.113.10")
    });
    wait("route status", Duration::from_secs(10), || {
        api.get(GW, "HTTPRoute", "default", "web")
            .is_some_and(|r| r["status"]["parents"][0]["controllerName"] == "gw.dev/gateway")
    });
    assert!(
        api.status_patches()
            .iter()
            .all(|p| p.query_param("fieldManager").as_deref() == Some("gw.dev/gateway"))
    );

    // The API server goes away: traffic keeps flowing on the last configuration, readiness stays,
    // and /readyz and /metrics say what is failing.
    api.stop();
    wait(
        "health to notice the outage",
        Duration::from_secs(10),
        || {
            http_get(admin, "127.0.0.1", "/readyz")
                .is_some_and(|(c, body)| c == 200 && body.contains("retrying"))
        },
    );
    let (_, metrics) = http_get(admin, "127.0.0.1", "/metrics").unwrap();
    assert!(
        metrics.contains("gw_kubernetes_api_connected 0"),
        "{metrics}"
    );
    for _ in 0..20 {
        let (code, _) = http_get(listener, "example.com", "/web/x").unwrap();
        assert_eq!(
            code, 200,
            "traffic flows while the API server is unreachable"
        );
    }

    // Back, with a change made meanwhile.
    api.apply_unseen(route("api", "/api"));
    rt.block_on(api.restart());
    wait(
        "the change made during the outage",
        Duration::from_secs(30),
        || http_get(listener, "example.com", "/api/x").is_some_and(|(c, _)| c == 200),
    );
    let _ = std::fs::remove_dir_all(&dir);
}
