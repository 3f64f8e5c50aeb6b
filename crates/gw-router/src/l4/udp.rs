//! Proxying UDP datagrams: one session per client address, each with its own upstream socket,
//! expired when idle.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Largest datagram relayed (larger ones are truncated by the socket).
const MAX_DATAGRAM: usize = 64 * 1024;

/// Limits of a [`UdpProxy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct UdpProxyConfig {
    /// A session without a datagram in either direction for this long is closed. Default 60 s.
    pub idle_timeout: Duration,
    /// Most concurrent sessions; datagrams from new clients beyond it are dropped. Default 4096.
    pub max_sessions: usize,
}

impl Default for UdpProxyConfig {
    fn default() -> Self {
        UdpProxyConfig {
            idle_timeout: Duration::from_secs(60),
            max_sessions: 4096,
        }
    }
}

impl UdpProxyConfig {
    /// Sets [`idle_timeout`](UdpProxyConfig::idle_timeout).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets [`max_sessions`](UdpProxyConfig::max_sessions).
    pub fn max_sessions(mut self, max: usize) -> Self {
        self.max_sessions = max;
        self
    }
}

/// Which way a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Direction {
    /// From the client to its backend.
    ToBackend,
    /// From the backend back to the client.
    ToClient,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionEnd {
    /// No datagram went either way for [`UdpProxyConfig::idle_timeout`].
    Idle,
    /// Receiving from the backend failed.
    Failed,
}

/// What a [`UdpProxy`] reports about one session, for metrics. The route function of
/// [`UdpProxy::run_observed`] gives one per new session; it is dropped when the session ends,
/// and when the proxy stops (then without [`closed`](Self::closed)). Every method does nothing
/// by default; `()` observes nothing.
///
/// The methods are called on the datagram path: keep them cheap (atomic additions on
/// counters resolved when the session was opened).
pub trait SessionObserver: Send + Sync + 'static {
    /// The session is open: its upstream socket is bound and connected to the backend.
    fn opened(&self) {}
    /// A datagram of `bytes` bytes was relayed.
    fn relayed(&self, direction: Direction, bytes: usize) {
        let _ = (direction, bytes);
    }
    /// A datagram could not be relayed: sending it failed or, for the first datagram of a
    /// client, its session could not be opened.
    fn dropped(&self, direction: Direction) {
        let _ = direction;
    }
    /// The session ended.
    fn closed(&self, end: SessionEnd) {
        let _ = end;
    }
}

impl SessionObserver for () {}

/// A session: the upstream socket of one client.
struct Session {
    upstream: Arc<UdpSocket>,
    /// When a datagram last went either way.
    last: Arc<Mutex<Instant>>,
    observer: Arc<dyn SessionObserver>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

type Sessions = Arc<Mutex<HashMap<SocketAddr, Session>>>;

/// Relays datagrams between the clients of a listening socket and their backends.
///
/// The first datagram of a client address opens a session: `route` chooses the backend (so
/// new sessions follow configuration changes while existing ones keep their backend), and an
/// upstream socket bound to an ephemeral port and connected to the backend carries the
/// client's datagrams; what the backend sends to it is relayed back to the client from the
/// listening socket. A session ends after [`UdpProxyConfig::idle_timeout`] without traffic.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// use std::sync::Arc;
/// use gw_router::l4::udp::{UdpProxy, UdpProxyConfig};
/// use tokio::net::UdpSocket;
///
/// // A backend that answers every datagram with "pong".
/// let backend = UdpSocket::bind("127.0.0.1:0").await?;
/// let backend_addr = backend.local_addr()?;
/// tokio::spawn(async move {
///     let mut buf = [0u8; 64];
///     while let Ok((_, from)) = backend.recv_from(&mut buf).await {
///         let _ = backend.send_to(b"pong", from).await;
///     }
/// });
/// let listen = UdpSocket::bind("127.0.0.1:0").await?;
/// let proxy_addr = listen.local_addr()?;
/// let proxy = UdpProxy::new(Arc::new(listen), UdpProxyConfig::default());
/// let task = tokio::spawn(proxy.run(move |_client| Some(backend_addr)));
///
/// let client = UdpSocket::bind("127.0.0.1:0").await?;
/// client.send_to(b"ping", proxy_addr).await?;
/// let mut buf = [0u8; 64];
/// let (n, from) = client.recv_from(&mut buf).await?;
/// assert_eq!((&buf[..n], from), (&b"pong"[..], proxy_addr));
/// task.abort(); // Stopping the proxy ends its sessions.
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct UdpProxy {
    socket: Arc<UdpSocket>,
    config: UdpProxyConfig,
    sessions: Sessions,
}

impl UdpProxy {
    /// A proxy for the clients of `socket`.
    pub fn new(socket: Arc<UdpSocket>, config: UdpProxyConfig) -> UdpProxy {
        UdpProxy {
            socket,
            config,
            sessions: Arc::default(),
        }
    }

