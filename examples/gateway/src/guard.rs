//! The byte-level guard between every HTTP connection's socket (or TLS stream) and hyper.
//!
//! - **Request framing (HTTP/1)**: every request head is read here first, with `httparse` (the
//!   parser hyper uses), before hyper sees it. A head that frames its body ambiguously is
//!   replaced by an invalid one, so that hyper itself answers 400 and closes the connection
//!   (after the responses to earlier pipelined requests) and nothing after it is ever parsed:
//!   `Content-Length` together with `Transfer-Encoding` (hyper would accept it and go by
//!   `Transfer-Encoding`), a `Transfer-Encoding` other than exactly `chunked`, several
//!   differing `Content-Length`s, a bare LF line ending, `Transfer-Encoding` on HTTP/1.0, a
//!   missing or repeated `Host` on HTTP/1.1. Bodies are followed (`Content-Length` bytes, or
//!   the chunked framing exactly as hyper decodes it) to find the next head. Heads hyper
//!   rejects on its own (NUL or CR in a value, obs-fold, space before the colon, invalid
//!   lengths, too many or too large headers) are left to hyper. After an upgrade request
//!   (WebSocket, CONNECT) the bytes pass through; when the upgrade is declined and the client
//!   waited for the answer, inspection resumes with the next head.
//! - **Header read timeout (HTTP/1)**: from the first byte of a request head until its end.
//! - **Idle timeout**: a connection with no request in flight for `--http1-idle-timeout` /
//!   `--http2-idle-timeout` is closed (the read side fails: hyper closes it). Not after an
//!   upgrade (WebSocket): the upgraded stream has no requests to count.
//! - **HTTP/2 control frame floods**: frame headers are followed; a client that sends more
//!   than `--http2-max-control-frames` SETTINGS, PING, PRIORITY, RST_STREAM or empty DATA /
//!   CONTINUATION frames in a second has its connection closed.
//! - **Write stall timeout**: a write that makes no progress (the client does not read) for
//!   `--write-stall-timeout` fails, and hyper closes the connection.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tokio_util::io::poll_read_buf;

/// The HTTP/2 connection preface (RFC 9113 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// What replaces a refused head: hyper fails to parse it (invalid method token), answers 400
/// and closes the connection.
const REFUSED_HEAD: &[u8] = b"\x01 / HTTP/1.1\r\n\r\n";
/// Bytes reserved in the read buffer when it runs low, and the least room a read gets.
const READ_SIZE: usize = 8192;
const READ_MIN: usize = 1024;

thread_local! {
    /// A read buffer that a quiet connection on this thread gave back, for the next read of
    /// any connection here: connections hold a buffer only while they have bytes to read, and
    /// a busy thread goes on reading into the same block (in cache, and no allocator call).
    static SPARE: std::cell::Cell<Option<BytesMut>> = const { std::cell::Cell::new(None) };
}

/// Header slots `inspect` keeps on the stack (32 bytes each); more go to the heap.
const STACK_HEADERS: usize = 128;

/// Settings of the guard (from [`Limits`](crate::limits::Limits)); zero durations disable.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GuardConfig {
    pub header_read_timeout: Duration,
    pub http1_idle_timeout: Duration,
    pub http2_idle_timeout: Duration,
    pub write_stall_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// HTTP/2: most control frames (SETTINGS, PING, PRIORITY, RST_STREAM) and empty DATA
    /// or CONTINUATION frames a client may send per second; 0: no limit.
    pub http2_max_control_frames: u32,
}

/// Requests in flight on one connection, and since when it has had none; shared between the
/// guard and the connection's service.
#[derive(Debug)]
pub(crate) struct Activity {
    base: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `base` when the last request finished (or the connection opened).
    idle_since: AtomicU64,
    /// A request body's chunked framing is invalid (hyper fails that body): the request is
    /// answered 400 and the connection closed.
    framing_error: AtomicBool,
    /// The connection was upgraded (101): no idle timeout from then on.
    upgraded: AtomicBool,
    /// An upgrade request was answered without upgrading.
    declined: AtomicBool,
}

impl Activity {
    pub(crate) fn new() -> Arc<Activity> {
        Arc::new(Activity {
            base: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            framing_error: AtomicBool::new(false),
            upgraded: AtomicBool::new(false),
            declined: AtomicBool::new(false),
        })
    }

