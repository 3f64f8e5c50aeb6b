//! `gw-gateway`: the gw reference gateway.
//!
//! Reads Gateway API manifests from `--config PATH` (every `*.yaml`, `*.yml` and `*.json` under
//! it, recursively), watches them and reloads on change; without `--config` it serves a built-in
//! demo. See the README for the full contract.

mod access;
mod admin;
mod check;
mod controller;
mod demo;
mod explain;
mod files;
mod guard;
#[cfg(feature = "k8s")]
mod kubernetes;
mod l4;
mod limits;
mod memory;
mod metrics;
mod resilience;
mod serve;
mod slow_body;
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
    /// Address of the admin server (/healthz, /readyz, /status, /config_dump, /metrics,
    /// /explain).
    #[arg(long, default_value = "127.0.0.1:15000")]
    admin: SocketAddr,
    /// Write diagnostic logs (stderr) as JSON lines.
    #[arg(long)]
    log_json: bool,
    /// Answer DNS lookups of external backends (XBackend) for HOST with fixed addresses, like
    /// curl's --resolve: HOST=IP[,IP...]. Repeatable; other names use the system resolver.
    #[arg(long = "resolve", value_name = "HOST=IP[,IP...]", value_parser = parse_resolve)]
    resolve: Vec<(String, Vec<std::net::IpAddr>)>,
    /// Access log on stdout, one line per request: off, text (key=value fields) or json.
    #[arg(long, value_enum, default_value_t = access::AccessLogFormat::Text)]
    access_log: access::AccessLogFormat,
    #[command(flatten)]
    limits: limits::Limits,
    #[command(flatten)]
    resilience: resilience::Resilience,
    #[cfg(feature = "k8s")]
    #[command(flatten)]
    kube: kubernetes::KubeArgs,
}

