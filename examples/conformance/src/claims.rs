//! What the live replay proves, per Gateway API conformance profile: the table in the README
//! is generated from a replay run, never written by hand.
//!
//! A profile (conformance/utils/suite/profiles.go) has core features (Gateway, ReferenceGrant
//! and its route kind) and extended ones. A replayed test belongs to a profile when its
//! features are all core or extended features of that profile and it exercises the profile's
//! route kind, or no route kind at all (Gateway tests count for every profile). A feature is
//! *proven* in a profile when at least one of the profile's tests needs it and every one of
//! them passed.

use std::collections::{BTreeMap, BTreeSet};

use crate::corpus::TestSpec;
use crate::live::{Report, Verdict};

/// A conformance profile.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    /// The profile's name, e.g. `GATEWAY-HTTP`.
    pub name: &'static str,
    /// Its route kind's core feature.
    pub route: &'static str,
    /// Core features.
    pub core: &'static [&'static str],
    /// Extended features.
    pub extended: &'static [&'static str],
}

const GATEWAY_EXTENDED: &[&str] = &[
    "GatewayAddressEmpty",
    "GatewayBackendClientCertificate",
    "GatewayFrontendClientCertificateValidation",
    "GatewayFrontendClientCertificateValidationInsecureFallback",
    "GatewayHTTPListenerIsolation",
    "GatewayHTTPSListenerDetectMisdirectedRequests",
    "GatewayInfrastructurePropagation",
    "GatewayPort8080",
    "GatewayStaticAddresses",
    "ListenerSet",
];

/// The Gateway profiles of the suite (Mesh profiles are out of scope).
pub const PROFILES: &[Profile] = &[
    Profile {
        name: "GATEWAY-HTTP",
        route: "HTTPRoute",
        core: &["Gateway", "ReferenceGrant", "HTTPRoute"],
        extended: &[],
    },
    Profile {
        name: "GATEWAY-GRPC",
        route: "GRPCRoute",
        core: &["Gateway", "ReferenceGrant", "GRPCRoute"],
        extended: &[],
    },
    Profile {
        name: "GATEWAY-TLS",
        route: "TLSRoute",
        core: &["Gateway", "ReferenceGrant", "TLSRoute"],
        extended: &["TLSRouteModeTerminate", "TLSRouteModeMixed"],
    },
    Profile {
        name: "GATEWAY-TCP",
        route: "TCPRoute",
        core: &["Gateway", "ReferenceGrant", "TCPRoute"],
        extended: &[],
    },
    Profile {
        name: "GATEWAY-UDP",
        route: "UDPRoute",
        core: &["Gateway", "ReferenceGrant", "UDPRoute"],
        extended: &[],
    },
];

const ROUTE_FEATURES: &[&str] = &["HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute"];

impl Profile {
    /// Every extended feature: Gateway's, the profile's own, and for GATEWAY-HTTP every
    /// `HTTPRoute*` feature and BackendTLSPolicy.
    pub fn extended_features(&self, known: &BTreeSet<String>) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = GATEWAY_EXTENDED
            .iter()
            .chain(self.extended)
            .map(|s| (*s).to_owned())
            .collect();
        if self.route == "HTTPRoute" {
            out.extend(
                known
                    .iter()
                    .filter(|f| {
                        (f.starts_with("HTTPRoute") && *f != "HTTPRoute")
                            || f.starts_with("BackendTLSPolicy")
                    })
                    .cloned(),
            );
        }
        out
    }

    fn includes(&self, spec: &TestSpec, known: &BTreeSet<String>) -> bool {
        let extended = self.extended_features(known);
        let routes: Vec<&String> = spec
            .features
            .iter()
            .filter(|f| ROUTE_FEATURES.contains(&f.as_str()))
            .collect();
        (routes.is_empty() || routes.iter().all(|r| *r == self.route))
            && spec
                .features
                .iter()
                .all(|f| self.core.contains(&f.as_str()) || extended.contains(f))
    }
}

/// Passed and failed tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Tests that passed.
    pub passed: usize,
    /// Tests that failed.
    pub failed: usize,
}

/// One profile's result.
#[derive(Debug, Clone)]
pub struct ProfileResult {
    /// The profile.
    pub profile: Profile,
    /// Tests that need only core features.
    pub core: Tally,
    /// Extended features: the tests that need each.
    pub extended: BTreeMap<String, Tally>,
    /// Extended features gw claims that no test of the corpus exercises.
    pub untested: Vec<String>,
}

