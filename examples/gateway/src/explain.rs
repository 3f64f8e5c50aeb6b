//! The route explainer: `GET /explain` on the admin server and `gw-gateway explain PATH`.
//!
//! Both build a [`gw_router::ExplainRequest`] from the same parameters and answer with
//! [`gw_router::Routes::explain`] (the data path's own matching) plus the routes that name the
//! Gateway but are not attached, with their status reason.

use std::path::Path;

use gw_model::resources::ObjectKey;
use gw_model::status::StatusReport;
use gw_model::table::{Protocol, RouteTable};
use gw_router::{ExplainRequest, Explanation, Outcome, Routes};

use crate::controller::Controller;
use crate::files;

/// The request to explain, as given on the command line or in the query string.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct Params {
    /// The Gateway (`namespace/name`, or `name` in namespace `default`). Optional when one
    /// Gateway has an HTTP/HTTPS listener on the port.
    #[arg(long)]
    pub gateway: Option<String>,
    /// The listener port. Optional when the Gateway has HTTP/HTTPS listeners on one port only.
    #[arg(long)]
    pub port: Option<u16>,
    /// The request's host (`Host` header).
    #[arg(long, default_value = "")]
    pub host: String,
    /// The request's path, with the query if any.
    #[arg(long, default_value = "/")]
    pub path: String,
    /// The request's method.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// A request header as `name: value` (repeatable). `content-type: application/grpc` makes
    /// it a gRPC request.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// The TLS server name (SNI) of the connection, for HTTPS listeners.
    #[arg(long)]
    pub sni: Option<String>,
}

impl Params {
    /// Parses a query string: `gateway`, `port`, `host`, `path`, `method`, `header` (repeated,
    /// `name:value`), `sni`; other names are errors (typos would silently change the answer).
    pub(crate) fn from_query(query: &str) -> Result<(Params, bool), String> {
        let mut p = Params {
            path: "/".to_owned(),
            method: "GET".to_owned(),
            ..Params::default()
        };
        let mut text = false;
        for pair in query.split('&').filter(|s| !s.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value)?;
            match name {
                "gateway" => p.gateway = Some(value),
                "port" => {
                    p.port = Some(
                        value
                            .parse()
                            .map_err(|_| format!("port {value:?} is not a port number"))?,
                    );
                }
                "host" => p.host = value,
                "path" => p.path = value,
                "method" => p.method = value,
                "header" => p.headers.push(value),
                "sni" => p.sni = Some(value),
                "format" => match value.as_str() {
                    "text" => text = true,
                    "json" => text = false,
                    other => return Err(format!("format {other:?}: use text or json")),
                },
                other => {
                    return Err(format!(
                        "unknown parameter {other:?}; use gateway, port, host, path, method, header, sni, format"
                    ));
                }
            }
        }
        Ok((p, text))
    }

    /// The request to explain against `table`.
    pub(crate) fn request(&self, table: &RouteTable) -> Result<ExplainRequest, String> {
        let wanted = self.gateway.as_ref().map(|g| match g.split_once('/') {
            Some((ns, name)) => ObjectKey::new(ns, name),
            None => ObjectKey::new("default", g.as_str()),
        });
        // (Gateway, port) pairs with HTTP/HTTPS listeners that fit the parameters.
        let mut fits: Vec<(ObjectKey, u16)> = Vec::new();
        for g in &table.gateways {
            if wanted.as_ref().is_some_and(|w| *w != g.key) {
                continue;
            }
            for l in &g.listeners {
                let http = matches!(l.protocol, Protocol::Http | Protocol::Https);
                let pair = (g.key.clone(), l.port);
                if http && self.port.is_none_or(|p| p == l.port) && !fits.contains(&pair) {
                    fits.push(pair);
                }
            }
        }
        let (gateway, port) = match (fits.as_slice(), &wanted, self.port) {
            ([one], _, _) => one.clone(),
            // Nothing fits but both are given: explain why (unknown Gateway or port).
            ([], Some(g), Some(p)) => (g.clone(), p),
            ([], _, _) => {
                return Err(
                    "no Gateway has an HTTP or HTTPS listener matching gateway/port".to_owned(),
                );
            }
            (many, _, _) => {
                let list: Vec<String> = many.iter().map(|(g, p)| format!("{g}:{p}")).collect();
                return Err(format!(
                    "several Gateway listeners fit ({}); give gateway and port",
                    list.join(", ")
                ));
            }
        };
        let mut b = http::Request::builder()
            .method(self.method.as_str())
            .uri(self.path.as_str());
        if !self.host.is_empty() {
            b = b.header(http::header::HOST, self.host.as_str());
        }
        for h in &self.headers {
            let Some((name, value)) = h.split_once(':') else {
                return Err(format!("header {h:?}: write it as name:value"));
            };
            b = b.header(name.trim(), value.trim());
        }
        let request = b.body(()).map_err(|e| format!("invalid request: {e}"))?;
        let mut req = ExplainRequest::new(gateway, port, request);
        if let Some(sni) = &self.sni {
            req = req.with_sni(sni.as_str());
        }
        Ok(req)
    }
}

