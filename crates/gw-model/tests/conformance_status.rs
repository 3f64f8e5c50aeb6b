//! Replays every `status_checks` entry of the Gateway API v1.6.1 conformance corpus against
//! gw-model (no network): base + test manifests are loaded with `gw_model::load`, compiled with
//! `gw_model::compile`, and the status `List` is matched by the corpus README's rules.
//!
//! The corpus folder is `GW_CONFORMANCE_DIR`, or `shared/conformance` next to the workspace; the
//! test is skipped when there is none. It fails when gw's loader rejects a corpus manifest, when
//! the harness finds the corpus inconsistent, or when fewer checks pass than
//! `conformance_status_baseline.txt` records.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-harness cargo test -p gw-model --test conformance_status -- --nocapture
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod conformance;

use conformance::runner;
use gw_conformance::corpus::Corpus;

const BASELINE_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/conformance_status_baseline.txt"
);

#[test]
fn conformance_corpus_status_checks() {
    let corpus = match Corpus::locate() {
        Ok(corpus) => corpus,
        Err(why) => {
            println!("SKIPPED conformance status checks: {why}");
            return;
        }
    };
    let baseline = baseline();
    let report = runner::run(&corpus);
    println!("{}", report.render(baseline));

    assert!(
        report.harness_errors.is_empty(),
        "the harness found the corpus inconsistent:\n{}",
        report.harness_errors.join("\n")
    );
    let load_errors: Vec<&str> = report.load_errors.iter().map(String::as_str).collect();
    assert!(
        load_errors.is_empty(),
        "gw_model::load rejected corpus manifests:\n{}",
        load_errors.join("\n")
    );
    assert!(
        report.passed >= baseline,
        "{} status checks passed, fewer than the baseline {baseline} ({BASELINE_FILE})",
        report.passed
    );
}

/// The minimum number of passing checks (a single integer in the baseline file).
fn baseline() -> usize {
    let text = std::fs::read_to_string(BASELINE_FILE)
        .unwrap_or_else(|e| panic!("cannot read {BASELINE_FILE}: {e}"));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{BASELINE_FILE} must hold one integer: {e}"))
}
