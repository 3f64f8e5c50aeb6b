//! A JWKS fetched over HTTPS, cached and refreshed in the background.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_LENGTH, HOST, USER_AGENT};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::sync::{Notify, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::{JwkSet, JwksSource, JwtError, Loading};

/// The future a [`FetchJwks`] returns: the JWKS document's bytes.
pub type FetchFuture = Pin<Box<dyn Future<Output = Result<Bytes, FetchError>> + Send>>;

/// How a [`RemoteJwks`] gets the document. [`HttpsFetcher`] GETs the URL over HTTPS; an
/// embedder with its own HTTP client (a proxy, client certificates) provides another.
pub trait FetchJwks: Send + Sync + fmt::Debug + 'static {
    /// Fetches the JWKS document once. [`RemoteJwks`] bounds the call with its
    /// [`fetch_timeout`](RemoteJwksConfig::fetch_timeout).
    fn fetch(&self) -> FetchFuture;
}

/// Why a fetch of a JWKS failed. The last good keys stay in use.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The TCP connection could not be made (DNS, refused, unreachable).
    #[error("cannot connect to {authority}: {source}")]
    Connect {
        /// `host:port`.
        authority: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed (often: the server's certificate is not signed by a trusted
    /// CA; give the CA in `caCertificateRefs`).
    #[error("TLS handshake with {authority} failed: {source}")]
    Tls {
        /// `host:port`.
        authority: String,
        /// The TLS error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("HTTP exchange failed: {0}")]
    Http(#[source] hyper::Error),
    /// The server answered something other than `200 OK` (redirects are not followed: point
    /// the URL at the final location).
    #[error("the server answered {0}, not 200 OK")]
    Status(StatusCode),
    /// The document exceeds [`RemoteJwksConfig::max_size`].
    #[error("the JWKS exceeds {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Reading the body failed.
    #[error("reading the JWKS failed: {0}")]
    Body(String),
    /// The fetch took longer than [`RemoteJwksConfig::fetch_timeout`].
    #[error("no JWKS within {0:?}")]
    Timeout(Duration),
    /// The document is not a usable JWKS.
    #[error(transparent)]
    Jwks(#[from] JwtError),
}

/// Settings of a [`RemoteJwks`]: where, how to trust the server, and the timing.
#[derive(Clone)]
#[non_exhaustive]
pub struct RemoteJwksConfig {
    /// The `https://` URL.
    pub uri: Uri,
    /// TLS settings towards the server: the platform's roots ([`new`](Self::new)), or the
    /// CAs given to [`with_ca_pem`](Self::with_ca_pem).
    pub tls: Arc<ClientConfig>,
    /// How long a fetched set is used before it is fetched again (default 5 min).
    pub cache_duration: Duration,
    /// The longest one fetch may take, connection included (default 5 s).
    pub fetch_timeout: Duration,
    /// The largest document accepted (default 1 MiB).
    pub max_size: usize,
    /// The shortest time between a fetch and an early one because a token names an unknown
    /// `kid` (default 10 s): rotated keys are picked up at once, and tokens with made-up
    /// `kid`s cannot make the gateway hammer the issuer.
    pub unknown_kid_interval: Duration,
    /// The first retry after a failed fetch (default 1 s), doubled after each further failure
    /// up to [`max_retry_backoff`](Self::max_retry_backoff).
    pub retry_backoff: Duration,
    /// The longest wait between retries (default 60 s; never more than the cache duration).
    pub max_retry_backoff: Duration,
    /// How long a request with a token waits for the very first fetch (default 2 s). After
    /// that, and once the first fetch has failed, tokens are refused at once (401) until keys
    /// arrive.
    pub first_fetch_wait: Duration,
}

impl fmt::Debug for RemoteJwksConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteJwksConfig")
            .field("uri", &self.uri)
            .field("cache_duration", &self.cache_duration)
            .field("fetch_timeout", &self.fetch_timeout)
            .field("max_size", &self.max_size)
            .field("unknown_kid_interval", &self.unknown_kid_interval)
            .field("retry_backoff", &self.retry_backoff)
            .field("max_retry_backoff", &self.max_retry_backoff)
            .field("first_fetch_wait", &self.first_fetch_wait)
            .finish_non_exhaustive()
    }
}

/// The platform's trusted CAs, read once.
fn platform_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(error = %e, "could not read part of the platform's CA certificates");
        }
        found.certs
    })
}

fn tls_config(roots: RootCertStore) -> Result<Arc<ClientConfig>, JwtError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| JwtError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