/// Explains `params` against `routes` (built from `table`), with the unattached routes of
/// `status`.
pub(crate) fn explain(
    routes: &Routes,
    table: &RouteTable,
    status: &StatusReport,
    params: &Params,
) -> Result<Explanation, String> {
    let req = params.request(table)?;
    Ok(routes.explain(&req).with_status(status))
}

/// Exit code of `gw-gateway explain`: the request is routed.
pub(crate) const ROUTED: u8 = 0;
/// Exit code: the configuration does not load, or the parameters are invalid.
pub(crate) const ERROR: u8 = 1;
/// Exit code: the request is not routed (404 or 421).
pub(crate) const NOT_ROUTED: u8 = 2;

/// `gw-gateway explain PATH`: loads the manifests as the gateway would and explains one request.
pub(crate) fn run(
    path: &Path,
    controller_name: &str,
    params: &Params,
    json: bool,
    out: &mut dyn std::io::Write,
    err: &mut dyn std::io::Write,
) -> u8 {
    let config = files::Scanner::default().scan(path);
    let mut controller = Controller::new(controller_name.to_owned(), None);
    let snapshot = controller.reload(&config, &[]);
    for e in &snapshot.errors {
        let _ = writeln!(err, "error: {e}");
    }
    if !snapshot.errors.is_empty() {
        return ERROR;
    }
    let table = &snapshot.compiled.table;
    let routes = Routes::build(table);
    match explain(&routes, table, &snapshot.compiled.status, params) {
        Ok(e) => {
            if json {
                match serde_json::to_string_pretty(&e) {
                    Ok(s) => {
                        let _ = writeln!(out, "{s}");
                    }
                    Err(x) => {
                        let _ = writeln!(err, "error: {x}");
                        return ERROR;
                    }
                }
            } else {
                let _ = write!(out, "{}", e.to_text());
            }
            match e.outcome {
                Outcome::Matched { .. } => ROUTED,
                _ => NOT_ROUTED,
            }
        }
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            ERROR
        }
    }
}

/// Decodes `%XX` escapes and `+` (space) of a query value.
fn percent_decode(v: &str) -> Result<String, String> {
    let mut out = Vec::with_capacity(v.len());
    let mut bytes = v.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                let decoded = std::str::from_utf8(&hex)
                    .ok()
                    .filter(|h| h.len() == 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("invalid percent-encoding in {v:?}"))?;
                out.push(decoded);
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out).map_err(|_| format!("{v:?} is not UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_decoded() {
        let (p, text) = Params::from_query(
            "host=shop.example&path=%2Fcart%3Fv%3D1&method=POST&header=x-version%3A+2&header=a:b&port=8080&format=text",
        )
        .unwrap();
        assert!(text);
        assert_eq!(p.host, "shop.example");
        assert_eq!(p.path, "/cart?v=1");
        assert_eq!(p.method, "POST");
        assert_eq!(p.headers, ["x-version: 2", "a:b"]);
        assert_eq!(p.port, Some(8080));
        assert!(Params::from_query("hots=x").unwrap_err().contains("hots"));
        assert!(Params::from_query("path=%zz").is_err());
        assert!(Params::from_query("port=http").is_err());
    }
}