    /// Counts a request in flight until the returned guard is dropped (with its response body).
    pub(crate) fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Records the answer to an upgrade request: upgraded (101) or declined.
    pub(crate) fn set_upgraded(&self, upgraded: bool) {
        if upgraded {
            self.upgraded.store(true, Ordering::Release);
        } else {
            self.declined.store(true, Ordering::Release);
        }
    }

    /// Whether a request body's framing was found invalid on this connection.
    pub(crate) fn framing_error(&self) -> bool {
        self.framing_error.load(Ordering::Acquire)
    }

    /// When the connection became idle, if it is.
    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(self.base + Duration::from_millis(self.idle_since.load(Ordering::Acquire)))
    }
}

/// A request in flight (see [`Activity::request`]).
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.idle_since.store(ms, Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Waiting for the first bytes: HTTP/2 preface or an HTTP/1 request.
    Detect,
    Http1,
    Http2,
    /// After an upgrade request, until its response: a declined upgrade (no 101, nothing
    /// sent meanwhile) goes back to `Http1`; anything else to `Passthrough`.
    Upgrade,
    /// After an upgrade, or when the framing could not be followed: bytes pass.
    Passthrough,
    /// A head was refused: nothing more is handed to hyper.
    Refused,
}

/// Where the HTTP/1 reader is within the request stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Head,
    Fixed(u64),
    Chunked(Chunk),
}

/// hyper's chunked decoder states (`proto/h1/decode.rs`), mirrored byte for byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Start,
    Size(u64),
    SizeLws(u64),
    Ext(u64),
    SizeLf(u64),
    Body(u64),
    BodyCr,
    BodyLf,
    Trailer,
    TrailerLf,
    EndCr,
    EndLf,
}

/// The verdict on one request head.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Next(Framing),
    /// An upgrade request without a body: its bytes pass until the response says whether
    /// the upgrade happened.
    Upgrade,
    /// Hand everything to hyper from here on (an upgrade, or a head hyper refuses itself).
    Passthrough,
    Refuse(&'static str),
}

/// The guarded stream.
pub(crate) struct GuardedIo<S> {
    inner: S,
    config: GuardConfig,
    activity: Arc<Activity>,
    mode: Mode,
    framing: Framing,
    /// Read from the socket, not yet inspected.
    raw: BytesMut,
    /// How much of `raw` is known to hold no end of a request head: the next search for it
    /// starts there, so a head that arrives in many small reads is scanned once, not once per
    /// read. Reset by `release`, which moves the start of `raw` (`raw` is otherwise only
    /// cleared on the way to `Mode::Refused`, which searches no more, or given to the thread's
    /// spare when empty, when this is 0 already).
    head_scanned: usize,
    /// Inspected, not yet handed to hyper.
    ready: BytesMut,
    eof: bool,
    /// Deadline of the head being read (HTTP/1).
    head_deadline: Option<Instant>,
    /// Since when a write has been pending.
    write_pending_since: Option<Instant>,
    timer: Pin<Box<Sleep>>,
    write_timer: Pin<Box<Sleep>>,
    h2: H2Frames,
    /// The HTTP/2 client flooded control frames: the connection fails.
    flood: bool,
}

/// Follows HTTP/2 frame headers in the client's byte stream and counts control frames per
/// second (the floods RFC 9113 10.5 warns of: SETTINGS, PING, PRIORITY, RST_STREAM, and
/// empty DATA or CONTINUATION frames, which cost the server work and carry nothing).
#[derive(Debug)]
struct H2Frames {
    /// Bytes of the connection preface still to skip.
    preface_left: usize,
    header: [u8; 9],
    have: usize,
    /// Payload bytes of the current frame still to skip.
    skip: u64,
    window: Instant,
    count: u32,
}

impl H2Frames {
    fn new() -> Self {
        H2Frames {
            preface_left: H2_PREFACE.len(),
            header: [0; 9],
            have: 0,
            skip: 0,
            window: Instant::now(),
            count: 0,
        }
    }

