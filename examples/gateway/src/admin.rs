//! The admin server: `/healthz`, `/readyz`, `/status`, `/config_dump`, `/metrics`, `/explain`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::controller::Snapshot;
use crate::explain::{self, Params};
use crate::metrics::{L4Metrics, RequestMetrics, escape_label};

/// Counters the admin server exposes on `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub reloads: AtomicU64,
    pub reload_errors: AtomicU64,
    /// Kubernetes mode: 1 while every watch of the API server works, 0 while one fails.
    #[cfg_attr(not(feature = "k8s"), allow(dead_code))]
    pub kubernetes_connected: AtomicU64,
    /// Whether `kubernetes_connected` is reported (Kubernetes mode).
    pub kubernetes_mode: std::sync::atomic::AtomicBool,
    /// Errors of the last reload (load errors and listeners that could not be served).
    pub config_errors: AtomicU64,
    /// Requests by route and backend.
    pub requests: Arc<RequestMetrics>,
    /// TCP and TLS connections, UDP sessions and datagrams, by route and backend.
    pub l4: Arc<L4Metrics>,
    /// By listener socket address, then Gateway; kept after a listener closes (counters never
    /// go back).
    listeners: Mutex<BTreeMap<(String, String), Arc<ListenerMetrics>>>,
}

/// Connection counters of one listener socket.
#[derive(Debug, Default)]
pub(crate) struct ListenerMetrics {
    /// Connections accepted and served.
    pub accepted: AtomicU64,
    /// Connections closed at once because a connection cap was reached.
    pub rejected: AtomicU64,
    /// Connections open now.
    pub active: AtomicU64,
}

impl Metrics {
    /// The counters of the listener on `addr` for `gateway` (created on first use).
    pub(crate) fn listener(&self, addr: String, gateway: String) -> Arc<ListenerMetrics> {
        let mut listeners = self
            .listeners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        listeners.entry((addr, gateway)).or_default().clone()
    }

    /// The listener counters in Prometheus text format.
    fn write_listeners(&self, out: &mut String) {
        let listeners = self
            .listeners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let families: [MetricFamily; 3] = [
            (
                "gw_listener_connections_accepted_total",
                "counter",
                "Connections accepted and served, by listener socket.",
                |m| m.accepted.load(Ordering::Relaxed),
            ),
            (
                "gw_listener_connections_rejected_total",
                "counter",
                "Connections closed at once because a connection cap was reached.",
                |m| m.rejected.load(Ordering::Relaxed),
            ),
            (
                "gw_listener_connections_active",
                "gauge",
                "Connections open now, by listener socket.",
                |m| m.active.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, value) in families {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
            for ((addr, gateway), m) in listeners.iter() {
                let _ = writeln!(
                    out,
                    "{name}{{listener=\"{}\",gateway=\"{}\"}} {}",
                    escape_label(addr),
                    escape_label(gateway),
                    value(m)
                );
            }
        }
    }
}

/// A metric's name, type, help text, and how to read it.
type MetricFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ListenerMetrics) -> u64,
);

