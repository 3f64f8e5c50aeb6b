//! The feature sets the harnesses claim (the Go suite's `--supported-features`), in one place,
//! and what they mean for a test: a test runs only if all its `features:` are supported, and
//! does nothing when one of its `preconditions:` (a Go early return on a feature) holds.
//!
//! - The gw-model status harness claims every feature but [`UNSUPPORTED_FEATURES`]: status
//!   logic covers all of them.
//! - The live replay against `gw-gateway` claims [`LIVE_FEATURES`]: what the binary serves
//!   today (HTTP, HTTPS, TLS, TCP and UDP listeners).

use std::collections::BTreeSet;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

use crate::corpus::{Corpus, TestSpec};

/// Features of `features.json` that gw does not claim. Everything else is claimed, and reported
/// in `GatewayClass.status.supportedFeatures` (GEP-2162) through `CompileOptions`.
pub const UNSUPPORTED_FEATURES: &[&str] = &[];

/// Features the live replay claims for `gw-gateway`: Gateway (with every extended feature but
/// GatewayInfrastructurePropagation, which inspects generated Kubernetes resources), HTTPRoute
/// (all extended features), GRPCRoute, ReferenceGrant, BackendTLSPolicy (with SAN
/// validation), TLSRoute (passthrough, terminate, mixed), TCPRoute and UDPRoute; no Mesh
/// feature. Every name must be in `features.json` ([`Features::live`] checks).
pub const LIVE_FEATURES: &[&str] = &[
    "BackendTLSPolicy",
    "BackendTLSPolicySANValidation",
    "Gateway",
    "GatewayAddressEmpty",
    "GatewayBackendClientCertificate",
    "GatewayFrontendClientCertificateValidation",
    "GatewayFrontendClientCertificateValidationInsecureFallback",
    "GatewayHTTPListenerIsolation",
    "GatewayHTTPSListenerDetectMisdirectedRequests",
    "GatewayPort8080",
    "GatewayStaticAddresses",
    "ListenerSet",
    "ReferenceGrant",
    "GRPCRoute",
    "GRPCRouteNamedRouteRule",
    "HTTPRoute",
    "HTTPRoute303RedirectStatusCode",
    "HTTPRoute307RedirectStatusCode",
    "HTTPRoute308RedirectStatusCode",
    "HTTPRouteBackendProtocolH2C",
    "HTTPRouteBackendProtocolWebSocket",
    "HTTPRouteBackendRequestHeaderModification",
    "HTTPRouteBackendTimeout",
    "HTTPRouteCORS",
    "HTTPRouteDestinationPortMatching",
    "HTTPRouteHostRewrite",
    "HTTPRouteMethodMatching",
    "HTTPRouteNamedRouteRule",
    "HTTPRouteParentRefPort",
    "HTTPRoutePathRedirect",
    "HTTPRoutePathRewrite",
    "HTTPRoutePortRedirect",
    "HTTPRouteQueryParamMatching",
    "HTTPRouteRequestMirror",
    "HTTPRouteRequestMultipleMirrors",
    "HTTPRouteRequestPercentageMirror",
    "HTTPRouteRequestTimeout",
    "HTTPRouteResponseHeaderModification",
    "HTTPRouteRetry",
    "HTTPRouteRetryBackendTimeout",
    "HTTPRouteRetryConnectionError",
    "HTTPRouteSchemeRedirect",
    "TCPRoute",
    "TLSRoute",
    "TLSRouteModeMixed",
    "TLSRouteModeTerminate",
    "UDPRoute",
];

/// The claimed feature names.
#[derive(Debug, Clone)]
pub struct Features {
    supported: BTreeSet<String>,
    known: BTreeSet<String>,
}

impl Features {
    /// The gw-model status harness's claims: every feature of the corpus's `features.json`
    /// minus [`UNSUPPORTED_FEATURES`].
    pub fn load(corpus: &Corpus) -> Result<Features, String> {
        Ok(Features::new(known_features(corpus)?))
    }

