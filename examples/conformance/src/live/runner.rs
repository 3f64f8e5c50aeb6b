//! One test of the live replay: set-up, phases (initial state, then each `after_mutations`
//! state), status checks, cases and the prose checks the harness can replay, tear-down.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;

use super::backends::{self, Backends};
use super::cases::{Case, Distribution, MirrorDistribution, Protocol, TargetRef};
use super::client::{self, HttpVersion, grpc_code_name};
use super::expect::{
    self, Response, SentRequest, backend_of_pod, check_distribution, check_mirror_count,
    compare_grpc, compare_http, compare_tcp_echo, compare_tcp_session, compare_udp, is_timeout,
    new_uuid, parse_range, prepare, resolve_pem, truncate, wants_tcp_session,
};
use super::gateway::{self, GatewayProcess};
use super::l4;
use super::{Counts, Outcome, Shared, TestReport, Verdict};
use crate::checks::{self, Ctx};
use crate::cluster::{
    self, BASE_CREATED, Cluster, GATEWAY_CLASS, ObjectId, TEST_CREATED, UNUSABLE_ADDRESS,
    USABLE_ADDRESS,
};
use crate::corpus::{ANY, Check, ExpectedCondition, StatusCheck, TestSpec};
use crate::mutations::{self, MutationError};
use crate::status::StatusView;

/// Go's RequiredConsecutiveSuccesses.
const CONSECUTIVE: usize = 3;
/// MakeRequestAndExpectFailure's consecutive non-200 replies.
const CONSECUTIVE_FAILURES: usize = 5;
/// Pause after a failed attempt (Go: 1 s; shortened with MaxTimeToConsistency).
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// Cases of one test in flight at once (Go runs subtests in parallel).
const CASE_CONCURRENCY: usize = 8;
/// The longest a sampler (distribution, mirror distribution) may run, all attempts together.
const SAMPLER_BUDGET: Duration = Duration::from_secs(60);
/// How long a detail line may be.
const DETAIL: usize = 400;
/// The other_checks kinds the replay covers (by status checks, manifests or its own checks).
const COVERED_OTHER_CHECKS: &[&str] = &[
    "mutation",
    "observed_generation",
    "modify_listeners",
    "endpoint_slices",
    "websocket",
    "address_empty",
    "static_addresses",
    "route_conflict",
    "dns",
    "ca_rotation",
];

/// The address of the n-th pod of the test in slot `slot`.
fn echo_ip(slot: u8, n: usize) -> Option<Ipv4Addr> {
    let n = u8::try_from(n + 1).ok().filter(|n| *n < 255)?;
    Some(Ipv4Addr::new(127, 20, slot, n))
}

/// The Gateway address pool of a slot.
fn pool(slot: u8) -> String {
    format!("127.10.{slot}.0/24")
}

/// The admin address of a slot.
fn admin(slot: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 30, slot, 1)), 15000)
}

/// The outcomes of one test as they are collected.
#[derive(Debug, Default)]
struct Collected {
    details: Vec<String>,
    cases: Counts,
    checks: Counts,
    other: Counts,
}

impl Collected {
    fn case(&mut self, label: &str, outcome: Outcome) {
        self.cases.record(&outcome);
        self.detail(&format!("case {label}"), &outcome);
    }

    fn check(&mut self, label: &str, outcome: Outcome) {
        self.checks.record(&outcome);
        self.detail(&format!("check {label}"), &outcome);
    }

    fn other(&mut self, label: &str, outcome: Outcome) {
        self.other.record(&outcome);
        self.detail(label, &outcome);
    }

    fn detail(&mut self, what: &str, outcome: &Outcome) {
        let (tag, why) = match outcome {
            Outcome::Pass => return,
            Outcome::Fail(why) => ("FAIL", why),
            Outcome::NotApplicable(why) => ("N/A ", why),
        };
        let why = truncate(&why.replace('\n', " | "), DETAIL);
        self.details.push(format!("{tag} {what}: {why}"));
    }
}

struct CheckItem {
    label: String,
    check: StatusCheck,
}

#[derive(Clone)]
struct CaseItem {
    label: String,
    case: Case,
}

/// Runs one test.
pub async fn run_test(spec: &TestSpec, dir: &Path, slot: u8, shared: &Shared) -> TestReport {
    let start = Instant::now();
    let mut out = Collected::default();
    let (checks, cases) = parse_items(spec, &mut out);
    let work = std::env::temp_dir().join(format!(
        "gw-conformance-{}-{}",
        std::process::id(),
        spec.name
    ));
    let result = run_prepared(spec, dir, slot, shared, &checks, &cases, &work, &mut out).await;
    let _ = std::fs::remove_dir_all(&work);
    if let Err(setup) = result {
        // Nothing could be replayed: every case and check fails, with one line saying why.
        for _ in &cases {
            out.cases.record(&Outcome::Fail(String::new()));
        }
        for _ in &checks {
            out.checks.record(&Outcome::Fail(String::new()));
        }
        out.details.insert(0, format!("FAIL setup: {setup}"));
    }
    let failed = out.cases.failed + out.checks.failed + out.other.failed > 0
        || out.details.iter().any(|d| d.starts_with("FAIL"));
    TestReport {
        name: spec.name.clone(),
        verdict: if failed { Verdict::Fail } else { Verdict::Pass },
        details: out.details,
        cases: out.cases,
        checks: out.checks,
        other: out.other,
        elapsed: start.elapsed(),
    }
}

fn parse_items(spec: &TestSpec, out: &mut Collected) -> (Vec<CheckItem>, Vec<CaseItem>) {
    let total = spec.status_checks.len();
    let mut checks = Vec::new();
    for (i, raw) in spec.status_checks.iter().enumerate() {
        let label = format!("[{}/{total}]", i + 1);
        match serde_json::from_value::<StatusCheck>(raw.clone()) {
            Ok(check) => {
                let mut label = format!("{label} {} {}", check.check.name(), check.target());
                if !check.after_mutations.is_empty() {
                    label.push_str(&format!(" (after: {})", check.after_mutations.join(", ")));
                }
                checks.push(CheckItem { label, check });
            }
            Err(e) => out.check(
                &label,
                Outcome::Fail(format!("does not match the schema: {e}")),
            ),
        }
    }
    let mut cases = Vec::new();
    for (i, raw) in spec.cases.iter().enumerate() {
        match serde_json::from_value::<Case>(raw.clone()) {
            Ok(case) => cases.push(CaseItem {
                label: case.label(i),
                case,
            }),
            Err(e) => out.case(
                &format!("#{i}"),
                Outcome::Fail(format!("does not match the schema: {e}")),
            ),
        }
    }
    (checks, cases)
}

