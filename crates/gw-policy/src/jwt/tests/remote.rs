//! [`RemoteJwks`]: the fetch schedule on paused time with a scripted fetcher, and
//! [`HttpsFetcher`] against a loopback HTTPS server.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::time::Instant;

use super::*;

/// What the scripted fetcher answers to one fetch.
#[derive(Debug, Clone)]
enum Reply {
    Keys(String),
    Fail,
    Hang,
}

/// A fetcher answering from a script (the last reply repeats), recording when it was called.
#[derive(Debug, Clone, Default)]
struct Script {
    replies: Arc<Mutex<VecDeque<Reply>>>,
    times: Arc<Mutex<Vec<Duration>>>,
    start: Option<Instant>,
}

impl Script {
    fn new(replies: impl IntoIterator<Item = Reply>) -> Self {
        Script {
            replies: Arc::new(Mutex::new(replies.into_iter().collect())),
            times: Arc::default(),
            start: Some(Instant::now()),
        }
    }

    /// When each fetch started, from the script's creation.
    fn times(&self) -> Vec<Duration> {
        self.times.lock().unwrap().clone()
    }

    fn fetches(&self) -> usize {
        self.times.lock().unwrap().len()
    }
}

impl FetchJwks for Script {
    fn fetch(&self) -> FetchFuture {
        let start = self.start.unwrap_or_else(Instant::now);
        self.times.lock().unwrap().push(start.elapsed());
        let reply = {
            let mut r = self.replies.lock().unwrap();
            if r.len() > 1 {
                r.pop_front()
            } else {
                r.front().cloned()
            }
        };
        Box::pin(async move {
            match reply {
                Some(Reply::Keys(doc)) => Ok(Bytes::from(doc)),
                Some(Reply::Fail) | None => Err(FetchError::Status(StatusCode::BAD_GATEWAY)),
                Some(Reply::Hang) => std::future::pending().await,
            }
        })
    }
}

fn set(keys: &[(&Signer, &str)]) -> String {
    json!({"keys": keys.iter().map(|(s, kid)| s.jwk(kid)).collect::<Vec<_>>()}).to_string()
}

fn config() -> RemoteJwksConfig {
    // The fetcher is scripted: a CA of our own keeps the tests independent of the machine's
    // trust store.
    RemoteJwksConfig::with_ca_pem(
        "https://issuer.example.com/jwks.json",
        [pki().ca_pem.as_str()],
    )
    .unwrap()
}

fn token_request(token: &str) -> Request<String> {
    Request::get("/")
        .header("authorization", format!("Bearer {token}"))
        .body(String::new())
        .unwrap()
}

/// A JWT layer over the counting backend, with keys from `source`.
fn service(
    source: Arc<dyn JwksSource>,
) -> impl tower::Service<
    Request<String>,
    Response = Response<String>,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    JwtLayer::new(compiled(source)).layer(backend().0)
}

async fn status(
    svc: &(
         impl tower::Service<
        Request<String>,
        Response = Response<String>,
        Error = std::convert::Infallible,
    > + Clone
     ),
    token: &str,
) -> StatusCode {
    send(svc, token_request(token)).await.status()
}

/// Lets the background task run (paused time advances only when everything is idle).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

// The first fetch is awaited by the first request; then the cached set serves every request
// with one fetch, until cacheDuration has passed and the set is fetched again.
#[tokio::test(start_paused = true)]
async fn one_fetch_serves_many_requests_until_the_cache_duration() {
    let (a, b) = (Signer::ed(), Signer::ed());
    let script = Script::new([
        Reply::Keys(set(&[(&a, "a")])),
        Reply::Keys(set(&[(&b, "b")])),
    ]);
    let source = Arc::new(RemoteJwks::with_fetcher(config(), script.clone()));
    let svc = service(source.clone());
    let token_a = a.sign("a", good_claims());
    for _ in 0..50 {
        assert_eq!(status(&svc, &token_a).await, StatusCode::OK);
    }
    assert_eq!(script.fetches(), 1);

    tokio::time::sleep(Duration::from_secs(299)).await;
    assert_eq!(status(&svc, &token_a).await, StatusCode::OK);
    assert_eq!(script.fetches(), 1, "the set is still fresh");

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(script.times(), [Duration::ZERO, Duration::from_secs(300)]);
    // The refreshed set replaced the old one.
    assert_eq!(status(&svc, &token_a).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        status(&svc, &b.sign("b", good_claims())).await,
        StatusCode::OK
    );
}

