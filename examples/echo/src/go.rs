//! Small re-implementations of the Go standard-library behaviour echo-basic relies on
//! (`net/http` header canonicalisation, `time.ParseDuration`, `url.ParseQuery`,
//! `net/http` path cleaning, `encoding/json` escaping, `crypto/tls` names), so the
//! replies are byte-for-byte what a client of the Go server sees.

use std::time::Duration;

use base64::Engine as _;

/// Go's `textproto.CanonicalMIMEHeaderKey`: `content-type` -> `Content-Type`.
/// Keys containing a byte that is not an RFC 7230 token character are returned unchanged.
pub(crate) fn canonical_header_key(key: &str) -> String {
    if !key.bytes().all(is_token_byte) {
        return key.to_owned();
    }
    let mut out = String::with_capacity(key.len());
    let mut upper = true;
    for c in key.chars() {
        if upper {
            out.push(c.to_ascii_uppercase());
        } else {
            out.push(c.to_ascii_lowercase());
        }
        upper = c == '-';
    }
    out
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// Go's unexported `time.quote`, used in `ParseDuration` error messages.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c.is_ascii() && c >= ' ' {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        }
    }
    out.push('"');
    out
}

const MAX_DURATION: u64 = i64::MAX as u64;

/// Go's `time.ParseDuration` (`"1s"`, `"500ms"`, `"1m30s"`, `"1.5h"`, `"-3s"`, `"0"`).
///
/// Returns the duration to sleep (negative durations become zero, as `time.Sleep`
/// returns immediately for them) or Go's error message.
pub(crate) fn parse_go_duration(orig: &str) -> Result<Duration, String> {
    let invalid = || format!("time: invalid duration {}", go_quote(orig));
    let mut s = orig.as_bytes();
    let mut neg = false;
    if let Some(&c) = s.first()
        && (c == b'-' || c == b'+')
    {
        neg = c == b'-';
        s = &s[1..];
    }
    if s == b"0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !(s[0] == b'.' || s[0].is_ascii_digit()) {
            return Err(invalid());
        }
        // Integer part.
        let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
        let pre = digits > 0;
        let mut v: u64 = 0;
        for &b in &s[..digits] {
            if v > MAX_DURATION / 10 {
                return Err(invalid());
            }
            v = v * 10 + u64::from(b - b'0');
            if v > MAX_DURATION {
                return Err(invalid());
            }
        }
        s = &s[digits..];
        // Fraction.
        let mut f: u64 = 0;
        let mut scale: f64 = 1.0;
        let mut post = false;
        if s.first() == Some(&b'.') {
            s = &s[1..];
            let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
            post = digits > 0;
            let mut overflow = false;
            for &b in &s[..digits] {
                if overflow {
                    continue;
                }
                if f > MAX_DURATION / 10 {
                    overflow = true;
                    continue;
                }
                let y = f * 10 + u64::from(b - b'0');
                if y > MAX_DURATION + 1 {
                    overflow = true;
                    continue;
                }
                f = y;
                scale *= 10.0;
            }
            s = &s[digits..];
        }
        if !pre && !post {
            return Err(invalid());
        }
        // Unit.
        let unit_len = s
            .iter()
            .take_while(|b| !(**b == b'.' || b.is_ascii_digit()))
            .count();
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {}", go_quote(orig)));
        }
        let unit_bytes = &s[..unit_len];
        s = &s[unit_len..];
        let unit: u64 = match unit_bytes {
            b"ns" => 1,
            b"us" => 1_000,
            // U+00B5 micro sign and U+03BC Greek small letter mu.
            [0xc2, 0xb5, b's'] | [0xce, 0xbc, b's'] => 1_000,
            b"ms" => 1_000_000,
            b"s" => 1_000_000_000,
            b"m" => 60_000_000_000,
            b"h" => 3_600_000_000_000,
            other => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    go_quote(&String::from_utf8_lossy(other)),
                    go_quote(orig)
                ));
            }
        };
        if v > MAX_DURATION / unit {
            return Err(invalid());
        }
        v *= unit;
        if f > 0 {
            // Go: v += uint64(float64(f) * (float64(unit) / scale))
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let frac = (f as f64 * (unit as f64 / scale)) as u64;
            v = v.saturating_add(frac);
            if v > MAX_DURATION {
                return Err(invalid());
            }
        }
        total = total.saturating_add(v);
        if total > MAX_DURATION {
            return Err(invalid());
        }
    }
    if neg {
        return Ok(Duration::ZERO);
    }
    Ok(Duration::from_nanos(total))
}

