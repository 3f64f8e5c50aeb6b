//! Hostnames: validation, wildcard matching and listener/route intersection.

use std::cmp::Ordering;

/// Whether `h` is a valid Gateway API `Hostname`: a lowercase RFC 1123 DNS name, optionally
/// prefixed by a single `*.` wildcard label; IP addresses are not hostnames.
pub fn is_valid_hostname(h: &str) -> bool {
    let name = h.strip_prefix("*.").unwrap_or(h);
    if name.is_empty() || h.len() > 253 || name.parse::<std::net::IpAddr>().is_ok() {
        return false;
    }
    name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    })
}

/// Whether `pattern` (exact or `*.suffix`) matches the concrete host `host` (already lowercase,
/// without port).
///
/// Gateway API: "The wildcard character will match any number of characters _and dots_ to the
/// left, however, so `*.example.com` will match both `foo.bar.example.com` _and_
/// `bar.example.com`" (but not `example.com`).
pub fn wildcard_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        None => pattern == host,
    }
}

/// The intersection of a listener hostname and a route hostname, if any: the more specific of
/// the two when one matches the other.
///
/// HTTPRoute spec: "A Listener with `*.example.com` as the hostname matches HTTPRoutes that
/// have either not specified any hostnames, or have specified at least one hostname that matches
/// the Listener hostname. For example, `*.example.com`, `test.example.com`, and
/// `foo.test.example.com` would all match. On the other hand, `example.com` and
/// `test.example.net` would not match."
pub fn intersect(listener: Option<&str>, route: &str) -> Option<String> {
    let Some(listener) = listener else {
        return Some(route.to_owned());
    };
    if listener == route {
        return Some(route.to_owned());
    }
    let l_wild = listener.starts_with("*.");
    let r_wild = route.starts_with("*.");
    match (l_wild, r_wild) {
        (false, false) => None,
        (true, false) => wildcard_matches(listener, route).then(|| route.to_owned()),
        (false, true) => wildcard_matches(route, listener).then(|| listener.to_owned()),
        (true, true) => {
            // The longer wildcard is inside the shorter one when its suffix ends with it.
            let (ls, rs) = (&listener[1..], &route[1..]);
            if rs.ends_with(ls) {
                Some(route.to_owned())
            } else if ls.ends_with(rs) {
                Some(listener.to_owned())
            } else {
                None
            }
        }
    }
}

/// The hostnames a route serves on a listener: every intersection of the route's hostnames with
/// the listener's. `None` when the route has hostnames and none intersects (the route does not
/// attach: `NoMatchingListenerHostname`); an empty list means "every hostname the listener
/// accepts" (neither side restricts).
pub fn effective_hostnames(listener: Option<&str>, route: &[String]) -> Option<Vec<String>> {
    if route.is_empty() {
        return Some(listener.map(|l| vec![l.to_owned()]).unwrap_or_default());
    }
    let mut out: Vec<String> = route
        .iter()
        .filter_map(|r| intersect(listener, r))
        .collect();
    out.sort();
    out.dedup();
    (!out.is_empty()).then_some(out)
}

/// Orders hostnames from most to least specific: exact before wildcard, then more labels first,
/// then longer, then alphabetically; the empty (catch-all) hostname is last.
///
/// Gateway API Listener: "Exact matches MUST be processed before wildcard matches, and wildcard
/// matches MUST be processed before fallback (empty Hostname value) matches ... the higher the
/// number of dots in the hostname to the right of the wildcard character, the higher the
/// precedence."
pub fn specificity_cmp(a: &str, b: &str) -> Ordering {
    let rank = |h: &str| -> (u8, std::cmp::Reverse<usize>, std::cmp::Reverse<usize>) {
        let class = if h.is_empty() {
            2
        } else if h.starts_with('*') {
            1
        } else {
            0
        };
        (
            class,
            std::cmp::Reverse(h.matches('.').count()),
            std::cmp::Reverse(h.len()),
        )
    };
    rank(a).cmp(&rank(b)).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostname_validation() {
        assert!(is_valid_hostname("foo.example.com"));
        assert!(is_valid_hostname("*.example.com"));
        assert!(is_valid_hostname("localhost"));
        assert!(!is_valid_hostname("Foo.example.com"));
        assert!(!is_valid_hostname("*.*.example.com"));
        assert!(!is_valid_hostname("foo.*.com"));
        assert!(!is_valid_hostname("127.0.0.1"));
        assert!(!is_valid_hostname(""));
        assert!(!is_valid_hostname("-a.com"));
    }

    // "*.example.com will match both foo.bar.example.com and bar.example.com" but not example.com.
    #[test]
    fn wildcard_matches_any_number_of_labels_but_not_the_apex() {
        assert!(wildcard_matches("*.example.com", "bar.example.com"));
        assert!(wildcard_matches("*.example.com", "foo.bar.example.com"));
        assert!(!wildcard_matches("*.example.com", "example.com"));
        assert!(!wildcard_matches("*.example.com", "badexample.com"));
        assert!(wildcard_matches("foo.com", "foo.com"));
    }

    // HTTPRoute hostnames: "*.example.com, test.example.com, and foo.test.example.com would all
    // match [a listener of *.example.com]. On the other hand, example.com and test.example.net
    // would not match."
    #[test]
    fn listener_route_hostname_intersection() {
        let l = Some("*.example.com");
        assert_eq!(
            intersect(l, "*.example.com").as_deref(),
            Some("*.example.com")
        );
        assert_eq!(
            intersect(l, "test.example.com").as_deref(),
            Some("test.example.com")
        );
        assert_eq!(
            intersect(l, "foo.test.example.com").as_deref(),
            Some("foo.test.example.com")
        );
        assert_eq!(
            intersect(l, "*.test.example.com").as_deref(),
            Some("*.test.example.com")
        );
        assert_eq!(intersect(l, "example.com"), None);
        assert_eq!(intersect(l, "test.example.net"), None);
        // A route wildcard that covers an exact listener hostname yields the listener's.
        assert_eq!(
            intersect(Some("foo.example.com"), "*.example.com").as_deref(),
            Some("foo.example.com")
        );
        assert_eq!(
            intersect(Some("*.foo.example.com"), "*.example.com").as_deref(),
            Some("*.foo.example.com")
        );
        assert_eq!(intersect(None, "x.com").as_deref(), Some("x.com"));
    }

    #[test]
    fn effective_hostnames_of_a_route() {
        assert_eq!(effective_hostnames(None, &[]), Some(vec![]));
        assert_eq!(
            effective_hostnames(Some("a.com"), &[]),
            Some(vec!["a.com".to_owned()])
        );
        assert_eq!(
            effective_hostnames(Some("a.com"), &["b.com".to_owned()]),
            None
        );
    }

    // "foo.example.com takes precedence over *.example.com, and *.example.com takes precedence
    // over ''" and "*.foo.example.com takes precedence over *.example.com".
    #[test]
    fn hostname_specificity_order() {
        let mut hs = vec!["", "*.example.com", "foo.example.com", "*.foo.example.com"];
        hs.sort_by(|a, b| specificity_cmp(a, b));
        assert_eq!(
            hs,
            ["foo.example.com", "*.foo.example.com", "*.example.com", ""]
        );
    }
}
