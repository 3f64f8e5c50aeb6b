//! API keys from a request header or a query parameter.
//!
//! Each key belongs to a named client. A request without a key is answered `401`; a request
//! whose key is not configured is answered `403`. A request with a known key is forwarded with
//! the client name as an [`ApiKeyClient`] request extension and the key removed (the header, or
//! the query parameter), so backends never see it.
//!
//! Keys are kept as SHA-256 digests and compared in constant time against every configured
//! key, so neither the comparison time nor the key length tells an attacker anything.
//!
//! # Example
//!
//! ```
//! use gw_policy::api_key::{ApiKeyClient, ApiKeyLayer, CompiledApiKeys, KeyLocation};
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let keys = CompiledApiKeys::new(
//!     KeyLocation::header("x-api-key")?,
//!     [("billing", "k-7f3a9c"), ("search", "k-0b12de")],
//! )?;
//! let svc = ServiceBuilder::new()
//!     .layer(ApiKeyLayer::new(keys))
//!     .service(service_fn(|req: Request<String>| async move {
//!         let client = req.extensions().get::<ApiKeyClient>().map(|c| c.0.to_string());
//!         assert!(req.headers().get("x-api-key").is_none(), "the key is not forwarded");
//!         Ok::<_, std::convert::Infallible>(Response::new(client.unwrap_or_default()))
//!     }));
//!
//! let with = |key: &str| Request::get("/").header("x-api-key", key).body(String::new());
//! let resp = svc.clone().oneshot(with("k-0b12de")?).await?;
//! assert_eq!(resp.body(), "search");
//! assert_eq!(svc.clone().oneshot(with("k-guess")?).await?.status(), StatusCode::FORBIDDEN);
//! let none = Request::new(String::new());
//! assert_eq!(svc.oneshot(none).await?.status(), StatusCode::UNAUTHORIZED);
//! # Ok(())
//! # }
//! ```

mod error;
mod future;
mod layer;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::uri::PathAndQuery;
use http::{HeaderName, Request, Response, StatusCode, Uri};
use ring::digest;
use subtle::ConstantTimeEq;
use tower::Service;

pub use self::error::ApiKeyError;
pub use self::future::ResponseFuture;
pub use self::layer::ApiKeyLayer;
use crate::outcome::{Outcome, status_response};

/// The client whose key authenticated the request, as a request extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyClient(pub Arc<str>);

/// Where a request carries its key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyLocation {
    /// A request header (the whole value is the key).
    Header(HeaderName),
    /// A query parameter (percent-decoded).
    Query(String),
}

impl KeyLocation {
    /// The header `name`.
    pub fn header(name: &str) -> Result<KeyLocation, ApiKeyError> {
        HeaderName::from_bytes(name.as_bytes())
            .map(KeyLocation::Header)
            .map_err(|_| ApiKeyError::InvalidHeaderName {
                name: name.to_owned(),
            })
    }

    /// The query parameter `name`.
    pub fn query(name: &str) -> Result<KeyLocation, ApiKeyError> {
        if name.is_empty() {
            return Err(ApiKeyError::EmptyQueryParameter);
        }
        Ok(KeyLocation::Query(name.to_owned()))
    }
}

/// What a request's key decides.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyCheck {
    /// The request carries no key (`401`).
    Missing,
    /// The key is not configured (`403`).
    Unknown,
    /// The key belongs to this client.
    Client(ApiKeyClient),
}

#[derive(Debug, Clone)]
struct Entry {
    client: ApiKeyClient,
    digest: [u8; 32],
}

