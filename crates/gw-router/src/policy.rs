//! TrafficPolicy: the gw-policy layers of each rule, built once per table.
//!
//! gw-model computes each rule's effective policy ([`RulePolicy`]); [`Routes::build`] turns it
//! into one tower stack per rule, so a request pays a lookup and a clone. The stack runs after
//! the rule is matched and before its filters and backends (DESIGN.md's data flow), in this
//! order, outermost first:
//!
//! 1. CORS: preflights are answered here (browsers send them without credentials);
//! 2. rate limit: 429 before any password hashing or auth service call, so guessing is
//!    bounded too and a flood never reaches the auth service;
//! 3. basic auth, 4. API key, 5. JWT: every configured one must pass (401/403);
//! 6. extAuth: the external auth service, asked only for requests the local checks passed,
//!    and seeing the headers JWT `claimToHeaders` set. It is the `ExternalAuth` filter's check
//!    (same client, same answers); the auth service's timeout and failure mode are the
//!    policy's (default 2 s, fail closed with 403);
//! 7. transformation: last, so that its CEL expressions see the validated JWT claims (`jwt`),
//!    the headers the auth service added, the client address (`source`) and the TLS peer
//!    (`connection`).
//!
//! Rate-limit buckets are shared by every rule whose limit comes from the same policy, target
//! and block ([`Applied::origin`]): a limit on a Gateway counts the Gateway's traffic as a whole,
//! one on a route that route's. Buckets start empty again when the table is rebuilt.
//!
//! A remote JWKS (`jwks.remote`) is fetched by gw-policy's
//! [`RemoteJwks`], one per URL, cache duration and CAs, shared by
//! the tables alive at once: a reload that keeps a provider keeps its cached keys and fetch
//! schedule; a changed or removed provider's fetcher stops with the last table that used it.
//!
//! For gRPC requests, the answers of the layers (401, 403, 429) become trailers-only gRPC
//! answers (`UNAUTHENTICATED`, `PERMISSION_DENIED`, `RESOURCE_EXHAUSTED`), their headers kept.
//!
//! [`Routes::build`]: crate::Routes::build
//! [`Applied::origin`]: gw_model::table::Applied::origin

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use gw_model::compile::{PolicySection, PolicyValidator};
use gw_model::resources::{Cors, ObjectKey};
use gw_model::table::{
    ApiKeyLocation, ApiKeySettings, Applied, BasicAuthSettings, ExtAuthSettings, JwksSettings,
    JwtSettings, PolicyBlock, RateLimitKey, RateLimitSettings, RemoteJwksSettings, RulePolicy,
    TransformationSettings,
};
use gw_policy::api_key::{ApiKeyLayer, CompiledApiKeys, KeyLocation};
use gw_policy::basic_auth::{BasicAuthLayer, CompiledBasicAuth};
use gw_policy::cors::{CompiledCors, CorsLayer};
use gw_policy::ext_authz::{CompiledExtAuthz, ExtAuthzConfig, FailureMode};
use gw_policy::jwt::{
    CompiledJwt, JwkSet, JwksSource, JwtConfig, JwtError, JwtLayer, RemoteJwks, RemoteJwksConfig,
    StaticJwks,
};
use gw_policy::ratelimit::{KeySource, RateLimitConfig, RateLimitLayer};
use gw_policy::transform::{TransformConfig, TransformLayer};
use http::{HeaderName, Request, Response};
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;

use crate::backend::{BackendTarget, BuildCtx};
use crate::body::Body;
use crate::service::PolicyAuthLayer;

/// A rule's policy layers over the rest of the request path.
pub(crate) type PolicyService = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// The policy of a rule, ready to serve.
#[derive(Clone)]
pub(crate) enum PolicyStack {
    /// The layers.
    Layers(PolicyService),
    /// The policy could not be built (gw-model was compiled without the gw-router validator, or
    /// an `extAuth` backendRef does not resolve): requests are answered 500 rather than let
    /// through unchecked.
    Broken(Arc<str>),
}

impl std::fmt::Debug for PolicyStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyStack::Layers(_) => f.write_str("PolicyStack::Layers(..)"),
            PolicyStack::Broken(why) => write!(f, "PolicyStack::Broken({why:?})"),
        }
    }
}

fn cors(c: &Cors) -> Result<CorsLayer, String> {
    CompiledCors::new(c)
        .map(CorsLayer::new)
        .map_err(|e| e.to_string())
}

