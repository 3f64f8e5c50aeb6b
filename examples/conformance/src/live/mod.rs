//! The live replay: every corpus test whose features gw claims ([`LIVE_FEATURES`]) runs against
//! a real `gw-gateway` process.
//!
//! Per test, in a fresh temporary folder:
//! 1. the base manifests, the programmatic Secrets/ConfigMaps and the test's manifests are
//!    prepared like the Go suite prepares them ([`Cluster`]: class name, controller name,
//!    address placeholders);
//! 2. every echo-basic Deployment becomes `replicas` in-process echo servers, each on its own
//!    loopback IP ([`backends`]), and every Service gets an EndpointSlice;
//! 3. `gw-gateway` is started on that folder with its own address pool and admin address
//!    ([`gateway`]), and the replay waits for `/readyz`;
//! 4. the `status_checks` are matched against `/status` (eventually, with the shared
//!    [`checks`](crate::checks)), and the `cases` are sent ([`client`]) and compared
//!    ([`expect`]), with the suite's eventual-consistency rule and samplers ([`runner`]);
//! 5. `after_mutations` are replayed by rewriting the manifests (the gateway hot-reloads), then
//!    the checks and cases that follow them run.
//!
//! Addresses are disjoint per test (test number `t` in corpus order): Gateways get
//! `127.10.t.0/24`, pods `127.20.t.n`, the admin server `127.30.t.1:15000`, so tests can run a
//! few at a time. Every protocol of the corpus is sent: HTTP, h2c, gRPC, HTTPS and H2
//! ([`client`]), TLS, TCP and UDP ([`l4`]).
//!
//! [`LIVE_FEATURES`]: crate::features::LIVE_FEATURES
//! [`Cluster`]: crate::cluster::Cluster

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::certs::programmatic_objects;
use crate::cluster::{self, Cluster};
use crate::corpus::{Corpus, TestSpec};
use crate::features::Features;

pub mod backends;
pub mod cases;
pub mod client;
pub mod expect;
pub mod gateway;
pub mod l4;
pub mod runner;

/// `GW_CONFORMANCE_RUN=TestA,TestB`: run only these tests.
pub const RUN_ENV: &str = "GW_CONFORMANCE_RUN";
/// `GW_CONFORMANCE_JOBS=N`: tests run at the same time (default 3).
pub const JOBS_ENV: &str = "GW_CONFORMANCE_JOBS";

/// How the replay runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Only these tests (by name), when set.
    pub filter: Option<BTreeSet<String>>,
    /// Tests running at the same time.
    pub jobs: usize,
    /// The suite's MaxTimeToConsistency (30 s in Go; gw is consistent right after a reload).
    pub consistency: Duration,
    /// Per-request client deadline (10 s in Go).
    pub request_timeout: Duration,
    /// How long the gateway may take to become ready.
    pub ready_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            filter: None,
            jobs: 3,
            consistency: Duration::from_secs(5),
            request_timeout: Duration::from_secs(3),
            ready_timeout: Duration::from_secs(15),
        }
    }
}

impl Options {
    /// The defaults, with [`RUN_ENV`] and [`JOBS_ENV`] applied.
    pub fn from_env() -> Options {
        let mut options = Options::default();
        if let Ok(run) = std::env::var(RUN_ENV) {
            let names: BTreeSet<String> = run
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            if !names.is_empty() {
                options.filter = Some(names);
            }
        }
        if let Some(jobs) = std::env::var(JOBS_ENV)
            .ok()
            .and_then(|j| j.trim().parse::<usize>().ok())
        {
            options.jobs = jobs.clamp(1, 16);
        }
        options
    }
}

/// The outcome of one case or check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Satisfied.
    Pass,
    /// Not satisfied: why.
    Fail(String),
    /// Cannot be replayed: why.
    NotApplicable(String),
}

/// Pass / fail / not-applicable counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Passed.
    pub passed: usize,
    /// Failed.
    pub failed: usize,
    /// Not applicable.
    pub not_applicable: usize,
}

impl Counts {
    /// Counts one outcome.
    pub fn record(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Pass => self.passed += 1,
            Outcome::Fail(_) => self.failed += 1,
            Outcome::NotApplicable(_) => self.not_applicable += 1,
        }
    }

    fn add(&mut self, other: Counts) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.not_applicable += other.not_applicable;
    }

    fn total(self) -> usize {
        self.passed + self.failed + self.not_applicable
    }
}

/// The verdict on a test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every case and check passed (or is not applicable).
    Pass,
    /// Something failed.
    Fail,
    /// The Go suite would not run it: why.
    Skip(String),
}

