//! The pure half of the live replay: what is sent for a case, what came back, and whether it
//! satisfies the case's `expect` (conformance/utils/http `CompareRequest` and the roundtripper's
//! capture rules, as restated by the corpus README), plus the statistics of the samplers.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::cases::{BackendRequest, Expect, MirrorTolerance, Redirect, Request, StatusExpect};
use super::l4::{TcpAssertions, TcpSession, UdpReply};

/// The placeholder for the Gateway's address.
pub const GATEWAY_IP: &str = "${GATEWAY_IP}";
/// The placeholder for a fresh UUID per attempt.
pub const UUID: &str = "<uuid>";

/// A request as put on the wire (placeholders substituted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentRequest {
    /// `http`, or `https` for the HTTPS / H2 clients (the default scheme of redirects).
    pub scheme: String,
    /// Method.
    pub method: String,
    /// Request-target (path and query).
    pub path: String,
    /// Host header / :authority.
    pub host: String,
    /// The test did not set the host.
    pub host_is_default: bool,
    /// Case headers, in order.
    pub headers: Vec<(String, String)>,
    /// Value of `X-Echo-Set-Header` (always sent, empty when the case sets none).
    pub echo_set_header: String,
    /// Body.
    pub body: Option<String>,
    /// The query parameter the harness appended (`path_query_added`), if any.
    pub added_query: Option<String>,
    /// The UUID of this attempt.
    pub uuid: String,
}

/// Substitutes `${GATEWAY_IP}` and `<uuid>`.
pub fn substitute(text: &str, gateway_ip: &str, uuid: &str) -> String {
    text.replace(GATEWAY_IP, gateway_ip).replace(UUID, uuid)
}

/// Appends `query` (`k=v`) to a request-target.
pub fn add_query(path: &str, query: &str) -> String {
    if path.contains('?') {
        format!("{path}&{query}")
    } else {
        format!("{path}?{query}")
    }
}

/// The request of a case for one attempt. `port` is the port connected to (for the default
/// Host header, which omits the scheme's default port as Go's client does).
pub fn prepare(request: &Request, gateway_ip: &str, port: u16, uuid: &str) -> SentRequest {
    let sub = |s: &str| substitute(s, gateway_ip, uuid);
    let mut path = sub(request.path.as_deref().unwrap_or("/"));
    let added_query = request.path_query_added.as_deref().map(sub);
    if let Some(q) = &added_query {
        path = add_query(&path, q);
    }
    let host = match &request.host {
        Some(h) => sub(h),
        None if port == 80 => gateway_ip.to_owned(),
        None => format!("{gateway_ip}:{port}"),
    };
    let echo_set_header = request
        .backend_set_response_headers
        .iter()
        .map(|(k, v)| format!("{k}:{}", sub(v)))
        .collect::<Vec<_>>()
        .join(",");
    SentRequest {
        scheme: "http".to_owned(),
        method: request.method.clone().unwrap_or_else(|| "GET".to_owned()),
        path,
        host,
        host_is_default: request.host_is_default || request.host.is_none(),
        headers: request
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), sub(v)))
            .collect(),
        echo_set_header,
        body: request.body.clone(),
        added_query,
        uuid: uuid.to_owned(),
    }
}

/// A fresh random (version 4) UUID.
pub fn new_uuid() -> String {
    let mut b = fastrand::u128(..).to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// An HTTP response as captured by the client.
#[derive(Debug, Clone, Default)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `HTTP/1.1` or `HTTP/2.0` (Go's `resp.Proto`).
    pub protocol: String,
    /// Headers in arrival order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// Every value of a header (name case-insensitive), in order.
    pub fn values(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// What the echo server reported. As in the Go roundtripper, only a reply whose
    /// `Content-Type` is exactly `application/json` is read; otherwise the request is assumed
    /// to have been made as sent (`method`) and everything else is empty.
    pub fn echoed(&self, method: &str) -> Result<Echoed, String> {
        if self.values("content-type").first().copied() == Some("application/json") {
            serde_json::from_slice(&self.body).map_err(|e| {
                format!(
                    "echo reply is not the echo JSON ({e}): {}",
                    truncate(&String::from_utf8_lossy(&self.body), 200)
                )
            })
        } else {
            Ok(Echoed {
                method: method.to_owned(),
                ..Echoed::default()
            })
        }
    }

    /// A compact description for failure messages.
    pub fn describe(&self) -> String {
        let body = String::from_utf8_lossy(&self.body);
        format!(
            "{} {} [{}] {}",
            self.protocol,
            self.status,
            self.headers
                .iter()
                .map(|(n, v)| format!("{n}: {v}"))
                .collect::<Vec<_>>()
                .join("; "),
            truncate(body.trim(), 300)
        )
    }
}

/// The echo server's JSON reply (Go `CapturedRequest`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Echoed {
    /// RequestURI as received.
    pub path: String,
    /// Host as received.
    pub host: String,
    /// Method.
    pub method: String,
    /// `HTTP/1.1` / `HTTP/2.0`.
    pub proto: String,
    /// Request headers (canonical names, multi-valued).
    pub headers: BTreeMap<String, Vec<String>>,
    /// `httpPort`.
    #[serde(rename = "httpPort")]
    pub http_port: String,
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// TLS facts (backend TLS only).
    pub tls: Option<Value>,
}

impl Echoed {
    /// The values of a request header the backend saw (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&Vec<String>> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// The status codes a case accepts (default 200), or `None` for prose (`not 200`).
pub fn expected_statuses(expect: &Expect) -> Result<Vec<u16>, String> {
    match &expect.status {
        None => Ok(vec![200]),
        Some(StatusExpect::One(code)) => Ok(vec![*code]),
        Some(StatusExpect::AnyOf(codes)) => Ok(codes.clone()),
        Some(StatusExpect::Text(text)) => Err(format!("status is prose: {text:?}")),
    }
}

/// Go `roundtripper.IsTimeoutError`.
pub fn is_timeout(status: u16) -> bool {
    status == 408 || status == 504
}

/// Go `roundtripper.IsRedirect`.
pub fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// The backend request a 200/204 reply is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ExpectedBackendRequest {
    host: Option<String>,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    http_port: Option<String>,
}

