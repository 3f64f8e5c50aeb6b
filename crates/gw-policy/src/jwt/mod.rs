//! JWT bearer token validation (RFC 7519, RFC 6750).
//!
//! The token is read from `Authorization: Bearer ...`. Its signature is verified with a key of
//! the [`JwksSource`] (matched by `kid` when the token has one, and by algorithm: RS256/384/512,
//! PS256/384/512, ES256, ES384, EdDSA; `none` and HMAC are never accepted), then `exp` and
//! `nbf` are checked with the configured clock skew, and `iss` and `aud` against the accepted
//! issuers and audiences. Signatures are verified with `ring`.
//!
//! Keys come from a [`StaticJwks`] (a document loaded once) or a [`RemoteJwks`] (an HTTPS URL,
//! cached and refreshed in the background; a request that arrives before its first fetch waits
//! for it, boundedly).
//!
//! A request without a token is answered `401` with `WWW-Authenticate: Bearer`; a request with
//! a refused token `401` with `WWW-Authenticate: Bearer error="invalid_token"`. A valid
//! token's claims are a [`JwtClaims`] request extension (a `serde_json::Value`), for later
//! policies such as CEL transformations.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//!
//! use gw_policy::jwt::{CompiledJwt, JwtConfig, JwtLayer, StaticJwks};
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let jwks = StaticJwks::from_json(br#"{"keys": [{
//!     "kty": "OKP", "crv": "Ed25519", "kid": "k1",
//!     "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
//! }]}"#)?;
//! let config = JwtConfig::new()
//!     .issuer("https://issuer.example.com")
//!     .audience("orders");
//! let jwt = CompiledJwt::new(config, Arc::new(jwks))?;
//! let svc = ServiceBuilder::new()
//!     .layer(JwtLayer::new(jwt))
//!     .service(service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::new()))
//!     }));
//!
//! let resp = svc.clone().oneshot(Request::new(String::new())).await?;
//! assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(resp.headers()["www-authenticate"], "Bearer");
//!
//! let forged = Request::get("/").header("authorization", "Bearer e30.e30.AAAA").body(String::new())?;
//! let resp = svc.oneshot(forged).await?;
//! assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(resp.headers()["www-authenticate"], r#"Bearer error="invalid_token""#);
//! # Ok(())
//! # }
//! ```

mod error;
mod future;
mod jwks;
mod layer;
mod remote;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use serde_json::Value;
use tower::Service;

pub use self::error::{JwtError, TokenError};
pub use self::future::ResponseFuture;
pub use self::jwks::{JwkSet, JwksSource, Loading, StaticJwks};
pub use self::layer::JwtLayer;
pub use self::remote::{
    FetchError, FetchFuture, FetchJwks, HttpsFetcher, RemoteJwks, RemoteJwksConfig,
};
use crate::outcome::{Outcome, response_with};

/// A signature algorithm this crate verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(clippy::upper_case_acronyms)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
}

impl Algorithm {
    /// Every supported algorithm.
    pub const ALL: [Algorithm; 9] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    /// The algorithm with JOSE name `name` (`RS256`, ...), if supported.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
        }
    }
}

/// A valid token's claims, as a request extension.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtClaims(pub Arc<Value>);

/// What a JWT must satisfy (plain data).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JwtConfig {
    /// Accepted `iss` values; empty accepts any (and no) issuer.
    pub issuers: Vec<String>,
    /// Accepted `aud` values (a token passes when one of its audiences is accepted); empty
    /// accepts any (and no) audience.
    pub audiences: Vec<String>,
    /// Tolerance for `exp` and `nbf`. Default 60 s.
    pub clock_skew: Duration,
    /// Accepted algorithm names; empty accepts every supported algorithm.
    pub algorithms: Vec<String>,
    /// Whether a token without `exp` is refused. Default true.
    pub require_exp: bool,
    /// Claims copied into request headers of accepted requests: `(claim, header)`. A string
    /// claim is copied as is, other JSON values JSON-encoded; a missing claim sets nothing.
    /// Headers with these names that the client sent are always removed.
    pub claim_to_headers: Vec<(String, HeaderName)>,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            issuers: Vec::new(),
            audiences: Vec::new(),
            clock_skew: Duration::from_secs(60),
            algorithms: Vec::new(),
            require_exp: true,
            claim_to_headers: Vec::new(),
        }
    }
}

impl JwtConfig {
    /// The defaults: any issuer and audience, 60 s skew, every algorithm, `exp` required.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts `iss`.
    pub fn issuer(mut self, iss: impl Into<String>) -> Self {
        self.issuers.push(iss.into());
        self
    }

    /// Accepts `aud`.
    pub fn audience(mut self, aud: impl Into<String>) -> Self {
        self.audiences.push(aud.into());
        self
    }