    /// Serves until the returned future is dropped (which ends every session) or the socket
    /// fails. `route` gives the backend of a new client, or `None` to drop its datagram.
    pub async fn run<F>(self, route: F) -> io::Error
    where
        F: Fn(SocketAddr) -> Option<SocketAddr>,
    {
        self.run_observed(move |client| route(client).map(|b| (b, ())), |_| {})
            .await
    }

    /// [`run`](Self::run), observing every session: `route` gives the backend of a new
    /// client with the [`SessionObserver`] of its session (or `None` to drop its datagram),
    /// and `over_limit` is told of each datagram from a new client dropped because
    /// [`UdpProxyConfig::max_sessions`] sessions are open.
    pub async fn run_observed<F, O, L>(self, route: F, over_limit: L) -> io::Error
    where
        F: Fn(SocketAddr) -> Option<(SocketAddr, O)>,
        O: SessionObserver,
        L: Fn(SocketAddr),
    {
        let mut tasks = JoinSet::new();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            // Reap finished session tasks so the set does not grow.
            while tasks.try_join_next().is_some() {}
            let (n, client) = match self.socket.recv_from(&mut buf).await {
                Ok(r) => r,
                // ICMP errors for earlier sends surface here on some systems: not fatal.
                Err(e) if is_transient(&e) => continue,
                Err(e) => return e,
            };
            let datagram = &buf[..n];
            let existing = {
                let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
                sessions
                    .get(&client)
                    .map(|s| (s.upstream.clone(), s.last.clone(), s.observer.clone()))
            };
            let (upstream, last, observer) = match existing {
                Some(s) => s,
                None => match self.open(client, &route, &over_limit, &mut tasks).await {
                    Some(s) => s,
                    None => continue,
                },
            };
            *last.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
            match upstream.send(datagram).await {
                Ok(_) => observer.relayed(Direction::ToBackend, n),
                Err(e) => {
                    observer.dropped(Direction::ToBackend);
                    tracing::debug!(%client, error = %e, "udp datagram to backend failed");
                }
            }
        }
    }