fn rate_limit(r: &RateLimitSettings) -> Result<RateLimitLayer, String> {
    let key = match &r.key {
        RateLimitKey::Shared => KeySource::Route,
        RateLimitKey::ClientIp => KeySource::ClientIp,
        RateLimitKey::Header(h) => KeySource::header(h).map_err(|e| e.to_string())?,
        other => return Err(format!("rate limit key {other:?} is not supported")),
    };
    RateLimitConfig::new(r.burst, r.requests, r.period)
        .key(key)
        .compile()
        .map(RateLimitLayer::new)
        .map_err(|e| e.to_string())
}

fn basic_auth(b: &BasicAuthSettings) -> Result<BasicAuthLayer, String> {
    CompiledBasicAuth::new(&b.realm, &b.htpasswd)
        .map(BasicAuthLayer::new)
        .map_err(|e| format!("htpasswd in Secret {}: {e}", b.secret))
}

fn api_key(a: &ApiKeySettings) -> Result<ApiKeyLayer, String> {
    let location = match &a.location {
        ApiKeyLocation::Header(h) => KeyLocation::header(h),
        ApiKeyLocation::Query(q) => KeyLocation::query(q),
        other => return Err(format!("API key location {other:?} is not supported")),
    }
    .map_err(|e| e.to_string())?;
    CompiledApiKeys::new(location, a.keys.iter().map(|(c, k)| (c, k)))
        .map(ApiKeyLayer::new)
        .map_err(|e| e.to_string())
}

/// Whether a layer is built to check settings (the validator: nothing starts) or to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Build {
    Check,
    Serve,
}

fn remote_config(r: &RemoteJwksSettings) -> Result<RemoteJwksConfig, JwtError> {
    let config = if r.ca_pem.is_empty() {
        RemoteJwksConfig::new(&r.uri)?
    } else {
        RemoteJwksConfig::with_ca_pem(&r.uri, r.ca_pem.iter().map(String::as_str))?
    };
    Ok(config.cache_duration(r.cache_duration))
}

/// The fetcher of a remote JWKS, shared by every table that uses the same settings while one
/// of them is alive: a reload builds the new table while the old one still serves, so an
/// unchanged provider keeps its cached keys (and its schedule) instead of fetching again.
fn shared_remote(r: &RemoteJwksSettings) -> Result<Arc<RemoteJwks>, JwtError> {
    static SOURCES: OnceLock<Mutex<HashMap<RemoteJwksSettings, Weak<RemoteJwks>>>> =
        OnceLock::new();
    // Poisoning only means a panic while inserting a Weak; the map is still consistent.
    let mut sources = SOURCES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    sources.retain(|_, s| s.strong_count() > 0);
    if let Some(s) = sources.get(r).and_then(Weak::upgrade) {
        return Ok(s);
    }
    let source = Arc::new(RemoteJwks::new(remote_config(r)?));
    sources.insert(r.clone(), Arc::downgrade(&source));
    Ok(source)
}

fn jwks_source(jwks: &JwksSettings, build: Build) -> Result<Arc<dyn JwksSource>, JwtError> {
    Ok(match (jwks, build) {
        (JwksSettings::Static(doc), _) => Arc::new(StaticJwks::from_json(doc.as_bytes())?),
        // Checking: the URL and the CAs are usable; the keys are fetched when serving.
        (JwksSettings::Remote(r), Build::Check) => {
            remote_config(r)?;
            Arc::new(StaticJwks::new(JwkSet::default()))
        }
        (JwksSettings::Remote(r), Build::Serve) => shared_remote(r)?,
        (other, _) => {
            return Err(JwtError::JwksSyntax(format!(
                "JWKS source {other:?} is not supported by gw-router"
            )));
        }
    })
}

fn jwt(j: &JwtSettings, build: Build) -> Result<JwtLayer, String> {
    let mut providers = Vec::with_capacity(j.providers.len());
    for p in &j.providers {
        let err = |e: &dyn std::fmt::Display| format!("provider {:?}: {e}", p.name);
        let jwks = jwks_source(&p.jwks, build).map_err(|e| err(&e))?;
        let mut config = JwtConfig::new().clock_skew(p.clock_skew);
        if let Some(iss) = &p.issuer {
            config = config.issuer(iss.clone());
        }
        for aud in &p.audiences {
            config = config.audience(aud.clone());
        }
        for (claim, header) in &p.claim_to_headers {
            let name = HeaderName::from_bytes(header.as_bytes()).map_err(|e| err(&e))?;
            config = config.claim_to_header(claim.clone(), name);
        }
        providers.push(CompiledJwt::new(config, jwks).map_err(|e| err(&e))?);
    }
    Ok(JwtLayer::any_of(providers))
}

