//! The Gateway API conformance suite's report format (GEP-1709 `ConformanceReport`,
//! `apiVersion: gateway.networking.k8s.io/v1`), built from a live replay.
//!
//! The profiles are those of the v1.6.1 suite (`conformance/utils/suite/conformance.go`):
//!
//! | profile | core features | extended features |
//! |---|---|---|
//! | `GATEWAY-HTTP` | Gateway, ReferenceGrant, HTTPRoute | Gateway, HTTPRoute and BackendTLSPolicy feature sets |
//! | `GATEWAY-TLS` | Gateway, ReferenceGrant, TLSRoute | Gateway and TLSRoute extended feature sets |
//! | `GATEWAY-GRPC` | Gateway, ReferenceGrant, GRPCRoute | Gateway and GRPCRoute extended feature sets |
//!
//! As in the suite, a test belongs to a profile when all its features are the profile's core
//! or extended features, and counts as core when they are all core features. A test whose
//! features gw does not claim is skipped; a test that returns early because a claimed feature
//! makes it moot (`preconditions:`) passes, as in the suite; provisional tests are left out of the statistics
//! and the passing ones are listed in `succeededProvisionalTests`. TCPRoute and UDPRoute
//! belong to no profile of v1.6.1, so the replay's results for them appear only in its own
//! output.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::corpus::{Corpus, TestSpec};
use crate::live::{Report, Verdict};

/// Who is reporting (the report's `implementation` stanza).
#[derive(Debug, Clone)]
pub struct Implementation {
    /// e.g. `gw-rs`.
    pub organization: String,
    /// e.g. `gw`.
    pub project: String,
    /// Project URL.
    pub url: String,
    /// Version of the implementation.
    pub version: String,
    /// Contacts (GitHub handles or URLs).
    pub contact: Vec<String>,
}

impl Implementation {
    /// gw itself, at this crate's version.
    pub fn gw() -> Implementation {
        Implementation {
            organization: "gw-rs".into(),
            project: "gw".into(),
            url: "https://github.com/gw-rs/gw".into(),
            version: format!("v{}", env!("CARGO_PKG_VERSION")),
            contact: vec!["https://github.com/gw-rs/gw/issues".into()],
        }
    }
}

/// A conformance profile: its name and its core and extended feature-set names (the `sets`
/// of the corpus's `features.json`).
struct Profile {
    name: &'static str,
    core: &'static [&'static str],
    extended_sets: &'static [&'static str],
}

const PROFILES: [Profile; 3] = [
    Profile {
        name: "GATEWAY-HTTP",
        core: &["Gateway", "ReferenceGrant", "HTTPRoute"],
        extended_sets: &[
            "GatewayExtendedFeatures",
            "HTTPRouteExtendedFeatures",
            "BackendTLSPolicyCoreFeatures",
            "BackendTLSPolicyExtendedFeatures",
        ],
    },
    Profile {
        name: "GATEWAY-TLS",
        core: &["Gateway", "ReferenceGrant", "TLSRoute"],
        extended_sets: &["GatewayExtendedFeatures", "TLSRouteExtendedFeatures"],
    },
    Profile {
        name: "GATEWAY-GRPC",
        core: &["Gateway", "ReferenceGrant", "GRPCRoute"],
        extended_sets: &["GatewayExtendedFeatures", "GRPCRouteExtendedFeatures"],
    },
];

#[derive(Default)]
struct Tally {
    passed: Vec<String>,
    failed: Vec<String>,
    skipped: Vec<String>,
}

impl Tally {
    fn result(&self) -> &'static str {
        if !self.failed.is_empty() {
            "failure"
        } else if !self.skipped.is_empty() {
            "partial"
        } else {
            "success"
        }
    }

    fn to_json(&self, features: Option<(&BTreeSet<String>, &BTreeSet<String>)>) -> Value {
        let mut v = json!({
            "result": self.result(),
            "statistics": {
                "Passed": self.passed.len(),
                "Failed": self.failed.len(),
                "Skipped": self.skipped.len(),
            },
        });
        if !self.failed.is_empty() {
            v["failedTests"] = json!(self.failed);
        }
        if !self.skipped.is_empty() {
            v["skippedTests"] = json!(self.skipped);
        }
        if let Some((supported, unsupported)) = features {
            v["supportedFeatures"] = json!(supported);
            if !unsupported.is_empty() {
                v["unsupportedFeatures"] = json!(unsupported);
            }
        }
        v
    }
}

