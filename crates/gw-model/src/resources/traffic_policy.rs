//! `TrafficPolicy` (`policy.gw.dev/v1alpha1`): gw's own policy, attached with GEP-713 policy
//! attachment to Gateways, listeners, ListenerSets, HTTPRoutes, GRPCRoutes and route rules.
//!
//! A policy names its targets in `targetRefs` and carries settings in a `default` block, an
//! `override` block, or both. Each block holds the same optional sections (`cors`, `rateLimit`,
//! `basicAuth`, `apiKeyAuth`, `jwt`, `extAuth` and `transformation`). See
//! [`compile`](crate::compile()) for how policies at different levels combine.

use serde::{Deserialize, Serialize};

use super::meta::{LocalObjectReference, ObjectMeta, PolicyTargetReference};
use super::route::{Cors, ExternalAuth};

/// The API group of gw's policies.
pub const POLICY_GROUP: &str = "policy.gw.dev";

/// The version of `TrafficPolicy` gw reads and writes.
pub const TRAFFIC_POLICY_VERSION: &str = "v1alpha1";

/// `TrafficPolicy`: CORS, rate limits, authentication, external authorization and CEL
/// transformations for the traffic of the objects it targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicy {
    /// Object metadata.
    #[cfg_attr(feature = "schemars", schemars(skip))]
    pub metadata: ObjectMeta,
    /// Desired state.
    pub spec: TrafficPolicySpec,
}

/// `TrafficPolicy.spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicySpec {
    /// The objects this policy applies to, in the policy's namespace: a `Gateway` (with
    /// `sectionName`, one of its listeners), a `ListenerSet` (with `sectionName`, one of its
    /// listeners), an `HTTPRoute` or `GRPCRoute` (with `sectionName`, the rule of that name).
    /// All in the group `gateway.networking.k8s.io`.
    #[cfg_attr(feature = "schemars", schemars(length(min = 1, max = 16)))]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Settings that apply unless a more specific policy sets the same section: a `default`
    /// on a route rule beats one on its route, which beats one on a listener, a ListenerSet,
    /// then the Gateway.
    #[serde(default, rename = "default", skip_serializing_if = "Option::is_none")]
    pub default: Option<PolicySettings>,
    /// Settings that more specific policies cannot change: an `override` on a Gateway beats
    /// one on a ListenerSet, a listener, a route, then a route rule, and every `default`.
    #[serde(default, rename = "override", skip_serializing_if = "Option::is_none")]
    pub override_: Option<PolicySettings>,
}

/// The sections of a `default` or `override` block. Each section is atomic: the winning
/// policy's section applies as a whole, and sections are merged independently of each other.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PolicySettings {
    /// Cross-origin resource sharing, with the fields of the HTTPRoute `CORS` filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
    /// A local token-bucket rate limit (counted by this gw process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSpec>,
    /// HTTP basic authentication against an htpasswd file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuthSpec>,
    /// API keys in a request header or query parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_auth: Option<ApiKeyAuthSpec>,
    /// JWT bearer tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtSpec>,
    /// Request and response edits computed by CEL expressions over the request (its headers,
    /// path, client address, TLS peer and validated JWT claims).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transformation: Option<TransformationSpec>,
    /// External authorization: the fields of the HTTPRoute `ExternalAuth` filter (GEP-1494),
    /// plus a timeout and an opt-in fail-open mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext_auth: Option<ExtAuthSpec>,
}

/// `extAuth`: every request is checked by an external auth service before it goes on.
///
/// The fields of the HTTPRoute `ExternalAuth` filter (`protocol`, `backendRef`, `http`,
/// `grpc`, `forwardBody`) mean what they mean there; `backendRef` needs a ReferenceGrant to
/// reach another namespace, with `from` naming `policy.gw.dev` `TrafficPolicy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ExtAuthSpec {
    /// The auth service and how to talk to it, as in the `ExternalAuth` filter.
    #[serde(flatten)]
    pub service: ExternalAuth,
    /// How long the auth service has to answer (connecting, the response head and a denial
    /// body), a Gateway API duration such as `500ms`. Defaults to `2s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// What happens when the auth service cannot be asked (no endpoints, down, slower than
    /// `timeout`, a broken answer): `false` (default) refuses the request with 403, as the
    /// `ExternalAuth` filter must; `true` lets it through unchanged, for services where
    /// availability matters more than the check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_open: Option<bool>,
}

