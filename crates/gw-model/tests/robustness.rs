//! Bad input never panics: random bytes, and conformance manifests mutated at random, go through
//! `load::parse` and `compile` and always yield a table and a status report.

use gw_model::resources::Resources;
use gw_model::{CompileOptions, compile, load};
use proptest::prelude::*;

const SEED_MANIFESTS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gw}
spec: {controllerName: gw.dev/gateway, parametersRef: {group: "", kind: ConfigMap, name: p, namespace: default}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: default, generation: 3}
spec:
  gatewayClassName: gw
  addresses: [{value: 127.0.0.1}, {type: Hostname, value: x}]
  allowedListeners: {namespaces: {from: All}}
  tls:
    frontend:
      default: {validation: {caCertificateRefs: [{group: "", kind: ConfigMap, name: ca}]}}
    backend: {clientCertificateRef: {name: client}}
  listeners:
  - {name: http, port: 80, protocol: HTTP, hostname: "*.example.com"}
  - name: https
    port: 443
    protocol: HTTPS
    tls: {certificateRefs: [{name: cert, namespace: other}]}
    allowedRoutes: {namespaces: {from: Selector, selector: {matchExpressions: [{key: a, operator: In, values: [b]}]}}}
  - {name: tls, port: 443, protocol: TLS, tls: {mode: Passthrough}}
  - {name: tcp, port: 9000, protocol: TCP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: ls, namespace: default}
spec:
  parentRef: {name: edge}
  listeners: [{name: http, port: 80, protocol: HTTP, hostname: "a.example.com"}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: default, creationTimestamp: "2024-01-01T00:00:00Z"}
spec:
  parentRefs: [{name: edge, sectionName: http}, {kind: ListenerSet, name: ls}]
  hostnames: [foo.example.com, "*.example.com"]
  rules:
  - name: one
    matches:
    - path: {type: RegularExpression, value: "^/v[0-9]+"}
      headers: [{name: x, value: "y.*", type: RegularExpression}]
      queryParams: [{name: q, value: "1"}]
      method: GET
    filters:
    - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: a, value: b}], remove: [c]}}
    - {type: URLRewrite, urlRewrite: {hostname: h, path: {type: ReplaceFullPath, replaceFullPath: /x}}}
    - {type: RequestMirror, requestMirror: {backendRef: {name: m, port: 80}, fraction: {numerator: 1, denominator: 3}}}
    - {type: CORS, cors: {allowOrigins: ["https://*.example.com"], allowMethods: [GET]}}
    backendRefs:
    - {name: svc, port: 80, weight: 3, filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: a, value: b}]}}]}
    - {name: svc, namespace: other, port: 80}
    timeouts: {request: 10s, backendRequest: 1s}
    retry: {codes: [500, 503], attempts: 2, backoff: 100ms}
  - matches: [{path: {type: PathPrefix, value: /p/}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https, port: 8443, statusCode: 301, path: {type: ReplacePrefixMatch, replacePrefixMatch: /q}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g, namespace: default}
spec:
  parentRefs: [{name: edge}]
  rules: [{matches: [{method: {service: a.B, method: C}}], backendRefs: [{name: svc, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {name: t, namespace: default}
spec:
  parentRefs: [{name: edge, sectionName: tls}]
  hostnames: [tls.example.com]
  rules: [{backendRefs: [{name: svc, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {name: p, namespace: default}
spec:
  targetRefs: [{group: "", kind: Service, name: svc}]
  validation: {caCertificateRefs: [{group: "", kind: ConfigMap, name: ca}], hostname: svc.example.com}
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: default}
spec: {ports: [{name: http, port: 80, appProtocol: kubernetes.io/h2c}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: svc-1, namespace: default, labels: {kubernetes.io/service-name: svc}}
ports: [{name: http, port: 3000}]
endpoints: [{addresses: [127.0.0.2]}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: rg, namespace: other}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}]
  to: [{group: "", kind: Service}]
"#;

fn run(text: &str) {
    let loaded = load::parse("fuzz.yaml", text);
    let mut res = Resources::new();
    res.extend(loaded.objects);
    let compiled = compile(&res, &CompileOptions::new("gw.dev/gateway"));
    // The report always renders.
    let _ = compiled.status.to_list();
    let _ = serde_json::to_string(&compiled.table);
}

#[test]
fn the_seed_compiles_and_serves() {
    let loaded = load::parse("seed.yaml", SEED_MANIFESTS);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let mut res = Resources::new();
    res.extend(loaded.objects);
    let compiled = compile(&res, &CompileOptions::new("gw.dev/gateway"));
    assert!(!compiled.status.entries.is_empty());
}

/// One random edit of a text: delete, duplicate or replace a line, or replace a character.
#[derive(Debug, Clone)]
enum Edit {
    DeleteLine(usize),
    DuplicateLine(usize),
    ReplaceLine(usize, String),
    ReplaceChar(usize, char),
    Truncate(usize),
}

fn edit_strategy() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::DeleteLine),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), "[ -~]{0,40}").prop_map(|(i, s)| Edit::ReplaceLine(i, s)),
        (
            any::<usize>(),
            prop::sample::select(vec![
                ':', '-', '{', '}', '[', ']', '"', '\'', ' ', '\n', '0', '*', '/', '&', '!', '#',
                '|', '>'
            ])
        )
            .prop_map(|(i, c)| Edit::ReplaceChar(i, c)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(text: &str, edit: &Edit) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let n = lines.len().max(1);
    match edit {
        Edit::DeleteLine(i) => {
            if !lines.is_empty() {
                lines.remove(i % n);
            }
        }
        Edit::DuplicateLine(i) => {
            if let Some(l) = lines.get(i % n).cloned() {
                lines.insert(i % n, l);
            }
        }
        Edit::ReplaceLine(i, s) => {
            if let Some(l) = lines.get_mut(i % n) {
                let indent: String = l.chars().take_while(|c| *c == ' ').collect();
                *l = format!("{indent}{s}");
            }
        }
        Edit::ReplaceChar(i, c) => {
            let mut chars: Vec<char> = lines.join("\n").chars().collect();
            if !chars.is_empty() {
                let at = i % chars.len();
                chars[at] = *c;
            }
            return chars.into_iter().collect();
        }
        Edit::Truncate(i) => {
            let joined = lines.join("\n");
            let cut = i % (joined.len() + 1);
            return joined.chars().take(cut).collect();
        }
    }
    lines.join("\n")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn mutated_manifests_never_panic(edits in prop::collection::vec(edit_strategy(), 1..6)) {
        let mut text = SEED_MANIFESTS.to_owned();
        for e in &edits {
            text = apply(&text, e);
        }
        run(&text);
    }

    #[test]
    fn random_text_never_panics(text in "(?s).{0,400}") {
        run(&text);
    }
}