/// Builds the `ConformanceReport` of a live replay run with `claimed` features.
///
/// `Err` when the corpus cannot be read, or when the replay was filtered (a report must cover
/// every test).
pub fn conformance_report(
    corpus: &Corpus,
    replay: &Report,
    claimed: &[String],
    implementation: &Implementation,
    date: &str,
) -> Result<Value, String> {
    if replay.filtered {
        return Err("a conformance report needs an unfiltered replay".into());
    }
    let features: BTreeMap<String, Value> = serde_json::from_str(
        &std::fs::read_to_string(corpus.root.join("features.json"))
            .map_err(|e| format!("features.json: {e}"))?,
    )
    .map_err(|e| format!("features.json: {e}"))?;
    let in_sets = |sets: &[&str]| -> BTreeSet<String> {
        features
            .iter()
            .filter(|(_, v)| {
                v["sets"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|x| sets.iter().any(|w| x == w)))
            })
            .map(|(k, _)| k.clone())
            .collect()
    };
    let claimed: BTreeSet<String> = claimed.iter().cloned().collect();
    let mut specs = Vec::new();
    for dir in corpus.test_dirs().map_err(|e| e.to_string())? {
        specs.push(TestSpec::read(&dir)?);
    }
    let verdicts: BTreeMap<&str, &Verdict> = replay
        .tests
        .iter()
        .map(|t| (t.name.as_str(), &t.verdict))
        .collect();
    let mut profiles = Vec::new();
    let mut provisional_passed = BTreeSet::new();
    for profile in &PROFILES {
        let core: BTreeSet<String> = profile.core.iter().map(|s| (*s).to_owned()).collect();
        let extended: BTreeSet<String> = in_sets(profile.extended_sets)
            .difference(&core)
            .cloned()
            .collect();
        let (mut core_tally, mut ext_tally) = (Tally::default(), Tally::default());
        for spec in &specs {
            let in_profile = spec
                .features
                .iter()
                .all(|f| core.contains(f) || extended.contains(f));
            if !in_profile || spec.features.is_empty() {
                continue;
            }
            let verdict = verdicts.get(spec.name.as_str());
            if spec.provisional {
                if matches!(verdict, Some(Verdict::Pass)) {
                    provisional_passed.insert(spec.name.clone());
                }
                continue;
            }
            let tally = if spec.features.iter().all(|f| core.contains(f)) {
                &mut core_tally
            } else {
                &mut ext_tally
            };
            let runs = spec.features.iter().all(|f| claimed.contains(f));
            match verdict {
                Some(Verdict::Pass) => tally.passed.push(spec.name.clone()),
                // A test whose features are all claimed but that the replay skipped is one
                // whose Go function returns early on a claimed feature (`preconditions:`):
                // the suite records it as passed.
                Some(Verdict::Skip(_)) if runs => tally.passed.push(spec.name.clone()),
                Some(Verdict::Fail) => tally.failed.push(spec.name.clone()),
                Some(Verdict::Skip(_)) | None => tally.skipped.push(spec.name.clone()),
            }
        }
        let supported: BTreeSet<String> = extended.intersection(&claimed).cloned().collect();
        let unsupported: BTreeSet<String> = extended.difference(&claimed).cloned().collect();
        let summary = format!(
            "Core tests {}, {} of {} passed. Extended tests {}, {} of {} passed.",
            describe(core_tally.result()),
            core_tally.passed.len(),
            core_tally.passed.len() + core_tally.failed.len() + core_tally.skipped.len(),
            describe(ext_tally.result()),
            ext_tally.passed.len(),
            ext_tally.passed.len() + ext_tally.failed.len() + ext_tally.skipped.len(),
        );
        profiles.push(json!({
            "name": profile.name,
            "core": core_tally.to_json(None),
            "extended": ext_tally.to_json(Some((&supported, &unsupported))),
            "summary": summary,
        }));
    }
    let mut report = json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "ConformanceReport",
        "date": date,
        "gatewayAPIVersion": "v1.6.1",
        "gatewayAPIChannel": "experimental",
        "implementation": {
            "organization": implementation.organization,
            "project": implementation.project,
            "url": implementation.url,
            "version": implementation.version,
            "contact": implementation.contact,
        },
        "mode": "default",
        "profiles": profiles,
    });
    if !provisional_passed.is_empty() {
        report["succeededProvisionalTests"] = json!(provisional_passed);
    }
    Ok(report)
}