/// The XBackend objects of the report (by index in its entries), each with the
/// `gw.dev/HostnameResolved` condition added to every parent: whether the data plane could
/// resolve its name (the compile, which does no I/O, cannot say).
fn xbackends_with_dns_conditions(
    entries: &[gw_model::status::StatusEntry],
    table: &gw_model::table::RouteTable,
    resolver: &gw_router::dns::Resolver,
) -> BTreeMap<usize, serde_json::Value> {
    use gw_model::table::Backend;
    let mut names = BTreeMap::new();
    for g in &table.gateways {
        for l in &g.listeners {
            let backends = l
                .http
                .iter()
                .flat_map(|r| &r.action.backends)
                .chain(l.grpc.iter().flat_map(|r| &r.action.backends))
                .chain(l.l4.iter().flat_map(|r| &r.backends));
            for b in backends {
                if let Backend::External(x) = &b.backend {
                    names.insert(x.backend.clone(), (x.hostname.clone(), x.port));
                }
            }
        }
    }
    let answers: BTreeMap<(String, u16), gw_router::dns::NameStatus> = resolver
        .snapshot()
        .into_iter()
        .map(|n| ((n.host.clone(), n.port), n))
        .collect();
    let mut items = BTreeMap::new();
    for (index, entry) in entries.iter().enumerate() {
        if entry.kind != gw_model::resources::Kind::XBackend {
            continue;
        }
        let Some(name) = names.get(&entry.key) else {
            continue;
        };
        let mut item = entry.to_object();
        let generation = item["metadata"]["generation"].clone();
        let (status, reason, message) = match answers.get(name) {
            Some(a) if !a.addresses.is_empty() && a.error.is_none() => (
                "True",
                "Resolved",
                format!(
                    "{} resolves to {}",
                    name.0,
                    a.addresses
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            Some(a) if a.answered => (
                "False",
                "ResolutionFailed",
                format!(
                    "{} does not resolve: {}; requests to it are answered 503",
                    name.0,
                    a.error.as_deref().unwrap_or("no address")
                ),
            ),
            _ => (
                "Unknown",
                "Pending",
                format!("{} is being resolved", name.0),
            ),
        };
        let condition = serde_json::json!({
            "type": "gw.dev/HostnameResolved",
            "status": status,
            "reason": reason,
            "message": message,
            "observedGeneration": generation,
        });
        if let Some(parents) = item["status"]["parents"].as_array_mut() {
            for p in parents {
                if let Some(c) = p["conditions"].as_array_mut() {
                    c.push(condition.clone());
                }
            }
        }
        items.insert(index, item);
    }
    items
}

/// The `/status` body: the report as a Kubernetes `List` (XBackends with their DNS condition),
/// the configuration version, errors, warnings and the source's own status. Serialized from the
/// report entry by entry: a JSON tree of a large report would cost several times its size, and
/// the allocator keeps such peaks.
struct StatusBody<'a> {
    entries: &'a [gw_model::status::StatusEntry],
    xbackends: BTreeMap<usize, serde_json::Value>,
    version: String,
    errors: &'a [String],
    warnings: &'a [String],
    source: String,
}

impl serde::Serialize for StatusBody<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Items<'b>(&'b StatusBody<'b>);
        impl serde::Serialize for Items<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeSeq;
                let mut seq = serializer.serialize_seq(Some(self.0.entries.len()))?;
                for (i, entry) in self.0.entries.iter().enumerate() {
                    match self.0.xbackends.get(&i) {
                        Some(item) => seq.serialize_element(item)?,
                        None => seq.serialize_element(&entry.object_view())?,
                    }
                }
                seq.end()
            }
        }
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("apiVersion", "v1")?;
        map.serialize_entry("kind", "List")?;
        map.serialize_entry(
            "metadata",
            &serde_json::json!({"resourceVersion": self.version}),
        )?;
        map.serialize_entry("items", &Items(self))?;
        map.serialize_entry("errors", self.errors)?;
        map.serialize_entry("warnings", self.warnings)?;
        if !self.source.is_empty() {
            map.serialize_entry("source", &self.source)?;
        }
        map.end()
    }
}

/// What the admin server reads.
#[derive(Clone)]
pub(crate) struct AdminState {
    pub snapshot: watch::Receiver<Option<Arc<Snapshot>>>,
    pub metrics: Arc<Metrics>,
    /// DNS answers of external backends, reported on their XBackend's status.
    pub resolver: gw_router::dns::Resolver,
    /// What the configuration source says about itself (Kubernetes mode: the API server
    /// connection), appended to `/readyz` and shown in `/status` as `source`; empty otherwise.
    pub source: watch::Receiver<String>,
    /// The serving router, for `/explain` (its routes are the ones requests see).
    pub router: gw_router::Router,
}

/// Binds the admin address and serves until the process ends.
pub(crate) async fn serve(addr: SocketAddr, state: AdminState) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let state = state.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(handle(&state, &req)) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(local)
}

fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

fn json(value: &impl serde::Serialize) -> Response<Full<Bytes>> {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => respond(StatusCode::OK, "application/json", body),
        Err(e) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            e.to_string(),
        ),
    }
}

