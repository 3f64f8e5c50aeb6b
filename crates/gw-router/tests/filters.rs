//! Filters answered by the gateway itself: redirects (conformance HTTPRouteRedirect* cases),
//! CORS preflights (HTTPRouteCORS), unresolved filters.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{GATEWAY, body, call, gateway, router};
use gw_router::{Incoming, Scheme};
use http::{Request, StatusCode};
use http_body_util::Empty;

const REDIRECTS: &str = r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: redirect, namespace: default}
spec:
  parentRefs: [{name: edge}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /original-prefix}}]
    filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}}}]
  - matches: [{path: {type: PathPrefix, value: /full}}]
    filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /full-path-replacement}}}]
  - matches: [{path: {type: PathPrefix, value: /path-and-host}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org, path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}}}]
  - matches: [{path: {type: PathPrefix, value: /path-and-status}}]
    filters: [{type: RequestRedirect, requestRedirect: {statusCode: 301, path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}}}]
  - matches: [{path: {type: PathPrefix, value: /full-path-and-host}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org, path: {type: ReplaceFullPath, replaceFullPath: /replacement-full}}}]
  - matches: [{path: {type: PathPrefix, value: /full-path-and-status}}]
    filters: [{type: RequestRedirect, requestRedirect: {statusCode: 301, path: {type: ReplaceFullPath, replaceFullPath: /replacement-full}}}]
  - matches: [{path: {type: PathPrefix, value: /port}}]
    filters: [{type: RequestRedirect, requestRedirect: {port: 8083}}]
  - matches: [{path: {type: PathPrefix, value: /port-and-host}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org, port: 8083}}]
  - matches: [{path: {type: PathPrefix, value: /port-and-status}}]
    filters: [{type: RequestRedirect, requestRedirect: {port: 8083, statusCode: 301}}]
  - matches: [{path: {type: PathPrefix, value: /scheme}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https}}]
  - matches: [{path: {type: PathPrefix, value: /scheme-and-host}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https, hostname: example.org}}]
  - matches: [{path: {type: PathPrefix, value: /scheme-and-status}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https, statusCode: 301}}]
  - matches: [{path: {type: PathPrefix, value: /scheme-and-port}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https, port: 8443}}]
  - matches: [{path: {type: PathPrefix, value: /hostname-redirect}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org}}]
  - matches: [{path: {type: PathPrefix, value: /host-and-status}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org, statusCode: 301}}]
  - matches: [{path: {type: PathPrefix, value: /status-307}}]
    filters: [{type: RequestRedirect, requestRedirect: {statusCode: 307}}]
"#;

async fn redirect(port: u16, scheme: Scheme, path: &str) -> (StatusCode, String) {
    let yaml = format!(
        "{}{REDIRECTS}",
        GATEWAY.replace(
            "listeners: [{name: http, port: 80, protocol: HTTP}]",
            "listeners: [{name: http, port: 80, protocol: HTTP}, {name: alt, port: 8080, protocol: HTTP}]"
        )
    );
    let r = router(&yaml);
    let req = Request::get(path)
        .header(
            "host",
            if port == 80 {
                "10.0.0.1".to_owned()
            } else {
                format!("10.0.0.1:{port}")
            },
        )
        .extension(Incoming {
            gateway: gateway(),
            port,
            scheme,
            peer: None,
            sni: None,
        })
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = call(&r, req).await;
    let loc = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (resp.status(), loc)
}

