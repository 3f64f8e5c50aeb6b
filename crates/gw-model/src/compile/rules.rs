//! Validation and compilation of HTTPRoute and GRPCRoute rules: matches, filters, backends,
//! timeouts and retries.

use std::collections::HashSet;

use super::Problem;
use super::refs::{From, Lookup, Unresolved};
use crate::resources::{
    BackendRef, ExternalAuth, FilterType, GrpcRouteRule, HeaderMatch, HeaderModifier,
    HttpBackendRef, HttpRouteFilter, HttpRouteRule, PathMatchType, PathModifier, PathModifierType,
    StringMatchType,
};
use crate::table::{
    Backend, GrpcMatch, HttpFilter, HttpMatch, PathMatch, Retry, RuleAction, Timeouts, ValueMatch,
    WeightedBackend,
};

/// Size limit of a compiled regular expression from a route (bytes of compiled program).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Builds a regex from a route with gw's size limits. Data planes use this same function, so a
/// pattern the model accepted always compiles there.
pub fn build_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
}

pub(crate) fn check_regex(pattern: &str) -> Result<(), Problem> {
    build_regex(pattern).map(|_| ()).map_err(|e| {
        Problem::new(
            "UnsupportedValue",
            format!("invalid regular expression {pattern:?}: {e}"),
        )
    })
}

/// Checks an `ExternalAuth` (GEP-1494) as the HTTPRoute CRD does, then resolves its backendRef
/// like any backendRef of the referrer (kind, ReferenceGrant, Service and port). Shared by the
/// HTTPRoute and GRPCRoute `ExternalAuth` filter and TrafficPolicy `extAuth`.
///
/// The outer `Err` is a structural problem (the filter or policy is invalid); the inner one a
/// reference that does not resolve (ResolvedRefs false; requests get 500).
pub(crate) fn external_auth(
    res: &Lookup<'_>,
    from: From<'_>,
    a: &ExternalAuth,
) -> Result<Result<Backend, Unresolved>, Problem> {
    let bad = |m: String| Problem::new("UnsupportedValue", format!("externalAuth: {m}"));
    // CRD: `protocol` is "HTTP" or "GRPC"; "protocol must be 'GRPC' when grpc is set",
    // "protocol must be 'HTTP' when http is set". A missing block means its defaults ("If
    // unset, implementations must assume the default behavior for each included field").
    match (a.protocol.as_str(), a.http.is_some(), a.grpc.is_some()) {
        ("HTTP", _, false) | ("GRPC", false, _) => {}
        ("HTTP" | "GRPC", _, _) => {
            return Err(bad(format!(
                "protocol {} does not go with the `{}` block",
                a.protocol,
                if a.protocol == "HTTP" { "grpc" } else { "http" }
            )));
        }
        (other, _, _) => return Err(bad(format!("protocol {other:?} is not HTTP or GRPC"))),
    }
    let mut headers: Vec<&String> = Vec::new();
    if let Some(h) = &a.http {
        // CRD: `path` "^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$", at most 1024.
        if let Some(p) = &h.path
            && !auth_path(p)
        {
            return Err(bad(format!("http.path {p:?} is not a valid path prefix")));
        }
        headers.extend(&h.allowed_headers);
        headers.extend(&h.allowed_response_headers);
    }
    if let Some(g) = &a.grpc {
        headers.extend(&g.allowed_headers);
    }
    for h in headers {
        check_header_name(h).map_err(|p| bad(p.message))?;
    }
    // `forwardBody.maxSize`: "If 0, the body will not be sent"; a size cannot be negative.
    if let Some(b) = &a.forward_body
        && b.max_size < 0
    {
        return Err(bad(format!(
            "forwardBody.maxSize {} must not be negative",
            b.max_size
        )));
    }
    Ok(res.resolve(from, &a.backend_ref.as_backend_ref(), false))
}

fn auth_path(p: &str) -> bool {
    let b = p.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
                if !(hex(i + 1) && hex(i + 2)) {
                    return false;
                }
                i += 3;
            }
            c if c.is_ascii_alphanumeric() || b"-/._~!$&'()*+,;=:@".contains(&c) => i += 1,
            _ => return false,
        }
    }
    !p.is_empty() && p.len() <= 1024
}

