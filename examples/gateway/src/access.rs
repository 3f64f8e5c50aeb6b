//! Access logs and request metrics: one record per request, written when its response body is
//! done (or dropped, when the client goes away).
//!
//! The access log is a tracing event with target `gw::access` (level INFO), written to stdout
//! as text or JSON (`--access-log`), apart from the diagnostic logs on stderr.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gw_router::RouteInfo;
use http::{Method, Request, Response, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::metrics::{Observation, RequestMetrics, RouteKeyRef};

/// The tracing target of access log events.
pub(crate) const TARGET: &str = "gw::access";

/// `--access-log`: where access log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum AccessLogFormat {
    /// No access log.
    Off,
    /// One line of `key=value` fields per request on stdout.
    #[default]
    Text,
    /// One JSON object per request on stdout.
    Json,
}

/// What every request of a listener needs to be logged and measured.
#[derive(Clone)]
pub(crate) struct Recorder {
    pub metrics: Arc<RequestMetrics>,
    /// The Gateway of the listener socket (`namespace/name`).
    pub gateway: Arc<str>,
    pub log: bool,
    empty: Arc<str>,
}

impl Recorder {
    pub(crate) fn new(metrics: Arc<RequestMetrics>, gateway: Arc<str>, log: bool) -> Self {
        Recorder {
            metrics,
            gateway,
            log,
            empty: Arc::from(""),
        }
    }

    /// Starts the record of a request (before routing).
    pub(crate) fn start<B>(&self, req: &Request<B>, peer: Option<SocketAddr>) -> Record {
        let head = self.log.then(|| Head {
            method: req.method().clone(),
            host: req
                .uri()
                .authority()
                .map(|a| a.as_str().to_owned())
                .or_else(|| {
                    req.headers()
                        .get(http::header::HOST)
                        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
                })
                .unwrap_or_default(),
            path: req
                .uri()
                .path_and_query()
                .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned()),
            version: req.version(),
            peer,
        });
        Record {
            start: Instant::now(),
            recorder: self.clone(),
            head,
            status: 0,
            info: None,
        }
    }
}

struct Head {
    method: Method,
    host: String,
    path: String,
    version: Version,
    peer: Option<SocketAddr>,
}

/// One request being served.
pub(crate) struct Record {
    start: Instant,
    recorder: Recorder,
    head: Option<Head>,
    status: u16,
    info: Option<RouteInfo>,
}

impl Record {
    /// Takes what the router reported from the response and wraps its body; the record is
    /// written when the body ends or is dropped.
    pub(crate) fn respond(
        mut self,
        resp: Response<gw_router::Body>,
    ) -> Response<AccessBody<gw_router::Body>> {
        let (mut parts, body) = resp.into_parts();
        self.status = parts.status.as_u16();
        self.info = parts.extensions.remove::<RouteInfo>();
        Response::from_parts(
            parts,
            AccessBody {
                inner: body,
                bytes: 0,
                record: Some(self),
            },
        )
    }

    fn finish(self, bytes: u64) {
        let duration = self.start.elapsed();
        let info = self.info.unwrap_or_default();
        let r = &self.recorder;
        let empty = &r.empty;
        let upstream = info.upstream.map(|u| u.duration);
        let retries = info.upstream.map_or(0, |u| u.attempts.saturating_sub(1));
        let key = RouteKeyRef {
            gateway: info.gateway.as_ref().unwrap_or(&r.gateway),
            listener: info.listener.as_ref().unwrap_or(empty),
            route: info.rule.as_ref().map_or(empty, |rule| rule.route_label()),
            rule: info.rule.as_ref().map_or(empty, |rule| rule.rule_label()),
            backend: info.backend.as_ref().unwrap_or(empty),
        };
        r.metrics.observe(
            key,
            &Observation {
                code: self.status,
                duration,
                upstream,
                retries,
            },
        );
        let Some(head) = self.head else {
            return;
        };
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        tracing::info!(
            target: TARGET,
            client = head.peer.map(tracing::field::display),
            method = %head.method,
            host = %head.host,
            path = %head.path,
            protocol = ?head.version,
            status = self.status,
            bytes,
            duration_ms = ms(duration),
            upstream_ms = upstream.map(ms),
            attempts = info.upstream.map(|u| u.attempts),
            upstream_addr = info.upstream.and_then(|u| u.endpoint).map(tracing::field::display),
            gateway = %info.gateway.as_deref().unwrap_or(&r.gateway),
            listener = info.listener.as_deref().map(tracing::field::display),
            route = info.route_label().map(tracing::field::display),
            rule = info.rule_label().map(tracing::field::display),
            backend = info.backend.as_deref().map(tracing::field::display),
            trace_id = info.trace.map(|t| tracing::field::display(t.trace_id())),
            span_id = info.trace.map(|t| tracing::field::display(t.span_id())),
            "request"
        );
    }
}

/// A response body that counts the bytes sent and writes the request's record when it ends.
pub(crate) struct AccessBody<B> {
    inner: B,
    bytes: u64,
    record: Option<Record>,
}

impl<B> AccessBody<B> {
    fn done(&mut self) {
        if let Some(r) = self.record.take() {
            r.finish(self.bytes);
        }
    }
}

impl<B> Drop for AccessBody<B> {
    fn drop(&mut self) {
        self.done();
    }
}

impl<B> HttpBody for AccessBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.done();
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => this.done(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
