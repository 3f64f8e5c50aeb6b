//! `gw-gateway`: the gw reference gateway.
//!
//! Reads Gateway API manifests from `--config PATH` (every `*.yaml`, `*.yml` and `*.json` under
//! it, recursively), watches them and reloads on change; without `--config` it serves a built-in
//! demo. See the README for the full contract.

mod admin;
mod check;
mod controller;
mod demo;
mod files;
mod l4;
mod limits;
mod serve;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Parser;
use ipnet::IpNet;
use tokio::sync::watch;

use crate::admin::{AdminState, Metrics};
use crate::controller::Controller;

/// While a write is in progress, files must read the same twice this far apart (with no event
/// in between) before a reload: an in-place write (truncate, then write) is never loaded
/// half-written.
const SETTLE: Duration = Duration::from_millis(10);
/// Give up waiting for files to settle after this many reads (a file rewritten continuously).
const MAX_SETTLE_READS: usize = 100;
/// How often the files are re-read even without events (missed events, network filesystems).
const POLL: Duration = Duration::from_secs(2);

/// The gw reference gateway: serves Gateway API YAML on one machine.
#[derive(Debug, Parser)]
#[command(name = "gw-gateway", version)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// File or directory of manifests; watched and reloaded on change. Without it, a built-in
    /// demo is served (a Gateway on 127.0.0.1:8080 in front of two echo backends).
    #[arg(long)]
    config: Option<PathBuf>,
    /// GatewayClasses whose spec.controllerName equals this are served.
    #[arg(long, default_value = gw_model::DEFAULT_CONTROLLER_NAME)]
    controller_name: String,
    /// Give every Gateway without spec.addresses its own address from this pool (e.g.
    /// 127.0.10.0/24) and bind its listeners there. Without it, listeners bind 0.0.0.0.
    #[arg(long)]
    gateway_address_pool: Option<IpNet>,
    /// Address of the admin server (/healthz, /readyz, /status, /config_dump, /metrics).
    #[arg(long, default_value = "127.0.0.1:15000")]
    admin: SocketAddr,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
    #[command(flatten)]
    limits: limits::Limits,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Validate manifests offline: print every object with the status gw would give it (YAML,
    /// as `kubectl get -o yaml` shows it). Exit code 0: all valid; 1: a file or document does not
    /// load; 2: some object is not accepted or has unresolved references.
    Check {
        /// File or directory of manifests.
        path: PathBuf,
    },
}

fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Some(Command::Check { path }) = &args.command {
        let code = check::run(
            path,
            &args.controller_name,
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        );
        return std::process::ExitCode::from(code);
    }
    init_logs(args.log_json);
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("gw-gateway: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let demo = match &args.config {
        Some(_) => None,
        None => {
            tracing::info!("no --config: serving the built-in demo on 127.0.0.1:8080");
            Some(demo::start(&args.controller_name).await?)
        }
    };
    let extra = demo.as_ref().map(|d| d.objects.clone()).unwrap_or_default();
    let mut controller = Controller::new(args.controller_name.clone(), args.gateway_address_pool);
    let metrics = Arc::new(Metrics::default());
    let (snapshot_tx, snapshot_rx) = watch::channel(None);
    let admin_addr = admin::serve(
        args.admin,
        AdminState {
            snapshot: snapshot_rx,
            metrics: metrics.clone(),
        },
    )
    .await
    .map_err(|e| format!("admin server on {}: {e}", args.admin))?;
    tracing::info!(%admin_addr, "admin server listening");

    let mut servers = serve::Servers::new(
        gw_router::Router::new(gw_router::RouterConfig::default()),
        args.limits.clone(),
        metrics.clone(),
    );
    let mut scanner = files::Scanner::default();
    let mut scan = |path: &Option<PathBuf>| match path {
        Some(p) => scanner.scan(p),
        None => files::ConfigFiles::default(),
    };

    let changes = Arc::new(Changes::default());
    let _watcher = match &args.config {
        Some(path) => Some(watch_path(path, changes.clone())?),
        None => None,
    };

    let mut current = scan(&args.config);
    let mut apply = async |files: &files::ConfigFiles, servers: &mut serve::Servers| {
        let started = std::time::Instant::now();
        let mut snapshot = controller.reload(files, &extra);
        let compiled = started.elapsed();
        if snapshot.errors.is_empty() {
            metrics.reloads.fetch_add(1, Ordering::Relaxed);
        } else {
            metrics.reload_errors.fetch_add(1, Ordering::Relaxed);
        }
        let bind_errors = servers.apply(&snapshot.compiled.table).await;
        snapshot.errors.extend(bind_errors);
        tracing::debug!(
            compile_ms = compiled.as_secs_f64() * 1e3,
            total_ms = started.elapsed().as_secs_f64() * 1e3,
            version = snapshot.version,
            "configuration applied"
        );
        let _ = snapshot_tx.send(Some(Arc::new(snapshot)));
    };
    apply(&current, &mut servers).await;

    let mut terminate = Terminate::new()?;
    let mut poll = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            () = terminate.recv() => break,
            () = changes.notify.notified() => {}
            _ = poll.tick() => {}
        }
        let mut events = changes.events();
        let mut next = scan(&args.config);
        if next == current {
            continue;
        }
        // A file still being written (created or modified, not yet closed) could be read
        // half-written: wait until every write is closed and nothing else happened, or until
        // the files read the same twice SETTLE apart with no event in between. Renames and
        // closed writes (how ConfigMap volumes and careful tools update files) apply at once.
        for _ in 0..MAX_SETTLE_READS {
            if !changes.writing() && changes.events() == events {
                break;
            }
            tokio::time::sleep(SETTLE).await;
            let seen = changes.events();
            let again = scan(&args.config);
            if again == next && seen == events {
                break;
            }
            next = again;
            events = seen;
        }
        changes.settled();
        if next != current {
            tracing::info!(files = next.files.len(), "configuration changed; reloading");
            current = next;
            apply(&current, &mut servers).await;
        }
    }
    tracing::info!(
        deadline = ?args.limits.shutdown_timeout,
        "shutting down: no new connections; finishing requests in flight"
    );
    if servers.shutdown().await {
        tracing::info!("all connections closed");
    } else {
        tracing::warn!("shutdown deadline passed; closing the remaining connections");
    }
    Ok(())
}

