//! [`L4Routes`]: which listener, route and backend a TLS, TCP or UDP connection goes to.
//!
//! Built once per table, then queried per connection: choosing is synchronous; only
//! [`BackendChoice::resolve`] waits, for the first DNS answer of an external backend.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use gw_model::compile::hostname::{specificity_cmp, wildcard_matches};
use gw_model::resources::{ObjectKey, TlsMode};
use gw_model::table::{L4RouteEntry, ListenerTable, Protocol, RouteTable};

use crate::backend::{BackendTarget, Backends, BuildCtx};
use crate::dns::{ResolveError, Resolver};

/// Why a connection has nowhere to go. The connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectError {
    /// No listener of this kind on this Gateway and port.
    #[error("no {protocol} listener on port {port}")]
    NoListener {
        /// `TLS`, `TCP` or `UDP`.
        protocol: &'static str,
        /// The port.
        port: u16,
    },
    /// No TLS or HTTPS listener on the port accepts the server name (or its absence).
    #[error("no listener on port {port} accepts server name {sni:?}")]
    UnknownServerName {
        /// The port.
        port: u16,
        /// The SNI the client sent.
        sni: Option<String>,
    },
    /// The listener has no route for the connection (none attached, or no TLSRoute hostname
    /// matches the server name).
    #[error("listener {listener} has no route for server name {sni:?}")]
    NoRoute {
        /// The listener.
        listener: String,
        /// The SNI the client sent.
        sni: Option<String>,
    },
    /// The route has no backend with a non-zero weight.
    #[error("route {route} has no backend")]
    NoBackend {
        /// The route.
        route: ObjectKey,
    },
    /// The chosen backend reference could not be resolved.
    #[error("route {route}: invalid backend: {reason}")]
    InvalidBackend {
        /// The route.
        route: ObjectKey,
        /// Why the backend is invalid.
        reason: String,
    },
    /// The chosen backend Service has no ready endpoint.
    #[error("route {route}: Service {service} has no ready endpoint")]
    NoEndpoints {
        /// The route.
        route: ObjectKey,
        /// The Service.
        service: ObjectKey,
    },
    /// The DNS name of the chosen external backend (XBackend) gives no address: its lookup
    /// failed, or it has not been answered yet (within the wait for a first answer, when
    /// waiting with [`BackendChoice::resolve`]).
    #[error("route {route}: external backend {backend}: {error}")]
    Unresolved {
        /// The route.
        route: ObjectKey,
        /// The XBackend.
        backend: ObjectKey,
        /// Why (boxed: a rare error keeps the common result small).
        error: Box<ResolveError>,
    },
}

/// The TLS, TCP and UDP listeners of every Gateway, indexed by Gateway and port.
///
/// ```
/// use gw_router::gw_model::{self, CompileOptions, resources::{ObjectKey, Resources}};
/// use gw_router::l4::{L4Routes, TlsAction};
///
/// let yaml = r#"
/// apiVersion: gateway.networking.k8s.io/v1
/// kind: GatewayClass
/// metadata: {name: gw}
/// spec: {controllerName: gw.dev/gateway}
/// ---
/// apiVersion: gateway.networking.k8s.io/v1
/// kind: Gateway
/// metadata: {name: edge, namespace: default}
/// spec:
///   gatewayClassName: gw
///   listeners:
///   - {name: tls, port: 443, protocol: TLS, hostname: "*.example.com", tls: {mode: Passthrough}}
/// ---
/// apiVersion: gateway.networking.k8s.io/v1
/// kind: TLSRoute
/// metadata: {name: db, namespace: default}
/// spec:
///   parentRefs: [{name: edge}]
///   hostnames: [db.example.com]
///   rules: [{backendRefs: [{name: db, port: 5432}]}]
/// ---
/// apiVersion: v1
/// kind: Service
/// metadata: {name: db, namespace: default}
/// spec: {ports: [{name: pg, port: 5432}]}
/// ---
/// apiVersion: discovery.k8s.io/v1
/// kind: EndpointSlice
/// metadata: {name: db-1, namespace: default, labels: {kubernetes.io/service-name: db}}
/// addressType: IPv4
/// ports: [{name: pg, port: 5432}]
/// endpoints: [{addresses: [10.0.0.7]}]
/// "#;
/// let mut resources = Resources::new();
/// resources.extend(gw_model::load::parse("demo.yaml", yaml).objects);
/// let compiled = gw_model::compile(&resources, &CompileOptions::new("gw.dev/gateway"));
/// let routes = L4Routes::build(&compiled.table);
///
/// let edge = ObjectKey::new("default", "edge");
/// let listener = routes.tls_listener(&edge, 443, Some("db.example.com")).unwrap();
/// assert_eq!(listener.name(), "tls");
/// assert_eq!(listener.action(), Some(TlsAction::Passthrough));
/// let route = listener.route(Some("db.example.com")).unwrap();
/// assert_eq!(route.key(), &ObjectKey::new("default", "db"));
/// assert_eq!(route.backend().unwrap(), "10.0.0.7:5432".parse().unwrap());
///
/// // Unknown or missing server names reach no listener.
/// assert!(routes.tls_listener(&edge, 443, Some("db.example.org")).is_err());
/// assert!(routes.tls_listener(&edge, 443, None).is_err());
/// // A server name the listener accepts but no route claims reaches no backend.
/// assert!(listener.route(Some("www.example.com")).is_err());
/// ```
#[derive(Debug, Default)]
pub struct L4Routes {
    gateways: HashMap<ObjectKey, HashMap<u16, PortListeners>>,
}