#[allow(clippy::too_many_arguments)]
async fn run_prepared(
    spec: &TestSpec,
    dir: &Path,
    slot: u8,
    shared: &Shared,
    checks: &[CheckItem],
    cases: &[CaseItem],
    work: &Path,
    out: &mut Collected,
) -> Result<(), String> {
    let binary = shared
        .binary
        .as_ref()
        .map_err(|e| format!("gw-gateway is not available: {e}"))?;
    let mut cluster = shared.base.clone();
    for file in &spec.manifests {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let source = format!("tests/{}/{file}", spec.name);
        let docs = cluster::parse_manifests(&text).map_err(|e| format!("{source}: {e}"))?;
        for (index, doc) in docs.into_iter().enumerate() {
            cluster.apply(&source, index, doc, TEST_CREATED);
        }
    }
    let pods = backends::plan(&cluster, |n| echo_ip(slot, n))?;
    let backends = Backends::start(pods).await?;
    let result = run_with_backends(
        spec, slot, shared, binary, cluster, &backends, checks, cases, work, out,
    )
    .await;
    backends.shutdown().await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn run_with_backends(
    spec: &TestSpec,
    slot: u8,
    shared: &Shared,
    binary: &Path,
    mut cluster: Cluster,
    backends: &Backends,
    checks: &[CheckItem],
    cases: &[CaseItem],
    work: &Path,
    out: &mut Collected,
) -> Result<(), String> {
    backends::fill_manual_slices(&mut cluster, &backends.pods);
    for (i, slice) in backends::endpoint_slices(&cluster, &backends.pods)
        .into_iter()
        .enumerate()
    {
        cluster.apply("harness:endpointslices", i, slice, BASE_CREATED);
    }
    let config = work.join("config");
    std::fs::create_dir_all(&config).map_err(|e| format!("creating {}: {e}", config.display()))?;
    gateway::write_config(&config, &cluster)?;
    let mut gw = GatewayProcess::spawn(
        binary,
        &config,
        &pool(slot),
        admin(slot),
        &work.join("gateway.log"),
    )?;
    gw.wait_ready(shared.options.ready_timeout).await?;
    let status = gw.status().await?;
    let errors = gateway::status_errors(&status);
    if !errors.is_empty() {
        out.other(
            "gateway configuration",
            Outcome::Fail(format!("/status reports errors: {}", errors.join("; "))),
        );
    }

    let ctx = TestCtx {
        shared,
        backends,
        gw: &gw,
    };
    for (label, outcome) in run_checks(
        &ctx,
        &cluster,
        &setup_checks(&shared.base).iter().collect::<Vec<_>>(),
    )
    .await
    {
        // Not counted: a failure fails the test (as it fails the Go suite's set-up).
        out.detail(&format!("suite setup: {label}"), &outcome);
    }

    let mut phases: Vec<Vec<String>> = vec![Vec::new()];
    for after in checks
        .iter()
        .map(|c| &c.check.after_mutations)
        .chain(cases.iter().map(|c| &c.case.after_mutations))
    {
        if !phases.contains(after) {
            phases.push(after.clone());
        }
    }
    phases.sort_by_key(Vec::len);

    let mut applied: Vec<String> = Vec::new();
    let mut broken: Option<Outcome> = None;
    for phase in &phases {
        let phase_checks: Vec<&CheckItem> = checks
            .iter()
            .filter(|c| c.check.after_mutations == *phase)
            .collect();
        let phase_cases: Vec<&CaseItem> = cases
            .iter()
            .filter(|c| c.case.after_mutations == *phase)
            .collect();
        if *phase != applied {
            if broken.is_none() {
                broken = mutate(&ctx, &mut cluster, &config, &applied, phase, out)
                    .await
                    .err();
            }
            if let Some(outcome) = &broken {
                for c in &phase_checks {
                    out.check(&c.label, outcome.clone());
                }
                for c in &phase_cases {
                    out.case(&c.label, outcome.clone());
                }
                continue;
            }
            applied = phase.clone();
        }
        let (check_outcomes, case_outcomes) = tokio::join!(
            run_checks(&ctx, &cluster, &phase_checks),
            run_cases(&ctx, &cluster, &phase_cases)
        );
        for (label, outcome) in check_outcomes {
            out.check(&label, outcome);
        }
        for (label, outcome) in case_outcomes {
            out.case(&label, outcome);
        }
        if phase.is_empty() {
            other_checks_initial(&ctx, spec, out).await;
        }
    }
    if broken.is_none() {
        other_checks_final(&ctx, spec, &mut cluster, &config, out).await;
    }
    if gw.exited() {
        out.other(
            "gateway process",
            Outcome::Fail(format!(
                "gw-gateway exited during the test; log:\n{}",
                gw.log_tail(15)
            )),
        );
    }
    Ok(())
}

/// What the Go suite requires before any test (README "What the real suite does before each
/// test", steps 1 and 4): the GatewayClass is Accepted, and every base Gateway not annotated
/// `gateway-api/skip-this-for-readiness` is Programmed.
fn setup_checks(base: &Cluster) -> Vec<CheckItem> {
    let condition = |type_: &str| ExpectedCondition {
        type_: type_.to_owned(),
        status: "True".to_owned(),
        reason: ANY.to_owned(),
    };
    let mut items = vec![CheckItem {
        label: format!("GatewayClass {GATEWAY_CLASS} Accepted=True"),
        check: StatusCheck {
            kind: "GatewayClass".to_owned(),
            name: GATEWAY_CLASS.to_owned(),
            namespace: None,
            after_mutations: Vec::new(),
            check: Check::MustHaveCondition {
                condition: condition("Accepted"),
            },
        },
    }];
    for (id, manifest) in base.objects() {
        let skip = manifest
            .pointer("/metadata/annotations/gateway-api~1skip-this-for-readiness")
            .is_some();
        if id.kind == "Gateway" && !skip {
            items.push(CheckItem {
                label: format!("base {id} Programmed=True"),
                check: StatusCheck {
                    kind: id.kind.clone(),
                    name: id.name.clone(),
                    namespace: Some(id.namespace.clone()),
                    after_mutations: Vec::new(),
                    check: Check::MustHaveCondition {
                        condition: condition("Programmed"),
                    },
                },
            });
        }
    }
    items
}

struct TestCtx<'a> {
    shared: &'a Shared,
    backends: &'a Backends,
    gw: &'a GatewayProcess,
}

impl TestCtx<'_> {
    fn consistency(&self) -> Duration {
        self.shared.options.consistency
    }

    fn request_timeout(&self) -> Duration {
        self.shared.options.request_timeout
    }
}

/// Replays the mutations that lead from `applied` to `phase`, rewrites the config and waits for
/// the reload. `Err` is the outcome of everything that depends on it.
async fn mutate(
    ctx: &TestCtx<'_>,
    cluster: &mut Cluster,
    config: &Path,
    applied: &[String],
    phase: &[String],
    out: &mut Collected,
) -> Result<(), Outcome> {
    if !phase.starts_with(applied) {
        return Err(Outcome::NotApplicable(format!(
            "after_mutations [{}] does not extend the mutations done so far [{}]",
            phase.join(", "),
            applied.join(", ")
        )));
    }
    for i in applied.len()..phase.len() {
        let text = &phase[i];
        let occurrence = phase[..i].iter().filter(|t| *t == text).count();
        mutations::apply(cluster, text, occurrence).map_err(|e| match e {
            MutationError::NotReproducible(why) => {
                Outcome::NotApplicable(format!("after `{text}`: {why}"))
            }
            MutationError::Harness(why) => Outcome::Fail(format!("harness: {why}")),
        })?;
    }
    match reload(ctx, config, cluster).await {
        Ok(errors) if !errors.is_empty() => out.other(
            &format!("gateway configuration after {}", phase.join(", ")),
            Outcome::Fail(format!("/status reports errors: {}", errors.join("; "))),
        ),
        Ok(_) => {}
        Err(Reload::Write(e)) => return Err(Outcome::Fail(e)),
        Err(Reload::Timeout(e)) => {
            out.other(
                &format!("reload after {}", phase.join(", ")),
                Outcome::Fail(e),
            );
        }
    }
    Ok(())
}

/// Why [`reload`] failed.
enum Reload {
    /// The configuration could not be written.
    Write(String),
    /// gw-gateway did not publish a new configuration in time.
    Timeout(String),
}

