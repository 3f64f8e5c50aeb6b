//! Reading the server name (SNI) of a TLS ClientHello without consuming it.
//!
//! [`parse_client_hello`] is a pure, incremental parser: give it the bytes received so far and
//! it answers "need more bytes" (`Ok(None)`), the ClientHello's server name, or why the bytes
//! are not a TLS 1.2/1.3 ClientHello. It never panics on any input (property-tested on random
//! and mutated input; a plain `&[u8]` function, ready for a fuzz target). [`peek`] drives it
//! over an async stream with a size bound and a timeout and returns the bytes it read, so that
//! they can be replayed to whoever handles the connection next ([`Peeked::into_stream`]).
//!
//! The ClientHello may be split across several TLS records and arrive in any number of reads,
//! down to one byte at a time: it parses the same as when whole.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};

/// TLS record content type of handshake messages.
const HANDSHAKE: u8 = 22;
/// Handshake message type of a ClientHello.
const CLIENT_HELLO: u8 = 1;
/// Extension type of `server_name` (RFC 6066).
const SERVER_NAME: u16 = 0;
/// `NameType` `host_name` (RFC 6066).
const HOST_NAME: u8 = 0;
/// Largest TLS plaintext record (RFC 8446 section 5.1: "The length MUST NOT exceed 2^14 bytes").
const MAX_RECORD: usize = 1 << 14;
/// Record header: type, legacy version, length.
const RECORD_HEADER: usize = 5;

/// How much [`peek`] reads and how long it waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeekConfig {
    /// Most bytes read before giving up (records included). Default 16 KiB.
    pub max_bytes: usize,
    /// How long the whole ClientHello may take to arrive. Default 10 s.
    pub timeout: Duration,
}

impl Default for PeekConfig {
    fn default() -> Self {
        PeekConfig {
            max_bytes: 16 * 1024,
            timeout: Duration::from_secs(10),
        }
    }
}

impl PeekConfig {
    /// Sets [`max_bytes`](PeekConfig::max_bytes).
    pub fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Sets [`timeout`](PeekConfig::timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Why bytes are not a TLS 1.2/1.3 ClientHello.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// A record is not a handshake record (plain HTTP, an alert, anything but TLS).
    #[error("not a TLS handshake record (content type {0})")]
    NotHandshake(u8),
    /// A record's legacy version is not TLS (major version 3).
    #[error("not a TLS record (record version {0:#06x})")]
    RecordVersion(u16),
    /// A record is empty or longer than 2^14 bytes.
    #[error("invalid TLS record length {0}")]
    RecordLength(usize),
    /// The first handshake message is not a ClientHello.
    #[error("first handshake message is type {0}, not ClientHello")]
    NotClientHello(u8),
    /// The ClientHello's `legacy_version` is below TLS 1.2 (TLS 1.3 clients send 1.2's).
    #[error("ClientHello version {0:#06x} is older than TLS 1.2")]
    Version(u16),
    /// A length inside the ClientHello runs past its end, or a field is malformed.
    #[error("malformed ClientHello: {0}")]
    Malformed(&'static str),
    /// The server name is not an ASCII host name.
    #[error("server name is not an ASCII host name")]
    ServerName,
}

/// What [`parse_client_hello`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// The `host_name` of the `server_name` extension, lowercased, without a trailing dot;
    /// `None` when the client sent none.
    pub server_name: Option<String>,
    /// How many bytes of the input the records carrying the ClientHello take.
    pub len: usize,
}

/// Parses a TLS ClientHello from the first bytes a client sent.
///
/// `Ok(None)`: the bytes are a valid beginning, but more are needed. `Ok(Some(hello))`: a
/// complete ClientHello (bytes after it are ignored). `Err`: the bytes are not a TLS 1.2 or
/// 1.3 ClientHello, whatever follows.
///
/// ```
/// use gw_router::l4::sni::{parse_client_hello, ParseError};
///
/// // An HTTP request is not TLS.
/// assert!(matches!(parse_client_hello(b"GET / HTTP/1.1\r\n"), Err(ParseError::NotHandshake(_))));
/// // The first bytes of a handshake record: more are needed.
/// assert_eq!(parse_client_hello(&[22, 3, 1, 0, 200, 1]), Ok(None));
/// ```
pub fn parse_client_hello(buf: &[u8]) -> Result<Option<ClientHello>, ParseError> {
    match parse(buf)? {
        Progress::Need(_) => Ok(None),
        Progress::Done(hello) => Ok(Some(hello)),
    }
}

enum Progress {
    /// At least this many bytes in total are needed before parsing can progress.
    Need(usize),
    Done(ClientHello),
}

/// Reassembles the handshake message from records and parses it once complete.
fn parse(buf: &[u8]) -> Result<Progress, ParseError> {
    let mut handshake: Vec<u8> = Vec::new();
    let mut pos = 0;
    loop {
        let Some(header) = buf.get(pos..pos + RECORD_HEADER) else {
            return Ok(Progress::Need(pos + RECORD_HEADER));
        };
        let (ty, version, len) = (
            header[0],
            u16::from_be_bytes([header[1], header[2]]),
            usize::from(u16::from_be_bytes([header[3], header[4]])),
        );
        if ty != HANDSHAKE {
            return Err(ParseError::NotHandshake(ty));
        }
        if version >> 8 != 3 {
            return Err(ParseError::RecordVersion(version));
        }
        // RFC 8446 section 5.1: "Implementations MUST NOT send zero-length fragments of
        // Handshake types".
        if len == 0 || len > MAX_RECORD {
            return Err(ParseError::RecordLength(len));
        }
        let start = pos + RECORD_HEADER;
        // Check the handshake header as soon as it is there, before the whole record is.
        let available = buf.get(start..).unwrap_or_default();
        let fragment = &available[..available.len().min(len)];
        check_handshake_header(&handshake, fragment)?;
        if fragment.len() < len {
            return Ok(Progress::Need(start + len));
        }
        handshake.extend_from_slice(fragment);
        pos = start + len;
        if handshake.len() >= 4 {
            let body_len = u24(&handshake[1..4]);
            if handshake.len() >= 4 + body_len {
                let server_name = client_hello(&handshake[4..4 + body_len])?;
                return Ok(Progress::Done(ClientHello {
                    server_name,
                    len: pos,
                }));
            }
        }
    }
}

/// Rejects a first handshake message that is not a ClientHello as early as possible.
fn check_handshake_header(before: &[u8], fragment: &[u8]) -> Result<(), ParseError> {
    if before.is_empty()
        && let Some(&ty) = fragment.first()
        && ty != CLIENT_HELLO
    {
        return Err(ParseError::NotClientHello(ty));
    }
    Ok(())
}

fn u24(b: &[u8]) -> usize {
    (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2])
}

