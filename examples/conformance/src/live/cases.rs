//! The `cases:` of `test.yaml` (corpus README, "test.yaml schema"), as typed data.
//!
//! Unknown keys are rejected (`deny_unknown_fields`): a key the live harness does not know could
//! carry an expectation it would not check, and a case must never pass silently.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// One entry of `cases:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Go subtest name (absent when the Go code runs the request outside any subtest).
    #[serde(default)]
    pub name: Option<String>,
    /// The enclosing Go subtest, when it differs from `name`.
    #[serde(default)]
    pub subtest: Option<String>,
    /// Which Gateway (or ListenerSet) address the request goes to.
    pub gateway: TargetRef,
    /// What is sent.
    pub request: Request,
    /// What must come back.
    #[serde(default)]
    pub expect: Expect,
    /// A Go loop: after the preceding request converged, this many single requests.
    #[serde(default)]
    pub repeat: Option<u32>,
    /// Mutations (texts of `other_checks`) performed before this case, in order.
    #[serde(default)]
    pub after_mutations: Vec<String>,
    /// A Go-side condition on the supported features (no v1.6.1 case uses it).
    #[serde(default)]
    pub only_if: Option<String>,
    /// The weighted-distribution sampler.
    #[serde(default)]
    pub distribution: Option<Distribution>,
    /// The percentage-mirror sampler.
    #[serde(default)]
    pub mirror_distribution: Option<MirrorDistribution>,
    /// Prose the schema cannot express.
    #[serde(default)]
    pub note: Option<String>,
}

impl Case {
    /// A label for reports: the name, or `#index` when there is none.
    pub fn label(&self, index: usize) -> String {
        match &self.name {
            Some(name) => format!("#{index} {name}"),
            None => format!("#{index}"),
        }
    }
}

/// A Gateway or ListenerSet reference.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetRef {
    /// Name.
    pub name: String,
    /// Namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Section name (informational: the port is already resolved in `request.port`).
    #[serde(default, rename = "sectionName")]
    pub section_name: Option<String>,
    /// Section names (on the test's `gateways:` list).
    #[serde(default, rename = "sectionNames")]
    pub section_names: Vec<String>,
    /// `ListenerSet` when the address is the one of a ListenerSet's parent Gateway.
    #[serde(default)]
    pub kind: Option<String>,
}

/// `request.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Protocol {
    /// HTTP/1.1 over TCP, keep-alives off.
    #[serde(rename = "HTTP")]
    Http,
    /// HTTP/1.1 over TLS.
    #[serde(rename = "HTTPS")]
    Https,
    /// HTTP/2 over TLS.
    #[serde(rename = "H2")]
    H2,
    /// Cleartext HTTP/2 with prior knowledge.
    #[serde(rename = "H2C_PRIOR_KNOWLEDGE")]
    H2cPriorKnowledge,
    /// gRPC over h2c.
    #[serde(rename = "GRPC")]
    Grpc,
    /// Raw TCP to the tcp-backend echo.
    #[serde(rename = "TCP")]
    Tcp,
    /// TLS to a TLS listener.
    #[serde(rename = "TLS")]
    Tls,
    /// One UDP datagram.
    #[serde(rename = "UDP")]
    Udp,
}

impl Protocol {
    /// The port a request without `port` goes to (the scheme's default).
    pub fn default_port(self) -> u16 {
        match self {
            Protocol::Https | Protocol::H2 | Protocol::Tls => 443,
            _ => 80,
        }
    }

    /// Whether the client speaks TLS to the gateway.
    pub fn is_tls(self) -> bool {
        matches!(self, Protocol::Https | Protocol::H2 | Protocol::Tls)
    }

    /// The corpus spelling.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::Https => "HTTPS",
            Protocol::H2 => "H2",
            Protocol::H2cPriorKnowledge => "H2C_PRIOR_KNOWLEDGE",
            Protocol::Grpc => "GRPC",
            Protocol::Tcp => "TCP",
            Protocol::Tls => "TLS",
            Protocol::Udp => "UDP",
        }
    }
}

