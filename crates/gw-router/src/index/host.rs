//! Hostname lookup: exact names, `*.` wildcards by specificity, then a catch-all.

use hashbrown::HashMap;
use std::borrow::Cow;

use gw_model::compile::hostname::wildcard_matches;

/// Values keyed by hostname pattern, found by the most specific pattern matching a host.
///
/// Lookup cost does not depend on the number of patterns: one hash lookup for the exact host,
/// one per dot of the host for wildcards (longest suffix first, which is the most specific
/// wildcard in the order of `gw_model::compile::hostname::specificity_cmp`), then the catch-all.
#[derive(Debug)]
pub(crate) struct HostIndex<T> {
    exact: HashMap<Box<str>, T>,
    /// Keyed by the wildcard's suffix including its dot (`.example.com` for `*.example.com`).
    wildcard: HashMap<Box<str>, (Box<str>, T)>,
    any: Option<T>,
}

impl<T> Default for HostIndex<T> {
    fn default() -> Self {
        HostIndex {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            any: None,
        }
    }
}

impl<T> HostIndex<T> {
    /// The value for `pattern` (`""` is the catch-all), inserted with `make` when absent.
    pub(crate) fn entry(&mut self, pattern: &str, make: impl FnOnce() -> T) -> &mut T {
        if pattern.is_empty() {
            return self.any.get_or_insert_with(make);
        }
        match pattern.strip_prefix('*') {
            Some(suffix) => {
                &mut self
                    .wildcard
                    .entry_ref(suffix)
                    .or_insert_with(|| (pattern.into(), make()))
                    .1
            }
            None => self.exact.entry_ref(pattern).or_insert_with(make),
        }
    }

    /// The value of the most specific pattern matching `host` (normalized: lowercase, no port,
    /// no trailing dot), with the pattern (`""` for the catch-all).
    pub(crate) fn find<'s>(&'s self, host: &str) -> Option<(&'s str, &'s T)> {
        if let Some((k, v)) = self.exact.get_key_value(host) {
            return Some((k, v));
        }
        if !self.wildcard.is_empty() {
            // Longest suffix first: `*.foo.example.com` before `*.example.com`.
            for (i, b) in host.bytes().enumerate().skip(1) {
                if b == b'.'
                    && let Some((pattern, v)) = self.wildcard.get(&host[i..])
                    && wildcard_matches(pattern, host)
                {
                    return Some((pattern, v));
                }
            }
        }
        self.any.as_ref().map(|v| ("", v))
    }
}

/// The host a request is for, normalized for matching: from the absolute-form URI when it has
/// an authority (RFC 9112 3.2.2: it wins over `Host`), else the `Host` header; port removed,
/// ASCII lowercase, one trailing dot removed. `""` when there is none.
pub(crate) fn request_host<'a>(uri: &'a http::Uri, headers: &'a http::HeaderMap) -> Cow<'a, str> {
    let raw = match uri.authority() {
        Some(a) => a.as_str(),
        None => headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or(""),
    };
    normalize_host(raw)
}

/// Normalizes an authority (`host[:port]`, possibly with userinfo) to a matching host.
pub(crate) fn normalize_host(authority: &str) -> Cow<'_, str> {
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let host = if authority.starts_with('[') {
        // IPv6 literal: keep the brackets, drop the port.
        match authority.find(']') {
            Some(end) => &authority[..=end],
            None => authority,
        }
    } else {
        match authority.rfind(':') {
            Some(i) => &authority[..i],
            None => authority,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gw_model::compile::hostname::specificity_cmp;

    #[test]
    fn host_normalization() {
        assert_eq!(normalize_host("Foo.Example.COM:8080"), "foo.example.com");
        assert_eq!(normalize_host("foo.example.com."), "foo.example.com");
        assert_eq!(normalize_host("foo.example.com.:80"), "foo.example.com");
        assert_eq!(normalize_host("[::1]:8080"), "[::1]");
        assert_eq!(normalize_host("user@host:1"), "host");
        assert_eq!(normalize_host(""), "");
        let uri: http::Uri = "http://Abs.Example:9/x".parse().unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::HOST, "other.example".parse().unwrap());
        assert_eq!(request_host(&uri, &headers), "abs.example");
        let uri: http::Uri = "/x".parse().unwrap();
        assert_eq!(request_host(&uri, &headers), "other.example");
    }

    // The index must agree with the model's definition: the first pattern, in
    // `specificity_cmp` order, that `wildcard_matches` the host.
    #[test]
    fn index_agrees_with_specificity_order() {
        let patterns = [
            "foo.example.com",
            "*.foo.example.com",
            "*.example.com",
            "*.com",
            "bar.example.com",
            "*.a.b.example.com",
            "",
        ];
        let mut index = HostIndex::default();
        for p in patterns {
            *index.entry(p, || p) = p;
        }
        let mut ordered = patterns.to_vec();
        ordered.sort_by(|a, b| specificity_cmp(a, b));
        for host in [
            "foo.example.com",
            "x.foo.example.com",
            "y.x.foo.example.com",
            "bar.example.com",
            "z.example.com",
            "example.com",
            "x.a.b.example.com",
            "a.b.example.com",
            "com",
            "other.org",
            "",
        ] {
            let expected = ordered
                .iter()
                .find(|p| p.is_empty() || wildcard_matches(p, host))
                .copied();
            assert_eq!(index.find(host).map(|(_, v)| *v), expected, "{host}");
        }
    }
}