    /// Feeds bytes; `true` when the client went over `max` control frames in a second.
    fn scan(&mut self, mut bytes: &[u8], max: u32) -> bool {
        let k = self.preface_left.min(bytes.len());
        self.preface_left -= k;
        bytes = &bytes[k..];
        while !bytes.is_empty() {
            if self.skip > 0 {
                let k = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.skip -= k as u64;
                bytes = &bytes[k..];
                continue;
            }
            let k = (9 - self.have).min(bytes.len());
            self.header[self.have..self.have + k].copy_from_slice(&bytes[..k]);
            self.have += k;
            bytes = &bytes[k..];
            if self.have < 9 {
                return false;
            }
            self.have = 0;
            let h = self.header;
            let len = u64::from(h[0]) << 16 | u64::from(h[1]) << 8 | u64::from(h[2]);
            let (kind, flags) = (h[3], h[4]);
            self.skip = len;
            const ACK: u8 = 0x1;
            let control = match kind {
                // Empty DATA without END_STREAM, empty CONTINUATION without END_HEADERS.
                0x0 => len == 0 && flags & 0x1 == 0,
                0x9 => len == 0 && flags & 0x4 == 0,
                0x2 | 0x3 => true,
                0x4 | 0x6 => flags & ACK == 0,
                _ => false,
            };
            if control && max > 0 {
                let now = Instant::now();
                if now.duration_since(self.window) >= Duration::from_secs(1) {
                    self.window = now;
                    self.count = 0;
                }
                self.count += 1;
                if self.count > max {
                    return true;
                }
            }
        }
        false
    }
}

impl<S> GuardedIo<S> {
    pub(crate) fn new(inner: S, config: GuardConfig, activity: Arc<Activity>) -> Self {
        let now = Instant::now();
        GuardedIo {
            inner,
            config,
            activity,
            mode: Mode::Detect,
            framing: Framing::Head,
            raw: BytesMut::new(),
            head_scanned: 0,
            ready: BytesMut::new(),
            eof: false,
            head_deadline: None,
            write_pending_since: None,
            timer: Box::pin(tokio::time::sleep_until(now)),
            write_timer: Box::pin(tokio::time::sleep_until(now)),
            h2: H2Frames::new(),
            flood: false,
        }
    }

    /// Moves inspected bytes from `raw` to `ready`.
    fn process(&mut self) {
        loop {
            match self.mode {
                Mode::Detect => {
                    let n = self.raw.len().min(H2_PREFACE.len());
                    if self.raw[..n] != H2_PREFACE[..n] {
                        self.mode = Mode::Http1;
                    } else if n == H2_PREFACE.len() {
                        self.mode = Mode::Http2;
                    } else {
                        // A prefix of the preface: wait for more (an HTTP/1 head would
                        // wait for more too).
                        return;
                    }
                }
                Mode::Http2 => {
                    if self
                        .h2
                        .scan(&self.raw, self.config.http2_max_control_frames)
                    {
                        tracing::debug!("HTTP/2 control frame flood; closing connection");
                        self.flood = true;
                        self.mode = Mode::Refused;
                        self.raw.clear();
                        return;
                    }
                    self.release(self.raw.len());
                    return;
                }
                Mode::Upgrade => {
                    if self.raw.is_empty() {
                        return;
                    }
                    self.mode = if self.activity.declined.swap(false, Ordering::AcqRel) {
                        // The upgrade was declined and the client waited for the answer:
                        // this is the next request's head.
                        self.framing = Framing::Head;
                        Mode::Http1
                    } else {
                        Mode::Passthrough
                    };
                }
                Mode::Passthrough => {
                    self.release(self.raw.len());
                    return;
                }
                Mode::Refused => {
                    self.raw.clear();
                    return;
                }
                Mode::Http1 => {
                    if self.raw.is_empty() || !self.step_http1() {
                        return;
                    }
                }
            }
        }
    }

