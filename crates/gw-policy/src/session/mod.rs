//! Session persistence (GEP-1619): a token, carried in a cookie or a header, that names the
//! endpoint a client's requests stick to.
//!
//! # The token
//!
//! `base64url(version ‖ issued ‖ last used ‖ endpoint id ‖ MAC)`, 41 bytes (55 characters):
//!
//! - *endpoint id*: the first 8 bytes of SHA-256 over the Service, port and endpoint address
//!   ([`EndpointId::new`]). It names an endpoint without revealing its address; the data plane
//!   compares it with the ids of the endpoints it has now, so a token for an endpoint that is
//!   gone selects nothing.
//! - *issued* and *last used*: Unix seconds, for `absoluteTimeout` and `idleTimeout`. A token
//!   older than the absolute timeout, or unused for longer than the idle timeout, is refused
//!   (GEP-1619: "Once the AbsoluteTimeout duration has elapsed, the session becomes invalid").
//! - *MAC*: HMAC-SHA-256 (truncated to 16 bytes) under the gateway's [`SessionKey`], over the
//!   session's *scope* (the route rule it belongs to) and the rest of the token. A client cannot
//!   extend its session, point it at another endpoint, or use one rule's token for another
//!   rule (GEP-1619: "Route rules referencing the same service MUST NOT share persistent
//!   sessions"). Gateways that must honour each other's sessions (replicas, restarts) share
//!   the key.
//!
//! # Cookies
//!
//! [`set_cookie`] writes `HttpOnly`, `SameSite=Strict` and, on HTTPS, `Secure` (GEP-1619: "The
//! API implementers SHOULD follow the security-by-default principle ... enabling Secure and
//! HttpOnly, and setting SameSite to Strict"; `Secure` is left out on cleartext listeners, where
//! a browser would never send the cookie back). `Max-Age` is set only for permanent cookies; a
//! session cookie has none (its absolute timeout is in the token). [`cookie_values`] reads
//! every value of a name across all `Cookie` headers (GEP-1619: "the implementation MUST be
//! able to handle multiple cookies").
//!
//! # Example
//!
//! ```
//! use std::net::SocketAddr;
//! use std::time::{Duration, SystemTime};
//!
//! use gw_policy::gw_model::table::{SessionConfig, SessionKind};
//! use gw_policy::session::{EndpointId, SessionCodec, SessionKey};
//!
//! let key = SessionKey::from_secret(b"a secret shared by every replica")?;
//! let codec = SessionCodec::new(&key, &SessionConfig {
//!     kind: SessionKind::Cookie { permanent: false },
//!     name: "sticky".into(),
//!     absolute_timeout: Some(Duration::from_secs(3600)),
//!     idle_timeout: None,
//! });
//! let addr: SocketAddr = "10.0.0.7:8080".parse()?;
//! let endpoint = EndpointId::new("default/echo", 80, addr);
//! let now = SystemTime::now();
//!
//! let token = codec.issue("HTTPRoute/default/web/0", endpoint, now);
//! let session = codec.open("HTTPRoute/default/web/0", &token, now)?;
//! assert_eq!(session.endpoint(), endpoint);
//! // Another rule's scope, a changed token, or an expired one are refused.
//! assert!(codec.open("HTTPRoute/default/web/1", &token, now).is_err());
//! assert!(codec.open("HTTPRoute/default/web/0", &token, now + Duration::from_secs(3601)).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gw_model::table::{SessionConfig, SessionKind};
use http::{HeaderMap, HeaderValue};
use ring::{digest, hmac, rand};

pub use self::error::{SessionError, SessionRejected};

/// Token format version.
const VERSION: u8 = 1;
/// Length of the MAC kept in the token.
const MAC_LEN: usize = 16;
/// version + issued + last used + endpoint id.
const PAYLOAD_LEN: usize = 1 + 8 + 8 + 8;
const TOKEN_LEN: usize = PAYLOAD_LEN + MAC_LEN;
/// The shortest secret [`SessionKey::from_secret`] takes.
pub const MIN_SECRET_LEN: usize = 16;

