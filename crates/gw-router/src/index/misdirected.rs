//! Misdirected requests on HTTPS listeners (GEP-3567, `GatewayHTTPSListenerDetectMisdirectedRequests`).
//!
//! A client may reuse a TLS connection for any host its certificate covers (HTTP/2 connection
//! coalescing), so the listener the SNI selected during the handshake and the listener the
//! `Host` selects can differ. Gateway API, `Listener.hostname`:
//!
//! > To detect misdirected requests, Gateways SHOULD match the authority of the requests with
//! > all the SNI hostname(s) configured across all the Gateway Listeners on the same port and
//! > protocol:
//! > * If another Listener has an exact match or more specific wildcard entry, the Gateway
//! >   SHOULD return a 421.
//! > * If the current Listener (selected by SNI matching during ClientHello) does not match the
//! >   Host:
//! >   * If another Listener does match the Host, the Gateway SHOULD return a 421.
//! >   * If no other Listener matches the Host, the Gateway MUST return a 404.
//!
//! Both bullets amount to: the listener chosen for the `Host` (most specific match) must be the
//! listener chosen for the SNI (most specific match, as when the certificate was chosen), else
//! 421; when no listener accepts the `Host`, 404.
//!
//! A connection without SNI (or a request whose server did not record it) is routed by `Host`
//! alone: the client claimed no name at the TLS layer, and a 421 would only make it retry on a
//! new connection that would be answered the same way.

use super::host::{HostIndex, normalize_host};

/// Which listener handles a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Selection<T> {
    /// The listener (SNI and `Host` agree, or there is no SNI).
    Listener(T),
    /// The `Host` belongs to `host`, but the connection was set up for `sni` (`None`: the SNI
    /// matches no listener): 421.
    Misdirected {
        /// The listener the SNI selects.
        sni: Option<T>,
        /// The listener the `Host` selects.
        host: T,
    },
    /// No listener accepts the `Host`: 404.
    NoListener,
}

/// Selects the listener for `host` (normalized) on a connection whose SNI was `sni`.
pub(crate) fn select<T: Copy + PartialEq>(
    listeners: &HostIndex<T>,
    host: &str,
    sni: Option<&str>,
) -> Selection<T> {
    let Some((_, &by_host)) = listeners.find(host) else {
        return Selection::NoListener;
    };
    let Some(sni) = sni else {
        return Selection::Listener(by_host);
    };
    let by_sni = listeners.find(&normalize_host(sni)).map(|(_, &l)| l);
    if by_sni == Some(by_host) {
        Selection::Listener(by_host)
    } else {
        Selection::Misdirected {
            sni: by_sni,
            host: by_host,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The listeners of the conformance Gateway `same-namespace-with-https-listener`.
    fn listeners() -> HostIndex<&'static str> {
        let mut index = HostIndex::default();
        for (hostname, name) in [
            ("", "https"),
            ("second-example.org", "https-with-hostname"),
            ("*.wildcard.org", "https-with-wildcard-hostname"),
            (
                "fourth-example.wildcard.org",
                "https-with-hostname-matching-wildcard",
            ),
        ] {
            *index.entry(hostname, || name) = name;
        }
        index
    }

    fn outcome(host: &str, sni: Option<&str>) -> &'static str {
        match select(&listeners(), host, sni) {
            Selection::Listener(l) => l,
            Selection::Misdirected { .. } => "421",
            Selection::NoListener => "404",
        }
    }

    /// "If another Listener has an exact match or more specific wildcard entry, the Gateway
    /// SHOULD return a 421."
    #[test]
    fn another_listener_with_a_more_specific_match_is_421() {
        // SNI picked the catch-all listener; the Host has its own listener.
        assert_eq!(outcome("second-example.org", Some("example.org")), "421");
        // SNI picked `*.wildcard.org`; the Host has an exact listener.
        assert_eq!(
            outcome(
                "fourth-example.wildcard.org",
                Some("third-example.wildcard.org")
            ),
            "421"
        );
    }

    /// "If the current Listener (selected by SNI matching during ClientHello) does not match the
    /// Host: If another Listener does match the Host, the Gateway SHOULD return a 421."
    #[test]
    fn host_outside_the_sni_listener_but_on_another_is_421() {
        assert_eq!(outcome("example.org", Some("second-example.org")), "421");
        assert_eq!(
            outcome("unknown-example.org", Some("second-example.org")),
            "421"
        );
        assert_eq!(
            outcome(
                "fith-example.wildcard.org",
                Some("fourth-example.wildcard.org")
            ),
            "421"
        );
        assert_eq!(
            outcome("unknown-example.org", Some("third-example.wildcard.org")),
            "421"
        );
    }

    /// "If no other Listener matches the Host, the Gateway MUST return a 404."
    #[test]
    fn host_on_no_listener_is_404() {
        let mut index = HostIndex::default();
        *index.entry("a.example.com", || 0) = 0;
        *index.entry("*.b.example.com", || 1) = 1;
        assert_eq!(
            select(&index, "c.example.com", Some("a.example.com")),
            Selection::NoListener
        );
    }

    #[test]
    fn same_listener_for_sni_and_host_is_served() {
        assert_eq!(outcome("example.org", Some("example.org")), "https");
        // The catch-all listener serves unknown SNIs and hosts alike (the route decides: 404).
        assert_eq!(outcome("unknown-example.org", Some("example.org")), "https");
        assert_eq!(outcome("example.org", Some("unknown-example.org")), "https");
        // Two hosts under the same wildcard listener may share a connection.
        assert_eq!(
            outcome(
                "fith-example.wildcard.org",
                Some("third-example.wildcard.org")
            ),
            "https-with-wildcard-hostname"
        );
        // SNI compares like hostnames: case-insensitively, without a trailing dot.
        assert_eq!(
            outcome("second-example.org", Some("Second-Example.ORG.")),
            "https-with-hostname"
        );
    }

    #[test]
    fn without_sni_the_host_alone_selects() {
        assert_eq!(outcome("second-example.org", None), "https-with-hostname");
        assert_eq!(outcome("example.org", None), "https");
    }

    #[test]
    fn sni_matching_no_listener_is_421_when_the_host_has_one() {
        let mut index = HostIndex::default();
        *index.entry("a.example.com", || 0) = 0;
        assert_eq!(
            select(&index, "a.example.com", Some("z.example.net")),
            Selection::Misdirected { sni: None, host: 0 }
        );
    }
}
