//! TrafficPolicy (`policy.gw.dev/v1alpha1`): GEP-713 policy attachment with defaults and
//! overrides.
//!
//! # Targets and the hierarchy
//!
//! A policy targets, in its own namespace, a `Gateway`, one listener of a Gateway
//! (`sectionName`), a `ListenerSet`, one of its listeners, an `HTTPRoute` or `GRPCRoute`, or one
//! named rule of a route (`sectionName`). Its effective target is each route rule, in the
//! context of each listener the rule is attached to. The hierarchy, from least to most
//! specific, is:
//!
//! ```text
//! Gateway > ListenerSet > listener > route > route rule
//! ```
//!
//! # Merging (GEP-713 "Merge strategies")
//!
//! Each section of a block (`cors`, `rateLimit`, `basicAuth`, `apiKeyAuth`, `jwt`, `extAuth`,
//! `transformation`) is atomic and merged on its own (a custom, per-section merge): for every
//! rule and section,
//!
//! 1. the `override` of the least specific level that sets the section wins ("Overrides: less
//!    specific specs beats more specific ones");
//! 2. else the `default` of the most specific level that sets it wins ("Defaults: more specific
//!    specs beats less specific ones");
//! 3. between policies at the same level, the older one wins, then the first by
//!    `{namespace}/{name}` ("Between two metaresources at the same level of the hierarchy, the
//!    older metaresource based on creation timestamp wins ... the metaresource appearing first
//!    in alphabetical order by `{namespace}/{name}` wins").
//!
//! # Status
//!
//! `status.ancestors` has one entry per Gateway the policy applies through (with
//! `sectionName` when it targets a listener), each with an `Accepted` condition:
//!
//! - `Accepted`: valid and attached;
//! - `Invalid`: the policy does not compile (a bad htpasswd file or JWKS, a missing Secret, a
//!   CEL expression that does not compile, a section this build does not support); it
//!   changes nothing;
//! - `Conflicted`: an older policy targets the same object (and section) and sets the same
//!   section in the same block, so the two cannot be merged; the younger changes nothing
//!   through that target;
//! - `TargetNotFound`: the target (or its section) does not exist; the ancestor entry names the
//!   target itself, as there is no Gateway to name.
//!
//! A policy with `extAuth` also gets a `ResolvedRefs` condition per ancestor: `False` (reason
//! `InvalidKind`, `RefNotPermitted`, `BackendNotFound` or `UnsupportedProtocol`) when the auth
//! service's backendRef does not resolve. The policy still applies, failing closed: requests
//! through it get 500, as they do through an `ExternalAuth` filter whose backendRef does not
//! resolve, so that deleting a Service or a ReferenceGrant never turns authorization off.
//!
//! Targets of an accepted policy get a `<domain>/TrafficPolicyAffected` condition (GEP-713
//! "Target object status"), where `<domain>` is the domain of the controller name: on the
//! Gateway, the listener, the ListenerSet, or each `status.parents` entry of a route.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::gateway::ca_bundle;
use super::hostname::is_valid_hostname;
use super::refs::{From, Lookup, Unresolved, reference_allowed};
use super::rules::{check_cors, check_header_name, external_auth, parse_duration};
use super::{CompileOptions, GatewayState, created};
use crate::resources::{
    ApiKeyAuthSpec, BasicAuthSpec, CORE_GROUP, CelHeader, Cors, ExtAuthSpec, GATEWAY_GROUP,
    GATEWAY_X_GROUP, JwtSpec, Kind, ObjectKey, ObjectReference, POLICY_GROUP, ParentReference,
    PolicySettings, PolicyTargetReference, RateLimitKeyType, RateLimitSpec, RemoteJwks, Resources,
    SecretKeyReference, TrafficPolicy, TransformationSpec,
};
use crate::status::{Condition, ObjectStatus, PolicyAncestorStatus, PolicyStatus, StatusEntry};
use crate::table::{
    ApiKeyLocation, ApiKeySettings, Applied, Backend, BasicAuthSettings, ExtAuthSettings,
    HeaderEdits, JwksSettings, JwtProviderSettings, JwtSettings, PolicyBlock, RateLimitKey,
    RateLimitSettings, RemoteJwksSettings, RulePolicy, TransformationSettings,
};

/// The most ancestors reported per policy ("A maximum of 16 ancestors will be represented in
/// this list").
const MAX_ANCESTORS: usize = 16;

