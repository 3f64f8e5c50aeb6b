use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use http::HeaderMap;

use super::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn codec(kind: SessionKind, absolute: Option<u64>, idle: Option<u64>) -> SessionCodec {
    let key = SessionKey::from_secret(b"0123456789abcdef0123").unwrap_or_else(|e| panic!("{e}"));
    SessionCodec::new(
        &key,
        &SessionConfig {
            kind,
            name: "sticky".into(),
            absolute_timeout: absolute.map(Duration::from_secs),
            idle_timeout: idle.map(Duration::from_secs),
        },
    )
}

const COOKIE: SessionKind = SessionKind::Cookie { permanent: false };
const SCOPE: &str = "HTTPRoute/default/web/0";

fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

#[test]
fn a_token_names_its_endpoint() {
    let c = codec(COOKIE, None, None);
    let a = EndpointId::new("default/echo", 80, addr("10.0.0.1:8080"));
    let b = EndpointId::new("default/echo", 80, addr("10.0.0.2:8080"));
    assert_ne!(a, b);
    assert_ne!(
        a,
        EndpointId::new("default/other", 80, addr("10.0.0.1:8080"))
    );
    let token = c.issue(SCOPE, a, t(0));
    assert_eq!(token.len(), 55);
    assert!(!token.contains("10.0.0.1"), "the address is not revealed");
    let s = c
        .open(SCOPE, &token, t(5))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.endpoint(), a);
    assert_eq!((s.issued(), s.last_used()), (1_700_000_000, 1_700_000_000));
}

// GEP-1619: "Route rules referencing the same service MUST NOT share persistent sessions".
#[test]
fn tokens_are_bound_to_their_scope_and_key() {
    let c = codec(COOKIE, None, None);
    let e = EndpointId::new("default/echo", 80, addr("10.0.0.1:8080"));
    let token = c.issue(SCOPE, e, t(0));
    assert_eq!(
        c.open("HTTPRoute/default/web/1", &token, t(0)),
        Err(SessionRejected::BadSignature)
    );
    let other_key =
        SessionKey::from_secret(b"another secret, 16+ bytes").unwrap_or_else(|e| panic!("{e}"));
    let other = SessionCodec::new(&other_key, c.config());
    assert_eq!(
        other.open(SCOPE, &token, t(0)),
        Err(SessionRejected::BadSignature)
    );
}

#[test]
fn altered_or_foreign_tokens_are_refused() {
    let c = codec(COOKIE, None, None);
    let e = EndpointId::new("default/echo", 80, addr("10.0.0.1:8080"));
    let token = c.issue(SCOPE, e, t(0));
    // Flip one character of the payload.
    let mut bytes = token.clone().into_bytes();
    bytes[10] = if bytes[10] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(bytes).unwrap_or_default();
    assert_eq!(
        c.open(SCOPE, &altered, t(0)),
        Err(SessionRejected::BadSignature)
    );
    for junk in ["", "abc", "JSESSIONID-1234", &"A".repeat(200), "!!!!"] {
        assert_eq!(
            c.open(SCOPE, junk, t(0)),
            Err(SessionRejected::Malformed),
            "{junk}"
        );
    }
}

// "AbsoluteTimeout defines the absolute timeout of the persistent session. Once the
// AbsoluteTimeout duration has elapsed, the session becomes invalid."
#[test]
fn the_absolute_timeout_ends_a_session_even_when_used() {
    let c = codec(COOKIE, Some(60), Some(30));
    let e = EndpointId::new("default/echo", 80, addr("10.0.0.1:8080"));
    let mut token = c.issue(SCOPE, e, t(0));
    for now in [20, 40] {
        let s = c
            .open(SCOPE, &token, t(now))
            .unwrap_or_else(|e| panic!("{e}"));
        token = c.refresh(SCOPE, &s, t(now));
    }
    assert_eq!(c.open(SCOPE, &token, t(60)), Err(SessionRejected::Expired));
}

// "IdleTimeout defines the idle timeout of the persistent session. Once the session has been
// idle for more than the specified IdleTimeout duration, the session becomes invalid."
#[test]
fn the_idle_timeout_ends_an_unused_session() {
    let c = codec(SessionKind::Header, None, Some(30));
    let e = EndpointId::new("default/echo", 80, addr("10.0.0.1:8080"));
    let token = c.issue(SCOPE, e, t(0));
    let s = c
        .open(SCOPE, &token, t(29))
        .unwrap_or_else(|e| panic!("{e}"));
    let refreshed = c.refresh(SCOPE, &s, t(29));
    assert!(
        c.open(SCOPE, &refreshed, t(58)).is_ok(),
        "use restarts the idle clock"
    );
    assert_eq!(c.open(SCOPE, &token, t(30)), Err(SessionRejected::Idle));
}

// GEP-1619: "the implementation MUST be able to handle multiple cookies".
#[test]
fn cookies_are_found_among_others() {
    let mut h = HeaderMap::new();
    h.append(
        "cookie",
        "a=1; sticky=first"
            .parse()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    h.append(
        "cookie",
        "sticky2=x;sticky=\"second\""
            .parse()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let c = codec(COOKIE, None, None);
    assert_eq!(c.tokens(&h), vec!["first", "second"]);
    let hc = codec(SessionKind::Header, None, None);
    h.insert("sticky", " tok ".parse().unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(hc.tokens(&h), vec!["tok"]);
}

// Cookie attributes (GEP-1619): a Session cookie has no Expires/Max-Age; "In the case of
// LifetimeType being Permanent, AbsoluteTimeout MUST configure the Expires or Max-Age cookie
// attributes"; Secure, HttpOnly and SameSite=Strict by default.
#[test]
fn cookie_attributes() {
    let mut h = HeaderMap::new();
    codec(COOKIE, Some(300), None).write(&mut h, "tok", Some("/cart"), false);
    assert_eq!(
        h["set-cookie"],
        "sticky=tok; Path=/cart; HttpOnly; SameSite=Strict"
    );
    let mut h = HeaderMap::new();
    codec(SessionKind::Cookie { permanent: true }, Some(300), None)
        .write(&mut h, "tok", None, true);
    assert_eq!(
        h["set-cookie"],
        "sticky=tok; Max-Age=300; HttpOnly; SameSite=Strict; Secure"
    );
    let mut h = HeaderMap::new();
    codec(SessionKind::Header, None, None).write(&mut h, "tok", Some("/x"), true);
    assert_eq!(h["sticky"], "tok");
    assert!(!h.contains_key("set-cookie"));
}

#[test]
fn short_secrets_are_refused() {
    assert_eq!(
        SessionKey::from_secret(b"short").err(),
        Some(SessionError::SecretTooShort { len: 5, min: 16 })
    );
    assert!(SessionKey::random().is_ok());
}
