//! Path and host normalization and matching: arbitrary paths and hosts must never panic, a
//! canonical path must normalize to itself (as must a redirect target), a dot-segment detour
//! (`/./x/..` + path) must normalize to the same canonical path, and matching a canonical path
//! with any host must not panic.
#![no_main]

use std::sync::OnceLock;

use gw_router::gw_model::resources::{ObjectKey, Resources};
use gw_router::gw_model::{self, CompileOptions};
use gw_router::normalize::{NormalizedPath, PathPolicy, SlashAction, check_host, normalize_path};
use gw_router::{Resolution, Routes};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"
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
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - {name: wild, port: 80, protocol: HTTP, hostname: "*.example.com"}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: default}
spec:
  parentRefs: [{name: edge}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /public}}]
  - matches: [{path: {type: Exact, value: /admin}}]
  - matches: [{path: {type: RegularExpression, value: "/v[0-9]+/.*"}}]
  - matches: [{path: {type: PathPrefix, value: /}, headers: [{name: x-a, value: b}]}]
"#;

fn routes() -> &'static Routes {
    static ROUTES: OnceLock<Routes> = OnceLock::new();
    ROUTES.get_or_init(|| {
        let mut resources = Resources::new();
        resources.extend(gw_model::load::parse("fuzz.yaml", CONFIG).objects);
        let compiled = gw_model::compile(&resources, &CompileOptions::new("gw.dev/gateway"));
        Routes::build(&compiled.table)
    })
}

/// The matched (route, rule, match) of a request, or what did not match.
fn outcome(path: &str, host: &str) -> Option<String> {
    let req = http::Request::get(path).header("host", host).body(()).ok()?;
    let gateway = ObjectKey::new("default", "edge");
    Some(match routes().resolve(&gateway, 80, &req) {
        Resolution::Matched(m) => format!(
            "{} {} {} {}",
            m.listener().name(),
            m.rule().route().key,
            m.rule().rule_index(),
            m.match_index()
        ),
        other => format!("{other:?}"),
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let action = |bits: u8| match bits % 3 {
        0 => SlashAction::Reject,
        1 => SlashAction::Redirect,
        _ => SlashAction::Keep,
    };
    let policy = PathPolicy::default()
        .with_merge_slashes(flags & 1 == 0)
        .with_encoded_slash(action(flags >> 1))
        .with_backslash(action(flags >> 3));
    let text = String::from_utf8_lossy(rest);
    let (host, path) = text.split_once('\n').unwrap_or(("example.com", &text));

    if let Ok(uri) = path.parse::<http::Uri>() {
        let mut headers = http::HeaderMap::new();
        if let Ok(v) = http::HeaderValue::from_str(host) {
            headers.insert(http::header::HOST, v);
        }
        let _ = check_host(http::Version::HTTP_11, &uri, &headers);
        let _ = check_host(http::Version::HTTP_2, &uri, &headers);
    }

    let canonical = match normalize_path(path, &policy) {
        Ok(NormalizedPath::Canonical(c)) => c.into_owned(),
        Ok(NormalizedPath::Redirect(r)) => r,
        Err(_) => return,
    };
    match normalize_path(&canonical, &policy) {
        Ok(NormalizedPath::Canonical(again)) => assert_eq!(again, canonical, "not idempotent: {path:?}"),
        other => panic!("{path:?} -> {canonical:?} -> {other:?}"),
    }
    if canonical.starts_with('/') {
        // A dot-segment detour normalizes back to the same path, so it matches the same rule.
        if policy.merge_slashes {
            let detour = format!("/./fuzz/..{canonical}");
            match normalize_path(&detour, &policy) {
                Ok(NormalizedPath::Canonical(c)) => assert_eq!(c, canonical, "{detour:?}"),
                other => panic!("{detour:?} -> {other:?}"),
            }
        }
        let _ = outcome(&canonical, host);
    }
});
