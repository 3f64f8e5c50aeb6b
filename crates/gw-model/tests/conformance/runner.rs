//! Runs the status checks of every corpus test and collects a report.
//!
//! Per test: base cluster + the test's manifests = the initial state; each check runs on the
//! initial state, or on the initial state plus its `after_mutations` (replayed in order, states
//! cached per mutation list). A check whose mutations cannot be replayed exactly is not
//! applicable, with the reason.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use gw_model::load;

use gw_conformance::certs::programmatic_objects;
use gw_conformance::checks::{self, Ctx};
use gw_conformance::cluster::{self, Cluster, Compiled, TEST_CREATED};
use gw_conformance::corpus::{Corpus, StatusCheck, TestSpec};
use gw_conformance::features::Features;
use gw_conformance::mutations::{self, MutationError};

/// The outcome of one status check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The status satisfies the check.
    Pass,
    /// It does not; the diff.
    Fail(String),
    /// The check cannot be run on a pure model; the reason.
    NotApplicable(String),
}

/// Everything the run found.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// Checks passed.
    pub(crate) passed: usize,
    /// Checks failed.
    pub(crate) failed: usize,
    /// Checks not applicable, by reason.
    pub(crate) not_applicable: BTreeMap<String, usize>,
    /// The per-test output.
    pub(crate) lines: Vec<String>,
    /// `gw_model::load` errors on corpus or harness manifests (must be none).
    pub(crate) load_errors: BTreeSet<String>,
    /// `gw_model::load` unknown-field warnings: `Kind path` -> count.
    pub(crate) load_warnings: BTreeMap<String, usize>,
    /// Inconsistencies of the corpus or the harness itself (must be none).
    pub(crate) harness_errors: Vec<String>,
}

impl Report {
    /// Number of not-applicable checks.
    pub(crate) fn not_applicable_count(&self) -> usize {
        self.not_applicable.values().sum()
    }

    /// The report against the baseline; the last line is exactly `P passed, F failed`.
    pub(crate) fn render(&self, baseline: usize) -> String {
        let mut out = String::new();
        for line in &self.lines {
            let _ = writeln!(out, "{line}");
        }
        if !self.load_warnings.is_empty() {
            let _ = writeln!(
                out,
                "load warnings (unknown fields ignored by gw_model::load):"
            );
            for (what, n) in &self.load_warnings {
                let _ = writeln!(out, "  {n:>3} x {what}");
            }
        }
        for e in &self.load_errors {
            let _ = writeln!(out, "LOAD ERROR {e}");
        }
        for e in &self.harness_errors {
            let _ = writeln!(out, "HARNESS ERROR {e}");
        }
        let _ = writeln!(
            out,
            "status checks: {} passed, {} failed, {} not applicable",
            self.passed,
            self.failed,
            self.not_applicable_count()
        );
        for (reason, n) in &self.not_applicable {
            let _ = writeln!(out, "  not applicable {n:>2} x {reason}");
        }
        let _ = writeln!(out, "baseline: {baseline} passing checks");
        if self.passed > baseline {
            let _ = writeln!(
                out,
                "  ({} pass now: conformance_status_baseline.txt can be raised)",
                self.passed
            );
        }
        let _ = write!(out, "{} passed, {} failed", self.passed, self.failed);
        out
    }

    fn record(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Pass => self.passed += 1,
            Outcome::Fail(_) => self.failed += 1,
            Outcome::NotApplicable(reason) => {
                *self.not_applicable.entry(reason.clone()).or_default() += 1;
            }
        }
    }

    /// Loads a manifest file with gw's loader, collecting errors and warnings, and splits it
    /// into documents for the cluster.
    fn load_file(&mut self, path: &Path, source: &str) -> Vec<serde_json::Value> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                self.harness_errors
                    .push(format!("{}: cannot read: {e}", path.display()));
                return Vec::new();
            }
        };
        let loaded = load::parse(source, &text);
        self.load_errors
            .extend(loaded.errors.iter().map(ToString::to_string));
        for w in &loaded.warnings {
            *self
                .load_warnings
                .entry(format!("{} {}", w.kind, w.path))
                .or_default() += 1;
        }
        cluster::parse_manifests(&text).unwrap_or_else(|e| {
            self.harness_errors.push(format!("{source}: {e}"));
            Vec::new()
        })
    }
}

/// Runs every test of the corpus.
pub(crate) fn run(corpus: &Corpus) -> Report {
    let mut report = Report::default();
    let features = match Features::load(corpus) {
        Ok(features) => features,
        Err(e) => {
            report.harness_errors.push(e);
            return report;
        }
    };
    let programmatic = match programmatic_objects() {
        Ok(objects) => objects,
        Err(e) => {
            report.harness_errors.push(e);
            return report;
        }
    };
    let base_docs = report.load_file(&corpus.base_manifests(), "base/manifests.yaml");
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
    for dir in dirs {
        match TestSpec::read(&dir) {
            Ok(spec) => match features.skip_reason(&spec) {
                Ok(None) => run_test(&spec, &dir, &base, &mut report),
                Ok(Some(why)) => skip_test(&spec, &why, &mut report),
                Err(e) => report.harness_errors.push(e),
            },
            Err(e) => report.harness_errors.push(e),
        }
    }
    report
}

