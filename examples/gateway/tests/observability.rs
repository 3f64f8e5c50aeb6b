//! Access logs, trace context, metrics and the route explainer of the `gw-gateway` binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Gateway, free_port, http_get, temp_dir, web_backend};
use serde_json::Value;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn manifests(port: u16, echo_port: u16) -> String {
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
  listeners: [{{name: web, port: {port}, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: shop, namespace: default}}
spec:
  parentRefs: [{{name: edge}}]
  hostnames: [shop.example.com]
  rules:
  - name: cart
    matches: [{{path: {{type: Exact, value: /cart}}}}]
    backendRefs: [{{name: web, port: 80}}]
  - matches:
    - path: {{type: PathPrefix, value: /cart}}
    - path: {{type: PathPrefix, value: /v2}}
      headers: [{{name: x-version, value: '2'}}]
    backendRefs: [{{name: web, port: 80}}]
---
{}",
        web_backend(echo_port)
    )
}

/// GET with extra headers over a fresh connection: status and the whole response.
fn get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let extra: String = headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}\r\n"))
        .collect();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    Some((text.split(' ').nth(1)?.parse().ok()?, text))
}

/// The value of a sample in Prometheus text, by metric name and label subset.
fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
        if n != name {
            return None;
        }
        let all = labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        all.then(|| value.parse().ok()).flatten()
    })
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn access_log_trace_context_metrics_and_explain() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let echo = rt
        .block_on(gw_echo::EchoServer::start(
            gw_echo::EchoConfig::loopback_http("web-1", "default"),
        ))
        .unwrap();
    let echo_port = echo.http_addr().unwrap().port();
    let gw = Gateway::start_with("observability", "127.0.46.0/24", &["--access-log", "json"]);
    let port = free_port();
    std::fs::write(gw.config().join("all.yaml"), manifests(port, echo_port)).unwrap();
    let addr: SocketAddr = format!("127.0.46.1:{port}").parse().unwrap();
    wait_for("the route to serve", || {
        get(addr, "shop.example.com", "/cart", &[]).filter(|(c, _)| *c == 200)
    });

    // A request with a trace context: the backend sees the same trace with the gateway's span.
    let (code, resp) = get(
        addr,
        "shop.example.com",
        "/cart",
        &[("traceparent", TRACEPARENT), ("tracestate", "vendor=1")],
    )
    .unwrap();
    assert_eq!(code, 200);
    assert!(resp.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{resp}");
    assert!(resp.contains("vendor=1"), "{resp}");
    let (code, _) = get(addr, "shop.example.com", "/nothing", &[]).unwrap();
    assert_eq!(code, 404);

    // The access log: one JSON object per request, with route, rule, backend and timings.
    let lines: Vec<Value> = wait_for("the access log lines", || {
        let lines: Vec<Value> = gw
            .access_log()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let traced = lines
            .iter()
            .any(|l| l["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736");
        let missed = lines.iter().any(|l| l["path"] == "/nothing");
        (traced && missed).then_some(lines)
    });
    let line = lines
        .iter()
        .find(|l| l["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736")
        .unwrap();
    assert_eq!(line["message"], "request", "{line}");
    assert!(
        line["timestamp"].as_str().is_some_and(|t| !t.is_empty()),
        "{line}"
    );
    assert_eq!(line["method"], "GET");
    assert_eq!(line["host"], "shop.example.com");
    assert_eq!(line["path"], "/cart");
    assert_eq!(line["protocol"], "HTTP/1.1");
    assert_eq!(line["status"], 200);
    assert!(line["bytes"].as_u64().is_some_and(|b| b > 0), "{line}");
    assert!(
        line["duration_ms"].as_f64().is_some_and(|d| d > 0.0),
        "{line}"
    );
    assert!(
        line["upstream_ms"].as_f64().is_some_and(|d| d > 0.0),
        "{line}"
    );
    assert!(
        line["client"]
            .as_str()
            .is_some_and(|c| c.starts_with("127.0.0.1:")),
        "{line}"
    );
    assert_eq!(line["gateway"], "default/edge");
    assert_eq!(line["listener"], "web");
    assert_eq!(line["route"], "default/shop");
    assert_eq!(line["rule"], "cart");
    assert_eq!(line["backend"], "default/web:80");
    assert_eq!(line["attempts"], 1);
    assert_eq!(line["upstream_addr"], format!("127.0.0.1:{echo_port}"));
    let missed = lines.iter().find(|l| l["path"] == "/nothing").unwrap();
    assert_eq!(missed["status"], 404);
    assert_eq!(missed["listener"], "web");
    assert!(missed.get("route").is_none(), "{missed}");
    assert_eq!(missed["trace_id"].as_str().map(str::len), Some(32));

    // Metrics: requests by route, rule, backend and code; histograms; reloads; connections.
    let (code, metrics) = gw.get("/metrics").unwrap();
    assert_eq!(code, 200);
    let cart = [
        ("gateway", "default/edge"),
        ("listener", "web"),
        ("route", "default/shop"),
        ("rule", "cart"),
        ("backend", "default/web:80"),
    ];
    let count = |code: &str| {
        let mut labels = cart.to_vec();
        labels.push(("code", code));
        sample(&metrics, "gw_requests_total", &labels)
    };
    // The readiness probe loop and the traced request, all 200.
    let ok = count("200").unwrap_or_else(|| panic!("{metrics}"));
    assert!(ok >= 2.0, "{metrics}");
    assert_eq!(
        sample(
            &metrics,
            "gw_requests_total",
            &[("listener", "web"), ("route", ""), ("code", "404")]
        ),
        Some(1.0),
        "{metrics}"
    );
    let histogram_count = sample(&metrics, "gw_request_duration_seconds_count", &cart).unwrap();
    assert_eq!(histogram_count, ok);
    let mut inf = cart.to_vec();
    inf.push(("le", "+Inf"));
    assert_eq!(
        sample(&metrics, "gw_request_duration_seconds_bucket", &inf),
        Some(ok)
    );
    assert_eq!(
        sample(&metrics, "gw_upstream_duration_seconds_count", &cart),
        Some(ok)
    );
    assert!(
        sample(
            &metrics,
            "gw_config_reloads_total",
            &[("result", "success")]
        )
        .unwrap()
            >= 2.0
    );
    assert_eq!(
        sample(&metrics, "gw_config_reloads_total", &[("result", "error")]),
        Some(0.0)
    );
    assert_eq!(sample(&metrics, "gw_config_errors", &[]), Some(0.0));
    assert!(sample(&metrics, "gw_upstream_connections_total", &[]).unwrap() >= 1.0);
    assert!(sample(&metrics, "gw_upstream_connections_open", &[]).is_some());

    // The explainer on the admin port: Exact beats PathPrefix; the header match fails.
    let (code, body) = gw
        .get(&format!(
            "/explain?host=shop.example.com&path=/cart&port={port}"
        ))
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let e: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["outcome"]["result"], "matched");
    assert_eq!(e["outcome"]["ruleName"], "cart");
    let loser = e["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["ruleIndex"] == 1 && c["matchIndex"] == 0)
        .unwrap();
    assert_eq!(loser["verdict"], "lowerPrecedence");
    assert_eq!(loser["precedence"], "PathType");
    let (code, text) = gw
        .get("/explain?host=shop.example.com&path=/v2/x&header=x-version:3&format=text")
        .unwrap();
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("404"), "{text}");
    assert!(
        text.contains("header x-version: wants exactly \"2\" (\"3\")"),
        "{text}"
    );
    let (code, body) = gw.get("/explain?hots=x").unwrap();
    assert_eq!(code, 400);
    assert!(body.contains("hots"), "{body}");

    // A file that does not load: a rejected reload, counted, and its error in the gauge.
    std::fs::write(
        gw.config().join("bad.yaml"),
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: bad}\nspec:\n  rules: [{matches: [{path: {type: Prefix}}]}]\n",
    )
    .unwrap();
    let metrics = wait_for("the rejected reload", || {
        let (_, m) = gw.get("/metrics")?;
        (sample(&m, "gw_config_reloads_total", &[("result", "error")]) == Some(1.0)).then_some(m)
    });
    assert_eq!(
        sample(&metrics, "gw_config_errors", &[]),
        Some(1.0),
        "{metrics}"
    );
    drop(gw);
    rt.block_on(echo.shutdown());
}

