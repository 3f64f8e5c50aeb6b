//! The pure CORS decision (GEP-1767): no I/O, no service, usable from any router.

use gw_model::compile::hostname::wildcard_matches;
use gw_model::resources::Cors;
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, request};

use super::CorsError;
use crate::outcome::{merge_headers, response_with};

/// A CORS policy compiled once from the HTTPRoute `CORS` filter or a policy resource
/// ([`gw_model::resources::Cors`]). Every request-time method is infallible.
///
/// This is the one CORS implementation of gw: [`CorsLayer`](super::CorsLayer) wraps it as a
/// tower Layer, and a router calls [`preflight`](Self::preflight) and
/// [`actual`](Self::actual) directly.
///
/// ```
/// use gw_policy::cors::CompiledCors;
/// use gw_policy::gw_model::resources::Cors;
///
/// let cors = CompiledCors::new(&Cors {
///     allow_origins: vec!["https://*.example.com".into()],
///     allow_methods: vec!["GET".into(), "POST".into()],
///     max_age: 600,
///     ..Cors::default()
/// })?;
/// let req = http::Request::options("/")
///     .header("origin", "https://app.example.com")
///     .header("access-control-request-method", "POST")
///     .body(())?;
/// let answer = cors.preflight(req.method(), req.headers()).expect("a preflight");
/// assert_eq!(answer["access-control-allow-origin"], "https://app.example.com");
/// assert_eq!(answer["access-control-allow-methods"], "GET, POST");
/// assert_eq!(answer["access-control-max-age"], "600");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct CompiledCors {
    /// `None`: `*` (every origin).
    origins: Option<Vec<OriginPattern>>,
    credentials: bool,
    methods: Allow,
    headers: Allow,
    expose: Allow,
    max_age: HeaderValue,
}

#[derive(Debug, Clone)]
enum Allow {
    Nothing,
    Any,
    List(HeaderValue),
}

impl Allow {
    fn new(field: &'static str, list: &[String]) -> Result<Allow, CorsError> {
        if list.is_empty() {
            Ok(Allow::Nothing)
        } else if list.iter().any(|v| v == "*") {
            Ok(Allow::Any)
        } else {
            HeaderValue::from_str(&list.join(", "))
                .map(Allow::List)
                .map_err(|_| CorsError::InvalidList {
                    field,
                    list: list.to_vec(),
                })
        }
    }
}

#[derive(Debug, Clone)]
struct OriginPattern {
    scheme: String,
    /// Exact or `*.suffix`.
    host: String,
    port: Option<u16>,
}