/// Outcome of compiling one rule: the rule (or why it is invalid), plus the reference problems
/// found on the way (which make the route's ResolvedRefs False without invalidating the rule).
pub(crate) struct CompiledRule<M> {
    pub result: Result<(Vec<M>, RuleAction), Problem>,
    pub unresolved: Vec<Unresolved>,
}

/// Validates a path value of a match or modifier.
///
/// HTTPRoute CRD validation: paths "must be an absolute path", "must not contain '//'", "must not
/// end with '/..' or '/.'", "must not contain '/../' or '/./'", "must not contain '%2f', '%2F',
/// '#'" (Exact and PathPrefix).
fn check_path(value: &str) -> Result<(), Problem> {
    let bad = !value.starts_with('/')
        || value.contains("//")
        || value.contains("/./")
        || value.contains("/../")
        || value.ends_with("/.")
        || value.ends_with("/..")
        || value.to_ascii_lowercase().contains("%2f")
        || value.contains('#')
        || value.contains('?');
    if bad {
        Err(Problem::new(
            "UnsupportedValue",
            format!("path {value:?} is not a valid absolute path"),
        ))
    } else {
        Ok(())
    }
}

pub(crate) fn check_header_name(name: &str) -> Result<(), Problem> {
    http_token(name).then_some(()).ok_or_else(|| {
        Problem::new(
            "UnsupportedValue",
            format!("{name:?} is not a valid header name"),
        )
    })
}

fn http_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Header and query-parameter matches: "If multiple entries specify equivalent header names, only
/// the first entry with an equivalent name MUST be considered for a match. Subsequent entries
/// with an equivalent header name MUST be ignored." (header names compare case-insensitively,
/// query parameter names exactly).
fn value_matches(list: &[HeaderMatch], case_insensitive: bool) -> Result<Vec<ValueMatch>, Problem> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(list.len());
    for m in list {
        let name_key = if case_insensitive {
            m.name.to_ascii_lowercase()
        } else {
            m.name.clone()
        };
        if case_insensitive {
            check_header_name(&m.name)?;
        } else if m.name.is_empty() {
            return Err(Problem::new(
                "UnsupportedValue",
                "empty query parameter name",
            ));
        }
        if m.type_ == StringMatchType::RegularExpression {
            check_regex(&m.value)?;
        }
        if seen.insert(name_key) {
            out.push(ValueMatch {
                name: m.name.clone(),
                kind: m.type_,
                value: m.value.clone(),
            });
        }
    }
    Ok(out)
}

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

fn http_matches(rule: &HttpRouteRule) -> Result<Vec<HttpMatch>, Problem> {
    collect_exact(rule.matches.iter().map(|m| {
        let mut value = m.path.value.clone();
        match m.path.type_ {
            PathMatchType::Exact => check_path(&value)?,
            PathMatchType::PathPrefix => {
                check_path(&value)?;
                // "/abc" and "/abc/" are the same prefix: matching is element-wise.
                while value.len() > 1 && value.ends_with('/') {
                    value.pop();
                }
            }
            PathMatchType::RegularExpression => check_regex(&value)?,
        }
        if let Some(method) = &m.method
            && !METHODS.contains(&method.as_str())
        {
            return Err(Problem::new(
                "UnsupportedValue",
                format!("method {method:?} is not supported"),
            ));
        }
        Ok(HttpMatch {
            path: PathMatch {
                kind: m.path.type_,
                value,
            },
            method: m.method.clone(),
            headers: value_matches(&m.headers, true)?,
            query: value_matches(&m.query_params, false)?,
        })
    }))
}

/// Collects fallible items into a vector of exactly their number. `collect::<Result<Vec<_>,
/// _>>()` cannot trust the size of an iterator that may stop at an error, so it starts with
/// room for four and the compiled table keeps that headroom: three unused `WeightedBackend`s
/// (936 bytes) for a rule with one backend.
fn collect_exact<T, E>(items: impl ExactSizeIterator<Item = Result<T, E>>) -> Result<Vec<T>, E> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        out.push(item?);
    }
    Ok(out)
}