    /// Sets the clock skew.
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// Accepts algorithm `name` (restricting the set to the ones named).
    pub fn algorithm(mut self, name: impl Into<String>) -> Self {
        self.algorithms.push(name.into());
        self
    }

    /// Whether `exp` is required.
    pub fn require_exp(mut self, required: bool) -> Self {
        self.require_exp = required;
        self
    }

    /// Copies `claim` into the request header `header` of accepted requests.
    pub fn claim_to_header(mut self, claim: impl Into<String>, header: HeaderName) -> Self {
        self.claim_to_headers.push((claim.into(), header));
        self
    }
}

/// JWT validation compiled once: the checks and the key source.
#[derive(Debug, Clone)]
pub struct CompiledJwt {
    issuers: Vec<String>,
    audiences: Vec<String>,
    skew: u64,
    algorithms: Vec<Algorithm>,
    require_exp: bool,
    claim_to_headers: Vec<(String, HeaderName)>,
    jwks: Arc<dyn JwksSource>,
}

impl CompiledJwt {
    /// Compiles `config` with keys from `jwks`.
    pub fn new(config: JwtConfig, jwks: Arc<dyn JwksSource>) -> Result<CompiledJwt, JwtError> {
        if config.issuers.iter().any(String::is_empty) {
            return Err(JwtError::EmptyValue { field: "issuers" });
        }
        if config.audiences.iter().any(String::is_empty) {
            return Err(JwtError::EmptyValue { field: "audiences" });
        }
        let algorithms = if config.algorithms.is_empty() {
            Algorithm::ALL.to_vec()
        } else {
            config
                .algorithms
                .iter()
                .map(|n| {
                    Algorithm::from_name(n).ok_or_else(|| JwtError::UnsupportedAlgorithm(n.clone()))
                })
                .collect::<Result<_, _>>()?
        };
        Ok(CompiledJwt {
            issuers: config.issuers,
            audiences: config.audiences,
            skew: config.clock_skew.as_secs(),
            algorithms,
            require_exp: config.require_exp,
            claim_to_headers: config.claim_to_headers,
            jwks,
        })
    }

    /// Validates a compact JWS token at the current time and returns its claims.
    pub fn validate(&self, token: &str) -> Result<Value, TokenError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.validate_at(token, now)
    }

    /// Validates a token at `now` (seconds since the Unix epoch).
    pub fn validate_at(&self, token: &str, now: u64) -> Result<Value, TokenError> {
        let mut parts = token.split('.');
        let (Some(h64), Some(c64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header = decode_json(h64)?;
        let alg_name = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(TokenError::Malformed)?;
        let alg = Algorithm::from_name(alg_name)
            .filter(|a| self.algorithms.contains(a))
            .ok_or_else(|| TokenError::Algorithm(alg_name.to_owned()))?;
        if header.get("crit").is_some() {
            return Err(TokenError::Critical);
        }
        let kid = header.get("kid").and_then(Value::as_str);
        let sig = URL_SAFE_NO_PAD
            .decode(s64)
            .map_err(|_| TokenError::Malformed)?;
        let signed = token
            .get(..h64.len() + 1 + c64.len())
            .ok_or(TokenError::Malformed)?;

        let keys = self.jwks.keys();
        let mut found = false;
        let mut verified = false;
        for key in keys.candidates(alg, kid) {
            found = true;
            if key.verify(alg, signed.as_bytes(), &sig) {
                verified = true;
                break;
            }
        }
        if !found {
            if let Some(kid) = kid {
                self.jwks.unknown_kid(kid);
            }
            return Err(TokenError::UnknownKey(kid.map(str::to_owned)));
        }
        if !verified {
            return Err(TokenError::Signature);
        }

        let claims = decode_json(c64)?;
        self.check_claims(&claims, now)?;
        Ok(claims)
    }

    fn check_claims(&self, claims: &Value, now: u64) -> Result<(), TokenError> {
        let time = |name: &'static str| -> Result<Option<u64>, TokenError> {
            match claims.get(name) {
                None => Ok(None),
                // NumericDate may be fractional; whole seconds are precise enough.
                Some(v) => v
                    .as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(|f| Some(f as u64))
                    .ok_or(TokenError::Claim(name)),
            }
        };
        match time("exp")? {
            Some(exp) if now > exp.saturating_add(self.skew) => return Err(TokenError::Expired),
            None if self.require_exp => return Err(TokenError::Claim("exp")),
            _ => {}
        }
        if let Some(nbf) = time("nbf")?
            && now.saturating_add(self.skew) < nbf
        {
            return Err(TokenError::NotYetValid);
        }
        if !self.issuers.is_empty() {
            let iss = claims
                .get("iss")
                .and_then(Value::as_str)
                .ok_or(TokenError::Claim("iss"))?;
            if !self.issuers.iter().any(|i| i == iss) {
                return Err(TokenError::Issuer);
            }
        }
        if !self.audiences.is_empty() {
            let accepted = |a: &str| self.audiences.iter().any(|x| x == a);
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => accepted(a),
                Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).any(accepted),
                _ => return Err(TokenError::Claim("aud")),
            };
            if !ok {
                return Err(TokenError::Audience);
            }
        }
        Ok(())
    }

    /// What a request's `Authorization` header decides: `None` when it carries no bearer
    /// token, else the validation result.
    pub fn check(&self, headers: &HeaderMap) -> Option<Result<Value, TokenError>> {
        bearer(headers).map(|token| self.validate(token))
    }

    /// Removes the configured claim headers (whatever the client sent), then sets them from
    /// `claims`.
    fn set_claim_headers(&self, headers: &mut HeaderMap, claims: &Value) {
        for (claim, header) in &self.claim_to_headers {
            let value = match claims.get(claim) {
                None | Some(Value::Null) => continue,
                Some(Value::String(s)) => HeaderValue::from_str(s),
                Some(other) => HeaderValue::try_from(other.to_string()),
            };
            if let Ok(v) = value {
                headers.insert(header.clone(), v);
            }
        }
    }
}