fn expected_backend_request(
    sent: &SentRequest,
    br: Option<&BackendRequest>,
) -> ExpectedBackendRequest {
    // Go: no ExpectedRequest means "the request as sent".
    let default = BackendRequest {
        defaulted_from_request: true,
        ..BackendRequest::default()
    };
    let br = br.unwrap_or(&default);
    let sub = |s: &str| s.replace(UUID, &sent.uuid);
    let path = match &br.path {
        Some(p) => {
            let p = sub(p);
            match &sent.added_query {
                Some(q) if !p.is_empty() && !p.contains(q.as_str()) => add_query(&p, q),
                _ => p,
            }
        }
        None if br.defaulted_from_request => sent.path.clone(),
        None => String::new(),
    };
    let method = br.method.clone().unwrap_or_else(|| {
        if br.defaulted_from_request {
            sent.method.clone()
        } else {
            "GET".to_owned()
        }
    });
    let host = match &br.host {
        Some(h) if !h.is_empty() => Some(h.clone()),
        _ if br.defaulted_from_request && !sent.host_is_default => Some(sent.host.clone()),
        _ => None,
    };
    let mut headers: Vec<(String, String)> = if br.defaulted_from_request {
        sent.headers.clone()
    } else {
        Vec::new()
    };
    for (name, value) in &br.headers {
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        headers.push((name.clone(), sub(value)));
    }
    ExpectedBackendRequest {
        host,
        method,
        path,
        headers,
        http_port: br.http_port.clone(),
    }
}

fn normalize(value: &str, ignore_whitespace: bool) -> String {
    if ignore_whitespace {
        value.chars().filter(|c| !c.is_whitespace()).collect()
    } else {
        value.to_owned()
    }
}

/// Go `CompareRequest` (HTTP): status first (a 408/504 satisfies an expected 408/504); on a
/// 200/204 reply the backend request (host, path, method, namespace, headers), the response
/// headers, absent headers and the pod prefix; on a 3xx the parsed `Location`.
pub fn compare_http(sent: &SentRequest, expect: &Expect, resp: &Response) -> Result<(), String> {
    if let Some(protocol) = &expect.response_protocol
        && *protocol != resp.protocol
    {
        return Err(format!(
            "expected response protocol {protocol}, got {}",
            resp.protocol
        ));
    }
    let codes = expected_statuses(expect)?;
    if is_timeout(resp.status) && codes.iter().any(|c| is_timeout(*c)) {
        return Ok(());
    }
    if !codes.contains(&resp.status) {
        return Err(format!(
            "expected status {}, got {}",
            codes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" or "),
            resp.describe()
        ));
    }
    if resp.status == 200 || resp.status == 204 {
        compare_backend(sent, expect, resp)
    } else if is_redirect(resp.status) {
        match &expect.redirect {
            Some(redirect) => compare_redirect(sent, redirect, resp),
            None => Ok(()),
        }
    } else {
        Ok(())
    }
}

fn compare_backend(sent: &SentRequest, expect: &Expect, resp: &Response) -> Result<(), String> {
    let echoed = resp.echoed(&sent.method)?;
    if let Some(name) = &expect.backend_header_names_pod {
        // The 100-request loop of HTTPRouteRequestHeaderModifierBackendWeights checks only this.
        return header_names_pod(&echoed, name);
    }
    let want = expected_backend_request(sent, expect.backend_request.as_ref());
    if let Some(host) = &want.host
        && *host != echoed.host
    {
        return Err(format!("expected host {host:?}, got {:?}", echoed.host));
    }
    if want.path != echoed.path {
        return Err(format!(
            "expected path {:?}, got {:?}",
            want.path, echoed.path
        ));
    }
    if want.method != echoed.method {
        return Err(format!(
            "expected method {}, got {:?}",
            want.method, echoed.method
        ));
    }
    let namespace = expect.namespace.as_deref().unwrap_or_default();
    if namespace != echoed.namespace {
        return Err(format!(
            "expected namespace {namespace:?}, got {:?} (pod {:?})",
            echoed.namespace, echoed.pod
        ));
    }
    for (name, value) in &want.headers {
        match echoed.header(name) {
            None => {
                return Err(format!(
                    "expected request header {name} to reach the backend, it saw {}",
                    describe_headers(&echoed.headers)
                ));
            }
            Some(got) if got.join(",") != *value => {
                return Err(format!(
                    "expected request header {name}: {value:?}, got {:?}",
                    got.join(",")
                ));
            }
            Some(_) => {}
        }
    }
    if let Some(port) = &want.http_port
        && *port != echoed.http_port
    {
        return Err(format!(
            "expected httpPort {port:?}, got {:?}",
            echoed.http_port
        ));
    }
    let ws = expect.response_headers_ignore_whitespace;
    for (name, value) in &expect.response_headers {
        let got = resp.values(name);
        if got.is_empty() {
            return Err(format!(
                "expected response header {name}: {value:?}, absent in {}",
                resp.describe()
            ));
        }
        if normalize(&got.join(","), ws) != normalize(value, ws) {
            return Err(format!(
                "expected response header {name}: {value:?}, got {:?}",
                got.join(",")
            ));
        }
    }
    for (name, values) in &expect.response_header_values {
        let got = resp.values(name);
        if got.is_empty() {
            return Err(format!(
                "expected response header {name} (one of {values:?}), absent in {}",
                resp.describe()
            ));
        }
        let joined = normalize(&got.join(","), ws);
        if !values.iter().any(|v| normalize(v, ws) == joined) {
            return Err(format!(
                "expected response header {name} to be one of {values:?}, got {:?}",
                got.join(",")
            ));
        }
    }
    for name in &expect.response_absent_headers {
        let got = resp.values(name);
        if !got.is_empty() {
            return Err(format!(
                "expected no response header {name}, got {:?}",
                got.join(",")
            ));
        }
    }
    for name in &expect.backend_absent_headers {
        if let Some(got) = echoed.header(name) {
            return Err(format!(
                "expected request header {name} not to reach the backend, got {:?}",
                got.join(",")
            ));
        }
    }
    let prefix = expect.backend.as_deref().unwrap_or_default();
    if !echoed.pod.starts_with(prefix) {
        return Err(format!(
            "expected pod name to start with {prefix}, got {:?}",
            echoed.pod
        ));
    }
    if let Some(br) = &expect.backend_request {
        compare_backend_tls(br, &echoed)?;
    }
    Ok(())
}

