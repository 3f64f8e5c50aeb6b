//! Reflector stores for every watched kind, and the debounced cluster snapshot.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use gw_model::resources::{ObjectKey, Resources};
use gw_model::status::GatewayStatusAddress;
use k8s_openapi::api::core::v1::Service;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::convert::{ConvertError, convert};
use crate::health::{Health, Tracker};
use crate::{ClusterState, Config};

/// State shared by the watch tasks, the snapshot task and the status writer.
pub(crate) struct Shared {
    tracker: Mutex<Tracker>,
    published: AtomicBool,
    pub(crate) leader: AtomicBool,
    status_error: Mutex<Option<String>>,
    pub(crate) health: watch::Sender<Health>,
    /// Bumped on every watch event that changes a store.
    pub(crate) revision: watch::Sender<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn new(stale_after: Duration) -> Shared {
        Shared {
            tracker: Mutex::new(Tracker::new(stale_after)),
            published: AtomicBool::new(false),
            leader: AtomicBool::new(false),
            status_error: Mutex::new(None),
            health: watch::Sender::new(Health::default()),
            revision: watch::Sender::new(0),
        }
    }

    fn changed(&self) {
        self.revision.send_modify(|r| *r = r.wrapping_add(1));
    }

    pub(crate) fn set_status_error(&self, error: Option<String>) {
        *lock(&self.status_error) = error;
        self.refresh_health();
    }

    /// Recomputes [`Health`] and publishes it when it changed.
    pub(crate) fn refresh_health(&self) {
        let mut health =
            lock(&self.tracker).health(Instant::now(), self.published.load(Ordering::Acquire));
        health.leader = self.leader.load(Ordering::Acquire);
        health.status_error = lock(&self.status_error).clone();
        self.health.send_if_modified(|h| {
            let changed = *h != health;
            *h = health;
            changed
        });
    }
}

/// One watched kind, type-erased: what the snapshot and the status writer need of its store.
pub(crate) trait Watched: Send + Sync {
    /// Where the kind is served.
    fn resource(&self) -> &ApiResource;
    /// Whether objects live in namespaces.
    fn namespaced(&self) -> bool;
    /// Converts every object into `out`.
    fn convert_into(&self, out: &mut Build);
    /// One object as the API server sent it (status included), as JSON.
    fn get_json(&self, key: &ObjectKey) -> Option<Value>;
    /// Every object as JSON.
    fn all_json(&self) -> Vec<Value>;
}

struct Typed<K: Resource + Clone + 'static>
where
    K::DynamicType: Eq + Hash + Clone,
{
    kind: &'static str,
    resource: ApiResource,
    namespaced: bool,
    store: Store<K>,
}

impl<K> Watched for Typed<K>
where
    K: Resource + Clone + Serialize + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Send + Sync,
{
    fn resource(&self) -> &ApiResource {
        &self.resource
    }

    fn namespaced(&self) -> bool {
        self.namespaced
    }

    fn convert_into(&self, out: &mut Build) {
        let mut ignored = 0usize;
        for object in self.store.state() {
            match convert(&*object) {
                Ok(c) => {
                    out.warnings
                        .extend(c.warnings.iter().map(ToString::to_string));
                    match c.object {
                        Some(o) => {
                            out.resources.insert(o);
                        }
                        None => ignored += 1,
                    }
                }
                Err(e @ ConvertError::Load(_)) => out.errors.push(e.to_string()),
                Err(e) => out.errors.push(format!("{} {e}", self.kind)),
            }
        }
        if ignored > 0 {
            tracing::debug!(
                kind = self.kind,
                objects = ignored,
                "gw-model does not read this kind yet; ignored"
            );
        }
    }

    fn get_json(&self, key: &ObjectKey) -> Option<Value> {
        let found = self.store.state().into_iter().find(|o| {
            o.name_any() == key.name && o.namespace().unwrap_or_default() == key.namespace
        })?;
        serde_json::to_value(&*found).ok()
    }

    fn all_json(&self) -> Vec<Value> {
        self.store
            .state()
            .iter()
            .filter_map(|o| serde_json::to_value(&**o).ok())
            .collect()
    }
}