impl ProfileResult {
    /// Extended features proven (some test needs it, all of those passed).
    pub fn proven(&self) -> Vec<&str> {
        self.extended
            .iter()
            .filter(|(_, t)| t.failed == 0 && t.passed > 0)
            .map(|(f, _)| f.as_str())
            .collect()
    }

    /// Extended features with a failing test.
    pub fn failing(&self) -> Vec<&str> {
        self.extended
            .iter()
            .filter(|(_, t)| t.failed > 0)
            .map(|(f, _)| f.as_str())
            .collect()
    }
}

/// Per-profile results of a replay. `specs` are the corpus tests; tests the report skipped (or
/// did not run) count for nothing.
pub fn results(
    report: &Report,
    specs: &[TestSpec],
    known: &BTreeSet<String>,
) -> Vec<ProfileResult> {
    let verdicts: BTreeMap<&str, bool> = report
        .tests
        .iter()
        .filter_map(|t| match t.verdict {
            Verdict::Pass => Some((t.name.as_str(), true)),
            Verdict::Fail => Some((t.name.as_str(), false)),
            Verdict::Skip(_) => None,
        })
        .collect();
    PROFILES
        .iter()
        .map(|p| {
            let mut r = ProfileResult {
                profile: *p,
                core: Tally::default(),
                extended: BTreeMap::new(),
                untested: Vec::new(),
            };
            let extended = p.extended_features(known);
            r.untested = extended
                .iter()
                .filter(|f| crate::features::LIVE_FEATURES.contains(&f.as_str()))
                .filter(|f| !specs.iter().any(|s| s.features.contains(f)))
                .cloned()
                .collect();
            for spec in specs.iter().filter(|s| p.includes(s, known)) {
                let Some(&passed) = verdicts.get(spec.name.as_str()) else {
                    continue;
                };
                let bump = |t: &mut Tally| {
                    if passed {
                        t.passed += 1;
                    } else {
                        t.failed += 1;
                    }
                };
                let ext: Vec<&String> = spec
                    .features
                    .iter()
                    .filter(|f| extended.contains(*f))
                    .collect();
                if ext.is_empty() {
                    bump(&mut r.core);
                }
                for f in ext {
                    bump(r.extended.entry(f.clone()).or_default());
                }
            }
            r
        })
        .collect()
}

/// The README table (Markdown).
pub fn render(results: &[ProfileResult]) -> String {
    let mut out = String::from(
        "| profile | core tests | extended features proven | extended features failing | \
         claimed, no corpus test |\n|---|---|---|---|---|\n",
    );
    for r in results {
        let list = |v: Vec<&str>| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                v.join(", ")
            }
        };
        out.push_str(&format!(
            "| {} | {} of {} pass | {} | {} | {} |\n",
            r.profile.name,
            r.core.passed,
            r.core.passed + r.core.failed,
            list(r.proven()),
            list(r.failing()),
            list(r.untested.iter().map(String::as_str).collect()),
        ));
    }
    out
}

/// Marks the generated block in the README.
pub const BEGIN: &str = "<!-- conformance-profiles:begin (generated by the replay) -->";
/// Ends the generated block.
pub const END: &str = "<!-- conformance-profiles:end -->";

/// The generated block of `readme`, if any.
pub fn block(readme: &str) -> Option<&str> {
    let start = readme.find(BEGIN)? + BEGIN.len();
    let end = readme[start..].find(END)? + start;
    Some(readme[start..end].trim_matches('\n'))
}

/// `readme` with its generated block replaced by `table`.
pub fn replace_block(readme: &str, table: &str) -> Option<String> {
    let start = readme.find(BEGIN)? + BEGIN.len();
    let end = readme[start..].find(END)? + start;
    Some(format!(
        "{}\n{}\n{}",
        &readme[..start],
        table.trim_end(),
        &readme[end..]
    ))
}

/// The extended features a README table claims as proven, by profile.
pub fn claimed(table: &str) -> Vec<(String, String)> {
    table
        .lines()
        .filter(|l| l.starts_with("| GATEWAY-"))
        .flat_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let profile = cells.get(1).copied().unwrap_or_default().to_owned();
            let proven = cells.get(3).copied().unwrap_or_default();
            proven
                .split(", ")
                .filter(|f| !f.is_empty() && *f != "-")
                .map(move |f| (profile.clone(), f.to_owned()))
                .collect::<Vec<_>>()
        })
        .collect()
}
