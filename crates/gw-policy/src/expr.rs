//! CEL support shared by the policies that evaluate expressions (transformations, rate-limit
//! keys): one environment and one root [`Context`] for the whole process, programs compiled
//! once, and the request attributes bound per evaluation in an inner scope.
//!
//! # Attributes
//!
//! | variable | fields |
//! | --- | --- |
//! | `request` | `method`, `path` (without the query), `query` (the raw query string, `""` if none), `params` (query parameters, percent-decoded, the first value of each name), `host` (`Host` header or URI authority), `headers` (lower-case names; several values joined with `", "`) |
//! | `source` | `address` (client IP as a string), `port` (int): from [`ClientAddr`]; absent fields when unknown |
//! | `connection` | `tls` (bool), and from [`TlsPeer`]: `requested_server_name`, `subject_peer_certificate`, `uri_san_peer_certificate`, `dns_san_peer_certificate` (the first SAN of each kind); absent fields when unknown |
//! | `jwt` | the validated token's claims ([`JwtClaims`]), an empty map without one |
//! | `response` | response expressions only: `code` (int), `headers` |
//!
//! Use `has(...)` for fields that may be absent: `has(jwt.sub) ? jwt.sub : "anonymous"`. The
//! standard library and the strings extension (`lowerAscii()`, `split()`, `replace()`, ...)
//! are available.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use cel::objects::Key;
use cel::{Context, Env, Program, Value};
use http::{HeaderMap, HeaderValue, request};

use crate::jwt::JwtClaims;
use crate::{ClientAddr, TlsPeer};

/// The environment every program is compiled and evaluated with.
fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        // Declaring the strings extension on a fresh stdlib cannot conflict; if a future
        // version made it fail, expressions using it would fail to compile, not crash.
        if let Err(e) = env.add_extension(cel::extensions::strings) {
            tracing::warn!(error = %e, "CEL strings extension unavailable");
        }
        Arc::new(env)
    })
}

/// The shared root context: building one costs ~17 µs, an inner scope ~1 µs.
pub(crate) fn root() -> &'static Context<'static, 'static> {
    static ROOT: OnceLock<Context<'static, 'static>> = OnceLock::new();
    ROOT.get_or_init(|| Context::with_env(env().clone()))
}

/// Which attribute groups a program reads, so that only those are built per request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Uses {
    pub(crate) request: bool,
    pub(crate) source: bool,
    pub(crate) connection: bool,
    pub(crate) jwt: bool,
    pub(crate) response: bool,
}

impl Uses {
    pub(crate) fn union(self, o: Uses) -> Uses {
        Uses {
            request: self.request || o.request,
            source: self.source || o.source,
            connection: self.connection || o.connection,
            jwt: self.jwt || o.jwt,
            response: self.response || o.response,
        }
    }
}

/// A compiled CEL expression with its source.
#[derive(Debug, Clone)]
pub(crate) struct Expr {
    program: Arc<Program>,
    source: Arc<str>,
    pub(crate) uses: Uses,
}

impl Expr {
    /// Parses `source`; the error is the parser's message (with line and column).
    pub(crate) fn compile(source: &str) -> Result<Expr, String> {
        if source.trim().is_empty() {
            return Err("the expression is empty".to_owned());
        }
        let program = env().compile(source).map_err(|e| e.to_string())?;
        let refs = program.references();
        let uses = Uses {
            request: refs.has_variable("request"),
            source: refs.has_variable("source"),
            connection: refs.has_variable("connection"),
            jwt: refs.has_variable("jwt"),
            response: refs.has_variable("response"),
        };
        Ok(Expr {
            program: Arc::new(program),
            source: source.into(),
            uses,
        })
    }

    /// The expression as written.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates with `vars` bound in an inner scope of the shared root.
    pub(crate) fn eval(&self, vars: &Vars) -> Result<Value, cel::ExecutionError> {
        let mut scope = root().new_inner_scope();
        vars.bind(&mut scope);
        self.program.execute(&scope)
    }
}

/// Attribute values for one request (and response), built once and shared by every program
/// evaluated for it. Cloning is cheap (the values are `Arc`s inside).
#[derive(Debug, Clone, Default)]
pub(crate) struct Vars {
    request: Option<Value>,
    source: Option<Value>,
    connection: Option<Value>,
    jwt: Option<Value>,
    response: Option<Value>,
}