/// The bearer token of an `Authorization` header, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

fn decode_json(b64: &str) -> Result<Value, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| TokenError::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(TokenError::Malformed),
    }
}

fn unauthorized<B: Default>(challenge: &'static str) -> Response<B> {
    let mut h = HeaderMap::with_capacity(1);
    h.insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    response_with(StatusCode::UNAUTHORIZED, h)
}

/// The JWT middleware; see the [module docs](self).
///
/// The inner service must be `Clone + Send + 'static`: a request that waits for a source's
/// first keys ([`JwksSource::loading`]) is served, after the wait, by the clone that was polled
/// ready (tower's rule), moved into the response future.
#[derive(Debug, Clone)]
pub struct Jwt<S> {
    inner: S,
    providers: Arc<[CompiledJwt]>,
}

impl<S> Jwt<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Consumes the middleware, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// What the providers say about a request's token.
enum Verdict {
    /// No bearer token.
    NoToken,
    /// Provider `usize` (the first that accepts it) accepted it, with these claims.
    Accepted(usize, Value),
    /// No provider accepts it.
    Refused,
}

fn verdict(providers: &[CompiledJwt], headers: &HeaderMap) -> Verdict {
    let Some(token) = bearer(headers) else {
        return Verdict::NoToken;
    };
    providers
        .iter()
        .enumerate()
        .find_map(|(i, p)| {
            p.validate(token)
                .ok()
                .map(|claims| Verdict::Accepted(i, claims))
        })
        .unwrap_or(Verdict::Refused)
}

/// Answers the request or passes it on, as `verdict` says.
fn finish<S, ReqBody, ResBody>(
    providers: &[CompiledJwt],
    inner: &mut S,
    mut req: Request<ReqBody>,
    verdict: Verdict,
) -> Outcome<S::Future, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    match verdict {
        Verdict::Accepted(i, claims) => {
            for p in providers {
                for (_, header) in &p.claim_to_headers {
                    req.headers_mut().remove(header);
                }
            }
            if let Some(provider) = providers.get(i) {
                provider.set_claim_headers(req.headers_mut(), &claims);
            }
            req.extensions_mut().insert(JwtClaims(Arc::new(claims)));
            Outcome::inner(inner.call(req))
        }
        // RFC 6750 §3.1: no error code when the request has no authentication information.
        Verdict::NoToken => Outcome::ready(unauthorized("Bearer")),
        Verdict::Refused => Outcome::ready(unauthorized(r#"Bearer error="invalid_token""#)),
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Jwt<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let v = verdict(&self.providers, req.headers());
        if matches!(v, Verdict::Refused) {
            // A source still loading its first keys (a remote JWKS just configured): wait for
            // it, boundedly, then check the token again.
            let waits: Vec<Loading> = self
                .providers
                .iter()
                .filter_map(|p| p.jwks.loading())
                .collect();
            if !waits.is_empty() {
                // The clone that was polled ready serves the request (tower's rule).
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let providers = self.providers.clone();
                let wait = Box::pin(async move {
                    futures_util::future::join_all(waits).await;
                });
                return ResponseFuture::waiting(
                    wait,
                    Box::new(move || {
                        let v = verdict(&providers, req.headers());
                        finish(&providers, &mut inner, req, v)
                    }),
                );
            }
        }
        ResponseFuture::decided(finish(&self.providers, &mut self.inner, req, v))
    }
}