/// SIGTERM (how Kubernetes and systemd stop a process).
struct Terminate {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Terminate {
    fn new() -> Result<Terminate, String> {
        Ok(Terminate {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .map_err(|e| format!("cannot handle SIGTERM: {e}"))?,
        })
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        self.signal.recv().await;
        #[cfg(not(unix))]
        std::future::pending::<()>().await;
    }
}

/// What the file watcher saw since the reload loop last looked.
#[derive(Default)]
struct Changes {
    /// Wakes the reload loop.
    notify: tokio::sync::Notify,
    /// Events seen so far.
    events: std::sync::atomic::AtomicU64,
    /// Paths created or modified and not closed since (writes in progress).
    writing: std::sync::Mutex<std::collections::HashSet<PathBuf>>,
}

impl Changes {
    fn events(&self) -> u64 {
        self.events.load(Ordering::Acquire)
    }

    fn writing(&self) -> bool {
        self.writing.lock().map(|w| !w.is_empty()).unwrap_or(true)
    }

    /// After a reload decision: writes still marked open are forgotten (a symlink, or a
    /// writer that never closes, would otherwise slow every later reload).
    fn settled(&self) {
        if let Ok(mut w) = self.writing.lock() {
            w.clear();
        }
    }

    fn record(&self, event: notify::Result<notify::Event>) {
        use notify::EventKind;
        use notify::event::{AccessKind, AccessMode, CreateKind, MetadataKind, ModifyKind};
        // Our own reads are events too (opens, access times): only changes count, or every
        // reload would trigger the next one.
        let (writing, paths) = match event {
            Ok(e) => {
                let writing = match e.kind {
                    EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(false),
                    EventKind::Access(_) => None,
                    EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => None,
                    EventKind::Create(CreateKind::Folder) => Some(false),
                    EventKind::Create(_) | EventKind::Modify(ModifyKind::Data(_)) => Some(true),
                    EventKind::Modify(_)
                    | EventKind::Remove(_)
                    | EventKind::Any
                    | EventKind::Other => Some(false),
                };
                match writing {
                    Some(w) => (w, e.paths),
                    None => return,
                }
            }
            // Overflowed queues and watch errors: re-read to be safe.
            Err(_) => (false, Vec::new()),
        };
        if let Ok(mut open) = self.writing.lock() {
            for p in paths {
                if writing {
                    open.insert(p);
                } else {
                    open.remove(&p);
                }
            }
        }
        self.events.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_one();
    }
}

/// Watches `path` recursively; every change nudges the reload loop (which scans and compares
/// everything, so renames, symlink swaps and in-place writes are all noticed).
fn watch_path(
    path: &std::path::Path,
    changes: Arc<Changes>,
) -> Result<notify::RecommendedWatcher, String> {
    use notify::Watcher as _;
    let mut watcher = notify::recommended_watcher(move |event| changes.record(event))
        .map_err(|e| format!("cannot watch {}: {e}", path.display()))?;
    watcher
        .watch(path, notify::RecursiveMode::Recursive)
        .map_err(|e| format!("cannot watch {}: {e}", path.display()))?;
    Ok(watcher)
}
