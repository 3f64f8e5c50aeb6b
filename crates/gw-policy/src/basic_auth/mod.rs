//! HTTP basic authentication (RFC 7617) against an htpasswd file.
//!
//! Supported hashes: bcrypt (`$2y$`, `$2b$`, `$2a$`, as written by `htpasswd -B`) and `{SHA}`
//! (base64 SHA-1, `htpasswd -s`; unsalted, kept for existing files). MD5 (`$apr1$`, `$1$`),
//! crypt(3) DES and plain-text entries are refused when the file is compiled, as are schemes
//! this crate cannot verify: the error names the line and the user.
//!
//! A request without valid credentials is answered `401` with
//! `WWW-Authenticate: Basic realm="..."`. An authenticated request is forwarded unchanged, with
//! the user name as a [`BasicAuthUser`] request extension.
//!
//! Checks take the same time whether or not the user exists (unknown users are checked
//! against a decoy bcrypt hash), and hashes are compared in constant time. bcrypt is slow by
//! design and runs on the calling task; successful checks are remembered (as SHA-256 of user
//! and password) so a client repeating its credentials pays it once. Put a rate limit in front
//! of this layer to bound the cost of guessing.
//!
//! # Example
//!
//! ```
//! use gw_policy::basic_auth::{BasicAuthLayer, BasicAuthUser, CompiledBasicAuth};
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // `htpasswd -nbs alice secret`
//! let auth = CompiledBasicAuth::new("admin area", "alice:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n")?;
//! let svc = ServiceBuilder::new()
//!     .layer(BasicAuthLayer::new(auth))
//!     .service(service_fn(|req: Request<String>| async move {
//!         let user = req.extensions().get::<BasicAuthUser>().map(|u| u.0.to_string());
//!         Ok::<_, std::convert::Infallible>(Response::new(user.unwrap_or_default()))
//!     }));
//!
//! let anonymous = svc.clone().oneshot(Request::new(String::new())).await?;
//! assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(anonymous.headers()["www-authenticate"], r#"Basic realm="admin area", charset="UTF-8""#);
//!
//! // base64("alice:secret")
//! let req = Request::get("/").header("authorization", "Basic YWxpY2U6c2VjcmV0").body(String::new())?;
//! let resp = svc.oneshot(req).await?;
//! assert_eq!(resp.status(), StatusCode::OK);
//! assert_eq!(resp.body(), "alice");
//! # Ok(())
//! # }
//! ```

mod error;
mod future;
mod htpasswd;
mod layer;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::task::{Context, Poll};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use tower::Service;

pub use self::error::BasicAuthError;
pub use self::future::ResponseFuture;
use self::htpasswd::Htpasswd;
pub use self::layer::BasicAuthLayer;
use crate::outcome::{Outcome, response_with};

/// The authenticated user, as a request extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuthUser(pub Arc<str>);

/// Basic auth settings compiled once: the htpasswd users and the challenge header.
#[derive(Debug, Clone)]
pub struct CompiledBasicAuth {
    users: Htpasswd,
    challenge: HeaderValue,
}

impl CompiledBasicAuth {
    /// Compiles `htpasswd` (one `user:hash` per line; `#` comments and blank lines are
    /// skipped) with the `realm` sent in challenges.
    pub fn new(realm: &str, htpasswd: &str) -> Result<CompiledBasicAuth, BasicAuthError> {
        let invalid_realm = || BasicAuthError::InvalidRealm {
            realm: realm.to_owned(),
        };
        if realm
            .chars()
            .any(|c| c == '"' || c == '\\' || c.is_control())
        {
            return Err(invalid_realm());
        }
        let challenge =
            HeaderValue::from_str(&format!(r#"Basic realm="{realm}", charset="UTF-8""#))
                .map_err(|_| invalid_realm())?;
        Ok(CompiledBasicAuth {
            users: Htpasswd::parse(htpasswd)?,
            challenge,
        })
    }

    /// Whether `password` is `user`'s.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        self.users.verify(user, password)
    }

    /// The user named by a valid `Authorization: Basic` header, if any.
    pub fn authenticate(&self, headers: &HeaderMap) -> Option<BasicAuthUser> {
        let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
        let (scheme, credentials) = value.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = STANDARD.decode(credentials.trim()).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, password) = decoded.split_once(':')?;
        self.verify(user, password)
            .then(|| BasicAuthUser(user.into()))
    }

    /// The `401` answer to a request without valid credentials.
    pub fn challenge<B: Default>(&self) -> Response<B> {
        let mut h = HeaderMap::with_capacity(1);
        h.insert(WWW_AUTHENTICATE, self.challenge.clone());
        response_with(StatusCode::UNAUTHORIZED, h)
    }
}

/// The basic auth middleware; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct BasicAuth<S> {
    inner: S,
    config: Arc<CompiledBasicAuth>,
}

impl<S> BasicAuth<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Consumes the middleware, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for BasicAuth<S>
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
        let inner = match self.config.authenticate(req.headers()) {
            Some(user) => {
                req.extensions_mut().insert(user);
                Outcome::inner(self.inner.call(req))
            }
            None => Outcome::ready(self.config.challenge()),
        };
        ResponseFuture { inner }
    }
}