/// API keys compiled once: where keys are read and the digests of the configured ones.
#[derive(Debug, Clone)]
pub struct CompiledApiKeys {
    location: KeyLocation,
    entries: Vec<Entry>,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

impl CompiledApiKeys {
    /// Compiles `(client, key)` pairs read from `location`.
    pub fn new<C, K>(
        location: KeyLocation,
        keys: impl IntoIterator<Item = (C, K)>,
    ) -> Result<CompiledApiKeys, ApiKeyError>
    where
        C: AsRef<str>,
        K: AsRef<[u8]>,
    {
        let mut entries: Vec<Entry> = Vec::new();
        for (client, key) in keys {
            let (client, key) = (client.as_ref(), key.as_ref());
            if key.is_empty() {
                return Err(ApiKeyError::EmptyKey {
                    client: client.to_owned(),
                });
            }
            let digest = sha256(key);
            if let Some(first) = entries.iter().find(|e| e.digest == digest) {
                return Err(ApiKeyError::DuplicateKey {
                    first: first.client.0.to_string(),
                    second: client.to_owned(),
                });
            }
            entries.push(Entry {
                client: ApiKeyClient(client.into()),
                digest,
            });
        }
        if entries.is_empty() {
            return Err(ApiKeyError::NoKeys);
        }
        Ok(CompiledApiKeys { location, entries })
    }

    /// Checks a presented key against every configured key in constant time.
    pub fn check_key(&self, key: &[u8]) -> KeyCheck {
        let digest = sha256(key);
        let mut found = None;
        for e in &self.entries {
            if bool::from(e.digest.ct_eq(&digest)) {
                found = Some(&e.client);
            }
        }
        match found {
            Some(c) => KeyCheck::Client(c.clone()),
            None => KeyCheck::Unknown,
        }
    }

    /// Checks the key a request carries.
    pub fn check<B>(&self, req: &Request<B>) -> KeyCheck {
        let key = match &self.location {
            KeyLocation::Header(name) => {
                req.headers().get(name).map(|v| Cow::Borrowed(v.as_bytes()))
            }
            KeyLocation::Query(param) => query_value(req.uri(), param),
        };
        match key {
            Some(k) if !k.is_empty() => self.check_key(&k),
            _ => KeyCheck::Missing,
        }
    }

    /// Removes the key from a request before it is forwarded.
    fn strip<B>(&self, req: &mut Request<B>) {
        match &self.location {
            KeyLocation::Header(name) => {
                req.headers_mut().remove(name);
            }
            KeyLocation::Query(param) => {
                if let Some(uri) = without_query_param(req.uri(), param) {
                    *req.uri_mut() = uri;
                }
            }
        }
    }
}

/// The percent-decoded value of the first `param` in the query.
fn query_value<'a>(uri: &'a Uri, param: &str) -> Option<Cow<'a, [u8]>> {
    uri.query()?.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(name).as_ref() == param.as_bytes()).then(|| percent_decode(value))
    })
}

fn percent_decode(s: &str) -> Cow<'_, [u8]> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s.as_bytes());
    }
    let hex = |b: Option<&u8>| b.and_then(|b| char::from(*b).to_digit(16));
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match (b, hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
            (b'%', Some(h), Some(l)) => {
                // Two hex digits: at most 255.
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
                continue;
            }
            (b'+', _, _) => out.push(b' '),
            (b, _, _) => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(out)
}

/// `uri` without any `param` query parameter; `None` when it has none.
fn without_query_param(uri: &Uri, param: &str) -> Option<Uri> {
    let query = uri.query()?;
    let is_param = |pair: &&str| {
        let name = pair.split_once('=').map_or(*pair, |(n, _)| n);
        percent_decode(name).as_ref() == param.as_bytes()
    };
    if !query.split('&').any(|p| is_param(&p)) {
        return None;
    }
    let kept: Vec<&str> = query.split('&').filter(|p| !is_param(p)).collect();
    let path_and_query = if kept.is_empty() {
        uri.path().to_owned()
    } else {
        format!("{}?{}", uri.path(), kept.join("&"))
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(path_and_query).ok()?);
    Uri::from_parts(parts).ok()
}

/// The API key middleware; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ApiKey<S> {
    inner: S,
    keys: Arc<CompiledApiKeys>,
}

impl<S> ApiKey<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Consumes the middleware, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ApiKey<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let inner = match self.keys.check(&req) {
            KeyCheck::Client(client) => {
                self.keys.strip(&mut req);
                req.extensions_mut().insert(client);
                Outcome::inner(self.inner.call(req))
            }
            KeyCheck::Missing => Outcome::ready(status_response(StatusCode::UNAUTHORIZED)),
            KeyCheck::Unknown => Outcome::ready(status_response(StatusCode::FORBIDDEN)),
        };
        ResponseFuture { inner }
    }
}