/// A compiled section handed to a [`PolicyValidator`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum PolicySection<'a> {
    /// `cors`.
    Cors(&'a Cors),
    /// `rateLimit`.
    RateLimit(&'a RateLimitSettings),
    /// `basicAuth`.
    BasicAuth(&'a BasicAuthSettings),
    /// `apiKeyAuth`.
    ApiKeyAuth(&'a ApiKeySettings),
    /// `jwt`.
    Jwt(&'a JwtSettings),
    /// `extAuth`.
    ExtAuth(&'a ExtAuthSettings),
    /// `transformation`: the validator compiles the CEL expressions.
    Transformation(&'a TransformationSettings),
}

type ValidateFn = dyn Fn(PolicySection<'_>) -> Result<(), String> + Send + Sync;

/// Checks compiled TrafficPolicy sections with the data plane's own code (the htpasswd hash
/// schemes and JWKS key types it can use, the CEL expressions it compiles), so that a policy
/// the data plane could not build is reported `Invalid` instead of failing later. gw-model
/// checks structure and references; the validator checks what only the data plane knows.
///
/// ```
/// use gw_model::compile::{PolicySection, PolicyValidator};
///
/// let validator = PolicyValidator::new(|section| match section {
///     PolicySection::BasicAuth(b) if b.htpasswd.contains("$apr1$") => {
///         Err("MD5 hashes are not supported".to_owned())
///     }
///     _ => Ok(()),
/// });
/// let options = gw_model::CompileOptions {
///     policy_validator: Some(validator),
///     ..gw_model::CompileOptions::new("gw.dev/gateway")
/// };
/// # let _ = options;
/// ```
#[derive(Clone)]
pub struct PolicyValidator(Arc<ValidateFn>);

impl PolicyValidator {
    /// A validator calling `f` on every compiled section; an `Err` message makes the policy
    /// `Invalid`.
    pub fn new(
        f: impl Fn(PolicySection<'_>) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        PolicyValidator(Arc::new(f))
    }

    fn check(&self, section: PolicySection<'_>) -> Result<(), String> {
        (self.0)(section)
    }
}

impl fmt::Debug for PolicyValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PolicyValidator(..)")
    }
}

/// One block, compiled.
#[derive(Debug, Clone, Default)]
struct Sections {
    cors: Option<Arc<Cors>>,
    rate_limit: Option<Arc<RateLimitSettings>>,
    basic_auth: Option<Arc<BasicAuthSettings>>,
    api_key_auth: Option<Arc<ApiKeySettings>>,
    jwt: Option<Arc<JwtSettings>>,
    ext_auth: Option<Arc<ExtAuthSettings>>,
    transformation: Option<Arc<TransformationSettings>>,
}

/// Section names, in the order they are merged and reported.
const SECTIONS: [&str; 7] = [
    "cors",
    "rateLimit",
    "basicAuth",
    "apiKeyAuth",
    "jwt",
    "extAuth",
    "transformation",
];

impl Sections {
    fn has(&self, section: &str) -> bool {
        match section {
            "cors" => self.cors.is_some(),
            "rateLimit" => self.rate_limit.is_some(),
            "basicAuth" => self.basic_auth.is_some(),
            "apiKeyAuth" => self.api_key_auth.is_some(),
            "jwt" => self.jwt.is_some(),
            "extAuth" => self.ext_auth.is_some(),
            "transformation" => self.transformation.is_some(),
            _ => false,
        }
    }
}

/// What a targetRef names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum TargetKind {
    Gateway,
    ListenerSet,
    Route(Kind),
}

/// A policy after validation.
struct Evaluated<'a> {
    key: ObjectKey,
    policy: &'a TrafficPolicy,
    created: Option<i128>,
    /// Why the policy is `Invalid`.
    invalid: Option<String>,
    /// Whether it has an `extAuth` section, and why its backendRef does not resolve.
    resolved: Option<Result<(), Unresolved>>,
    blocks: [Sections; 2],
}

impl Evaluated<'_> {
    fn block(&self, b: PolicyBlock) -> &Sections {
        match b {
            PolicyBlock::Default => &self.blocks[0],
            PolicyBlock::Override => &self.blocks[1],
        }
    }
}

/// The outcome of one targetRef.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TargetState {
    /// Resolved; the Gateways of ours it applies through.
    Found {
        kind: TargetKind,
        gateways: BTreeSet<ObjectKey>,
    },
    /// The object or section does not exist.
    NotFound(String),
    /// An older policy sets the same section on the same target.
    Conflicted {
        message: String,
        gateways: BTreeSet<ObjectKey>,
    },
}

/// A target that gets the `TrafficPolicyAffected` condition once every status entry exists.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Affected {
    kind: Kind,
    key: ObjectKey,
    /// A listener of a Gateway or ListenerSet.
    listener: Option<String>,
    /// A route rule (for the message).
    rule: Option<String>,
    /// For routes: the Gateways whose `status.parents` entries get the condition.
    gateways: BTreeSet<ObjectKey>,
    policy: ObjectKey,
}

fn invalid(msg: impl Into<String>) -> String {
    msg.into()
}

/// Resolves a Secret (or, when `allow_config_map`, ConfigMap) key reference of a policy.
fn value_ref(
    res: &Resources,
    policy: &ObjectKey,
    r: &SecretKeyReference,
    default_key: &str,
    allow_config_map: bool,
    field: &str,
) -> Result<(String, Vec<u8>), String> {
    let kind_ok = r.group == CORE_GROUP
        && (r.kind == "Secret" || (allow_config_map && r.kind == "ConfigMap"));
    if !kind_ok {
        let allowed = if allow_config_map {
            "a core Secret or ConfigMap"
        } else {
            "a core Secret"
        };
        return Err(invalid(format!(
            "{field}: {}/{} is not supported; use {allowed}",
            r.group, r.kind
        )));
    }
    let ns = r.namespace.as_deref().unwrap_or(&policy.namespace);
    let from = From {
        group: POLICY_GROUP,
        kind: "TrafficPolicy",
        namespace: &policy.namespace,
    };
    if !reference_allowed(res, from, CORE_GROUP, &r.kind, ns, &r.name) {
        return Err(invalid(format!(
            "{field}: reference to {} {ns}/{} is not permitted by any ReferenceGrant",
            r.kind, r.name
        )));
    }
    let key = ObjectKey::new(ns, r.name.clone());
    let data_key = r.key.as_deref().unwrap_or(default_key);
    let value = if r.kind == "Secret" {
        let secret = res
            .secrets
            .get(&key)
            .ok_or_else(|| format!("{field}: Secret {key} not found"))?;
        secret.data.get(data_key).cloned()
    } else {
        let cm = res
            .config_maps
            .get(&key)
            .ok_or_else(|| format!("{field}: ConfigMap {key} not found"))?;
        cm.data
            .get(data_key)
            .map(|s| s.clone().into_bytes())
            .or_else(|| cm.binary_data.get(data_key).cloned())
    };
    let value =
        value.ok_or_else(|| format!("{field}: {} {key} has no key {data_key:?}", r.kind))?;
    Ok((format!("{} {key} key {data_key}", r.kind), value))
}

fn header_name(field: &str, name: &str) -> Result<String, String> {
    check_header_name(name)
        .map(|()| name.to_ascii_lowercase())
        .map_err(|_| format!("{field}: {name:?} is not a valid header name"))
}

/// `rateLimit` validation: "requests" and "burst" are at least 1; `header` goes with
/// `type: Header` only.
fn rate_limit(spec: &RateLimitSpec) -> Result<RateLimitSettings, String> {
    if spec.requests == 0 {
        return Err(invalid("rateLimit.requests must be at least 1"));
    }
    let burst = spec.burst.unwrap_or(spec.requests);
    if burst == 0 {
        return Err(invalid("rateLimit.burst must be at least 1"));
    }
    let key = match (spec.key.type_, spec.key.header.as_deref()) {
        (RateLimitKeyType::Shared, None) => RateLimitKey::Shared,
        (RateLimitKeyType::ClientIp, None) => RateLimitKey::ClientIp,
        (RateLimitKeyType::Header, Some(h)) => {
            RateLimitKey::Header(header_name("rateLimit.key.header", h)?)
        }
        (RateLimitKeyType::Header, None) => {
            return Err(invalid("rateLimit.key.header is required with type Header"));
        }
        (_, Some(_)) => {
            return Err(invalid(
                "rateLimit.key.header is only allowed with type Header",
            ));
        }
    };
    Ok(RateLimitSettings {
        requests: spec.requests,
        period: spec.unit.period(),
        burst,
        key,
    })
}

fn basic_auth(
    res: &Resources,
    policy: &ObjectKey,
    spec: &BasicAuthSpec,
) -> Result<BasicAuthSettings, String> {
    let (_, bytes) = value_ref(
        res,
        policy,
        &spec.secret_ref,
        ".htpasswd",
        false,
        "basicAuth.secretRef",
    )?;
    let htpasswd = String::from_utf8(bytes)
        .map_err(|_| invalid("basicAuth.secretRef: the htpasswd file is not UTF-8"))?;
    let realm = spec.realm.clone().unwrap_or_else(|| policy.name.clone());
    Ok(BasicAuthSettings {
        realm,
        secret: ObjectKey::new(
            spec.secret_ref
                .namespace
                .as_deref()
                .unwrap_or(&policy.namespace),
            spec.secret_ref.name.clone(),
        ),
        htpasswd,
    })
}

fn api_key_auth(
    res: &Resources,
    policy: &ObjectKey,
    spec: &ApiKeyAuthSpec,
) -> Result<ApiKeySettings, String> {
    let location = match spec.extract_from.as_ref() {
        None => ApiKeyLocation::Header("x-api-key".to_owned()),
        Some(src) => match (src.header.as_deref(), src.query_parameter.as_deref()) {
            (Some(h), None) => {
                ApiKeyLocation::Header(header_name("apiKeyAuth.extractFrom.header", h)?)
            }
            (None, Some(q)) if !q.is_empty() => ApiKeyLocation::Query(q.to_owned()),
            _ => {
                return Err(invalid(
                    "apiKeyAuth.extractFrom needs exactly one of header and queryParameter",
                ));
            }
        },
    };
    let mut keys: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, r) in spec.credential_refs.iter().enumerate() {
        let field = format!("apiKeyAuth.credentialRefs[{i}]");
        if r.group != CORE_GROUP || r.kind != "Secret" {
            return Err(format!(
                "{field}: {}/{} is not supported; use a core Secret",
                r.group, r.kind
            ));
        }
        let ns = r.namespace.as_deref().unwrap_or(&policy.namespace);
        let secret_key = ObjectKey::new(ns, r.name.clone());
        // Resolve through the shared checks (kind, ReferenceGrant, existence) with any key.
        let secret = {
            let from = From {
                group: POLICY_GROUP,
                kind: "TrafficPolicy",
                namespace: &policy.namespace,
            };
            if !reference_allowed(res, from, CORE_GROUP, "Secret", ns, &r.name) {
                return Err(format!(
                    "{field}: reference to Secret {secret_key} is not permitted by any ReferenceGrant"
                ));
            }
            res.secrets
                .get(&secret_key)
                .ok_or_else(|| format!("{field}: Secret {secret_key} not found"))?
        };
        let entries: Vec<(&String, &Vec<u8>)> = match r.key.as_deref() {
            Some(k) => match secret.data.get_key_value(k) {
                Some(e) => vec![e],
                None => return Err(format!("{field}: Secret {secret_key} has no key {k:?}")),
            },
            None => secret.data.iter().collect(),
        };
        for (client, key) in entries {
            // Keys written with `--from-file` end with a newline; keys never end with spaces.
            let end = key
                .iter()
                .rposition(|b| !b.is_ascii_whitespace())
                .map_or(0, |p| p + 1);
            let key = key[..end].to_vec();
            if key.is_empty() {
                return Err(format!(
                    "{field}: the key of client {client:?} in Secret {secret_key} is empty"
                ));
            }
            if keys.iter().any(|(c, _)| c == client) {
                return Err(format!(
                    "{field}: client {client:?} is defined twice; client names must be unique"
                ));
            }
            keys.push((client.clone(), key));
        }
    }
    if keys.is_empty() {
        return Err(invalid("apiKeyAuth: the credential Secrets hold no key"));
    }
    Ok(ApiKeySettings {
        location,
        clients: keys.iter().map(|(c, _)| c.clone()).collect(),
        keys,
    })
}