/// Writes the cluster as the gateway's configuration and waits until `/status` shows a new
/// `metadata.resourceVersion`; `Ok` holds the errors `/status` reports.
async fn reload(
    ctx: &TestCtx<'_>,
    config: &Path,
    cluster: &Cluster,
) -> Result<Vec<String>, Reload> {
    let before = ctx
        .gw
        .status()
        .await
        .ok()
        .and_then(|s| gateway::resource_version(&s));
    gateway::write_config(config, cluster).map_err(Reload::Write)?;
    let deadline = Instant::now() + ctx.consistency();
    loop {
        if let Ok(status) = ctx.gw.status().await
            && gateway::resource_version(&status) != before
        {
            return Ok(gateway::status_errors(&status));
        }
        if Instant::now() >= deadline {
            return Err(Reload::Timeout(format!(
                "gw-gateway did not reload within {:?} (metadata.resourceVersion stayed {before:?})",
                ctx.consistency()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `/status` until every check passes or MaxTimeToConsistency passes.
async fn run_checks(
    ctx: &TestCtx<'_>,
    cluster: &Cluster,
    items: &[&CheckItem],
) -> Vec<(String, Outcome)> {
    let deadline = Instant::now() + ctx.consistency();
    let mut last: Vec<Option<String>> = items.iter().map(|_| Some(String::new())).collect();
    loop {
        match ctx.gw.status().await {
            Ok(json) => {
                let view = StatusView::from_list(&json);
                let c = Ctx {
                    status: &view,
                    cluster,
                };
                for (item, last) in items.iter().zip(last.iter_mut()) {
                    if last.is_some() {
                        *last = checks::evaluate(&item.check, c).err();
                    }
                }
            }
            Err(e) => {
                for l in last.iter_mut().flatten() {
                    *l = e.clone();
                }
            }
        }
        if last.iter().all(Option::is_none) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    items
        .iter()
        .zip(last)
        .map(|(item, last)| {
            let outcome = match last {
                None => Outcome::Pass,
                Some(diff) => Outcome::Fail(diff),
            };
            (item.label.clone(), outcome)
        })
        .collect()
}

/// Runs the cases of a phase: a case with `repeat` or `distribution` continues the case before
/// it (the request the Go test makes converge first); the resulting chains run concurrently.
async fn run_cases(
    ctx: &TestCtx<'_>,
    cluster: &Cluster,
    items: &[&CaseItem],
) -> Vec<(String, Outcome)> {
    if items.is_empty() {
        return Vec::new();
    }
    let status = match ctx.gw.status().await {
        Ok(s) => s,
        Err(e) => {
            return items
                .iter()
                .map(|c| {
                    (
                        c.label.clone(),
                        Outcome::Fail(format!("reading /status: {e}")),
                    )
                })
                .collect();
        }
    };
    let mut chains: Vec<Vec<&CaseItem>> = Vec::new();
    for item in items {
        let continues = item.case.repeat.is_some() || item.case.distribution.is_some();
        match chains.last_mut() {
            Some(chain) if continues => chain.push(item),
            _ => chains.push(vec![item]),
        }
    }
    let status = &status;
    let results: Vec<Vec<(String, Outcome)>> = futures_util::stream::iter(chains)
        .map(|chain| async move {
            let mut outcomes = Vec::new();
            let mut previous_ok = true;
            for item in chain {
                let outcome = if previous_ok {
                    run_case(ctx, cluster, status, &item.case).await
                } else {
                    Outcome::Fail("the preceding request of this subtest did not converge".into())
                };
                previous_ok = outcome == Outcome::Pass;
                outcomes.push((item.label.clone(), outcome));
            }
            outcomes
        })
        .buffered(CASE_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().flatten().collect()
}

/// The address of a Gateway (or of a ListenerSet's parent Gateway): the first
/// `status.addresses` entry with a type (Go `WaitForGatewayAddress`).
fn gateway_ip(status: &Value, cluster: &Cluster, target: &TargetRef) -> Result<IpAddr, String> {
    let mut namespace = target.namespace.clone().unwrap_or_else(|| "default".into());
    let mut name = target.name.clone();
    if target.kind.as_deref() == Some("ListenerSet") {
        let id = ObjectId::new("ListenerSet", &namespace, &name);
        let parent = cluster
            .get(&id)
            .and_then(|m| m.pointer("/spec/parentRef"))
            .ok_or_else(|| format!("{id} has no spec.parentRef"))?;
        name = parent
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{id}: spec.parentRef has no name"))?
            .to_owned();
        if let Some(ns) = parent.get("namespace").and_then(Value::as_str) {
            namespace = ns.to_owned();
        }
    }
    let item = status
        .get("items")
        .and_then(Value::as_array)
        .and_then(|items| {
            items.iter().find(|i| {
                i.get("kind").and_then(Value::as_str) == Some("Gateway")
                    && i.pointer("/metadata/name").and_then(Value::as_str) == Some(&name)
                    && i.pointer("/metadata/namespace").and_then(Value::as_str) == Some(&namespace)
            })
        })
        .ok_or_else(|| format!("Gateway {namespace}/{name} is not in /status"))?;
    let address = item
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|a| a.get("type").is_some()))
        .and_then(|a| a.get("value"))
        .and_then(Value::as_str)
        .ok_or_else(|| format!("Gateway {namespace}/{name} has no status address with a type"))?;
    address
        .parse()
        .map_err(|_| format!("Gateway {namespace}/{name} address {address:?} is not an IP"))
}

async fn run_case(ctx: &TestCtx<'_>, cluster: &Cluster, status: &Value, case: &Case) -> Outcome {
    if let Some(condition) = &case.only_if {
        return Outcome::Fail(format!(
            "only_if {condition:?} is not supported by the harness"
        ));
    }
    let protocol = case.request.protocol;
    let ip = match gateway_ip(status, cluster, &case.gateway) {
        Ok(ip) => ip,
        Err(e) => return Outcome::Fail(e),
    };
    let port = case.request.port.unwrap_or(protocol.default_port());
    let target = Target {
        addr: SocketAddr::new(ip, port),
        ip: ip.to_string(),
    };
    let result = match protocol {
        Protocol::Grpc => match &case.distribution {
            Some(d) => grpc_distribution(ctx, case, &target, d).await,
            None => grpc_eventually(ctx, case, &target).await.map(|_| ()),
        },
        Protocol::Tcp | Protocol::Tls | Protocol::Udp => match L4::new(ctx, case, &target) {
            Ok(l4) => l4.run().await,
            Err(e) => Err(e),
        },
        _ => {
            let version = match http_version(&case.request) {
                Ok(v) => v,
                Err(e) => return Outcome::Fail(e),
            };
            let http = Http {
                ctx,
                case,
                target: &target,
                version,
            };
            if let Some(d) = &case.distribution {
                http.distribution(d).await
            } else if let Some(m) = &case.mirror_distribution {
                http.mirror_distribution(m).await
            } else if let Some(n) = case.repeat {
                http.repeat(n).await
            } else if case.expect.failure.is_some()
                && protocol.is_tls()
                && case.expect.status.is_none()
            {
                http.expect_transport_failure().await
            } else if case.expect.failure.is_some() {
                http.expect_failure().await
            } else {
                http.converge().await
            }
        }
    };
    match result {
        Ok(()) => Outcome::Pass,
        Err(e) => Outcome::Fail(e),
    }
}

/// The HTTP client a case's protocol calls for; HTTPS and H2 resolve the corpus's
/// `<cert of Secret ns/name>` placeholders to the programmatic certificates.
fn http_version(request: &super::cases::Request) -> Result<HttpVersion, String> {
    let tls = |h2: bool| -> Result<HttpVersion, String> {
        let ca = resolve_pem(
            request
                .server_ca
                .as_deref()
                .ok_or("an HTTPS case without server_ca")?,
        )?;
        let sni = request.sni.as_deref().ok_or("an HTTPS case without sni")?;
        let client = match request.client_cert.as_deref() {
            None => None,
            Some(c) => {
                let key = c.replacen("<cert of", "<key of", 1);
                Some((resolve_pem(c)?, resolve_pem(&key)?))
            }
        };
        let client_ref = client.as_ref().map(|(c, k)| (c.as_str(), k.as_str()));
        let t = Arc::new(client::TlsClient::new(&ca, sni, client_ref, h2)?);
        Ok(if h2 {
            HttpVersion::H2(t)
        } else {
            HttpVersion::Https(t)
        })
    };
    match request.protocol {
        Protocol::H2cPriorKnowledge => Ok(HttpVersion::H2cPriorKnowledge),
        Protocol::Https => tls(false),
        Protocol::H2 => tls(true),
        _ => Ok(HttpVersion::Http1),
    }
}

/// Where a case's requests go.
struct Target {
    addr: SocketAddr,
    ip: String,
}

/// Go `AwaitConvergence`: `attempt` must succeed `threshold` times in a row; a failed attempt
/// waits [`RETRY_PAUSE`]; gives up after `timeout` (checked after failures, so a streak of
/// slow successes may finish).
async fn eventually<T, F, Fut>(
    timeout: Duration,
    threshold: usize,
    mut attempt: F,
) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    let mut successes = 0;
    let mut attempts = 0;
    loop {
        attempts += 1;
        match attempt().await {
            Ok(value) => {
                successes += 1;
                if successes >= threshold {
                    return Ok(value);
                }
            }
            Err(e) => {
                successes = 0;
                let now = Instant::now();
                if now >= deadline {
                    return Err(format!(
                        "not satisfied after {attempts} attempts in {timeout:?}: {e}"
                    ));
                }
                tokio::time::sleep(RETRY_PAUSE.min(deadline - now)).await;
            }
        }
    }
}

/// The HTTP / h2c flavours of a case.
struct Http<'a> {
    ctx: &'a TestCtx<'a>,
    case: &'a Case,
    target: &'a Target,
    version: HttpVersion,
}

impl Http<'_> {
    fn sent(&self, extra_header: Option<(String, String)>) -> SentRequest {
        let mut sent = prepare(
            &self.case.request,
            &self.target.ip,
            self.target.addr.port(),
            &new_uuid(),
        );
        if self.case.request.protocol.is_tls() {
            sent.scheme = "https".to_owned();
            // Go's client omits the scheme's default port from the Host header.
            if self.case.request.host.is_none() {
                sent.host = match self.target.addr.port() {
                    443 => self.target.ip.clone(),
                    port => format!("{}:{port}", self.target.ip),
                };
            }
        }
        sent.headers.extend(extra_header);
        sent
    }

    async fn exchange(&self, sent: &SentRequest) -> Result<Response, String> {
        client::http_exchange(
            self.target.addr,
            sent,
            &self.version,
            !self.case.request.unfollow_redirect,
            self.ctx.request_timeout(),
        )
        .await
    }

    /// One request compared with `expect`; the path sent.
    async fn once(&self, sent: SentRequest) -> Result<String, String> {
        let resp = self.exchange(&sent).await?;
        compare_http(&sent, &self.case.expect, &resp)?;
        Ok(sent.path)
    }

    /// MakeRequestAndExpectEventuallyConsistentResponse, then the unsampled `mirrored_to`.
    async fn converge(&self) -> Result<(), String> {
        let path = eventually(self.ctx.consistency(), CONSECUTIVE, || {
            self.once(self.sent(None))
        })
        .await?;
        self.mirrored(&path).await
    }

    /// The mirror backends of `mirrored_to` (without `percent`) logged the request.
    async fn mirrored(&self, path: &str) -> Result<(), String> {
        for mirror in &self.case.expect.mirrored_to {
            if mirror.percent.is_some() {
                if self.case.mirror_distribution.is_none() {
                    return Err("mirrored_to with percent needs mirror_distribution".into());
                }
                continue;
            }
            let logs = self
                .ctx
                .backends
                .logs_of(&mirror.name, mirror.namespace.as_deref());
            if logs.is_empty() {
                return Err(format!("no pods for mirror backend {}", mirror.name));
            }
            let line = format!("Echoing back request made to {path} to client");
            let deadline = Instant::now() + self.ctx.consistency();
            loop {
                if logs.iter().any(|l| l.count_starting_with(&line) > 0) {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(format!(
                        "{} did not log `{line}` within {:?}",
                        mirror.name,
                        self.ctx.consistency()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// MakeRequestAndExpectFailure: consecutive non-200 replies (408/504 and transport errors
    /// do not count).
    async fn expect_failure(&self) -> Result<(), String> {
        eventually(self.ctx.consistency(), CONSECUTIVE_FAILURES, || async {
            let resp = self.exchange(&self.sent(None)).await?;
            if resp.status == 200 || is_timeout(resp.status) {
                Err(format!(
                    "expected a reply other than 200, got {}",
                    resp.describe()
                ))
            } else {
                Ok(())
            }
        })
        .await
    }

    /// An HTTPS request that must fail with a transport/TLS error (no HTTP response at all),
    /// a single attempt as in Go. A failed TCP connect (maybe the listener is not bound yet)
    /// is retried within MaxTimeToConsistency, so that a listener which does come up is
    /// exercised; refused for the whole window counts as the failure.
    async fn expect_transport_failure(&self) -> Result<(), String> {
        let deadline = Instant::now() + self.ctx.consistency();
        loop {
            match self.exchange(&self.sent(None)).await {
                Ok(resp) => {
                    return Err(format!(
                        "expected the HTTPS request to fail (TLS handshake or transport error, \
                         no HTTP response), got a response: {}",
                        resp.describe()
                    ));
                }
                Err(e) if e.starts_with(client::CLIENT_CERT_NOT_ASKED) => {
                    return Err(format!(
                        "expected the HTTPS request to fail, but the TLS handshake succeeded \
                         without the gateway asking for a client certificate: {e}"
                    ));
                }
                Err(e) if e.starts_with("connect ") && Instant::now() < deadline => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                // Refused for the whole window: a transport failure as well (Go's single
                // attempt would see it too).
                Err(_) => return Ok(()),
            }
        }
    }

    /// A Go loop of single requests; every one must satisfy `expect`.
    async fn repeat(&self, n: u32) -> Result<(), String> {
        for i in 0..n {
            self.once(self.sent(None))
                .await
                .map_err(|e| format!("request {}/{n}: {e}", i + 1))?;
        }
        Ok(())
    }

    /// A weighted-distribution sample: the pod that answered.
    async fn sample(&self, entropy: Option<(String, String)>) -> Result<String, String> {
        let sent = self.sent(entropy);
        let resp = self.exchange(&sent).await?;
        compare_http(&sent, &self.case.expect, &resp)?;
        Ok(resp.echoed(&sent.method)?.pod)
    }

    async fn distribution(&self, d: &Distribution) -> Result<(), String> {
        let entropy = Entropy::new(d)?;
        sample_attempts(d, |_| self.sample(entropy.draw(false))).await
    }

    async fn mirror_distribution(&self, m: &MirrorDistribution) -> Result<(), String> {
        // The request is first sent once, eventually consistent (with its own request id).
        let with_id = |id: &str| {
            let mut case = self.case.clone();
            case.request.path_query_added =
                Some(format!("gateway-api-conformance-request-id={id}"));
            case
        };
        let first = with_id(&new_uuid());
        let first = Http {
            case: &first,
            version: self.version.clone(),
            ..*self
        };
        eventually(self.ctx.consistency(), CONSECUTIVE, || {
            first.once(first.sent(None))
        })
        .await?;
        let logs = self
            .ctx
            .backends
            .logs_of(&m.backend.name, m.backend.namespace.as_deref());
        if logs.is_empty() {
            return Err(format!("no pods for mirror backend {}", m.backend.name));
        }
        let deadline = Instant::now() + SAMPLER_BUDGET;
        let mut last = String::new();
        for attempt in 1..=m.attempts.max(1) {
            if Instant::now() >= deadline {
                return Err(format!(
                    "ran out of the sampler's {SAMPLER_BUDGET:?} after {} attempts; last: {last}",
                    attempt - 1
                ));
            }
            let case = with_id(&new_uuid());
            let http = Http {
                case: &case,
                version: self.version.clone(),
                ..*self
            };
            let path = http.sent(None).path;
            let mut requests = futures_util::stream::iter(0..m.requests)
                .map(|_| eventually(http.ctx.consistency(), 1, || http.once(http.sent(None))))
                .buffer_unordered(m.concurrency.max(1));
            let mut error = None;
            while let Some(result) = requests.next().await {
                if let Err(e) = result {
                    error = Some(e);
                    break;
                }
            }
            drop(requests);
            if let Some(e) = error {
                last = format!("attempt {attempt}: a primary request failed: {e}");
            } else {
                let line = format!("Echoing back request made to {path} to client");
                let count = settled_count(&logs, &line, m.log_wait_s).await;
                match check_mirror_count(count, &m.tolerance) {
                    Ok(()) => return Ok(()),
                    Err(e) => last = format!("attempt {attempt}: {e}"),
                }
            }
            tokio::time::sleep(Duration::from_secs_f64(m.attempt_pause_s.clamp(0.0, 2.0))).await;
        }
        Err(format!("no attempt of {} passed; last: {last}", m.attempts))
    }
}

/// The number of log lines starting with `line`, once it stopped growing (mirrors are sent
/// asynchronously) or after `wait_s` (at most 5 s).
async fn settled_count(logs: &[gw_echo::EchoLog], line: &str, wait_s: f64) -> usize {
    let count = || {
        logs.iter()
            .map(|l| l.count_starting_with(line))
            .sum::<usize>()
    };
    let deadline = Instant::now() + Duration::from_secs_f64(wait_s.clamp(0.5, 5.0));
    let mut last = count();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = count();
        if now == last || Instant::now() >= deadline {
            return now;
        }
        last = now;
    }
}

/// The cache-defeating header of a distribution.
struct Entropy {
    header: Option<(String, f64, u64, u64)>,
}

impl Entropy {
    fn new(d: &Distribution) -> Result<Entropy, String> {
        let header = match &d.entropy {
            None => None,
            Some(e) => {
                let (lo, hi) = parse_range(&e.values)
                    .ok_or_else(|| format!("entropy values {:?} is not `lo-hi`", e.values))?;
                Some((e.header.clone(), e.probability, lo, hi))
            }
        };
        Ok(Entropy { header })
    }

    /// The header (lower-cased for gRPC metadata) for one sample, with its probability.
    fn draw(&self, lower: bool) -> Option<(String, String)> {
        let (name, p, lo, hi) = self.header.as_ref()?;
        if fastrand::f64() >= *p {
            return None;
        }
        let name = if lower {
            name.to_ascii_lowercase()
        } else {
            name.clone()
        };
        Some((name, fastrand::u64(*lo..=*hi).to_string()))
    }
}

/// Runs the attempts of a weighted distribution: `requests` samples, `concurrency` at a time;
/// passes when any attempt passes.
async fn sample_attempts<F, Fut>(d: &Distribution, sample: F) -> Result<(), String>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<String, String>>,
{
    let deadline = Instant::now() + SAMPLER_BUDGET;
    let mut last = String::new();
    for attempt in 1..=d.attempts.max(1) {
        if Instant::now() >= deadline {
            return Err(format!(
                "ran out of the sampler's {SAMPLER_BUDGET:?} after {} attempts; last: {last}",
                attempt - 1
            ));
        }
        let mut samples = futures_util::stream::iter(0..d.requests)
            .map(&sample)
            .buffer_unordered(d.concurrency.max(1));
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut error = None;
        // The first failed sample fails the attempt; the samples in flight are dropped.
        while let Some(result) = samples.next().await {
            match result {
                Ok(pod) => *counts.entry(backend_of_pod(&pod).to_owned()).or_default() += 1,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        drop(samples);
        let verdict = match error {
            Some(e) => Err(format!("a sample failed: {e}")),
            None => check_distribution(&counts, d.requests, &d.weights, d.tolerance),
        };
        match verdict {
            Ok(()) => return Ok(()),
            Err(e) => last = format!("attempt {attempt}: {e}"),
        }
    }
    Err(format!("no attempt of {} passed; last: {last}", d.attempts))
}

/// The TCP, TLS and UDP flavours of a case (conformance/utils/tcp, tls, udp). Unlike HTTP, the
/// Go helpers need one successful exchange (`assert.Eventually` / `PollUntilContextTimeout`),
/// not three in a row.
struct L4<'a> {
    ctx: &'a TestCtx<'a>,
    case: &'a Case,
    target: &'a Target,
    /// Per exchange: `timeout_s`, or the harness's request timeout.
    timeout: Duration,
    /// The TLS client of a `TLS` case.
    tls: Option<client::TlsClient>,
}

/// How long a `connection_rejected` case waits for the first bytes after a handshake that
/// succeeded, before it calls the connection open (not rejected).
const REJECTION_WAIT: Duration = Duration::from_secs(1);

impl<'a> L4<'a> {
    fn new(ctx: &'a TestCtx<'a>, case: &'a Case, target: &'a Target) -> Result<L4<'a>, String> {
        let request = &case.request;
        let tls = match request.protocol {
            Protocol::Tls => {
                let sni = request.sni.as_deref().ok_or("a TLS case without sni")?;
                let ca = request.server_ca.as_deref().map(resolve_pem).transpose()?;
                if ca.is_none() && case.expect.connection_rejected != Some(true) {
                    return Err("a TLS case without server_ca expects a connection".into());
                }
                Some(client::TlsClient::raw(ca.as_deref(), sni)?)
            }
            _ => None,
        };
        let timeout = request
            .timeout_s
            .filter(|s| *s > 0.0)
            .map_or(ctx.request_timeout(), Duration::from_secs_f64);
        Ok(L4 {
            ctx,
            case,
            target,
            timeout,
            tls,
        })
    }

    async fn run(&self) -> Result<(), String> {
        let expect = &self.case.expect;
        if self.case.mirror_distribution.is_some() {
            return Err("mirror_distribution on a TCP/TLS/UDP case".into());
        }
        if let Some(d) = &self.case.distribution {
            if self.case.request.protocol == Protocol::Tcp {
                // tcp.ExpectAddressBeAvailable before sampling.
                eventually(self.ctx.consistency(), 1, || async {
                    client::connect(self.target.addr, self.timeout)
                        .await
                        .map(drop)
                })
                .await?;
            }
            return sample_attempts(d, |_| self.sample()).await;
        }
        if let Some(n) = self.case.repeat {
            for i in 0..n {
                self.once()
                    .await
                    .map_err(|e| format!("exchange {}/{n}: {e}", i + 1))?;
            }
            return Ok(());
        }
        if expect.connection_rejected == Some(true) {
            return eventually(self.ctx.consistency(), 1, || self.rejected()).await;
        }
        if expect.failure.is_some() {
            return Err(format!(
                "`failure` on a {} case is not defined by the corpus",
                self.case.request.protocol.name()
            ));
        }
        eventually(self.ctx.consistency(), 1, || self.once())
            .await
            .map(drop)
    }

    /// A timed exchange.
    async fn timed<T>(&self, f: impl Future<Output = Result<T, String>>) -> Result<T, String> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "{} exchange with {} did not finish within {:?}",
                self.case.request.protocol.name(),
                self.target.addr,
                self.timeout
            )),
        }
    }

    /// One exchange compared with `expect`; the pod that answered.
    async fn once(&self) -> Result<String, String> {
        let expect = &self.case.expect;
        match self.case.request.protocol {
            Protocol::Udp => {
                let payload = self.case.request.payload.as_deref().unwrap_or_default();
                let reply =
                    l4::udp_exchange(self.target.addr, payload.as_bytes(), self.timeout).await?;
                Ok(compare_udp(expect, &reply)?.pod)
            }
            _ => {
                let session = wants_tcp_session(expect);
                let addr = self.target.addr;
                self.timed(async {
                    let stream = client::connect(addr, self.timeout).await?;
                    let assertions = match (&self.tls, session) {
                        (None, true) => {
                            let s = l4::tcp_session(stream).await?;
                            compare_tcp_session(expect, &s)?;
                            s.assertions
                        }
                        (None, false) => l4::tcp_echo_once(stream).await?,
                        (Some(tls), true) => {
                            let s = l4::tcp_session(tls.handshake(stream, addr).await?).await?;
                            compare_tcp_session(expect, &s)?;
                            s.assertions
                        }
                        (Some(tls), false) => {
                            l4::tcp_echo_once(tls.handshake(stream, addr).await?).await?
                        }
                    };
                    compare_tcp_echo(expect, &assertions)?;
                    Ok(assertions.pod)
                })
                .await
            }
        }
    }

    /// A weighted-distribution sample: one exchange (`tcp.EchoSendOnce` / one datagram); the
    /// pod that answered, which must be named.
    async fn sample(&self) -> Result<String, String> {
        let pod = self.once().await?;
        if pod.is_empty() {
            return Err("the echo reply names no pod".into());
        }
        Ok(pod)
    }

    /// `connection_rejected`: the TCP connect or the TLS handshake with this SNI fails, or the
    /// connection is closed right after it without a byte from a backend.
    async fn rejected(&self) -> Result<(), String> {
        let tls = self
            .tls
            .as_ref()
            .ok_or("connection_rejected on a case that is not TLS")?;
        let addr = self.target.addr;
        let Ok(stream) = client::connect(addr, self.timeout).await else {
            return Ok(());
        };
        let Ok(Ok(stream)) = tokio::time::timeout(self.timeout, tls.handshake(stream, addr)).await
        else {
            return Ok(());
        };
        match l4::first_line(stream, REJECTION_WAIT).await {
            None => Ok(()),
            Some(line) => Err(format!(
                "expected the connection with SNI {:?} to be rejected, but the TLS handshake \
                 succeeded and the connection stayed open{}",
                self.case.request.sni.as_deref().unwrap_or_default(),
                if line.is_empty() {
                    String::new()
                } else {
                    format!(" (the backend sent {:?})", truncate(&line, 80))
                }
            )),
        }
    }
}

fn grpc_authority(case: &Case, target: &Target) -> String {
    match &case.request.authority {
        Some(a) => expect::substitute(a, &target.ip, ""),
        None => target.addr.to_string(),
    }
}

async fn grpc_once(
    ctx: &TestCtx<'_>,
    case: &Case,
    target: &Target,
    extra: Option<(String, String)>,
) -> Result<String, String> {
    let method = case
        .request
        .grpc_method
        .as_deref()
        .ok_or("GRPC case without grpc_method")?;
    let mut metadata: Vec<(String, String)> = case
        .request
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), expect::substitute(v, &target.ip, "")))
        .collect();
    metadata.extend(extra);
    let reply = client::grpc_exchange(
        target.addr,
        &grpc_authority(case, target),
        method,
        &metadata,
        ctx.request_timeout(),
    )
    .await?;
    compare_grpc(
        &case.expect,
        method,
        grpc_code_name(reply.code),
        &reply.message,
        reply.response.as_ref(),
    )?;
    Ok(reply
        .response
        .and_then(|r| r.assertions)
        .and_then(|a| a.context)
        .map(|c| c.pod)
        .unwrap_or_default())
}

async fn grpc_eventually(
    ctx: &TestCtx<'_>,
    case: &Case,
    target: &Target,
) -> Result<String, String> {
    eventually(ctx.consistency(), CONSECUTIVE, || {
        grpc_once(ctx, case, target, None)
    })
    .await
}

async fn grpc_distribution(
    ctx: &TestCtx<'_>,
    case: &Case,
    target: &Target,
    d: &Distribution,
) -> Result<(), String> {
    let entropy = Entropy::new(d)?;
    sample_attempts(d, |_| grpc_once(ctx, case, target, entropy.draw(true))).await
}

/// Prose checks replayed on the initial state: `websocket`, `address_empty`; and a failure
/// for any other_checks kind the harness does not cover.
async fn other_checks_initial(ctx: &TestCtx<'_>, spec: &TestSpec, out: &mut Collected) {
    for other in &spec.other_checks {
        let outcome = match other.check.as_str() {
            "websocket" => websocket(ctx, spec).await,
            "address_empty" => address_empty(ctx, spec).await,
            kind if COVERED_OTHER_CHECKS.contains(&kind) => continue,
            kind => Outcome::Fail(format!(
                "other check `{kind}` is not replayed by the harness: {}",
                other.text
            )),
        };
        out.other(&format!("other check {}", other.check), outcome);
    }
}

/// Prose checks replayed after the last mutation: `static_addresses`, `route_conflict`, `dns`,
/// `ca_rotation`.
async fn other_checks_final(
    ctx: &TestCtx<'_>,
    spec: &TestSpec,
    cluster: &mut Cluster,
    config: &Path,
    out: &mut Collected,
) {
    for other in &spec.other_checks {
        let outcome = match other.check.as_str() {
            "static_addresses" => static_addresses(ctx, spec, cluster).await,
            "route_conflict" => route_conflict(ctx, spec, cluster).await,
            "dns" => dns(ctx, spec, cluster).await,
            "ca_rotation" => ca_rotation(ctx, spec, cluster, config).await,
            _ => continue,
        };
        out.other(&format!("other check {}", other.check), outcome);
    }
}

/// UDPRoute: a DNS A query for `foo.bar.com.` (the zone the coredns backend answers with
/// `whoami`) sent to the Gateway's UDP listener must get a successful answer (Go: miekg/dns
/// `Exchange`, `Rcode == RcodeSuccess`), polled within MaxTimeToConsistency.
async fn dns(ctx: &TestCtx<'_>, spec: &TestSpec, cluster: &Cluster) -> Outcome {
    let result = async {
        let gw = first_gateway(spec)?;
        let namespace = gw.namespace.clone().unwrap_or_else(|| "default".into());
        let gateway_id = ObjectId::new("Gateway", &namespace, &gw.name);
        let port = cluster
            .get(&gateway_id)
            .and_then(|g| g.pointer("/spec/listeners"))
            .and_then(Value::as_array)
            .and_then(|ls| {
                ls.iter()
                    .find(|l| l.get("protocol").and_then(Value::as_str) == Some("UDP"))
            })
            .and_then(|l| l.get("port").and_then(Value::as_u64))
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| format!("{gateway_id} has no UDP listener"))?;
        let status = ctx.gw.status().await?;
        let ip = gateway_ip(&status, cluster, &gw)?;
        let addr = SocketAddr::new(ip, port);
        let id = AtomicU16::new(1);
        eventually(ctx.consistency(), 1, || async {
            let n = id.fetch_add(1, Ordering::Relaxed);
            let query = gw_echo::dns::query(n, "foo.bar.com.");
            let reply = super::l4::udp_exchange(addr, &query, ctx.request_timeout()).await?;
            match gw_echo::dns::parse_reply(&reply) {
                Some((rid, 0, answers)) if rid == n && answers > 0 => Ok(()),
                Some((rid, rcode, answers)) => Err(format!(
                    "DNS reply from {addr}: id {rid} (sent {n}), rcode {rcode}, {answers} answers"
                )),
                None => Err(format!("the reply from {addr} is not a DNS response")),
            }
        })
        .await
    }
    .await;
    match result {
        Ok(()) => Outcome::Pass,
        Err(e) => Outcome::Fail(e),
    }
}

