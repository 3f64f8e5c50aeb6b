//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the `traceparent` and
//! `tracestate` headers.
//!
//! The [`Router`](crate::Router) is one hop of a trace: for every request it
//!
//! - keeps the trace id of a valid incoming `traceparent` (and its sampled flag), draws a new
//!   span id for its hop to the backend and forwards `traceparent` with it; `tracestate` is
//!   passed through unchanged;
//! - starts a new trace (random trace id and span id, sampled flag set: the gateway records the
//!   request in its access log) when `traceparent` is absent or invalid, and then drops
//!   `tracestate` ("If the vendor failed to parse traceparent, it MUST NOT attempt to parse
//!   tracestate", and state of another trace must not be attached to the new one).
//!
//! The resulting [`TraceContext`] is reported in [`RouteInfo`](crate::RouteInfo) for access logs
//! and tracing spans. Disable the whole thing with
//! [`RouterConfig::with_trace_context`](crate::RouterConfig::with_trace_context).
//!
//! ```
//! use gw_router::trace::TraceContext;
//!
//! let mut headers = http::HeaderMap::new();
//! headers.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
//! let ctx = TraceContext::continue_or_start(&headers);
//! assert_eq!(ctx.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
//! assert_eq!(ctx.parent_id().map(|p| p.to_string()).as_deref(), Some("00f067aa0ba902b7"));
//! assert!(ctx.sampled());
//! // The header sent to the backend: same trace, a new span id.
//! let sent = ctx.traceparent();
//! assert!(sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
//! assert!(!sent.contains("00f067aa0ba902b7"));
//! ```

use std::fmt;

use http::{HeaderMap, HeaderName, HeaderValue};

/// The `traceparent` header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The `tracestate` header.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The `sampled` trace flag.
const SAMPLED: u8 = 0x01;

/// A 16-byte trace id (never all zeros); displays as 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id (never all zeros); displays as 16 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub [u8; 8]);

/// Lowercase hex digits.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes up to 16 bytes as lowercase hex in one `write_str` (a `write!` per byte costs
/// more than the rest of the trace handling together).
fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    let mut out = [0u8; 32];
    for (i, b) in bytes.iter().take(16).enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0x0f)];
    }
    let n = 2 * bytes.len().min(16);
    // Only ASCII digits were written.
    f.write_str(std::str::from_utf8(&out[..n]).unwrap_or_default())
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl TraceId {
    fn random() -> TraceId {
        loop {
            let id = fastrand::u128(..).to_be_bytes();
            if id != [0; 16] {
                return TraceId(id);
            }
        }
    }
}

impl SpanId {
    fn random() -> SpanId {
        loop {
            let id = fastrand::u64(..).to_be_bytes();
            if id != [0; 8] {
                return SpanId(id);
            }
        }
    }
}

/// The trace context of one request through the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: TraceId,
    parent_id: Option<SpanId>,
    span_id: SpanId,
    flags: u8,
}

impl TraceContext {
    /// Continues the trace of a valid `traceparent` in `headers` with a new span id, or starts a
    /// new trace (see [`parse_traceparent`]).
    pub fn continue_or_start(headers: &HeaderMap) -> TraceContext {
        match parse_traceparent(headers) {
            Some(p) => TraceContext {
                trace_id: p.trace_id,
                parent_id: Some(p.parent_id),
                span_id: SpanId::random(),
                // Only the sampled flag is defined for version 00; other bits are not forwarded.
                flags: p.flags & SAMPLED,
            },
            None => TraceContext {
                trace_id: TraceId::random(),
                parent_id: None,
                span_id: SpanId::random(),
                flags: SAMPLED,
            },
        }
    }

    /// The trace id (kept from the request, or new).
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The span id of the caller (the request's `traceparent` parent-id), when the trace was
    /// continued.
    pub fn parent_id(&self) -> Option<SpanId> {
        self.parent_id
    }

    /// The span id of the gateway's hop, sent to the backend as the parent-id.
    pub fn span_id(&self) -> SpanId {
        self.span_id
    }

    /// Whether the sampled flag is set.
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// Whether the request carried a valid `traceparent` (the trace was continued).
    pub fn continued(&self) -> bool {
        self.parent_id.is_some()
    }

    /// The `traceparent` value sent to the backend: version 00, this trace id, the gateway's
    /// span id, the flags.
    pub fn traceparent(&self) -> String {
        String::from_utf8_lossy(&self.encode()).into_owned()
    }

    /// `traceparent` as bytes, hex-encoded by hand (formatting 25 bytes through `fmt` costs
    /// more than the rest of the trace handling together).
    fn encode(&self) -> [u8; 55] {
        let mut out = [b'-'; 55];
        let mut put = |at: usize, bytes: &[u8]| {
            for (i, b) in bytes.iter().enumerate() {
                out[at + 2 * i] = HEX[usize::from(b >> 4)];
                out[at + 2 * i + 1] = HEX[usize::from(b & 0x0f)];
            }
        };
        put(0, &[0]);
        put(3, &self.trace_id.0);
        put(36, &self.span_id.0);
        put(53, &[self.flags]);
        out
    }

    /// Sets `traceparent` for the hop to the backend in `headers` (the request's headers, about
    /// to be forwarded); removes `tracestate` when the trace was not continued.
    pub fn apply(&self, headers: &mut HeaderMap) {
        if let Ok(v) = HeaderValue::from_bytes(&self.encode()) {
            headers.insert(TRACEPARENT, v);
        }
        if !self.continued() {
            headers.remove(TRACESTATE);
        }
    }
}

/// The fields of a valid `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// trace-id.
    pub trace_id: TraceId,
    /// parent-id.
    pub parent_id: SpanId,
    /// trace-flags.
    pub flags: u8,
}