#[derive(Debug, Default)]
struct PortListeners {
    /// HTTPS and TLS listeners, most specific hostname first.
    tls: Vec<Listener>,
    tcp: Option<Listener>,
    udp: Option<Listener>,
}

/// What to do with a TLS connection, by the kind of listener its server name selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsAction {
    /// An HTTPS listener: terminate TLS and serve HTTP (not handled by this module).
    Https,
    /// A TLS listener in Passthrough mode: forward the raw bytes, ClientHello included.
    Passthrough,
    /// A TLS listener in Terminate mode: terminate TLS with the listener's certificates and
    /// forward the decrypted bytes.
    Terminate,
}

/// A TLS, HTTPS, TCP or UDP listener with its routes.
#[derive(Debug)]
pub struct Listener {
    name: Arc<str>,
    owner: ObjectKey,
    protocol: Protocol,
    hostname: Option<String>,
    action: Option<TlsAction>,
    routes: Vec<Route>,
    /// (hostname pattern, index into `routes`), most specific first, then oldest route first;
    /// `""` is a route without hostnames.
    by_host: Vec<(String, usize)>,
}

/// A TLSRoute, TCPRoute or UDPRoute on one listener, with its weighted backends.
#[derive(Debug)]
pub struct Route {
    key: Arc<ObjectKey>,
    /// `namespace/name`.
    label: Arc<str>,
    backends: Backends,
}

/// The backend [`Route::choose`] picked for one connection or session. It owns what it needs
/// (no borrow of the table), so it can be held across an `await`.
#[derive(Debug, Clone)]
pub struct BackendChoice {
    route: Arc<ObjectKey>,
    /// `namespace/name:port` of the Service or XBackend.
    label: Arc<str>,
    target: Arc<BackendTarget>,
}

impl L4Routes {
    /// Indexes the TLS, HTTPS, TCP and UDP listeners of `table`. Never fails.
    pub fn build(table: &RouteTable) -> L4Routes {
        L4Routes::build_with(table, &Resolver::shared())
    }

    /// [`build`](Self::build), resolving the names of external backends (XBackend) with
    /// `resolver`.
    pub fn build_with(table: &RouteTable, resolver: &Resolver) -> L4Routes {
        let mut gateways: HashMap<ObjectKey, HashMap<u16, PortListeners>> = HashMap::new();
        for g in &table.gateways {
            let ports = gateways.entry(g.key.clone()).or_default();
            for l in &g.listeners {
                let port = ports.entry(l.port).or_default();
                match l.protocol {
                    Protocol::Http => {}
                    Protocol::Https | Protocol::Tls => port.tls.push(Listener::new(l, resolver)),
                    // Listeners of one kind on one port conflict and are not programmed; should
                    // several remain, the first is served.
                    Protocol::Tcp => {
                        port.tcp.get_or_insert_with(|| Listener::new(l, resolver));
                    }
                    Protocol::Udp => {
                        port.udp.get_or_insert_with(|| Listener::new(l, resolver));
                    }
                }
            }
        }
        for p in gateways.values_mut().flat_map(HashMap::values_mut) {
            // Stable: listeners with the same hostname keep the table's precedence order.
            p.tls.sort_by(|a, b| {
                specificity_cmp(
                    a.hostname.as_deref().unwrap_or(""),
                    b.hostname.as_deref().unwrap_or(""),
                )
            });
        }
        for ports in gateways.values_mut() {
            ports.retain(|_, p| !p.tls.is_empty() || p.tcp.is_some() || p.udp.is_some());
        }
        L4Routes { gateways }
    }