/// The result of converting every store.
#[derive(Debug, Default)]
pub(crate) struct Build {
    pub(crate) resources: Resources,
    pub(crate) errors: Vec<String>,
    pub(crate) warnings: Vec<String>,
}

/// Whether a watch error means the API server does not serve the kind (its CRD is not
/// installed).
fn is_not_found(e: &watcher::Error) -> bool {
    matches!(
        e,
        watcher::Error::InitialListFailed(kube::Error::Api(s))
            | watcher::Error::WatchStartFailed(kube::Error::Api(s)) if s.code == 404
    )
}

fn is_gone(e: &watcher::Error) -> bool {
    matches!(e, watcher::Error::WatchError(s) if s.code == 410)
}

/// Starts watching one kind into a reflector store.
fn spawn_watch<K>(
    api: Api<K>,
    dyntype: K::DynamicType,
    kind: &'static str,
    optional: bool,
    shared: Arc<Shared>,
    config: &Config,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
{
    let writer = reflector::store::Writer::new(dyntype);
    let store = writer.as_reader();
    shared_register(&shared, kind, !optional);
    let stream = watcher(api, watcher::Config::default())
        // Nobody reads managedFields; they are most of an object's size.
        .modify(|o: &mut K| o.managed_fields_mut().clear())
        .backoff(Backoff::new(config.backoff_min, config.backoff_max));
    let stream = reflector::reflector(writer, stream);
    tasks.push(tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut reported_missing = false;
        while let Some(item) = stream.next().await {
            match item {
                Ok(watcher::Event::InitDone) => {
                    lock(&shared.tracker).synced(kind);
                    tracing::debug!(kind, "listed");
                    shared.changed();
                }
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
                    lock(&shared.tracker).ok(kind);
                    shared.changed();
                }
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {
                    lock(&shared.tracker).ok(kind);
                }
                Err(e) if optional && is_not_found(&e) => {
                    if !reported_missing {
                        tracing::debug!(
                            kind,
                            "the API server does not serve this kind; watching for it to appear"
                        );
                        reported_missing = true;
                    }
                    let first = !lock(&shared.tracker).is_synced(kind);
                    lock(&shared.tracker).synced(kind);
                    if first {
                        shared.changed();
                    }
                }
                Err(e) if is_gone(&e) => {
                    // 410 Gone: the resourceVersion expired; the watcher relists and the store
                    // swaps the new list in atomically once it is complete.
                    tracing::info!(kind, "watch expired (410 Gone); relisting");
                }
                Err(e) => {
                    tracing::warn!(kind, error = %e, "watch failed; retrying with backoff");
                    lock(&shared.tracker).failed(kind, e.to_string(), Instant::now());
                }
            }
            shared.refresh_health();
        }
    }));
    store
}

fn shared_register(shared: &Shared, kind: &'static str, required: bool) {
    lock(&shared.tracker).register(kind, required);
}

/// Every watched kind's store, by kind name.
pub(crate) struct Stores {
    pub(crate) kinds: BTreeMap<&'static str, Arc<dyn Watched>>,
    pub(crate) services: Store<Service>,
}

/// The kinds gw-model reads that have no `gateway-api` type, watched as dynamic objects:
/// `(group, version, kind, plural)`.
pub const DYNAMIC_KINDS: [(&str, &str, &str, &str); 2] = [
    (
        "policy.gw.dev",
        "v1alpha1",
        "TrafficPolicy",
        "trafficpolicies",
    ),
    (
        "gateway.networking.x-k8s.io",
        "v1alpha1",
        "XBackend",
        "xbackends",
    ),
];