/// What happened in one test.
#[derive(Debug, Clone)]
pub struct TestReport {
    /// Test name.
    pub name: String,
    /// Verdict.
    pub verdict: Verdict,
    /// Failure and not-applicable details, one line each.
    pub details: Vec<String>,
    /// Cases.
    pub cases: Counts,
    /// Status checks.
    pub checks: Counts,
    /// Prose checks replayed (websocket, addresses).
    pub other: Counts,
    /// Wall time.
    pub elapsed: Duration,
}

impl TestReport {
    fn skipped(name: &str, why: String) -> TestReport {
        TestReport {
            name: name.to_owned(),
            verdict: Verdict::Skip(why),
            details: Vec::new(),
            cases: Counts::default(),
            checks: Counts::default(),
            other: Counts::default(),
            elapsed: Duration::ZERO,
        }
    }
}

/// The whole replay.
#[derive(Debug, Default)]
pub struct Report {
    /// Per test, sorted by name.
    pub tests: Vec<TestReport>,
    /// Problems of the corpus or the harness itself (must be none).
    pub harness_errors: Vec<String>,
    /// Wall time.
    pub elapsed: Duration,
    /// Of which locating (and maybe building) `gw-gateway`.
    pub build_elapsed: Duration,
    /// Whether a filter was applied.
    pub filtered: bool,
}

impl Report {
    /// Tests passed.
    pub fn passed(&self) -> usize {
        self.count(|v| *v == Verdict::Pass)
    }

    /// Tests failed.
    pub fn failed(&self) -> usize {
        self.count(|v| *v == Verdict::Fail)
    }

    fn count(&self, f: impl Fn(&Verdict) -> bool) -> usize {
        self.tests.iter().filter(|t| f(&t.verdict)).count()
    }

    /// The report; the last line is exactly `N passed, M failed` (tests).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let (mut cases, mut checks, mut other) =
            (Counts::default(), Counts::default(), Counts::default());
        for t in &self.tests {
            cases.add(t.cases);
            checks.add(t.checks);
            other.add(t.other);
            match &t.verdict {
                Verdict::Skip(why) => {
                    let _ = writeln!(out, "SKIP {}: {why}", t.name);
                    continue;
                }
                Verdict::Pass => {
                    let _ = write!(out, "PASS {}", t.name);
                }
                Verdict::Fail => {
                    let _ = write!(out, "FAIL {}", t.name);
                }
            }
            let _ = writeln!(
                out,
                " ({}/{} cases, {}/{} status checks{}, {:.1}s)",
                t.cases.passed,
                t.cases.total(),
                t.checks.passed,
                t.checks.total(),
                if t.other.total() > 0 {
                    format!(", {}/{} other checks", t.other.passed, t.other.total())
                } else {
                    String::new()
                },
                t.elapsed.as_secs_f64()
            );
            for d in &t.details {
                let _ = writeln!(out, "    {d}");
            }
        }
        for e in &self.harness_errors {
            let _ = writeln!(out, "HARNESS ERROR {e}");
        }
        let skipped = self.count(|v| matches!(v, Verdict::Skip(_)));
        let _ = writeln!(
            out,
            "cases: {} passed, {} failed, {} not applicable; status checks: {} passed, {} failed, \
             {} not applicable; other checks: {} passed, {} failed",
            cases.passed,
            cases.failed,
            cases.not_applicable,
            checks.passed,
            checks.failed,
            checks.not_applicable,
            other.passed,
            other.failed
        );
        let _ = writeln!(
            out,
            "tests: {skipped} skipped (features gw does not claim); replay took {:.1}s \
             (locating/building gw-gateway {:.1}s){}",
            self.elapsed.as_secs_f64(),
            self.build_elapsed.as_secs_f64(),
            if self.filtered {
                format!(" (filtered by {RUN_ENV})")
            } else {
                String::new()
            }
        );
        let _ = write!(out, "{} passed, {} failed", self.passed(), self.failed());
        out
    }
}