impl PolicySettings {
    /// Whether no section is set.
    pub fn is_empty(&self) -> bool {
        self == &PolicySettings::default()
    }
}

/// The unit of a rate limit's `requests`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub enum RateLimitUnit {
    /// Per second.
    Second,
    /// Per minute.
    Minute,
    /// Per hour.
    Hour,
    /// Per day.
    Day,
}

impl RateLimitUnit {
    /// The unit as a duration.
    pub fn period(self) -> std::time::Duration {
        std::time::Duration::from_secs(match self {
            RateLimitUnit::Second => 1,
            RateLimitUnit::Minute => 60,
            RateLimitUnit::Hour => 3600,
            RateLimitUnit::Day => 86_400,
        })
    }
}

/// `rateLimit`: `requests` per `unit`, refilled evenly, with bursts of up to `burst`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RateLimitSpec {
    /// Requests allowed per `unit`.
    #[cfg_attr(feature = "schemars", schemars(range(min = 1)))]
    pub requests: u32,
    /// The period of `requests`.
    pub unit: RateLimitUnit,
    /// The most requests a key may send at once (the bucket size). Defaults to `requests`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schemars", schemars(range(min = 1)))]
    pub burst: Option<u32>,
    /// What requests are counted against. Defaults to `type: Shared`.
    #[serde(default)]
    pub key: RateLimitKeySpec,
}

/// How a rate limit groups requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub enum RateLimitKeyType {
    /// One bucket for all requests of the target.
    #[default]
    Shared,
    /// One bucket per client IP address.
    #[serde(rename = "ClientIP")]
    ClientIp,
    /// One bucket per value of the request header `header`.
    Header,
}

/// `rateLimit.key`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RateLimitKeySpec {
    /// `Shared` (default), `ClientIP` or `Header`.
    #[serde(default, rename = "type")]
    pub type_: RateLimitKeyType,
    /// The header whose value is the key, for `type: Header`. Requests without it share one
    /// bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}

/// A reference to a Secret or ConfigMap key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyReference {
    /// API group: `""` (core).
    #[serde(default)]
    pub group: String,
    /// `Secret` (default) or, where allowed, `ConfigMap`.
    #[serde(default = "default_secret_kind")]
    pub kind: String,
    /// Name of the referent.
    pub name: String,
    /// Namespace; defaults to the policy's. Another namespace needs a ReferenceGrant there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The data key; each section documents its default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

fn default_secret_kind() -> String {
    "Secret".to_owned()
}

/// `basicAuth`: users and password hashes from an htpasswd file in a Secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct BasicAuthSpec {
    /// The Secret holding the htpasswd file (key `.htpasswd` unless `key` says otherwise).
    /// bcrypt (`htpasswd -B`) and `{SHA}` (`htpasswd -s`) entries are supported.
    pub secret_ref: SecretKeyReference,
    /// The realm sent in `WWW-Authenticate`. Defaults to the policy's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
}

/// `apiKeyAuth`: API keys, each belonging to a named client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyAuthSpec {
    /// Secrets whose entries are client name → API key (every key of each Secret).
    #[cfg_attr(feature = "schemars", schemars(length(min = 1)))]
    pub credential_refs: Vec<SecretKeyReference>,
    /// Where requests carry the key. Defaults to the header `x-api-key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract_from: Option<ApiKeySource>,
}

/// Where an API key is read from: exactly one of `header` and `queryParameter`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ApiKeySource {
    /// A request header (its whole value is the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// A query parameter (percent-decoded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_parameter: Option<String>,
}