    /// One step of HTTP/1 inspection; `false` when more bytes are needed.
    fn step_http1(&mut self) -> bool {
        match self.framing {
            Framing::Head => {
                // Empty lines before a request line are ignored (RFC 9112 2.2), as httparse does.
                let blank = self
                    .raw
                    .iter()
                    .take_while(|&&b| b == b'\r' || b == b'\n')
                    .count();
                if blank > 0 {
                    self.release(blank);
                    return true;
                }
                if self.head_deadline.is_none() && !self.config.header_read_timeout.is_zero() {
                    self.head_deadline = Some(Instant::now() + self.config.header_read_timeout);
                }
                let Some(end) = head_end(&self.raw, self.head_scanned) else {
                    self.head_scanned = self.raw.len();
                    if self.raw.len() > self.config.max_header_bytes + 4096 {
                        // hyper answers 431.
                        self.mode = Mode::Passthrough;
                        return true;
                    }
                    return false;
                };
                self.head_deadline = None;
                match inspect(&self.raw[..end], self.config.max_headers) {
                    Verdict::Next(framing) => {
                        self.release(end);
                        self.framing = framing;
                    }
                    Verdict::Upgrade => {
                        self.release(end);
                        self.activity.declined.store(false, Ordering::Release);
                        self.mode = Mode::Upgrade;
                    }
                    Verdict::Passthrough => self.mode = Mode::Passthrough,
                    Verdict::Refuse(why) => {
                        tracing::debug!(reason = why, "ambiguous request refused (400)");
                        self.raw.clear();
                        self.ready.extend_from_slice(REFUSED_HEAD);
                        self.mode = Mode::Refused;
                    }
                }
                true
            }
            Framing::Fixed(n) => {
                let k = usize::try_from(n).unwrap_or(usize::MAX).min(self.raw.len());
                self.release(k);
                let left = n - k as u64;
                self.framing = if left == 0 {
                    Framing::Head
                } else {
                    Framing::Fixed(left)
                };
                true
            }
            Framing::Chunked(state) => {
                let mut state = state;
                let mut i = 0;
                while i < self.raw.len() {
                    if let Chunk::Body(left) = state {
                        let k = usize::try_from(left)
                            .unwrap_or(usize::MAX)
                            .min(self.raw.len() - i);
                        i += k;
                        let left = left - k as u64;
                        state = if left == 0 {
                            Chunk::BodyCr
                        } else {
                            Chunk::Body(left)
                        };
                        continue;
                    }
                    let b = self.raw[i];
                    i += 1;
                    match chunk_step(state, b) {
                        Some(Some(next)) => state = next,
                        Some(None) => {
                            // Last chunk and trailers done: the next request's head.
                            self.release(i);
                            self.framing = Framing::Head;
                            return true;
                        }
                        None => {
                            // hyper fails the body here too; the request gets 400.
                            tracing::debug!("invalid chunked framing; request refused (400)");
                            self.activity.framing_error.store(true, Ordering::Release);
                            self.mode = Mode::Passthrough;
                            return true;
                        }
                    }
                }
                self.release(i);
                self.framing = Framing::Chunked(state);
                false
            }
        }
    }

    /// Hands the first `n` inspected bytes of `raw` over to hyper. Both buffers are views of
    /// one allocation, so this moves no bytes unless `ready` still holds older ones from
    /// another allocation.
    fn release(&mut self, n: usize) {
        // `raw` now starts elsewhere.
        self.head_scanned = 0;
        let taken = self.raw.split_to(n);
        if self.ready.is_empty() {
            self.ready = taken;
        } else {
            self.ready.unsplit(taken);
        }
    }

    /// The next deadline of the read side: the head's, or the idle timeout's.
    fn read_deadline(&self) -> Option<(Instant, &'static str)> {
        if let Some(d) = self.head_deadline {
            return Some((d, "header read timeout"));
        }
        let idle = match self.mode {
            Mode::Http2 => self.config.http2_idle_timeout,
            // An upgraded connection (WebSocket) has no requests to count.
            Mode::Upgrade | Mode::Passthrough if self.activity.upgraded.load(Ordering::Acquire) => {
                return None;
            }
            Mode::Detect | Mode::Http1 | Mode::Upgrade | Mode::Passthrough => {
                self.config.http1_idle_timeout
            }
            // Closing.
            Mode::Refused => return None,
        };
        if idle.is_zero() {
            return None;
        }
        match self.activity.idle_since() {
            Some(since) => Some((since + idle, "idle timeout")),
            // A request in flight: look again later.
            None => Some((Instant::now() + idle, "")),
        }
    }
}

/// The end (exclusive) of the head at the start of `buf`: just after its empty line. Bytes
/// before `from` hold no end of a head (an earlier search covered them); the line feeds of
/// the rest are found with `memchr`.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let rest = buf.get(from..)?;
    memchr::memchr_iter(b'\n', rest)
        .map(|i| i + from)
        .find(|&i| {
            // The line ending at `i` is empty, or a lone CR.
            let line_start = match i.checked_sub(1).map(|j| buf[j]) {
                None | Some(b'\n') => return true,
                Some(b'\r') => i - 1,
                Some(_) => return false,
            };
            line_start == 0 || buf[line_start - 1] == b'\n'
        })
        .map(|i| i + 1)
}

