//! The live conformance replay: every corpus test whose features gw claims
//! (`gw_conformance::features::LIVE_FEATURES`) runs against the `gw-gateway` binary with
//! in-process echo backends on loopback addresses (see `gw_conformance::live`).
//!
//! - The corpus folder is `GW_CONFORMANCE_DIR`, or `shared/conformance` next to the workspace;
//!   without one the test prints why and passes.
//! - `GW_CONFORMANCE_RUN=TestA,TestB` runs only those tests (the baseline is then not
//!   enforced); `GW_CONFORMANCE_JOBS=N` runs N tests at a time (default 3).
//! - `GW_GATEWAY_BIN=path` names the binary; otherwise `target/<profile>/gw-gateway` is used,
//!   built with `cargo build -p gw-gateway` first when it is missing or older than its sources.
//! - `GW_CONFORMANCE_REPORT=path` writes the suite's `ConformanceReport` YAML (GEP-1709) for
//!   the run to `path` (unfiltered runs only; see `gw_conformance::report`).
//! - It fails when fewer tests pass than `replay_baseline.txt` says, or when the harness finds
//!   the corpus (or itself) inconsistent.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-conf cargo test -p gw-conformance --test replay -- --nocapture
//! GW_CONFORMANCE_RUN=HTTPRouteSimpleSameNamespace cargo test -p gw-conformance --test replay -- --nocapture
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gw_conformance::claims;
use gw_conformance::corpus::{Corpus, TestSpec};
use gw_conformance::features;
use gw_conformance::live::{self, Options};

const BASELINE_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/replay_baseline.txt");

#[test]
fn conformance_replay_against_gw_gateway() {
    let corpus = match Corpus::locate() {
        Ok(corpus) => corpus,
        Err(why) => {
            println!("SKIPPED live conformance replay: {why}");
            return;
        }
    };
    let options = Options::from_env();
    let filtered = options.filter.is_some();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let report = runtime.block_on(live::run(&corpus, options));
    println!("{}", report.render());
    if let Some(path) = std::env::var_os("GW_CONFORMANCE_REPORT") {
        let claimed = gw_conformance::features::Features::live(&corpus)
            .expect("live features")
            .supported();
        let now = jiff::Timestamp::now();
        let date = jiff::Timestamp::from_second(now.as_second())
            .unwrap_or(now)
            .to_string();
        let conformance = gw_conformance::report::conformance_report(
            &corpus,
            &report,
            &claimed,
            &gw_conformance::report::Implementation::gw(),
            &date,
        )
        .expect("conformance report");
        let yaml = gw_conformance::report::to_yaml(&conformance).expect("YAML");
        std::fs::write(&path, yaml).expect("write the conformance report");
        println!("conformance report written to {}", path.to_string_lossy());
    }

    assert!(
        report.harness_errors.is_empty(),
        "the harness found problems:\n{}",
        report.harness_errors.join("\n")
    );
    if filtered {
        println!("(filtered run: the baseline is not enforced)");
        return;
    }
    check_readme_claims(&corpus, &report);
    let baseline = baseline();
    println!("baseline: {baseline} passing tests ({BASELINE_FILE})");
    assert!(
        report.passed() >= baseline,
        "{} conformance tests passed, fewer than the baseline {baseline} ({BASELINE_FILE})",
        report.passed()
    );
}

const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");

/// The README's profile table is generated from a replay: print this run's, check that the
/// README claims no extended feature this run did not prove, and rewrite it with
/// `GW_CONFORMANCE_WRITE_README=1`.
fn check_readme_claims(corpus: &Corpus, report: &live::Report) {
    let known = features::known_features(corpus).expect("features.json");
    let specs: Vec<TestSpec> = corpus
        .test_dirs()
        .expect("test folders")
        .iter()
        .filter_map(|d| TestSpec::read(d).ok())
        .collect();
    let results = claims::results(report, &specs, &known);
    let table = claims::render(&results);
    println!("profiles proven by this run:\n{table}");
    let readme = std::fs::read_to_string(README).expect("README.md");
    if std::env::var_os("GW_CONFORMANCE_WRITE_README").is_some() {
        let updated = claims::replace_block(&readme, &table)
            .expect("README.md has no generated conformance block");
        std::fs::write(README, updated).expect("write README.md");
        println!("README.md profile table rewritten");
        return;
    }
    let block = claims::block(&readme).expect("README.md has no generated conformance block");
    let unproven: Vec<String> = claims::claimed(block)
        .into_iter()
        .filter(|(profile, feature)| {
            !results
                .iter()
                .any(|r| r.profile.name == profile && r.proven().contains(&feature.as_str()))
        })
        .map(|(p, f)| format!("{p}: {f}"))
        .collect();
    assert!(
        unproven.is_empty(),
        "README.md claims features this replay did not prove (regenerate the table with \
         GW_CONFORMANCE_WRITE_README=1):\n{}",
        unproven.join("\n")
    );
}

/// The minimum number of passing tests (a single integer in the baseline file).
fn baseline() -> usize {
    let text = std::fs::read_to_string(BASELINE_FILE)
        .unwrap_or_else(|e| panic!("cannot read {BASELINE_FILE}: {e}"));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{BASELINE_FILE} must hold one integer: {e}"))
}
