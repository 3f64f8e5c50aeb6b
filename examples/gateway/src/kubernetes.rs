//! `gw-gateway --kubernetes`: the configuration comes from the cluster through gw-k8s, is
//! compiled and served exactly as files are, and status is written back by the replica that
//! holds the Lease.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use gw_model::resources::ObjectKey;
use tokio::sync::watch;

use crate::admin::Metrics;
use crate::controller::{Controller, Snapshot};
use crate::serve::Servers;

/// Flags of Kubernetes mode.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct KubeArgs {
    /// Read Gateway API objects from the Kubernetes cluster (in-cluster service account, or
    /// KUBECONFIG) instead of files, and write their status back.
    #[arg(long, conflicts_with = "config")]
    pub kubernetes: bool,
    /// NAMESPACE/NAME of the Service in front of the gateway replicas: its load balancer
    /// addresses (or cluster IPs) are reported as the addresses of every Gateway.
    #[arg(long, value_parser = parse_key, requires = "kubernetes")]
    pub gateway_service: Option<ObjectKey>,
    /// NAMESPACE/NAME of the Lease that elects the one replica writing status. Without it,
    /// this replica always writes status (run one replica only).
    #[arg(long, value_parser = parse_key, requires = "kubernetes")]
    pub leader_election_lease: Option<ObjectKey>,
    /// This replica's identity in the Lease (default: $POD_NAME, else $HOSTNAME).
    #[arg(long, requires = "kubernetes")]
    pub pod_name: Option<String>,
    /// Field manager of status writes (server-side apply).
    #[arg(long, default_value = gw_k8s::DEFAULT_FIELD_MANAGER, requires = "kubernetes")]
    pub field_manager: String,
    /// Address every listener binds in Kubernetes mode (Gateway addresses belong to the
    /// Service, not to the Pod).
    #[arg(long, default_value = "0.0.0.0", requires = "kubernetes")]
    pub listen_address: IpAddr,
}

fn parse_key(s: &str) -> Result<ObjectKey, String> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(ObjectKey::new(ns, name))
        }
        _ => Err(format!("{s:?} is not NAMESPACE/NAME")),
    }
}

/// Where Kubernetes mode publishes what the admin server shows.
pub(crate) struct Outputs {
    /// The configuration served.
    pub snapshot_tx: watch::Sender<Option<Arc<Snapshot>>>,
    /// The API server connection, for `/readyz` and `/status`.
    pub source_tx: watch::Sender<String>,
    /// Counters.
    pub metrics: Arc<Metrics>,
}

/// Serves the cluster's configuration until SIGTERM or Ctrl-C.
pub(crate) async fn serve(
    args: &KubeArgs,
    controller_name: &str,
    mut controller: Controller,
    servers: &mut Servers,
    out: Outputs,
    terminate: &mut crate::Terminate,
) -> Result<(), String> {
    let Outputs {
        snapshot_tx,
        source_tx,
        metrics,
    } = out;
    let client = gw_k8s::kube::Client::try_default().await.map_err(|e| {
        format!(
            "cannot configure the Kubernetes client (in a Pod: its service account; \
             elsewhere: KUBECONFIG or ~/.kube/config): {e}"
        )
    })?;
    let mut config = gw_k8s::Config::new(controller_name);
    config.field_manager = args.field_manager.clone();
    config.gateway_service = args.gateway_service.clone();
    if let Some(lease) = &args.leader_election_lease {
        let identity = args
            .pod_name
            .clone()
            .or_else(|| std::env::var("POD_NAME").ok())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .filter(|s| !s.is_empty())
            .ok_or("--leader-election-lease needs an identity: pass --pod-name or set POD_NAME")?;
        config.leader_election = Some(gw_k8s::LeaderElection::new(
            lease.namespace.clone(),
            lease.name.clone(),
            identity,
        ));
    }
    tracing::info!(
        controller_name,
        gateway_service = ?args.gateway_service.as_ref().map(ToString::to_string),
        lease = ?args.leader_election_lease.as_ref().map(ToString::to_string),
        "watching the Kubernetes API"
    );
    let k8s = gw_k8s::Controller::start(client, config);
    let mut states = k8s.states();
    let mut health = k8s.health();
    source_tx.send_replace(health.borrow().to_string());
    let mut trim = crate::memory::Trim::default();
    loop {
        tokio::select! {
            () = trim.due() => trim.run(),
            _ = tokio::signal::ctrl_c() => break,
            () = terminate.recv() => break,
            r = health.changed() => {
                if r.is_err() { break }
                let h = health.borrow_and_update().clone();
                metrics.kubernetes_connected.store(u64::from(h.connected()), Ordering::Relaxed);
                source_tx.send_replace(h.to_string());
            }
            r = states.changed() => {
                if r.is_err() { break }
                let Some(state) = states.borrow_and_update().clone() else { continue };
                let previous = snapshot_tx.borrow().clone();
                let mut snapshot = controller.compile_cluster(&state, previous.as_deref());
                if snapshot.errors.is_empty() {
                    metrics.reloads.fetch_add(1, Ordering::Relaxed);
                } else {
                    metrics.reload_errors.fetch_add(1, Ordering::Relaxed);
                }
                // Every listener binds the Pod's listen address; the table's addresses are
                // the Service's, reported in status.
                let mut table = snapshot.compiled.table.clone();
                for g in &mut table.gateways {
                    g.addresses = vec![args.listen_address];
                }
                let bind_errors = servers.apply(&table).await;
                snapshot.errors.extend(bind_errors);
                k8s.report_status(snapshot.compiled.status.clone());
                snapshot_tx.send_replace(Some(Arc::new(snapshot)));
                trim.reloaded();
            }
        }
    }
    k8s.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespace_slash_name() {
        assert_eq!(
            parse_key("gw-system/gw"),
            Ok(ObjectKey::new("gw-system", "gw"))
        );
        for bad in ["gw", "/gw", "ns/", "a/b/c"] {
            assert!(parse_key(bad).is_err(), "{bad}");
        }
    }
}
