//! TrafficPolicy layers in the router: where they run, what they share, gRPC answers, and a
//! policy the router cannot build.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{GATEWAY, addr, call, echo, echoed, echoed_header, get, router, service};
use http::StatusCode;

fn yaml(backend: &str, policies: &str) -> String {
    format!(
        r#"{GATEWAY}{backend}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: default}}
spec:
  parentRefs: [{{name: edge}}]
  hostnames: [example.com]
  rules:
  - name: a
    matches: [{{path: {{value: /a}}}}]
    filters: [{{type: RequestHeaderModifier, requestHeaderModifier: {{set: [{{name: x-filter, value: ran}}]}}}}]
    backendRefs: [{{name: web, port: 8080}}]
  - name: b
    matches: [{{path: {{value: /b}}}}]
    backendRefs: [{{name: web, port: 8080}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {{name: rpc, namespace: default}}
spec:
  parentRefs: [{{name: edge}}]
  hostnames: [grpc.example.com]
  rules: [{{name: all, backendRefs: [{{name: web, port: 8080}}]}}]
{policies}"#
    )
}

const KEYS: &str = "
---
apiVersion: v1
kind: Secret
metadata: {name: keys, namespace: default}
stringData: {ci: k-1}
";

// The layers run after matching and before the rule's filters and backends: a refused request
// never reaches the filters; an accepted one gets them.
#[tokio::test]
async fn policy_runs_before_filters_and_backends() {
    let e = echo("web-1").await;
    let policies = format!(
        "{KEYS}---
apiVersion: policy.gw.dev/v1alpha1
kind: TrafficPolicy
metadata: {{name: keys, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: web, sectionName: a}}]
  default: {{apiKeyAuth: {{credentialRefs: [{{name: keys}}]}}}}
"
    );
    let r = router(&yaml(&service("web", &[addr(&e)], None), &policies));
    let resp = call(&r, get("/a", "example.com")).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let req = common::req("GET", "/a", "example.com")
        .header("x-api-key", "k-1")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let (parts, json) = echoed(call(&r, req).await).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(echoed_header(&json, "X-Filter").as_deref(), Some("ran"));
    assert_eq!(echoed_header(&json, "X-Api-Key"), None);
    // Rule b has no policy.
    assert_eq!(
        call(&r, get("/b", "example.com")).await.status(),
        StatusCode::OK
    );
    e.shutdown().await;
}

// A limit attached to a route is shared by its rules (one bucket per policy and target), and
// a gRPC request refused by a layer gets a gRPC status, not an HTTP error.
#[tokio::test]
async fn shared_buckets_and_grpc_answers() {
    let policies = "
---
apiVersion: policy.gw.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: limit, namespace: default}
spec:
  targetRefs:
  - {group: gateway.networking.k8s.io, kind: HTTPRoute, name: web}
  - {group: gateway.networking.k8s.io, kind: GRPCRoute, name: rpc}
  default: {rateLimit: {requests: 1, unit: Hour}}
";
    // No endpoints: a request that passes the policy gets 503, one that does not gets 429.
    let r = router(&yaml(&service("web", &[], None), policies));
    assert_eq!(
        call(&r, get("/a", "example.com")).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let limited = call(&r, get("/b", "example.com")).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["retry-after"], "3600");

    let grpc = || {
        common::req("POST", "/pkg.Svc/Call", "grpc.example.com")
            .header("content-type", "application/grpc")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    // The GRPCRoute is another target: its own bucket.
    let first = call(&r, grpc()).await;
    assert_eq!(
        first.headers()["grpc-status"],
        "14",
        "UNAVAILABLE: no endpoints"
    );
    let second = call(&r, grpc()).await;
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(second.headers()["grpc-status"], "8", "RESOURCE_EXHAUSTED");
    assert_eq!(second.headers()["retry-after"], "3600");
}

// Compiled without the router's validator, gw-model cannot tell that an MD5 htpasswd file is
// unusable; the router then fails closed (500) instead of letting requests through.
#[tokio::test]
async fn a_policy_the_router_cannot_build_fails_closed() {
    let policies = "
---
apiVersion: v1
kind: Secret
metadata: {name: users, namespace: default}
stringData: {.htpasswd: 'alice:$apr1$Zr8lH5Yk$VdxvZ8C2m9VqZL1xv7Tk5/'}
---
apiVersion: policy.gw.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: md5, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: web}]
  default: {basicAuth: {secretRef: {name: users}}}