    /// The live replay's claims: [`LIVE_FEATURES`]. `Err` when one of them is not in the
    /// corpus's `features.json` (a typo, or a renamed feature).
    pub fn live(corpus: &Corpus) -> Result<Features, String> {
        let known = known_features(corpus)?;
        if let Some(unknown) = LIVE_FEATURES.iter().find(|f| !known.contains(**f)) {
            return Err(format!(
                "LIVE_FEATURES names {unknown}, which features.json does not list"
            ));
        }
        let supported = LIVE_FEATURES.iter().map(|f| (*f).to_owned()).collect();
        Ok(Features { supported, known })
    }

    fn new(known: BTreeSet<String>) -> Features {
        let supported = known
            .iter()
            .filter(|f| !UNSUPPORTED_FEATURES.contains(&f.as_str()))
            .cloned()
            .collect();
        Features { supported, known }
    }

    /// The claimed features, sorted.
    pub fn supported(&self) -> Vec<String> {
        self.supported.iter().cloned().collect()
    }

    /// Why the Go suite would not run this test's checks with these features (`None`: it would).
    pub fn skip_reason(&self, spec: &TestSpec) -> Result<Option<String>, String> {
        if let Some(missing) = spec.features.iter().find(|f| !self.supported.contains(*f)) {
            return Ok(Some(format!("test needs unsupported feature {missing}")));
        }
        for precondition in &spec.preconditions {
            let (negated, feature) = parse_precondition(precondition).ok_or_else(|| {
                format!("{}: cannot read precondition {precondition:?}", spec.name)
            })?;
            if !self.known.contains(&feature) {
                return Err(format!(
                    "{}: precondition names unknown feature {feature}",
                    spec.name
                ));
            }
            if self.supported.contains(&feature) != negated {
                let claim = if negated {
                    "not supported"
                } else {
                    "supported"
                };
                return Ok(Some(format!(
                    "the Go test returns early when {feature} is {claim}, and it is"
                )));
            }
        }
        Ok(None)
    }
}

/// Every feature name of the corpus's `features.json`.
pub fn known_features(corpus: &Corpus) -> Result<BTreeSet<String>, String> {
    let path = corpus.root.join("features.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let json: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
    Ok(json
        .as_object()
        .ok_or_else(|| format!("{}: not an object", path.display()))?
        .keys()
        .cloned()
        .collect())
}

/// `(negated, feature)` of "... when: if [!]suite.SupportedFeatures.Has(features.SupportX) {".
fn parse_precondition(text: &str) -> Option<(bool, String)> {
    static PATTERN: OnceLock<Option<Regex>> = OnceLock::new();
    let re = PATTERN
        .get_or_init(|| {
            Regex::new(r"(!?)suite\.SupportedFeatures\.Has\(features\.Support(\w+)\)").ok()
        })
        .as_ref()?;
    let caps = re.captures(text)?;
    Some((!caps[1].is_empty(), caps[2].to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(preconditions: &[&str]) -> TestSpec {
        serde_json::from_value(serde_json::json!({
            "name": "T",
            "features": ["Gateway"],
            "manifests": [],
            "preconditions": preconditions,
        }))
        .unwrap()
    }

    fn features() -> Features {
        Features::new(["Gateway", "TLSRoute"].map(str::to_owned).into())
    }

    #[test]
    fn precondition_on_a_supported_feature_skips_the_test() {
        let s = spec(&[
            "returns early when: if suite.SupportedFeatures.Has(features.SupportTLSRoute) {",
        ]);
        assert!(features().skip_reason(&s).unwrap().is_some());
    }

    #[test]
    fn negated_precondition_on_a_supported_feature_runs_the_test() {
        let s = spec(&[
            "returns early when: if !suite.SupportedFeatures.Has(features.SupportTLSRoute) {",
        ]);
        assert_eq!(features().skip_reason(&s).unwrap(), None);
    }

    #[test]
    fn unknown_feature_in_a_precondition_is_an_error() {
        let s = spec(&["if suite.SupportedFeatures.Has(features.SupportNoSuchThing) {"]);
        assert!(features().skip_reason(&s).is_err());
    }
}