/// Every resource the controller watches (list and watch, cluster-wide), as RBAC must grant
/// it: the `gateway-api` and `k8s-openapi` types the controller watches, and the
/// [`DYNAMIC_KINDS`].
pub fn watched_resources() -> Vec<ApiResource> {
    use gateway_api::experimental as x;
    use k8s_openapi::api::core::v1 as core;
    let mut out = vec![
        ApiResource::erase::<x::gatewayclasses::GatewayClass>(&()),
        ApiResource::erase::<x::gateways::Gateway>(&()),
        ApiResource::erase::<x::httproutes::HttpRoute>(&()),
        ApiResource::erase::<x::listenersets::ListenerSet>(&()),
        ApiResource::erase::<x::grpcroutes::GrpcRoute>(&()),
        ApiResource::erase::<x::tlsroutes::TlsRoute>(&()),
        ApiResource::erase::<x::tcproutes::TcpRoute>(&()),
        ApiResource::erase::<x::udproutes::UdpRoute>(&()),
        ApiResource::erase::<x::referencegrants::ReferenceGrant>(&()),
        ApiResource::erase::<gateway_api::backendtlspolicies::BackendTlsPolicy>(&()),
        ApiResource::erase::<x::xbackendtrafficpolicies::XBackendTrafficPolicy>(&()),
        ApiResource::erase::<core::Service>(&()),
        ApiResource::erase::<k8s_openapi::api::discovery::v1::EndpointSlice>(&()),
        ApiResource::erase::<core::Secret>(&()),
        ApiResource::erase::<core::ConfigMap>(&()),
        ApiResource::erase::<core::Namespace>(&()),
    ];
    out.extend(
        DYNAMIC_KINDS
            .iter()
            .map(|(g, v, k, p)| dynamic_resource(g, v, k, p)),
    );
    out
}

fn dynamic_resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.to_owned(),
        version: version.to_owned(),
        api_version: format!("{group}/{version}"),
        kind: kind.to_owned(),
        plural: plural.to_owned(),
    }
}

/// The kinds whose status gw writes (the `/status` subresource RBAC must allow patching).
pub const STATUS_KINDS: [&str; 9] = [
    "GatewayClass",
    "Gateway",
    "ListenerSet",
    "HTTPRoute",
    "GRPCRoute",
    "TLSRoute",
    "TCPRoute",
    "UDPRoute",
    "BackendTLSPolicy",
];

/// What starting a watch needs, shared by every kind.
struct Starter<'a> {
    client: &'a Client,
    shared: &'a Arc<Shared>,
    config: &'a Config,
    tasks: &'a mut Vec<JoinHandle<()>>,
    kinds: BTreeMap<&'static str, Arc<dyn Watched>>,
}

impl Starter<'_> {
    /// Starts the watch of a typed kind and registers its store.
    fn typed<K>(&mut self, kind: &'static str, optional: bool) -> Store<K>
    where
        K: Resource<DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Serialize
            + Debug
            + Send
            + Sync
            + 'static,
    {
        let api: Api<K> = Api::all(self.client.clone());
        let store = spawn_watch(
            api,
            (),
            kind,
            optional,
            self.shared.clone(),
            self.config,
            self.tasks,
        );
        let namespaced = !matches!(kind, "GatewayClass" | "Namespace");
        let w: Arc<dyn Watched> = Arc::new(Typed {
            kind,
            resource: ApiResource::erase::<K>(&()),
            namespaced,
            store: store.clone(),
        });
        self.kinds.insert(kind, w);
        store
    }
}

