//! Request normalization: the canonical path that is matched **and** forwarded, and the
//! checks on the request's host.
//!
//! The [`Router`](crate::Router) applies both to every request before matching
//! ([`RouterConfig::path`](crate::RouterConfig::path) chooses the options); they are public so
//! that a server built on [`Routes::resolve`](crate::Routes::resolve) can do the same.
//!
//! # Path policy
//!
//! [`normalize_path`] turns a request path into its canonical form, in this order:
//!
//! 1. **Percent-encodings** (RFC 3986 6.2.2.1 and 6.2.2.2): an encoded unreserved character
//!    (`ALPHA / DIGIT / "-" / "." / "_" / "~"`, e.g. `%41`, `%2e`, `%7E`) is decoded; every other
//!    percent-encoding is kept, with its hex digits in uppercase (`%3a` becomes `%3A`). A `%`
//!    not followed by two hex digits is an error ([`PathError::MalformedPercentEncoding`]).
//! 2. **Encoded slashes** (`%2F`) and **backslashes** (`%5C` and a raw `\`) are never decoded
//!    silently: each is handled by a [`SlashAction`] (default [`SlashAction::Reject`]: 400).
//!    [`SlashAction::Redirect`] answers a redirect to the path with them turned into `/` (and
//!    then normalized); [`SlashAction::Keep`] leaves them as they are, inside a path segment.
//! 3. **Merged slashes** ([`PathPolicy::merge_slashes`], default on): `//` becomes `/`.
//! 4. **Dot segments** (RFC 3986 5.2.4, `remove_dot_segments`): `.` and `..` segments are
//!    resolved; `..` never climbs above the root (`/../a` is `/a`).
//!
//! So `/a/../admin`, `/a/%2e%2e/admin`, `/./admin` and `//admin` are all matched and forwarded
//! as `/admin`. Normalizing a canonical path changes nothing. Paths that do not start with `/`
//! (`*` of `OPTIONS *`, the empty path of authority-form `CONNECT`) are left alone; the query
//! is never touched.
//!
//! ```
//! use gw_router::normalize::{normalize_path, NormalizedPath, PathError, PathPolicy, SlashAction};
//!
//! let policy = PathPolicy::default();
//! let canonical = |p| match normalize_path(p, &policy) {
//!     Ok(NormalizedPath::Canonical(c)) => c.into_owned(),
//!     other => panic!("{other:?}"),
//! };
//! assert_eq!(canonical("/a/../admin"), "/admin");
//! assert_eq!(canonical("/a/%2e%2e/admin"), "/admin");
//! assert_eq!(canonical("//%41dmin/./x%3a"), "/Admin/x%3A");
//! assert_eq!(normalize_path("/a%2Fb", &policy), Err(PathError::EncodedSlash));
//! assert_eq!(normalize_path("/a\\b", &policy), Err(PathError::Backslash));
//!
//! let redirect = PathPolicy::default().with_encoded_slash(SlashAction::Redirect);
//! assert_eq!(
//!     normalize_path("/a%2F..%2Fb", &redirect),
//!     Ok(NormalizedPath::Redirect("/b".to_owned()))
//! );
//! ```
//!
//! # Host checks
//!
//! [`check_host`] rejects what makes the request's host ambiguous (each one is a 400): more
//! than one `Host` header (RFC 9112 3.2), a `Host` value that is not `host[:port]`, userinfo in
//! the authority (RFC 9110 4.2.4), and on HTTP/2 and HTTP/3 a `Host` header that names another
//! host than `:authority` (RFC 9113 8.3.1). An absolute-form request target (HTTP/1) wins over
//! `Host` (RFC 9112 3.2.2): the Router matches its host and forwards it as `Host`. Hosts are
//! matched without their port and case-insensitively.

use std::borrow::Cow;

use http::header::HOST;
use http::{HeaderMap, Uri, Version};