/// BackendTLSPolicy, subtest "Changing the content of a ConfigMap used by BackendTLSPolicy as CA
/// certificate should be reconciled by the controller", after its status phases: the policy's CA
/// ConfigMap (created by the mutations, holding the suite's CA) is rewritten in place, and
/// requests through the route to the policy's Service must follow each content:
/// 1. the suite's CA: 200, with the policy's hostname as the backend's SNI;
/// 2. a well-formed CA that did not sign the backend's certificate ("a mismatching CA"): every
///    request fails (MakeRequestAndExpectFailure), while the policy stays Accepted with its
///    references resolved (the reference itself is valid);
/// 3. content that is not a certificate: every request fails;
/// 4. the suite's CA restored: 200 again;
/// 5. the policy's last patch (back to the suite's ConfigMap): 200.
async fn ca_rotation(
    ctx: &TestCtx<'_>,
    spec: &TestSpec,
    cluster: &mut Cluster,
    config: &Path,
) -> Outcome {
    match ca_rotation_steps(ctx, spec, cluster, config).await {
        Ok(()) => Outcome::Pass,
        Err(e) => Outcome::Fail(e),
    }
}

async fn ca_rotation_steps(
    ctx: &TestCtx<'_>,
    spec: &TestSpec,
    cluster: &mut Cluster,
    config: &Path,
) -> Result<(), String> {
    let sequence: Vec<(&str, mutations::Mutation)> = spec
        .mutation_sequence()
        .into_iter()
        .filter_map(|t| mutations::Mutation::parse(t).ok().map(|m| (t, m)))
        .collect();
    let find = |verb: &str, kind: &str| {
        sequence
            .iter()
            .find(|(_, m)| m.verb == verb && m.id.kind == kind)
            .ok_or_else(|| format!("no `{verb} {kind}` mutation in the test"))
    };
    let (policy_patch, policy) = find("Patch", "BackendTLSPolicy")?;
    let (_, config_map) = find("Create", "ConfigMap")?;
    let policy_manifest = cluster
        .get(&policy.id)
        .ok_or_else(|| format!("{} does not exist", policy.id))?
        .clone();
    let referenced = policy_manifest
        .pointer("/spec/validation/caCertificateRefs/0/name")
        .and_then(Value::as_str);
    if referenced != Some(config_map.id.name.as_str()) {
        return Err(format!(
            "{} references {referenced:?}, not {} (the status phases did not leave it there)",
            policy.id, config_map.id
        ));
    }
    let (ok_case, fail_case) = ca_rotation_cases(cluster, &policy_manifest)?;
    let expect = async |case: &Case, cluster: &Cluster, step: &str| -> Result<(), String> {
        let status = ctx.gw.status().await?;
        match run_case(ctx, cluster, &status, case).await {
            Outcome::Pass => Ok(()),
            other => {
                let wanted = if case.expect.failure.is_some() {
                    "requests to fail"
                } else {
                    "200"
                };
                Err(format!("{step}: expected {wanted}: {other:?}"))
            }
        }
    };
    let apply = async |cluster: &Cluster| -> Result<(), String> {
        match reload(ctx, config, cluster).await {
            Ok(errors) if errors.is_empty() => Ok(()),
            Ok(errors) => Err(format!("/status reports errors: {}", errors.join("; "))),
            Err(Reload::Write(e) | Reload::Timeout(e)) => Err(e),
        }
    };
    let rewrite = async |cluster: &mut Cluster, ca: &str| -> Result<(), String> {
        let cm = cluster
            .get_mut(&config_map.id)
            .ok_or_else(|| format!("{} does not exist", config_map.id))?;
        mutations::set_ca(cm, ca)?;
        apply(cluster).await
    };
    let suite_ca = mutations::ca_of(cluster, mutations::SUITE_CA_CONFIG_MAP)?;
    let mismatch_ca = mutations::ca_of(cluster, mutations::MISMATCH_CA_CONFIG_MAP)?;

    expect(&ok_case, cluster, "with the suite's CA").await?;

    rewrite(cluster, &mismatch_ca).await?;
    expect(
        &fail_case,
        cluster,
        "after the CA was replaced by a mismatching CA",
    )
    .await?;
    let resolved = CheckItem {
        label: "still resolved".into(),
        check: serde_json::from_value(serde_json::json!({
            "check": "PolicyMustHaveCondition",
            "kind": "BackendTLSPolicy",
            "name": policy.id.name,
            "namespace": policy.id.namespace,
            "ancestor": {"name": ok_case.gateway.name, "namespace": ok_case.gateway.namespace},
            "condition": {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs"},
        }))
        .map_err(|e| format!("building the status check: {e}"))?,
    };
    for (_, outcome) in run_checks(ctx, cluster, &[&resolved]).await {
        if let Outcome::Fail(e) = outcome {
            return Err(format!(
                "with a well-formed mismatching CA the reference is still valid: {e}"
            ));
        }
    }

    rewrite(cluster, mutations::NOT_A_CERTIFICATE).await?;
    expect(
        &fail_case,
        cluster,
        "after the CA was replaced by content that is not a certificate",
    )
    .await?;

    rewrite(cluster, &suite_ca).await?;
    expect(&ok_case, cluster, "after the suite's CA was restored").await?;

    let occurrence = sequence
        .iter()
        .filter(|(t, _)| t == policy_patch)
        .count()
        .saturating_sub(1);
    mutations::apply(cluster, policy_patch, occurrence).map_err(|e| format!("{e:?}"))?;
    apply(cluster).await?;
    expect(
        &ok_case,
        cluster,
        &format!("after the last `{policy_patch}`"),
    )
    .await
}

/// The request of the ca_rotation subtest, answered (`.0`) and refused (`.1`): to the HTTPRoute
/// rule whose backend is the policy's Service, by the route's first hostname and the rule's path.
fn ca_rotation_cases(cluster: &Cluster, policy: &Value) -> Result<(Case, Case), String> {
    let namespace = policy
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .ok_or("the policy has no namespace")?;
    let service = policy
        .pointer("/spec/targetRefs/0/name")
        .and_then(Value::as_str)
        .ok_or("the policy has no targetRefs[0].name")?;
    let sni = policy
        .pointer("/spec/validation/hostname")
        .and_then(Value::as_str)
        .ok_or("the policy has no validation.hostname")?;
    let (route, rule) = cluster
        .objects()
        .filter(|(id, _)| id.kind == "HTTPRoute" && id.namespace == namespace)
        .find_map(|(_, route)| {
            let rules = route.pointer("/spec/rules")?.as_array()?;
            let rule = rules.iter().find(|rule| {
                rule.get("backendRefs")
                    .and_then(Value::as_array)
                    .is_some_and(|refs| {
                        refs.iter()
                            .any(|r| r.get("name").and_then(Value::as_str) == Some(service))
                    })
            })?;
            Some((route, rule))
        })
        .ok_or_else(|| format!("no HTTPRoute in {namespace} routes to Service {service}"))?;
    let host = route
        .pointer("/spec/hostnames/0")
        .and_then(Value::as_str)
        .ok_or("the route has no hostname")?;
    let path = rule
        .pointer("/matches/0/path/value")
        .and_then(Value::as_str)
        .ok_or("the rule has no path match")?;
    let parent = route
        .pointer("/spec/parentRefs/0")
        .ok_or("the route has no parentRef")?;
    let gateway = serde_json::json!({
        "name": parent.get("name"),
        "namespace": parent.get("namespace").and_then(Value::as_str).unwrap_or(namespace),
    });
    let request = serde_json::json!({"protocol": "HTTP", "host": host, "path": path});
    let ok = serde_json::json!({
        "gateway": gateway,
        "request": request,
        "expect": {
            "status": 200,
            "namespace": namespace,
            "backend_request": {"host": host, "method": "GET", "path": path, "sni": sni},
        },
    });
    let refused = serde_json::json!({
        "gateway": gateway,
        "request": request,
        "expect": {"failure": "status != 200", "status": "not 200"},
    });
    let case = |v: Value| serde_json::from_value::<Case>(v).map_err(|e| format!("case: {e}"));
    Ok((case(ok)?, case(refused)?))
}

/// Probes per round of [`route_conflict`] (Go: 20 probes, 2 s each, a round per second).
const CONFLICT_PROBES: usize = 20;

/// TCP/UDPRouteMultipleRoutesAttachment, after the newer route was created: every probe to the
/// contested listener is answered by the backend of the OLDEST route (the first of the test's
/// `routes:`, its first backendRef), never by another. A round with a failed probe is retried
/// (1 s apart, within MaxTimeToConsistency); a probe answered by another backend fails at once.
async fn route_conflict(ctx: &TestCtx<'_>, spec: &TestSpec, cluster: &Cluster) -> Outcome {
    match route_conflict_probe(ctx, spec, cluster).await {
        Ok(()) => Outcome::Pass,
        Err(e) => Outcome::Fail(e),
    }
}

async fn route_conflict_probe(
    ctx: &TestCtx<'_>,
    spec: &TestSpec,
    cluster: &Cluster,
) -> Result<(), String> {
    let gw = first_gateway(spec)?;
    let section = gw
        .section_names
        .first()
        .ok_or("gateways[0] names no listener (sectionNames)")?;
    let namespace = gw.namespace.clone().unwrap_or_else(|| "default".into());
    let route = spec.routes.first().ok_or("the test lists no route")?;
    let field = |k: &str| route.get(k).and_then(Value::as_str).unwrap_or_default();
    let route_id = ObjectId::new(field("kind"), field("namespace"), field("name"));
    let expected = cluster
        .get(&route_id)
        .and_then(|r| r.pointer("/spec/rules/0/backendRefs/0/name"))
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{route_id} has no backendRef"))?
        .to_owned();
    let gateway_id = ObjectId::new("Gateway", &namespace, &gw.name);
    let port = cluster
        .get(&gateway_id)
        .and_then(|g| g.pointer("/spec/listeners"))
        .and_then(Value::as_array)
        .and_then(|ls| {
            ls.iter()
                .find(|l| l.get("name").and_then(Value::as_str) == Some(section.as_str()))
        })
        .and_then(|l| l.get("port"))
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| format!("{gateway_id} has no listener {section}"))?;
    let status = ctx.gw.status().await?;
    let addr = SocketAddr::new(gateway_ip(&status, cluster, &gw)?, port);
    let udp = route_id.kind == "UDPRoute";
    let probe_timeout = Duration::from_secs(2);
    let probe = || async move {
        if udp {
            let reply =
                l4::udp_exchange(addr, b"gateway-api-conformance-udp-echo", probe_timeout).await?;
            serde_json::from_slice::<l4::UdpReply>(&reply)
                .map(|r| r.pod)
                .map_err(|e| format!("UDP reply is not the echo JSON: {e}"))
        } else {
            let stream = client::connect(addr, probe_timeout).await?;
            match tokio::time::timeout(probe_timeout, l4::tcp_echo_once(stream)).await {
                Ok(r) => r.map(|a| a.pod),
                Err(_) => Err(format!("no TCP echo within {probe_timeout:?}")),
            }
        }
    };
    let deadline = Instant::now() + ctx.consistency();
    loop {
        let mut failed = None;
        for i in 0..CONFLICT_PROBES {
            match probe().await {
                Ok(pod) if backend_of_pod(&pod) == expected => {}
                Ok(pod) => {
                    return Err(format!(
                        "traffic to {addr} (listener {section}) reached backend {:?} (pod \
                         {pod:?}); only {expected}, the backend of the oldest route \
                         {route_id}, may receive it",
                        backend_of_pod(&pod)
                    ));
                }
                Err(e) => {
                    failed = Some(format!("probe {}/{CONFLICT_PROBES}: {e}", i + 1));
                    break;
                }
            }
        }
        let Some(e) = failed else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "no round of {CONFLICT_PROBES} probes to {addr} succeeded within {:?}: {e}",
                ctx.consistency()
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn first_gateway(spec: &TestSpec) -> Result<TargetRef, String> {
    let raw = spec.gateways.first().ok_or("the test lists no gateway")?;
    serde_json::from_value(raw.clone()).map_err(|e| format!("gateways[0]: {e}"))
}

/// HTTPRouteBackendProtocolWebSocket: a text and a binary frame echoed through the route,
/// three times in a row.
async fn websocket(ctx: &TestCtx<'_>, spec: &TestSpec) -> Outcome {
    let result = async {
        let gw = first_gateway(spec)?;
        let status = ctx.gw.status().await?;
        let cluster = &ctx.shared.base;
        let ip = gateway_ip(&status, cluster, &gw)?;
        let addr = SocketAddr::new(ip, 80);
        let origin = format!("ws://gateway/{}", spec.name);
        let host = ip.to_string();
        eventually(ctx.consistency(), CONSECUTIVE, || {
            client::websocket_exchange(addr, &host, &origin, ctx.request_timeout())
        })
        .await
    }
    .await;
    match result {
        Ok(()) => Outcome::Pass,
        Err(e) => Outcome::Fail(e),
    }
}

fn gateway_addresses(status: &Value, namespace: &str, name: &str) -> Option<Vec<String>> {
    let item = status.get("items")?.as_array()?.iter().find(|i| {
        i.get("kind").and_then(Value::as_str) == Some("Gateway")
            && i.pointer("/metadata/name").and_then(Value::as_str) == Some(name)
            && i.pointer("/metadata/namespace").and_then(Value::as_str) == Some(namespace)
    })?;
    Some(
        item.pointer("/status/addresses")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|a| a.get("value").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    )
}

/// GatewayOptionalAddressValue: an address entry with a type and no value still gets an
/// address in status.
async fn address_empty(ctx: &TestCtx<'_>, spec: &TestSpec) -> Outcome {
    let gw = match first_gateway(spec) {
        Ok(gw) => gw,
        Err(e) => return Outcome::Fail(e),
    };
    let namespace = gw.namespace.clone().unwrap_or_else(|| "default".into());
    match ctx.gw.status().await {
        Ok(status) => match gateway_addresses(&status, &namespace, &gw.name) {
            Some(a) if !a.is_empty() => Outcome::Pass,
            Some(_) => Outcome::Fail(format!(
                "Gateway {namespace}/{} has no status.addresses",
                gw.name
            )),
            None => Outcome::Fail(format!("Gateway {namespace}/{} is not in /status", gw.name)),
        },
        Err(e) => Outcome::Fail(e),
    }
}

/// GatewayStaticAddresses, after both patches: status.addresses holds the usable address and
/// neither the unusable nor the invalid one.
async fn static_addresses(ctx: &TestCtx<'_>, spec: &TestSpec, cluster: &Cluster) -> Outcome {
    let Some(id) = spec
        .mutation_sequence()
        .iter()
        .filter_map(|t| mutations::Mutation::parse(t).ok())
        .find(|m| m.verb == "Patch" && m.id.kind == "Gateway")
        .map(|m| m.id)
    else {
        return Outcome::Fail("no `Patch Gateway` mutation names the Gateway".into());
    };
    let deadline = Instant::now() + ctx.consistency();
    loop {
        let verdict = match ctx.gw.status().await {
            Ok(status) => match gateway_addresses(&status, &id.namespace, &id.name) {
                Some(a)
                    if a.iter().any(|v| v == USABLE_ADDRESS)
                        && !a
                            .iter()
                            .any(|v| v == UNUSABLE_ADDRESS || v.contains("fake")) =>
                {
                    Outcome::Pass
                }
                Some(a) => Outcome::Fail(format!(
                    "{id}: status.addresses {a:?} must hold {USABLE_ADDRESS} and not {UNUSABLE_ADDRESS} or the invalid address (spec.addresses now {})",
                    cluster
                        .get(&id)
                        .and_then(|m| m.pointer("/spec/addresses"))
                        .map(ToString::to_string)
                        .unwrap_or_default()
                )),
                None => Outcome::Fail(format!("{id} is not in /status")),
            },
            Err(e) => Outcome::Fail(e),
        };
        if verdict == Outcome::Pass || Instant::now() >= deadline {
            return verdict;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_give_disjoint_addresses() {
        assert_eq!(echo_ip(3, 0), Some(Ipv4Addr::new(127, 20, 3, 1)));
        assert_eq!(echo_ip(3, 253), Some(Ipv4Addr::new(127, 20, 3, 254)));
        assert_eq!(echo_ip(3, 254), None);
        assert_eq!(pool(7), "127.10.7.0/24");
        assert_eq!(admin(7).to_string(), "127.30.7.1:15000");
    }

    #[tokio::test]
    async fn eventually_needs_consecutive_successes() {
        let calls = std::sync::atomic::AtomicUsize::new(0);
        // fail, ok, fail, ok, ok, ok
        let script = [false, true, false, true, true, true];
        let r = eventually(Duration::from_secs(30), 3, || {
            let i = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let ok = script.get(i).copied().unwrap_or(false);
            async move {
                if ok {
                    Ok(i)
                } else {
                    Err(format!("attempt {i}"))
                }
            }
        })
        .await;
        assert_eq!(r, Ok(5));
        let r: Result<(), String> = eventually(Duration::from_millis(600), 3, || async {
            Err("never".to_owned())
        })
        .await;
        assert!(r.unwrap_err().contains("never"));
    }

    #[test]
    fn listener_set_addresses_come_from_the_parent_gateway() {
        let mut cluster = Cluster::default();
        cluster.apply(
            "t",
            0,
            serde_json::json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "ListenerSet",
                "metadata": {"name": "ls", "namespace": "ns"}, "spec": {"parentRef": {"name": "gw"}}}),
            BASE_CREATED,
        );
        let status = serde_json::json!({"items": [{"kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "ns"},
            "status": {"addresses": [{"value": "hostname"}, {"type": "IPAddress", "value": "127.10.0.1"}]}}]});
        let target = TargetRef {
            name: "ls".into(),
            namespace: Some("ns".into()),
            kind: Some("ListenerSet".into()),
            ..TargetRef::default()
        };
        assert_eq!(
            gateway_ip(&status, &cluster, &target),
            Ok("127.10.0.1".parse().unwrap())
        );
        let missing = TargetRef {
            name: "other".into(),
            namespace: Some("ns".into()),
            ..TargetRef::default()
        };
        assert!(gateway_ip(&status, &cluster, &missing).is_err());
    }

    #[tokio::test]
    async fn sample_attempts_pass_when_any_attempt_passes() {
        let d: Distribution = serde_json::from_value(serde_json::json!({
            "weights": {"a": 0.5, "b": 0.5}, "requests": 100, "concurrency": 10,
            "tolerance": 0.1, "attempts": 3,
        }))
        .unwrap();
        let n = std::sync::atomic::AtomicUsize::new(0);
        let r = sample_attempts(&d, |_| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            // First attempt: everything to a; later: alternate.
            let pod = if i < 100 || i.is_multiple_of(2) {
                "a-x-y"
            } else {
                "b-x-y"
            };
            async move { Ok(pod.to_owned()) }
        })
        .await;
        assert_eq!(r, Ok(()));
        let all_a = sample_attempts(&d, |_| async { Ok("a-x-y".to_owned()) }).await;
        assert!(all_a.unwrap_err().contains("attempt 3"));
    }
}