/// Starts a watch for every kind.
pub(crate) fn start(
    client: &Client,
    shared: &Arc<Shared>,
    config: &Config,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Stores {
    use gateway_api::experimental as x;
    use k8s_openapi::api::core::v1 as core;
    let mut starter = Starter {
        client,
        shared,
        config,
        tasks,
        kinds: BTreeMap::new(),
    };
    starter.typed::<x::gatewayclasses::GatewayClass>("GatewayClass", false);
    starter.typed::<x::gateways::Gateway>("Gateway", false);
    starter.typed::<x::httproutes::HttpRoute>("HTTPRoute", false);
    starter.typed::<x::listenersets::ListenerSet>("ListenerSet", true);
    starter.typed::<x::grpcroutes::GrpcRoute>("GRPCRoute", true);
    starter.typed::<x::tlsroutes::TlsRoute>("TLSRoute", true);
    starter.typed::<x::tcproutes::TcpRoute>("TCPRoute", true);
    starter.typed::<x::udproutes::UdpRoute>("UDPRoute", true);
    starter.typed::<x::referencegrants::ReferenceGrant>("ReferenceGrant", true);
    starter.typed::<gateway_api::backendtlspolicies::BackendTlsPolicy>("BackendTLSPolicy", true);
    starter
        .typed::<x::xbackendtrafficpolicies::XBackendTrafficPolicy>("XBackendTrafficPolicy", true);
    let services = starter.typed::<core::Service>("Service", false);
    starter.typed::<k8s_openapi::api::discovery::v1::EndpointSlice>("EndpointSlice", false);
    starter.typed::<core::Secret>("Secret", false);
    starter.typed::<core::ConfigMap>("ConfigMap", false);
    starter.typed::<core::Namespace>("Namespace", false);
    for (group, version, kind, plural) in DYNAMIC_KINDS {
        let resource = dynamic_resource(group, version, kind, plural);
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let writer = reflector::store::Writer::new(resource.clone());
        let store = writer.as_reader();
        spawn_dynamic(api, writer, kind, shared.clone(), config, starter.tasks);
        starter.kinds.insert(
            kind,
            Arc::new(Typed {
                kind,
                resource,
                namespaced: true,
                store,
            }),
        );
    }
    Stores {
        kinds: starter.kinds,
        services,
    }
}

/// [`spawn_watch`] for a dynamic kind (whose store writer needs its `ApiResource`).
fn spawn_dynamic(
    api: Api<DynamicObject>,
    writer: reflector::store::Writer<DynamicObject>,
    kind: &'static str,
    shared: Arc<Shared>,
    config: &Config,
    tasks: &mut Vec<JoinHandle<()>>,
) {
    shared_register(&shared, kind, false);
    let stream = watcher(api, watcher::Config::default())
        .modify(|o: &mut DynamicObject| o.managed_fields_mut().clear())
        .backoff(Backoff::new(config.backoff_min, config.backoff_max));
    let stream = reflector::reflector(writer, stream);
    tasks.push(tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            match item {
                Ok(watcher::Event::InitDone) => {
                    lock(&shared.tracker).synced(kind);
                    shared.changed();
                }
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
                    lock(&shared.tracker).ok(kind);
                    shared.changed();
                }
                Ok(_) => lock(&shared.tracker).ok(kind),
                Err(e) if is_not_found(&e) => {
                    let first = !lock(&shared.tracker).is_synced(kind);
                    lock(&shared.tracker).synced(kind);
                    if first {
                        tracing::debug!(
                            kind,
                            "the API server does not serve this kind; watching for it to appear"
                        );
                        shared.changed();
                    }
                }
                Err(e) if is_gone(&e) => {
                    tracing::info!(kind, "watch expired (410 Gone); relisting")
                }
                Err(e) => {
                    tracing::warn!(kind, error = %e, "watch failed; retrying with backoff");
                    lock(&shared.tracker).failed(kind, e.to_string(), Instant::now());
                }
            }
            shared.refresh_health();
        }
    }));
}

/// The addresses a Service is reachable at: its load balancer's ingress IPs and hostnames, or,
/// until a load balancer is provisioned (or for ClusterIP and NodePort Services), its cluster
/// IPs.
pub fn service_addresses(service: &Service) -> Vec<GatewayStatusAddress> {
    let mut out = Vec::new();
    let ingress = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    for i in ingress.into_iter().flatten() {
        if let Some(ip) = i.ip.as_deref().filter(|ip| !ip.is_empty()) {
            out.push(GatewayStatusAddress {
                type_: "IPAddress".into(),
                value: ip.to_owned(),
            });
        } else if let Some(host) = i.hostname.as_deref().filter(|h| !h.is_empty()) {
            out.push(GatewayStatusAddress {
                type_: "Hostname".into(),
                value: host.to_owned(),
            });
        }
    }
    if out.is_empty() {
        let spec = service.spec.as_ref();
        let ips = spec
            .and_then(|s| s.cluster_ips.clone())
            .or_else(|| spec.and_then(|s| s.cluster_ip.clone()).map(|ip| vec![ip]))
            .unwrap_or_default();
        out.extend(
            ips.into_iter()
                .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
                .map(|ip| GatewayStatusAddress {
                    type_: "IPAddress".into(),
                    value: ip,
                }),
        );
    }
    out
}