/// What to do with an encoded slash (`%2F`) or a backslash (`%5C`, raw `\`) in a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SlashAction {
    /// Answer 400 Bad Request.
    #[default]
    Reject,
    /// Answer 308 Permanent Redirect to the path with the character turned into `/` (and
    /// then normalized), so that the client, not the gateway, decides to follow it.
    Redirect,
    /// Keep the character as sent (uppercase `%2F` / `%5C`, or `\`): it is part of a path
    /// segment for matching, and forwarded so. Only safe when every backend treats it as data
    /// and never as a separator (some decode `%2F` or treat `\` as `/`, which would let
    /// `/public%2F..%2Fadmin` reach `/admin` unmatched).
    Keep,
}

impl SlashAction {
    /// `reject`, `redirect` or `keep`.
    pub fn as_str(self) -> &'static str {
        match self {
            SlashAction::Reject => "reject",
            SlashAction::Redirect => "redirect",
            SlashAction::Keep => "keep",
        }
    }
}

impl std::str::FromStr for SlashAction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "reject" => Ok(SlashAction::Reject),
            "redirect" => Ok(SlashAction::Redirect),
            "keep" => Ok(SlashAction::Keep),
            other => Err(format!(
                "{other:?} is not a slash action (use reject, redirect or keep)"
            )),
        }
    }
}

/// Options of [`normalize_path`]. The default rejects encoded slashes and backslashes and
/// merges slashes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct PathPolicy {
    /// Whether `//` is merged into `/` (default `true`).
    pub merge_slashes: bool,
    /// What to do with `%2F` (default [`SlashAction::Reject`]).
    pub encoded_slash: SlashAction,
    /// What to do with `%5C` and a raw `\` (default [`SlashAction::Reject`]).
    pub backslash: SlashAction,
}

impl Default for PathPolicy {
    fn default() -> Self {
        PathPolicy {
            merge_slashes: true,
            encoded_slash: SlashAction::Reject,
            backslash: SlashAction::Reject,
        }
    }
}

impl PathPolicy {
    /// Sets [`merge_slashes`](Self::merge_slashes).
    pub fn with_merge_slashes(mut self, merge: bool) -> Self {
        self.merge_slashes = merge;
        self
    }
    /// Sets [`encoded_slash`](Self::encoded_slash).
    pub fn with_encoded_slash(mut self, action: SlashAction) -> Self {
        self.encoded_slash = action;
        self
    }
    /// Sets [`backslash`](Self::backslash).
    pub fn with_backslash(mut self, action: SlashAction) -> Self {
        self.backslash = action;
        self
    }
}

/// The outcome of [`normalize_path`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NormalizedPath<'a> {
    /// The canonical path to match and forward (borrowed when the path was canonical already).
    Canonical(Cow<'a, str>),
    /// The path held an encoded slash or a backslash under [`SlashAction::Redirect`]: answer a
    /// redirect to this canonical path.
    Redirect(String),
}

/// Why a path is refused (400 Bad Request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-encoding in the request path")]
    MalformedPercentEncoding,
    /// An encoded slash (`%2F`) under [`SlashAction::Reject`].
    #[error("encoded slash (%2F) in the request path")]
    EncodedSlash,
    /// A backslash (`%5C` or `\`) under [`SlashAction::Reject`].
    #[error("backslash (\\ or %5C) in the request path")]
    Backslash,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 2.3 `unreserved`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Normalizes a request path (without its query) as the [module](self) describes.