/// The key that signs session tokens. Cloning is cheap.
#[derive(Clone)]
pub struct SessionKey(hmac::Key);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    /// A key from a secret of at least [`MIN_SECRET_LEN`] bytes (e.g. read from a file shared
    /// by every replica, so that sessions survive restarts and work on every replica).
    pub fn from_secret(secret: &[u8]) -> Result<SessionKey, SessionError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(SessionError::SecretTooShort {
                len: secret.len(),
                min: MIN_SECRET_LEN,
            });
        }
        Ok(SessionKey(hmac::Key::new(hmac::HMAC_SHA256, secret)))
    }

    /// A random key: sessions are then valid only in this process.
    pub fn random() -> Result<SessionKey, SessionError> {
        let rng = rand::SystemRandom::new();
        hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            .map(SessionKey)
            .map_err(|_| SessionError::Random)
    }
}

/// An opaque, stable name of one endpoint of one Service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EndpointId([u8; 8]);

impl EndpointId {
    /// The id of `addr` as an endpoint of `service` (e.g. `namespace/name`) port `port`.
    pub fn new(service: &str, port: u16, addr: SocketAddr) -> EndpointId {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(service.as_bytes());
        ctx.update(&[0]);
        ctx.update(&port.to_be_bytes());
        ctx.update(addr.to_string().as_bytes());
        let d = ctx.finish();
        let mut id = [0u8; 8];
        id.copy_from_slice(&d.as_ref()[..8]);
        EndpointId(id)
    }
}

/// A valid session read from a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    endpoint: EndpointId,
    issued: u64,
    last_used: u64,
}

impl Session {
    /// The endpoint the session sticks to.
    pub fn endpoint(&self) -> EndpointId {
        self.endpoint
    }

    /// When the session began (Unix seconds).
    pub fn issued(&self) -> u64 {
        self.issued
    }

    /// When the session was last used (Unix seconds).
    pub fn last_used(&self) -> u64 {
        self.last_used
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Issues and checks the tokens of one session configuration.
#[derive(Debug, Clone)]
pub struct SessionCodec {
    key: SessionKey,
    config: SessionConfig,
}

impl SessionCodec {
    /// A codec for `config` signing with `key`.
    pub fn new(key: &SessionKey, config: &SessionConfig) -> SessionCodec {
        SessionCodec {
            key: key.clone(),
            config: config.clone(),
        }
    }

    /// The session configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    fn mac(&self, scope: &str, payload: &[u8]) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key.0);
        ctx.update(scope.as_bytes());
        ctx.update(&[0]);
        ctx.update(payload);
        ctx.sign()
    }

    fn encode(&self, scope: &str, endpoint: EndpointId, issued: u64, last_used: u64) -> String {
        let mut buf = [0u8; TOKEN_LEN];
        buf[0] = VERSION;
        buf[1..9].copy_from_slice(&issued.to_be_bytes());
        buf[9..17].copy_from_slice(&last_used.to_be_bytes());
        buf[17..25].copy_from_slice(&endpoint.0);
        let tag = self.mac(scope, &buf[..PAYLOAD_LEN]);
        buf[PAYLOAD_LEN..].copy_from_slice(&tag.as_ref()[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(buf)
    }

    /// A token for a new session of `scope` on `endpoint`, starting `now`.
    pub fn issue(&self, scope: &str, endpoint: EndpointId, now: SystemTime) -> String {
        let t = unix(now);
        self.encode(scope, endpoint, t, t)
    }

    /// The token of `session` used again `now` (same start, new last use, for the idle timeout).
    pub fn refresh(&self, scope: &str, session: &Session, now: SystemTime) -> String {
        self.encode(scope, session.endpoint, session.issued, unix(now))
    }

    /// Checks a token of `scope` at `now`.
    pub fn open(
        &self,
        scope: &str,
        token: &str,
        now: SystemTime,
    ) -> Result<Session, SessionRejected> {
        if token.len() > 64 {
            return Err(SessionRejected::Malformed);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(token.trim_matches('"'))
            .map_err(|_| SessionRejected::Malformed)?;
        let Ok(buf) = <[u8; TOKEN_LEN]>::try_from(raw.as_slice()) else {
            return Err(SessionRejected::Malformed);
        };
        if buf[0] != VERSION {
            return Err(SessionRejected::Malformed);
        }
        let tag = self.mac(scope, &buf[..PAYLOAD_LEN]);
        // Constant time: the MAC must not be guessable byte by byte.
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            &tag.as_ref()[..MAC_LEN],
            &buf[PAYLOAD_LEN..],
        )) {
            return Err(SessionRejected::BadSignature);
        }
        let word = |r: std::ops::Range<usize>| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&buf[r]);
            u64::from_be_bytes(w)
        };
        let issued = word(1..9);
        let last_used = word(9..17);
        let mut endpoint = [0u8; 8];
        endpoint.copy_from_slice(&buf[17..25]);
        let now = unix(now);
        let expired = |since: u64, limit: Option<Duration>| {
            limit.is_some_and(|l| now.saturating_sub(since) >= l.as_secs().max(1))
        };
        if expired(issued, self.config.absolute_timeout) {
            return Err(SessionRejected::Expired);
        }
        if expired(last_used, self.config.idle_timeout) {
            return Err(SessionRejected::Idle);
        }
        Ok(Session {
            endpoint: EndpointId(endpoint),
            issued,
            last_used,
        })
    }