/// A JWKS document from the configuration: UTF-8 JSON with a `keys` array (the data plane's
/// validator checks the keys themselves).
fn static_jwks(
    field: &str,
    source: String,
    bytes: Vec<u8>,
) -> Result<(String, JwksSettings), String> {
    let jwks = String::from_utf8(bytes)
        .map_err(|_| format!("{field}.jwks: the JWKS ({source}) is not UTF-8"))?;
    let doc: serde_json::Value = serde_json::from_str(&jwks)
        .map_err(|e| format!("{field}.jwks: the JWKS ({source}) is not JSON: {e}"))?;
    if !doc.get("keys").is_some_and(serde_json::Value::is_array) {
        return Err(format!(
            "{field}.jwks: the JWKS ({source}) has no `keys` array"
        ));
    }
    Ok((source, JwksSettings::Static(jwks)))
}

/// `jwks.remote.cacheDuration` when unset.
pub(crate) const DEFAULT_JWKS_CACHE: Duration = Duration::from_secs(5 * 60);
/// The shortest `cacheDuration`: shorter would poll the issuer for nothing (keys rotate in
/// days), and a `kid` the set lacks triggers an early fetch anyway.
pub(crate) const MIN_JWKS_CACHE: Duration = Duration::from_secs(30);
/// The longest `cacheDuration`.
pub(crate) const MAX_JWKS_CACHE: Duration = Duration::from_secs(24 * 3600);
/// The longest `jwks.remote.uri`.
const MAX_URI: usize = 2048;

/// `jwks.remote`: an `https://` URL, a cache duration within bounds and the CA bundles that
/// verify the server.
fn remote_jwks(
    res: &Resources,
    policy: &ObjectKey,
    field: &str,
    r: &RemoteJwks,
) -> Result<RemoteJwksSettings, String> {
    check_https_uri(&r.uri).map_err(|why| format!("{field}.uri {:?} {why}", r.uri))?;
    let cache_duration = match r.cache_duration.as_deref() {
        None => DEFAULT_JWKS_CACHE,
        Some(s) => parse_duration(s)
            .ok_or_else(|| format!("{field}.cacheDuration {s:?} is not a valid duration"))?,
    };
    if !(MIN_JWKS_CACHE..=MAX_JWKS_CACHE).contains(&cache_duration) {
        return Err(format!(
            "{field}.cacheDuration {:?} is out of range; use 30s to 24h",
            r.cache_duration.as_deref().unwrap_or_default()
        ));
    }
    let from = From {
        group: POLICY_GROUP,
        kind: "TrafficPolicy",
        namespace: &policy.namespace,
    };
    let mut ca_pem = Vec::new();
    for (i, c) in r.ca_certificate_refs.iter().enumerate() {
        let reference = ObjectReference {
            group: c.group.clone(),
            kind: c.kind.clone(),
            name: c.name.clone(),
            namespace: None,
        };
        let pem = ca_bundle(res, from, &reference)
            .map_err(|p| format!("{field}.caCertificateRefs[{i}]: {}", p.message))?;
        ca_pem.push(pem);
    }
    Ok(RemoteJwksSettings {
        uri: r.uri.clone(),
        cache_duration,
        ca_pem,
    })
}