///
/// Costs one pass over the path, and no allocation when the path is canonical already.
pub fn normalize_path<'a>(
    path: &'a str,
    policy: &PathPolicy,
) -> Result<NormalizedPath<'a>, PathError> {
    if !path.starts_with('/') {
        return Ok(NormalizedPath::Canonical(Cow::Borrowed(path)));
    }
    if is_canonical(path, policy) {
        return Ok(NormalizedPath::Canonical(Cow::Borrowed(path)));
    }
    let bytes = path.as_bytes();
    let mut decoded: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut redirect = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(PathError::MalformedPercentEncoding);
            };
            let c = hi << 4 | lo;
            i += 3;
            let action = match c {
                b'/' => Some((policy.encoded_slash, PathError::EncodedSlash)),
                b'\\' => Some((policy.backslash, PathError::Backslash)),
                _ => None,
            };
            match action {
                Some((SlashAction::Reject, e)) => return Err(e),
                Some((SlashAction::Redirect, _)) => {
                    redirect = true;
                    decoded.push(b'/');
                }
                Some((SlashAction::Keep, _)) | None if is_unreserved(c) => decoded.push(c),
                Some((SlashAction::Keep, _)) | None => {
                    const HEX: &[u8; 16] = b"0123456789ABCDEF";
                    decoded.extend_from_slice(&[b'%', HEX[usize::from(hi)], HEX[usize::from(lo)]]);
                }
            }
            continue;
        }
        if b == b'\\' {
            match policy.backslash {
                SlashAction::Reject => return Err(PathError::Backslash),
                SlashAction::Redirect => {
                    redirect = true;
                    decoded.push(b'/');
                }
                SlashAction::Keep => decoded.push(b),
            }
        } else {
            decoded.push(b);
        }
        i += 1;
    }
    if policy.merge_slashes {
        decoded.dedup_by(|b, a| *a == b'/' && *b == b'/');
    }
    let out = remove_dot_segments(&decoded);
    // Only ASCII bytes were replaced by ASCII bytes, and whole UTF-8 sequences kept: the
    // result is UTF-8. A failure here would be a bug; the lossy form is still canonical.
    let out = match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    Ok(if redirect {
        NormalizedPath::Redirect(out)
    } else {
        NormalizedPath::Canonical(Cow::Owned(out))
    })
}

/// The fast path: no `%`, `\`, dot segment or (when merged) `//`.
fn is_canonical(path: &str, policy: &PathPolicy) -> bool {
    let bytes = path.as_bytes();
    if bytes.iter().any(|&b| b == b'%' || b == b'\\') {
        return false;
    }
    if policy.merge_slashes && path.contains("//") {
        return false;
    }
    !path.split('/').any(|seg| seg == "." || seg == "..")
}

