//! The "pods": every echo-basic Deployment of the manifests becomes `replicas` in-process
//! [`gw_echo::EchoServer`]s, each on its own loopback IP, and every Service gets an
//! EndpointSlice listing the IPs of the pods its selector matches (what the EndpointSlice
//! controller would write).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use base64::Engine as _;
use gw_echo::{EchoConfig, EchoLog, EchoMode, EchoServer, HttpsConfig, TlsIdentity};
use serde_json::{Value, json};

use crate::cluster::{Cluster, ObjectId};

/// echo-basic's default ports.
const HTTP_PORT: u16 = 3000;
const H2C_PORT: u16 = 3001;
const TCP_PORT: u16 = 3000;
const UDP_PORT: u16 = 8080;
/// echo-basic's `HTTPS_PORT` and the TCP echo's `TLS_PORT`.
const TLS_PORT: u16 = 8443;

/// What a pod's echo server speaks (from the Deployment's environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EchoKind {
    /// echo-basic's HTTP echo on `HTTP_PORT` (HTTP/1.1 + h2c) and `H2C_PORT`.
    Http {
        /// `HTTP_PORT`.
        http: u16,
        /// `H2C_PORT`.
        h2c: u16,
    },
    /// `GRPC_ECHO_SERVER`: the gRPC echo on `HTTP_PORT`.
    Grpc {
        /// `HTTP_PORT`.
        port: u16,
    },
    /// The corpus's `coredns` Deployment: a DNS responder on port 53 (see `gw_echo::dns`).
    Dns {
        /// The DNS port (the Corefile's `.:53`).
        port: u16,
    },
    /// `TCP_ECHO_SERVER` / `UDP_ECHO_SERVER`.
    L4 {
        /// `TCP_PORT`, when TCP mode is on.
        tcp: Option<u16>,
        /// `UDP_PORT`, when UDP mode is on.
        udp: Option<u16>,
    },
}

/// One planned pod.
#[derive(Debug, Clone)]
pub struct Pod {
    /// `<deployment>-<replicaset hash>-<pod hash>`.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// The Deployment.
    pub deployment: String,
    /// Labels of the pod template.
    pub labels: BTreeMap<String, String>,
    /// Its loopback IP.
    pub ip: Ipv4Addr,
    /// What it serves.
    pub kind: EchoKind,
    /// Named container ports (`targetPort` by name).
    pub named_ports: BTreeMap<String, u16>,
    /// `SERVICE_NAME` (reported by the TCP and UDP echoes).
    pub service: String,
    /// The TLS listener, when `TLS_SERVER_CERT` and the key name files of mounted volumes:
    /// HTTPS (HTTP and gRPC modes, `HTTPS_PORT`) or TCP over TLS (TCP mode, `TLS_PORT`).
    pub tls: Option<PodTls>,
}

/// A pod's TLS listener, with the PEMs of the Secret / ConfigMap files its env names.
#[derive(Clone, PartialEq, Eq)]
pub struct PodTls {
    /// `HTTPS_PORT` / `TLS_PORT` (default 8443).
    pub port: u16,
    /// `TLS_SERVER_CERT`.
    pub cert_pem: String,
    /// `TLS_SERVER_PRIVKEY` (or `TLS_SERVER_PRIV_KEY`).
    pub key_pem: String,
    /// `TLS_CLIENT_CACERTS` (HTTPS only: client certificates verified if given).
    pub client_ca_pem: Option<String>,
}