/// Why `uri` is not an absolute `https://` URL that a JWKS can be fetched from: the scheme is
/// `https` (keys fetched in cleartext could be replaced in transit), the host a DNS name or an
/// IP address, the port (if any) 1 to 65535; no user information (credentials would end up in
/// logs and status), no fragment, no spaces or non-ASCII characters (percent-encode them).
pub(crate) fn check_https_uri(uri: &str) -> Result<(), &'static str> {
    if uri.len() > MAX_URI {
        return Err("is longer than 2048 characters");
    }
    if uri.bytes().any(|b| b <= b' ' || b >= 0x7f) {
        return Err("contains spaces, control or non-ASCII characters; percent-encode them");
    }
    let rest = match uri.get(..8) {
        Some(scheme) if scheme.eq_ignore_ascii_case("https://") => &uri[8..],
        _ => return Err("is not an https:// URL; JWKS must be fetched over TLS"),
    };
    if rest.contains('#') {
        return Err("has a fragment (`#...`); remove it");
    }
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    if authority.contains('@') {
        return Err("carries user information (`user@`); credentials do not belong in the URL");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return Err("has an unterminated IPv6 address (`[...`)");
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("has an invalid IPv6 address");
        }
        match after {
            "" => (None, None),
            p => match p.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return Err("has characters after the IPv6 address"),
            },
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(authority), None),
        }
    };
    if let Some(host) = host {
        let lower = host.to_ascii_lowercase();
        let ip = lower.parse::<std::net::Ipv4Addr>().is_ok();
        if host.is_empty() || !(ip || (is_valid_hostname(&lower) && !lower.starts_with('*'))) {
            return Err("has no valid host (a DNS name or an IP address)");
        }
    }
    if let Some(port) = port
        && !port.parse::<u16>().is_ok_and(|p| p != 0)
    {
        return Err("has an invalid port (1 to 65535)");
    }
    Ok(())
}

fn jwt(res: &Resources, policy: &ObjectKey, spec: &JwtSpec) -> Result<JwtSettings, String> {
    if spec.providers.is_empty() {
        return Err(invalid("jwt.providers must not be empty"));
    }
    let mut providers = Vec::new();
    for (i, p) in spec.providers.iter().enumerate() {
        let field = format!("jwt.providers[{i}]");
        if p.name.is_empty() {
            return Err(format!("{field}.name must not be empty"));
        }
        if providers
            .iter()
            .any(|q: &JwtProviderSettings| q.name == p.name)
        {
            return Err(format!("{field}: provider name {:?} is not unique", p.name));
        }
        if p.issuer.as_deref() == Some("") || p.audiences.iter().any(String::is_empty) {
            return Err(format!("{field}: issuer and audiences must not be empty"));
        }
        let j = &p.jwks;
        let (jwks_source, jwks) = match (&j.inline, &j.value_ref, &j.remote) {
            (Some(inline), None, None) => {
                static_jwks(&field, "inline".to_owned(), inline.clone().into_bytes())?
            }
            (None, Some(r), None) => {
                let (source, bytes) = value_ref(
                    res,
                    policy,
                    r,
                    "jwks.json",
                    true,
                    &format!("{field}.jwks.valueRef"),
                )?;
                static_jwks(&field, source, bytes)?
            }
            (None, None, Some(r)) => {
                let remote = remote_jwks(res, policy, &format!("{field}.jwks.remote"), r)?;
                (remote.uri.clone(), JwksSettings::Remote(remote))
            }
            _ => {
                return Err(format!(
                    "{field}.jwks needs exactly one of inline, valueRef and remote"
                ));
            }
        };
        let mut claim_to_headers = Vec::new();
        for (k, c) in p.claim_to_headers.iter().enumerate() {
            if c.claim.is_empty() {
                return Err(format!(
                    "{field}.claimToHeaders[{k}].claim must not be empty"
                ));
            }
            let h = header_name(&format!("{field}.claimToHeaders[{k}].header"), &c.header)?;
            claim_to_headers.push((c.claim.clone(), h));
        }
        let clock_skew = match p.clock_skew.as_deref() {
            None => Duration::from_secs(60),
            Some(s) => parse_duration(s)
                .ok_or_else(|| format!("{field}.clockSkew {s:?} is not a valid duration"))?,
        };
        providers.push(JwtProviderSettings {
            name: p.name.clone(),
            issuer: p.issuer.clone(),
            audiences: p.audiences.clone(),
            jwks_source,
            jwks,
            claim_to_headers,
            clock_skew,
        });
    }
    Ok(JwtSettings { providers })
}

/// The default time an `extAuth` service has to answer (as for the `ExternalAuth` filter).
const EXT_AUTH_TIMEOUT: Duration = Duration::from_secs(2);

/// `extAuth`: the `ExternalAuth` filter's checks and backendRef resolution (shared with the
/// filter), then the policy's own fields. A backendRef that does not resolve gives
/// [`Backend::Invalid`] and the problem, not an error: the policy applies and fails closed.
fn ext_auth(
    lookup: &Lookup<'_>,
    policy: &ObjectKey,
    spec: &ExtAuthSpec,
) -> Result<(ExtAuthSettings, Result<(), Unresolved>), String> {
    let from = From {
        group: POLICY_GROUP,
        kind: "TrafficPolicy",
        namespace: &policy.namespace,
    };
    let resolved = external_auth(lookup, from, &spec.service).map_err(|p| p.message)?;
    // `timeout`: a Gateway API duration above zero (a zero timeout would refuse everything).
    let timeout = match spec.timeout.as_deref() {
        None => EXT_AUTH_TIMEOUT,
        Some(t) => parse_duration(t)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("extAuth.timeout {t:?} is not a duration above zero"))?,
    };
    let (backend, resolved) = match resolved {
        Ok(b) => (b, Ok(())),
        Err(u) => (
            Backend::Invalid {
                reason: u.message.clone(),
            },
            Err(u),
        ),
    };
    Ok((
        ExtAuthSettings {
            backend,
            config: spec.service.clone(),
            timeout,
            fail_open: spec.fail_open.unwrap_or(false),
        },
        resolved,
    ))
}