/// The auth settings of an `extAuth` section: the `ExternalAuth` filter's, with the policy's
/// timeout and failure mode.
fn ext_auth_config(a: &ExtAuthSettings) -> Result<CompiledExtAuthz, String> {
    let mode = if a.fail_open {
        FailureMode::Open
    } else {
        FailureMode::Closed
    };
    ExtAuthzConfig::from_filter(&a.config)
        .and_then(|c| c.timeout(a.timeout).failure_mode(mode).compile())
        .map_err(|e| e.to_string())
}

/// The `extAuth` layer. A backendRef that does not resolve is an error here, so the rule
/// answers 500 (fail closed), as an `ExternalAuth` filter in that state does.
fn ext_auth(a: &ExtAuthSettings, ctx: BuildCtx<'_>) -> Result<PolicyAuthLayer, String> {
    let config = ext_auth_config(a)?;
    let backend = BackendTarget::new(&a.backend, ctx);
    if let BackendTarget::Invalid(reason) = &*backend {
        return Err(format!("extAuth backendRef: {reason}"));
    }
    Ok(PolicyAuthLayer::new(config, backend))
}

/// The `transformation` layer: the CEL expressions compiled by gw-policy.
fn transformation(t: &TransformationSettings) -> Result<TransformLayer, String> {
    let mut config = TransformConfig::new();
    for (name, expr) in &t.request.set {
        config = config.set_request_header(name, expr);
    }
    for (name, expr) in &t.request.add {
        config = config.add_request_header(name, expr);
    }
    for name in &t.request.remove {
        config = config.remove_request_header(name);
    }
    if let Some(path) = &t.path {
        config = config.rewrite_path(path);
    }
    for (name, expr) in &t.response.set {
        config = config.set_response_header(name, expr);
    }
    for (name, expr) in &t.response.add {
        config = config.add_response_header(name, expr);
    }
    for name in &t.response.remove {
        config = config.remove_response_header(name);
    }
    config
        .compile()
        .map(TransformLayer::new)
        .map_err(|e| e.to_string())
}

/// The validator gw-model calls on every TrafficPolicy section: it builds the section's layer
/// with gw-policy, so that what gw-model accepts, the router can serve (htpasswd hash schemes,
/// JWKS key types, rate limits within range, auth settings, CEL expressions). An `extAuth`
/// whose backendRef does not resolve is not refused: the policy applies and its rules answer
/// 500 until it resolves, so that authorization never silently turns off. Pass it in
/// [`CompileOptions::policy_validator`](gw_model::CompileOptions::policy_validator).
///
/// ```
/// let options = gw_router::gw_model::CompileOptions {
///     policy_validator: Some(gw_router::policy_validator()),
///     ..gw_router::gw_model::CompileOptions::new("gw.dev/gateway")
/// };
/// # let _ = options;
/// ```
pub fn policy_validator() -> PolicyValidator {
    PolicyValidator::new(|section| match section {
        PolicySection::Cors(c) => cors(c).map(drop),
        PolicySection::RateLimit(r) => rate_limit(r).map(drop),
        PolicySection::BasicAuth(b) => basic_auth(b).map(drop),
        PolicySection::ApiKeyAuth(a) => api_key(a).map(drop),
        PolicySection::Jwt(j) => jwt(j, Build::Check).map(drop),
        PolicySection::ExtAuth(a) => ext_auth_config(a).map(drop),
        PolicySection::Transformation(t) => transformation(t).map(drop),
        _ => Err("this section is not supported by gw-router".to_owned()),
    })
}

type Origin = (ObjectKey, usize, PolicyBlock);

fn origin<T>(a: &Applied<T>) -> Origin {
    (a.policy.clone(), a.target, a.block)
}

/// Layers built so far while building one table: rules whose section has the same origin
/// share the layer (and so the rate-limit buckets and parsed keys).
#[derive(Default)]
pub(crate) struct PolicyCache {
    cors: HashMap<Origin, CorsLayer>,
    rate_limit: HashMap<Origin, RateLimitLayer>,
    basic_auth: HashMap<Origin, BasicAuthLayer>,
    api_key: HashMap<Origin, ApiKeyLayer>,
    jwt: HashMap<Origin, JwtLayer>,
    ext_auth: HashMap<Origin, PolicyAuthLayer>,
    transformation: HashMap<Origin, TransformLayer>,
}