/// Converts every store into a [`ClusterState`] whenever they change (debounced), and
/// publishes it when it differs from the last one.
pub(crate) async fn snapshots(
    stores: Arc<Stores>,
    shared: Arc<Shared>,
    config: Arc<Config>,
    states: watch::Sender<Option<Arc<ClusterState>>>,
) {
    let mut revision = shared.revision.subscribe();
    let mut version = 0u64;
    loop {
        if revision.changed().await.is_err() {
            return;
        }
        // Debounce: wait for `debounce` of quiet, but never longer than `max_debounce`.
        let first = Instant::now();
        loop {
            let left = config.max_debounce.saturating_sub(first.elapsed());
            let wait = config.debounce.min(left);
            if wait.is_zero() {
                break;
            }
            match tokio::time::timeout(wait, revision.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => break,
            }
        }
        revision.borrow_and_update();
        if !lock(&shared.tracker).all_synced() {
            continue;
        }
        let mut build = Build::default();
        for w in stores.kinds.values() {
            w.convert_into(&mut build);
        }
        let gateway_addresses = config
            .gateway_service
            .as_ref()
            .and_then(|key| {
                stores.services.state().into_iter().find(|s| {
                    s.name_any() == key.name && s.namespace().unwrap_or_default() == key.namespace
                })
            })
            .map(|s| service_addresses(&s))
            .unwrap_or_default();
        let unchanged = states.borrow().as_ref().is_some_and(|s| {
            s.resources == build.resources
                && s.gateway_addresses == gateway_addresses
                && s.errors == build.errors
        });
        if unchanged {
            continue;
        }
        version += 1;
        for e in &build.errors {
            tracing::error!(error = %e, "object not loaded");
        }
        tracing::info!(
            version,
            objects = build.resources.len(),
            "cluster configuration changed"
        );
        states.send_replace(Some(Arc::new(ClusterState {
            version,
            resources: build.resources,
            gateway_addresses,
            errors: build.errors,
            warnings: build.warnings,
        })));
        shared.published.store(true, Ordering::Release);
        shared.refresh_health();
    }
}

/// Recomputes health now and then: a failure older than the staleness window stops counting
/// without any event.
pub(crate) async fn health_ticker(shared: Arc<Shared>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        shared.refresh_health();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The published lists (RBAC is checked against them) are what `start` watches.
    #[tokio::test]
    async fn watched_resources_are_what_start_watches() {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = Client::try_from(config).unwrap();
        let shared = Arc::new(Shared::new(Duration::from_secs(1)));
        let mut tasks = Vec::new();
        let stores = start(&client, &shared, &Config::new("x"), &mut tasks);
        for t in &tasks {
            t.abort();
        }
        let mut started: Vec<(String, String)> = stores
            .kinds
            .values()
            .map(|w| {
                (
                    w.resource().api_version.clone(),
                    w.resource().plural.clone(),
                )
            })
            .collect();
        let mut listed: Vec<(String, String)> = watched_resources()
            .into_iter()
            .map(|r| (r.api_version, r.plural))
            .collect();
        started.sort();
        listed.sort();
        assert_eq!(started, listed);
        for kind in STATUS_KINDS {
            assert!(stores.kinds.contains_key(kind), "{kind} is watched");
            assert!(crate::gw_model::resources::Kind::from_name(kind).is_some());
        }
    }

    #[test]
    fn service_addresses_prefer_the_load_balancer() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "gw", "namespace": "gw-system"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"]},
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}, {"hostname": "gw.example.net"}]}}
        }))
        .unwrap();
        let got = service_addresses(&svc);
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].type_.as_str(), got[0].value.as_str()),
            ("IPAddress", "203.0.113.7")
        );
        assert_eq!(
            (got[1].type_.as_str(), got[1].value.as_str()),
            ("Hostname", "gw.example.net")
        );
    }

    #[test]
    fn service_addresses_fall_back_to_cluster_ips() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "gw"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10", "fd00::a"]},
            "status": {"loadBalancer": {}}
        }))
        .unwrap();
        let got: Vec<_> = service_addresses(&svc)
            .into_iter()
            .map(|a| a.value)
            .collect();
        assert_eq!(got, ["10.96.0.10", "fd00::a"]);
        let headless: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "gw"}, "spec": {"clusterIP": "None"}
        }))
        .unwrap();
        assert!(service_addresses(&headless).is_empty());
    }
}