// Conformance HTTPRouteRedirectPath, HTTPRouteRedirectPort, HTTPRouteRedirectScheme,
// HTTPRouteRedirectHostAndStatus, HTTPRoute307Redirect (request to port 80, host = gateway IP).
#[tokio::test]
async fn conformance_redirect_locations() {
    for (path, status, location) in [
        (
            "/original-prefix/lemon",
            302,
            "http://10.0.0.1/replacement-prefix/lemon",
        ),
        (
            "/full/path/original",
            302,
            "http://10.0.0.1/full-path-replacement",
        ),
        (
            "/path-and-host",
            302,
            "http://example.org/replacement-prefix",
        ),
        (
            "/path-and-status",
            301,
            "http://10.0.0.1/replacement-prefix",
        ),
        (
            "/full-path-and-host",
            302,
            "http://example.org/replacement-full",
        ),
        (
            "/full-path-and-status",
            301,
            "http://10.0.0.1/replacement-full",
        ),
        ("/port", 302, "http://10.0.0.1:8083/port"),
        (
            "/port-and-host",
            302,
            "http://example.org:8083/port-and-host",
        ),
        (
            "/port-and-status",
            301,
            "http://10.0.0.1:8083/port-and-status",
        ),
        ("/scheme", 302, "https://10.0.0.1/scheme"),
        (
            "/scheme-and-host",
            302,
            "https://example.org/scheme-and-host",
        ),
        (
            "/scheme-and-status",
            301,
            "https://10.0.0.1/scheme-and-status",
        ),
        (
            "/scheme-and-port",
            302,
            "https://10.0.0.1:8443/scheme-and-port",
        ),
        (
            "/hostname-redirect",
            302,
            "http://example.org/hostname-redirect",
        ),
        (
            "/host-and-status",
            301,
            "http://example.org/host-and-status",
        ),
        ("/status-307", 307, "http://10.0.0.1/status-307"),
        (
            "/original-prefix/lemon?x=1&y=2",
            302,
            "http://10.0.0.1/replacement-prefix/lemon?x=1&y=2",
        ),
    ] {
        assert_eq!(
            redirect(80, Scheme::Http, path).await,
            (StatusCode::from_u16(status).unwrap(), location.to_owned()),
            "{path}"
        );
    }
}

// RequestRedirect port: "If redirect scheme is not-empty, the redirect port MUST be the
// well-known port associated with the redirect scheme ... If redirect scheme is empty, the
// redirect port MUST be the Gateway Listener port."
#[tokio::test]
async fn redirect_port_is_the_listener_port_or_the_schemes() {
    assert_eq!(
        redirect(8080, Scheme::Http, "/hostname-redirect").await.1,
        "http://example.org:8080/hostname-redirect"
    );
    assert_eq!(
        redirect(8080, Scheme::Http, "/scheme").await.1,
        "https://10.0.0.1/scheme"
    );
    assert_eq!(
        redirect(8080, Scheme::Http, "/original-prefix").await.1,
        "http://10.0.0.1:8080/replacement-prefix"
    );
}

const CORS: &str = r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cors, namespace: default}
spec:
  parentRefs: [{name: edge}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /cors-1}}]
    filters:
    - type: CORS
      cors:
        allowOrigins: ["https://www.foo.com", "https://*.bar.com"]
        allowMethods: [GET, OPTIONS]
        allowHeaders: [x-header-1, x-header-2]
        exposeHeaders: [x-header-3, x-header-4]
        allowCredentials: true
        maxAge: 3600
    backendRefs: [{name: nowhere, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /cors-2}}]
    filters: [{type: CORS, cors: {allowOrigins: ["https://www.foo.com"], allowMethods: ["*"]}}]
  - matches: [{path: {type: PathPrefix, value: /cors-wildcard-origin}}]
    filters: [{type: CORS, cors: {allowOrigins: ["*"], allowMethods: [PUT], allowCredentials: false}}]
  - matches: [{path: {type: PathPrefix, value: /cors-wildcard-methods-headers}}]
    filters: [{type: CORS, cors: {allowOrigins: ["*"], allowMethods: ["*"], allowHeaders: ["*"], allowCredentials: true}}]
"#;

async fn preflight(path: &str, headers: &[(&str, &str)]) -> (StatusCode, http::HeaderMap) {
    let r = router(&format!("{GATEWAY}{CORS}"));
    let mut b = common::req("OPTIONS", path, "10.0.0.1");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = call(&r, b.body(Empty::<bytes::Bytes>::new()).unwrap()).await;
    let (parts, bytes) = body(resp).await;
    assert!(bytes.is_empty(), "answered by the gateway, not a backend");
    (parts.status, parts.headers)
}

fn h<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