/// `jwt`: bearer tokens validated against one or more providers; a token is accepted when
/// one provider accepts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct JwtSpec {
    /// Token issuers.
    #[cfg_attr(feature = "schemars", schemars(length(min = 1, max = 8)))]
    pub providers: Vec<JwtProviderSpec>,
}

/// One JWT issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct JwtProviderSpec {
    /// A name, unique within the policy, for logs and status messages.
    pub name: String,
    /// The required `iss` claim. Unset: any issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Accepted `aud` values (one must match). Empty: any audience.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// The keys that sign tokens.
    pub jwks: JwksSpec,
    /// Claims copied into request headers for the backend (a string, number or boolean claim;
    /// others are JSON-encoded). Headers the client sent with these names are removed first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claim_to_headers: Vec<ClaimToHeader>,
    /// Tolerance for `exp` and `nbf`, a Gateway API duration such as `30s`. Defaults to `60s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_skew: Option<String>,
}

/// Where a provider's JSON Web Key Set comes from: exactly one of the fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct JwksSpec {
    /// The JWKS document itself (JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
    /// A Secret or ConfigMap key holding the JWKS document (key `jwks.json` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_ref: Option<SecretKeyReference>,
    /// An HTTPS URL serving the JWKS, fetched by the data plane, cached and refreshed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteJwks>,
}

/// A JWKS served over HTTPS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RemoteJwks {
    /// The `https://` URL (no user information, no fragment).
    #[cfg_attr(feature = "schemars", schemars(length(min = 9, max = 2048)))]
    pub uri: String,
    /// How long a fetched set is used before it is fetched again, a Gateway API duration
    /// between `30s` and `24h`. Defaults to `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_duration: Option<String>,
    /// CA bundles (ConfigMaps or Secrets in the policy's namespace, key `ca.crt`) that verify
    /// the JWKS server's certificate, for a private CA. Empty: the platform's trusted roots.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "schemars", schemars(length(max = 8)))]
    pub ca_certificate_refs: Vec<LocalObjectReference>,
}

/// A claim copied into a request header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ClaimToHeader {
    /// The claim name (top level).
    pub claim: String,
    /// The header to set.
    pub header: String,
}

/// `transformation`: CEL expressions editing requests and responses. Every expression sees
/// the request as it reached the policy; see the README for the variables.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct TransformationSpec {
    /// Edits of the request before it is forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestTransformation>,
    /// Edits of the response before it is returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HeaderTransformation>,
}

/// Request edits: headers and the path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RequestTransformation {
    /// Headers set (replacing any value) to the value of a CEL expression.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "schemars", schemars(length(max = 16)))]
    pub set: Vec<CelHeader>,
    /// Headers added (appended) with the value of a CEL expression.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "schemars", schemars(length(max = 16)))]
    pub add: Vec<CelHeader>,
    /// Headers removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "schemars", schemars(length(max = 16)))]
    pub remove: Vec<String>,
    /// A CEL expression whose string value replaces the request path (the query is kept;
    /// `null` keeps the path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schemars", schemars(length(min = 1, max = 4096)))]
    pub path: Option<String>,
}

/// Response edits: headers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct HeaderTransformation {
    /// Headers set to the value of a CEL expression.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "schemars", schemars(length(max = 16)))]
    pub set: Vec<CelHeader>,
    /// Headers added with the value of a CEL expression.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "schemars", schemars(length(max = 16)))]
    pub add: Vec<CelHeader>,
    /// Headers removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "schemars", schemars(length(max = 16)))]
    pub remove: Vec<String>,
}

/// A header whose value is computed by CEL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct CelHeader {
    /// Header name.
    pub name: String,
    /// CEL expression evaluating to a string (numbers and booleans are formatted; `null`
    /// leaves the header alone).
    #[cfg_attr(feature = "schemars", schemars(length(min = 1, max = 4096)))]
    pub value: String,
}