/// Decides on one complete request head.
fn inspect(head: &[u8], max_headers: usize) -> Verdict {
    // RFC 9112 2.2 allows a recipient to accept a bare LF; a proxy that does while another hop
    // does not is a smuggling vector, so gw refuses it.
    if memchr::memchr_iter(b'\n', head).any(|i| i == 0 || head[i - 1] != b'\r') {
        return Verdict::Refuse("bare LF line ending");
    }
    // Uninitialized header slots: on the stack up to STACK_HEADERS, no zeroing either way.
    let mut stack = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
    let mut heap = Vec::new();
    let slots: &mut [MaybeUninit<httparse::Header<'_>>] = if max_headers <= STACK_HEADERS {
        &mut stack[..max_headers.max(1)]
    } else {
        heap.resize_with(max_headers, MaybeUninit::uninit);
        &mut heap
    };
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(head, slots) {
        Ok(httparse::Status::Complete(_)) => {}
        // Too many headers (431), invalid characters, obs-fold...: hyper refuses it itself.
        Ok(httparse::Status::Partial) | Err(_) => return Verdict::Passthrough,
    }
    let http10 = req.version == Some(0);
    let (mut te, mut cl, mut hosts) = (Vec::new(), Vec::new(), 0);
    let (mut upgrade, mut connection_upgrade) = (false, false);
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            te.push(h.value);
        } else if h.name.eq_ignore_ascii_case("content-length") {
            cl.push(h.value);
        } else if h.name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        } else if h.name.eq_ignore_ascii_case("connection") {
            connection_upgrade |= h
                .value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
        }
    }
    // RFC 9112 3.2: "A server MUST respond with a 400 (Bad Request) status code to any
    // HTTP/1.1 request message that lacks a Host header field and to any request message that
    // contains more than one Host header field line".
    if hosts > 1 {
        return Verdict::Refuse("more than one Host header");
    }
    if hosts == 0 && !http10 {
        return Verdict::Refuse("HTTP/1.1 request without Host");
    }
    let framing = if !te.is_empty() {
        // RFC 9112 6.3: both "ought to be handled as an error".
        if !cl.is_empty() {
            return Verdict::Refuse("Content-Length with Transfer-Encoding");
        }
        // RFC 9112 6.1: "A server MUST NOT send a response containing Transfer-Encoding
        // unless the corresponding request indicates HTTP/1.1", and HTTP/1.0 does not frame
        // by it.
        if http10 {
            return Verdict::Refuse("Transfer-Encoding on HTTP/1.0");
        }
        // Exactly one coding, `chunked`: gw decodes no other transfer coding.
        let mut codings = te
            .iter()
            .flat_map(|v| v.split(|&b| b == b','))
            .map(<[u8]>::trim_ascii);
        match (codings.next(), codings.next()) {
            (Some(c), None) if c.eq_ignore_ascii_case(b"chunked") => {}
            _ => return Verdict::Refuse("Transfer-Encoding other than chunked"),
        }
        Framing::Chunked(Chunk::Start)
    } else if let Some(first) = cl.first() {
        let Some(n) = parse_length(first) else {
            return Verdict::Refuse("invalid Content-Length");
        };
        if cl.iter().any(|v| parse_length(v) != Some(n)) {
            return Verdict::Refuse("differing Content-Lengths");
        }
        if n == 0 {
            Framing::Head
        } else {
            Framing::Fixed(n)
        }
    } else {
        Framing::Head
    };
    if req.method == Some("CONNECT") || (upgrade && connection_upgrade) {
        return match framing {
            Framing::Head => Verdict::Upgrade,
            _ => Verdict::Passthrough,
        };
    }
    Verdict::Next(framing)
}