fn grpc_matches(rule: &GrpcRouteRule) -> Result<Vec<GrpcMatch>, Problem> {
    let service_re = |s: &str| {
        let s = s.strip_prefix('.').unwrap_or(s);
        !s.is_empty()
            && s.split('.').all(|part| {
                let mut chars = part.chars();
                chars
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
    };
    let method_re = |s: &str| {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    collect_exact(rule.matches.iter().map(|m| {
        if let Some(mm) = &m.method {
            if mm.service.is_none() && mm.method.is_none() {
                return Err(Problem::new(
                    "UnsupportedValue",
                    "a method match needs a service or a method",
                ));
            }
            match mm.type_ {
                StringMatchType::Exact => {
                    if mm.service.as_deref().is_some_and(|s| !service_re(s))
                        || mm.method.as_deref().is_some_and(|s| !method_re(s))
                    {
                        return Err(Problem::new(
                            "UnsupportedValue",
                            "invalid gRPC service or method name",
                        ));
                    }
                }
                StringMatchType::RegularExpression => {
                    for p in [&mm.service, &mm.method].into_iter().flatten() {
                        check_regex(p)?;
                    }
                }
            }
        }
        Ok(GrpcMatch {
            method: m.method.clone(),
            headers: value_matches(&m.headers, true)?,
        })
    }))
}

/// Parses a Gateway API `Duration` (`^([0-9]{1,5}(h|m|s|ms)){1,4}$`, GEP-2257).
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let bytes = s.as_bytes();
    let (mut i, mut parts, mut total_ms): (usize, usize, u64) = (0, 0, 0);
    if bytes.is_empty() {
        return None;
    }
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &s[start..i];
        if digits.is_empty() || digits.len() > 5 {
            return None;
        }
        let n: u64 = digits.parse().ok()?;
        let unit_ms = if s[i..].starts_with("ms") {
            i += 2;
            1
        } else {
            let u = match bytes.get(i) {
                Some(b'h') => 3_600_000,
                Some(b'm') => 60_000,
                Some(b's') => 1_000,
                _ => return None,
            };
            i += 1;
            u
        };
        total_ms = total_ms.checked_add(n.checked_mul(unit_ms)?)?;
        parts += 1;
        if parts > 4 {
            return None;
        }
    }
    Some(std::time::Duration::from_millis(total_ms))
}

fn duration(field: &str, value: Option<&String>) -> Result<Option<std::time::Duration>, Problem> {
    value
        .map(|v| {
            parse_duration(v).ok_or_else(|| {
                Problem::new(
                    "UnsupportedValue",
                    format!("{field} {v:?} is not a valid duration"),
                )
            })
        })
        .transpose()
        // "Setting a timeout to the zero duration (e.g. "0s") SHOULD disable the timeout."
        .map(|d| d.filter(|d| !d.is_zero()))
}

struct Ctx<'a> {
    res: &'a Lookup<'a>,
    from: From<'a>,
    unresolved: Vec<Unresolved>,
}