// A token whose kid the set lacks makes one early fetch (the issuer rotated its keys), at most
// once per unknown_kid_interval (10 s) however many such tokens arrive.
#[tokio::test(start_paused = true)]
async fn an_unknown_kid_refetches_at_most_once_per_interval() {
    let (a, b, c) = (Signer::ed(), Signer::ed(), Signer::ed());
    let script = Script::new([
        Reply::Keys(set(&[(&a, "a")])),
        Reply::Keys(set(&[(&a, "a"), (&b, "b")])),
        Reply::Keys(set(&[(&a, "a"), (&b, "b"), (&c, "c")])),
    ]);
    let source = Arc::new(RemoteJwks::with_fetcher(config(), script.clone()));
    let svc = service(source.clone());
    assert_eq!(
        status(&svc, &a.sign("a", good_claims())).await,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_secs(15)).await;

    let token_b = b.sign("b", good_claims());
    assert_eq!(status(&svc, &token_b).await, StatusCode::UNAUTHORIZED);
    settle().await;
    assert_eq!(script.fetches(), 2, "the unknown kid fetched at once");
    assert_eq!(status(&svc, &token_b).await, StatusCode::OK);

    // Another unknown kid right after: the next fetch waits for the interval.
    let token_c = c.sign("c", good_claims());
    for _ in 0..20 {
        assert_eq!(status(&svc, &token_c).await, StatusCode::UNAUTHORIZED);
    }
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(script.fetches(), 2, "rate-limited");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        script.times(),
        [
            Duration::ZERO,
            Duration::from_secs(15),
            Duration::from_secs(25)
        ]
    );
    assert_eq!(status(&svc, &token_c).await, StatusCode::OK);
    // Made-up kids do not fetch again within the interval.
    for i in 0..20 {
        let forged = Signer::ed().sign(&format!("x{i}"), good_claims());
        assert_eq!(status(&svc, &forged).await, StatusCode::UNAUTHORIZED);
    }
    settle().await;
    assert_eq!(script.fetches(), 3);
}

// A failed fetch (an error, or a document that is not a JWKS) keeps the last good keys and is
// retried with exponential backoff (1 s, 2 s, 4 s, ...); the next success resets it.
#[tokio::test(start_paused = true)]
async fn a_failed_fetch_keeps_the_old_keys_and_backs_off() {
    let a = Signer::ed();
    let script = Script::new([
        Reply::Keys(set(&[(&a, "a")])),
        Reply::Fail,
        Reply::Fail,
        Reply::Keys("not json".to_owned()),
        Reply::Keys(r#"{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}"#.to_owned()),
        Reply::Keys(set(&[(&a, "a")])),
    ]);
    let source = Arc::new(RemoteJwks::with_fetcher(
        config().cache_duration(Duration::from_secs(60)),
        script.clone(),
    ));
    let svc = service(source.clone());
    let token = a.sign("a", good_claims());
    assert_eq!(status(&svc, &token).await, StatusCode::OK);
    for _ in 0..80 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(status(&svc, &token).await, StatusCode::OK);
    }
    let secs = |s: &[u64]| {
        s.iter()
            .map(|s| Duration::from_secs(*s))
            .collect::<Vec<_>>()
    };
    // 0 ok; 60 fail; +1 fail; +2 not JSON; +4 bad key; +8 ok; then every 60 s again.
    assert_eq!(script.times()[..6], secs(&[0, 60, 61, 63, 67, 75]));
    assert_eq!(
        script.fetches(),
        6,
        "after the success, the next fetch is at 135 s"
    );
}