/// A `Content-Length` value: 1 to 19 digits, nothing else.
fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// One byte of chunked framing: `Some(Some(state))` to go on, `Some(None)` at the end of
/// the message, `None` on an error (where hyper's decoder fails too).
fn chunk_step(state: Chunk, b: u8) -> Option<Option<Chunk>> {
    let hex = |b: u8| char::from(b).to_digit(16).map(u64::from);
    let next = match state {
        Chunk::Start => Chunk::Size(hex(b)?),
        Chunk::Size(n) => match b {
            b'\t' | b' ' => Chunk::SizeLws(n),
            b';' => Chunk::Ext(n),
            b'\r' => Chunk::SizeLf(n),
            _ => Chunk::Size(n.checked_mul(16)?.checked_add(hex(b)?)?),
        },
        Chunk::SizeLws(n) => match b {
            b'\t' | b' ' => Chunk::SizeLws(n),
            b';' => Chunk::Ext(n),
            b'\r' => Chunk::SizeLf(n),
            _ => return None,
        },
        Chunk::Ext(n) => match b {
            b'\r' => Chunk::SizeLf(n),
            b'\n' => return None,
            _ => Chunk::Ext(n),
        },
        Chunk::SizeLf(n) => match (b, n) {
            (b'\n', 0) => Chunk::EndCr,
            (b'\n', n) => Chunk::Body(n),
            _ => return None,
        },
        // Body bytes are skipped by the caller.
        Chunk::Body(n) => Chunk::Body(n),
        Chunk::BodyCr if b == b'\r' => Chunk::BodyLf,
        Chunk::BodyLf if b == b'\n' => Chunk::Start,
        Chunk::BodyCr | Chunk::BodyLf => return None,
        Chunk::EndCr if b == b'\r' => Chunk::EndLf,
        Chunk::EndCr | Chunk::Trailer if b != b'\r' => Chunk::Trailer,
        Chunk::Trailer => Chunk::TrailerLf,
        Chunk::TrailerLf if b == b'\n' => Chunk::EndCr,
        Chunk::TrailerLf => return None,
        Chunk::EndCr => Chunk::EndLf,
        Chunk::EndLf if b == b'\n' => return Some(None),
        Chunk::EndLf => return None,
    };
    Some(Some(next))
}