impl Ctx<'_> {
    fn backend(&mut self, b: &BackendRef) -> Backend {
        let resolved = self.res.resolve(self.from, b, false);
        self.record(resolved)
    }

    /// A resolved backend, or an invalid one whose problem is recorded for ResolvedRefs.
    fn record(&mut self, resolved: Result<Backend, Unresolved>) -> Backend {
        match resolved {
            Ok(b) => b,
            Err(u) => {
                let reason = u.message.clone();
                self.unresolved.push(u);
                Backend::Invalid { reason }
            }
        }
    }

    fn header_modifier(&self, m: Option<&HeaderModifier>) -> Result<HeaderModifier, Problem> {
        let m = m.ok_or_else(|| missing_config("header modifier"))?;
        for h in m.set.iter().chain(&m.add) {
            check_header_value(&h.value)?;
        }
        let mut names = HashSet::new();
        for name in m
            .set
            .iter()
            .map(|h| &h.name)
            .chain(m.add.iter().map(|h| &h.name))
            .chain(m.remove.iter())
        {
            check_header_name(name)?;
            // CRD: "headers ... name must be unique within the list" across set/add/remove.
            if !names.insert(name.to_ascii_lowercase()) {
                return Err(Problem::new(
                    "UnsupportedValue",
                    format!("header {name:?} appears twice in one modifier"),
                ));
            }
        }
        Ok(m.clone())
    }

    fn filters(
        &mut self,
        filters: &[HttpRouteFilter],
        allowed: &[FilterType],
        prefix_match: bool,
    ) -> Result<Vec<HttpFilter>, Problem> {
        let mut out = Vec::with_capacity(filters.len());
        let mut seen = HashSet::new();
        for f in filters {
            if !allowed.contains(&f.type_) {
                return Err(Problem::new(
                    "UnsupportedValue",
                    format!("filter {:?} is not supported here", f.type_),
                ));
            }
            // CRD: "May specify either httpRouteFilterRequestRedirect or
            // httpRouteFilterRequestRewrite, but not both", and each core filter at most once.
            if !matches!(
                f.type_,
                FilterType::RequestMirror | FilterType::ExtensionRef
            ) && !seen.insert(f.type_)
            {
                return Err(Problem::new(
                    "UnsupportedValue",
                    format!("filter {:?} appears more than once", f.type_),
                ));
            }
            out.push(match f.type_ {
                FilterType::RequestHeaderModifier => HttpFilter::RequestHeaderModifier(
                    self.header_modifier(f.request_header_modifier.as_ref())?,
                ),
                FilterType::ResponseHeaderModifier => HttpFilter::ResponseHeaderModifier(
                    self.header_modifier(f.response_header_modifier.as_ref())?,
                ),
                FilterType::RequestRedirect => {
                    let r = f
                        .request_redirect
                        .as_ref()
                        .ok_or_else(|| missing_config("requestRedirect"))?;
                    if !matches!(r.status_code, 301 | 302 | 303 | 307 | 308) {
                        return Err(Problem::new(
                            "UnsupportedValue",
                            format!("redirect status code {} is not supported", r.status_code),
                        ));
                    }
                    if let Some(s) = &r.scheme
                        && s != "http"
                        && s != "https"
                    {
                        return Err(Problem::new("UnsupportedValue", format!("scheme {s:?}")));
                    }
                    if r.port.is_some_and(|p| !(1..=65535).contains(&p)) {
                        return Err(Problem::new(
                            "UnsupportedValue",
                            "redirect port out of range",
                        ));
                    }
                    check_modifier(r.path.as_ref(), prefix_match)?;
                    check_rewrite_host(r.hostname.as_deref())?;
                    HttpFilter::RequestRedirect(r.clone())
                }
                FilterType::UrlRewrite => {
                    let r = f
                        .url_rewrite
                        .as_ref()
                        .ok_or_else(|| missing_config("urlRewrite"))?;
                    check_modifier(r.path.as_ref(), prefix_match)?;
                    check_rewrite_host(r.hostname.as_deref())?;
                    HttpFilter::UrlRewrite(r.clone())
                }
                FilterType::RequestMirror => {
                    let m = f
                        .request_mirror
                        .as_ref()
                        .ok_or_else(|| missing_config("requestMirror"))?;
                    let fraction = match (m.percent, m.fraction) {
                        (Some(_), Some(_)) => {
                            return Err(Problem::new(
                                "UnsupportedValue",
                                "requestMirror sets both percent and fraction",
                            ));
                        }
                        (Some(p), None) if (0..=100).contains(&p) => (p.unsigned_abs(), 100),
                        (None, Some(fr))
                            if fr.denominator > 0
                                && fr.numerator >= 0
                                && fr.numerator <= fr.denominator =>
                        {
                            (fr.numerator.unsigned_abs(), fr.denominator.unsigned_abs())
                        }
                        (None, None) => (1, 1),
                        _ => {
                            return Err(Problem::new(
                                "UnsupportedValue",
                                "requestMirror percent/fraction out of range",
                            ));
                        }
                    };
                    HttpFilter::RequestMirror {
                        backend: self.backend(&m.backend_ref.as_backend_ref()),
                        fraction,
                    }
                }
                FilterType::Cors => {
                    let c = f.cors.as_ref().ok_or_else(|| missing_config("cors"))?;
                    check_cors(c)?;
                    HttpFilter::Cors(c.clone())
                }
                FilterType::ExternalAuth => {
                    let a = f
                        .external_auth
                        .as_ref()
                        .ok_or_else(|| missing_config("externalAuth"))?;
                    let backend = external_auth(self.res, self.from, a)?;
                    HttpFilter::ExternalAuth {
                        protocol: a.protocol.clone(),
                        backend: self.record(backend),
                        config: Box::new(a.clone()),
                    }
                }
                FilterType::ExtensionRef => {
                    let e = f
                        .extension_ref
                        .as_ref()
                        .ok_or_else(|| missing_config("extensionRef"))?;
                    let reason = format!(
                        "extensionRef {}/{} {} is not supported by gw",
                        e.group, e.kind, e.name
                    );
                    self.unresolved.push(Unresolved {
                        reason: "InvalidKind",
                        message: reason.clone(),
                    });
                    HttpFilter::Unresolved { reason }
                }
            });
        }
        Ok(out)
    }

    fn backends(
        &mut self,
        refs: &[HttpBackendRef],
        allowed_filters: &[FilterType],
        prefix_match: bool,
    ) -> Result<Vec<WeightedBackend>, Problem> {
        collect_exact(refs.iter().map(|b| {
            let weight = u32::try_from(b.backend.weight).map_err(|_| {
                Problem::new("UnsupportedValue", "backendRef weight must not be negative")
            })?;
            let filters = self.filters(&b.filters, allowed_filters, prefix_match)?;
            Ok(WeightedBackend {
                weight,
                backend: self.backend(&b.backend),
                filters,
            })
        }))
    }
}