    /// The tokens a request carries for this session: the values of the cookie or header named
    /// by the configuration.
    pub fn tokens<'a>(&'a self, headers: &'a HeaderMap) -> Vec<&'a str> {
        match self.config.kind {
            SessionKind::Cookie { .. } => cookie_values(headers, &self.config.name).collect(),
            SessionKind::Header => headers
                .get_all(self.config.name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::trim)
                .collect(),
        }
    }

    /// Adds the session token to a response: a `Set-Cookie` (with `path` for sessions of a
    /// route rule, none for a Service's) or the session header.
    pub fn write(&self, headers: &mut HeaderMap, token: &str, path: Option<&str>, secure: bool) {
        match self.config.kind {
            SessionKind::Cookie { permanent } => {
                let max_age = permanent.then_some(self.config.absolute_timeout).flatten();
                if let Some(v) = set_cookie(&self.config.name, token, path, max_age, secure) {
                    headers.append(http::header::SET_COOKIE, v);
                }
            }
            SessionKind::Header => {
                if let (Ok(name), Ok(value)) = (
                    http::HeaderName::from_bytes(self.config.name.as_bytes()),
                    HeaderValue::from_str(token),
                ) {
                    headers.insert(name, value);
                }
            }
        }
    }
}

/// The values of every cookie named `name` in the request's `Cookie` headers (RFC 6265
/// section 5.4: `name=value` pairs separated by `; `), in order.
pub fn cookie_values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (n, v) = pair.trim().split_once('=')?;
            (n.trim() == name).then(|| v.trim().trim_matches('"'))
        })
}

/// A `Set-Cookie` value: `name=value`, `Path` when given, `Max-Age` when given (permanent
/// cookies), `HttpOnly`, `SameSite=Strict`, and `Secure` when `secure`. `None` when the name or
/// value cannot be a cookie's.
pub fn set_cookie(
    name: &str,
    value: &str,
    path: Option<&str>,
    max_age: Option<Duration>,
    secure: bool,
) -> Option<HeaderValue> {
    let mut s = format!("{name}={value}");
    if let Some(p) = path {
        s.push_str("; Path=");
        s.push_str(p);
    }
    if let Some(age) = max_age {
        s.push_str(&format!("; Max-Age={}", age.as_secs()));
    }
    s.push_str("; HttpOnly; SameSite=Strict");
    if secure {
        s.push_str("; Secure");
    }
    HeaderValue::from_str(&s).ok()
}

#[cfg(test)]
mod tests;