#[test]
fn explain_command_works_offline() {
    let dir = temp_dir("explain-cli");
    std::fs::write(dir.join("all.yaml"), manifests(8080, 9000)).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_gw-gateway"))
            .arg("explain")
            .arg(&dir)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&["--host", "shop.example.com", "--path", "/cart"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("HTTPRoute default/shop rule 0 match 0 on listener web routes the request"),
        "{out}"
    );
    let (code, out, _) = run(&[
        "--host",
        "shop.example.com",
        "--path",
        "/v2",
        "--header",
        "x-version: 2",
        "--json",
    ]);
    assert_eq!(code, Some(0));
    let e: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(e["outcome"]["ruleIndex"], 1);
    assert_eq!(e["outcome"]["matchIndex"], 1);
    let (code, out, _) = run(&["--host", "other.example.com", "--path", "/cart"]);
    assert_eq!(code, Some(2));
    assert!(out.contains("HTTPRoute default/shop rule 0 (cart) match 0 [Exact /cart] on web: route hostnames [\"shop.example.com\"] do not match host \"other.example.com\""), "{out}");
    let (code, _, err) = run(&["--port", "9999"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no Gateway"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_command_prints_objects_and_fails_on_errors() {
    let dir = temp_dir("check-cli");
    std::fs::write(dir.join("all.yaml"), manifests(8080, 9000)).unwrap();
    let check = || {
        let out = Command::new(env!("CARGO_BIN_EXE_gw-gateway"))
            .arg("check")
            .arg(&dir)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = check();
    assert_eq!(code, Some(0), "{out}");
    for kind in [
        "GatewayClass",
        "Gateway",
        "HTTPRoute",
        "Service",
        "EndpointSlice",
    ] {
        assert!(out.contains(&format!("kind: {kind}\n")), "{kind}: {out}");
    }
    assert!(out.contains("attachedRoutes: 1"), "{out}");
    // A route to a missing Service: ResolvedRefs=False, exit 2.
    std::fs::write(
        dir.join("bad.yaml"),
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: bad, namespace: default}\nspec:\n  parentRefs: [{name: edge}]\n  rules: [{backendRefs: [{name: missing, port: 80}]}]\n",
    )
    .unwrap();
    let (code, out) = check();
    assert_eq!(code, Some(2));
    assert!(out.contains("reason: BackendNotFound"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
    // Keep http_get used by this test file's helpers in the shared module.
    let _ = http_get;
}