/// The most edits in one `set`, `add` or `remove` list (as HTTPRoute's header modifiers).
const MAX_EDITS: usize = 16;
/// The longest CEL expression, in bytes.
const MAX_EXPRESSION: usize = 4096;
/// Headers that frame the message or the connection: a transformation editing them could
/// desynchronize the client, gw and the backend (request smuggling), so they are refused.
const FRAMING_HEADERS: [&str; 8] = [
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn expression(field: &str, e: &str) -> Result<String, String> {
    if e.trim().is_empty() {
        return Err(format!("{field}: the CEL expression is empty"));
    }
    if e.len() > MAX_EXPRESSION {
        return Err(format!(
            "{field}: the CEL expression is {} bytes long; at most {MAX_EXPRESSION} are allowed",
            e.len()
        ));
    }
    Ok(e.to_owned())
}

/// One side's header edits: valid names, not framing headers, each name once across `set`,
/// `add` and `remove`, at most [`MAX_EDITS`] per list, non-empty expressions.
fn header_edits(
    field: &str,
    set: &[CelHeader],
    add: &[CelHeader],
    remove: &[String],
) -> Result<HeaderEdits, String> {
    let mut seen = BTreeSet::new();
    let mut name = |list: &str, i: usize, n: &str| -> Result<String, String> {
        let at = format!("{field}.{list}[{i}]");
        let n = header_name(&at, n)?;
        if FRAMING_HEADERS.contains(&n.as_str()) {
            return Err(format!(
                "{at}: {n:?} frames the message and cannot be transformed"
            ));
        }
        if !seen.insert(n.clone()) {
            return Err(format!(
                "{at}: header {n:?} appears twice; name each header once across set, add and \
                 remove"
            ));
        }
        Ok(n)
    };
    for (list, len) in [
        ("set", set.len()),
        ("add", add.len()),
        ("remove", remove.len()),
    ] {
        if len > MAX_EDITS {
            return Err(format!(
                "{field}.{list} has {len} entries; at most {MAX_EDITS} are allowed"
            ));
        }
    }
    let mut out = HeaderEdits::default();
    for (list, src, dst) in [("set", set, &mut out.set), ("add", add, &mut out.add)] {
        for (i, h) in src.iter().enumerate() {
            let n = name(list, i, &h.name)?;
            dst.push((
                n,
                expression(&format!("{field}.{list}[{i}].value"), &h.value)?,
            ));
        }
    }
    for (i, h) in remove.iter().enumerate() {
        out.remove.push(name("remove", i, h)?);
    }
    Ok(out)
}

/// `transformation`: validated structure; the expressions are compiled by the validator.
fn transformation(spec: &TransformationSpec) -> Result<TransformationSettings, String> {
    let mut out = TransformationSettings::default();
    if let Some(r) = &spec.request {
        out.request = header_edits("transformation.request", &r.set, &r.add, &r.remove)?;
        out.path = r
            .path
            .as_deref()
            .map(|p| expression("transformation.request.path", p))
            .transpose()?;
    }
    if let Some(r) = &spec.response {
        out.response = header_edits("transformation.response", &r.set, &r.add, &r.remove)?;
    }
    if out.request.is_empty() && out.path.is_none() && out.response.is_empty() {
        return Err(invalid(
            "transformation: set at least one request or response header edit or the path",
        ));
    }
    Ok(out)
}

/// A compiled block, and whether its `extAuth` backendRef resolves.
type Block = (Sections, Option<Result<(), Unresolved>>);

/// Validates and compiles one block.
fn sections(
    lookup: &Lookup<'_>,
    policy: &ObjectKey,
    block: &str,
    s: &PolicySettings,
    validator: Option<&PolicyValidator>,
) -> Result<Block, String> {
    let res = lookup.res;
    let at = |e: String| format!("{block}.{e}");
    let mut out = Sections::default();
    let mut resolved = None;
    if let Some(c) = &s.cors {
        check_cors(c).map_err(|p| at(format!("cors: {}", p.message)))?;
        out.cors = Some(Arc::new(c.clone()));
    }
    if let Some(r) = &s.rate_limit {
        out.rate_limit = Some(Arc::new(rate_limit(r).map_err(at)?));
    }
    if let Some(b) = &s.basic_auth {
        out.basic_auth = Some(Arc::new(basic_auth(res, policy, b).map_err(at)?));
    }
    if let Some(a) = &s.api_key_auth {
        out.api_key_auth = Some(Arc::new(api_key_auth(res, policy, a).map_err(at)?));
    }
    if let Some(j) = &s.jwt {
        out.jwt = Some(Arc::new(jwt(res, policy, j).map_err(at)?));
    }
    if let Some(a) = &s.ext_auth {
        let (settings, r) = ext_auth(lookup, policy, a).map_err(at)?;
        out.ext_auth = Some(Arc::new(settings));
        resolved = Some(r);
    }
    if let Some(t) = &s.transformation {
        out.transformation = Some(Arc::new(transformation(t).map_err(at)?));
    }
    if let Some(v) = validator {
        let checks = [
            out.cors.as_deref().map(PolicySection::Cors),
            out.rate_limit.as_deref().map(PolicySection::RateLimit),
            out.basic_auth.as_deref().map(PolicySection::BasicAuth),
            out.api_key_auth.as_deref().map(PolicySection::ApiKeyAuth),
            out.jwt.as_deref().map(PolicySection::Jwt),
            out.ext_auth.as_deref().map(PolicySection::ExtAuth),
            out.transformation
                .as_deref()
                .map(PolicySection::Transformation),
        ];
        for (name, section) in SECTIONS.iter().zip(checks) {
            if let Some(section) = section {
                v.check(section).map_err(|e| at(format!("{name}: {e}")))?;
            }
        }
    }
    Ok((out, resolved))
}

fn evaluate<'a>(
    lookup: &Lookup<'_>,
    key: &ObjectKey,
    policy: &'a TrafficPolicy,
    options: &CompileOptions,
) -> Evaluated<'a> {
    let mut out = Evaluated {
        key: key.clone(),
        policy,
        created: created(&policy.metadata),
        invalid: None,
        resolved: None,
        blocks: [Sections::default(), Sections::default()],
    };
    for (i, t) in policy.spec.target_refs.iter().enumerate() {
        if target_kind(t).is_none() {
            out.invalid = Some(format!(
                "targetRefs[{i}]: {}/{} is not a supported target; use a Gateway, ListenerSet, \
                 HTTPRoute or GRPCRoute of gateway.networking.k8s.io",
                t.group, t.kind
            ));
            return out;
        }
    }
    let validator = options.policy_validator.as_ref();
    for (i, (name, block)) in [
        ("default", &policy.spec.default),
        ("override", &policy.spec.override_),
    ]
    .into_iter()
    .enumerate()
    {
        if let Some(b) = block {
            match sections(lookup, key, name, b, validator) {
                Ok((s, resolved)) => {
                    out.blocks[i] = s;
                    // The first problem of either block is reported.
                    out.resolved = match (out.resolved.take(), resolved) {
                        (Some(Err(u)), _) | (_, Some(Err(u))) => Some(Err(u)),
                        (a, b) => a.or(b),
                    };
                }
                Err(e) => {
                    out.invalid = Some(e);
                    return out;
                }
            }
        }
    }
    out
}

fn target_kind(t: &PolicyTargetReference) -> Option<TargetKind> {
    match (t.group.as_str(), t.kind.as_str()) {
        (GATEWAY_GROUP, "Gateway") => Some(TargetKind::Gateway),
        (GATEWAY_GROUP | GATEWAY_X_GROUP, "ListenerSet") => Some(TargetKind::ListenerSet),
        (GATEWAY_GROUP, "HTTPRoute") => Some(TargetKind::Route(Kind::HttpRoute)),
        (GATEWAY_GROUP, "GRPCRoute") => Some(TargetKind::Route(Kind::GrpcRoute)),
        _ => None,
    }
}