/// RFC 3986 5.2.4 `remove_dot_segments` on an absolute path, segment by segment.
fn remove_dot_segments(path: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(path.len());
    // Segments after the leading `/`; the last one has no trailing `/`.
    let mut segments = path
        .strip_prefix(b"/")
        .unwrap_or(path)
        .split(|&b| b == b'/');
    let mut next = segments.next();
    while let Some(seg) = next {
        next = segments.next();
        let last = next.is_none();
        match seg {
            b"." => {
                // `/./x` is `/x`; a final `/.` leaves the directory: `/a/.` is `/a/`.
                if last {
                    out.push(b'/');
                }
            }
            b".." => {
                // Drop the last output segment (and its `/`); never above the root.
                let cut = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
                out.truncate(cut);
                if last {
                    out.push(b'/');
                }
            }
            _ => {
                out.push(b'/');
                out.extend_from_slice(seg);
            }
        }
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// Why a request's host is refused (400 Bad Request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// More than one `Host` header (RFC 9112 3.2: "A server MUST respond with a 400 (Bad
    /// Request) status code to any HTTP/1.1 request message that ... contains more than one
    /// Host header field line").
    #[error("more than one Host header")]
    DuplicateHost,
    /// A `Host` value that is not `host[:port]`.
    #[error("invalid Host header")]
    InvalidHost,
    /// Userinfo (`user@`) in the request's authority (RFC 9110 4.2.4).
    #[error("userinfo in the request authority")]
    Userinfo,
    /// HTTP/2 or HTTP/3: `Host` names another host or port than `:authority` (RFC 9113
    /// 8.3.1: "A server SHOULD treat a request as malformed if it contains a Host header field
    /// that identifies an entity that differs from the entity in the ":authority" pseudo-header
    /// field").
    #[error("Host header differs from :authority")]
    AuthorityMismatch,
}

/// Checks the request's host as the [module](self) describes: `Ok` when it is unambiguous.
///
/// ```
/// use gw_router::normalize::{check_host, HostError};
/// use http::{HeaderMap, Uri, Version};
///
/// let mut headers = HeaderMap::new();
/// headers.append("host", "example.com".parse().unwrap());
/// let origin: Uri = "/x".parse().unwrap();
/// assert_eq!(check_host(Version::HTTP_11, &origin, &headers), Ok(()));
/// headers.append("host", "evil.example".parse().unwrap());
/// assert_eq!(check_host(Version::HTTP_11, &origin, &headers), Err(HostError::DuplicateHost));
/// ```
pub fn check_host(version: Version, uri: &Uri, headers: &HeaderMap) -> Result<(), HostError> {
    let mut hosts = headers.get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(HostError::DuplicateHost);
    }
    let host = match host {
        Some(h) => {
            let h = h.to_str().map_err(|_| HostError::InvalidHost)?;
            Some(parse_authority(h)?)
        }
        None => None,
    };
    let authority = match uri.authority() {
        Some(a) => Some(parse_authority(a.as_str())?),
        None => None,
    };
    if matches!(version, Version::HTTP_2 | Version::HTTP_3)
        && let (Some(h), Some(a)) = (host, authority)
    {
        let default = match uri.scheme_str() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        };
        let same_host = h.0.eq_ignore_ascii_case(a.0);
        let same_port = h.1.or(default) == a.1.or(default);
        if !(same_host && same_port) {
            return Err(HostError::AuthorityMismatch);
        }
    }
    Ok(())
}