// Conformance HTTPRouteCORS preflight cases.
#[tokio::test]
async fn conformance_cors_preflights() {
    let req_headers = [
        ("access-control-request-method", "GET"),
        ("access-control-request-headers", "x-header-1, x-header-2"),
    ];
    for origin in [
        "https://www.foo.com",
        "https://www.bar.com",
        "https://xpto.www.bar.com",
    ] {
        let mut hs = vec![("origin", origin)];
        hs.extend_from_slice(&req_headers);
        let (status, headers) = preflight("/cors-1", &hs).await;
        assert!(status == 200 || status == 204, "{status}");
        assert_eq!(h(&headers, "access-control-allow-origin"), Some(origin));
        assert_eq!(
            h(&headers, "access-control-allow-methods"),
            Some("GET, OPTIONS")
        );
        assert_eq!(
            h(&headers, "access-control-allow-headers"),
            Some("x-header-1, x-header-2")
        );
        assert_eq!(
            h(&headers, "access-control-expose-headers"),
            Some("x-header-3, x-header-4")
        );
        assert_eq!(h(&headers, "access-control-max-age"), Some("3600"));
        assert_eq!(
            h(&headers, "access-control-allow-credentials"),
            Some("true")
        );
    }
    let (status, headers) = preflight(
        "/cors-1",
        &[
            ("origin", "https://foobar.com"),
            ("access-control-request-method", "GET"),
        ],
    )
    .await;
    assert!(status == 200 || status == 204);
    assert_eq!(h(&headers, "access-control-allow-origin"), None);

    let (_, headers) = preflight(
        "/cors-2",
        &[
            ("origin", "https://www.foo.com"),
            ("access-control-request-method", "POST"),
        ],
    )
    .await;
    assert_eq!(
        h(&headers, "access-control-allow-origin"),
        Some("https://www.foo.com")
    );
    assert!(matches!(
        h(&headers, "access-control-allow-methods"),
        Some("POST" | "*")
    ));
    assert_eq!(h(&headers, "access-control-allow-credentials"), None);

    for origin in ["https://foobar.com", "https://foobar.com:12345"] {
        let (_, headers) = preflight(
            "/cors-wildcard-origin",
            &[("origin", origin), ("access-control-request-method", "PUT")],
        )
        .await;
        assert!(
            matches!(h(&headers, "access-control-allow-origin"), Some(o) if o == origin || o == "*")
        );
        assert_eq!(h(&headers, "access-control-allow-methods"), Some("PUT"));
        assert_eq!(h(&headers, "access-control-allow-credentials"), None);
    }

    // With credentials, wildcards must be answered with the requested values.
    let (_, headers) = preflight(
        "/cors-wildcard-methods-headers",
        &[
            ("origin", "https://other.foo.com"),
            ("access-control-request-method", "PUT"),
            ("access-control-request-headers", "x-header-1, x-header-2"),
        ],
    )
    .await;
    assert_eq!(
        h(&headers, "access-control-allow-origin"),
        Some("https://other.foo.com")
    );
    assert_eq!(h(&headers, "access-control-allow-methods"), Some("PUT"));
    assert_eq!(
        h(&headers, "access-control-allow-headers"),
        Some("x-header-1, x-header-2")
    );
    assert_eq!(
        h(&headers, "access-control-allow-credentials"),
        Some("true")
    );
}

// "requests that would have been processed by that filter MUST receive a HTTP error response":
// an unresolved ExtensionRef, and an ExternalAuth whose backendRef names no Service.
#[tokio::test]
async fn unresolved_filters_and_external_auth_backends_are_500() {
    let yaml = format!(
        "{GATEWAY}{}",
        r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: f, namespace: default}
spec:
  parentRefs: [{name: edge}]
  rules:
  - matches: [{path: {value: /ext}}]
    filters: [{type: ExtensionRef, extensionRef: {group: example.com, kind: Thing, name: x}}]
  - matches: [{path: {value: /auth}}]
    filters: [{type: ExternalAuth, externalAuth: {protocol: HTTP, backendRef: {name: auth, port: 80}}}]
"#
    );
    let r = router(&yaml);
    for path in ["/ext", "/auth"] {
        let resp = call(&r, common::get(path, "example.com")).await;
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR, "{path}");
    }
}