/// `backend_request.sni` / `client_cert`: what the backend's TLS server saw (the echo's `tls`
/// object): the SNI the gateway sent, and the gateway's client certificate among the peer
/// certificates (PEMs compared without whitespace).
fn compare_backend_tls(br: &BackendRequest, echoed: &Echoed) -> Result<(), String> {
    if br.sni.is_none() && br.client_cert.is_none() {
        return Ok(());
    }
    let Some(tls) = echoed.tls.as_ref().filter(|t| t.is_object()) else {
        return Err(format!(
            "expected the backend connection to be TLS (SNI {:?}), the echo of pod {:?} \
             reports no tls object (the gateway spoke plain HTTP to the backend)",
            br.sni.as_deref().unwrap_or_default(),
            echoed.pod
        ));
    };
    if let Some(sni) = &br.sni {
        let got = tls
            .get("serverName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if got != sni {
            return Err(format!(
                "expected the backend to see SNI {sni:?}, it saw {got:?}"
            ));
        }
    }
    if let Some(placeholder) = &br.client_cert {
        let want = resolve_pem(placeholder)?;
        let squash = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
        let peers: Vec<String> = tls
            .get("peerCertificates")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(squash).collect())
            .unwrap_or_default();
        if !peers.contains(&squash(&want)) {
            return Err(format!(
                "expected the gateway to present {placeholder} to the backend, the backend saw \
                 {} peer certificate(s){}",
                peers.len(),
                if peers.is_empty() {
                    " (no client certificate)"
                } else {
                    ", none of them that one"
                }
            ));
        }
    }
    Ok(())
}

/// The PEM a corpus placeholder names: `<cert of Secret ns/name>` (`tls.crt`),
/// `<key of Secret ns/name>` (`tls.key`), `<ca.crt of ConfigMap ns/name>` (`ca.crt`), from the
/// programmatic objects.
pub fn resolve_pem(placeholder: &str) -> Result<String, String> {
    let inner = placeholder
        .strip_prefix('<')
        .and_then(|p| p.strip_suffix('>'))
        .ok_or_else(|| format!("{placeholder:?} is not a placeholder"))?;
    let (key, kind, object) = if let Some(o) = inner.strip_prefix("cert of Secret ") {
        ("tls.crt", "Secret", o)
    } else if let Some(o) = inner.strip_prefix("key of Secret ") {
        ("tls.key", "Secret", o)
    } else if let Some(o) = inner.strip_prefix("ca.crt of ConfigMap ") {
        ("ca.crt", "ConfigMap", o)
    } else {
        return Err(format!("unknown certificate placeholder {placeholder:?}"));
    };
    let (ns, name) = object
        .split_once('/')
        .ok_or_else(|| format!("placeholder {placeholder:?} names no namespace"))?;
    crate::certs::programmatic_pem(ns, name, key)
        .ok_or_else(|| format!("no programmatic {kind} {ns}/{name} with {key}"))
}