impl std::fmt::Debug for PodTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodTls")
            .field("port", &self.port)
            .field("client_ca", &self.client_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

/// The content of a file a container sees at `path`: the volume mounted at a prefix of it
/// (`volumeMounts`), then that volume's Secret or ConfigMap key (`items` map keys to paths;
/// without items every key is a file), read from the cluster (Secret `stringData` or base64
/// `data`, ConfigMap `data`).
fn mounted_file(
    cluster: &Cluster,
    namespace: &str,
    pod_spec: &Value,
    container: &Value,
    path: &str,
) -> Result<String, String> {
    let mounts = container
        .get("volumeMounts")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let (volume_name, file) = mounts
        .iter()
        .filter_map(|m| {
            let mount = m.get("mountPath")?.as_str()?.trim_end_matches('/');
            let file = path.strip_prefix(mount)?.strip_prefix('/')?;
            Some((m.get("name")?.as_str()?, file))
        })
        .next()
        .ok_or_else(|| format!("no volumeMount holds {path}"))?;
    let volume = pod_spec
        .get("volumes")
        .and_then(Value::as_array)
        .and_then(|v| {
            v.iter()
                .find(|v| v.get("name").and_then(Value::as_str) == Some(volume_name))
        })
        .ok_or_else(|| format!("no volume {volume_name} (mounted for {path})"))?;
    let (kind, source) = if let Some(s) = volume.get("secret") {
        let name = s.get("secretName").and_then(Value::as_str);
        ("Secret", (s, name))
    } else if let Some(c) = volume.get("configMap") {
        ("ConfigMap", (c, c.get("name").and_then(Value::as_str)))
    } else {
        return Err(format!(
            "volume {volume_name} is neither a Secret nor a ConfigMap"
        ));
    };
    let (source, name) = source;
    let name = name.ok_or_else(|| format!("volume {volume_name} names no {kind}"))?;
    let key = match source.get("items").and_then(Value::as_array) {
        Some(items) => items
            .iter()
            .find(|i| i.get("path").and_then(Value::as_str) == Some(file))
            .and_then(|i| i.get("key").and_then(Value::as_str))
            .ok_or_else(|| format!("{kind} volume {volume_name} maps no key to {file}"))?,
        None => file,
    };
    let id = ObjectId::new(kind, namespace, name);
    let object = cluster
        .get(&id)
        .ok_or_else(|| format!("{id} (mounted at {path}) does not exist"))?;
    if let Some(text) = object
        .pointer(&format!("/stringData/{key}"))
        .and_then(Value::as_str)
    {
        return Ok(text.to_owned());
    }
    let data = object
        .pointer(&format!("/data/{key}"))
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{id} has no key {key} (mounted at {path})"))?;
    if kind == "ConfigMap" {
        return Ok(data.to_owned());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| format!("{id} data.{key} is not base64: {e}"))?;
    String::from_utf8(bytes).map_err(|_| format!("{id} data.{key} is not UTF-8"))
}

/// Plans the pods of every echo-basic Deployment, and of the coredns one (served by gw-echo's
/// DNS responder; other images are not run);
/// `ip_of(n)` gives the n-th pod its address.
pub fn plan(
    cluster: &Cluster,
    ip_of: impl Fn(usize) -> Option<Ipv4Addr>,
) -> Result<Vec<Pod>, String> {
    let mut pods = Vec::new();
    for (id, manifest) in cluster.objects() {
        if id.kind != "Deployment" {
            continue;
        }
        let image = |needle: &str| {
            manifest
                .pointer("/spec/template/spec/containers/0/image")
                .and_then(Value::as_str)
                .is_some_and(|i| i.contains(needle))
        };
        let coredns = image("coredns");
        let Some(container) = manifest
            .pointer("/spec/template/spec/containers/0")
            .filter(|_| image("echo-basic") || coredns)
        else {
            continue;
        };
        let env: BTreeMap<String, String> = container
            .get("env")
            .and_then(Value::as_array)
            .map(|env| {
                env.iter()
                    .filter_map(|e| {
                        let name = e.get("name")?.as_str()?;
                        let value = e.get("value").and_then(Value::as_str).unwrap_or("(ref)");
                        Some((name.to_owned(), value.to_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let port = |var: &str, default: u16| -> Result<u16, String> {
            match env.get(var) {
                None => Ok(default),
                Some(v) => v
                    .parse()
                    .map_err(|_| format!("{id}: {var}={v:?} is not a port")),
            }
        };
        let on = |var: &str| env.get(var).is_some_and(|v| !v.is_empty());
        let pod_spec = manifest
            .pointer("/spec/template/spec")
            .unwrap_or(&Value::Null);
        let file = |var: &str| -> Result<Option<String>, String> {
            match env.get(var).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(path) => mounted_file(cluster, &id.namespace, pod_spec, container, path)
                    .map(Some)
                    .map_err(|e| format!("{id}: {var}: {e}")),
            }
        };
        let key_var = if on("TLS_SERVER_PRIVKEY") {
            "TLS_SERVER_PRIVKEY"
        } else {
            "TLS_SERVER_PRIV_KEY"
        };
        let tls = match (file("TLS_SERVER_CERT")?, file(key_var)?) {
            (Some(cert_pem), Some(key_pem)) => {
                let l4 = on("TCP_ECHO_SERVER") || on("UDP_ECHO_SERVER");
                Some(PodTls {
                    port: port(if l4 { "TLS_PORT" } else { "HTTPS_PORT" }, TLS_PORT)?,
                    cert_pem,
                    key_pem,
                    client_ca_pem: if l4 {
                        None
                    } else {
                        file("TLS_CLIENT_CACERTS")?
                    },
                })
            }
            _ => None,
        };
        let service = env
            .get("SERVICE_NAME")
            .filter(|v| v.as_str() != "(ref)")
            .cloned()
            .unwrap_or_default();
        let kind = if coredns {
            EchoKind::Dns { port: 53 }
        } else if on("GRPC_ECHO_SERVER") {
            EchoKind::Grpc {
                port: port("HTTP_PORT", HTTP_PORT)?,
            }
        } else if on("TCP_ECHO_SERVER") || on("UDP_ECHO_SERVER") {
            EchoKind::L4 {
                tcp: on("TCP_ECHO_SERVER")
                    .then(|| port("TCP_PORT", TCP_PORT))
                    .transpose()?,
                udp: on("UDP_ECHO_SERVER")
                    .then(|| port("UDP_PORT", UDP_PORT))
                    .transpose()?,
            }
        } else {
            EchoKind::Http {
                http: port("HTTP_PORT", HTTP_PORT)?,
                h2c: port("H2C_PORT", H2C_PORT)?,
            }
        };
        let labels: BTreeMap<String, String> = manifest
            .pointer("/spec/template/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        let named_ports: BTreeMap<String, u16> = container
            .get("ports")
            .and_then(Value::as_array)
            .map(|ports| {
                ports
                    .iter()
                    .filter_map(|p| {
                        let name = p.get("name")?.as_str()?;
                        let port = u16::try_from(p.get("containerPort")?.as_u64()?).ok()?;
                        Some((name.to_owned(), port))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let replicas = manifest
            .pointer("/spec/replicas")
            .and_then(Value::as_u64)
            .unwrap_or(1);
        let rs_hash = format!("{:08x}", fnv1a(&format!("{}/{}", id.namespace, id.name)));
        for replica in 0..replicas {
            let ip = ip_of(pods.len())
                .ok_or_else(|| format!("no loopback address left for pod {} of {id}", replica))?;
            pods.push(Pod {
                name: format!("{}-{rs_hash}-p{replica:04x}", id.name),
                namespace: id.namespace.clone(),
                deployment: id.name.clone(),
                labels: labels.clone(),
                ip,
                kind: kind.clone(),
                named_ports: named_ports.clone(),
                service: service.clone(),
                tls: tls.clone(),
            });
        }
    }
    Ok(pods)
}

fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The running echo servers of a test.
#[derive(Debug)]
pub struct Backends {
    /// The pods, in plan order.
    pub pods: Vec<Pod>,
    servers: Vec<EchoServer>,
    logs: Vec<EchoLog>,
}

impl Backends {
    /// Starts one echo server per pod (all listeners bound when this returns).
    pub async fn start(pods: Vec<Pod>) -> Result<Backends, String> {
        let mut servers = Vec::with_capacity(pods.len());
        let mut logs = Vec::with_capacity(pods.len());
        for pod in &pods {
            let at = |port: u16| Some(SocketAddr::new(IpAddr::V4(pod.ip), port));
            let mut config = EchoConfig {
                pod: pod.name.clone(),
                namespace: pod.namespace.clone(),
                service: pod.service.clone(),
                ..EchoConfig::default()
            };
            let https = pod.tls.as_ref().map(|t| HttpsConfig {
                addr: SocketAddr::new(IpAddr::V4(pod.ip), t.port),
                cert_pem: t.cert_pem.clone(),
                key_pem: t.key_pem.clone(),
                client_ca_pem: t.client_ca_pem.clone(),
            });
            match pod.kind {
                EchoKind::Http { http, h2c } => {
                    config.http = at(http);
                    config.h2c = at(h2c);
                    config.https = https;
                }
                EchoKind::Grpc { port } => {
                    config.mode = EchoMode::Grpc;
                    config.http = at(port);
                    config.https = https;
                }
                EchoKind::Dns { port } => config.dns = at(port),
                EchoKind::L4 { tcp, udp } => {
                    config.tcp = tcp.and_then(at);
                    config.udp = udp.and_then(at);
                    // echo-basic serves TCP over TLS only in TCP mode.
                    if tcp.is_some() {
                        config.tcp_tls = pod.tls.as_ref().map(|t| {
                            (
                                SocketAddr::new(IpAddr::V4(pod.ip), t.port),
                                TlsIdentity {
                                    cert_pem: t.cert_pem.clone(),
                                    key_pem: t.key_pem.clone(),
                                },
                            )
                        });
                    }
                }
            }
            let server = EchoServer::start(config)
                .await
                .map_err(|e| format!("echo server for pod {} on {}: {e}", pod.name, pod.ip))?;
            logs.push(server.log());
            servers.push(server);
        }
        Ok(Backends {
            pods,
            servers,
            logs,
        })
    }

    /// The logs of every pod of a Deployment.
    pub fn logs_of(&self, deployment: &str, namespace: Option<&str>) -> Vec<EchoLog> {
        self.pods
            .iter()
            .zip(&self.logs)
            .filter(|(p, _)| {
                p.deployment == deployment && namespace.is_none_or(|ns| ns == p.namespace)
            })
            .map(|(_, log)| log.clone())
            .collect()
    }

    /// Stops every server and waits for them.
    pub async fn shutdown(self) {
        for server in self.servers {
            server.shutdown().await;
        }
    }
}

fn selector_of(service: &Value) -> BTreeMap<String, String> {
    service
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// An EndpointSlice for every Service with a selector: the Service's ports by name with their
/// target ports, and the IPs of the matching pods. Services without a selector get none (their
/// slices are the manifests' own, see [`fill_manual_slices`]).
pub fn endpoint_slices(cluster: &Cluster, pods: &[Pod]) -> Vec<Value> {
    let mut slices = Vec::new();
    for (id, service) in cluster.objects() {
        if id.kind != "Service" {
            continue;
        }
        let selector = selector_of(service);
        if selector.is_empty() {
            continue;
        }
        let members: Vec<&Pod> = pods
            .iter()
            .filter(|p| {
                p.namespace == id.namespace
                    && selector.iter().all(|(k, v)| p.labels.get(k) == Some(v))
            })
            .collect();
        let ports: Vec<Value> = service
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map(|ports| {
                ports
                    .iter()
                    .filter_map(|p| slice_port(p, members.first().copied()))
                    .collect()
            })
            .unwrap_or_default();
        let endpoints: Vec<Value> = members
            .iter()
            .map(|p| {
                json!({
                    "addresses": [p.ip.to_string()],
                    "conditions": {"ready": true, "serving": true, "terminating": false},
                    "targetRef": {"kind": "Pod", "name": p.name, "namespace": p.namespace},
                })
            })
            .collect();
        slices.push(json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": format!("{}-harness", id.name),
                "namespace": id.namespace,
                "labels": {"kubernetes.io/service-name": id.name},
            },
            "addressType": "IPv4",
            "ports": ports,
            "endpoints": endpoints,
        }));
    }
    slices
}

/// An EndpointSlice port for a Service port: same name, the target port (a named target port
/// is looked up in the pods' container ports).
fn slice_port(port: &Value, pod: Option<&Pod>) -> Option<Value> {
    let name = port.get("name").and_then(Value::as_str).unwrap_or_default();
    let service_port = port.get("port").and_then(Value::as_u64)?;
    let target = match port.get("targetPort") {
        Some(Value::Number(n)) => n.as_u64()?,
        Some(Value::String(named)) => u64::from(*pod?.named_ports.get(named)?),
        _ => service_port,
    };
    let mut slice_port = json!({
        "name": name,
        "port": target,
        "protocol": port.get("protocol").and_then(Value::as_str).unwrap_or("TCP"),
    });
    if let (Some(app), Some(obj)) = (port.get("appProtocol"), slice_port.as_object_mut()) {
        obj.insert("appProtocol".to_owned(), app.clone());
    }
    Some(slice_port)
}

/// The manifests' own IPv4 EndpointSlices without endpoints get the IPs of the infra-backend-v1
/// pods of their namespace, as conformance/tests/httproute-service-types.go does for its
/// selector-less Services (the only test with hand-written slices). IPv6 slices stay empty (the
/// pods have IPv4 loopback addresses only). Returns the ids filled.
pub fn fill_manual_slices(cluster: &mut Cluster, pods: &[Pod]) -> Vec<ObjectId> {
    let ids: Vec<ObjectId> = cluster
        .objects()
        .filter(|(id, m)| {
            id.kind == "EndpointSlice"
                && m.get("addressType").and_then(Value::as_str) == Some("IPv4")
                && m.get("endpoints")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty)
        })
        .map(|(id, _)| id.clone())
        .collect();
    for id in &ids {
        let endpoints: Vec<Value> = pods
            .iter()
            .filter(|p| p.deployment == "infra-backend-v1" && p.namespace == id.namespace)
            .map(|p| {
                json!({
                    "addresses": [p.ip.to_string()],
                    "conditions": {"ready": true},
                    "targetRef": {"kind": "Pod", "name": p.name, "namespace": p.namespace},
                })
            })
            .collect();
        if let Some(slice) = cluster.get_mut(id).and_then(Value::as_object_mut) {
            slice.insert("endpoints".to_owned(), Value::Array(endpoints));
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::BASE_CREATED;

    fn cluster() -> Cluster {
        let mut c = Cluster::default();
        let docs = [
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "web", "namespace": "ns"},
                   "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "web"}},
                     "spec": {"containers": [{"image": "registry.k8s.io/gateway-api/echo-basic:v1"}]}}}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "grpc", "namespace": "ns"},
                   "spec": {"template": {"metadata": {"labels": {"app": "grpc"}},
                     "spec": {"containers": [{"image": "echo-basic", "env": [{"name": "GRPC_ECHO_SERVER", "value": "1"}]}]}}}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "dns", "namespace": "ns"},
                   "spec": {"template": {"spec": {"containers": [{"image": "coredns"}]}}}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "ns"},
                   "spec": {"selector": {"app": "web"}, "ports": [
                       {"name": "first", "port": 8080, "targetPort": 3000},
                       {"port": 8081, "targetPort": 3001, "appProtocol": "kubernetes.io/h2c"}]}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "manual", "namespace": "ns"},
                   "spec": {"ports": [{"name": "p", "port": 8080, "targetPort": 3000}]}}),
        ];
        for (i, d) in docs.into_iter().enumerate() {
            c.apply("t", i, d, BASE_CREATED);
        }
        c
    }

    #[test]
    fn echo_deployments_become_pods_with_their_own_ips() {
        let pods = plan(&cluster(), |n| Some(Ipv4Addr::new(127, 20, 0, n as u8 + 1))).unwrap();
        let names: Vec<&str> = pods.iter().map(|p| p.deployment.as_str()).collect();
        // coredns runs as gw-echo's DNS responder (the UDPRoute DNS check).
        assert_eq!(names, ["dns", "grpc", "web", "web"]);
        assert_eq!(pods[0].kind, EchoKind::Dns { port: 53 });
        assert_eq!(pods[1].kind, EchoKind::Grpc { port: 3000 });
        assert_eq!(crate::live::expect::backend_of_pod(&pods[2].name), "web");
        assert_ne!(pods[2].ip, pods[3].ip);
        assert_ne!(pods[2].name, pods[3].name);
    }

    #[test]
    fn slices_mirror_service_ports_and_select_pods() {
        let c = cluster();
        let pods = plan(&c, |n| Some(Ipv4Addr::new(127, 20, 0, n as u8 + 1))).unwrap();
        let slices = endpoint_slices(&c, &pods);
        assert_eq!(slices.len(), 1);
        let s = &slices[0];
        assert_eq!(s["metadata"]["labels"]["kubernetes.io/service-name"], "web");
        assert_eq!(
            s["ports"][0],
            json!({"name": "first", "port": 3000, "protocol": "TCP"})
        );
        assert_eq!(s["ports"][1]["name"], "");
        assert_eq!(s["ports"][1]["appProtocol"], "kubernetes.io/h2c");
        assert_eq!(s["endpoints"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn empty_ipv4_manual_slices_get_the_infra_backend_v1_pods() {
        let mut c = Cluster::default();
        let docs = [
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "infra-backend-v1", "namespace": "ns"},
                   "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "v1"}},
                     "spec": {"containers": [{"image": "echo-basic"}]}}}}),
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                   "metadata": {"name": "m4", "namespace": "ns",
                                "labels": {"kubernetes.io/service-name": "manual"}},
                   "addressType": "IPv4", "ports": [{"name": "p", "port": 3000}]}),
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                   "metadata": {"name": "m6", "namespace": "ns",
                                "labels": {"kubernetes.io/service-name": "manual"}},
                   "addressType": "IPv6", "ports": [{"name": "p", "port": 3000}]}),
        ];
        for (i, d) in docs.into_iter().enumerate() {
            c.apply("t", i, d, BASE_CREATED);
        }
        let pods = plan(&c, |n| Some(Ipv4Addr::new(127, 20, 0, n as u8 + 1))).unwrap();
        let filled = fill_manual_slices(&mut c, &pods);
        assert_eq!(filled, [ObjectId::new("EndpointSlice", "ns", "m4")]);
        let m4 = c.get(&filled[0]).unwrap();
        assert_eq!(m4["endpoints"].as_array().unwrap().len(), 2);
        assert_eq!(m4["endpoints"][0]["addresses"][0], "127.20.0.1");
        let m6 = c.get(&ObjectId::new("EndpointSlice", "ns", "m6")).unwrap();
        assert!(m6.get("endpoints").is_none());
    }
    #[test]
    fn tls_env_reads_the_mounted_secret_and_config_map() {
        let mut c = Cluster::default();
        let programmatic = crate::certs::programmatic_objects().unwrap();
        for (i, o) in programmatic.iter().enumerate() {
            c.apply("p", i, o.clone(), BASE_CREATED);
        }
        let deployment = |name: &str, env: Value| {
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": name, "namespace": "gateway-conformance-infra"},
               "spec": {"template": {"metadata": {"labels": {"app": name}}, "spec": {
                 "containers": [{"image": "echo-basic", "env": env,
                   "ports": [{"name": "tls", "containerPort": 8443}],
                   "volumeMounts": [{"name": "s", "mountPath": "/etc/secret-volume"},
                                    {"name": "c", "mountPath": "/etc/configmap-volume"}]}],
                 "volumes": [
                   {"name": "s", "secret": {"secretName": "tls-checks-certificate",
                     "items": [{"key": "tls.crt", "path": "crt"}, {"key": "tls.key", "path": "key"}]}},
                   {"name": "c", "configMap": {"name": "tls-checks-ca-certificate",
                     "items": [{"key": "ca.crt", "path": "ca"}]}}]}}}})
        };
        c.apply(
            "t",
            100,
            deployment(
                "https",
                json!([
            {"name": "TLS_SERVER_CERT", "value": "/etc/secret-volume/crt"},
            {"name": "TLS_SERVER_PRIVKEY", "value": "/etc/secret-volume/key"},
            {"name": "TLS_CLIENT_CACERTS", "value": "/etc/configmap-volume/ca"}]),
            ),
            BASE_CREATED,
        );
        c.apply(
            "t",
            101,
            deployment(
                "tcp",
                json!([
            {"name": "TCP_ECHO_SERVER", "value": "1"},
            {"name": "SERVICE_NAME", "value": "tcp-svc"},
            {"name": "TLS_SERVER_CERT", "value": "/etc/secret-volume/crt"},
            {"name": "TLS_SERVER_PRIV_KEY", "value": "/etc/secret-volume/key"}]),
            ),
            BASE_CREATED,
        );
        let pods = plan(&c, |n| Some(Ipv4Addr::new(127, 20, 0, n as u8 + 1))).unwrap();
        let pem = |key: &str| {
            crate::certs::programmatic_pem(
                "gateway-conformance-infra",
                "tls-checks-certificate",
                key,
            )
        };
        let https = pods.iter().find(|p| p.deployment == "https").unwrap();
        let tls = https.tls.as_ref().unwrap();
        assert_eq!(tls.port, 8443);
        assert_eq!(Some(tls.cert_pem.clone()), pem("tls.crt"));
        assert_eq!(Some(tls.key_pem.clone()), pem("tls.key"));
        assert!(
            tls.client_ca_pem
                .as_deref()
                .unwrap()
                .contains("BEGIN CERTIFICATE")
        );
        let tcp = pods.iter().find(|p| p.deployment == "tcp").unwrap();
        assert_eq!(tcp.service, "tcp-svc");
        assert_eq!(
            tcp.kind,
            EchoKind::L4 {
                tcp: Some(3000),
                udp: None
            }
        );
        assert_eq!(tcp.tls.as_ref().unwrap().client_ca_pem, None);

        c.apply(
            "t",
            102,
            deployment(
                "broken",
                json!([
            {"name": "TLS_SERVER_CERT", "value": "/elsewhere/crt"},
            {"name": "TLS_SERVER_PRIVKEY", "value": "/etc/secret-volume/key"}]),
            ),
            BASE_CREATED,
        );
        let err = plan(&c, |n| Some(Ipv4Addr::new(127, 20, 0, n as u8 + 1))).unwrap_err();
        assert!(err.contains("no volumeMount holds /elsewhere/crt"), "{err}");
    }
}