/// A parsed `Origin`: scheme, host and port (the scheme's default when absent).
fn parse_origin(origin: &str) -> Option<(String, String, Option<u16>)> {
    let origin = origin.to_ascii_lowercase();
    let (scheme, rest) = origin.split_once("://")?;
    let (host, port) = if rest.starts_with('[') {
        let end = rest.find(']')?;
        let port = rest.get(end + 1..)?.strip_prefix(':');
        (rest.get(..=end)?, port)
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

/// CORS headers for the response to an actual (non-preflight) request; empty when the request
/// has no allowed `Origin`. Apply them with [`apply_to`](Self::apply_to), or iterate them.
#[derive(Debug, Clone, Default)]
pub struct CorsHeaders(HeaderMap);

impl CorsHeaders {
    /// Whether there is nothing to add (no `Origin`, or an origin that is not allowed).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds the headers to a response: `Vary` is appended to the backend's, every other
    /// header replaces the backend's.
    pub fn apply_to(self, response_headers: &mut HeaderMap) {
        merge_headers(response_headers, self.0);
    }

    /// The headers as a map.
    pub fn into_header_map(self) -> HeaderMap {
        self.0
    }
}

impl IntoIterator for CorsHeaders {
    type Item = (HeaderName, HeaderValue);
    type IntoIter = std::vec::IntoIter<(HeaderName, HeaderValue)>;

    /// Name/value pairs (each policy header has one value).
    fn into_iter(self) -> Self::IntoIter {
        let mut last: Option<HeaderName> = None;
        let mut out = Vec::with_capacity(self.0.len());
        for (name, value) in self.0 {
            if let Some(n) = name {
                last = Some(n);
            }
            if let Some(n) = &last {
                out.push((n.clone(), value));
            }
        }
        out.into_iter()
    }
}

impl TryFrom<&Cors> for CompiledCors {
    type Error = CorsError;

    fn try_from(spec: &Cors) -> Result<Self, CorsError> {
        CompiledCors::new(spec)
    }
}

impl CompiledCors {
    /// Compiles a CORS spec: origins are parsed, lists joined into header values.
    pub fn new(spec: &Cors) -> Result<CompiledCors, CorsError> {
        let origins = if spec.allow_origins.iter().any(|o| o == "*") {
            None
        } else {
            Some(
                spec.allow_origins
                    .iter()
                    .map(|o| {
                        parse_origin(o)
                            .map(|(scheme, host, port)| OriginPattern { scheme, host, port })
                            .ok_or_else(|| CorsError::InvalidOrigin { origin: o.clone() })
                    })
                    .collect::<Result<_, _>>()?,
            )
        };
        Ok(CompiledCors {
            origins,
            credentials: spec.allow_credentials == Some(true),
            methods: Allow::new("allowMethods", &spec.allow_methods)?,
            headers: Allow::new("allowHeaders", &spec.allow_headers)?,
            expose: Allow::new("exposeHeaders", &spec.expose_headers)?,
            max_age: HeaderValue::from(spec.max_age),
        })
    }

    /// Whether `origin` is allowed: "`*` is a greedy match to the left, including any number
    /// of DNS labels"; a missing port is the scheme's default.
    pub fn allows_origin(&self, origin: &str) -> bool {
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

    /// The request's `Origin`, if it has one and it is allowed.
    fn allowed_origin<'h>(&self, headers: &'h HeaderMap) -> Option<&'h HeaderValue> {
        let origin = headers.get(ORIGIN)?;
        self.allows_origin(origin.to_str().ok()?).then_some(origin)
    }

    /// Whether the request is a CORS preflight: `OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`.
    pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
        method == Method::OPTIONS
            && headers.contains_key(ORIGIN)
            && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// For a preflight, the headers of the gateway's own answer (sent with
    /// [`PREFLIGHT_STATUS`](Self::PREFLIGHT_STATUS)): the CORS headers when the origin is
    /// allowed, only `Vary` otherwise ("the gateway returns 204/200 response but doesn't set
    /// the relevant cross-origin response headers"). `None` for other requests, which go on
    /// to the backend and get [`actual`](Self::actual) headers.
    pub fn preflight(&self, method: &Method, headers: &HeaderMap) -> Option<HeaderMap> {
        if !Self::is_preflight(method, headers) {
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

    /// The status of the gateway's answer to a preflight.
    pub const PREFLIGHT_STATUS: StatusCode = StatusCode::NO_CONTENT;

    /// The gateway's whole answer to a preflight (204 with [`preflight`](Self::preflight)'s
    /// headers); `None` when the request is not a preflight.
    pub fn preflight_response<B: Default>(&self, parts: &request::Parts) -> Option<Response<B>> {
        self.preflight(&parts.method, &parts.headers)
            .map(|headers| response_with(Self::PREFLIGHT_STATUS, headers))
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

    /// Response headers for an actual (non-preflight) request: `Access-Control-Allow-Origin`,
    /// `Vary: origin`, credentials and exposed headers when the `Origin` is allowed; nothing
    /// otherwise. Compute them from the request headers before the request is forwarded.
    pub fn actual(&self, request_headers: &HeaderMap) -> CorsHeaders {
        let mut out = HeaderMap::new();
        let Some(origin) = self.allowed_origin(request_headers) else {
            return CorsHeaders(out);
        };
        out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        out.insert(VARY, HeaderValue::from_static("origin"));
        if self.credentials {
            out.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        self.expose_header(&mut out);
        CorsHeaders(out)
    }

    /// [`actual`](Self::actual) applied to a response in one step.
    pub fn apply_to_response(&self, request_headers: &HeaderMap, response_headers: &mut HeaderMap) {
        self.actual(request_headers).apply_to(response_headers);
    }
}