";
    let r = router(&yaml(&service("web", &[], None), policies));
    assert_eq!(
        call(&r, get("/a", "example.com")).await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    // With the validator, the policy is Invalid and changes nothing.
    let text = yaml(&service("web", &[], None), policies);
    let loaded = gw_router::gw_model::load::parse("t.yaml", &text);
    let mut res = gw_router::gw_model::resources::Resources::new();
    res.extend(loaded.objects);
    let options = gw_router::gw_model::CompileOptions {
        policy_validator: Some(gw_router::policy_validator()),
        ..gw_router::gw_model::CompileOptions::new("gw.dev/gateway")
    };
    let compiled = gw_router::gw_model::compile(&res, &options);
    let list = compiled.status.to_list();
    let policy = list["items"]
        .as_array()
        .and_then(|i| i.iter().find(|i| i["kind"] == "TrafficPolicy"))
        .expect("policy status");
    assert_eq!(
        policy["status"]["ancestors"][0]["conditions"][0]["reason"],
        "Invalid"
    );
    let r = gw_router::Router::new(gw_router::RouterConfig::default());
    r.swap(gw_router::Routes::build(&compiled.table));
    assert_eq!(
        call(&r, get("/a", "example.com")).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

// The transformation layer runs after authentication and before the rule's filters: its CEL
// expressions see the validated request as it reached the policy (not the filters' edits), and
// its path rewrite is what the backend gets.
#[tokio::test]
async fn transformation_runs_after_auth_and_before_filters() {
    let e = echo("web-1").await;
    let policies = format!(
        r#"{KEYS}---
apiVersion: policy.gw.dev/v1alpha1
kind: TrafficPolicy
metadata: {{name: cel, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: web, sectionName: a}}]
  default:
    apiKeyAuth: {{credentialRefs: [{{name: keys}}]}}
    transformation:
      request:
        set: [{{name: x-filter-seen, value: '"x-filter" in request.headers ? "yes" : "no"'}}]
        path: '"/v2" + request.path'
      response:
        set: [{{name: x-path, value: request.path}}]
"#
    );
    let r = router(&yaml(&service("web", &[addr(&e)], None), &policies));
    // Refused by the API key layer: the transformation never ran.
    let refused = call(&r, get("/a", "example.com")).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.headers().get("x-path").is_none());
    let req = common::req("GET", "/a?q=1", "example.com")
        .header("x-api-key", "k-1")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let (parts, json) = echoed(call(&r, req).await).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(parts.headers["x-path"], "/a");
    assert_eq!(json["path"], "/v2/a?q=1");
    assert_eq!(echoed_header(&json, "X-Filter-Seen").as_deref(), Some("no"));
    assert_eq!(echoed_header(&json, "X-Filter").as_deref(), Some("ran"));
    e.shutdown().await;
}

// With the router's validator, a CEL expression that does not compile makes the policy
// Invalid with the compiler's message (and nothing panics); a valid one and an extAuth whose
// settings the router can use are accepted.
#[test]
fn the_validator_compiles_cel_and_ext_auth_settings() {
    let status = |policies: &str| {
        let text = yaml(&service("web", &[], None), policies);
        let loaded = gw_router::gw_model::load::parse("t.yaml", &text);
        let mut res = gw_router::gw_model::resources::Resources::new();
        res.extend(loaded.objects);
        let options = gw_router::gw_model::CompileOptions {
            policy_validator: Some(gw_router::policy_validator()),
            ..gw_router::gw_model::CompileOptions::new("gw.dev/gateway")
        };
        let list = gw_router::gw_model::compile(&res, &options)
            .status
            .to_list();
        list["items"]
            .as_array()
            .and_then(|i| i.iter().find(|i| i["kind"] == "TrafficPolicy"))
            .expect("policy status")["status"]["ancestors"][0]["conditions"][0]
            .clone()
    };
    let policy = |section: &str| {
        format!(
            "---
apiVersion: policy.gw.dev/v1alpha1
kind: TrafficPolicy
metadata: {{name: p, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: web}}]
  default: {{{section}}}
"
        )
    };
    let bad = status(&policy(
        "transformation: {response: {set: [{name: x-a, value: 'request.path + ('}]}}",
    ));
    assert_eq!(bad["reason"], "Invalid");
    let message = bad["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("default.transformation: CEL expression \"request.path + (\""),
        "{message}"
    );
    // `response` is for response headers only.
    let bad = status(&policy(
        "transformation: {request: {set: [{name: x-a, value: 'string(response.code)'}]}}",
    ));
    assert_eq!(bad["reason"], "Invalid");
    let good = status(&policy(
        "transformation: {request: {set: [{name: x-a, value: 'request.path'}]}}",
    ));
    assert_eq!(good["reason"], "Accepted", "{good}");
    let auth = status(&policy(
        "extAuth: {protocol: GRPC, backendRef: {name: web, port: 8080}, timeout: 1s, failOpen: true, forwardBody: {maxSize: 1024}}",
    ));
    assert_eq!(auth["reason"], "Accepted", "{auth}");
}