/// Checks that this host can do what the replay needs: the suite's listeners are on port 80
/// (and 8080, ...) of `127.x.y.z` addresses, so binding a privileged port on a loopback address
/// other than 127.0.0.1 must work (Linux routes all of 127.0.0.0/8 to `lo`).
fn preflight() -> Result<(), String> {
    match std::net::TcpListener::bind(("127.9.255.254", 80)) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(format!(
            "cannot bind 127.9.255.254:80 ({e}): the replay's Gateways listen on port 80; run \
             as root, or allow unprivileged low ports (`sysctl \
             net.ipv4.ip_unprivileged_port_start=0`), or give the test binary and gw-gateway \
             CAP_NET_BIND_SERVICE"
        )),
        Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => Err(format!(
            "cannot bind 127.9.255.254 ({e}): the replay needs every 127.0.0.0/8 address on the \
             loopback interface (Linux has them; elsewhere add them as aliases)"
        )),
        Err(_) => Ok(()),
    }
}

/// What every test shares.
#[derive(Debug)]
pub struct Shared {
    /// The claimed features.
    pub features: Features,
    /// The base cluster (base manifests + programmatic objects).
    pub base: Cluster,
    /// The gateway binary, or why there is none.
    pub binary: Result<PathBuf, String>,
    /// Options.
    pub options: Options,
}

/// Runs the replay over the corpus.
pub async fn run(corpus: &Corpus, options: Options) -> Report {
    let start = Instant::now();
    let mut report = Report {
        filtered: options.filter.is_some(),
        ..Report::default()
    };
    let features = match Features::live(corpus) {
        Ok(f) => f,
        Err(e) => {
            report.harness_errors.push(e);
            return report;
        }
    };
    let programmatic = match programmatic_objects() {
        Ok(p) => p,
        Err(e) => {
            report.harness_errors.push(e);
            return report;
        }
    };
    let base_path = corpus.base_manifests();
    let base_docs = match std::fs::read_to_string(&base_path)
        .map_err(|e| e.to_string())
        .and_then(|text| cluster::parse_manifests(&text))
    {
        Ok(docs) => docs,
        Err(e) => {
            report
                .harness_errors
                .push(format!("{}: {e}", base_path.display()));
            return report;
        }
    };
    let base = Cluster::base(
        features.supported(),
        "base/manifests.yaml",
        base_docs,
        programmatic,
    );
    let dirs = match corpus.test_dirs() {
        Ok(dirs) => dirs,
        Err(e) => {
            report
                .harness_errors
                .push(format!("cannot list tests: {e}"));
            return report;
        }
    };

    let mut to_run = Vec::new();
    for (index, dir) in dirs.into_iter().enumerate() {
        let spec = match TestSpec::read(&dir) {
            Ok(spec) => spec,
            Err(e) => {
                report.harness_errors.push(e);
                continue;
            }
        };
        if options
            .filter
            .as_ref()
            .is_some_and(|f| !f.contains(&spec.name))
        {
            continue;
        }
        match features.skip_reason(&spec) {
            Ok(None) => match u8::try_from(index) {
                Ok(slot) => to_run.push((slot, spec, dir)),
                Err(_) => report.harness_errors.push(format!(
                    "{}: more than 256 tests, no address slot left",
                    spec.name
                )),
            },
            Ok(Some(why)) => report.tests.push(TestReport::skipped(&spec.name, why)),
            Err(e) => report.harness_errors.push(e),
        }
    }
    if let Some(filter) = &options.filter {
        for name in filter {
            if !report.tests.iter().any(|t| &t.name == name)
                && !to_run.iter().any(|(_, s, _)| &s.name == name)
            {
                report.harness_errors.push(format!(
                    "{RUN_ENV} names {name}, which is not a corpus test"
                ));
            }
        }
    }

    if !to_run.is_empty()
        && let Err(e) = preflight()
    {
        report.harness_errors.push(e);
        return report;
    }
    let build_start = Instant::now();
    let binary = if to_run.is_empty() {
        Err("not needed".to_owned())
    } else {
        tokio::task::spawn_blocking(gateway::locate_gateway)
            .await
            .unwrap_or_else(|e| Err(format!("locating gw-gateway: {e}")))
    };
    report.build_elapsed = build_start.elapsed();
    if let Err(e) = &binary
        && !to_run.is_empty()
    {
        report
            .harness_errors
            .push(format!("gw-gateway is not available: {e}"));
    }
    let jobs = options.jobs.max(1);
    let shared = Arc::new(Shared {
        features,
        base,
        binary,
        options,
    });
    let results: Vec<TestReport> = futures_util::stream::iter(to_run)
        .map(|(slot, spec, dir)| {
            let shared = shared.clone();
            async move { runner::run_test(&spec, &dir, slot, &shared).await }
        })
        .buffer_unordered(jobs)
        .collect()
        .await;
    report.tests.extend(results);
    report.tests.sort_by(|a, b| a.name.cmp(&b.name));
    report.elapsed = start.elapsed();
    report
}