    /// Whether the port has a TLS listener (not only HTTPS ones): its connections must be
    /// dispatched by SNI before TLS is terminated.
    pub fn has_tls_listener(&self, gateway: &ObjectKey, port: u16) -> bool {
        self.port(gateway, port)
            .is_some_and(|p| p.tls.iter().any(|l| l.protocol == Protocol::Tls))
    }

    /// The HTTPS or TLS listener a connection with server name `sni` goes to: the one whose
    /// hostname matches `sni` most specifically (exact, then longer wildcards, then a listener
    /// without hostname, which also takes connections without SNI).
    ///
    /// Gateway API Listener: "Exact matches MUST be processed before wildcard matches, and
    /// wildcard matches MUST be processed before fallback (empty Hostname value) matches."
    /// A server name no listener accepts never reaches another listener's routes.
    pub fn tls_listener(
        &self,
        gateway: &ObjectKey,
        port: u16,
        sni: Option<&str>,
    ) -> Result<&Listener, SelectError> {
        let p = self
            .port(gateway, port)
            .filter(|p| !p.tls.is_empty())
            .ok_or(SelectError::NoListener {
                protocol: "TLS",
                port,
            })?;
        p.tls
            .iter()
            .find(|l| match (&l.hostname, sni) {
                (None, _) => true,
                (Some(h), Some(s)) => wildcard_matches(h, s),
                (Some(_), None) => false,
            })
            .ok_or_else(|| SelectError::UnknownServerName {
                port,
                sni: sni.map(str::to_owned),
            })
    }

    /// The TCP listener of the port.
    pub fn tcp_listener(&self, gateway: &ObjectKey, port: u16) -> Result<&Listener, SelectError> {
        self.port(gateway, port)
            .and_then(|p| p.tcp.as_ref())
            .ok_or(SelectError::NoListener {
                protocol: "TCP",
                port,
            })
    }

    /// The UDP listener of the port.
    pub fn udp_listener(&self, gateway: &ObjectKey, port: u16) -> Result<&Listener, SelectError> {
        self.port(gateway, port)
            .and_then(|p| p.udp.as_ref())
            .ok_or(SelectError::NoListener {
                protocol: "UDP",
                port,
            })
    }

    /// Selects the TLS listener, the TLSRoute and a backend for server name `sni` in one go.
    /// HTTPS listeners are returned with no backend (`None`): serve them as HTTPS.
    pub fn select_tls(
        &self,
        gateway: &ObjectKey,
        port: u16,
        sni: Option<&str>,
    ) -> Result<(&Listener, Option<SocketAddr>), SelectError> {
        let listener = self.tls_listener(gateway, port, sni)?;
        if listener.action() == Some(TlsAction::Https) {
            return Ok((listener, None));
        }
        let backend = listener.route(sni)?.backend()?;
        Ok((listener, Some(backend)))
    }

    fn port(&self, gateway: &ObjectKey, port: u16) -> Option<&PortListeners> {
        self.gateways.get(gateway)?.get(&port)
    }
}

impl Listener {
    fn new(l: &ListenerTable, resolver: &Resolver) -> Listener {
        let routes: Vec<Route> = l.l4.iter().map(|e| Route::new(e, resolver)).collect();
        let mut by_host: Vec<(String, usize)> =
            l.l4.iter()
                .enumerate()
                .flat_map(|(i, e)| {
                    let hosts: Vec<String> = if e.hostnames.is_empty() {
                        vec![String::new()]
                    } else {
                        e.hostnames.clone()
                    };
                    hosts.into_iter().map(move |h| (h, i))
                })
                .collect();
        // Most specific hostname first; among equal ones, the table's order (oldest route).
        by_host.sort_by(|a, b| specificity_cmp(&a.0, &b.0).then(a.1.cmp(&b.1)));
        let action = match (l.protocol, l.tls.as_ref().map(|t| t.mode)) {
            (Protocol::Https, _) => Some(TlsAction::Https),
            (Protocol::Tls, Some(TlsMode::Passthrough)) => Some(TlsAction::Passthrough),
            (Protocol::Tls, _) => Some(TlsAction::Terminate),
            _ => None,
        };
        Listener {
            name: l.name.as_str().into(),
            owner: l.owner.key.clone(),
            protocol: l.protocol,
            hostname: l.hostname.clone(),
            action,
            routes,
            by_host,
        }
    }