impl<S: AsyncRead + Unpin> AsyncRead for GuardedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.flood {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "HTTP/2 control frame flood",
                )));
            }
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                if this.ready.is_empty() {
                    // Drop the handle on the shared buffer, so that `raw` can reuse it.
                    this.ready = BytesMut::new();
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                if !this.raw.is_empty() {
                    // A truncated head or body: let hyper see it and fail.
                    let rest = this.raw.len();
                    this.release(rest);
                    continue;
                }
                return Poll::Ready(Ok(()));
            }
            // Straight into `raw`'s free capacity: no zeroed scratch buffer, no extra copy.
            if this.raw.capacity() == 0
                && let Some(spare) = SPARE.take()
            {
                this.raw = spare;
            }
            if this.raw.capacity() - this.raw.len() < READ_MIN {
                this.raw.reserve(READ_SIZE);
            }
            match poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.raw) {
                Poll::Ready(Ok(0)) => {
                    this.eof = true;
                    continue;
                }
                Poll::Ready(Ok(_)) => this.process(),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    if this.raw.is_empty() && this.raw.capacity() > 0 {
                        // Nothing is held back (`ready` is empty too, or it was returned):
                        // the client is quiet, and an idle keep-alive connection holds no
                        // buffer. (Bytes past `len` are never exposed: reads fill them.)
                        SPARE.set(Some(std::mem::take(&mut this.raw)));
                    }
                    let Some((deadline, why)) = this.read_deadline() else {
                        return Poll::Pending;
                    };
                    if this.timer.deadline() != deadline {
                        this.timer.as_mut().reset(deadline);
                    }
                    if this.timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    if why.is_empty() {
                        // Requests in flight: not idle; the deadline moves on.
                        continue;
                    }
                    tracing::debug!(reason = why, "closing connection");
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)));
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> GuardedIo<S> {
    /// Turns a pending write into an error once it has been pending for the stall timeout.
    fn stalled<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.write_pending_since = None;
            return r;
        }
        if self.config.write_stall_timeout.is_zero() {
            return r;
        }
        let since = *self.write_pending_since.get_or_insert_with(Instant::now);
        let deadline = since + self.config.write_stall_timeout;
        if self.write_timer.deadline() != deadline {
            self.write_timer.as_mut().reset(deadline);
        }
        ready!(self.write_timer.as_mut().poll(cx));
        tracing::debug!("client does not read; closing connection");
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "write stall timeout",
        )))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GuardedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.stalled(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.stalled(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.stalled(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.stalled(cx, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(head: &str) -> Verdict {
        inspect(head.as_bytes(), 100)
    }

    #[test]
    fn ambiguous_heads_are_refused() {
        let ok = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(verdict(ok), Verdict::Next(Framing::Fixed(5)));
        let chunked = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            verdict(chunked),
            Verdict::Next(Framing::Chunked(Chunk::Start))
        );
        for (head, why) in [
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                "Content-Length with Transfer-Encoding",
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                "Content-Length with Transfer-Encoding",
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
                "Transfer-Encoding other than chunked",
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
                "Transfer-Encoding other than chunked",
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
                "Transfer-Encoding other than chunked",
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                "differing Content-Lengths",
            ),
            (
                "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                "Transfer-Encoding on HTTP/1.0",
            ),
            ("GET / HTTP/1.1\nHost: a\r\n\r\n", "bare LF line ending"),
            ("GET / HTTP/1.1\r\nHost: a\n\n", "bare LF line ending"),
            ("GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 request without Host"),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                "more than one Host header",
            ),
        ] {
            assert_eq!(verdict(head), Verdict::Refuse(why), "{head:?}");
        }
        // hyper refuses these itself.
        assert_eq!(
            verdict("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"),
            Verdict::Passthrough
        );
        assert_eq!(
            verdict("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"),
            Verdict::Passthrough
        );
        assert_eq!(
            verdict("GET / HTTP/1.0\r\n\r\n"),
            Verdict::Next(Framing::Head)
        );
        assert_eq!(
            verdict(
                "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
            ),
            Verdict::Upgrade
        );
    }

    #[test]
    fn chunked_framing_follows_hyper() {
        let run = |body: &[u8]| {
            let mut s = Chunk::Start;
            for (i, &b) in body.iter().enumerate() {
                if let Chunk::Body(n) = s {
                    s = if n == 1 {
                        Chunk::BodyCr
                    } else {
                        Chunk::Body(n - 1)
                    };
                    continue;
                }
                match chunk_step(s, b) {
                    Some(Some(n)) => s = n,
                    Some(None) => return Ok(i + 1),
                    None => return Err(i),
                }
            }
            Err(usize::MAX)
        };
        assert_eq!(run(b"5\r\nhello\r\n0\r\n\r\nGET"), Ok(15));
        assert_eq!(run(b"5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"), Ok(29));
        assert_eq!(run(b"5 \r\nhello\r\n0\r\n\r\n"), Ok(16));
        assert!(run(b"5\nhello\r\n0\r\n\r\n").is_err());
        assert!(run(b"10000000000000000\r\n").is_err());
        assert!(run(b"5\r\nhello\n0\r\n\r\n").is_err());
        assert!(run(b"5\r\nhello\r\n0\r\n\n").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn http2_control_floods_are_counted_per_second() {
        let frame = |kind: u8, flags: u8, payload: &[u8]| {
            let mut f = vec![0, 0, payload.len() as u8, kind, flags, 0, 0, 0, 1];
            f.extend_from_slice(payload);
            f
        };
        let mut h2 = H2Frames::new();
        assert!(!h2.scan(&H2_PREFACE[..10], 3));
        assert!(!h2.scan(&H2_PREFACE[10..], 3));
        // Non-empty DATA, HEADERS, WINDOW_UPDATE and ACKs are free.
        let free: Vec<u8> = [
            frame(0, 0, b"abc"),
            frame(1, 4, b"hdr"),
            frame(8, 0, &[0, 0, 1, 0]),
            frame(4, 1, b""),
            frame(6, 1, &[0; 8]),
            frame(0, 1, b""),
        ]
        .concat();
        for _ in 0..10 {
            assert!(!h2.scan(&free, 3));
        }
        // Three control frames pass, the fourth within the second does not; one byte at a
        // time to cross every boundary.
        let ping = frame(6, 0, &[0; 8]);
        let settings = frame(4, 0, b"");
        let empty = frame(0, 0, b"");
        for f in [&ping, &settings, &empty] {
            assert!(f.iter().all(|b| !h2.scan(&[*b], 3)));
        }
        tokio::time::advance(Duration::from_millis(1100)).await;
        for f in [&ping, &settings, &empty] {
            assert!(!h2.scan(f, 3));
        }
        assert!(h2.scan(&frame(3, 0, &[0, 0, 0, 8]), 3));
    }

    /// Polls one read: whether it is pending (nothing to hand over yet).
    async fn read_would_wait<S: AsyncRead + Unpin>(io: &mut GuardedIo<S>) -> bool {
        std::future::poll_fn(|cx| {
            let mut buf = [0u8; 256];
            let mut buf = ReadBuf::new(&mut buf);
            Poll::Ready(Pin::new(&mut *io).poll_read(cx, &mut buf).is_pending())
        })
        .await
    }

    #[tokio::test]
    async fn a_quiet_connection_holds_no_read_buffer() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let config = GuardConfig {
            header_read_timeout: Duration::ZERO,
            http1_idle_timeout: Duration::ZERO,
            http2_idle_timeout: Duration::ZERO,
            write_stall_timeout: Duration::ZERO,
            max_header_bytes: 8192,
            max_headers: 100,
            http2_max_control_frames: 0,
        };
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut io = GuardedIo::new(server, config, Activity::new());
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let partial = b"GET /next HTTP/1.1\r\nHo";
        client
            .write_all(&[&head[..], &partial[..]].concat())
            .await
            .unwrap();
        let mut got = [0u8; 256];
        let n = io.read(&mut got).await.unwrap();
        assert_eq!(&got[..n], head);
        // The start of the next head is held back until its end arrives: its buffer stays.
        assert!(read_would_wait(&mut io).await);
        assert_eq!(&io.raw[..], partial);
        client.write_all(b"st: a\r\n\r\n").await.unwrap();
        let n = io.read(&mut got).await.unwrap();
        assert_eq!(&got[..n], b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
        // Nothing left to read: the buffer is given back while the client is quiet...
        assert!(read_would_wait(&mut io).await);
        assert_eq!(io.raw.capacity(), 0);
        assert_eq!(io.ready.capacity(), 0);
        // ...to this thread's spare, which the next read takes.
        let spare = SPARE.take().expect("the quiet connection's buffer");
        assert!(spare.is_empty() && spare.capacity() >= READ_MIN);
        SPARE.set(Some(spare));
        client.write_all(head).await.unwrap();
        let n = io.read(&mut got).await.unwrap();
        assert_eq!(&got[..n], head);
        assert!(SPARE.take().is_none());
    }

    #[test]
    fn head_end_finds_the_empty_line() {
        assert_eq!(
            head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest", 0),
            Some(27)
        );
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: a\n\nrest", 0), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n", 0), None);
        assert_eq!(head_end(b"\r\nGET / HTTP/1.1\r\n", 0), Some(2));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\rb\r\n", 0), None);
    }

    #[test]
    fn head_end_resumes_where_the_last_search_stopped() {
        // The empty line split between reads, after its CR or before it.
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        for split in 1..head.len() {
            let first = head_end(&head[..split], 0);
            assert_eq!(first, None, "split at {split}");
            assert_eq!(head_end(head, split), Some(head.len()), "split at {split}");
        }
        // Bytes before `from` are not searched again.
        assert_eq!(head_end(b"\n\nGET", 2), None);
        assert_eq!(head_end(b"GET", 4), None);
    }

    /// The end of the head, one byte at a time: the reference for `head_end`.
    fn head_end_reference(buf: &[u8]) -> Option<usize> {
        let mut line_start = 0;
        for (i, &b) in buf.iter().enumerate() {
            if b == b'\n' {
                let line = &buf[line_start..i];
                if line.is_empty() || line == b"\r" {
                    return Some(i + 1);
                }
                line_start = i + 1;
            }
        }
        None
    }

    proptest::proptest! {
        #[test]
        fn head_end_resumed_at_any_read_finds_what_a_full_search_finds(
            bytes in proptest::collection::vec(
                proptest::sample::select(vec![b'\r', b'\n', b'a', b':', b' ']),
                0..64,
            ),
            reads in proptest::collection::vec(0usize..64, 0..6),
        ) {
            // The head arrives in reads ending at `reads` (sorted); each search resumes
            // where the one before stopped, as the guard does.
            let mut ends: Vec<usize> = reads.into_iter().map(|r| r.min(bytes.len())).collect();
            ends.push(bytes.len());
            ends.sort_unstable();
            let mut scanned = 0;
            let mut found = None;
            for end in ends {
                if let Some(at) = head_end(&bytes[..end], scanned) {
                    found = Some(at);
                    break;
                }
                scanned = end;
            }
            proptest::prop_assert_eq!(found, head_end_reference(&bytes));
        }
    }
}
