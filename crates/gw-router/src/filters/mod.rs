//! HTTPRoute and GRPCRoute filters, compiled once and applied as pure functions of the request.
//!
//! Request filters run in the rule's order, then the chosen backend's filters. A filter may end
//! processing with a [`DirectResponse`] (a redirect, a CORS preflight answer, or an error);
//! otherwise it edits the request and records [`RequestEffects`] (mirrors to send, CORS headers
//! for the response). Response filters (ResponseHeaderModifier) apply to whatever response the
//! rule produces, backend or direct.
//!
//! `ExternalAuth` (GEP-1494) is the one filter that needs I/O: `apply_request` stops at it
//! and the [`Router`](crate::Router) asks the auth service (gw-policy's
//! [`ext_authz`](gw_policy::ext_authz), through the router's backend client), then applies the
//! filters after it. Its backendRef must resolve (otherwise 500, as for any unresolved filter);
//! an auth service without endpoints, down or slow fails closed (403).

mod path;

use std::sync::Arc;

use gw_model::resources::{
    HeaderModifier, PathModifier, PathModifierType, RequestRedirect, UrlRewrite,
};
use gw_model::table::HttpFilter;
use http::header::{HOST, LOCATION};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, request};

pub(crate) use self::path::{replace_prefix, with_host, with_path};
use crate::backend::{BackendTarget, BuildCtx};
use crate::incoming::Scheme;
use gw_policy::cors::CompiledCors;
use gw_policy::ext_authz::{CompiledExtAuthz, ExtAuthzConfig};

/// A compiled filter.
#[derive(Debug)]
pub(crate) enum Filter {
    RequestHeaders(HeaderOps),
    ResponseHeaders(HeaderOps),
    Redirect(Redirect),
    Rewrite(Rewrite),
    Mirror {
        backend: Arc<BackendTarget>,
        numerator: u32,
        denominator: u32,
    },
    Cors(Box<CompiledCors>),
    ExternalAuth(Box<ExtAuth>),
    /// Answered 500: "requests that would have been processed by that filter MUST receive a
    /// HTTP error response".
    Unresolved(Box<str>),
}

impl Filter {
    pub(crate) fn compile(f: &HttpFilter, ctx: BuildCtx<'_>) -> Filter {
        let compiled = match f {
            HttpFilter::RequestHeaderModifier(m) => HeaderOps::new(m).map(Filter::RequestHeaders),
            HttpFilter::ResponseHeaderModifier(m) => HeaderOps::new(m).map(Filter::ResponseHeaders),
            HttpFilter::RequestRedirect(r) => Redirect::new(r).map(Filter::Redirect),
            HttpFilter::UrlRewrite(r) => Rewrite::new(r).map(Filter::Rewrite),
            HttpFilter::RequestMirror { backend, fraction } => Ok(Filter::Mirror {
                backend: BackendTarget::new(backend, ctx),
                numerator: fraction.0,
                denominator: fraction.1,
            }),
            HttpFilter::Cors(c) => CompiledCors::new(c)
                .map(|p| Filter::Cors(Box::new(p)))
                .map_err(|e| e.to_string()),
            HttpFilter::ExternalAuth {
                backend, config, ..
            } => ExtAuth::new(backend, config, ctx).map(|a| Filter::ExternalAuth(Box::new(a))),
            HttpFilter::Unresolved { reason } => Err(reason.clone()),
            other => Err(format!("filter {other:?} is not supported by gw-router")),
        };
        compiled.unwrap_or_else(|reason| {
            tracing::warn!(%reason, "filter cannot be applied; requests through it get 500");
            Filter::Unresolved(reason.into())
        })
    }
}

/// A compiled ExternalAuth filter: the auth settings and the auth service.
#[derive(Debug)]
pub(crate) struct ExtAuth {
    pub(crate) config: Arc<CompiledExtAuthz>,
    pub(crate) backend: Arc<BackendTarget>,
}