    /// The listener's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The listener's name as a shared string, for metric labels (cloning it is a
    /// reference-count increment).
    pub fn label(&self) -> &Arc<str> {
        &self.name
    }

    /// The Gateway or ListenerSet that defines the listener.
    pub fn owner(&self) -> &ObjectKey {
        &self.owner
    }

    /// The listener's protocol.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The listener's hostname.
    pub fn hostname(&self) -> Option<&str> {
        self.hostname.as_deref()
    }

    /// For HTTPS and TLS listeners, what to do with a connection; `None` for TCP and UDP.
    pub fn action(&self) -> Option<TlsAction> {
        self.action
    }

    /// The route a connection goes to.
    ///
    /// TCP and UDP listeners (`sni` ignored): the first route, which is the oldest (Gateway
    /// API: "If ties still exist across multiple Routes, matching precedence MUST be
    /// determined in order of the following criteria: The oldest Route based on creation
    /// timestamp"). TLS listeners: the route with the most specific hostname matching `sni`,
    /// then the oldest; a route without hostnames takes any server name, and connections
    /// without SNI.
    pub fn route(&self, sni: Option<&str>) -> Result<&Route, SelectError> {
        let found = if self.protocol == Protocol::Tls {
            self.by_host
                .iter()
                .find(|(h, _)| match sni {
                    _ if h.is_empty() => true,
                    Some(s) => wildcard_matches(h, s),
                    None => false,
                })
                .and_then(|(_, i)| self.routes.get(*i))
        } else {
            self.routes.first()
        };
        found.ok_or_else(|| SelectError::NoRoute {
            listener: self.name.to_string(),
            sni: sni.map(str::to_owned),
        })
    }
}

impl Route {
    fn new(e: &L4RouteEntry, resolver: &Resolver) -> Route {
        let ctx = BuildCtx {
            client_cert: None,
            resolver,
        };
        Route {
            key: Arc::new(e.route.key.clone()),
            label: e.route.key.to_string().into(),
            backends: Backends::new(&e.backends, ctx),
        }
    }

    /// The route's namespace and name.
    pub fn key(&self) -> &ObjectKey {
        &self.key
    }

    /// The route as `namespace/name`, a shared string for metric labels.
    pub fn label(&self) -> &Arc<str> {
        &self.label
    }

    /// Picks a backend in proportion to the weights. Its endpoint comes from
    /// [`BackendChoice::endpoint`] or, waiting for the first DNS answer of an external
    /// backend, [`BackendChoice::resolve`].
    pub fn choose(&self) -> Result<BackendChoice, SelectError> {
        let choice = self
            .backends
            .pick()
            .and_then(|i| self.backends.get(i))
            .ok_or_else(|| SelectError::NoBackend {
                route: ObjectKey::clone(&self.key),
            })?;
        Ok(BackendChoice {
            route: self.key.clone(),
            label: choice.label.clone(),
            target: choice.target.clone(),
        })
    }

    /// Picks a backend in proportion to the weights, then one of its endpoints (round-robin),
    /// without waiting: an external backend whose name has not been answered yet is an
    /// [`Unresolved`](SelectError::Unresolved) error. An invalid backend or a Service without
    /// endpoints is an error: the connection is closed (the L4 analogue of HTTP's 500 and 503).
    pub fn backend(&self) -> Result<SocketAddr, SelectError> {
        self.choose()?.endpoint()
    }
}

impl BackendChoice {
    /// The backend as `namespace/name:port` (`invalid` for a reference that did not
    /// resolve), a shared string for metric labels.
    pub fn label(&self) -> &Arc<str> {
        &self.label
    }