/// Header values may not contain CR, LF or NUL (RFC 9110 field-value).
fn check_header_value(v: &str) -> Result<(), Problem> {
    if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(Problem::new(
            "UnsupportedValue",
            format!("header value {v:?} contains CR, LF or NUL"),
        ));
    }
    Ok(())
}

/// Redirect and rewrite hostnames are `PreciseHostname`s: DNS names without wildcard.
fn check_rewrite_host(h: Option<&str>) -> Result<(), Problem> {
    match h {
        Some(h) if h.starts_with('*') || !super::hostname::is_valid_hostname(h) => {
            Err(Problem::new(
                "UnsupportedValue",
                format!("hostname {h:?} is not a valid DNS name"),
            ))
        }
        _ => Ok(()),
    }
}

/// CORS filter validation, as the CRD states it: each origin matches
/// `(^\*$)|(^(http(s)?):\/\/(((\*\.)?([a-zA-Z0-9\-]+\.)*[a-zA-Z0-9-]+|\*)(:([0-9]{1,5}))?)$)`,
/// "AllowOrigins cannot contain '*' alongside other origins", and likewise for methods and
/// headers; header names must be valid tokens.
pub(crate) fn check_cors(c: &crate::resources::Cors) -> Result<(), Problem> {
    let bad = |msg: String| Err(Problem::new("UnsupportedValue", msg));
    let star_alone = |list: &[String], what: &str| {
        if list.iter().any(|x| x == "*") && list.len() > 1 {
            Err(Problem::new(
                "UnsupportedValue",
                format!("CORS {what} cannot contain '*' alongside other values"),
            ))
        } else {
            Ok(())
        }
    };
    star_alone(&c.allow_origins, "allowOrigins")?;
    star_alone(&c.allow_methods, "allowMethods")?;
    star_alone(&c.allow_headers, "allowHeaders")?;
    star_alone(&c.expose_headers, "exposeHeaders")?;
    for o in &c.allow_origins {
        if o != "*" && !valid_origin(o) {
            return bad(format!("CORS origin {o:?} is not scheme://host[:port]"));
        }
    }
    for m in &c.allow_methods {
        if m != "*" && !METHODS.contains(&m.as_str()) {
            return bad(format!("CORS method {m:?} is not supported"));
        }
    }
    for h in c.allow_headers.iter().chain(&c.expose_headers) {
        if h != "*" {
            check_header_name(h)?;
        }
    }
    if c.max_age < 0 {
        return bad("CORS maxAge must not be negative".into());
    }
    Ok(())
}