impl RemoteJwksConfig {
    /// Fetches `uri` (which must be `https://`), trusting the platform's CAs (the OS store, or
    /// `SSL_CERT_FILE`), with the default timing.
    pub fn new(uri: &str) -> Result<Self, JwtError> {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(platform_roots().iter().cloned());
        Self::with_roots(uri, roots)
    }

    /// Fetches `uri` (which must be `https://`), trusting only the CA certificates in the PEM
    /// bundles `pems` (a private CA), with the default timing.
    pub fn with_ca_pem<'a>(
        uri: &str,
        pems: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, JwtError> {
        let mut roots = RootCertStore::empty();
        for pem in pems {
            let certs = CertificateDer::pem_slice_iter(pem.as_bytes()).filter_map(Result::ok);
            roots.add_parsable_certificates(certs);
        }
        Self::with_roots(uri, roots)
    }

    fn with_roots(uri: &str, roots: RootCertStore) -> Result<Self, JwtError> {
        let bad = |reason: &str| JwtError::BadUri {
            uri: uri.to_owned(),
            reason: reason.to_owned(),
        };
        let parsed: Uri = uri
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        if parsed.scheme() != Some(&http::uri::Scheme::HTTPS) {
            return Err(bad("the scheme must be https"));
        }
        if parsed.host().is_none_or(str::is_empty) {
            return Err(bad("there is no host"));
        }
        if parsed.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(bad("user information is not allowed"));
        }
        if roots.is_empty() {
            return Err(JwtError::NoTrustedCa);
        }
        Ok(RemoteJwksConfig {
            uri: parsed,
            tls: tls_config(roots)?,
            cache_duration: Duration::from_secs(300),
            fetch_timeout: Duration::from_secs(5),
            max_size: 1 << 20,
            unknown_kid_interval: Duration::from_secs(10),
            retry_backoff: Duration::from_secs(1),
            max_retry_backoff: Duration::from_secs(60),
            first_fetch_wait: Duration::from_secs(2),
        })
    }

    /// Sets [`cache_duration`](Self::cache_duration).
    pub fn cache_duration(mut self, d: Duration) -> Self {
        self.cache_duration = d;
        self
    }

    /// Sets [`fetch_timeout`](Self::fetch_timeout).
    pub fn fetch_timeout(mut self, d: Duration) -> Self {
        self.fetch_timeout = d;
        self
    }

    /// Sets [`max_size`](Self::max_size).
    pub fn max_size(mut self, bytes: usize) -> Self {
        self.max_size = bytes;
        self
    }

    /// Sets [`unknown_kid_interval`](Self::unknown_kid_interval).
    pub fn unknown_kid_interval(mut self, d: Duration) -> Self {
        self.unknown_kid_interval = d;
        self
    }

    /// Sets [`retry_backoff`](Self::retry_backoff) and
    /// [`max_retry_backoff`](Self::max_retry_backoff).
    pub fn retry_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.retry_backoff = first;
        self.max_retry_backoff = max;
        self
    }

    /// Sets [`first_fetch_wait`](Self::first_fetch_wait).
    pub fn first_fetch_wait(mut self, d: Duration) -> Self {
        self.first_fetch_wait = d;
        self
    }

    /// The wait before retry number `failures` (1 for the first failure).
    fn backoff(&self, failures: u32) -> Duration {
        let max = self.max_retry_backoff.min(self.cache_duration);
        self.retry_backoff
            .saturating_mul(1 << failures.saturating_sub(1).min(16))
            .min(max)
    }
}

/// GETs a [`RemoteJwksConfig::uri`] over HTTPS (HTTP/1.1, one connection per fetch: fetches
/// are minutes apart), reading at most [`RemoteJwksConfig::max_size`] bytes.
#[derive(Debug, Clone)]
pub struct HttpsFetcher {
    uri: Uri,
    tls: Arc<ClientConfig>,
    max_size: usize,
}

impl HttpsFetcher {
    /// The fetcher of `config`.
    pub fn new(config: &RemoteJwksConfig) -> Self {
        HttpsFetcher {
            uri: config.uri.clone(),
            tls: config.tls.clone(),
            max_size: config.max_size,
        }
    }