impl ExtAuth {
    fn new(
        backend: &gw_model::table::Backend,
        config: &gw_model::resources::ExternalAuth,
        ctx: BuildCtx<'_>,
    ) -> Result<ExtAuth, String> {
        let compiled = ExtAuthzConfig::from_filter(config)
            .and_then(ExtAuthzConfig::compile)
            .map_err(|e| e.to_string())?;
        let backend = BackendTarget::new(backend, ctx);
        if let BackendTarget::Invalid(reason) = &*backend {
            return Err(format!("externalAuth backendRef: {reason}"));
        }
        Ok(ExtAuth {
            config: Arc::new(compiled),
            backend,
        })
    }
}

/// Header set/add/remove.
#[derive(Debug)]
pub(crate) struct HeaderOps {
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

impl HeaderOps {
    fn new(m: &HeaderModifier) -> Result<HeaderOps, String> {
        let name = |n: &str| {
            HeaderName::from_bytes(n.as_bytes()).map_err(|_| format!("invalid header name {n:?}"))
        };
        let pair = |h: &gw_model::resources::HttpHeader| -> Result<_, String> {
            Ok((
                name(&h.name)?,
                HeaderValue::from_str(&h.value)
                    .map_err(|_| format!("invalid value for header {:?}", h.name))?,
            ))
        };
        Ok(HeaderOps {
            set: m.set.iter().map(pair).collect::<Result<_, _>>()?,
            add: m.add.iter().map(pair).collect::<Result<_, _>>()?,
            remove: m.remove.iter().map(|n| name(n)).collect::<Result<_, _>>()?,
        })
    }

    /// "Set overwrites the request with the given header", "Add adds the given header(s) to
    /// the request before the action. It appends to any existing values", "Remove the given
    /// header(s)".
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        for (n, v) in &self.set {
            headers.insert(n.clone(), v.clone());
        }
        for (n, v) in &self.add {
            headers.append(n.clone(), v.clone());
        }
        for n in &self.remove {
            headers.remove(n);
        }
    }
}

#[derive(Debug)]
enum PathMod {
    Full(Box<str>),
    Prefix(Box<str>),
}

impl PathMod {
    fn new(p: &PathModifier) -> Result<PathMod, String> {
        let v = match p.type_ {
            PathModifierType::ReplaceFullPath => p
                .replace_full_path
                .as_deref()
                .map(|v| PathMod::Full(v.into())),
            PathModifierType::ReplacePrefixMatch => p
                .replace_prefix_match
                .as_deref()
                .map(|v| PathMod::Prefix(v.into())),
        };
        v.ok_or_else(|| format!("path modifier {:?} has no value", p.type_))
    }

    fn apply(&self, path: &str, prefix: Option<&str>) -> Result<String, DirectResponse> {
        match self {
            PathMod::Full(p) => Ok(p.to_string()),
            PathMod::Prefix(r) => match prefix {
                Some(prefix) => Ok(replace_prefix(path, prefix, r)),
                None => Err(DirectResponse::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "ReplacePrefixMatch on a rule without exactly one PathPrefix match",
                )),
            },
        }
    }
}

#[derive(Debug)]
pub(crate) struct Redirect {
    scheme: Option<Scheme>,
    hostname: Option<Box<str>>,
    path: Option<PathMod>,
    port: Option<u16>,
    status: StatusCode,
}

