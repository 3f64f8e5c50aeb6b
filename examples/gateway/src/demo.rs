//! The built-in demo: two echo backends and a Gateway on 127.0.0.1:8080 routing to them.

use gw_echo::{EchoConfig, EchoServer};
use gw_model::load;
use gw_model::resources::Object;

/// The running demo backends (kept alive for the life of the process).
pub(crate) struct Demo {
    _servers: Vec<EchoServer>,
    /// The demo's objects, added to whatever `--config` holds (nothing, in demo mode).
    pub objects: Vec<Object>,
}

/// Starts the demo backends and returns the demo configuration.
pub(crate) async fn start(controller_name: &str) -> Result<Demo, String> {
    let mut servers = Vec::new();
    let mut ports = Vec::new();
    for pod in ["echo-v1-demo-0", "echo-v2-demo-0"] {
        let mut config = EchoConfig::loopback_http(pod, "default");
        config.service = pod.trim_end_matches("-demo-0").to_owned();
        let server = EchoServer::start(config)
            .await
            .map_err(|e| format!("demo echo backend: {e}"))?;
        let port = server
            .http_addr()
            .map(|a| a.port())
            .ok_or("demo echo backend has no HTTP address")?;
        ports.push(port);
        servers.push(server);
    }
    let yaml = manifests(controller_name, ports[0], ports[1]);
    let loaded = load::parse("<built-in demo>", &yaml);
    if let Some(e) = loaded.errors.first() {
        return Err(format!("built-in demo configuration: {e}"));
    }
    Ok(Demo {
        _servers: servers,
        objects: loaded.objects,
    })
}

/// The demo manifests, as a user would write them.
pub(crate) fn manifests(controller_name: &str, v1_port: u16, v2_port: u16) -> String {
    format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: gw}}
spec: {{controllerName: {controller_name}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: demo, namespace: default}}
spec:
  gatewayClassName: gw
  addresses: [{{type: IPAddress, value: 127.0.0.1}}]
  listeners:
  - {{name: http, port: 8080, protocol: HTTP}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: echo, namespace: default}}
spec:
  parentRefs: [{{name: demo}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /v2}}}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {{add: [{{name: X-Gw-Demo, value: v2}}]}}
    backendRefs: [{{name: echo-v2, port: 80}}]
  - matches: [{{path: {{type: PathPrefix, value: /}}}}]
    backendRefs:
    - {{name: echo-v1, port: 80, weight: 90}}
    - {{name: echo-v2, port: 80, weight: 10}}
---
apiVersion: v1
kind: Service
metadata: {{name: echo-v1, namespace: default}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: echo-v1-1, namespace: default, labels: {{kubernetes.io/service-name: echo-v1}}}}
addressType: IPv4
ports: [{{name: http, port: {v1_port}}}]
endpoints: [{{addresses: [127.0.0.1]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: echo-v2, namespace: default}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: echo-v2-1, namespace: default, labels: {{kubernetes.io/service-name: echo-v2}}}}
addressType: IPv4
ports: [{{name: http, port: {v2_port}}}]
endpoints: [{{addresses: [127.0.0.1]}}]
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_manifests_compile_cleanly() {
        let loaded = load::parse("demo", &manifests("gw.dev/gateway", 1, 2));
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let mut res = gw_model::resources::Resources::new();
        res.extend(loaded.objects);
        let c = gw_model::compile(&res, &gw_model::CompileOptions::new("gw.dev/gateway"));
        assert_eq!(c.table.gateways.len(), 1);
        let listener = &c.table.gateways[0].listeners[0];
        assert_eq!(listener.port, 8080);
        assert_eq!(listener.http.len(), 2);
    }
}