    async fn get(self) -> Result<Bytes, FetchError> {
        // `RemoteJwksConfig::new` checked that there is a host.
        let host = self.uri.host().unwrap_or_default();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let port = self.uri.port_u16().unwrap_or(443);
        let authority = format!("{host}:{port}");
        let tcp = tokio::net::TcpStream::connect((bare, port))
            .await
            .map_err(|source| FetchError::Connect {
                authority: authority.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(bare.to_owned()).map_err(|e| FetchError::Tls {
            authority: authority.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        })?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|source| FetchError::Tls {
                authority: authority.clone(),
                source,
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(FetchError::Http)?;
        // The connection is driven beside the request and dropped with it.
        let exchange = async {
            let path = self
                .uri
                .path_and_query()
                .map_or("/", http::uri::PathAndQuery::as_str);
            let host_header = self
                .uri
                .authority()
                .map_or(host, http::uri::Authority::as_str);
            let req = Request::get(path)
                .header(HOST, host_header)
                .header(ACCEPT, "application/jwk-set+json, application/json")
                .header(USER_AGENT, concat!("gw/", env!("CARGO_PKG_VERSION")))
                .body(Empty::<Bytes>::new())
                .map_err(|e| FetchError::Body(e.to_string()))?;
            let resp = sender.send_request(req).await.map_err(FetchError::Http)?;
            if resp.status() != StatusCode::OK {
                return Err(FetchError::Status(resp.status()));
            }
            let declared = resp
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let limit = self.max_size;
            if declared.is_some_and(|n| n > limit as u64) {
                return Err(FetchError::TooLarge { limit });
            }
            match Limited::new(resp.into_body(), limit).collect().await {
                Ok(body) => Ok(body.to_bytes()),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    Err(FetchError::TooLarge { limit })
                }
                Err(e) => Err(FetchError::Body(e.to_string())),
            }
        };
        tokio::select! {
            r = exchange => r,
            r = conn => match r {
                Err(e) => Err(FetchError::Http(e)),
                Ok(()) => Err(FetchError::Body("the server closed the connection".to_owned())),
            },
        }
    }
}

impl FetchJwks for HttpsFetcher {
    fn fetch(&self) -> FetchFuture {
        Box::pin(self.clone().get())
    }
}

/// A JWKS fetched from a URL: a [`JwksSource`] that serves the last good set and never makes
/// a request wait on the network, except briefly for the very first fetch.
///
/// - The first fetch starts when the source is created inside a Tokio runtime (otherwise at
///   first use). A request with a token that arrives before it completes waits for it at most
///   [`first_fetch_wait`](RemoteJwksConfig::first_fetch_wait); if there are still no keys,
///   the token is refused (401).
/// - A fetched set is used for [`cache_duration`](RemoteJwksConfig::cache_duration), then
///   fetched again in the background; requests keep using the current set meanwhile.
/// - A token whose `kid` the set lacks (the issuer rotated its keys) triggers one early
///   fetch, at most once per [`unknown_kid_interval`](RemoteJwksConfig::unknown_kid_interval).
/// - A failed fetch (connection, TLS, status other than 200, timeout, size limit, a document
///   that is not a usable JWKS) is logged, the last good set stays in use, and the fetch is
///   retried with exponential backoff ([`retry_backoff`](RemoteJwksConfig::retry_backoff)).
///
/// Dropping the source (every clone of the `Arc` holding it) stops its background task.
///
/// # Example
///
/// A fetcher of its own (here: a fixed document) stands in for [`HttpsFetcher`], which
/// [`RemoteJwks::new`] uses:
///
/// ```
/// use std::sync::Arc;
///
/// use gw_policy::jwt::{FetchFuture, FetchJwks, JwksSource, RemoteJwks, RemoteJwksConfig};
///
/// #[derive(Debug)]
/// struct Fixed;
///
/// impl FetchJwks for Fixed {
///     fn fetch(&self) -> FetchFuture {
///         Box::pin(async {
///             Ok(bytes::Bytes::from_static(br#"{"keys": [{"kty": "OKP", "crv": "Ed25519",
///                 "kid": "k1", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#))
///         })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let ca = rcgen::CertificateParams::new(Vec::<String>::new())?
/// #     .self_signed(&rcgen::KeyPair::generate()?)?
/// #     .pem();
/// // `RemoteJwksConfig::new(uri)` trusts the platform's CAs; here, a private CA.
/// let config = RemoteJwksConfig::with_ca_pem(
///     "https://issuer.example.com/.well-known/jwks.json",
///     [ca.as_str()],
/// )?;
/// let jwks = Arc::new(RemoteJwks::with_fetcher(config, Fixed));
/// // Before the first fetch completes there are no keys; `loading` lets a request wait.
/// if let Some(loaded) = jwks.loading() {
///     loaded.await;
/// }
/// assert_eq!(jwks.keys().len(), 1);
/// # Ok(())
/// # }
/// ```
pub struct RemoteJwks {
    shared: Arc<Shared>,
    task: OnceLock<AbortHandle>,
}

struct Shared {
    config: RemoteJwksConfig,
    fetcher: Box<dyn FetchJwks>,
    keys: ArcSwap<JwkSet>,
    /// Set once the first fetch has completed, successfully or not.
    attempted: watch::Sender<bool>,
    /// A token named an unknown `kid` since the last fetch.
    kid_wanted: AtomicBool,
    kick: Notify,
}

impl fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("uri", &self.shared.config.uri)
            .field("keys", &self.shared.keys.load().len())
            .finish_non_exhaustive()
    }
}