/// A `true`/`false` expectation written as a YAML boolean or string.
fn expected_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// A string expectation (`null` = not checked).
fn expected_str(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Whether a TCP/TLS case runs the full tcp-backend session (Go
/// `MakeTCPRequestAndExpectEventuallyValidResponse`: `backend_is_tls` given) rather than
/// `tcp.EchoSendOnce`.
pub fn wants_tcp_session(expect: &Expect) -> bool {
    expect.backend_is_tls.as_ref().is_some_and(|v| !v.is_null())
}

/// Go `WaitForValidTCPResponse`'s checks on one session: the `IS_TLS` answer, the namespace
/// (exact), the pod (`<backend>-` prefix), and when expected the SNI and ALPN protocol
/// (`tls_protocol` is compared with `negotiatedProtocol`, as Go's `validateTestMessage` does).
pub fn compare_tcp_session(expect: &Expect, session: &TcpSession) -> Result<(), String> {
    if let Some(value) = expect.backend_is_tls.as_ref().filter(|v| !v.is_null()) {
        let want = expected_bool(value)
            .ok_or_else(|| format!("backend_is_tls {value} is not a boolean"))?;
        if session.is_tls != want.to_string() {
            return Err(format!(
                "expected the backend connection to be {} (IS_TLS {want}), the backend answered \
                 IS_TLS {:?} (pod {:?})",
                if want { "TLS" } else { "plain TCP" },
                session.is_tls,
                session.assertions.pod
            ));
        }
    }
    let a = &session.assertions;
    let namespace = expect.namespace.as_deref().unwrap_or_default();
    if a.namespace != namespace {
        return Err(format!(
            "expected namespace {namespace:?}, got {:?} (pod {:?})",
            a.namespace, a.pod
        ));
    }
    if let Some(backend) = &expect.backend
        && !a.pod.starts_with(&format!("{backend}-"))
    {
        return Err(format!(
            "expected pod name to start with {backend}-, got {:?}",
            a.pod
        ));
    }
    if let Some(sni) = expected_str(expect.backend_sni.as_ref()) {
        match &a.tls {
            None => {
                return Err(format!(
                    "expected the backend to see SNI {sni:?}, it reports no TLS (pod {:?})",
                    a.pod
                ));
            }
            Some(tls) if tls.server_name != sni => {
                return Err(format!(
                    "expected the backend to see SNI {sni:?}, it saw {:?}",
                    tls.server_name
                ));
            }
            Some(_) => {}
        }
    }
    if let Some(protocol) = expected_str(expect.tls_protocol.as_ref()) {
        let got = a.tls.as_ref().map(|t| t.negotiated_protocol.as_str());
        if got != Some(protocol.as_str()) {
            return Err(format!(
                "expected the backend's negotiated protocol {protocol:?}, got {got:?}"
            ));
        }
    }
    Ok(())
}

/// `tcp.EchoSendOnce` and the checks the Go loops make on it: a non-empty pod, starting with
/// `backend` when given, in `namespace` when given.
pub fn compare_tcp_echo(expect: &Expect, a: &TcpAssertions) -> Result<(), String> {
    if a.pod.is_empty() {
        return Err("TCP echo response missing pod name".to_owned());
    }
    if let Some(backend) = &expect.backend
        && !a.pod.starts_with(backend.as_str())
    {
        return Err(format!(
            "expected pod name to start with {backend}, got {:?}",
            a.pod
        ));
    }
    if let Some(ns) = &expect.namespace
        && *ns != a.namespace
    {
        return Err(format!(
            "expected namespace {ns:?}, got {:?} (pod {:?})",
            a.namespace, a.pod
        ));
    }
    Ok(())
}

/// Go `udp.ExpectEchoResponseFromBackend`: any reply satisfies `echo: true`; with `service` /
/// `namespace` the JSON reply must name them. Returns the reply (its pod for the samplers).
pub fn compare_udp(expect: &Expect, reply: &[u8]) -> Result<UdpReply, String> {
    let parsed: Result<UdpReply, _> = serde_json::from_slice(reply);
    if expect.service.is_none() && expect.namespace.is_none() {
        return Ok(parsed.unwrap_or_default());
    }
    let parsed = parsed.map_err(|e| {
        format!(
            "UDP reply is not the echo JSON ({e}): {}",
            truncate(&String::from_utf8_lossy(reply), 200)
        )
    })?;
    if let Some(service) = &expect.service
        && *service != parsed.service
    {
        return Err(format!(
            "expected the UDP echo of service {service:?}, got service {:?} (pod {:?})",
            parsed.service, parsed.pod
        ));
    }
    if let Some(ns) = &expect.namespace
        && *ns != parsed.namespace
    {
        return Err(format!(
            "expected the UDP echo from namespace {ns:?}, got {:?} (pod {:?})",
            parsed.namespace, parsed.pod
        ));
    }
    Ok(parsed)
}

fn describe_headers(headers: &BTreeMap<String, Vec<String>>) -> String {
    let all: Vec<String> = headers
        .iter()
        .map(|(n, v)| format!("{n}: {}", v.join(",")))
        .collect();
    truncate(&all.join("; "), 300)
}

fn header_names_pod(echoed: &Echoed, name: &str) -> Result<(), String> {
    let values: Vec<&String> = echoed
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v)
        .collect();
    let [value] = values.as_slice() else {
        return Err(format!(
            "expected exactly one {name} request header at the backend, got {values:?}"
        ));
    };
    if echoed.pod.starts_with(value.as_str()) {
        Ok(())
    } else {
        Err(format!(
            "request header {name}: {value:?} reached pod {:?}",
            echoed.pod
        ))
    }
}

/// The gRPC comparison of conformance/utils/grpc: the status code (default OK) and, on OK, the
/// echo's `fullyQualifiedMethod`, pod prefix and (when expected) namespace.
pub fn compare_grpc(
    expect: &Expect,
    method: &str,
    code: &str,
    message: &str,
    response: Option<&gw_echo::proto::EchoResponse>,
) -> Result<(), String> {
    let want = expect.grpc_code.as_deref().unwrap_or("OK");
    if want != code {
        return Err(format!(
            "expected gRPC status {want}, got {code} {}",
            truncate(message, 200)
        ));
    }
    if code != "OK" {
        return Ok(());
    }
    let assertions = response
        .and_then(|r| r.assertions.as_ref())
        .ok_or("the gRPC echo reply carries no assertions")?;
    if assertions.fully_qualified_method != method {
        return Err(format!(
            "expected method {method}, the backend saw {:?}",
            assertions.fully_qualified_method
        ));
    }
    let context = assertions.context.clone().unwrap_or_default();
    let prefix = expect.backend.as_deref().unwrap_or_default();
    if !context.pod.starts_with(prefix) {
        return Err(format!(
            "expected pod name to start with {prefix}, got {:?}",
            context.pod
        ));
    }
    if let Some(ns) = &expect.namespace
        && *ns != context.namespace
    {
        return Err(format!(
            "expected namespace {ns:?}, got {:?}",
            context.namespace
        ));
    }
    Ok(())
}

/// A URL split the way Go's `url.Parse` does for the fields the suite compares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedUrl {
    /// Scheme (`""` for a relative reference).
    pub scheme: String,
    /// Host without port or brackets.
    pub host: String,
    /// Port (`""` when absent).
    pub port: String,
    /// Percent-decoded path.
    pub path: String,
    /// Raw query (without `?`).
    pub query: String,
}

/// Parses a `Location` value.
pub fn parse_url(raw: &str) -> ParsedUrl {
    let raw = raw.split('#').next().unwrap_or_default();
    let (scheme, rest) = match raw.split_once("://") {
        Some((s, rest))
            if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            (s.to_ascii_lowercase(), Some(rest))
        }
        _ => (String::new(), None),
    };
    let (authority, path_query) = match rest {
        Some(rest) => match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        },
        None => ("", raw),
    };
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let (host, port) = split_host_port(authority);
    let (path, query) = path_query.split_once('?').unwrap_or((path_query, ""));
    ParsedUrl {
        scheme,
        host,
        port,
        path: percent_decode(path),
        query: query.to_owned(),
    }
}