/// Resolves one targetRef of a policy in `ns`.
fn resolve_target(
    res: &Resources,
    gateways: &[GatewayState<'_>],
    route_gateways: &HashMap<(Kind, ObjectKey), BTreeSet<ObjectKey>>,
    ns: &str,
    t: &PolicyTargetReference,
) -> TargetState {
    let Some(kind) = target_kind(t) else {
        return TargetState::NotFound(format!("{}/{} is not a supported target", t.group, t.kind));
    };
    let key = ObjectKey::new(ns, t.name.clone());
    let section = t.section_name.as_deref();
    let missing_section = |what: &str, s: &str| {
        TargetState::NotFound(format!("{} {key} has no {what} named {s:?}", t.kind))
    };
    let gateways = match kind {
        TargetKind::Gateway => {
            let Some(g) = res.gateways.get(&key) else {
                return TargetState::NotFound(format!("Gateway {key} not found"));
            };
            if let Some(s) = section
                && !g.spec.listeners.iter().any(|l| l.name == s)
            {
                return missing_section("listener", s);
            }
            gateways
                .iter()
                .filter(|g| g.key == key)
                .map(|g| g.key.clone())
                .collect()
        }
        TargetKind::ListenerSet => {
            let Some(ls) = res.listener_sets.get(&key) else {
                return TargetState::NotFound(format!("ListenerSet {key} not found"));
            };
            if let Some(s) = section
                && !ls.spec.listeners.iter().any(|l| l.name == s)
            {
                return missing_section("listener", s);
            }
            gateways
                .iter()
                .filter(|g| g.listener_sets.iter().any(|s| s.key == key && s.allowed))
                .map(|g| g.key.clone())
                .collect()
        }
        TargetKind::Route(route_kind) => {
            let rule_names: Option<Vec<Option<&str>>> = match route_kind {
                Kind::HttpRoute => res
                    .http_routes
                    .get(&key)
                    .map(|r| r.spec.rules.iter().map(|r| r.name.as_deref()).collect()),
                _ => res
                    .grpc_routes
                    .get(&key)
                    .map(|r| r.spec.rules.iter().map(|r| r.name.as_deref()).collect()),
            };
            let Some(rule_names) = rule_names else {
                return TargetState::NotFound(format!("{route_kind} {key} not found"));
            };
            if let Some(s) = section
                && !rule_names.contains(&Some(s))
            {
                return missing_section("rule", s);
            }
            route_gateways
                .get(&(route_kind, key))
                .cloned()
                .unwrap_or_default()
        }
    };
    TargetState::Found { kind, gateways }
}

/// Where a rule sits: the levels of the hierarchy, least specific first.
#[derive(Clone, Copy)]
struct RuleContext<'a> {
    gateway: &'a ObjectKey,
    listener_set: Option<&'a ObjectKey>,
    listener: &'a str,
    route_kind: Kind,
    route: &'a ObjectKey,
    rule: Option<&'a str>,
}

/// An attachment of a policy (through one targetRef) at one level.
#[derive(Clone, Copy)]
struct Attachment {
    level: u8,
    policy: usize,
    target: usize,
}

type TargetIndex = HashMap<(TargetKind, ObjectKey), Vec<(usize, usize, Option<String>)>>;

fn attachments(index: &TargetIndex, ctx: RuleContext<'_>) -> Vec<Attachment> {
    let mut out = Vec::new();
    let mut add = |level: u8, kind: TargetKind, key: &ObjectKey, section: Option<&str>| {
        if let Some(list) = index.get(&(kind, key.clone())) {
            for (policy, target, s) in list {
                if s.as_deref() == section {
                    out.push(Attachment {
                        level,
                        policy: *policy,
                        target: *target,
                    });
                }
            }
        }
    };
    add(0, TargetKind::Gateway, ctx.gateway, None);
    match ctx.listener_set {
        Some(ls) => {
            add(1, TargetKind::ListenerSet, ls, None);
            add(2, TargetKind::ListenerSet, ls, Some(ctx.listener));
        }
        None => add(2, TargetKind::Gateway, ctx.gateway, Some(ctx.listener)),
    }
    add(3, TargetKind::Route(ctx.route_kind), ctx.route, None);
    if let Some(rule) = ctx.rule {
        add(4, TargetKind::Route(ctx.route_kind), ctx.route, Some(rule));
    }
    out
}