impl RemoteJwks {
    /// Fetches `config.uri` over HTTPS ([`HttpsFetcher`]).
    pub fn new(config: RemoteJwksConfig) -> Self {
        let fetcher = HttpsFetcher::new(&config);
        Self::with_fetcher(config, fetcher)
    }

    /// Gets the document from `fetcher`, with the timing of `config`.
    pub fn with_fetcher(config: RemoteJwksConfig, fetcher: impl FetchJwks) -> Self {
        let source = RemoteJwks {
            shared: Arc::new(Shared {
                config,
                fetcher: Box::new(fetcher),
                keys: ArcSwap::from_pointee(JwkSet::default()),
                attempted: watch::Sender::new(false),
                kid_wanted: AtomicBool::new(false),
                kick: Notify::new(),
            }),
            task: OnceLock::new(),
        };
        source.start();
        source
    }

    /// The settings.
    pub fn config(&self) -> &RemoteJwksConfig {
        &self.shared.config
    }

    /// Starts the background task if it is not running and a runtime is at hand.
    fn start(&self) {
        if self.task.get().is_some() {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.task.get_or_init(|| {
            let shared = self.shared.clone();
            handle.spawn(shared.run()).abort_handle()
        });
    }
}

impl Drop for RemoteJwks {
    fn drop(&mut self) {
        if let Some(task) = self.task.get() {
            task.abort();
        }
    }
}

impl JwksSource for RemoteJwks {
    fn keys(&self) -> Arc<JwkSet> {
        self.start();
        self.shared.keys.load_full()
    }

    fn unknown_kid(&self, _kid: &str) {
        // Without keys yet, the first fetch (or its retry) is already on its way.
        if self.shared.keys.load().is_empty() {
            return;
        }
        self.shared.kid_wanted.store(true, Ordering::Relaxed);
        self.shared.kick.notify_one();
    }

    fn loading(&self) -> Option<Loading> {
        self.start();
        if *self.shared.attempted.borrow() {
            return None;
        }
        let mut done = self.shared.attempted.subscribe();
        let wait = self.shared.config.first_fetch_wait;
        Some(Box::pin(async move {
            let _ = tokio::time::timeout(wait, done.wait_for(|d| *d)).await;
        }))
    }
}

impl Shared {
    async fn fetch(&self) -> Result<JwkSet, FetchError> {
        let timeout = self.config.fetch_timeout;
        let bytes = tokio::time::timeout(timeout, self.fetcher.fetch())
            .await
            .map_err(|_| FetchError::Timeout(timeout))??;
        Ok(JwkSet::from_json(&bytes)?)
    }

    async fn run(self: Arc<Self>) {
        let uri = self.config.uri.to_string();
        let mut failures = 0u32;
        loop {
            let started = Instant::now();
            self.kid_wanted.store(false, Ordering::Relaxed);
            let delay = match self.fetch().await {
                Ok(set) => {
                    if failures > 0 || !*self.attempted.borrow() {
                        tracing::info!(%uri, keys = set.len(), "JWKS fetched");
                    } else {
                        tracing::debug!(%uri, keys = set.len(), "JWKS refreshed");
                    }
                    self.keys.store(Arc::new(set));
                    failures = 0;
                    self.config.cache_duration
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let retry = self.config.backoff(failures);
                    tracing::warn!(%uri, %error, ?retry, keys = self.keys.load().len(),
                        "JWKS fetch failed; the last good keys stay in use");
                    retry
                }
            };
            self.attempted.send_replace(true);
            // The cache and the backoff count from the end of the fetch; the unknown-kid rate
            // limit from its start.
            let due = Instant::now() + delay;
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(due) => break,
                    () = self.kick.notified() => {
                        if !self.kid_wanted.load(Ordering::Relaxed) {
                            continue;
                        }
                        let earliest = started + self.config.unknown_kid_interval;
                        if earliest < due {
                            tokio::time::sleep_until(earliest).await;
                            break;
                        }
                    }
                }
            }
        }
    }
}