impl Args {
    /// Whether the configuration comes from a Kubernetes cluster (`--kubernetes`).
    fn kubernetes(&self) -> bool {
        #[cfg(feature = "k8s")]
        return self.kube.kubernetes;
        #[cfg(not(feature = "k8s"))]
        return false;
    }
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
    /// Print the CustomResourceDefinitions of gw's own kinds (TrafficPolicy) as YAML, for
    /// `kubectl apply -f -`.
    Crd,
    /// Explain offline how a request would be routed by the manifests: the listener, route and
    /// rule that match, and why every other candidate does not. Exit code 0: routed; 1: the
    /// manifests do not load or the parameters are invalid; 2: not routed (404 or 421).
    Explain {
        /// File or directory of manifests.
        #[arg(value_name = "PATH")]
        manifests: PathBuf,
        #[command(flatten)]
        params: explain::Params,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Diagnostic logs on stderr (`RUST_LOG`, default `info`; text or JSON), and the access log
/// (events of target `gw::access`) on stdout in its own format.
fn init_logs(json: bool, access: access::AccessLogFormat) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if let Ok(d) = format!("{}=off", access::TARGET).parse() {
        filter = filter.add_directive(d);
    }
    let diagnostics = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let diagnostics = if json {
        diagnostics.json().with_filter(filter).boxed()
    } else {
        diagnostics.with_filter(filter).boxed()
    };
    let only_access = Targets::new().with_target(access::TARGET, LevelFilter::INFO);
    let access_layer = match access {
        access::AccessLogFormat::Off => None,
        access::AccessLogFormat::Text => Some(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stdout)
                .with_target(false)
                .with_level(false)
                .with_ansi(false)
                .with_filter(only_access)
                .boxed(),
        ),
        access::AccessLogFormat::Json => Some(
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_target(false)
                .with_level(false)
                .with_writer(std::io::stdout)
                .with_filter(only_access)
                .boxed(),
        ),
    };
    tracing_subscriber::registry()
        .with(diagnostics)
        .with(access_layer)
        .init();
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
    if let Some(Command::Crd) = &args.command {
        return match gw_model::crd::traffic_policy_crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot render the CRD: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Explain {
        manifests,
        params,
        json,
    }) = &args.command
    {
        let code = explain::run(
            manifests,
            &args.controller_name,
            params,
            *json,
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        );
        return std::process::ExitCode::from(code);
    }
    init_logs(args.log_json, args.access_log);
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
        None if args.kubernetes() => None,
        None => {
            tracing::info!("no --config: serving the built-in demo on 127.0.0.1:8080");
            Some(demo::start(&args.controller_name).await?)
        }
    };
    let extra = demo.as_ref().map(|d| d.objects.clone()).unwrap_or_default();
    let mut controller = Controller::new(args.controller_name.clone(), args.gateway_address_pool);
    let metrics = Arc::new(Metrics::default());
    let router =
        gw_router::Router::new(args.resilience.apply(
            gw_router::RouterConfig::default().with_path_policy(args.limits.path_policy()),
        )?);
    let (snapshot_tx, snapshot_rx) = watch::channel(None);
    let mut lookup = gw_router::dns::StaticLookup::new(gw_router::dns::SystemLookup);
    for (host, ips) in &args.resolve {
        lookup = lookup.with(host, ips.iter().copied());
    }
    let resolver =
        gw_router::dns::Resolver::with_lookup(lookup, gw_router::dns::ResolverConfig::default());
    let (source_tx, source_rx) = watch::channel(String::new());
    metrics
        .kubernetes_mode
        .store(args.kubernetes(), Ordering::Relaxed);
    let admin_addr = admin::serve(
        args.admin,
        AdminState {
            snapshot: snapshot_rx,
            metrics: metrics.clone(),
            resolver: resolver.clone(),
            source: source_rx,
            router: router.clone(),
        },
    )
    .await
    .map_err(|e| format!("admin server on {}: {e}", args.admin))?;
    tracing::info!(%admin_addr, "admin server listening");

    let mut servers = serve::Servers::new(
        router,
        resolver,
        args.limits.clone(),
        metrics.clone(),
        args.access_log != access::AccessLogFormat::Off,
    );
    #[cfg(feature = "k8s")]
    if args.kube.kubernetes {
        let mut terminate = Terminate::new()?;
        kubernetes::serve(
            &args.kube,
            &args.controller_name,
            controller,
            &mut servers,
            kubernetes::Outputs {
                snapshot_tx,
                source_tx,
                metrics,
            },
            &mut terminate,
        )
        .await?;
        return shutdown(servers, &args).await;
    }
    drop(source_tx);
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
    // When a certificate expires or becomes valid, the same files compile differently.
    let mut apply = async |files: &files::ConfigFiles, servers: &mut serve::Servers| {
        let started = std::time::Instant::now();
        // Stamped after the table is served: stamping is not on the way to the first request.
        let mut snapshot = controller.reload_unstamped(files, &extra);
        let refresh_at = snapshot.compiled.refresh_at;
        let compiled = started.elapsed();
        if snapshot.errors.is_empty() {
            metrics.reloads.fetch_add(1, Ordering::Relaxed);
        } else {
            metrics.reload_errors.fetch_add(1, Ordering::Relaxed);
        }
        let bind_errors = servers.apply(&snapshot.compiled.table).await;
        let previous = snapshot_tx.borrow().clone();
        snapshot.stamp(previous.as_deref());
        snapshot.errors.extend(bind_errors);
        metrics
            .config_errors
            .store(snapshot.errors.len() as u64, Ordering::Relaxed);
        tracing::debug!(
            compile_ms = compiled.as_secs_f64() * 1e3,
            total_ms = started.elapsed().as_secs_f64() * 1e3,
            version = snapshot.version,
            "configuration applied"
        );
        let _ = snapshot_tx.send(Some(Arc::new(snapshot)));
        refresh_at
    };
    let mut refresh_at = apply(&current, &mut servers).await;
    let mut trim = memory::Trim::default();
    trim.reloaded();

    let mut terminate = Terminate::new()?;
    let mut poll = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            () = terminate.recv() => break,
            () = changes.notify.notified() => {}
            _ = poll.tick() => {}
            () = sleep_until(refresh_at) => {
                if refresh_at.is_some_and(|at| at <= jiff::Timestamp::now()) {
                    tracing::info!("a certificate expired or became valid; recompiling");
                    refresh_at = apply(&current, &mut servers).await;
                    trim.reloaded();
                }
                continue;
            }
            () = trim.due() => {
                trim.run();
                continue;
            }
        }
        let woke = std::time::Instant::now();
        let mut events = changes.events();
        let mut next = scan(&args.config);
        if next == current {
            continue;
        }
        let scanned = woke.elapsed();
        let mut settle_reads = 0;
        // A file still being written (created or modified, not yet closed) could be read
        // half-written: wait until every write is closed and nothing else happened, or until
        // the files read the same twice SETTLE apart with no event in between. Renames and
        // closed writes (how ConfigMap volumes and careful tools update files) apply at once.
        for _ in 0..MAX_SETTLE_READS {
            if !changes.writing() && changes.events() == events {
                break;
            }
            tokio::time::sleep(SETTLE).await;
            settle_reads += 1;
            let seen = changes.events();
            let again = scan(&args.config);
            if again == next && seen == events {
                break;
            }
            next = again;
            events = seen;
        }
        changes.settled();
        tracing::debug!(
            scan_ms = scanned.as_secs_f64() * 1e3,
            settle_reads,
            waited_ms = woke.elapsed().as_secs_f64() * 1e3,
            "files read"
        );
        if next != current {
            tracing::info!(files = next.files.len(), "configuration changed; reloading");
            current = next;
            refresh_at = apply(&current, &mut servers).await;
            trim.reloaded();
        }
    }
    shutdown(servers, &args).await
}

/// Closes every listener and drains connections (see the README's Shutdown section).
async fn shutdown(servers: serve::Servers, args: &Args) -> Result<(), String> {
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

/// Parses a `--resolve` value: `HOST=IP[,IP...]`.
fn parse_resolve(v: &str) -> Result<(String, Vec<std::net::IpAddr>), String> {
    let (host, ips) = v
        .split_once('=')
        .ok_or_else(|| format!("{v:?}: expected HOST=IP[,IP...]"))?;
    if host.is_empty() {
        return Err(format!("{v:?}: the host name is empty"));
    }
    let ips = ips
        .split(',')
        .map(|ip| {
            ip.trim()
                .parse()
                .map_err(|e| format!("{v:?}: {ip:?} is not an IP address: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((host.to_owned(), ips))
}

/// Sleeps until `at` (forever without one). Far-away instants are capped so that a clock change
/// is noticed within an hour.
async fn sleep_until(at: Option<jiff::Timestamp>) {
    let Some(at) = at else {
        return std::future::pending().await;
    };
    let wait = at.duration_since(jiff::Timestamp::now());
    let wait = std::time::Duration::try_from(wait).unwrap_or(std::time::Duration::ZERO);
    tokio::time::sleep(wait.min(std::time::Duration::from_secs(3600))).await;
}

/// SIGTERM (how Kubernetes and systemd stop a process).
pub(crate) struct Terminate {
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

    pub(crate) async fn recv(&mut self) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        use clap::CommandFactory as _;
        Args::command().debug_assert();
    }
}