    /// Opens a session for `client`; `None` when it has no backend or the limit is reached.
    async fn open<F, O, L>(
        &self,
        client: SocketAddr,
        route: &F,
        over_limit: &L,
        tasks: &mut JoinSet<()>,
    ) -> Option<(
        Arc<UdpSocket>,
        Arc<Mutex<Instant>>,
        Arc<dyn SessionObserver>,
    )>
    where
        F: Fn(SocketAddr) -> Option<(SocketAddr, O)>,
        O: SessionObserver,
        L: Fn(SocketAddr),
    {
        let len = self
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        if len >= self.config.max_sessions {
            tracing::debug!(%client, max = self.config.max_sessions, "udp session limit reached; datagram dropped");
            over_limit(client);
            return None;
        }
        let (backend, observer) = route(client)?;
        let observer: Arc<dyn SessionObserver> = Arc::new(observer);
        let upstream = match bind_connected(backend).await {
            Ok(s) => Arc::new(s),
            Err(e) => {
                observer.dropped(Direction::ToBackend);
                tracing::debug!(%client, %backend, error = %e, "cannot open udp session");
                return None;
            }
        };
        observer.opened();
        let last = Arc::new(Mutex::new(Instant::now()));
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                client,
                Session {
                    upstream: upstream.clone(),
                    last: last.clone(),
                    observer: observer.clone(),
                },
            );
        tracing::debug!(%client, %backend, "udp session opened");
        tasks.spawn(relay_back(
            self.socket.clone(),
            upstream.clone(),
            client,
            last.clone(),
            observer.clone(),
            self.config.idle_timeout,
            self.sessions.clone(),
        ));
        Some((upstream, last, observer))
    }

    /// How many sessions are open.
    pub fn sessions(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// A socket on an ephemeral port of the backend's address family, connected to it (so only
/// the backend's datagrams are received).
async fn bind_connected(backend: SocketAddr) -> io::Result<UdpSocket> {
    let any = match backend.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let socket = UdpSocket::bind(SocketAddr::new(any, 0)).await?;
    socket.connect(backend).await?;
    Ok(socket)
}

/// Relays the backend's datagrams to `client` until the session is idle, then removes it.
async fn relay_back(
    socket: Arc<UdpSocket>,
    upstream: Arc<UdpSocket>,
    client: SocketAddr,
    last: Arc<Mutex<Instant>>,
    observer: Arc<dyn SessionObserver>,
    idle: Duration,
    sessions: Sessions,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let end = loop {
        let deadline = *last.lock().unwrap_or_else(PoisonError::into_inner) + idle;
        match tokio::time::timeout_at(deadline, upstream.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                *last.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
                match socket.send_to(&buf[..n], client).await {
                    Ok(_) => observer.relayed(Direction::ToClient, n),
                    Err(e) => {
                        observer.dropped(Direction::ToClient);
                        tracing::debug!(%client, error = %e, "udp datagram to client failed");
                    }
                }
            }
            Ok(Err(e)) if is_transient(&e) => {}
            Ok(Err(e)) => {
                tracing::debug!(%client, error = %e, "udp session failed");
                break SessionEnd::Failed;
            }
            Err(_) => {
                // The client may have sent since the deadline was computed.
                let last = *last.lock().unwrap_or_else(PoisonError::into_inner);
                if last + idle <= Instant::now() {
                    break SessionEnd::Idle;
                }
            }
        }
    };
    tracing::debug!(%client, ?end, "udp session closed");
    sessions
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&client);
    observer.closed(end);
}