fn handle(state: &AdminState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let snapshot = state.snapshot.borrow().clone();
    match req.uri().path() {
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" => {
            let source = state.source.borrow().clone();
            let detail = if source.is_empty() {
                String::new()
            } else {
                format!("{source}\n")
            };
            match snapshot {
                Some(_) => respond(StatusCode::OK, "text/plain", format!("ready\n{detail}")),
                None => respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("not ready\n{detail}"),
                ),
            }
        }
        "/status" => {
            let Some(s) = snapshot else {
                return respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready\n");
            };
            let entries = &s.compiled.status.entries;
            json(&StatusBody {
                entries,
                xbackends: xbackends_with_dns_conditions(
                    entries,
                    &s.compiled.table,
                    &state.resolver,
                ),
                version: s.version.to_string(),
                errors: &s.errors,
                warnings: &s.warnings,
                source: state.source.borrow().clone(),
            })
        }
        "/config_dump" => {
            let Some(s) = snapshot else {
                return respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready\n");
            };
            json(&s.compiled.table)
        }
        "/metrics" => {
            let version = snapshot.as_ref().map_or(0, |s| s.version);
            let m = &state.metrics;
            let mut body = format!(
                "# HELP gw_config_reloads_total Configuration reloads, by result: success (applied) or error (rejected; the last good configuration keeps serving).\n\
                 # TYPE gw_config_reloads_total counter\n\
                 gw_config_reloads_total{{result=\"success\"}} {}\n\
                 gw_config_reloads_total{{result=\"error\"}} {}\n\
                 # HELP gw_config_errors Errors of the last reload (files or documents that do not load, listeners that cannot be served).\n\
                 # TYPE gw_config_errors gauge\n\
                 gw_config_errors {}\n\
                 # HELP gw_config_version Version of the configuration being served.\n\
                 # TYPE gw_config_version gauge\n\
                 gw_config_version {version}\n",
                m.reloads.load(Ordering::Relaxed),
                m.reload_errors.load(Ordering::Relaxed),
                m.config_errors.load(Ordering::Relaxed),
            );
            m.write_listeners(&mut body);
            m.requests.write(&mut body);
            m.l4.write(&mut body);
            let pool = state.router.upstream_connections();
            let _ = write!(
                body,
                "# HELP gw_upstream_connections_open Connections to backends open now.\n\
                 # TYPE gw_upstream_connections_open gauge\n\
                 gw_upstream_connections_open {}\n\
                 # HELP gw_upstream_connections_total Connections to backends opened.\n\
                 # TYPE gw_upstream_connections_total counter\n\
                 gw_upstream_connections_total {}\n",
                pool.open, pool.opened
            );
            if state.metrics.kubernetes_mode.load(Ordering::Relaxed) {
                let _ = write!(
                    body,
                    "# HELP gw_kubernetes_api_connected 1 while every watch of the Kubernetes API works.\n\
                     # TYPE gw_kubernetes_api_connected gauge\n\
                     gw_kubernetes_api_connected {}\n",
                    state.metrics.kubernetes_connected.load(Ordering::Relaxed)
                );
            }
            respond(StatusCode::OK, "text/plain; version=0.0.4", body)
        }
        "/explain" => {
            let Some(s) = snapshot else {
                return respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready\n");
            };
            let (params, text) = match Params::from_query(req.uri().query().unwrap_or("")) {
                Ok(p) => p,
                Err(e) => return respond(StatusCode::BAD_REQUEST, "text/plain", format!("{e}\n")),
            };
            let routes = state.router.routes();
            match explain::explain(&routes, &s.compiled.table, &s.compiled.status, &params) {
                Ok(e) if text => respond(StatusCode::OK, "text/plain", e.to_text()),
                Ok(e) => match serde_json::to_value(&e) {
                    Ok(v) => json(&v),
                    Err(e) => respond(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "text/plain",
                        e.to_string(),
                    ),
                },
                Err(e) => respond(StatusCode::BAD_REQUEST, "text/plain", format!("{e}\n")),
            }
        }
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}
