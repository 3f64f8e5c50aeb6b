//! The feature set the harness runs gw-model with (the Go suite's `--supported-features`), and
//! what it means for a test: a test runs only if all its `features:` are supported, and does
//! nothing when one of its `preconditions:` (a Go early return on a feature) holds.

use std::collections::BTreeSet;

use regex::Regex;
use serde_json::Value;

use super::corpus::{Corpus, TestSpec};

/// Features of `features.json` that gw does not claim. Everything else is claimed, and reported
/// in `GatewayClass.status.supportedFeatures` (GEP-2162) through `CompileOptions`.
pub(crate) const UNSUPPORTED_FEATURES: &[&str] = &[];

/// The claimed feature names.
#[derive(Debug, Clone)]
pub(crate) struct Features {
    supported: BTreeSet<String>,
    known: BTreeSet<String>,
}

impl Features {
    /// Every feature of the corpus's `features.json` minus [`UNSUPPORTED_FEATURES`].
    pub(crate) fn load(corpus: &Corpus) -> Result<Features, String> {
        let path = corpus.root.join("features.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let json: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
        let known: BTreeSet<String> = json
            .as_object()
            .ok_or_else(|| format!("{}: not an object", path.display()))?
            .keys()
            .cloned()
            .collect();
        Ok(Features::new(known))
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
    pub(crate) fn supported(&self) -> Vec<String> {
        self.supported.iter().cloned().collect()
    }

    /// Why the Go suite would not run this test's checks with these features (`None`: it would).
    pub(crate) fn skip_reason(&self, spec: &TestSpec) -> Result<Option<String>, String> {
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

/// `(negated, feature)` of "... when: if [!]suite.SupportedFeatures.Has(features.SupportX) {".
fn parse_precondition(text: &str) -> Option<(bool, String)> {
    let re = Regex::new(r"(!?)suite\.SupportedFeatures\.Has\(features\.Support(\w+)\)")
        .expect("precondition pattern compiles");
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
