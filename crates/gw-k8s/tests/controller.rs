//! The controller against a scripted fake API server (tests/support): watch events produce
//! the right routing table, status patches carry the right content and field manager, relists
//! after 410 recover without dropping objects, and an unreachable API server keeps the last
//! state while health reports it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use gw_k8s::{ClusterState, Config, Controller, LeaderElection};
use gw_model::resources::ObjectKey;
use serde_json::{Value, json};
use support::FakeApi;

const GW: &str = "gateway.networking.k8s.io/v1";
const CONTROLLER: &str = "gw.dev/gateway";

fn config() -> Config {
    let mut c = Config::new(CONTROLLER);
    c.debounce = Duration::from_millis(20);
    c.max_debounce = Duration::from_millis(200);
    c.backoff_min = Duration::from_millis(20);
    c.backoff_max = Duration::from_millis(200);
    c.gateway_service = Some(ObjectKey::new("gw-system", "gw-gateway"));
    c
}

fn route(name: &str, path: &str, parents: Value) -> Value {
    json!({"apiVersion": GW, "kind": "HTTPRoute",
           "metadata": {"name": name, "namespace": "apps"},
           "spec": {"parentRefs": [{"name": "edge", "namespace": "infra"}],
                    "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": path}}],
                               "backendRefs": [{"name": "web", "port": 80}]}]},
           "status": {"parents": parents}})
}

/// A cluster with one class of ours, a Gateway, a route, its backend and the gateway Service.
fn seed(api: &FakeApi) {
    api.apply(
        json!({"apiVersion": GW, "kind": "GatewayClass", "metadata": {"name": "gw"},
                     "spec": {"controllerName": CONTROLLER}}),
    );
    api.apply(json!({"apiVersion": GW, "kind": "Gateway",
                     "metadata": {"name": "edge", "namespace": "infra"},
                     "spec": {"gatewayClassName": "gw",
                              "listeners": [{"name": "http", "port": 80, "protocol": "HTTP",
                                             "allowedRoutes": {"namespaces": {"from": "All"}}}]}}));
    api.apply(route("web", "/web", json!([])));
    api.apply(json!({"apiVersion": "v1", "kind": "Service",
                     "metadata": {"name": "web", "namespace": "apps"},
                     "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}));
    api.apply(
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                     "metadata": {"name": "web-1", "namespace": "apps",
                                  "labels": {"kubernetes.io/service-name": "web"}},
                     "addressType": "IPv4",
                     "endpoints": [{"addresses": ["10.1.0.7"], "conditions": {"ready": true}}],
                     "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}),
    );
    api.apply(json!({"apiVersion": "v1", "kind": "Service",
                     "metadata": {"name": "gw-gateway", "namespace": "gw-system"},
                     "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.20",
                              "ports": [{"name": "http", "port": 80}]},
                     "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}}}));
    for ns in ["apps", "infra", "gw-system"] {
        api.apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
    }
    // gw's own policy kind, watched as a dynamic object and read by gw-model's loader.
    api.apply(
        json!({"apiVersion": "policy.gw.dev/v1alpha1", "kind": "TrafficPolicy",
               "metadata": {"name": "p", "namespace": "apps"},
               "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io",
                                        "kind": "HTTPRoute", "name": "web"}]}}),
    );
    // Optional Gateway API kinds whose CRDs are not installed.
    for kind in ["TCPRoute", "UDPRoute"] {
        api.not_served("gateway.networking.k8s.io/v1alpha2", kind);
    }
    api.not_served("gateway.networking.x-k8s.io/v1alpha1", "XBackend");
}

async fn next_state(
    rx: &mut tokio::sync::watch::Receiver<Option<Arc<ClusterState>>>,
    until: impl Fn(&ClusterState) -> bool,
) -> Arc<ClusterState> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(s) = rx.borrow_and_update().clone()
                && until(&s)
            {
                return s;
            }
            rx.changed().await.unwrap();
        }
    })
    .await
    .expect("no matching cluster state within 10 s")
}

