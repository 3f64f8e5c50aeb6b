//! End-to-end tests of backend resilience through `gw-gateway`, configured in YAML: session
//! persistence by cookie (HTTPRoute rule) and by header (XBackendTrafficPolicy), retry budgets
//! (XBackendTrafficPolicy `retryConstraint`), and outlier detection (`--outlier-*` flags).
//!
//! Each test runs several gw-echo backends on their own loopback addresses with one port (as
//! pods of one Service), each reporting its own pod name.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::{Gateway, free_port};
use serde_json::Value;

/// A response: status, headers (lower-case names), body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The pod that answered (gw-echo's JSON `"pod"`).
    fn pod(&self) -> String {
        serde_json::from_str::<Value>(&self.body)
            .ok()
            .and_then(|v| v["pod"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// `GET path` over a fresh connection with extra request headers.
fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Option<Reply> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(Reply {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// Echo servers `pod-1..=n` on `127.0.<net>.1..=n`, all on one port.
fn echoes(rt: &tokio::runtime::Runtime, net: u8, n: u8) -> (Vec<gw_echo::EchoServer>, u16) {
    let port = free_port();
    let servers = (1..=n)
        .map(|i| {
            let config = gw_echo::EchoConfig {
                http: Some(SocketAddr::from(([127, 0, net, i], port))),
                ..gw_echo::EchoConfig::loopback_http(format!("pod-{i}"), "default")
            };
            rt.block_on(gw_echo::EchoServer::start(config))
                .expect("echo")
        })
        .collect();
    (servers, port)
}

/// GatewayClass, Gateway `edge` on `port`, Service `web` with endpoints `ips` on `echo_port`.
fn base(port: u16, ips: &[IpAddr], echo_port: u16) -> String {
    let addresses: Vec<String> = ips
        .iter()
        .map(|ip| format!("{{addresses: [{ip}]}}"))
        .collect();
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: gw}}
spec: {{controllerName: gw.dev/gateway}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: default}}
spec:
  gatewayClassName: gw
  listeners: [{{name: http, port: {port}, protocol: HTTP}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-1, namespace: default, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: http, port: {echo_port}}}]
endpoints: [{}]
",
        addresses.join(", ")
    )
}

fn ips(net: u8, n: u8) -> Vec<IpAddr> {
    (1..=n).map(|i| IpAddr::from([127, 0, net, i])).collect()
}