    /// The next endpoint (round-robin), without waiting.
    pub fn endpoint(&self) -> Result<SocketAddr, SelectError> {
        match &*self.target {
            BackendTarget::Service(s) => match &s.dns {
                Some(name) => name.endpoint().ok_or_else(|| {
                    let status = name.status();
                    let error = match status.error {
                        Some(reason) if status.answered => ResolveError::Failed {
                            host: status.host,
                            reason,
                        },
                        _ => ResolveError::Pending {
                            host: status.host,
                            waited: std::time::Duration::ZERO,
                        },
                    };
                    self.unresolved(&s.service, error)
                }),
                None => s.endpoint().ok_or_else(|| SelectError::NoEndpoints {
                    route: ObjectKey::clone(&self.route),
                    service: s.service.clone(),
                }),
            },
            BackendTarget::Invalid(reason) => Err(self.invalid(reason)),
        }
    }

    /// The next endpoint, waiting for the first DNS answer of an external backend (XBackend)
    /// no longer than [`ResolverConfig::first_answer_wait`](crate::dns::ResolverConfig) (2 s
    /// by default), as an HTTP request does. A name whose lookup failed is an error at once;
    /// a Service endpoint never waits.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use gw_router::dns::{Resolver, ResolverConfig, StaticLookup, SystemLookup};
    /// use gw_router::gw_model::{self, CompileOptions, resources::{ObjectKey, Resources}};
    /// use gw_router::l4::L4Routes;
    ///
    /// let yaml = r#"
    /// apiVersion: gateway.networking.k8s.io/v1
    /// kind: GatewayClass
    /// metadata: {name: gw}
    /// spec: {controllerName: gw.dev/gateway}
    /// ---
    /// apiVersion: gateway.networking.k8s.io/v1
    /// kind: Gateway
    /// metadata: {name: edge, namespace: default}
    /// spec:
    ///   gatewayClassName: gw
    ///   listeners: [{name: db, port: 5432, protocol: TCP}]
    /// ---
    /// apiVersion: gateway.networking.x-k8s.io/v1alpha1
    /// kind: XBackend
    /// metadata: {name: db, namespace: default}
    /// spec:
    ///   type: ExternalHostname
    ///   externalHostname: {hostname: db.internal}
    ///   port: {port: 5432}
    ///   protocol: TCP
    /// ---
    /// apiVersion: gateway.networking.k8s.io/v1alpha2
    /// kind: TCPRoute
    /// metadata: {name: db, namespace: default}
    /// spec:
    ///   parentRefs: [{name: edge}]
    ///   rules: [{backendRefs: [{group: gateway.networking.x-k8s.io, kind: XBackend, name: db}]}]
    /// "#;
    /// let mut resources = Resources::new();
    /// resources.extend(gw_model::load::parse("db.yaml", yaml).objects);
    /// let compiled = gw_model::compile(&resources, &CompileOptions::new("gw.dev/gateway"));
    /// let lookup = StaticLookup::new(SystemLookup).with("db.internal", ["127.0.0.5".parse().unwrap()]);
    /// let resolver = Resolver::with_lookup(lookup, ResolverConfig::default());
    /// let routes = L4Routes::build_with(&compiled.table, &resolver);
    ///
    /// let route = routes.tcp_listener(&ObjectKey::new("default", "edge"), 5432).unwrap().route(None).unwrap();
    /// let backend = route.choose().unwrap();
    /// assert_eq!(&**backend.label(), "default/db:5432");
    /// // A connection that arrives before the name's first answer waits for it.
    /// assert_eq!(backend.resolve().await.unwrap(), "127.0.0.5:5432".parse().unwrap());
    /// # }
    /// ```
    pub async fn resolve(&self) -> Result<SocketAddr, SelectError> {
        match &*self.target {
            BackendTarget::Service(s) => match &s.dns {
                Some(name) => name
                    .resolve()
                    .await
                    .map_err(|e| self.unresolved(&s.service, e)),
                None => self.endpoint(),
            },
            BackendTarget::Invalid(reason) => Err(self.invalid(reason)),
        }
    }

    fn unresolved(&self, backend: &ObjectKey, error: ResolveError) -> SelectError {
        SelectError::Unresolved {
            route: ObjectKey::clone(&self.route),
            backend: backend.clone(),
            error: Box::new(error),
        }
    }

    fn invalid(&self, reason: &str) -> SelectError {
        SelectError::InvalidBackend {
            route: ObjectKey::clone(&self.route),
            reason: reason.to_owned(),
        }
    }
}