/// The states of one test, by mutation list (the empty list is the initial state).
struct States<'a> {
    initial: Cluster,
    sequence: Vec<&'a str>,
    cache: HashMap<Vec<String>, Result<(Cluster, Compiled), MutationError>>,
}

impl<'a> States<'a> {
    fn get(
        &mut self,
        after: &[String],
        report: &mut Report,
    ) -> &Result<(Cluster, Compiled), MutationError> {
        if !self.cache.contains_key(after) {
            let state = self.build(after).map(|cluster| {
                let compiled = cluster.compile();
                report
                    .load_errors
                    .extend(compiled.load_errors.iter().cloned());
                (cluster, compiled)
            });
            self.cache.insert(after.to_vec(), state);
        }
        &self.cache[after]
    }

    /// The initial state with `after` replayed in order; the k-th repetition of a text is the
    /// k-th mutation with that text.
    fn build(&self, after: &[String]) -> Result<Cluster, MutationError> {
        let mut cluster = self.initial.clone();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for text in after {
            let occurrence = seen.entry(text.as_str()).or_default();
            let listed = self.sequence.iter().filter(|t| **t == text).count();
            if *occurrence >= listed {
                return Err(MutationError::Harness(format!(
                    "after_mutations names `{text}` more often than other_checks lists it"
                )));
            }
            mutations::apply(&mut cluster, text, *occurrence).map_err(|e| match e {
                MutationError::NotReproducible(why) => {
                    MutationError::NotReproducible(format!("after `{text}`: {why}"))
                }
                other => other,
            })?;
            *occurrence += 1;
        }
        Ok(cluster)
    }
}

fn run_test(spec: &TestSpec, dir: &Path, base: &Cluster, report: &mut Report) {
    let mut initial = base.clone();
    for file in &spec.manifests {
        let source = format!("tests/{}/{file}", spec.name);
        let docs = report.load_file(&dir.join(file), &source);
        for (index, doc) in docs.into_iter().enumerate() {
            initial.apply(&source, index, doc, TEST_CREATED);
        }
    }
    let mut states = States {
        initial,
        sequence: spec.mutation_sequence(),
        cache: HashMap::new(),
    };

    let total = spec.status_checks.len();
    let mut details = Vec::new();
    for (i, raw) in spec.status_checks.iter().enumerate() {
        let label = format!("[{}/{total}]", i + 1);
        let outcome = match serde_json::from_value::<StatusCheck>(raw.clone()) {
            Ok(check) => {
                let outcome = run_check(&check, &mut states, report);
                details.extend(describe(&spec.name, &label, &check, &outcome));
                outcome
            }
            Err(e) => {
                let why = format!(
                    "{}: status check {label} does not match the schema: {e}",
                    spec.name
                );
                report.harness_errors.push(why.clone());
                details.push(format!("FAIL {} {label}: {why}", spec.name));
                Outcome::Fail(why)
            }
        };
        report.record(&outcome);
    }
    if details.is_empty() {
        report
            .lines
            .push(format!("PASS {}: {total} status checks", spec.name));
    } else {
        report.lines.extend(details);
    }
}

/// A test the Go suite would not run: its checks are not applicable (still schema-checked).
fn skip_test(spec: &TestSpec, why: &str, report: &mut Report) {
    let total = spec.status_checks.len();
    for (i, raw) in spec.status_checks.iter().enumerate() {
        if let Err(e) = serde_json::from_value::<StatusCheck>(raw.clone()) {
            report.harness_errors.push(format!(
                "{}: status check [{}/{total}] does not match the schema: {e}",
                spec.name,
                i + 1
            ));
        }
        report.record(&Outcome::NotApplicable(format!("{}: {why}", spec.name)));
    }
    report.lines.push(format!(
        "N/A  {}: all {total} status checks: {why}",
        spec.name
    ));
}

fn run_check(check: &StatusCheck, states: &mut States<'_>, report: &mut Report) -> Outcome {
    match states.get(&check.after_mutations, report) {
        Ok((cluster, compiled)) => {
            let ctx = Ctx {
                status: &compiled.status,
                cluster,
            };
            match checks::evaluate(check, ctx) {
                Ok(()) => Outcome::Pass,
                Err(diff) => Outcome::Fail(diff),
            }
        }
        Err(MutationError::NotReproducible(why)) => Outcome::NotApplicable(why.clone()),
        Err(MutationError::Harness(why)) => {
            report.harness_errors.push(why.clone());
            Outcome::Fail(format!("harness: {why}"))
        }
    }
}

/// Output lines of a non-passing check (none for a pass).
fn describe(test: &str, label: &str, check: &StatusCheck, outcome: &Outcome) -> Vec<String> {
    let mut head = format!("{label} {} {}", check.check.name(), check.target());
    if !check.after_mutations.is_empty() {
        let _ = write!(head, " (after: {})", check.after_mutations.join(", "));
    }
    match outcome {
        Outcome::Pass => Vec::new(),
        Outcome::NotApplicable(why) => vec![format!("N/A  {test}: {head}: {why}")],
        Outcome::Fail(diff) => std::iter::once(format!("FAIL {test}: {head}"))
            .chain(diff.lines().map(|l| format!("       {l}")))
            .collect(),
    }
}