fn describe(result: &str) -> &'static str {
    match result {
        "success" => "succeeded",
        "partial" => "partially succeeded",
        _ => "failed",
    }
}

/// The report as YAML, as the suite's `--report-output` writes it.
pub fn to_yaml(report: &Value) -> Result<String, String> {
    serde_saphyr::to_string(report).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::live::{Counts, TestReport};
    use std::time::Duration;

    fn test(name: &str, verdict: Verdict) -> TestReport {
        TestReport {
            name: name.into(),
            verdict,
            details: Vec::new(),
            cases: Counts::default(),
            checks: Counts::default(),
            other: Counts::default(),
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn tests_are_classified_into_profiles_like_the_suite_does() {
        let Ok(corpus) = Corpus::locate() else {
            return;
        };
        let replay = Report {
            tests: vec![
                // Core of GATEWAY-HTTP (Gateway, HTTPRoute).
                test("HTTPRouteExactPathMatching", Verdict::Pass),
                // Extended of GATEWAY-HTTP (HTTPRouteMethodMatching).
                test("HTTPRouteMethodMatching", Verdict::Fail),
                // Core of GATEWAY-GRPC.
                test(
                    "GRPCExactMethodMatching",
                    Verdict::Skip("not claimed".into()),
                ),
            ],
            ..Report::default()
        };
        let claimed = vec![
            "Gateway".to_owned(),
            "HTTPRoute".to_owned(),
            "HTTPRouteMethodMatching".to_owned(),
        ];
        let report = conformance_report(
            &corpus,
            &replay,
            &claimed,
            &Implementation::gw(),
            "2026-11-27T00:00:00Z",
        )
        .unwrap();
        assert_eq!(report["kind"], "ConformanceReport");
        assert_eq!(report["apiVersion"], "gateway.networking.k8s.io/v1");
        let http = &report["profiles"][0];
        assert_eq!(http["name"], "GATEWAY-HTTP");
        assert_eq!(http["core"]["statistics"]["Passed"], 1);
        assert!(
            http["core"]["skippedTests"]
                .as_array()
                .is_some_and(|s| !s.is_empty()),
            "core tests not run are skipped"
        );
        assert_eq!(http["extended"]["result"], "failure");
        assert_eq!(
            http["extended"]["failedTests"],
            json!(["HTTPRouteMethodMatching"])
        );
        assert_eq!(
            http["extended"]["supportedFeatures"],
            json!(["HTTPRouteMethodMatching"])
        );
        assert!(
            http["extended"]["unsupportedFeatures"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == "HTTPRouteCORS")
        );
        let grpc = &report["profiles"][2];
        assert_eq!(grpc["name"], "GATEWAY-GRPC");
        assert!(
            grpc["core"]["skippedTests"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t == "GRPCExactMethodMatching")
        );
        assert!(
            to_yaml(&report)
                .unwrap()
                .contains("kind: ConformanceReport")
        );
        let filtered = Report {
            filtered: true,
            ..Report::default()
        };
        assert!(
            conformance_report(&corpus, &filtered, &claimed, &Implementation::gw(), "d").is_err()
        );
    }
}