/// The effective policy of a rule: per section, the least specific override, else the most
/// specific default; ties at a level go to the older policy, then by namespace/name (the
/// policies are sorted that way, so a lower index wins).
fn effective(policies: &[Evaluated<'_>], found: &[Attachment]) -> Option<RulePolicy> {
    if found.is_empty() {
        return None;
    }
    fn pick<T>(
        policies: &[Evaluated<'_>],
        found: &[Attachment],
        get: impl Fn(&Sections) -> Option<&Arc<T>>,
    ) -> Option<Applied<T>> {
        let winner = |block: PolicyBlock| {
            found
                .iter()
                .filter_map(|a| {
                    let p = &policies[a.policy];
                    get(p.block(block)).map(|s| (a, s))
                })
                .min_by_key(|(a, _)| {
                    // Overrides: less specific first; defaults: more specific first.
                    let level = match block {
                        PolicyBlock::Override => a.level,
                        PolicyBlock::Default => u8::MAX - a.level,
                    };
                    (level, a.policy)
                })
                .map(|(a, s)| Applied {
                    policy: policies[a.policy].key.clone(),
                    target: a.target,
                    block,
                    settings: s.clone(),
                })
        };
        winner(PolicyBlock::Override).or_else(|| winner(PolicyBlock::Default))
    }
    let out = RulePolicy {
        cors: pick(policies, found, |s| s.cors.as_ref()),
        rate_limit: pick(policies, found, |s| s.rate_limit.as_ref()),
        basic_auth: pick(policies, found, |s| s.basic_auth.as_ref()),
        api_key_auth: pick(policies, found, |s| s.api_key_auth.as_ref()),
        jwt: pick(policies, found, |s| s.jwt.as_ref()),
        ext_auth: pick(policies, found, |s| s.ext_auth.as_ref()),
        transformation: pick(policies, found, |s| s.transformation.as_ref()),
    };
    (!out.is_empty()).then_some(out)
}

/// A target's identity for conflict detection: kind, object and section.
type TargetId = (TargetKind, ObjectKey, Option<String>);

/// GEP-713 conflicts: policies at the same level (the same target and section) that set the
/// same section of the same block cannot be merged; the older one wins, then by
/// namespace/name. Returns, per (policy, target), the message of the conflict it lost.
fn conflicts(policies: &[Evaluated<'_>]) -> HashMap<(usize, usize), String> {
    let mut claimed: HashMap<(TargetId, PolicyBlock, &str), usize> = HashMap::new();
    let mut lost = HashMap::new();
    for (pi, p) in policies.iter().enumerate() {
        if p.invalid.is_some() {
            continue;
        }
        for (ti, t) in p.policy.spec.target_refs.iter().enumerate() {
            let Some(kind) = target_kind(t) else { continue };
            let id: TargetId = (
                kind,
                ObjectKey::new(p.key.namespace.clone(), t.name.clone()),
                t.section_name.clone(),
            );
            for block in [PolicyBlock::Default, PolicyBlock::Override] {
                for section in SECTIONS {
                    if !p.block(block).has(section) {
                        continue;
                    }
                    match claimed.get(&(id.clone(), block, section)) {
                        Some(&winner) if winner != pi => {
                            let b = match block {
                                PolicyBlock::Default => "default",
                                PolicyBlock::Override => "override",
                            };
                            lost.entry((pi, ti)).or_insert_with(|| {
                                format!(
                                    "TrafficPolicy {} is older (or first by name) and also sets \
                                     `{b}.{section}` for {} {}; this policy does not apply there",
                                    policies[winner].key, t.kind, t.name
                                )
                            });
                        }
                        Some(_) => {}
                        None => {
                            claimed.insert((id.clone(), block, section), pi);
                        }
                    }
                }
            }
        }
    }
    lost
}

/// Evaluates every TrafficPolicy, puts the effective policy on every rule of `gateways`,
/// pushes the policies' status, and returns the targets to mark as affected once every
/// status entry exists (see [`mark_affected`]).
pub(crate) fn apply(
    lookup: &Lookup<'_>,
    gateways: &mut [GatewayState<'_>],
    entries: &mut Vec<StatusEntry>,
    options: &CompileOptions,
) -> Vec<Affected> {
    let res = lookup.res;
    if res.traffic_policies.is_empty() {
        return Vec::new();
    }
    let mut policies: Vec<Evaluated<'_>> = res
        .traffic_policies
        .iter()
        .map(|(k, p)| evaluate(lookup, k, p, options))
        .collect();
    policies.sort_by(|a, b| {
        let rank = |e: &Evaluated<'_>| (e.created.is_none(), e.created.unwrap_or(0));
        rank(a).cmp(&rank(b)).then_with(|| a.key.cmp(&b.key))
    });

    // The Gateways each route is attached to.
    let mut route_gateways: HashMap<(Kind, ObjectKey), BTreeSet<ObjectKey>> = HashMap::new();
    for g in gateways.iter() {
        for t in &g.tables {
            for e in &t.http {
                route_gateways
                    .entry((Kind::HttpRoute, e.route.key.clone()))
                    .or_default()
                    .insert(g.key.clone());
            }
            for e in &t.grpc {
                route_gateways
                    .entry((Kind::GrpcRoute, e.route.key.clone()))
                    .or_default()
                    .insert(g.key.clone());
            }
        }
    }

    let lost = conflicts(&policies);
    let mut states: Vec<Vec<TargetState>> = Vec::with_capacity(policies.len());
    let mut index: TargetIndex = HashMap::new();
    for (pi, p) in policies.iter().enumerate() {
        let mut list = Vec::new();
        for (ti, t) in p.policy.spec.target_refs.iter().enumerate() {
            let mut state = resolve_target(res, gateways, &route_gateways, &p.key.namespace, t);
            if let (TargetState::Found { kind, gateways }, None) = (&state, &p.invalid) {
                if let Some(msg) = lost.get(&(pi, ti)) {
                    state = TargetState::Conflicted {
                        message: msg.clone(),
                        gateways: gateways.clone(),
                    };
                } else {
                    index
                        .entry((
                            *kind,
                            ObjectKey::new(p.key.namespace.clone(), t.name.clone()),
                        ))
                        .or_default()
                        .push((pi, ti, t.section_name.clone()));
                }
            }
            list.push(state);
        }
        states.push(list);
    }

    // The effective policy of every rule, in the context of its listener.
    if !index.is_empty() {
        for g in gateways.iter_mut() {
            let gw_key = g.key.clone();
            for t in &mut g.tables {
                let listener_set = (t.owner.kind == Kind::ListenerSet).then(|| t.owner.key.clone());
                for e in &mut t.http {
                    let ctx = RuleContext {
                        gateway: &gw_key,
                        listener_set: listener_set.as_ref(),
                        listener: &t.name,
                        route_kind: Kind::HttpRoute,
                        route: &e.route.key,
                        rule: e.rule_name.as_deref(),
                    };
                    let policy = effective(&policies, &attachments(&index, ctx)).map(Box::new);
                    // Entries are shared: written only when the policy changes them.
                    if e.policy != policy {
                        e.policy = policy;
                    }
                }
                for e in &mut t.grpc {
                    let ctx = RuleContext {
                        gateway: &gw_key,
                        listener_set: listener_set.as_ref(),
                        listener: &t.name,
                        route_kind: Kind::GrpcRoute,
                        route: &e.route.key,
                        rule: e.rule_name.as_deref(),
                    };
                    let policy = effective(&policies, &attachments(&index, ctx)).map(Box::new);
                    // Entries are shared: written only when the policy changes them.
                    if e.policy != policy {
                        e.policy = policy;
                    }
                }
            }
        }
    }

    let mut affected = Vec::new();
    for (p, targets) in policies.iter().zip(&states) {
        let generation = p.policy.metadata.generation();
        // Ancestor -> (Accepted condition); the worst outcome wins per ancestor.
        let mut ancestors: BTreeMap<AncestorKey, (u8, Condition)> = BTreeMap::new();
        let mut put = |key: AncestorKey, rank: u8, c: Condition| {
            let slot = ancestors.entry(key).or_insert((rank, c.clone()));
            if rank > slot.0 {
                *slot = (rank, c);
            }
        };
        for (t, state) in p.policy.spec.target_refs.iter().zip(targets) {
            match state {
                TargetState::NotFound(msg) => put(
                    AncestorKey::of_target(t, &p.key.namespace),
                    3,
                    Condition::fail("Accepted", "TargetNotFound", msg.clone(), generation),
                ),
                TargetState::Conflicted { message, gateways } => {
                    for gw in gateways {
                        put(
                            AncestorKey::gateway(gw, t),
                            2,
                            Condition::fail("Accepted", "Conflicted", message.clone(), generation),
                        );
                    }
                }
                TargetState::Found { kind, gateways } => {
                    for gw in gateways {
                        let c = match &p.invalid {
                            Some(msg) => (
                                4,
                                Condition::fail("Accepted", "Invalid", msg.clone(), generation),
                            ),
                            None => (
                                1,
                                Condition::ok(
                                    "Accepted",
                                    "Accepted",
                                    "policy accepted",
                                    generation,
                                ),
                            ),
                        };
                        put(AncestorKey::gateway(gw, t), c.0, c.1);
                    }
                    if p.invalid.is_none() && !gateways.is_empty() {
                        affected.push(Affected {
                            kind: match kind {
                                TargetKind::Gateway => Kind::Gateway,
                                TargetKind::ListenerSet => Kind::ListenerSet,
                                TargetKind::Route(k) => *k,
                            },
                            key: ObjectKey::new(p.key.namespace.clone(), t.name.clone()),
                            listener: match kind {
                                TargetKind::Route(_) => None,
                                _ => t.section_name.clone(),
                            },
                            rule: match kind {
                                TargetKind::Route(_) => t.section_name.clone(),
                                _ => None,
                            },
                            gateways: gateways.clone(),
                            policy: p.key.clone(),
                        });
                    }
                }
            }
        }
        // A policy without targets that resolve and without problems is relevant to no
        // ancestor: "An empty list means the Policy is not relevant for any ancestors."
        let mut status = PolicyStatus::default();
        for (k, (_, c)) in ancestors.into_iter().take(MAX_ANCESTORS) {
            let mut conditions = vec![c];
            // Where the policy applies, whether its auth service resolves.
            if conditions[0].reason == "Accepted"
                && let Some(resolved) = &p.resolved
            {
                conditions.push(match resolved {
                    Ok(()) => Condition::ok(
                        "ResolvedRefs",
                        "ResolvedRefs",
                        "the extAuth backendRef resolves",
                        generation,
                    ),
                    Err(u) => Condition::fail(
                        "ResolvedRefs",
                        u.reason,
                        format!(
                            "extAuth.backendRef: {}; requests through this policy get 500",
                            u.message
                        ),
                        generation,
                    ),
                });
            }
            status.ancestors.push(PolicyAncestorStatus {
                ancestor_ref: k.into_ref(),
                controller_name: options.controller_name.clone(),
                conditions,
            });
        }
        entries.push(StatusEntry {
            kind: Kind::TrafficPolicy,
            key: p.key.clone(),
            generation,
            status: ObjectStatus::Policy(status),
        });
    }
    affected
}

/// An ancestorRef, ordered for a stable status.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct AncestorKey {
    group: String,
    kind: String,
    namespace: String,
    name: String,
    section: Option<String>,
}

impl AncestorKey {
    /// The Gateway a target applies through; with the listener when the target is one.
    fn gateway(gw: &ObjectKey, t: &PolicyTargetReference) -> Self {
        AncestorKey {
            group: GATEWAY_GROUP.to_owned(),
            kind: "Gateway".to_owned(),
            namespace: gw.namespace.clone(),
            name: gw.name.clone(),
            section: (t.kind == "Gateway")
                .then(|| t.section_name.clone())
                .flatten(),
        }
    }

    /// The target itself (for a target that does not exist).
    fn of_target(t: &PolicyTargetReference, ns: &str) -> Self {
        AncestorKey {
            group: t.group.clone(),
            kind: t.kind.clone(),
            namespace: ns.to_owned(),
            name: t.name.clone(),
            section: t.section_name.clone(),
        }
    }

    fn into_ref(self) -> ParentReference {
        ParentReference {
            group: crate::resources::known_name(self.group),
            kind: crate::resources::known_name(self.kind),
            namespace: Some(self.namespace),
            name: self.name,
            section_name: self.section,
            port: None,
        }
    }
}

/// The condition type GEP-713 puts on targets: `<domain>/TrafficPolicyAffected`, the domain
/// being that of the controller name ("Implementations should use their own unique domain
/// prefix for this condition type ... the same domain as in the `controllerName` field").
pub fn affected_condition_type(controller_name: &str) -> String {
    let domain = controller_name
        .split_once('/')
        .map_or(controller_name, |(d, _)| d);
    let domain = if domain.is_empty() { "gw.dev" } else { domain };
    format!("{domain}/TrafficPolicyAffected")
}

/// Adds the `TrafficPolicyAffected` condition to every target of an accepted policy: "The
/// controller SHOULD add to the status of the `Gateway` object a condition
/// `colors.controller.k8s.io/ColorPolicyAffected: true`, and reason ideally referring to the
/// `policy-namespace/my-policy` by name" (GEP-713); on the listener for a listener target.
pub(crate) fn mark_affected(
    res: &Resources,
    affected: &[Affected],
    entries: &mut [StatusEntry],
    options: &CompileOptions,
) {
    if affected.is_empty() {
        return;
    }
    let type_ = affected_condition_type(&options.controller_name);
    // Target (kind, key, listener) -> policies (and rules) affecting it.
    let mut by_target: BTreeMap<(Kind, &ObjectKey, Option<&str>), Vec<&Affected>> = BTreeMap::new();
    for a in affected {
        by_target
            .entry((a.kind, &a.key, a.listener.as_deref()))
            .or_default()
            .push(a);
    }
    for ((kind, key, listener), list) in by_target {
        let Some(entry) = entries.iter_mut().find(|e| e.kind == kind && &e.key == key) else {
            continue;
        };
        let names: BTreeSet<String> = list
            .iter()
            .map(|a| match &a.rule {
                Some(r) => format!("{} (rule {r})", a.policy),
                None => a.policy.to_string(),
            })
            .collect();
        let message = format!(
            "affected by TrafficPolicy {}",
            names.into_iter().collect::<Vec<_>>().join(", ")
        );
        let condition = Condition::ok(type_.clone(), "Affected", message, entry.generation);
        let set = |conditions: &mut Vec<Condition>| {
            conditions.retain(|c| c.type_ != type_);
            conditions.push(condition.clone());
        };
        match (&mut entry.status, listener) {
            (ObjectStatus::Gateway(s), None) => set(&mut s.conditions),
            (ObjectStatus::Gateway(s), Some(l)) => {
                if let Some(ls) = s.listeners.iter_mut().find(|x| x.name == l) {
                    set(&mut ls.conditions);
                }
            }
            (ObjectStatus::ListenerSet(s), None) => set(&mut s.conditions),
            (ObjectStatus::ListenerSet(s), Some(l)) => {
                if let Some(ls) = s.listeners.iter_mut().find(|x| x.name == l) {
                    set(&mut ls.conditions);
                }
            }
            (ObjectStatus::Route(s), _) => {
                let gateways: BTreeSet<&ObjectKey> =
                    list.iter().flat_map(|a| a.gateways.iter()).collect();
                for parent in &mut s.parents {
                    if gateways.iter().any(|g| {
                        super::parent_is_gateway(res, &parent.parent_ref, &key.namespace, g)
                    }) {
                        set(&mut parent.conditions);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
