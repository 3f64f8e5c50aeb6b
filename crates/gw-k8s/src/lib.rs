//! Kubernetes integration for gw: watches the cluster's Gateway API objects with kube-rs,
//! feeds them to [`gw_model`], and writes the status gw-model computes back.
//!
//! gw-k8s is thin on purpose: every Gateway API rule lives in gw-model, and routing in the
//! embedder (gw-router in `gw-gateway`). A [`Controller`]:
//!
//! 1. watches GatewayClass, Gateway, ListenerSet, HTTPRoute, GRPCRoute, TLSRoute, TCPRoute,
//!    UDPRoute, ReferenceGrant, BackendTLSPolicy, XBackendTrafficPolicy (the `gateway-api`
//!    crate's types), Service, EndpointSlice, Secret, ConfigMap, Namespace (`k8s-openapi`),
//!    and gw's `TrafficPolicy` and `XBackend` (dynamic objects) through kube-runtime reflector
//!    stores, with exponential backoff on errors. A watch that expires (410 Gone) relists;
//!    the store swaps the new list in only once it is complete, so nothing disappears
//!    meanwhile. Gateway API kinds other than GatewayClass, Gateway and HTTPRoute are optional:
//!    when the API server does not serve them (CRD not installed), they count as empty;
//! 2. converts every object with [`convert::convert`] (one code path: gw-model's loader) and
//!    publishes a [`ClusterState`] after the stores stop changing for [`Config::debounce`];
//! 3. takes the [`StatusReport`] the embedder compiled from it
//!    ([`Controller::report_status`]) and, on the replica holding the Lease
//!    ([`LeaderElection`]), writes it with server-side apply ([`status`]).
//!
//! When the API server is unreachable, slow or failing, the last published state stays: the
//! embedder keeps serving it, and [`Controller::health`] says what is failing.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use gw_k8s::{Config, Controller};
//!
//! let client = kube::Client::try_default().await?;
//! let controller = Controller::start(client, Config::new("gw.dev/gateway"));
//! let mut states = controller.states();
//! while states.changed().await.is_ok() {
//!     let Some(state) = states.borrow_and_update().clone() else { continue };
//!     let options = state.compile_options("gw.dev/gateway");
//!     let compiled = gw_model::compile(&state.resources, &options);
//!     // ... serve compiled.table ...
//!     controller.report_status(compiled.status);
//! }
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod backoff;
pub mod convert;
pub mod health;
pub mod leader;
pub mod status;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use gw_model::CompileOptions;
use gw_model::resources::{ObjectKey, Resources};
use gw_model::status::{GatewayStatusAddress, StatusReport};
use ipnet::IpNet;
use kube::Client;
use tokio::sync::watch as channel;
use tokio::task::JoinHandle;

pub use gw_model;
pub use kube;

pub use crate::health::Health;
pub use crate::leader::LeaderElection;
pub use crate::watch::{DYNAMIC_KINDS, STATUS_KINDS, service_addresses, watched_resources};

/// The field manager gw's status writes use unless told otherwise.
pub const DEFAULT_FIELD_MANAGER: &str = "gw.dev/gateway";

/// How the controller runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// GatewayClasses whose `spec.controllerName` equals this are ours; route status entries
    /// carry it.
    pub controller_name: String,
    /// The server-side apply field manager of status writes.
    pub field_manager: String,
    /// Quiet time after the last watch event before a new [`ClusterState`] is built.
    pub debounce: Duration,
    /// A new state is built at the latest this long after the first event of a burst.
    pub max_debounce: Duration,
    /// The Service in front of the gateway replicas: its load balancer addresses (or cluster
    /// IPs) become the addresses of Gateways without `spec.addresses`.
    pub gateway_service: Option<ObjectKey>,
    /// Elect one replica to write status; `None`: this replica always writes.
    pub leader_election: Option<LeaderElection>,
    /// First retry delay after an API error (watches, status writes).
    pub backoff_min: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
}