/// `request:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The client.
    pub protocol: Protocol,
    /// Gateway port; `None` = the scheme's default port.
    #[serde(default)]
    pub port: Option<u16>,
    /// Why the port is absent.
    #[serde(default)]
    pub port_note: Option<String>,
    /// Host header / :authority (may contain `${GATEWAY_IP}`).
    #[serde(default)]
    pub host: Option<String>,
    /// The test did not set the host (it is `${GATEWAY_IP}[:port]`).
    #[serde(default)]
    pub host_is_default: bool,
    /// Method (default GET).
    #[serde(default)]
    pub method: Option<String>,
    /// Request-target incl. query, sent as-is (`<uuid>` is replaced per attempt).
    #[serde(default)]
    pub path: Option<String>,
    /// A query parameter appended to the path (mirror tests).
    #[serde(default)]
    pub path_query_added: Option<String>,
    /// Request headers (one value each).
    #[serde(default, deserialize_with = "string_map")]
    pub headers: BTreeMap<String, String>,
    /// Do not follow 3xx.
    #[serde(default)]
    pub unfollow_redirect: bool,
    /// Request body.
    #[serde(default)]
    pub body: Option<String>,
    /// TLS ServerName.
    #[serde(default)]
    pub sni: Option<String>,
    /// Trusted root for the gateway certificate.
    #[serde(default)]
    pub server_ca: Option<String>,
    /// Client certificate.
    #[serde(default)]
    pub client_cert: Option<String>,
    /// Sent as `X-Echo-Set-Header: k:v,k2:v2`.
    #[serde(default, deserialize_with = "string_map")]
    pub backend_set_response_headers: BTreeMap<String, String>,
    /// Informational: the path carries `?delay=`.
    #[serde(default)]
    pub backend_delay: Option<String>,
    /// Informational: the path is a `/retry/` simulation.
    #[serde(default)]
    pub retry_simulation: Option<Value>,
    /// gRPC method (`/package.Service/Method`).
    #[serde(default)]
    pub grpc_method: Option<String>,
    /// gRPC `:authority`.
    #[serde(default)]
    pub authority: Option<String>,
    /// gRPC metadata.
    #[serde(default, deserialize_with = "string_map")]
    pub metadata: BTreeMap<String, String>,
    /// gRPC request message fields (the echo messages have none).
    #[serde(default)]
    pub message: Option<Value>,
    /// UDP datagram.
    #[serde(default)]
    pub payload: Option<String>,
    /// Per-exchange client deadline, seconds.
    #[serde(default)]
    pub timeout_s: Option<f64>,
}

/// `expect.status`: a code, a list of codes, or prose (`not 200`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum StatusExpect {
    /// One code.
    One(u16),
    /// Any of these.
    AnyOf(Vec<u16>),
    /// Prose (`not 200`).
    Text(String),
}

/// `expect:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Expected status (default 200); `None` with `failure` on TLS cases.
    #[serde(default)]
    pub status: Option<StatusExpect>,
    /// MakeRequestAndExpectFailure (prose).
    #[serde(default)]
    pub failure: Option<String>,
    /// Pod-name prefix.
    #[serde(default)]
    pub backend: Option<String>,
    /// Echoed namespace (`None` = `""`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// What the echo server must have seen.
    #[serde(default)]
    pub backend_request: Option<BackendRequest>,
    /// Headers that must not reach the backend.
    #[serde(default)]
    pub backend_absent_headers: Vec<String>,
    /// The backend saw exactly one header of this name, and the pod starts with its value.
    #[serde(default)]
    pub backend_header_names_pod: Option<String>,
    /// Exact response headers (values joined with `,`).
    #[serde(default, deserialize_with = "string_map")]
    pub response_headers: BTreeMap<String, String>,
    /// Response headers with any of these values.
    #[serde(default)]
    pub response_header_values: BTreeMap<String, Vec<String>>,
    /// Strip spaces before comparing response headers.
    #[serde(default)]
    pub response_headers_ignore_whitespace: bool,
    /// Response headers that must be absent.
    #[serde(default)]
    pub response_absent_headers: Vec<String>,
    /// Go `resp.Proto`.
    #[serde(default)]
    pub response_protocol: Option<String>,
    /// The parsed `Location` of a 3xx.
    #[serde(default)]
    pub redirect: Option<Redirect>,
    /// Backends that must receive a copy.
    #[serde(default)]
    pub mirrored_to: Vec<MirrorTarget>,
    /// gRPC status code name.
    #[serde(default)]
    pub grpc_code: Option<String>,
    /// TCP/TLS echo: the IS_TLS answer.
    #[serde(default)]
    pub backend_is_tls: Option<Value>,
    /// TCP/TLS echo: TLS version.
    #[serde(default)]
    pub tls_protocol: Option<Value>,
    /// TCP/TLS echo: SNI the backend saw.
    #[serde(default)]
    pub backend_sni: Option<Value>,
    /// TCP/UDP echo exchange.
    #[serde(default)]
    pub echo: Option<bool>,
    /// UDP: echoed service.
    #[serde(default)]
    pub service: Option<String>,
    /// TLS: handshake must fail.
    #[serde(default)]
    pub connection_rejected: Option<bool>,
    /// Prose for `connection_rejected`.
    #[serde(default)]
    pub detail: Option<String>,
}