fn cached<T, L: Clone>(
    map: &mut HashMap<Origin, L>,
    applied: Option<&Applied<T>>,
    build: impl Fn(&T) -> Result<L, String>,
) -> Result<Option<L>, String> {
    let Some(a) = applied else { return Ok(None) };
    let key = origin(a);
    if let Some(l) = map.get(&key) {
        return Ok(Some(l.clone()));
    }
    let layer = build(&a.settings).map_err(|e| format!("TrafficPolicy {}: {e}", a.policy))?;
    map.insert(key, layer.clone());
    Ok(Some(layer))
}

impl PolicyCache {
    /// The stack of a rule's effective policy over `inner`.
    pub(crate) fn build(&mut self, p: &RulePolicy, ctx: BuildCtx<'_>) -> PolicyStack {
        match self.layers(p, ctx) {
            Ok(service) => PolicyStack::Layers(service),
            Err(why) => {
                tracing::error!(%why, "TrafficPolicy cannot be applied; requests to its rules get 500");
                PolicyStack::Broken(why.into())
            }
        }
    }

    fn layers(&mut self, p: &RulePolicy, ctx: BuildCtx<'_>) -> Result<PolicyService, String> {
        let cors = cached(&mut self.cors, p.cors.as_ref(), cors)?;
        let rate = cached(&mut self.rate_limit, p.rate_limit.as_ref(), rate_limit)?;
        let basic = cached(&mut self.basic_auth, p.basic_auth.as_ref(), basic_auth)?;
        let keys = cached(&mut self.api_key, p.api_key_auth.as_ref(), api_key)?;
        let jwt = cached(&mut self.jwt, p.jwt.as_ref(), |j| jwt(j, Build::Serve))?;
        let auth = cached(&mut self.ext_auth, p.ext_auth.as_ref(), |a| {
            ext_auth(a, ctx)
        })?;
        let transform = cached(
            &mut self.transformation,
            p.transformation.as_ref(),
            transformation,
        )?;
        let svc = ServiceBuilder::new()
            .option_layer(cors)
            .option_layer(rate)
            .option_layer(basic)
            .option_layer(keys)
            .option_layer(jwt)
            .option_layer(auth)
            .option_layer(transform)
            .service(tower::service_fn(crate::service::after_policy));
        Ok(BoxCloneSyncService::new(svc))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn settings(uri: &str, cache: u64, ca: &str) -> RemoteJwksSettings {
        RemoteJwksSettings {
            uri: uri.to_owned(),
            cache_duration: Duration::from_secs(cache),
            ca_pem: vec![ca.to_owned()],
        }
    }

    fn ca() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .pem()
    }

    // A reload with an unchanged remote provider keeps its fetcher (and so its cached keys);
    // other settings get their own; once no table uses a fetcher, it is gone.
    #[test]
    fn remote_jwks_fetchers_are_shared_while_a_table_uses_them() {
        let ca = ca();
        let a = settings("https://idp.example.com/a", 300, &ca);
        let first = shared_remote(&a).unwrap();
        let again = shared_remote(&a).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let other = shared_remote(&settings("https://idp.example.com/a", 600, &ca)).unwrap();
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!(other.config().cache_duration, Duration::from_secs(600));
        let weak = Arc::downgrade(&first);
        drop((first, again));
        assert!(
            weak.upgrade().is_none(),
            "the registry holds no strong reference"
        );
        let fresh = shared_remote(&a).unwrap();
        assert_eq!(fresh.config().uri, "https://idp.example.com/a");
    }

    // Checking a policy starts no fetch, but refuses unusable settings.
    #[test]
    fn checking_a_remote_jwks_validates_without_fetching() {
        let ok = JwksSettings::Remote(settings("https://idp.example.com/b", 300, &ca()));
        assert!(jwks_source(&ok, Build::Check).unwrap().keys().is_empty());
        let no_ca = JwksSettings::Remote(settings("https://idp.example.com/b", 300, "junk"));
        assert!(matches!(
            jwks_source(&no_ca, Build::Check),
            Err(JwtError::NoTrustedCa)
        ));
    }
}