fn map(entries: Vec<(&'static str, Value)>) -> Value {
    let m: HashMap<Key, Value> = entries
        .into_iter()
        .map(|(k, v)| (Key::from(k), v))
        .collect();
    Value::from(m)
}

fn headers_value(headers: &HeaderMap) -> Value {
    let mut m: HashMap<Key, Value> = HashMap::with_capacity(headers.keys_len());
    for name in headers.keys() {
        let mut joined = String::new();
        for v in headers.get_all(name) {
            if !joined.is_empty() {
                joined.push_str(", ");
            }
            joined.push_str(&String::from_utf8_lossy(v.as_bytes()));
        }
        m.insert(Key::from(name.as_str()), Value::from(joined));
    }
    Value::from(m)
}

/// Percent-decodes a query component (`+` is a space, as in HTML forms); invalid escapes are
/// kept as written.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn params_value(query: &str) -> Value {
    let mut m: HashMap<Key, Value> = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        m.entry(Key::from(decode(k)))
            .or_insert_with(|| Value::from(decode(v)));
    }
    Value::from(m)
}

impl Vars {
    /// Builds the groups `uses` names from a request head.
    pub(crate) fn from_request(parts: &request::Parts, uses: Uses) -> Vars {
        let mut vars = Vars::default();
        if uses.request {
            let query = parts.uri.query().unwrap_or("");
            let host = parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| parts.uri.authority().map(|a| a.as_str()))
                .unwrap_or("");
            vars.request = Some(map(vec![
                ("method", Value::from(parts.method.as_str())),
                ("path", Value::from(parts.uri.path())),
                ("query", Value::from(query)),
                ("params", params_value(query)),
                ("host", Value::from(host)),
                ("headers", headers_value(&parts.headers)),
            ]));
        }
        if uses.source {
            let mut fields = Vec::new();
            if let Some(addr) = ClientAddr::of(&parts.extensions) {
                fields.push(("address", Value::from(addr.ip().to_string())));
                fields.push(("port", Value::Int(i64::from(addr.port()))));
            }
            vars.source = Some(map(fields));
        }
        if uses.connection {
            let tls = parts.extensions.get::<TlsPeer>();
            let mut fields = vec![("tls", Value::Bool(tls.is_some()))];
            if let Some(t) = tls {
                let opt = |name, v: Option<&String>| v.map(|v| (name, Value::from(v.as_str())));
                fields.extend(opt("requested_server_name", t.sni.as_ref()));
                fields.extend(opt("subject_peer_certificate", t.subject.as_ref()));
                fields.extend(opt("uri_san_peer_certificate", t.uri_sans.first()));
                fields.extend(opt("dns_san_peer_certificate", t.dns_sans.first()));
            }
            vars.connection = Some(map(fields));
        }
        if uses.jwt {
            let claims = parts
                .extensions
                .get::<JwtClaims>()
                .and_then(|c| cel::to_value(&*c.0).ok())
                .unwrap_or_else(|| Value::from(HashMap::<Key, Value>::new()));
            vars.jwt = Some(claims);
        }
        vars
    }

    /// Adds the `response` group.
    pub(crate) fn with_response(mut self, status: http::StatusCode, headers: &HeaderMap) -> Vars {
        self.response = Some(map(vec![
            ("code", Value::Int(i64::from(status.as_u16()))),
            ("headers", headers_value(headers)),
        ]));
        self
    }

    fn bind(&self, scope: &mut Context<'_, 'static>) {
        let groups = [
            ("request", &self.request),
            ("source", &self.source),
            ("connection", &self.connection),
            ("jwt", &self.jwt),
            ("response", &self.response),
        ];
        for (name, v) in groups {
            if let Some(v) = v {
                scope.add_variable_from_value(name, v.clone());
            }
        }
    }
}

/// Why a value cannot be a header value or a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Text {
    /// The expression produced null: nothing to set.
    Null,
    /// A string (numbers and booleans are formatted).
    Value(String),
    /// Another type (list, map, ...).
    WrongType(&'static str),
}

/// A scalar value as text.
pub(crate) fn text(v: &Value) -> Text {
    match v {
        Value::String(s) => Text::Value(s.to_string()),
        Value::Int(i) => Text::Value(i.to_string()),
        Value::UInt(u) => Text::Value(u.to_string()),
        Value::Float(f) => Text::Value(f.to_string()),
        Value::Bool(b) => Text::Value(b.to_string()),
        Value::Bytes(b) => Text::Value(String::from_utf8_lossy(b).into_owned()),
        Value::Null => Text::Null,
        Value::List(_) => Text::WrongType("list"),
        Value::Map(_) => Text::WrongType("map"),
        _ => Text::WrongType("non-scalar"),
    }
}

