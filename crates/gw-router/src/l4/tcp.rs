//! Proxying a TCP connection to a backend: connect with a timeout, copy both ways with
//! half-close, close after an idle period.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Timeouts of [`connect`] and [`proxy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcpProxyConfig {
    /// How long connecting to the backend may take. Default 10 s.
    pub connect_timeout: Duration,
    /// Close both sides when no byte moved in either direction for this long (`None`: never).
    /// Default 1 hour.
    pub idle_timeout: Option<Duration>,
}

impl Default for TcpProxyConfig {
    fn default() -> Self {
        TcpProxyConfig {
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(3600)),
        }
    }
}

impl TcpProxyConfig {
    /// Sets [`connect_timeout`](TcpProxyConfig::connect_timeout).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`idle_timeout`](TcpProxyConfig::idle_timeout).
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }
}

/// Why proxying a TCP connection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The backend refused or could not be reached.
    #[error("connecting to backend {backend} failed")]
    Connect {
        /// The backend.
        backend: SocketAddr,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The backend did not accept the connection in time.
    #[error("connecting to backend {backend} timed out after {timeout:?}")]
    ConnectTimeout {
        /// The backend.
        backend: SocketAddr,
        /// The configured timeout.
        timeout: Duration,
    },
    /// No byte moved in either direction for the idle timeout; both sides were closed.
    #[error("connection idle for {0:?}")]
    Idle(Duration),
    /// Reading or writing either side failed.
    #[error("copying between client and backend failed")]
    Io(#[source] io::Error),
}

impl ProxyError {
    /// Whether the backend could not be connected to (refused, unreachable or timed out).
    pub fn is_connect(&self) -> bool {
        matches!(
            self,
            ProxyError::Connect { .. } | ProxyError::ConnectTimeout { .. }
        )
    }
}

/// Connects to `backend` within [`TcpProxyConfig::connect_timeout`], with `TCP_NODELAY`.
pub async fn connect(
    backend: SocketAddr,
    config: &TcpProxyConfig,
) -> Result<TcpStream, ProxyError> {
    match tokio::time::timeout(config.connect_timeout, TcpStream::connect(backend)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(source)) => Err(ProxyError::Connect { backend, source }),
        Err(_) => Err(ProxyError::ConnectTimeout {
            backend,
            timeout: config.connect_timeout,
        }),
    }
}

/// Copies bytes both ways between `client` and `backend` until both directions are done,
/// and returns the bytes sent (client to backend, backend to client).
///
/// When one side closes its writing half, the other side's writing half is shut down and the
/// other direction goes on (half-close). With an idle timeout, both are closed when nothing
/// moved for that long.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// use gw_router::l4::tcp::{connect, proxy, TcpProxyConfig};
/// use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
///
/// // A backend that answers "pong" and closes.
/// let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let backend_addr = backend.local_addr()?;
/// tokio::spawn(async move {
///     let (mut s, _) = backend.accept().await?;
///     s.write_all(b"pong").await?;
///     s.shutdown().await
/// });
/// // The proxy side of a client connection.
/// let (mut client, mut proxied) = tokio::io::duplex(64);
/// let config = TcpProxyConfig::default();
/// tokio::spawn(async move {
///     let mut upstream = connect(backend_addr, &config).await?;
///     proxy(&mut proxied, &mut upstream, &config).await
/// });
/// client.shutdown().await?;
/// let mut reply = String::new();
/// client.read_to_string(&mut reply).await?;
/// assert_eq!(reply, "pong");
/// # Ok(()) }
/// ```
pub async fn proxy<C, B>(
    client: &mut C,
    backend: &mut B,
    config: &TcpProxyConfig,
) -> Result<(u64, u64), ProxyError>
where
    C: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let Some(idle) = config.idle_timeout else {
        return tokio::io::copy_bidirectional(client, backend)
            .await
            .map_err(ProxyError::Io);
    };
    let activity = Arc::new(Activity::new());
    let mut client = Tracked {
        inner: client,
        activity: activity.clone(),
    };
    let mut backend = Tracked {
        inner: backend,
        activity: activity.clone(),
    };
    let copy = tokio::io::copy_bidirectional(&mut client, &mut backend);
    tokio::pin!(copy);
    loop {
        let deadline = activity.last() + idle;
        tokio::select! {
            r = &mut copy => return r.map_err(ProxyError::Io),
            () = tokio::time::sleep_until(deadline) => {
                if activity.last() + idle <= Instant::now() {
                    return Err(ProxyError::Idle(idle));
                }
            }
        }
    }
}

/// When bytes last moved, as milliseconds since `start`.
#[derive(Debug)]
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A stream that records when bytes move through it.
struct Tracked<'a, S: ?Sized> {
    inner: &'a mut S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin + ?Sized> AsyncRead for Tracked<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut *self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin + ?Sized> AsyncWrite for Tracked<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut *self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_connections_are_closed_and_active_ones_are_not() {
        let (mut client, mut proxied_client) = tokio::io::duplex(64);
        let (mut proxied_backend, mut backend) = tokio::io::duplex(64);
        let config = TcpProxyConfig::default().idle_timeout(Some(Duration::from_secs(10)));
        let task =
            tokio::spawn(
                async move { proxy(&mut proxied_client, &mut proxied_backend, &config).await },
            );
        // Traffic every 6 s keeps it open past the 10 s idle timeout.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            client.write_all(b"x").await.unwrap_or_default();
            let mut b = [0u8; 1];
            assert_eq!(backend.read_exact(&mut b).await.ok(), Some(1));
        }
        assert!(!task.is_finished());
        tokio::time::sleep(Duration::from_secs(11)).await;
        let r = task.await;
        assert!(matches!(r, Ok(Err(ProxyError::Idle(_)))), "{r:?}");
    }

    #[tokio::test]
    async fn half_close_lets_the_other_direction_finish() {
        let (mut client, mut proxied_client) = tokio::io::duplex(64);
        let (mut proxied_backend, mut backend) = tokio::io::duplex(64);
        let config = TcpProxyConfig::default();
        let task =
            tokio::spawn(
                async move { proxy(&mut proxied_client, &mut proxied_backend, &config).await },
            );
        client.write_all(b"request").await.unwrap_or_default();
        client.shutdown().await.unwrap_or_default();
        let mut got = Vec::new();
        backend.read_to_end(&mut got).await.unwrap_or_default();
        assert_eq!(got, b"request");
        // The backend still answers after the client's half-close.
        backend.write_all(b"response").await.unwrap_or_default();
        backend.shutdown().await.unwrap_or_default();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap_or_default();
        assert_eq!(got, b"response");
        let r = task.await;
        assert!(matches!(r, Ok(Ok((7, 8)))), "{r:?}");
    }

    #[tokio::test]
    async fn refused_backend_is_a_connect_error() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await;
        let Ok(addr) = l.and_then(|l| l.local_addr()) else {
            return;
        };
        // The listener is dropped: nothing listens there any more.
        let e = connect(addr, &TcpProxyConfig::default()).await;
        assert!(e.is_err_and(|e| e.is_connect()));
    }
}