/// A cursor over a ClientHello body; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ParseError> {
        if self.0.len() < n {
            return Err(ParseError::Malformed(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, ParseError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, ParseError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a one-byte length prefix.
    fn vec8(&mut self, what: &'static str) -> Result<&'a [u8], ParseError> {
        let n = self.u8(what)?;
        self.take(usize::from(n), what)
    }

    /// A vector with a two-byte length prefix.
    fn vec16(&mut self, what: &'static str) -> Result<&'a [u8], ParseError> {
        let n = self.u16(what)?;
        self.take(usize::from(n), what)
    }
}

/// Parses a ClientHello body (RFC 8446 section 4.1.2; RFC 5246 section 7.4.1.2) and returns its
/// server name.
fn client_hello(body: &[u8]) -> Result<Option<String>, ParseError> {
    let mut r = Reader(body);
    // "In TLS 1.3, the client indicates its version preferences in the "supported_versions"
    // extension and the legacy_version field MUST be set to 0x0303, which is the version
    // number for TLS 1.2."
    let version = r.u16("legacy_version")?;
    if version < 0x0303 || version >> 8 != 3 {
        return Err(ParseError::Version(version));
    }
    r.take(32, "random")?;
    let session_id = r.vec8("legacy_session_id")?;
    if session_id.len() > 32 {
        return Err(ParseError::Malformed(
            "legacy_session_id longer than 32 bytes",
        ));
    }
    let suites = r.vec16("cipher_suites")?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err(ParseError::Malformed("cipher_suites"));
    }
    if r.vec8("legacy_compression_methods")?.is_empty() {
        return Err(ParseError::Malformed("legacy_compression_methods"));
    }
    if r.0.is_empty() {
        // A TLS 1.2 ClientHello may omit extensions altogether.
        return Ok(None);
    }
    let mut exts = Reader(r.vec16("extensions")?);
    if !r.0.is_empty() {
        return Err(ParseError::Malformed("bytes after extensions"));
    }
    let mut server_name = None;
    let mut seen = Vec::new();
    while !exts.0.is_empty() {
        let ty = exts.u16("extension type")?;
        let data = exts.vec16("extension data")?;
        // RFC 8446 section 4.2: "There MUST NOT be more than one extension of the same type".
        if seen.contains(&ty) {
            return Err(ParseError::Malformed("duplicate extension"));
        }
        seen.push(ty);
        if ty == SERVER_NAME {
            server_name = host_name(data)?;
        }
    }
    Ok(server_name)
}

/// The `host_name` entry of a `server_name` extension (RFC 6066 section 3).
fn host_name(data: &[u8]) -> Result<Option<String>, ParseError> {
    let mut r = Reader(data);
    let mut list = Reader(r.vec16("server_name_list")?);
    if !r.0.is_empty() {
        return Err(ParseError::Malformed("bytes after server_name_list"));
    }
    let mut found = None;
    while !list.0.is_empty() {
        let ty = list.u8("name_type")?;
        let name = list.vec16("host_name")?;
        if ty != HOST_NAME {
            continue;
        }
        // "The ServerNameList MUST NOT contain more than one name of the same name_type."
        if found.is_some() {
            return Err(ParseError::Malformed("more than one host_name"));
        }
        found = Some(name);
    }
    let Some(name) = found else { return Ok(None) };
    // "The hostname is represented as a byte string using ASCII encoding without a trailing
    // dot." Trailing dots are tolerated and removed.
    let name = name.strip_suffix(b".").unwrap_or(name);
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !valid {
        return Err(ParseError::ServerName);
    }
    Ok(Some(String::from_utf8_lossy(name).to_ascii_lowercase()))
}

/// Why [`peek`] could not read a ClientHello.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeekError {
    /// The client sent something that is not a TLS 1.2/1.3 ClientHello.
    #[error("not a TLS ClientHello")]
    Parse(#[source] ParseError),
    /// The ClientHello did not complete within [`PeekConfig::max_bytes`].
    #[error("ClientHello larger than {0} bytes")]
    TooLarge(usize),
    /// The ClientHello did not complete within [`PeekConfig::timeout`].
    #[error("no complete ClientHello within {0:?}")]
    Timeout(Duration),
    /// The client closed the connection before the ClientHello was complete.
    #[error("connection closed before the ClientHello was complete")]
    Eof,
    /// Reading from the client failed.
    #[error("reading the ClientHello failed")]
    Io(#[source] io::Error),
}

/// A ClientHello read by [`peek`], with every byte read so far.
#[derive(Debug, Clone)]
pub struct Peeked {
    /// The server name the client asked for (lowercase), if any.
    pub server_name: Option<String>,
    /// Every byte read from the stream, ClientHello first; replay them to the next handler.
    pub buffered: Bytes,
}

impl Peeked {
    /// The stream as it was before the peek: reads return [`buffered`](Peeked::buffered)
    /// first, then the rest of `stream`.
    pub fn into_stream<S>(self, stream: S) -> Prefixed<S> {
        Prefixed::new(self.buffered, stream)
    }
}

/// Reads a TLS ClientHello from `stream` and returns its server name together with the bytes
/// read, without interpreting anything else.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use gw_router::l4::sni::{peek, PeekConfig, PeekError};
///
/// // Not TLS: a clean error, never a panic.
/// let mut client: &[u8] = b"GET / HTTP/1.1\r\n\r\n";
/// let err = peek(&mut client, PeekConfig::default()).await.unwrap_err();
/// assert!(matches!(err, PeekError::Parse(_)));
/// # }
/// ```
pub async fn peek<S>(stream: &mut S, config: PeekConfig) -> Result<Peeked, PeekError>
where
    S: AsyncRead + Unpin + ?Sized,
{
    match tokio::time::timeout(config.timeout, read_hello(stream, config.max_bytes)).await {
        Ok(r) => r,
        Err(_) => Err(PeekError::Timeout(config.timeout)),
    }
}

async fn read_hello<S>(stream: &mut S, max: usize) -> Result<Peeked, PeekError>
where
    S: AsyncRead + Unpin + ?Sized,
{
    let mut buf = BytesMut::with_capacity(max.min(4096));
    // Parse again only once the parser's last "need" is available: linear, not quadratic,
    // in the number of reads.
    let mut need = 1;
    loop {
        if buf.len() >= need {
            match parse(&buf).map_err(PeekError::Parse)? {
                Progress::Done(hello) => {
                    return Ok(Peeked {
                        server_name: hello.server_name,
                        buffered: buf.freeze(),
                    });
                }
                Progress::Need(n) => need = n,
            }
        }
        if need > max || buf.len() >= max {
            return Err(PeekError::TooLarge(max));
        }
        buf.reserve(need.saturating_sub(buf.len()).clamp(1, 4096));
        let room = max - buf.len();
        let n = (&mut *stream)
            .take(room as u64)
            .read_buf(&mut buf)
            .await
            .map_err(PeekError::Io)?;
        if n == 0 {
            return Err(PeekError::Eof);
        }
    }
}

/// A stream whose reads first return `prefix`, then the inner stream's bytes; writes go to the
/// inner stream. Made by [`Peeked::into_stream`].
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    /// Reads `prefix` before `inner`.
    pub fn new(prefix: Bytes, inner: S) -> Self {
        Prefixed { prefix, inner }
    }

    /// The inner stream (bytes of the prefix not read yet are in [`prefix`](Self::prefix)).
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The part of the prefix not read yet.
    pub fn prefix(&self) -> &Bytes {
        &self.prefix
    }

    /// The unread prefix and the inner stream.
    pub fn into_parts(self) -> (Bytes, S) {
        (self.prefix, self.inner)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