/// A value as a header value; `Ok(None)` for null.
pub(crate) fn header_value(v: &Value) -> Result<Option<HeaderValue>, String> {
    match v {
        Value::Bytes(b) => HeaderValue::from_bytes(b)
            .map(Some)
            .map_err(|_| "bytes are not a valid header value".to_owned()),
        other => match text(other) {
            Text::Null => Ok(None),
            Text::Value(s) => HeaderValue::try_from(s).map(Some).map_err(|_| {
                "the string is not a valid header value (control characters?)".to_owned()
            }),
            Text::WrongType(t) => Err(format!("a {t} is not a header value; produce a string")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str) -> request::Parts {
        let (p, ()) = http::Request::get(uri)
            .header("host", "api.example.com")
            .header("x-a", "1")
            .header("x-a", "2")
            .body(())
            .unwrap()
            .into_parts();
        p
    }

    fn eval(src: &str, p: &request::Parts) -> Value {
        let e = Expr::compile(src).unwrap();
        e.eval(&Vars::from_request(p, e.uses)).unwrap()
    }

    #[test]
    fn request_attributes() {
        let p = parts("/orders/7?id=a%20b&id=c&flag&q=x+y");
        assert_eq!(eval("request.path", &p), Value::from("/orders/7"));
        assert_eq!(eval("request.method", &p), Value::from("GET"));
        assert_eq!(eval("request.host", &p), Value::from("api.example.com"));
        assert_eq!(eval("request.headers['x-a']", &p), Value::from("1, 2"));
        assert_eq!(eval("request.params.id", &p), Value::from("a b"));
        assert_eq!(eval("request.params.q", &p), Value::from("x y"));
        assert_eq!(eval("request.params.flag", &p), Value::from(""));
        assert_eq!(
            eval("request.query", &p),
            Value::from("id=a%20b&id=c&flag&q=x+y")
        );
        assert_eq!(
            eval("request.path.split('/')[1]", &p),
            Value::from("orders")
        );
    }

    #[test]
    fn source_connection_and_jwt() {
        let mut p = parts("/");
        assert_eq!(eval("has(source.address)", &p), Value::Bool(false));
        assert_eq!(eval("connection.tls", &p), Value::Bool(false));
        assert_eq!(eval("has(jwt.sub)", &p), Value::Bool(false));
        p.extensions
            .insert(ClientAddr("[2001:db8::1]:4000".parse().unwrap()));
        p.extensions
            .insert(TlsPeer::new().sni("a.example").uri_san("spiffe://x/y"));
        p.extensions.insert(JwtClaims(Arc::new(
            serde_json::json!({"sub": "alice", "groups": ["admin"]}),
        )));
        assert_eq!(eval("source.address", &p), Value::from("2001:db8::1"));
        assert_eq!(eval("source.port", &p), Value::Int(4000));
        assert_eq!(
            eval("connection.uri_san_peer_certificate", &p),
            Value::from("spiffe://x/y")
        );
        assert_eq!(
            eval("connection.requested_server_name", &p),
            Value::from("a.example")
        );
        assert_eq!(eval("jwt.sub", &p), Value::from("alice"));
        assert_eq!(eval("'admin' in jwt.groups", &p), Value::Bool(true));
    }

    #[test]
    fn only_referenced_groups_are_built() {
        let e = Expr::compile("jwt.sub + request.path").unwrap();
        assert_eq!(
            e.uses,
            Uses {
                request: true,
                jwt: true,
                ..Uses::default()
            }
        );
    }

    #[test]
    fn compile_errors_carry_the_parser_message() {
        let err = Expr::compile("request.path ==").unwrap_err();
        assert!(!err.is_empty());
        assert_eq!(Expr::compile("  ").unwrap_err(), "the expression is empty");
    }

    #[test]
    fn values_as_header_values() {
        assert_eq!(
            header_value(&Value::Int(7)).unwrap(),
            Some(HeaderValue::from_static("7"))
        );
        assert_eq!(header_value(&Value::Null).unwrap(), None);
        assert!(header_value(&Value::from("a\nb")).is_err());
        assert!(header_value(&Value::from(vec![Value::Int(1)])).is_err());
    }

    #[test]
    fn decode_keeps_invalid_escapes() {
        assert_eq!(decode("a%2Fb"), "a/b");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
    }
}