// Before the first fetch completes, a request with a token waits for it, at most
// first_fetch_wait; a fetch that hangs is cut at fetch_timeout, and after a failed first
// fetch tokens are refused at once (no hang), until a retry brings keys.
#[tokio::test(start_paused = true)]
async fn before_the_first_keys_tokens_are_refused_after_a_bounded_wait() {
    let a = Signer::ed();
    let script = Script::new([Reply::Hang, Reply::Keys(set(&[(&a, "a")]))]);
    let source = Arc::new(RemoteJwks::with_fetcher(
        config()
            .first_fetch_wait(Duration::from_secs(2))
            .fetch_timeout(Duration::from_secs(5)),
        script.clone(),
    ));
    let svc = service(source.clone());
    let token = a.sign("a", good_claims());

    let t0 = Instant::now();
    let resp = send(&svc, token_request(&token)).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );
    assert_eq!(
        t0.elapsed(),
        Duration::from_secs(2),
        "waited first_fetch_wait"
    );

    // No token: nothing to wait for.
    let t1 = Instant::now();
    let resp = send(&svc, Request::new(String::new())).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(t1.elapsed(), Duration::ZERO);

    // At 3 s the fetch still hangs; it times out at 5 s, which ends this request's wait.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t3 = Instant::now();
    assert_eq!(status(&svc, &token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(t3.elapsed(), Duration::from_secs(2));

    // The first fetch failed: refused at once.
    let t5 = Instant::now();
    assert_eq!(status(&svc, &token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(t5.elapsed(), Duration::ZERO);

    // The retry (1 s after the timeout) brings the keys.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(script.times(), [Duration::ZERO, Duration::from_secs(6)]);
    assert_eq!(status(&svc, &token).await, StatusCode::OK);
}

// The JWKS server is down at start: the first fetch fails at once, and so do the requests
// (no waiting for a fetch that already failed); the retry recovers.
#[tokio::test(start_paused = true)]
async fn a_server_down_at_start_means_401_not_a_hang() {
    let a = Signer::ed();
    let script = Script::new([Reply::Fail, Reply::Keys(set(&[(&a, "a")]))]);
    let source = Arc::new(RemoteJwks::with_fetcher(config(), script.clone()));
    let svc = service(source.clone());
    let token = a.sign("a", good_claims());
    let t0 = Instant::now();
    assert_eq!(status(&svc, &token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(t0.elapsed(), Duration::ZERO);
    tokio::time::sleep(Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(status(&svc, &token).await, StatusCode::OK);
    assert_eq!(script.times(), [Duration::ZERO, Duration::from_secs(1)]);
}

// Dropping the source stops its background fetches.
#[tokio::test(start_paused = true)]
async fn dropping_the_source_stops_fetching() {
    let a = Signer::ed();
    let script = Script::new([Reply::Keys(set(&[(&a, "a")]))]);
    let source = RemoteJwks::with_fetcher(config(), script.clone());
    settle().await;
    assert_eq!(script.fetches(), 1);
    drop(source);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(script.fetches(), 1);
}

#[test]
fn the_uri_must_be_https() {
    let ca = pki().ca_pem;
    for uri in [
        "http://issuer.example.com/jwks",
        "https:///jwks",
        "/jwks",
        "https://u@h/",
    ] {
        assert!(
            matches!(
                RemoteJwksConfig::with_ca_pem(uri, [ca.as_str()]),
                Err(JwtError::BadUri { .. })
            ),
            "{uri}"
        );
    }
    assert!(matches!(
        RemoteJwksConfig::with_ca_pem("https://issuer.example.com/jwks", ["no certificate"]),
        Err(JwtError::NoTrustedCa)
    ));
}

/// A CA and a server certificate for 127.0.0.1 signed by it.
struct Pki {
    ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        chain: vec![cert.der().clone()],
        key: PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
    }
}

/// A loopback HTTPS server answering every request with `reply` (`None`: never answers).
struct Server {
    addr: SocketAddr,
    ca_pem: String,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn https_server(reply: Option<(StatusCode, Vec<u8>)>) -> Server {
    let pki = pki();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.chain, pki.key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, reply, counter) = (acceptor.clone(), reply.clone(), counter.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |_req| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let reply = reply.clone();
                    async move {
                        let Some((status, body)) = reply else {
                            return std::future::pending().await;
                        };
                        let mut resp = Response::new(http_body_util::Full::new(Bytes::from(body)));
                        *resp.status_mut() = status;
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    Server {
        addr,
        ca_pem: pki.ca_pem,
        hits,
        task,
    }
}

fn https_config(server: &Server) -> RemoteJwksConfig {
    let uri = format!("https://{}/keys.json", server.addr);
    RemoteJwksConfig::with_ca_pem(&uri, [server.ca_pem.as_str()]).unwrap()
}

// HttpsFetcher: a GET over TLS verified with the configured CA; the keys serve tokens, and
// many requests share one fetch.
#[tokio::test]
async fn https_fetch_serves_the_keys() {
    let a = Signer::ed();
    let server = https_server(Some((StatusCode::OK, set(&[(&a, "a")]).into_bytes()))).await;
    let source = Arc::new(RemoteJwks::new(https_config(&server)));
    let svc = service(source.clone());
    let token = a.sign("a", good_claims());
    for _ in 0..10 {
        assert_eq!(status(&svc, &token).await, StatusCode::OK);
    }
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
}

// HttpsFetcher's failures: an untrusted certificate, a status other than 200, a document
// over max_size, a server that is down; and a server that never answers is cut by the
// fetch timeout, so that a request waits at most first_fetch_wait.
#[tokio::test]
async fn https_fetch_failures() {
    let a = Signer::ed();
    let doc = set(&[(&a, "a")]).into_bytes();
    let fetch = |config: RemoteJwksConfig| async move { HttpsFetcher::new(&config).fetch().await };

    let server = https_server(Some((StatusCode::OK, doc.clone()))).await;
    let other_ca = pki().ca_pem;
    let uri = format!("https://{}/keys.json", server.addr);
    let untrusted = RemoteJwksConfig::with_ca_pem(&uri, [other_ca.as_str()]).unwrap();
    assert!(
        matches!(fetch(untrusted).await, Err(FetchError::Tls { .. })),
        "untrusted certificate"
    );
    assert_eq!(&fetch(https_config(&server)).await.unwrap()[..], &doc[..]);
    let err = fetch(https_config(&server).max_size(doc.len() - 1)).await;
    assert!(matches!(err, Err(FetchError::TooLarge { .. })), "{err:?}");

    let server = https_server(Some((StatusCode::NOT_FOUND, Vec::new()))).await;
    let err = fetch(https_config(&server)).await;
    assert!(
        matches!(err, Err(FetchError::Status(StatusCode::NOT_FOUND))),
        "{err:?}"
    );

    let down = {
        let server = https_server(None).await;
        let config = https_config(&server);
        drop(server);
        // Give the aborted listener a moment to close.
        tokio::time::sleep(Duration::from_millis(50)).await;
        config
    };
    let err = fetch(down).await;
    assert!(matches!(err, Err(FetchError::Connect { .. })), "{err:?}");

    let silent = https_server(None).await;
    let source = Arc::new(RemoteJwks::new(
        https_config(&silent)
            .fetch_timeout(Duration::from_millis(300))
            .first_fetch_wait(Duration::from_millis(100)),
    ));
    let svc = service(source);
    let t0 = std::time::Instant::now();
    assert_eq!(
        status(&svc, &a.sign("a", good_claims())).await,
        StatusCode::UNAUTHORIZED
    );
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
}