/// Waits until `path` answers `status`.
fn wait_for(addr: SocketAddr, path: &str, status: u16, gw: &Gateway) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if get(addr, path, &[]).is_some_and(|r| r.status == status) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never answered {status}; log:\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The `Accepted` condition (status, reason) of each ancestor of a policy in `/status`.
fn policy_ancestors(gw: &Gateway, name: &str) -> Vec<(String, String, String, String)> {
    // Routing swaps before /status is published: wait for the policy to show up.
    let status = gw.wait_until(name, |s| {
        s["items"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|i| i["kind"] == "XBackendTrafficPolicy" && i["metadata"]["name"] == name)
    });
    let item = status["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["kind"] == "XBackendTrafficPolicy" && i["metadata"]["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name} in {status}"));
    assert_eq!(item["apiVersion"], "gateway.networking.x-k8s.io/v1alpha1");
    item["status"]["ancestors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let c = &a["conditions"][0];
            (
                a["ancestorRef"]["kind"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                a["ancestorRef"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                c["status"].as_str().unwrap_or_default().to_owned(),
                c["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// GEP-1619 on an HTTPRoute rule: the first response sets a cookie; requests that carry it all
/// go to the same pod, while requests without it are spread over every pod.
#[test]
fn sticky_sessions_by_cookie_across_echo_endpoints() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (servers, echo_port) = echoes(&rt, 70, 3);
    let gw = Gateway::start("sticky-cookie", "127.0.71.0/24");
    let port = free_port();
    let yaml = format!(
        "{}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: default}}
spec:
  parentRefs: [{{name: edge}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /app}}}}]
    backendRefs: [{{name: web, port: 80}}]
    sessionPersistence: {{sessionName: gw-sticky, absoluteTimeout: 1h}}
  - matches: [{{path: {{type: PathPrefix, value: /plain}}}}]
    backendRefs: [{{name: web, port: 80}}]
",
        base(port, &ips(70, 3), echo_port)
    );
    std::fs::write(gw.config().join("all.yaml"), yaml).expect("write");
    let addr: SocketAddr = format!("127.0.71.1:{port}").parse().expect("addr");
    wait_for(addr, "/app", 200, &gw);

    // Without a session, round robin visits every pod.
    let pods: BTreeSet<String> = (0..6)
        .filter_map(|_| get(addr, "/plain", &[]))
        .map(|r| r.pod())
        .collect();
    assert_eq!(pods.len(), 3, "{pods:?}");

    let first = get(addr, "/app/x", &[]).expect("first");
    let set_cookie = first.header("set-cookie").expect("Set-Cookie").to_owned();
    assert!(set_cookie.starts_with("gw-sticky="), "{set_cookie}");
    // A session cookie (no Max-Age/Expires), scoped to the rule's path.
    assert!(
        set_cookie.contains("Path=/app") && !set_cookie.contains("Max-Age"),
        "{set_cookie}"
    );
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
    let cookie = set_cookie.split(';').next().expect("pair").to_owned();
    let pod = first.pod();
    for _ in 0..20 {
        let r = get(addr, "/app/y", &[("cookie", &format!("other=1; {cookie}"))]).expect("reply");
        assert_eq!(r.status, 200);
        assert_eq!(r.pod(), pod, "the session moved");
        assert!(
            r.header("set-cookie").is_none(),
            "an unchanged session is not set again"
        );
    }
    // A forged cookie is not honoured: a new session is set.
    let forged = get(
        addr,
        "/app",
        &[(
            "cookie",
            "gw-sticky=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )],
    )
    .expect("reply");
    assert!(forged.header("set-cookie").is_some());
    drop(gw);
    for s in servers {
        rt.block_on(s.shutdown());
    }
}

/// GEP-1619 header sessions from an XBackendTrafficPolicy on the Service, with its GEP-713
/// status; a policy on a missing Service is TargetNotFound, a conflicting younger one
/// Conflicted, an invalid one Invalid, and none of them changes the traffic.
#[test]
fn header_sessions_from_a_backend_traffic_policy() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (servers, echo_port) = echoes(&rt, 72, 3);
    let gw = Gateway::start("sticky-header", "127.0.73.0/24");
    let port = free_port();
    let yaml = format!(
        "{}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: default}}
spec:
  parentRefs: [{{name: edge}}]
  rules:
  - backendRefs: [{{name: web, port: 80}}]
---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: {{name: sessions, namespace: default, creationTimestamp: '2024-01-01T00:00:00Z'}}
spec:
  targetRefs: [{{group: '', kind: Service, name: web}}]
  sessionPersistence: {{type: Header, sessionName: x-gw-session, idleTimeout: 10m}}
---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: {{name: younger, namespace: default, creationTimestamp: '2025-01-01T00:00:00Z'}}
spec:
  targetRefs: [{{group: '', kind: Service, name: web}}]
  sessionPersistence: {{type: Cookie}}
---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: {{name: broken, namespace: default}}
spec:
  targetRefs: [{{group: '', kind: Service, name: web}}]
  sessionPersistence: {{type: Header, cookieConfig: {{lifetimeType: Permanent}}}}
---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: {{name: nowhere, namespace: default}}
spec:
  targetRefs: [{{group: '', kind: Service, name: missing}}]
  retryConstraint: {{}}
",
        base(port, &ips(72, 3), echo_port)
    );
    std::fs::write(gw.config().join("all.yaml"), yaml).expect("write");
    let addr: SocketAddr = format!("127.0.73.1:{port}").parse().expect("addr");
    wait_for(addr, "/", 200, &gw);

    let gateway = |status: &str, reason: &str| {
        vec![(
            "Gateway".to_owned(),
            "edge".to_owned(),
            status.to_owned(),
            reason.to_owned(),
        )]
    };
    assert_eq!(
        policy_ancestors(&gw, "sessions"),
        gateway("True", "Accepted")
    );
    assert_eq!(
        policy_ancestors(&gw, "younger"),
        gateway("False", "Conflicted")
    );
    assert_eq!(policy_ancestors(&gw, "broken"), gateway("False", "Invalid"));
    assert_eq!(
        policy_ancestors(&gw, "nowhere"),
        vec![(
            "Service".to_owned(),
            "missing".to_owned(),
            "False".to_owned(),
            "TargetNotFound".to_owned()
        )]
    );

    let first = get(addr, "/", &[]).expect("first");
    assert!(
        first.header("set-cookie").is_none(),
        "the younger policy lost"
    );
    let token = first
        .header("x-gw-session")
        .expect("session header")
        .to_owned();
    let pod = first.pod();
    for _ in 0..20 {
        let r = get(addr, "/", &[("x-gw-session", &token)]).expect("reply");
        assert_eq!(r.pod(), pod, "the session moved");
        // With an idle timeout, every response renews the session.
        assert!(r.header("x-gw-session").is_some());
    }
    let pods: BTreeSet<String> = (0..6)
        .filter_map(|_| get(addr, "/", &[]))
        .map(|r| r.pod())
        .collect();
    assert_eq!(
        pods.len(),
        3,
        "without the header requests are balanced: {pods:?}"
    );
    drop(gw);
    for s in servers {
        rt.block_on(s.shutdown());
    }
}

/// GEP-3388: with a retry budget on the Service, a flaky backend gets fewer retries, and a
/// refused retry is answered 503 ("After the retry budget has been exceeded, additional retries
/// to the backend MUST return a 503 response to the client").
///
/// The backend is gw-echo's retry simulator: each request (its own `uuid`) fails once with 500
/// and succeeds when retried.
#[test]
fn retry_budget_exhaustion_means_fewer_retries() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (servers, echo_port) = echoes(&rt, 74, 1);
    let log = servers[0].log();
    let gw = Gateway::start("retry-budget", "127.0.75.0/24");
    let port = free_port();
    let route = "---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: default}
spec:
  parentRefs: [{name: edge}]
  rules:
  - backendRefs: [{name: web, port: 80}]
    retry: {codes: [500], attempts: 3, backoff: 1ms}
";
    let policy = "---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: {name: budget, namespace: default}
spec:
  targetRefs: [{group: '', kind: Service, name: web}]
  retryConstraint:
    budget: {percent: 0, interval: 1m}
    minRetryRate: {count: 2, interval: 1h}
";
    let base = base(port, &ips(74, 1), echo_port);
    let addr: SocketAddr = format!("127.0.75.1:{port}").parse().expect("addr");
    let succeeded = || log.count_containing("Echoing back request made to /retry");
    let flaky = |phase: &str| -> Vec<u16> {
        (0..5)
            .filter_map(|i| {
                let path = format!("/retry/x?uuid={phase}-{i}&succeedAfter=1&responseCode=500");
                get(addr, &path, &[]).map(|r| r.status)
            })
            .collect()
    };

    // Without a budget: every request is retried and succeeds.
    std::fs::write(gw.config().join("all.yaml"), format!("{base}{route}")).expect("write");
    wait_for(addr, "/status/200", 200, &gw);
    let before = succeeded();
    assert_eq!(flaky("free"), vec![200; 5]);
    assert_eq!(succeeded() - before, 5);

    // With the budget: 2 retries in the whole hour (the minimum rate), then every due retry is
    // refused with 503.
    std::fs::write(
        gw.config().join("all.yaml"),
        format!("{base}{route}{policy}"),
    )
    .expect("write");
    gw.wait_until("the budget", |s| {
        s["items"].as_array().into_iter().flatten().any(|i| {
            i["kind"] == "XBackendTrafficPolicy"
                && i["status"]["ancestors"][0]["conditions"][0]["reason"] == "Accepted"
        })
    });
    // (gw-gateway publishes status after the new routes are installed.)
    let before = succeeded();
    assert_eq!(flaky("budget"), vec![200, 200, 503, 503, 503]);
    assert_eq!(
        succeeded() - before,
        2,
        "only two retries reached the backend"
    );
    drop(gw);
    for s in servers {
        rt.block_on(s.shutdown());
    }
}

/// Outlier detection (`--outlier-*`): an endpoint that fails is ejected and the others take its
/// traffic; after the ejection time it gets requests again.
#[test]
fn a_failing_endpoint_is_ejected_and_comes_back() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // pod-1 answers; 127.0.76.2 has nothing listening yet (connections are refused).
    let (servers, echo_port) = echoes(&rt, 76, 1);
    let gw = Gateway::start_with(
        "outlier",
        "127.0.77.0/24",
        &[
            "--outlier-consecutive-failures",
            "1",
            "--outlier-base-ejection-time",
            "1s",
            "--outlier-max-ejection-percent",
            "50",
        ],
    );
    let port = free_port();
    let yaml = format!(
        "{}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: default}}
spec:
  parentRefs: [{{name: edge}}]
  rules:
  - backendRefs: [{{name: web, port: 80}}]
",
        base(port, &ips(76, 2), echo_port)
    );
    std::fs::write(gw.config().join("all.yaml"), yaml).expect("write");
    let addr: SocketAddr = format!("127.0.77.1:{port}").parse().expect("addr");
    wait_for(addr, "/", 200, &gw);

    // At most one request meets the dead endpoint; then it is ejected.
    let failures = (0..20)
        .filter_map(|_| get(addr, "/", &[]))
        .filter(|r| r.status != 200)
        .count();
    assert!(failures <= 1, "{failures} requests failed");

    // The endpoint comes to life; after the ejection time it is used again.
    let config = gw_echo::EchoConfig {
        http: Some(SocketAddr::from(([127, 0, 76, 2], echo_port))),
        ..gw_echo::EchoConfig::loopback_http("pod-2", "default")
    };
    let revived = rt
        .block_on(gw_echo::EchoServer::start(config))
        .expect("echo");
    std::thread::sleep(Duration::from_millis(1100));
    let pods: BTreeSet<String> = (0..6)
        .filter_map(|_| get(addr, "/", &[]))
        .filter(|r| r.status == 200)
        .map(|r| r.pod())
        .collect();
    assert_eq!(
        pods,
        BTreeSet::from(["pod-1".to_owned(), "pod-2".to_owned()])
    );
    drop(gw);
    rt.block_on(revived.shutdown());
    for s in servers {
        rt.block_on(s.shutdown());
    }
}