/// Percent-decodes `s`. `plus_as_space` selects `url.QueryUnescape` (true) or
/// `url.PathUnescape` (false) semantics. `None` on a malformed `%` escape.
pub(crate) fn percent_decode(s: &str, plus_as_space: bool) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|b| (*b as char).to_digit(16))?;
                let lo = bytes.get(i + 2).and_then(|b| (*b as char).to_digit(16))?;
                #[allow(clippy::cast_possible_truncation)]
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

/// `url.ParseQuery(raw).Get(key)`: the first value of `key`, skipping malformed pairs
/// (pairs containing `;` or bad escapes) the way Go does.
pub(crate) fn query_value(raw_query: &str, key: &str) -> Option<String> {
    for pair in raw_query.split('&') {
        if pair.is_empty() || pair.contains(';') {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(k) = percent_decode(k, true) else {
            continue;
        };
        let Some(v) = percent_decode(v, true) else {
            continue;
        };
        if k == key.as_bytes() {
            return Some(String::from_utf8_lossy(&v).into_owned());
        }
    }
    None
}

/// Go's `path.Clean`.
fn path_clean(p: &str) -> String {
    if p.is_empty() {
        return ".".to_owned();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// `net/http`'s unexported `cleanPath`: `path.Clean`, but keeps a trailing slash.
pub(crate) fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return "/".to_owned();
    }
    let p = if p.starts_with('/') {
        p.to_owned()
    } else {
        format!("/{p}")
    };
    let mut np = path_clean(&p);
    if p.ends_with('/') && np != "/" {
        np.push('/');
    }
    np
}

/// Escapes a path the way Go's `url.URL.EscapedPath` does when no raw path is kept
/// (`url.PathEscape` keeping `/`, `$&+,:;=@`).
pub(crate) fn escape_path(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for b in p.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'_'
                    | b'.'
                    | b'~'
                    | b'$'
                    | b'&'
                    | b'+'
                    | b','
                    | b'/'
                    | b':'
                    | b';'
                    | b'='
                    | b'@'
            );
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Applies the HTML-safe escaping Go's `encoding/json` does (`<`, `>`, `&`, U+2028,
/// U+2029). These characters can only occur inside JSON strings, so rewriting the
/// serialised text is safe.
pub(crate) fn go_json_escape(json: String) -> String {
    if !json.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// Serialises `value` like Go's `json.MarshalIndent(v, "", " ")`.
pub(crate) fn marshal_indent<T: serde::Serialize>(value: &T) -> Result<String, serde_json::Error> {
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b" ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    value.serialize(&mut ser)?;
    Ok(go_json_escape(String::from_utf8_lossy(&buf).into_owned()))
}

/// Serialises `value` like Go's `json.Marshal(v)`.
pub(crate) fn marshal<T: serde::Serialize>(value: &T) -> Result<String, serde_json::Error> {
    serde_json::to_string(value).map(go_json_escape)
}

/// Go's `pem.Encode` of a `CERTIFICATE` block.
pub(crate) fn pem_certificate(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 60);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Go's `tls.CipherSuiteName`.
pub(crate) fn cipher_suite_name(id: u16) -> String {
    let name = match id {
        0x1301 => "TLS_AES_128_GCM_SHA256",
        0x1302 => "TLS_AES_256_GCM_SHA384",
        0x1303 => "TLS_CHACHA20_POLY1305_SHA256",
        0xc02b => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        0xc02c => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        0xc02f => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        0xc030 => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        0xcca8 => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        0xcca9 => "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        0xc009 => "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
        0xc00a => "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        0xc013 => "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        0xc014 => "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        _ => return format!("0x{id:04X}"),
    };
    name.to_owned()
}

/// Go's `tls.CurveID.String()` for a TLS named group.
pub(crate) fn curve_name(id: u16) -> String {
    let name = match id {
        0x0017 => "CurveP256",
        0x0018 => "CurveP384",
        0x0019 => "CurveP521",
        0x001d => "X25519",
        0x11ec => "X25519MLKEM768",
        0x11eb => "SecP256r1MLKEM768",
        0x11ed => "SecP384r1MLKEM1024",
        _ => return format!("CurveID({id})"),
    };
    name.to_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn canonical_keys() {
        assert_eq!(canonical_header_key("user-agent"), "User-Agent");
        assert_eq!(
            canonical_header_key("x-echo-set-header"),
            "X-Echo-Set-Header"
        );
        assert_eq!(canonical_header_key("X-FOO-bar"), "X-Foo-Bar");
        assert_eq!(canonical_header_key("x_foo"), "X_foo");
        assert_eq!(canonical_header_key("bad key"), "bad key");
    }

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        assert_eq!(parse_go_duration("1s").unwrap(), ms(1000));
        assert_eq!(parse_go_duration("500ms").unwrap(), ms(500));
        assert_eq!(parse_go_duration("1m30s").unwrap(), ms(90_000));
        assert_eq!(parse_go_duration("1.5h").unwrap(), ms(5_400_000));
        assert_eq!(parse_go_duration(".5s").unwrap(), ms(500));
        assert_eq!(parse_go_duration("+2us").unwrap(), Duration::from_micros(2));
        assert_eq!(parse_go_duration("3µs").unwrap(), Duration::from_micros(3));
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_go_duration("-3s").unwrap(), Duration::ZERO);
        assert_eq!(
            parse_go_duration("abc").unwrap_err(),
            "time: invalid duration \"abc\""
        );
        assert_eq!(
            parse_go_duration("10").unwrap_err(),
            "time: missing unit in duration \"10\""
        );
        assert_eq!(
            parse_go_duration("10x").unwrap_err(),
            "time: unknown unit \"x\" in duration \"10x\""
        );
        assert!(parse_go_duration("").is_err());
        assert!(parse_go_duration(".s").is_err());
        assert!(parse_go_duration("9999999999999999999h").is_err());
    }

    #[test]
    fn queries() {
        let q = "responseCode=500&succeedAfter=2&uuid=a%20b+c";
        assert_eq!(query_value(q, "uuid").as_deref(), Some("a b c"));
        assert_eq!(query_value(q, "succeedAfter").as_deref(), Some("2"));
        assert_eq!(query_value(q, "nope"), None);
        assert_eq!(query_value("a=1;b=2&a=3", "a").as_deref(), Some("3"));
        assert_eq!(query_value("delay", "delay").as_deref(), Some(""));
    }

    #[test]
    fn paths() {
        assert_eq!(clean_path("/a/./b/../c/"), "/a/c/");
        assert_eq!(clean_path("/../x"), "/x");
        assert_eq!(clean_path("/a//b"), "/a/b");
        assert_eq!(clean_path("/"), "/");
        assert_eq!(clean_path(""), "/");
        assert_eq!(clean_path("a"), "/a");
        assert_eq!(escape_path("/a b/ü?"), "/a%20b/%C3%BC%3F");
    }

    #[test]
    fn json_escaping() {
        assert_eq!(
            marshal(&serde_json::json!({"m": "<a&b>"})).unwrap(),
            r#"{"m":"\u003ca\u0026b\u003e"}"#
        );
        assert_eq!(
            marshal_indent(&serde_json::json!({"a": [1]})).unwrap(),
            "{\n \"a\": [\n  1\n ]\n}"
        );
    }

    #[test]
    fn pem() {
        let pem = pem_certificate(&[0u8; 60]);
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\nAAAA"));
        assert!(pem.ends_with("\n-----END CERTIFICATE-----\n"));
        assert_eq!(pem.lines().nth(1).unwrap().len(), 64);
    }
}