async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Path prefixes the compiled table serves on the Gateway's listener.
fn served_paths(state: &ClusterState) -> Vec<String> {
    let compiled = gw_model::compile(&state.resources, &state.compile_options(CONTROLLER));
    let table = serde_json::to_value(&compiled.table).unwrap();
    let mut paths = Vec::new();
    collect_paths(&table, &mut paths);
    paths.sort();
    paths.dedup();
    paths
}

fn collect_paths(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let (Some(Value::String(t)), Some(Value::String(p))) =
                (m.get("kind"), m.get("value"))
                && t == "PathPrefix"
            {
                out.push(p.clone());
            }
            m.values().for_each(|v| collect_paths(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| collect_paths(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn watch_events_produce_the_routing_table() {
    let api = FakeApi::start().await;
    seed(&api);
    let controller = Controller::start(api.client(), config());
    let mut states = controller.states();
    let s = next_state(&mut states, |_| true).await;
    assert_eq!(served_paths(&s), ["/web"]);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let compiled = gw_model::compile(&s.resources, &s.compile_options(CONTROLLER));
    let table = serde_json::to_string(&compiled.table).unwrap();
    assert!(
        table.contains("10.1.0.7"),
        "backend endpoint resolved: {table}"
    );
    assert!(
        table.contains("203.0.113.9"),
        "Gateway address from the Service: {table}"
    );

    api.apply(route("api", "/api", json!([])));
    let s = next_state(&mut states, |s| s.resources.http_routes.len() == 2).await;
    assert_eq!(served_paths(&s), ["/api", "/web"]);

    api.delete(GW, "HTTPRoute", "apps", "web");
    let s = next_state(&mut states, |s| s.resources.http_routes.len() == 1).await;
    assert_eq!(served_paths(&s), ["/api"]);
    let health = controller.health().borrow().clone();
    assert!(health.synced && health.connected(), "{health}");
}

#[tokio::test]
async fn status_is_applied_with_our_field_manager_and_keeps_other_controllers_entries() {
    let api = FakeApi::start().await;
    seed(&api);
    let theirs = json!({"parentRef": {"name": "other-gw", "namespace": "infra"},
                        "controllerName": "example.com/other",
                        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                                        "message": "theirs", "observedGeneration": 1,
                                        "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
    api.apply(route("web", "/web", json!([theirs.clone()])));
    let controller = Controller::start(api.client(), config());
    let mut states = controller.states();
    let s = next_state(&mut states, |_| true).await;
    let compiled = gw_model::compile(&s.resources, &s.compile_options(CONTROLLER));
    controller.report_status(compiled.status);

    eventually("route status written", || {
        api.get(GW, "HTTPRoute", "apps", "web").is_some_and(|r| {
            r["status"]["parents"]
                .as_array()
                .is_some_and(|p| p.len() == 2)
        })
    })
    .await;
    let patches = api.status_patches();
    let route_patch = patches
        .iter()
        .find(|p| {
            p.path == "/apis/gateway.networking.k8s.io/v1/namespaces/apps/httproutes/web/status"
        })
        .expect("route status patch");
    assert_eq!(route_patch.content_type, "application/apply-patch+yaml");
    assert_eq!(
        route_patch.query_param("fieldManager").as_deref(),
        Some("gw.dev/gateway")
    );
    assert_eq!(route_patch.query_param("force").as_deref(), Some("true"));
    let body = &route_patch.body;
    assert_eq!(body["apiVersion"], GW);
    assert_eq!(body["kind"], "HTTPRoute");
    assert_eq!(body["metadata"]["name"], "web");
    assert!(
        body["metadata"]["resourceVersion"].is_string(),
        "optimistic concurrency on the atomic list"
    );
    assert!(body.get("spec").is_none(), "only status is applied");
    let parents = body["status"]["parents"].as_array().unwrap();
    assert_eq!(
        parents[0], theirs,
        "the other controller's entry is sent back unchanged"
    );
    assert_eq!(parents[1]["controllerName"], CONTROLLER);
    assert_eq!(parents[1]["parentRef"]["name"], "edge");
    let accepted = &parents[1]["conditions"][0];
    assert_eq!(
        (accepted["type"].as_str(), accepted["status"].as_str()),
        (Some("Accepted"), Some("True"))
    );
    assert!(
        accepted["lastTransitionTime"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z') && !t.contains('.'))
    );

    // The GatewayClass and the Gateway (with the Service's load balancer address).
    eventually("gateway status written", || {
        api.get(GW, "Gateway", "infra", "edge")
            .is_some_and(|g| g["status"]["addresses"][0]["value"] == "203.0.113.9")
    })
    .await;
    let class = api.get(GW, "GatewayClass", "", "gw").unwrap();
    assert_eq!(class["status"]["conditions"][0]["type"], "Accepted");
    assert_eq!(class["status"]["conditions"][0]["status"], "True");
    let gw_patch = api
        .status_patches()
        .into_iter()
        .find(|p| p.path == "/apis/gateway.networking.k8s.io/v1/gatewayclasses/gw/status")
        .expect("class status patch");
    assert_eq!(
        gw_patch.query_param("fieldManager").as_deref(),
        Some("gw.dev/gateway")
    );

    // Once the cluster shows the status, nothing more is sent.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let settled = api.status_patches().len();
    let s = next_state(&mut states, |_| true).await;
    controller
        .report_status(gw_model::compile(&s.resources, &s.compile_options(CONTROLLER)).status);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        api.status_patches().len(),
        settled,
        "no write when status is current"
    );
}

#[tokio::test]
async fn status_conflicts_are_retried() {
    let api = FakeApi::start().await;
    seed(&api);
    let controller = Controller::start(api.client(), config());
    let mut states = controller.states();
    let s = next_state(&mut states, |_| true).await;
    // The first three status writes answer 409 Conflict.
    api.script_status_failures(&[409, 409, 409]);
    controller
        .report_status(gw_model::compile(&s.resources, &s.compile_options(CONTROLLER)).status);
    eventually("route status written after conflicts", || {
        api.get(GW, "HTTPRoute", "apps", "web")
            .is_some_and(|r| r["status"]["parents"][0]["controllerName"] == CONTROLLER)
    })
    .await;
    eventually("gateway class written", || {
        api.get(GW, "GatewayClass", "", "gw")
            .is_some_and(|c| c["status"]["conditions"][0]["status"] == "True")
    })
    .await;
    assert!(
        api.status_patches().len() >= 6,
        "three conflicts, then the three objects"
    );
    assert!(controller.health().borrow().status_error.is_none());
}

#[tokio::test]
async fn a_relist_after_410_gone_recovers_without_dropping_objects() {
    let api = FakeApi::start().await;
    seed(&api);
    let controller = Controller::start(api.client(), config());
    let mut states = controller.states();
    next_state(&mut states, |_| true).await;
    // Record every state published from now on.
    let mut watcher = controller.states();
    let seen = tokio::spawn(async move {
        let mut counts = Vec::new();
        while watcher.changed().await.is_ok() {
            if let Some(s) = watcher.borrow_and_update().clone() {
                counts.push((s.resources.http_routes.len(), s.resources.gateways.len()));
                if s.resources.http_routes.len() == 2 {
                    break;
                }
            }
        }
        counts
    });
    // A change the open watches never see, then every watch expires: only a relist finds it.
    api.apply_unseen(route("late", "/late", json!([])));
    api.expire_watches();
    let s = next_state(&mut states, |s| s.resources.http_routes.len() == 2).await;
    assert_eq!(served_paths(&s), ["/late", "/web"]);
    let counts = tokio::time::timeout(Duration::from_secs(5), seen)
        .await
        .unwrap()
        .unwrap();
    assert!(
        counts
            .iter()
            .all(|(routes, gateways)| *routes >= 1 && *gateways == 1),
        "no state lost objects during the relist: {counts:?}"
    );
}

#[tokio::test]
async fn an_unreachable_api_server_keeps_the_last_state_and_recovers() {
    let mut api = FakeApi::start().await;
    seed(&api);
    let controller = Controller::start(api.client(), config());
    let mut states = controller.states();
    let before = next_state(&mut states, |_| true).await;
    let mut health = controller.health();

    api.stop();
    tokio::time::timeout(Duration::from_secs(10), health.wait_for(|h| !h.connected()))
        .await
        .expect("health reports the API server unreachable")
        .unwrap();
    let h = controller.health().borrow().clone();
    assert!(h.synced, "still serving what it had: {h}");
    // The last state stays published.
    let current = states.borrow().clone().unwrap();
    assert_eq!(current.version, before.version);
    assert_eq!(served_paths(&current), ["/web"]);

    // Changes made while it was away arrive once it is back.
    api.apply_unseen(route("api", "/api", json!([])));
    api.restart().await;
    let s = next_state(&mut states, |s| s.resources.http_routes.len() == 2).await;
    assert_eq!(served_paths(&s), ["/api", "/web"]);
    tokio::time::timeout(Duration::from_secs(10), health.wait_for(|h| h.connected()))
        .await
        .expect("health recovers")
        .unwrap();
}

#[tokio::test]
async fn initial_sync_waits_for_required_kinds() {
    let api = FakeApi::start().await;
    seed(&api);
    // Gateway API CRDs not installed: no state, and health says why.
    api.not_served(GW, "Gateway");
    let controller = Controller::start(api.client(), config());
    let mut health = controller.health();
    tokio::time::timeout(
        Duration::from_secs(10),
        health.wait_for(|h| h.failing.contains_key("Gateway")),
    )
    .await
    .unwrap()
    .unwrap();
    let h = controller.health().borrow().clone();
    assert!(!h.synced && h.waiting_for == ["Gateway"], "{h}");
    assert!(
        h.to_string()
            .contains("waiting for the initial list of Gateway"),
        "{h}"
    );
    assert!(controller.states().borrow().is_none());
}

#[tokio::test]
async fn one_replica_holds_the_lease_and_writes_status() {
    let api = FakeApi::start().await;
    seed(&api);
    let election = |id: &str| {
        let mut e = LeaderElection::new("gw-system", "gw-gateway-status", id);
        e.lease_duration = Duration::from_millis(600);
        e.retry_period = Duration::from_millis(50);
        e
    };
    let mut ca = config();
    ca.leader_election = Some(election("pod-a"));
    let a = Controller::start(api.client(), ca);
    let mut a_leader = a.leader();
    tokio::time::timeout(Duration::from_secs(5), a_leader.wait_for(|l| *l))
        .await
        .unwrap()
        .unwrap();
    let mut cb = config();
    cb.leader_election = Some(election("pod-b"));
    let b = Controller::start(api.client(), cb);
    let mut b_states = b.states();
    let s = next_state(&mut b_states, |_| true).await;
    b.report_status(gw_model::compile(&s.resources, &s.compile_options(CONTROLLER)).status);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!*b.leader().borrow(), "the Lease is held by pod-a");
    assert!(
        api.status_patches().is_empty(),
        "a standby replica writes no status"
    );
    let lease = api
        .get(
            "coordination.k8s.io/v1",
            "Lease",
            "gw-system",
            "gw-gateway-status",
        )
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "pod-a");

    // pod-a goes away and releases the Lease: pod-b takes over and writes status.
    a.shutdown().await;
    let mut b_leader = b.leader();
    tokio::time::timeout(Duration::from_secs(5), b_leader.wait_for(|l| *l))
        .await
        .unwrap()
        .unwrap();
    eventually("status written by the new leader", || {
        !api.status_patches().is_empty()
    })
    .await;
    let lease = api
        .get(
            "coordination.k8s.io/v1",
            "Lease",
            "gw-system",
            "gw-gateway-status",
        )
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "pod-b");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
}