impl Config {
    /// Defaults: field manager [`DEFAULT_FIELD_MANAGER`], debounce 100 ms (at most 1 s),
    /// backoff 800 ms to 30 s (client-go's reflector), no Service, no leader election.
    pub fn new(controller_name: impl Into<String>) -> Self {
        Config {
            controller_name: controller_name.into(),
            field_manager: DEFAULT_FIELD_MANAGER.to_owned(),
            debounce: Duration::from_millis(100),
            max_debounce: Duration::from_secs(1),
            gateway_service: None,
            leader_election: None,
            backoff_min: Duration::from_millis(800),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// Everything the cluster says, converted: one consistent input of [`gw_model::compile()`].
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterState {
    /// Increments with every published state.
    pub version: u64,
    /// Every object gw-model reads.
    pub resources: Resources,
    /// The addresses of [`Config::gateway_service`] (empty without one, or while it has none).
    pub gateway_addresses: Vec<GatewayStatusAddress>,
    /// Objects that did not convert (they are left out; everything else is served).
    pub errors: Vec<String>,
    /// Unknown fields, by object.
    pub warnings: Vec<String>,
}

impl ClusterState {
    /// Compile options for this state: every Gateway without `spec.addresses` (or asking for
    /// an assigned one) gets the Service's addresses, and only those addresses are usable
    /// when a Gateway requests specific ones (others are `AddressNotUsable`).
    pub fn compile_options(&self, controller_name: &str) -> CompileOptions {
        let mut options = CompileOptions::new(controller_name);
        for key in self.resources.gateways.keys() {
            options
                .assigned_addresses
                .insert(key.clone(), self.gateway_addresses.clone());
        }
        options.usable_networks = self
            .gateway_addresses
            .iter()
            .filter_map(|a| a.value.parse::<std::net::IpAddr>().ok())
            .map(IpNet::from)
            .collect();
        if options.usable_networks.is_empty() {
            // gw-model reads an empty list as "every address is usable"; with no Service
            // address known, none is: 0.0.0.0/32 is an address no Gateway can request.
            options
                .usable_networks
                .push(IpNet::from(std::net::IpAddr::from([0, 0, 0, 0])));
        }
        options
    }
}

/// The running controller: its watches, snapshot task, status writer and election. Dropping
/// it stops them all.
pub struct Controller {
    states: channel::Receiver<Option<Arc<ClusterState>>>,
    health: channel::Receiver<Health>,
    reports: channel::Sender<Option<Arc<StatusReport>>>,
    leader: channel::Receiver<bool>,
    tasks: Vec<JoinHandle<()>>,
    election: Option<(Client, LeaderElection)>,
    _fixed_leader: Option<channel::Sender<bool>>,
}

impl Controller {
    /// Starts watching with `client`. Must be called within a Tokio runtime.
    pub fn start(client: Client, config: Config) -> Controller {
        // An error counts for health until the watcher has had time to retry it twice.
        let stale_after = config.backoff_max * 2 + Duration::from_secs(1);
        let shared = Arc::new(watch::Shared::new(stale_after));
        let mut tasks = Vec::new();
        let stores = Arc::new(watch::start(&client, &shared, &config, &mut tasks));
        let config = Arc::new(config);
        let (states_tx, states) = channel::channel(None);
        tasks.push(tokio::spawn(watch::snapshots(
            stores.clone(),
            shared.clone(),
            config.clone(),
            states_tx,
        )));
        tasks.push(tokio::spawn(watch::health_ticker(
            shared.clone(),
            (stale_after / 4).max(Duration::from_millis(50)),
        )));
        let (leader_tx, leader) = channel::channel(config.leader_election.is_none());
        let fixed_leader = match &config.leader_election {
            Some(election) => {
                let elector = leader::Elector::new(client.clone(), election.clone());
                tasks.push(tokio::spawn(elector.run(leader_tx)));
                None
            }
            // No election: this replica always leads (the sender stays alive with it).
            None => Some(leader_tx),
        };
        let (reports, reports_rx) = channel::channel(None);
        let writer = status::Writer {
            client: client.clone(),
            stores,
            shared: shared.clone(),
            controller_name: config.controller_name.clone(),
            field_manager: config.field_manager.clone(),
            backoff: backoff::Backoff::new(config.backoff_min, config.backoff_max),
            sent: Default::default(),
        };
        tasks.push(tokio::spawn(writer.run(reports_rx, leader.clone())));
        Controller {
            states,
            health: shared.health.subscribe(),
            reports,
            leader,
            tasks,
            election: config.leader_election.clone().map(|e| (client, e)),
            _fixed_leader: fixed_leader,
        }
    }

    /// The latest [`ClusterState`]; `None` until every required kind has been listed.
    pub fn states(&self) -> channel::Receiver<Option<Arc<ClusterState>>> {
        self.states.clone()
    }

    /// How the watches, the election and the status writer are doing.
    pub fn health(&self) -> channel::Receiver<Health> {
        self.health.clone()
    }

    /// Whether this replica writes status now.
    pub fn leader(&self) -> channel::Receiver<bool> {
        self.leader.clone()
    }

    /// Hands the status compiled from the latest state to the status writer (which writes it
    /// while this replica leads, and retries failures with backoff).
    pub fn report_status(&self, report: StatusReport) {
        self.reports.send_replace(Some(Arc::new(report)));
    }

    /// Stops every task and gives the status Lease up, so another replica takes over at once.
    pub async fn shutdown(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        if let Some((client, election)) = self.election.take() {
            leader::Elector::new(client, election).release().await;
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