impl Redirect {
    fn new(r: &RequestRedirect) -> Result<Redirect, String> {
        let scheme = match r.scheme.as_deref() {
            None => None,
            Some("http") => Some(Scheme::Http),
            Some("https") => Some(Scheme::Https),
            Some(s) => return Err(format!("redirect scheme {s:?} is not supported")),
        };
        let status = u16::try_from(r.status_code)
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .filter(StatusCode::is_redirection)
            .ok_or_else(|| {
                format!(
                    "redirect status code {} is not a redirection",
                    r.status_code
                )
            })?;
        let port = r
            .port
            .map(|p| {
                u16::try_from(p)
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("redirect port {p}"))
            })
            .transpose()?;
        Ok(Redirect {
            scheme,
            hostname: r.hostname.as_deref().map(Into::into),
            path: r.path.as_ref().map(PathMod::new).transpose()?,
            port,
            status,
        })
    }

    /// The `Location` of the redirect.
    ///
    /// RequestRedirect: scheme and hostname default to the request's. "If no port is
    /// specified, the redirect port MUST be derived using the following rules: If redirect
    /// scheme is not-empty, the redirect port MUST be the well-known port associated with the
    /// redirect scheme ... If redirect scheme is empty, the redirect port MUST be the Gateway
    /// Listener port." "Implementations SHOULD NOT add the port number in the 'Location'
    /// header" for HTTP on 80 and HTTPS on 443. The query is kept.
    fn location(
        &self,
        parts: &request::Parts,
        ctx: &FilterCtx<'_>,
    ) -> Result<HeaderValue, DirectResponse> {
        let scheme = self.scheme.unwrap_or(ctx.scheme);
        let host = self.hostname.as_deref().unwrap_or(ctx.host);
        let port = self.port.unwrap_or(match self.scheme {
            Some(s) => s.default_port(),
            None => ctx.port,
        });
        let path = match &self.path {
            Some(p) => p.apply(parts.uri.path(), ctx.prefix)?,
            None => parts.uri.path().to_owned(),
        };
        let mut loc = format!("{}://{host}", scheme.as_str());
        if port != scheme.default_port() {
            loc.push(':');
            loc.push_str(&port.to_string());
        }
        loc.push_str(&path);
        if let Some(q) = parts.uri.query() {
            loc.push('?');
            loc.push_str(q);
        }
        HeaderValue::try_from(loc).map_err(|_| {
            DirectResponse::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "redirect Location is not a valid header value",
            )
        })
    }
}

#[derive(Debug)]
pub(crate) struct Rewrite {
    hostname: Option<(Box<str>, HeaderValue)>,
    path: Option<PathMod>,
}

impl Rewrite {
    fn new(r: &UrlRewrite) -> Result<Rewrite, String> {
        let hostname = r
            .hostname
            .as_deref()
            .map(|h| {
                HeaderValue::from_str(h)
                    .map(|v| (h.into(), v))
                    .map_err(|_| format!("rewrite hostname {h:?} is not a valid header value"))
            })
            .transpose()?;
        Ok(Rewrite {
            hostname,
            path: r.path.as_ref().map(PathMod::new).transpose()?,
        })
    }

    /// URLRewrite: the hostname replaces the `Host` header (and the URI authority of
    /// absolute-form and HTTP/2 requests); the path is replaced like a redirect's.
    fn apply(&self, parts: &mut request::Parts, ctx: &FilterCtx<'_>) -> Result<(), DirectResponse> {
        let bad = |_| {
            DirectResponse::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "rewritten URI is invalid",
            )
        };
        if let Some(p) = &self.path {
            let path = p.apply(parts.uri.path(), ctx.prefix)?;
            parts.uri = with_path(&parts.uri, &path).map_err(bad)?;
        }
        if let Some((host, value)) = &self.hostname {
            parts.uri = with_host(&parts.uri, host).map_err(bad)?;
            parts.headers.insert(HOST, value.clone());
        }
        Ok(())
    }
}

/// What filters know about the request besides its parts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FilterCtx<'a> {
    /// Scheme the request came in with.
    pub(crate) scheme: Scheme,
    /// Listener port.
    pub(crate) port: u16,
    /// Normalized request host (see [`Matched::host`](crate::Matched::host)).
    pub(crate) host: &'a str,
    /// The rule's PathPrefix value, for ReplacePrefixMatch.
    pub(crate) prefix: Option<&'a str>,
}

