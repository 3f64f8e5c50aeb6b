//! The CORS filter (GEP-1767).

use gw_model::compile::hostname::wildcard_matches;
use gw_model::resources::Cors;
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

/// A compiled CORS policy.
#[derive(Debug)]
pub(crate) struct CorsPolicy {
    /// `None`: `*` (every origin).
    origins: Option<Vec<OriginPattern>>,
    credentials: bool,
    methods: Allow,
    headers: Allow,
    expose: Allow,
    max_age: HeaderValue,
}

#[derive(Debug)]
enum Allow {
    Nothing,
    Any,
    List(HeaderValue),
}

impl Allow {
    fn new(list: &[String]) -> Result<Allow, String> {
        if list.is_empty() {
            Ok(Allow::Nothing)
        } else if list.iter().any(|v| v == "*") {
            Ok(Allow::Any)
        } else {
            HeaderValue::from_str(&list.join(", "))
                .map(Allow::List)
                .map_err(|_| format!("CORS list {list:?} is not a valid header value"))
        }
    }
}

#[derive(Debug)]
struct OriginPattern {
    scheme: String,
    /// `*`, exact or `*.suffix`.
    host: String,
    port: Option<u16>,
}

/// A parsed `Origin`: scheme, host and port (the scheme's default when absent).
fn parse_origin(origin: &str) -> Option<(String, String, Option<u16>)> {
    let origin = origin.to_ascii_lowercase();
    let (scheme, rest) = origin.split_once("://")?;
    let (host, port) = if rest.starts_with('[') {
        let end = rest.find(']')?;
        let port = rest[end + 1..].strip_prefix(':');
        (&rest[..=end], port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse().ok()?),
        None => match scheme {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        },
    };
    if host.is_empty() || host.contains('/') {
        return None;
    }
    Some((scheme.to_owned(), host.to_owned(), port))
}

impl CorsPolicy {
    pub(crate) fn new(c: &Cors) -> Result<CorsPolicy, String> {
        let origins = if c.allow_origins.iter().any(|o| o == "*") {
            None
        } else {
            Some(
                c.allow_origins
                    .iter()
                    .map(|o| {
                        parse_origin(o)
                            .map(|(scheme, host, port)| OriginPattern { scheme, host, port })
                            .ok_or_else(|| format!("CORS origin {o:?} is not scheme://host[:port]"))
                    })
                    .collect::<Result<_, _>>()?,
            )
        };
        Ok(CorsPolicy {
            origins,
            credentials: c.allow_credentials == Some(true),
            methods: Allow::new(&c.allow_methods)?,
            headers: Allow::new(&c.allow_headers)?,
            expose: Allow::new(&c.expose_headers)?,
            max_age: HeaderValue::from(c.max_age),
        })
    }

    /// Whether `origin` is allowed: "`*` is a greedy match to the left, including any number
    /// of DNS labels"; a missing port is the scheme's default.
    fn allows(&self, origin: &str) -> bool {
        let Some(patterns) = &self.origins else {
            return true;
        };
        let Some((scheme, host, port)) = parse_origin(origin) else {
            return false;
        };
        patterns.iter().any(|p| {
            p.scheme == scheme
                && p.port == port
                && (p.host == "*" || wildcard_matches(&p.host, &host))
        })
    }

    /// The allowed request's `Origin`, if the request has one and it is allowed.
    fn allowed_origin<'h>(&self, headers: &'h HeaderMap) -> Option<&'h HeaderValue> {
        let origin = headers.get(ORIGIN)?;
        self.allows(origin.to_str().ok()?).then_some(origin)
    }

    /// For a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`), the
    /// headers of the gateway's own answer: the CORS headers when the origin is allowed, none
    /// otherwise ("the gateway returns 204/200 response but doesn't set the relevant
    /// cross-origin response headers"). `None` for other requests.
    pub(crate) fn preflight(&self, method: &Method, headers: &HeaderMap) -> Option<HeaderMap> {
        if method != Method::OPTIONS || !headers.contains_key(ORIGIN) {
            return None;
        }
        let requested_method = headers.get(ACCESS_CONTROL_REQUEST_METHOD)?;
        let mut out = HeaderMap::new();
        out.insert(VARY, HeaderValue::from_static("origin"));
        let Some(origin) = self.allowed_origin(headers) else {
            return Some(out);
        };
        // Echoing the origin is valid with and without credentials; `*` is not with them.
        out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if self.credentials {
            out.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        match &self.methods {
            Allow::Nothing => {}
            // "must return a single HTTP method matching the value of the
            // Access-Control-Request-Method request header" (allowed without credentials too).
            Allow::Any => {
                out.insert(ACCESS_CONTROL_ALLOW_METHODS, requested_method.clone());
            }
            Allow::List(v) => {
                out.insert(ACCESS_CONTROL_ALLOW_METHODS, v.clone());
            }
        }
        // "If the Access-Control-Request-Headers header is not present in the request, the
        // gateway must omit the Access-Control-Allow-Headers response header."
        if let Some(requested) = headers.get(ACCESS_CONTROL_REQUEST_HEADERS) {
            match &self.headers {
                Allow::Nothing => {}
                Allow::Any => {
                    out.insert(ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
                }
                Allow::List(v) => {
                    out.insert(ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
                }
            }
        }
        self.expose_header(&mut out);
        out.insert(ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        Some(out)
    }

    fn expose_header(&self, out: &mut HeaderMap) {
        match &self.expose {
            Allow::Nothing => {}
            // With credentials `*` would be taken literally by browsers: say nothing.
            Allow::Any if self.credentials => {}
            Allow::Any => {
                out.insert(ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("*"));
            }
            Allow::List(v) => {
                out.insert(ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
            }
        }
    }

    /// Response headers for an actual (non-preflight) request from an allowed origin.
    pub(crate) fn actual(&self, headers: &HeaderMap, out: &mut Vec<(HeaderName, HeaderValue)>) {
        let Some(origin) = self.allowed_origin(headers) else {
            return;
        };
        out.push((ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()));
        out.push((VARY, HeaderValue::from_static("origin")));
        if self.credentials {
            out.push((
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ));
        }
        let mut expose = HeaderMap::new();
        self.expose_header(&mut expose);
        out.extend(
            expose
                .into_iter()
                .filter_map(|(name, value)| name.map(|n| (n, value))),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(origins: &[&str]) -> CorsPolicy {
        CorsPolicy::new(&Cors {
            allow_origins: origins.iter().map(|s| s.to_string()).collect(),
            allow_methods: vec!["GET".into(), "OPTIONS".into()],
            ..Cors::default()
        })
        .unwrap()
    }

    // "`*` is a greedy match to the _left_, including any number of DNS labels"; "if not
    // included, port `80` is assumed for `http` scheme origins, and port `443` ... `https`".
    #[test]
    fn origin_wildcards_and_default_ports() {
        let p = policy(&[
            "https://www.foo.com",
            "https://*.bar.com",
            "http://x.com:8080",
        ]);
        assert!(p.allows("https://www.foo.com"));
        assert!(p.allows("https://www.foo.com:443"));
        assert!(!p.allows("http://www.foo.com"));
        assert!(p.allows("https://www.bar.com"));
        assert!(p.allows("https://xpto.www.bar.com"));
        assert!(!p.allows("https://bar.com"));
        assert!(!p.allows("https://foobar.com"));
        assert!(p.allows("http://x.com:8080"));
        assert!(!p.allows("http://x.com"));
        assert!(!p.allows("null"));
        assert!(policy(&["*"]).allows("https://foobar.com:12345"));
    }
}