/// Errors a UDP socket reports for an earlier datagram (ICMP unreachable), not for itself.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    async fn echo_backend() -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let backend = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = backend.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = backend.recv_from(&mut buf).await {
                let mut reply = b"echo:".to_vec();
                reply.extend_from_slice(&buf[..n]);
                let _ = backend.send_to(&reply, from).await;
            }
        });
        (addr, task)
    }

    async fn roundtrip(client: &UdpSocket, to: SocketAddr, msg: &[u8]) -> Option<Vec<u8>> {
        client.send_to(msg, to).await.ok()?;
        let mut buf = [0u8; 1500];
        let (n, _) = tokio::time::timeout(Duration::from_secs(2), client.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some(buf[..n].to_vec())
    }

    /// A proxy with `config` listening on a free loopback port, and that address.
    async fn proxy_on_loopback(config: UdpProxyConfig) -> (UdpProxy, SocketAddr) {
        let listen = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = listen.local_addr().unwrap();
        (UdpProxy::new(listen, config), addr)
    }

    #[tokio::test]
    async fn sessions_per_client_expire_when_idle_and_are_bounded() {
        let (backend, backend_task) = echo_backend().await;
        let (proxy, addr) = proxy_on_loopback(
            UdpProxyConfig::default()
                .idle_timeout(Duration::from_millis(300))
                .max_sessions(2),
        )
        .await;
        let sessions = proxy.sessions.clone();
        let task = tokio::spawn(proxy.run(move |_| Some(backend)));
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        assert_eq!(
            roundtrip(&a, addr, b"1").await.as_deref(),
            Some(&b"echo:1"[..])
        );
        assert_eq!(
            roundtrip(&a, addr, b"2").await.as_deref(),
            Some(&b"echo:2"[..])
        );
        assert_eq!(
            roundtrip(&b, addr, b"3").await.as_deref(),
            Some(&b"echo:3"[..])
        );
        assert_eq!(sessions.lock().unwrap().len(), 2);
        // A third client is over the limit: dropped.
        c.send_to(b"4", addr).await.unwrap();
        let mut buf = [0u8; 64];
        assert!(
            tokio::time::timeout(Duration::from_millis(150), c.recv_from(&mut buf))
                .await
                .is_err()
        );
        // Idle sessions expire, then the third client gets one.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(sessions.lock().unwrap().len(), 0);
        assert_eq!(
            roundtrip(&c, addr, b"5").await.as_deref(),
            Some(&b"echo:5"[..])
        );
        task.abort();
        backend_task.abort();
    }

    /// Counts what a session observer is told.
    #[derive(Debug, Default)]
    struct Counts {
        opened: AtomicUsize,
        to_backend: AtomicUsize,
        to_client: AtomicUsize,
        idle: AtomicUsize,
        dropped: AtomicUsize,
        over_limit: AtomicUsize,
    }

    struct Observer(Arc<Counts>);

    impl SessionObserver for Observer {
        fn opened(&self) {
            self.0.opened.fetch_add(1, Ordering::SeqCst);
        }
        fn relayed(&self, direction: Direction, bytes: usize) {
            match direction {
                Direction::ToBackend => self.0.to_backend.fetch_add(bytes, Ordering::SeqCst),
                Direction::ToClient => self.0.to_client.fetch_add(bytes, Ordering::SeqCst),
            };
        }
        fn dropped(&self, _: Direction) {
            self.0.dropped.fetch_add(1, Ordering::SeqCst);
        }
        fn closed(&self, end: SessionEnd) {
            if end == SessionEnd::Idle {
                self.0.idle.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    #[tokio::test]
    async fn observers_see_sessions_datagrams_expiry_and_the_limit() {
        let (backend, backend_task) = echo_backend().await;
        let (proxy, addr) = proxy_on_loopback(
            UdpProxyConfig::default()
                .idle_timeout(Duration::from_millis(300))
                .max_sessions(1),
        )
        .await;
        let counts = Arc::new(Counts::default());
        let (c1, c2) = (counts.clone(), counts.clone());
        let task = tokio::spawn(proxy.run_observed(
            move |_| Some((backend, Observer(c1.clone()))),
            move |_| {
                c2.over_limit.fetch_add(1, Ordering::SeqCst);
            },
        ));
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        assert_eq!(
            roundtrip(&a, addr, b"123").await.as_deref(),
            Some(&b"echo:123"[..])
        );
        assert_eq!(
            roundtrip(&a, addr, b"45").await.as_deref(),
            Some(&b"echo:45"[..])
        );
        // Over the limit of one session.
        b.send_to(b"x", addr).await.unwrap();
        let mut buf = [0u8; 64];
        assert!(
            tokio::time::timeout(Duration::from_millis(150), b.recv_from(&mut buf))
                .await
                .is_err()
        );
        assert_eq!(counts.opened.load(Ordering::SeqCst), 1);
        assert_eq!(counts.to_backend.load(Ordering::SeqCst), 5);
        assert_eq!(counts.to_client.load(Ordering::SeqCst), 5 + 2 * 5);
        assert_eq!(counts.over_limit.load(Ordering::SeqCst), 1);
        assert_eq!(counts.idle.load(Ordering::SeqCst), 0);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(counts.idle.load(Ordering::SeqCst), 1);
        assert_eq!(counts.dropped.load(Ordering::SeqCst), 0);
        task.abort();
        backend_task.abort();
    }

    #[tokio::test]
    async fn clients_without_a_backend_are_dropped() {
        let (proxy, addr) = proxy_on_loopback(UdpProxyConfig::default()).await;
        let sessions = proxy.sessions.clone();
        let task = tokio::spawn(proxy.run(|_| None));
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        assert_eq!(roundtrip(&a, addr, b"1").await, None);
        assert_eq!(sessions.lock().unwrap().len(), 0);
        task.abort();
    }
}