fn valid_origin(o: &str) -> bool {
    let Some(rest) = o
        .strip_prefix("https://")
        .or_else(|| o.strip_prefix("http://"))
    else {
        return false;
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let host = host.strip_prefix("*.").unwrap_or(host);
    let label_ok =
        |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    port_ok && (host == "*" || host.split('.').all(label_ok))
}

fn missing_config(what: &str) -> Problem {
    Problem::new(
        "UnsupportedValue",
        format!("filter type says {what} but its configuration is missing"),
    )
}

/// "ReplacePrefixMatch is only compatible with a PathPrefix HTTPRouteMatch" (CRD validation).
fn check_modifier(m: Option<&PathModifier>, prefix_match: bool) -> Result<(), Problem> {
    let Some(m) = m else { return Ok(()) };
    match m.type_ {
        PathModifierType::ReplaceFullPath => {
            let v = m
                .replace_full_path
                .as_deref()
                .ok_or_else(|| missing_config("replaceFullPath"))?;
            check_path(v)
        }
        PathModifierType::ReplacePrefixMatch => {
            if !prefix_match {
                return Err(Problem::new(
                    "UnsupportedValue",
                    "ReplacePrefixMatch needs exactly one PathPrefix match in the rule",
                ));
            }
            let v = m
                .replace_prefix_match
                .as_deref()
                .ok_or_else(|| missing_config("replacePrefixMatch"))?;
            check_path(v)
        }
    }
}

const HTTP_FILTERS: [FilterType; 8] = [
    FilterType::RequestHeaderModifier,
    FilterType::ResponseHeaderModifier,
    FilterType::RequestMirror,
    FilterType::RequestRedirect,
    FilterType::UrlRewrite,
    FilterType::ExtensionRef,
    FilterType::Cors,
    FilterType::ExternalAuth,
];

/// HTTPRoute backendRef filters: "Support: Implementation-specific (for broader filters)"; gw
/// supports header modification, mirroring, rewriting and CORS per backend.
const HTTP_BACKEND_FILTERS: [FilterType; 6] = [
    FilterType::RequestHeaderModifier,
    FilterType::ResponseHeaderModifier,
    FilterType::RequestMirror,
    FilterType::UrlRewrite,
    FilterType::ExtensionRef,
    FilterType::Cors,
];

const GRPC_FILTERS: [FilterType; 4] = [
    FilterType::RequestHeaderModifier,
    FilterType::ResponseHeaderModifier,
    FilterType::RequestMirror,
    FilterType::ExtensionRef,
];

/// Validates a rule's `sessionPersistence` (see [`super::traffic`] for the rules); an invalid
/// one makes the rule invalid (`UnsupportedValue`), as the CRD would have rejected it.
fn session(
    sp: Option<&crate::resources::SessionPersistence>,
) -> Result<Option<crate::table::SessionConfig>, Problem> {
    sp.map(|sp| {
        super::traffic::session_config(sp)
            .map_err(|why| Problem::new("UnsupportedValue", format!("sessionPersistence: {why}")))
    })
    .transpose()
}

/// Compiles one HTTPRoute rule.
pub(crate) fn http_rule(
    res: &Lookup<'_>,
    from: From<'_>,
    rule: &HttpRouteRule,
) -> CompiledRule<HttpMatch> {
    let mut ctx = Ctx {
        res,
        from,
        unresolved: Vec::new(),
    };
    let result = (|| {
        let matches = http_matches(rule)?;
        let prefix_match = matches.len() == 1 && matches[0].path.kind == PathMatchType::PathPrefix;
        let filters = ctx.filters(&rule.filters, &HTTP_FILTERS, prefix_match)?;
        let redirect = filters
            .iter()
            .any(|f| matches!(f, HttpFilter::RequestRedirect(_)));
        if redirect
            && filters
                .iter()
                .any(|f| matches!(f, HttpFilter::UrlRewrite(_)))
        {
            return Err(Problem::new(
                "UnsupportedValue",
                "a rule may not both redirect and rewrite",
            ));
        }
        if redirect && !rule.backend_refs.is_empty() {
            return Err(Problem::new(
                "UnsupportedValue",
                "RequestRedirect filter must not be used together with backendRefs",
            ));
        }
        let backends = ctx.backends(&rule.backend_refs, &HTTP_BACKEND_FILTERS, prefix_match)?;
        let timeouts = match &rule.timeouts {
            None => Timeouts::default(),
            Some(t) => {
                let request = duration("timeouts.request", t.request.as_ref())?;
                let backend_request =
                    duration("timeouts.backendRequest", t.backend_request.as_ref())?;
                if let (Some(r), Some(b)) = (request, backend_request)
                    && b > r
                {
                    return Err(Problem::new(
                        "UnsupportedValue",
                        "backendRequest timeout cannot be longer than request timeout",
                    ));
                }
                Timeouts {
                    request,
                    backend_request,
                }
            }
        };
        let retry = match &rule.retry {
            None => None,
            Some(r) => {
                let codes = collect_exact(r.codes.iter().map(|c| {
                    u16::try_from(*c)
                        .ok()
                        .filter(|c| (400..=599).contains(c))
                        .ok_or_else(|| {
                            Problem::new(
                                "UnsupportedValue",
                                format!("retry code {c} is not 4xx/5xx"),
                            )
                        })
                }))?;
                let attempts = u32::try_from(r.attempts.unwrap_or(1)).map_err(|_| {
                    Problem::new("UnsupportedValue", "retry attempts must not be negative")
                })?;
                Some(Retry {
                    codes,
                    attempts,
                    backoff: duration("retry.backoff", r.backoff.as_ref())?,
                })
            }
        };
        Ok((
            matches,
            RuleAction {
                filters,
                backends,
                timeouts,
                retry: retry.map(Box::new),
                session_persistence: session(rule.session_persistence.as_deref())?.map(Box::new),
            },
        ))
    })();
    CompiledRule {
        result,
        unresolved: ctx.unresolved,
    }
}

/// Compiles one GRPCRoute rule.
pub(crate) fn grpc_rule(
    res: &Lookup<'_>,
    from: From<'_>,
    rule: &GrpcRouteRule,
) -> CompiledRule<GrpcMatch> {
    let mut ctx = Ctx {
        res,
        from,
        unresolved: Vec::new(),
    };
    let result = (|| {
        let matches = grpc_matches(rule)?;
        let filters = ctx.filters(&rule.filters, &GRPC_FILTERS, false)?;
        let backends = ctx.backends(&rule.backend_refs, &GRPC_FILTERS, false)?;
        Ok((
            matches,
            RuleAction {
                filters,
                backends,
                timeouts: Timeouts::default(),
                retry: None,
                session_persistence: session(rule.session_persistence.as_deref())?.map(Box::new),
            },
        ))
    })();
    CompiledRule {
        result,
        unresolved: ctx.unresolved,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    // GEP-2257: "^([0-9]{1,5}(h|m|s|ms)){1,4}$".
    #[test]
    fn gateway_api_durations() {
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(
            parse_duration("1h2m3s4ms"),
            Some(Duration::from_millis(3_723_004))
        );
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        for bad in ["", "1", "1d", "1.5s", "123456s", "1h1h1h1h1h", "-1s", "s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn path_validation() {
        assert!(check_path("/a/b").is_ok());
        for bad in ["a", "/a//b", "/a/./b", "/a/../b", "/a/..", "/a%2Fb", "/a#b"] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }

    // CORS CRD validation: origin pattern and "AllowOrigins cannot contain '*' alongside other
    // origins".
    #[test]
    fn cors_validation() {
        let cors = |origins: &[&str]| crate::resources::Cors {
            allow_origins: origins.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        };
        assert!(check_cors(&cors(&["*"])).is_ok());
        assert!(check_cors(&cors(&["https://*.example.com", "http://a.b:8080"])).is_ok());
        assert!(check_cors(&cors(&["*", "https://a.com"])).is_err());
        assert!(check_cors(&cors(&["ftp://a.com"])).is_err());
        assert!(check_cors(&cors(&["https://a.com/path"])).is_err());
        assert!(check_header_value("ok value").is_ok());
        assert!(check_header_value("bad\r\nInjected: 1").is_err());
        assert!(check_rewrite_host(Some("*.example.com")).is_err());
        assert!(check_rewrite_host(Some("example.com")).is_ok());
    }

    #[test]
    fn regex_size_limit() {
        assert!(check_regex("^/v[0-9]+/.*$").is_ok());
        assert!(check_regex("(unclosed").is_err());
        assert!(
            check_regex("(a{1000}){1000}").is_err(),
            "huge programs are rejected"
        );
    }

    // "If multiple entries specify equivalent header names, only the first entry with an
    // equivalent name MUST be considered for a match."
    #[test]
    fn duplicate_header_matches_keep_the_first() {
        let list = vec![
            HeaderMatch {
                type_: StringMatchType::Exact,
                name: "Version".into(),
                value: "1".into(),
            },
            HeaderMatch {
                type_: StringMatchType::Exact,
                name: "version".into(),
                value: "2".into(),
            },
        ];
        let out = value_matches(&list, true).unwrap_or_default();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].value, "1");
    }
}