/// A response the gateway gives itself instead of forwarding.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum DirectResponse {
    /// RequestRedirect.
    Redirect {
        /// 301, 302, 303, 307 or 308.
        status: StatusCode,
        /// The `Location` header.
        location: HeaderValue,
    },
    /// A CORS preflight answered by the gateway (headers empty when the origin is not allowed).
    CorsPreflight {
        /// CORS response headers.
        headers: HeaderMap,
    },
    /// An error the spec assigns a status to (500 for unresolved filters and invalid
    /// backends, 503 for backends without endpoints).
    Error {
        /// Status.
        status: StatusCode,
        /// Why, for logs.
        reason: String,
    },
}

impl DirectResponse {
    pub(crate) fn error(status: StatusCode, reason: impl Into<String>) -> Self {
        DirectResponse::Error {
            status,
            reason: reason.into(),
        }
    }

    /// The status code of the response.
    pub fn status(&self) -> StatusCode {
        match self {
            DirectResponse::Redirect { status, .. } | DirectResponse::Error { status, .. } => {
                *status
            }
            DirectResponse::CorsPreflight { .. } => StatusCode::NO_CONTENT,
        }
    }

    /// The HTTP response (empty body).
    pub fn into_response(self) -> http::Response<crate::Body> {
        let mut resp = http::Response::new(crate::body::empty());
        *resp.status_mut() = self.status();
        match self {
            DirectResponse::Redirect { location, .. } => {
                resp.headers_mut().insert(LOCATION, location);
            }
            DirectResponse::CorsPreflight { headers } => *resp.headers_mut() = headers,
            DirectResponse::Error { .. } => {}
        }
        resp
    }
}

/// What request filters leave for the forwarding step: mirrors, CORS response headers and
/// the headers an auth service asked to add to the response.
#[derive(Debug, Default)]
pub struct RequestEffects {
    pub(crate) mirrors: Vec<Arc<BackendTarget>>,
    pub(crate) cors: Vec<(HeaderName, HeaderValue)>,
    pub(crate) auth_response: HeaderMap,
}

impl RequestEffects {
    /// How many mirror copies of the request will be sent.
    pub fn mirror_count(&self) -> usize {
        self.mirrors.len()
    }

    /// Headers that CORS adds to the response.
    pub fn cors_headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.cors
    }
}

/// Applies request filters in order. Pure apart from the random draw of mirror fractions.
/// Stops at an ExternalAuth filter and returns its index (the caller asks the auth service,
/// then goes on with the filters after it); `Ok(None)` when all filters are applied.
pub(crate) fn apply_request(
    filters: &[Filter],
    parts: &mut request::Parts,
    ctx: &FilterCtx<'_>,
    effects: &mut RequestEffects,
) -> Result<Option<usize>, DirectResponse> {
    for (i, f) in filters.iter().enumerate() {
        match f {
            Filter::RequestHeaders(ops) => ops.apply(&mut parts.headers),
            Filter::ResponseHeaders(_) => {}
            Filter::Redirect(r) => {
                return Err(DirectResponse::Redirect {
                    status: r.status,
                    location: r.location(parts, ctx)?,
                });
            }
            Filter::Rewrite(r) => r.apply(parts, ctx)?,
            Filter::Mirror {
                backend,
                numerator,
                denominator,
            } => {
                if *denominator > 0 && fastrand::u32(0..*denominator) < *numerator {
                    effects.mirrors.push(backend.clone());
                }
            }
            Filter::Cors(c) => {
                if let Some(headers) = c.preflight(&parts.method, &parts.headers) {
                    return Err(DirectResponse::CorsPreflight { headers });
                }
                effects.cors.extend(c.actual(&parts.headers));
            }
            Filter::ExternalAuth(_) => return Ok(Some(i)),
            Filter::Unresolved(reason) => {
                return Err(DirectResponse::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    reason.to_string(),
                ));
            }
        }
    }
    Ok(None)
}

/// Applies response filters (ResponseHeaderModifier) in order.
pub(crate) fn apply_response(filters: &[Filter], headers: &mut HeaderMap) {
    for f in filters {
        if let Filter::ResponseHeaders(ops) = f {
            ops.apply(headers);
        }
    }
}
