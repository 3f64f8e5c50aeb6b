//! Compiled match conditions: path, method, headers, query parameters, gRPC service/method.

use gw_model::compile::rules::build_regex;
use gw_model::resources::StringMatchType;
use gw_model::table::ValueMatch;
use http::{HeaderMap, HeaderName, Method};
use regex::Regex;

/// Builds a regex that must match the whole input, with the model's size limits.
///
/// Regular expressions in routes match the whole value (as RE2 full matches in Envoy): `^v1`
/// is not needed, `v1` alone does not match `v10`. A pattern that fails to build here passed
/// the model's check, so it is a bug: the condition never matches and the failure is logged.
pub(crate) fn full_regex(pattern: &str, what: &str) -> Option<Regex> {
    match build_regex(&format!("^(?:{pattern})$")) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(pattern, what, error = %e, "regex accepted by gw-model does not build; the match never matches");
            None
        }
    }
}

/// A string condition.
#[derive(Debug)]
pub(crate) enum ValueCond {
    Exact(Box<str>),
    /// `None`: the regex did not build; never matches.
    Regex(Option<Regex>),
}

impl ValueCond {
    pub(crate) fn new(kind: StringMatchType, value: &str, what: &str) -> Self {
        match kind {
            StringMatchType::Exact => ValueCond::Exact(value.into()),
            StringMatchType::RegularExpression => ValueCond::Regex(full_regex(value, what)),
        }
    }

    pub(crate) fn matches(&self, v: &str) -> bool {
        match self {
            ValueCond::Exact(e) => **e == *v,
            ValueCond::Regex(r) => r.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }

    fn matches_bytes(&self, v: &[u8]) -> bool {
        match self {
            ValueCond::Exact(e) => e.as_bytes() == v,
            ValueCond::Regex(_) => std::str::from_utf8(v).is_ok_and(|s| self.matches(s)),
        }
    }
}

/// A header condition. `None` name: invalid name (a model bug), never matches.
#[derive(Debug)]
pub(crate) struct HeaderCond {
    name: Option<HeaderName>,
    value: ValueCond,
}

impl HeaderCond {
    pub(crate) fn new(m: &ValueMatch) -> Self {
        let name = HeaderName::from_bytes(m.name.as_bytes())
            .map_err(|e| tracing::warn!(name = %m.name, error = %e, "invalid header name in a match; it never matches"))
            .ok();
        HeaderCond {
            name,
            value: ValueCond::new(m.kind, &m.value, "header match"),
        }
    }

    /// Header names compare case-insensitively. A header sent several times matches as its
    /// values joined with `,` (RFC 9110 5.3: a recipient may combine them so, and that is the
    /// value the spec's "header value" means).
    pub(crate) fn matches(&self, headers: &HeaderMap) -> bool {
        let Some(name) = &self.name else { return false };
        let mut values = headers.get_all(name).iter();
        let Some(first) = values.next() else {
            return false;
        };
        match values.next() {
            None => self.value.matches_bytes(first.as_bytes()),
            Some(second) => {
                let mut joined = Vec::with_capacity(first.len() + second.len() + 1);
                joined.extend_from_slice(first.as_bytes());
                for v in std::iter::once(second).chain(values) {
                    joined.push(b',');
                    joined.extend_from_slice(v.as_bytes());
                }
                self.value.matches_bytes(&joined)
            }
        }
    }
}

/// A query parameter condition.
#[derive(Debug)]
pub(crate) struct QueryCond {
    name: Box<str>,
    value: ValueCond,
}

impl QueryCond {
    pub(crate) fn new(m: &ValueMatch) -> Self {
        QueryCond {
            name: m.name.as_str().into(),
            value: ValueCond::new(m.kind, &m.value, "query parameter match"),
        }
    }

    /// Names compare exactly; the first occurrence of a repeated parameter is the one matched;
    /// names and values are compared as sent (not percent-decoded).
    pub(crate) fn matches(&self, query: Option<&str>) -> bool {
        let Some(query) = query else { return false };
        query
            .split('&')
            .find_map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (name == &*self.name).then_some(value)
            })
            .is_some_and(|v| self.value.matches(v))
    }
}

/// Method condition. `Some(None)`: a method that does not parse (a model bug); never matches.
#[derive(Debug)]
pub(crate) struct MethodCond(Option<Method>);

impl MethodCond {
    pub(crate) fn new(m: &str) -> Self {
        MethodCond(
            Method::from_bytes(m.as_bytes())
                .map_err(|_| {
                    tracing::warn!(method = m, "invalid method in a match; it never matches")
                })
                .ok(),
        )
    }

    pub(crate) fn matches(&self, m: &Method) -> bool {
        self.0.as_ref() == Some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(name: &str, kind: StringMatchType, value: &str) -> ValueMatch {
        ValueMatch {
            name: name.into(),
            kind,
            value: value.into(),
        }
    }

    #[test]
    fn header_names_are_case_insensitive_and_repeats_join() {
        let c = HeaderCond::new(&vm("Version", StringMatchType::Exact, "one"));
        let mut h = HeaderMap::new();
        h.insert("version", "one".parse().unwrap());
        assert!(c.matches(&h));
        h.append("version", "two".parse().unwrap());
        assert!(!c.matches(&h));
        let c = HeaderCond::new(&vm("version", StringMatchType::Exact, "one,two"));
        assert!(c.matches(&h));
    }

    #[test]
    fn regexes_match_the_whole_value() {
        let c = ValueCond::new(StringMatchType::RegularExpression, "v[0-9]", "t");
        assert!(c.matches("v1"));
        assert!(!c.matches("v10"));
        assert!(!c.matches("xv1"));
        let c = ValueCond::new(StringMatchType::RegularExpression, "(unclosed", "t");
        assert!(!c.matches("(unclosed"));
    }

    #[test]
    fn query_first_value_exact_name() {
        let c = QueryCond::new(&vm("animal", StringMatchType::Exact, "whale"));
        assert!(c.matches(Some("animal=whale")));
        assert!(c.matches(Some("x=1&animal=whale&animal=dolphin")));
        assert!(!c.matches(Some("animal=dolphin&animal=whale")));
        assert!(!c.matches(Some("Animal=whale")));
        assert!(!c.matches(None));
        let c = QueryCond::new(&vm("flag", StringMatchType::Exact, ""));
        assert!(c.matches(Some("flag")));
    }
}