/// Parses the request's `traceparent`; `None` when it is absent or invalid:
///
/// - sent more than once (a list of values is not a traceparent);
/// - version not two lowercase hex digits, or `ff` (forbidden);
/// - version `00` and not exactly `00-<32 hex>-<16 hex>-<2 hex>` (55 characters, lowercase);
/// - a higher version whose first 55 characters are not in that shape or that goes on without a
///   `-` after them ("If a higher version is detected, the implementation SHOULD try to parse
///   it" with the version-00 layout);
/// - an all-zero trace-id or parent-id.
pub fn parse_traceparent(headers: &HeaderMap) -> Option<TraceParent> {
    let mut values = headers.get_all(TRACEPARENT).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    parse(value.as_bytes())
}

fn parse(v: &[u8]) -> Option<TraceParent> {
    let version = hex_byte(v.get(0..2)?)?;
    if version == 0xff {
        return None;
    }
    let head = v.get(..55)?;
    match (version, v.get(55)) {
        (0, None) => {}
        (0, Some(_)) => return None,
        (_, None | Some(b'-')) => {}
        (_, Some(_)) => return None,
    }
    if head[2] != b'-' || head[35] != b'-' || head[52] != b'-' {
        return None;
    }
    let mut trace_id = [0u8; 16];
    for (i, b) in trace_id.iter_mut().enumerate() {
        *b = hex_byte(&head[3 + 2 * i..5 + 2 * i])?;
    }
    let mut parent_id = [0u8; 8];
    for (i, b) in parent_id.iter_mut().enumerate() {
        *b = hex_byte(&head[36 + 2 * i..38 + 2 * i])?;
    }
    let flags = hex_byte(&head[53..55])?;
    if trace_id == [0; 16] || parent_id == [0; 8] {
        return None;
    }
    Some(TraceParent {
        trace_id: TraceId(trace_id),
        parent_id: SpanId(parent_id),
        flags,
    })
}

/// Two lowercase hex digits ("HEXDIGLC": uppercase is invalid).
fn hex_byte(two: &[u8]) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    match two {
        [hi, lo] => Some(digit(*hi)? << 4 | digit(*lo)?),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(TRACEPARENT, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn valid_version_00_parses() {
        let p = parse_traceparent(&headers(&[VALID])).unwrap();
        assert_eq!(p.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p.parent_id.to_string(), "00f067aa0ba902b7");
        assert_eq!(p.flags, 1);
    }

    /// "trace-id: ... All bytes as zero is considered an invalid value." Same for parent-id;
    /// version ff is invalid; HEXDIGLC is lowercase only; version 00 is exactly 55 characters.
    #[test]
    fn invalid_traceparents_are_rejected() {
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01xyz",
        ] {
            assert_eq!(parse_traceparent(&headers(&[bad])), None, "{bad}");
        }
        // Two traceparent headers are not one valid value.
        assert_eq!(parse_traceparent(&headers(&[VALID, VALID])), None);
    }

    /// "If a higher version is detected, the implementation SHOULD try to parse it": the
    /// version-00 fields, then a `-` before anything further.
    #[test]
    fn higher_versions_parse_with_the_version_00_layout() {
        let p = parse_traceparent(&headers(&[
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds",
        ]))
        .unwrap();
        assert_eq!(p.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(
            parse_traceparent(&headers(&[
                "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            ]))
            .is_some()
        );
    }

    #[test]
    fn a_valid_parent_is_continued_with_a_new_span_id() {
        let mut h = headers(&[VALID]);
        h.insert(TRACESTATE, "congo=t61rcWkgMzE".parse().unwrap());
        let ctx = TraceContext::continue_or_start(&h);
        assert!(ctx.continued());
        assert_eq!(
            ctx.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_ne!(ctx.span_id().to_string(), "00f067aa0ba902b7");
        ctx.apply(&mut h);
        let sent = h[TRACEPARENT].to_str().unwrap().to_owned();
        assert_eq!(sent, format!("00-{}-{}-01", ctx.trace_id(), ctx.span_id()));
        assert_eq!(h[TRACESTATE], "congo=t61rcWkgMzE");
        // Not sampled stays not sampled; unknown flag bits are not forwarded.
        let ctx = TraceContext::continue_or_start(&headers(&[
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-fe",
        ]));
        assert!(!ctx.sampled());
        assert!(ctx.traceparent().ends_with("-00"));
    }

    #[test]
    fn absent_or_invalid_parent_starts_a_new_trace_and_drops_tracestate() {
        for h in [
            HeaderMap::new(),
            headers(&["00-00000000000000000000000000000000-00f067aa0ba902b7-01"]),
        ] {
            let mut h = h;
            h.insert(TRACESTATE, "congo=t61rcWkgMzE".parse().unwrap());
            let a = TraceContext::continue_or_start(&h);
            let b = TraceContext::continue_or_start(&h);
            assert!(!a.continued());
            assert!(a.sampled());
            assert_ne!(a.trace_id(), b.trace_id());
            assert_ne!(a.trace_id().0, [0; 16]);
            a.apply(&mut h);
            let sent = h[TRACEPARENT].to_str().unwrap();
            assert!(parse(sent.as_bytes()).is_some(), "{sent}");
            assert!(h.get(TRACESTATE).is_none());
        }
    }
}