/// `expect.backend_request`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendRequest {
    /// Compared only when present and non-empty.
    #[serde(default)]
    pub host: Option<String>,
    /// Method (default GET).
    #[serde(default)]
    pub method: Option<String>,
    /// Exact echoed path (`''`: the reply must not be an echo).
    #[serde(default)]
    pub path: Option<String>,
    /// Headers that must be present (values joined with `,`).
    #[serde(default, deserialize_with = "string_map")]
    pub headers: BTreeMap<String, String>,
    /// Echoed `httpPort`.
    #[serde(default)]
    pub http_port: Option<String>,
    /// Echoed `tls.serverName`.
    #[serde(default)]
    pub sni: Option<String>,
    /// A certificate the backend must have seen.
    #[serde(default)]
    pub client_cert: Option<String>,
    /// The Go test gave no ExpectedRequest: the sent request must arrive unchanged.
    #[serde(default, rename = "_defaulted_from_request")]
    pub defaulted_from_request: bool,
}

/// `expect.redirect`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redirect {
    /// `None` = the request's scheme.
    #[serde(default)]
    pub scheme: Option<String>,
    /// `None` = any host.
    #[serde(default)]
    pub host: Option<String>,
    /// `None` = the scheme's default port or absent.
    #[serde(default, deserialize_with = "opt_string")]
    pub port: Option<String>,
    /// `None` = the request's path.
    #[serde(default)]
    pub path: Option<String>,
}

/// An `expect.mirrored_to` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorTarget {
    /// Deployment name.
    pub name: String,
    /// Namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Only this percentage is mirrored (see `mirror_distribution`).
    #[serde(default)]
    pub percent: Option<f64>,
}

/// `distribution:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Distribution {
    /// Expected share per backend (Deployment name).
    pub weights: BTreeMap<String, f64>,
    /// Samples per attempt.
    pub requests: usize,
    /// Samples in flight.
    pub concurrency: usize,
    /// Absolute tolerance on each share.
    pub tolerance: f64,
    /// The case passes when any attempt passes.
    pub attempts: usize,
    /// Cache-defeating header.
    #[serde(default)]
    pub entropy: Option<Entropy>,
}

/// `distribution.entropy`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entropy {
    /// Header (gRPC: metadata key, lower-cased; the corpus spells it `metadata` there).
    #[serde(alias = "metadata")]
    pub header: String,
    /// Probability that a sample carries it.
    pub probability: f64,
    /// `lo-hi` range of values.
    pub values: String,
}

/// `mirror_distribution:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorDistribution {
    /// The mirror target.
    pub backend: TargetRef,
    /// Expected mirrored fraction.
    pub fraction: f64,
    /// Requests per attempt.
    pub requests: usize,
    /// Requests in flight.
    pub concurrency: usize,
    /// Accepted count range.
    pub tolerance: MirrorTolerance,
    /// The case passes when any attempt passes.
    pub attempts: usize,
    /// Pause after a failed attempt.
    #[serde(default)]
    pub attempt_pause_s: f64,
    /// How long the mirror logs are polled.
    #[serde(default)]
    pub log_wait_s: f64,
}

/// `mirror_distribution.tolerance`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorTolerance {
    /// Standard deviations.
    pub stddevs: f64,
    /// Lowest accepted count.
    pub min: f64,
    /// Highest accepted count.
    pub max: f64,
}

/// A map whose scalar values (strings, numbers, booleans) are read as strings.
fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw: Option<BTreeMap<String, Value>> = Option::deserialize(d)?;
    raw.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| scalar(&v).map(|v| (k, v)))
        .collect::<Option<_>>()
        .ok_or_else(|| serde::de::Error::custom("map values must be scalars"))
}

/// An optional scalar read as a string (`port: 8080` or `port: '8080'`).
fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let raw: Option<Value> = Option::deserialize(d)?;
    match raw {
        None | Some(Value::Null) => Ok(None),
        Some(v) => scalar(&v)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("expected a scalar")),
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_case_with_every_common_key_parses() {
        let case: Case = serde_json::from_value(json!({
            "name": "x",
            "gateway": {"name": "gw", "namespace": "ns"},
            "request": {"protocol": "HTTP", "port": 80, "host": "${GATEWAY_IP}",
                         "host_is_default": true, "path": "/", "headers": {"A": 1}},
            "expect": {"status": [200, 204], "backend": null, "namespace": null,
                       "redirect": {"port": 8080}, "backend_request": {"_defaulted_from_request": true}},
        }))
        .unwrap();
        assert_eq!(case.request.headers["A"], "1");
        assert_eq!(
            case.expect.status,
            Some(StatusExpect::AnyOf(vec![200, 204]))
        );
        assert_eq!(case.expect.redirect.unwrap().port.as_deref(), Some("8080"));
        assert!(case.expect.backend_request.unwrap().defaulted_from_request);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let bad = serde_json::from_value::<Case>(json!({
            "gateway": {"name": "gw"},
            "request": {"protocol": "HTTP"},
            "expect": {"no_such_expectation": 1},
        }));
        assert!(bad.is_err());
    }
}