fn split_host_port(authority: &str) -> (String, String) {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').unwrap_or((rest, ""));
        let port = after.strip_prefix(':').unwrap_or_default();
        return (host.to_owned(), port.to_owned());
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => {
            (host.to_owned(), port.to_owned())
        }
        _ => (authority.to_owned(), String::new()),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The redirect rules of the README: host `None` = any; scheme `None` = the request's scheme;
/// path `None` = the request's path; port `None` = for http `80` or absent, for https `443`
/// or absent.
pub fn compare_redirect(
    sent: &SentRequest,
    expected: &Redirect,
    resp: &Response,
) -> Result<(), String> {
    let Some(location) = resp.values("location").first().copied() else {
        return Err(format!(
            "expected a redirect with a Location, got {}",
            resp.describe()
        ));
    };
    let got = parse_url(location);
    if let Some(host) = &expected.host
        && *host != got.host
    {
        return Err(format!(
            "expected redirect host {host:?}, got {:?} (Location {location})",
            got.host
        ));
    }
    match &expected.port {
        Some(port) if *port != got.port => {
            return Err(format!(
                "expected redirect port {port:?}, got {:?} (Location {location})",
                got.port
            ));
        }
        Some(_) => {}
        None => {
            let default = match got.scheme.as_str() {
                "http" => Some("80"),
                "https" => Some("443"),
                _ => None,
            };
            if let Some(default) = default
                && !got.port.is_empty()
                && got.port != default
            {
                return Err(format!(
                    "for {} expected redirect port {default} or none, got {:?} (Location {location})",
                    got.scheme, got.port
                ));
            }
        }
    }
    let scheme = expected.scheme.as_deref().unwrap_or(&sent.scheme);
    if scheme != got.scheme {
        return Err(format!(
            "expected redirect scheme {scheme:?}, got {:?} (Location {location})",
            got.scheme
        ));
    }
    let request_path = sent.path.split('?').next().unwrap_or_default();
    let path = expected.path.as_deref().unwrap_or(request_path);
    if path != got.path {
        return Err(format!(
            "expected redirect path {path:?}, got {:?} (Location {location})",
            got.path
        ));
    }
    Ok(())
}

/// The Deployment of a pod: the pod name minus its last two `-`-separated parts, when it has
/// at least three (conformance/utils/weight `ExtractBackendName`).
pub fn backend_of_pod(pod: &str) -> &str {
    let parts: Vec<&str> = pod.split('-').collect();
    if parts.len() < 3 {
        return pod;
    }
    let keep: usize = parts[..parts.len() - 2].iter().map(|p| p.len() + 1).sum();
    &pod[..keep - 1]
}

/// Weighted-distribution verdict of one attempt: every sample's backend must be listed, the
/// number of backends that got traffic must equal the number with a share > 0, each of those
/// must have got some, and every listed backend's share must be within `tolerance`.
pub fn check_distribution(
    counts: &BTreeMap<String, usize>,
    total: usize,
    weights: &BTreeMap<String, f64>,
    tolerance: f64,
) -> Result<(), String> {
    let mut problems = Vec::new();
    if let Some(unlisted) = counts.keys().find(|b| !weights.contains_key(*b)) {
        problems.push(format!("traffic reached unexpected backend {unlisted}"));
    }
    let expected_backends = weights.values().filter(|w| **w > 0.0).count();
    let seen = counts.values().filter(|c| **c > 0).count();
    if seen != expected_backends {
        problems.push(format!(
            "expected {expected_backends} backends to receive traffic, got {seen}"
        ));
    }
    for (backend, want) in weights {
        let got = counts.get(backend).copied().unwrap_or(0);
        if *want > 0.0 && got == 0 {
            problems.push(format!("{backend} received no traffic"));
        }
        if *want == 0.0 && got > 0 {
            problems.push(format!("{backend} should receive no traffic, got {got}"));
        }
        let share = if total == 0 {
            0.0
        } else {
            got as f64 / total as f64
        };
        if (share - want).abs() > tolerance {
            problems.push(format!(
                "{backend}: share {share:.3} is not within {tolerance} of {want}"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} (counts {counts:?} of {total})",
            problems.join("; ")
        ))
    }
}

/// Percentage-mirror verdict of one attempt: the mirrored count lies in `[min, max]`.
pub fn check_mirror_count(count: usize, tolerance: &MirrorTolerance) -> Result<(), String> {
    let c = count as f64;
    if c >= tolerance.min && c <= tolerance.max {
        Ok(())
    } else {
        Err(format!(
            "{count} requests mirrored, expected between {} and {}",
            tolerance.min, tolerance.max
        ))
    }
}

/// `lo-hi` of `entropy.values`.
pub fn parse_range(values: &str) -> Option<(u64, u64)> {
    let (lo, hi) = values.split_once('-')?;
    let (lo, hi) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
    (lo <= hi).then_some((lo, hi))
}

/// Cuts a message to at most `max` characters.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::cases::Case;
    use serde_json::json;

    fn case(value: Value) -> Case {
        serde_json::from_value(value).unwrap()
    }

    fn echo_reply(pod: &str, path: &str, headers: Value) -> Response {
        let body = json!({
            "path": path, "host": "127.0.0.1", "method": "GET", "proto": "HTTP/1.1",
            "headers": headers, "namespace": "gateway-conformance-infra", "pod": pod,
        });
        Response {
            status: 200,
            protocol: "HTTP/1.1".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(&body).unwrap(),
        }
    }

    fn simple(expect: Value) -> (SentRequest, Expect) {
        let c = case(json!({
            "gateway": {"name": "gw"},
            "request": {"protocol": "HTTP", "port": 80, "host": "${GATEWAY_IP}",
                        "host_is_default": true, "path": "/one?x=<uuid>",
                        "headers": {"X-A": "1"}},
            "expect": expect,
        }));
        (prepare(&c.request, "127.1.2.3", 80, "U"), c.expect)
    }

    #[test]
    fn placeholders_are_substituted_and_the_request_id_appended() {
        let c = case(json!({
            "gateway": {"name": "gw"},
            "request": {"protocol": "HTTP", "port": 8080, "path": "/mirror",
                        "path_query_added": "gateway-api-conformance-request-id=<uuid>",
                        "backend_set_response_headers": {"A": "1", "B": "2"}},
        }));
        let sent = prepare(&c.request, "127.1.2.3", 8080, "U");
        assert_eq!(sent.path, "/mirror?gateway-api-conformance-request-id=U");
        assert_eq!(sent.host, "127.1.2.3:8080");
        assert_eq!(sent.echo_set_header, "A:1,B:2");
        assert_eq!(sent.method, "GET");
    }

    #[test]
    fn uuids_are_fresh_and_well_formed() {
        let (a, b) = (new_uuid(), new_uuid());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.as_bytes()[14], b'4');
    }

    #[test]
    fn backend_prefix_namespace_and_defaulted_request_are_checked() {
        let (sent, expect) = simple(json!({
            "status": 200, "backend": "infra-backend-v1", "namespace": "gateway-conformance-infra",
            "backend_request": {"method": "GET", "path": "/one?x=<uuid>", "_defaulted_from_request": true},
        }));
        let ok = echo_reply(
            "infra-backend-v1-abc-xyz",
            "/one?x=U",
            json!({"X-A": ["1"]}),
        );
        assert_eq!(compare_http(&sent, &expect, &ok), Ok(()));
        let other = echo_reply(
            "infra-backend-v2-abc-xyz",
            "/one?x=U",
            json!({"X-A": ["1"]}),
        );
        assert!(
            compare_http(&sent, &expect, &other)
                .unwrap_err()
                .contains("start with")
        );
        let header_lost = echo_reply("infra-backend-v1-abc-xyz", "/one?x=U", json!({}));
        assert!(
            compare_http(&sent, &expect, &header_lost)
                .unwrap_err()
                .contains("X-A")
        );
        let path = echo_reply(
            "infra-backend-v1-abc-xyz",
            "/one?x=V",
            json!({"X-A": ["1"]}),
        );
        assert!(
            compare_http(&sent, &expect, &path)
                .unwrap_err()
                .contains("path")
        );
    }

    #[test]
    fn a_non_json_reply_is_not_an_echo_but_keeps_the_method() {
        let (sent, expect) = simple(json!({
            "status": [200, 204], "backend": null, "namespace": null,
            "backend_request": {"method": "GET", "path": ""},
            "response_header_values": {"access-control-allow-origin": ["https://a", "https://b"]},
        }));
        let resp = Response {
            status: 204,
            protocol: "HTTP/1.1".into(),
            headers: vec![("access-control-allow-origin".into(), "https://b".into())],
            body: Vec::new(),
        };
        assert_eq!(compare_http(&sent, &expect, &resp), Ok(()));
        let echo = echo_reply("infra-backend-v1-a-b", "/one?x=U", json!({}));
        assert!(compare_http(&sent, &expect, &echo).is_err());
    }

    #[test]
    fn status_lists_and_timeouts() {
        let (sent, expect) = simple(json!({"status": 504}));
        let timeout = Response {
            status: 408,
            ..Response::default()
        };
        assert_eq!(compare_http(&sent, &expect, &timeout), Ok(()));
        let (sent, expect) = simple(json!({"status": [500, 502, 503]}));
        let bad = Response {
            status: 404,
            ..Response::default()
        };
        assert!(
            compare_http(&sent, &expect, &bad)
                .unwrap_err()
                .contains("500 or 502 or 503")
        );
    }

    #[test]
    fn response_headers_join_values_and_may_ignore_whitespace() {
        let (sent, expect) = simple(json!({
            "namespace": "gateway-conformance-infra",
            "response_headers": {"X-Multi": "a,b"}, "response_absent_headers": ["X-Gone"],
            "response_headers_ignore_whitespace": true,
        }));
        let mut resp = echo_reply("p-a-b", "/one?x=U", json!({"X-A": ["1"]}));
        resp.headers.push(("x-multi".into(), "a".into()));
        resp.headers.push(("x-multi".into(), " b".into()));
        assert_eq!(compare_http(&sent, &expect, &resp), Ok(()));
        resp.headers.push(("x-gone".into(), "1".into()));
        assert!(compare_http(&sent, &expect, &resp).is_err());
    }

    #[test]
    fn locations_parse_like_go() {
        assert_eq!(
            parse_url("https://example.org:8443/a%20b?q=1#f"),
            ParsedUrl {
                scheme: "https".into(),
                host: "example.org".into(),
                port: "8443".into(),
                path: "/a b".into(),
                query: "q=1".into(),
            }
        );
        assert_eq!(parse_url("http://[::1]/x").host, "::1");
        assert_eq!(parse_url("/relative").scheme, "");
        assert_eq!(parse_url("/relative").path, "/relative");
        assert_eq!(parse_url("http://h").path, "");
    }

    fn redirect_reply(status: u16, location: &str) -> Response {
        Response {
            status,
            protocol: "HTTP/1.1".into(),
            headers: vec![("location".into(), location.into())],
            body: Vec::new(),
        }
    }

    #[test]
    fn redirect_defaults_follow_the_readme() {
        let (sent, expect) = simple(json!({"status": 302, "redirect": {"host": "example.org"}}));
        // Scheme defaults to the request's, path to the request's path, port 80 or none.
        for ok in ["http://example.org/one", "http://example.org:80/one"] {
            assert_eq!(
                compare_http(&sent, &expect, &redirect_reply(302, ok)),
                Ok(()),
                "{ok}"
            );
        }
        for bad in [
            "https://example.org/one",
            "http://example.org:8080/one",
            "http://other.org/one",
            "http://example.org/two",
        ] {
            assert!(
                compare_http(&sent, &expect, &redirect_reply(302, bad)).is_err(),
                "{bad}"
            );
        }
        let (sent, expect) =
            simple(json!({"status": 301, "redirect": {"scheme": "https", "port": "443"}}));
        assert_eq!(
            compare_http(
                &sent,
                &expect,
                &redirect_reply(301, "https://any.host:443/one")
            ),
            Ok(())
        );
        assert!(
            compare_http(&sent, &expect, &redirect_reply(301, "https://any.host/one")).is_err()
        );
    }

    #[test]
    fn backend_names_strip_the_replica_set_and_pod_hashes() {
        assert_eq!(
            backend_of_pod("infra-backend-v1-5d7f9c6b8-abcde"),
            "infra-backend-v1"
        );
        assert_eq!(backend_of_pod("a-b-c"), "a");
        assert_eq!(backend_of_pod("a-b"), "a-b");
        assert_eq!(backend_of_pod("pod"), "pod");
    }

    #[test]
    fn distribution_math() {
        let weights: BTreeMap<String, f64> = [
            ("v1".to_owned(), 0.7),
            ("v2".to_owned(), 0.3),
            ("v3".to_owned(), 0.0),
        ]
        .into();
        let counts = |a: usize, b: usize, c: usize| -> BTreeMap<String, usize> {
            [("v1", a), ("v2", b), ("v3", c)]
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| (k.to_owned(), n))
                .collect()
        };
        assert!(check_distribution(&counts(350, 150, 0), 500, &weights, 0.05).is_ok());
        assert!(check_distribution(&counts(330, 170, 0), 500, &weights, 0.05).is_ok());
        assert!(check_distribution(&counts(300, 200, 0), 500, &weights, 0.05).is_err());
        assert!(check_distribution(&counts(349, 150, 1), 500, &weights, 0.05).is_err());
        assert!(check_distribution(&counts(500, 0, 0), 500, &weights, 0.05).is_err());
        let mut stray = counts(350, 150, 0);
        stray.insert("v9".to_owned(), 1);
        assert!(check_distribution(&stray, 501, &weights, 0.05).is_err());
    }

    #[test]
    fn mirror_counts_and_entropy_ranges() {
        let tol = MirrorTolerance {
            stddevs: 3.0,
            min: 73.17,
            max: 126.83,
        };
        assert!(check_mirror_count(100, &tol).is_ok());
        assert!(check_mirror_count(73, &tol).is_err());
        assert!(check_mirror_count(127, &tol).is_err());
        assert_eq!(parse_range("0-9999"), Some((0, 9999)));
        assert_eq!(parse_range("9-1"), None);
        assert_eq!(parse_range("x"), None);
    }

    #[test]
    fn grpc_replies_check_code_method_pod_and_namespace() {
        use gw_echo::proto::{Assertions, Context, EchoResponse};
        let expect: Expect = serde_json::from_value(json!({
            "grpc_code": "OK", "backend": "grpc-infra-backend-v1",
            "namespace": "gateway-conformance-infra",
        }))
        .unwrap();
        let m = "/gateway_api_conformance.echo_basic.grpcecho.GrpcEcho/Echo";
        let reply = |method: &str, pod: &str| EchoResponse {
            assertions: Some(Assertions {
                fully_qualified_method: method.into(),
                context: Some(Context {
                    namespace: "gateway-conformance-infra".into(),
                    pod: pod.into(),
                    ..Context::default()
                }),
                ..Assertions::default()
            }),
            request: None,
        };
        let ok = reply(m, "grpc-infra-backend-v1-a-b");
        assert_eq!(compare_grpc(&expect, m, "OK", "", Some(&ok)), Ok(()));
        let other = reply(m, "grpc-infra-backend-v2-a-b");
        assert!(compare_grpc(&expect, m, "OK", "", Some(&other)).is_err());
        assert!(compare_grpc(&expect, m, "Unimplemented", "", None).is_err());
        let two = reply("/x/EchoTwo", "grpc-infra-backend-v1-a-b");
        assert!(compare_grpc(&expect, m, "OK", "", Some(&two)).is_err());
        let unimplemented: Expect =
            serde_json::from_value(json!({"grpc_code": "Unimplemented"})).unwrap();
        assert_eq!(
            compare_grpc(&unimplemented, m, "Unimplemented", "", None),
            Ok(())
        );
    }

    #[test]
    fn header_names_pod_needs_exactly_one_header() {
        let (sent, expect) = simple(json!({"backend_header_names_pod": "Backend"}));
        let ok = echo_reply(
            "infra-backend-v2-a-b",
            "/",
            json!({"Backend": ["infra-backend-v2"]}),
        );
        assert_eq!(compare_http(&sent, &expect, &ok), Ok(()));
        let two = echo_reply(
            "infra-backend-v2-a-b",
            "/",
            json!({"Backend": ["infra-backend-v2", "x"]}),
        );
        assert!(compare_http(&sent, &expect, &two).is_err());
        let wrong = echo_reply(
            "infra-backend-v1-a-b",
            "/",
            json!({"Backend": ["infra-backend-v2"]}),
        );
        assert!(compare_http(&sent, &expect, &wrong).is_err());
    }
    fn tcp_session(is_tls: &str, pod: &str, sni: Option<&str>) -> TcpSession {
        TcpSession {
            is_tls: is_tls.into(),
            assertions: TcpAssertions {
                namespace: "gateway-conformance-infra".into(),
                service: String::new(),
                pod: pod.into(),
                is_tls: is_tls == "true",
                tls: sni.map(|s| crate::live::l4::TcpTls {
                    version: "TLS 1.3".into(),
                    server_name: s.into(),
                    negotiated_protocol: String::new(),
                }),
            },
        }
    }

    #[test]
    fn tcp_sessions_check_is_tls_namespace_pod_and_sni() {
        let expect: Expect = serde_json::from_value(json!({
            "backend": "tcp-backend", "namespace": "gateway-conformance-infra",
            "backend_is_tls": true, "backend_sni": "abc.example.com",
        }))
        .unwrap();
        assert!(wants_tcp_session(&expect));
        let ok = tcp_session("true", "tcp-backend-a-b", Some("abc.example.com"));
        assert_eq!(compare_tcp_session(&expect, &ok), Ok(()));
        let plain = tcp_session("false", "tcp-backend-a-b", None);
        assert!(
            compare_tcp_session(&expect, &plain)
                .unwrap_err()
                .contains("IS_TLS")
        );
        let other_sni = tcp_session("true", "tcp-backend-a-b", Some("x.example.com"));
        assert!(
            compare_tcp_session(&expect, &other_sni)
                .unwrap_err()
                .contains("SNI")
        );
        // Go checks the `<backend>-` prefix: tcp-backend-2's pods are not tcp-backend's.
        let lookalike = tcp_session("true", "tcp-backendx-a-b", Some("abc.example.com"));
        assert!(
            compare_tcp_session(&expect, &lookalike)
                .unwrap_err()
                .contains("start with")
        );
        let alpn: Expect =
            serde_json::from_value(json!({"backend_is_tls": true, "tls_protocol": "h2",
                "namespace": "gateway-conformance-infra"}))
            .unwrap();
        assert!(
            compare_tcp_session(&alpn, &ok)
                .unwrap_err()
                .contains("negotiated")
        );
    }

    #[test]
    fn tcp_echo_needs_a_pod_and_checks_the_prefix() {
        let expect: Expect =
            serde_json::from_value(json!({"echo": true, "backend": "tcp-attach-backend-1-"}))
                .unwrap();
        assert!(!wants_tcp_session(&expect));
        let a = |pod: &str| TcpAssertions {
            pod: pod.into(),
            ..TcpAssertions::default()
        };
        assert_eq!(
            compare_tcp_echo(&expect, &a("tcp-attach-backend-1-x-y")),
            Ok(())
        );
        assert!(compare_tcp_echo(&expect, &a("tcp-attach-backend-2-x-y")).is_err());
        assert!(compare_tcp_echo(&expect, &a("")).is_err());
    }

    #[test]
    fn udp_replies_check_service_and_namespace_only_when_asked() {
        let any: Expect = serde_json::from_value(json!({"echo": true})).unwrap();
        assert_eq!(compare_udp(&any, b"not json").unwrap().pod, "");
        let reply = br#"{"request":"x","namespace":"ns","service":"udp-a","pod":"udp-a-1-2"}"#;
        assert_eq!(compare_udp(&any, reply).unwrap().pod, "udp-a-1-2");
        let service: Expect =
            serde_json::from_value(json!({"echo": true, "service": "udp-a", "namespace": "ns"}))
                .unwrap();
        assert!(compare_udp(&service, reply).is_ok());
        let other: Expect =
            serde_json::from_value(json!({"echo": true, "service": "udp-b"})).unwrap();
        assert!(compare_udp(&other, reply).unwrap_err().contains("udp-b"));
        assert!(compare_udp(&service, b"garbage").is_err());
    }

    #[test]
    fn backend_tls_checks_sni_and_the_gateway_client_certificate() {
        let cert =
            resolve_pem("<cert of Secret gateway-conformance-infra/tls-checks-client-certificate>")
                .unwrap();
        let (sent, expect) = simple(json!({
            "namespace": "gateway-conformance-infra",
            "backend_request": {"sni": "abc.example.com", "_defaulted_from_request": true,
                "client_cert": "<cert of Secret gateway-conformance-infra/tls-checks-client-certificate>"},
        }));
        let with_tls = |tls: Value| {
            let body = json!({
                "path": "/one?x=U", "host": "127.1.2.3", "method": "GET",
                "headers": {"X-A": ["1"]}, "namespace": "gateway-conformance-infra",
                "pod": "tls-backend-a-b", "tls": tls,
            });
            Response {
                status: 200,
                protocol: "HTTP/1.1".into(),
                headers: vec![("content-type".into(), "application/json".into())],
                body: serde_json::to_vec(&body).unwrap(),
            }
        };
        let good = with_tls(json!({"serverName": "abc.example.com", "peerCertificates": [cert]}));
        assert_eq!(compare_http(&sent, &expect, &good), Ok(()));
        let no_cert = with_tls(json!({"serverName": "abc.example.com", "peerCertificates": []}));
        assert!(
            compare_http(&sent, &expect, &no_cert)
                .unwrap_err()
                .contains("no client certificate")
        );
        let wrong_sni = with_tls(json!({"serverName": "other", "peerCertificates": [cert]}));
        assert!(
            compare_http(&sent, &expect, &wrong_sni)
                .unwrap_err()
                .contains("SNI")
        );
        let plain = echo_reply("tls-backend-a-b", "/one?x=U", json!({"X-A": ["1"]}));
        assert!(
            compare_http(&sent, &expect, &plain)
                .unwrap_err()
                .contains("no tls object")
        );
    }

    #[test]
    fn pem_placeholders_resolve_to_the_programmatic_objects() {
        let ca = resolve_pem(
            "<ca.crt of ConfigMap gateway-conformance-infra/tls-checks-ca-certificate>",
        )
        .unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        let key = resolve_pem("<key of Secret gateway-conformance-infra/tls-checks-certificate>")
            .unwrap();
        assert!(key.contains("PRIVATE KEY"));
        assert!(resolve_pem("<cert of Secret nope/nope>").is_err());
        assert!(resolve_pem("<thing of X a/b>").is_err());
    }
}