/// `host[:port]` (RFC 9110 7.2: `uri-host [ ":" port ]`): the host and the port, if any.
fn parse_authority(a: &str) -> Result<(&str, Option<u16>), HostError> {
    if a.contains('@') {
        return Err(HostError::Userinfo);
    }
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        // IP-literal.
        let end = rest.find(']').ok_or(HostError::InvalidHost)?;
        let (literal, after) = rest.split_at(end);
        if literal.is_empty()
            || !literal
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
        {
            return Err(HostError::InvalidHost);
        }
        let after = &after[1..];
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(HostError::InvalidHost)?),
        };
        (&a[..end + 2], port)
    } else {
        match a.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        }
    };
    // reg-name / IPv4address: unreserved / pct-encoded / sub-delims.
    let reg_name_ok = host.starts_with('[')
        || host.bytes().all(|b| {
            is_unreserved(b)
                || matches!(
                    b,
                    b'%' | b'!'
                        | b'$'
                        | b'&'
                        | b'\''
                        | b'('
                        | b')'
                        | b'*'
                        | b'+'
                        | b','
                        | b';'
                        | b'='
                )
        });
    if !reg_name_ok {
        return Err(HostError::InvalidHost);
    }
    let port = match port {
        None | Some("") => None,
        Some(p) if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().map_err(|_| HostError::InvalidHost)?)
        }
        Some(_) => return Err(HostError::InvalidHost),
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn canon(p: &str) -> String {
        match normalize_path(p, &PathPolicy::default()) {
            Ok(NormalizedPath::Canonical(c)) => c.into_owned(),
            other => panic!("{p}: {other:?}"),
        }
    }

    // RFC 3986 5.2.4: "The pseudocode also refers to a "remove_last_segment" routine ..."
    // and the examples of 5.4.1/5.4.2 as absolute paths.
    #[test]
    fn rfc3986_remove_dot_segments() {
        for (input, want) in [
            ("/a/b/c/./../../g", "/a/g"),
            ("/mid/content=5/../6", "/mid/6"),
            ("/a/../admin", "/admin"),
            ("/../admin", "/admin"),
            ("/..", "/"),
            ("/.", "/"),
            ("/a/.", "/a/"),
            ("/a/..", "/"),
            ("/a/b/..", "/a/"),
            ("/a/./b", "/a/b"),
            ("/a/b/../../../../c", "/c"),
            ("/a/..b/c", "/a/..b/c"),
            ("/a/.b", "/a/.b"),
            ("/", "/"),
            ("/a/", "/a/"),
        ] {
            assert_eq!(canon(input), want, "{input}");
        }
    }

    // RFC 3986 6.2.2.2: "URIs should be normalized by decoding any percent-encoded octet that
    // corresponds to an unreserved character"; 6.2.2.1: "For all URIs, the hexadecimal digits
    // within a percent-encoding triplet ... should be normalized to use uppercase letters".
    #[test]
    fn rfc3986_percent_encoding_normalization() {
        assert_eq!(canon("/%41%62%2d%2E%5f%7e"), "/Ab-._~");
        assert_eq!(canon("/a%3ab%c3%a9"), "/a%3Ab%C3%A9");
        assert_eq!(canon("/a/%2e%2e/admin"), "/admin");
        assert_eq!(canon("/a/%2E%2e/%2e/admin"), "/admin");
        assert_eq!(canon("/%252e%252e/x"), "/%252e%252e/x");
        for bad in ["/a%", "/a%2", "/a%zz", "/%g1"] {
            assert_eq!(
                normalize_path(bad, &PathPolicy::default()),
                Err(PathError::MalformedPercentEncoding),
                "{bad}"
            );
        }
    }

    #[test]
    fn merged_slashes() {
        assert_eq!(canon("//admin"), "/admin");
        assert_eq!(canon("/a//b///c/"), "/a/b/c/");
        assert_eq!(canon("/a//../b"), "/b");
        let keep = PathPolicy::default().with_merge_slashes(false);
        assert_eq!(
            normalize_path("/a//b", &keep),
            Ok(NormalizedPath::Canonical(Cow::Borrowed("/a//b")))
        );
    }

    #[test]
    fn encoded_slashes_and_backslashes_follow_the_policy() {
        let p = PathPolicy::default();
        assert_eq!(normalize_path("/a%2fb", &p), Err(PathError::EncodedSlash));
        assert_eq!(normalize_path("/a%5Cb", &p), Err(PathError::Backslash));
        assert_eq!(normalize_path("/a\\b", &p), Err(PathError::Backslash));
        let redirect = PathPolicy::default()
            .with_encoded_slash(SlashAction::Redirect)
            .with_backslash(SlashAction::Redirect);
        assert_eq!(
            normalize_path("/a%2f..%2Fadmin", &redirect),
            Ok(NormalizedPath::Redirect("/admin".into()))
        );
        assert_eq!(
            normalize_path("/a\\b%5cc", &redirect),
            Ok(NormalizedPath::Redirect("/a/b/c".into()))
        );
        let keep = PathPolicy::default()
            .with_encoded_slash(SlashAction::Keep)
            .with_backslash(SlashAction::Keep);
        assert_eq!(canon_with("/a%2f..%2fb/../c", &keep), "/c");
        assert_eq!(canon_with("/x/a%2f..%2fb", &keep), "/x/a%2F..%2Fb");
        assert_eq!(canon_with("/a\\..\\b", &keep), "/a\\..\\b");
    }

    fn canon_with(p: &str, policy: &PathPolicy) -> String {
        match normalize_path(p, policy) {
            Ok(NormalizedPath::Canonical(c)) => c.into_owned(),
            other => panic!("{p}: {other:?}"),
        }
    }

    #[test]
    fn canonical_paths_are_borrowed_and_other_forms_untouched() {
        for p in ["/", "/a/b", "/a/b/", "/.well-known/x", "*", ""] {
            assert!(
                matches!(
                    normalize_path(p, &PathPolicy::default()),
                    Ok(NormalizedPath::Canonical(Cow::Borrowed(_)))
                ),
                "{p}"
            );
        }
    }

    fn policies() -> impl Strategy<Value = PathPolicy> {
        let action = prop_oneof![
            Just(SlashAction::Reject),
            Just(SlashAction::Redirect),
            Just(SlashAction::Keep)
        ];
        (any::<bool>(), action.clone(), action).prop_map(|(m, e, b)| PathPolicy {
            merge_slashes: m,
            encoded_slash: e,
            backslash: b,
        })
    }

    proptest! {
        // Normalizing twice changes nothing, and a redirect target is canonical: following
        // the redirect is served, not redirected again.
        #[test]
        fn normalization_is_idempotent(
            path in "/([a-zA-Z0-9./\\\\~_-]|%[0-9a-fA-F]{2}|%2[eEfF]|%5[cC]|\\.\\.|//|é){0,24}",
            policy in policies(),
        ) {
            match normalize_path(&path, &policy) {
                Ok(NormalizedPath::Canonical(c)) => {
                    let again = normalize_path(&c, &policy);
                    prop_assert_eq!(again, Ok(NormalizedPath::Canonical(Cow::Borrowed(&*c))));
                    prop_assert!(c.starts_with('/'));
                    prop_assert!(c.parse::<Uri>().is_ok(), "{}", c);
                }
                Ok(NormalizedPath::Redirect(r)) => {
                    let again = normalize_path(&r, &policy);
                    prop_assert_eq!(again, Ok(NormalizedPath::Canonical(Cow::Borrowed(&*r))));
                }
                Err(_) => {}
            }
        }
    }

    #[test]
    fn host_checks() {
        let h = |values: &[&str]| {
            let mut m = HeaderMap::new();
            for v in values {
                m.append(HOST, v.parse().unwrap());
            }
            m
        };
        let origin: Uri = "/x".parse().unwrap();
        let ok = |v, u: &Uri, hs: &[&str]| check_host(v, u, &h(hs));
        assert_eq!(ok(Version::HTTP_11, &origin, &["Example.com:8080"]), Ok(()));
        assert_eq!(ok(Version::HTTP_11, &origin, &["[::1]:80"]), Ok(()));
        assert_eq!(ok(Version::HTTP_11, &origin, &[]), Ok(()));
        assert_eq!(
            ok(Version::HTTP_11, &origin, &["a.example", "a.example"]),
            Err(HostError::DuplicateHost)
        );
        for bad in ["a b", "a/b", "a:port", "a:123456", "[zz]", "[::1", "a\"b"] {
            assert_eq!(
                ok(Version::HTTP_11, &origin, &[bad]),
                Err(HostError::InvalidHost),
                "{bad}"
            );
        }
        assert_eq!(
            ok(Version::HTTP_11, &origin, &["user@a.example"]),
            Err(HostError::Userinfo)
        );
        // RFC 9112 3.2.2: absolute-form wins over Host; they may differ on HTTP/1.
        let absolute: Uri = "http://a.example/x".parse().unwrap();
        assert_eq!(ok(Version::HTTP_11, &absolute, &["b.example"]), Ok(()));
        // RFC 9113 8.3.1: on HTTP/2 they must name the same host and port.
        assert_eq!(ok(Version::HTTP_2, &absolute, &["A.Example:80"]), Ok(()));
        assert_eq!(ok(Version::HTTP_2, &absolute, &[]), Ok(()));
        assert_eq!(
            ok(Version::HTTP_2, &absolute, &["b.example"]),
            Err(HostError::AuthorityMismatch)
        );
        assert_eq!(
            ok(Version::HTTP_2, &absolute, &["a.example:8080"]),
            Err(HostError::AuthorityMismatch)
        );
        let userinfo: Uri = "http://u@a.example/x".parse().unwrap();
        assert_eq!(
            ok(Version::HTTP_11, &userinfo, &[]),
            Err(HostError::Userinfo)
        );
    }
}
