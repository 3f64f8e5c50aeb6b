//! SNI parsing on real ClientHellos (made by a rustls client in memory), peeking over streams
//! that deliver them in pieces, and listener/route/backend selection.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use gw_model::resources::{ObjectKey, Resources};
use gw_model::{CompileOptions, compile, load};
use proptest::prelude::*;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, ReadBuf};

use super::sni::{ParseError, PeekConfig, PeekError, parse_client_hello, peek};
use super::{L4Routes, SelectError, TlsAction};

struct Hello<'a> {
    sni: &'a str,
    tls12_only: bool,
    max_fragment: Option<usize>,
    alpn: Vec<Vec<u8>>,
}

impl Hello<'_> {
    fn new(sni: &str) -> Hello<'_> {
        Hello {
            sni,
            tls12_only: false,
            max_fragment: None,
            alpn: vec![b"h2".to_vec()],
        }
    }

    /// The bytes a rustls client sends first.
    fn bytes(&self) -> Vec<u8> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if self.tls12_only {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        config.max_fragment_size = self.max_fragment;
        config.alpn_protocols = self.alpn.clone();
        let name = ServerName::try_from(self.sni.to_owned()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).unwrap();
        }
        out
    }
}

fn sni_of(bytes: &[u8]) -> Result<Option<Option<String>>, ParseError> {
    parse_client_hello(bytes).map(|h| h.map(|h| h.server_name))
}

fn record_count(bytes: &[u8]) -> usize {
    let mut pos = 0;
    let mut n = 0;
    while pos + 5 <= bytes.len() {
        pos += 5 + usize::from(u16::from_be_bytes([bytes[pos + 3], bytes[pos + 4]]));
        n += 1;
    }
    n
}

#[test]
fn tls13_and_tls12_client_hellos_give_their_server_name() {
    let bytes = Hello::new("Foo.Example.com").bytes();
    let hello = parse_client_hello(&bytes).unwrap().unwrap();
    assert_eq!(hello.server_name.as_deref(), Some("foo.example.com"));
    assert_eq!(hello.len, bytes.len());
    let tls12 = Hello {
        tls12_only: true,
        ..Hello::new("a.example.com")
    }
    .bytes();
    assert_eq!(sni_of(&tls12), Ok(Some(Some("a.example.com".into()))));
}

#[test]
fn a_client_hello_without_server_name_parses_to_none() {
    // rustls sends no SNI to an IP address.
    let bytes = Hello::new("192.0.2.1").bytes();
    assert_eq!(sni_of(&bytes), Ok(Some(None)));
}

#[test]
fn every_prefix_of_a_client_hello_needs_more_bytes() {
    let bytes = Hello::new("example.com").bytes();
    for n in 0..bytes.len() {
        assert_eq!(sni_of(&bytes[..n]), Ok(None), "prefix of {n} bytes");
    }
    // Bytes after the ClientHello (early data, a pipelined record) are ignored.
    let mut more = bytes.clone();
    more.extend_from_slice(b"\x17\x03\x03\x00\x05hello");
    assert_eq!(sni_of(&more), Ok(Some(Some("example.com".into()))));
}

#[test]
fn a_client_hello_split_across_many_records_parses_like_a_whole_one() {
    let fragmented = Hello {
        max_fragment: Some(64),
        ..Hello::new("split.example.com")
    }
    .bytes();
    assert!(record_count(&fragmented) > 4, "rustls fragmented the hello");
    assert_eq!(
        sni_of(&fragmented),
        Ok(Some(Some("split.example.com".into())))
    );
    for n in 0..fragmented.len() {
        assert_eq!(sni_of(&fragmented[..n]), Ok(None));
    }
}

#[test]
fn non_tls_and_old_tls_are_errors() {
    assert_eq!(
        sni_of(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        Err(ParseError::NotHandshake(b'G'))
    );
    assert_eq!(
        sni_of(b"\x16\x02\x00\x00\x10"),
        Err(ParseError::RecordVersion(0x0200))
    );
    assert_eq!(
        sni_of(b"\x16\x03\x01\x00\x00"),
        Err(ParseError::RecordLength(0))
    );
    assert_eq!(
        sni_of(b"\x16\x03\x01\x50\x00"),
        Err(ParseError::RecordLength(0x5000))
    );
    // A handshake that is not a ClientHello (ServerHello) is rejected from its first byte.
    assert_eq!(
        sni_of(b"\x16\x03\x03\x00\x30\x02"),
        Err(ParseError::NotClientHello(2))
    );
    // legacy_version TLS 1.0: "TLS 1.2 and 1.3 only".
    let mut old = Hello::new("example.com").bytes();
    old[9] = 3;
    old[10] = 1;
    assert_eq!(sni_of(&old), Err(ParseError::Version(0x0301)));
    // A handshake length that runs past a consistent record stream: truncated body fields.
    let mut bad = Hello::new("example.com").bytes();
    bad[43] = 0xff; // session id length 255 > 32
    assert!(sni_of(&bad).is_err());
}

#[test]
fn an_invalid_host_name_is_an_error() {
    let mut bytes = Hello::new("example.com").bytes();
    let at = bytes.windows(11).position(|w| w == b"example.com").unwrap();
    bytes[at] = b'/';
    assert_eq!(sni_of(&bytes), Err(ParseError::ServerName));
}

/// Delivers `data` `chunk` bytes per read, then `Pending` forever (or EOF when `eof`).
struct Trickle {
    data: Vec<u8>,
    pos: usize,
    chunk: usize,
    eof: bool,
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos >= self.data.len() {
            return if self.eof {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            };
        }
        let end = (self.pos + self.chunk)
            .min(self.data.len())
            .min(self.pos + buf.remaining());
        buf.put_slice(&self.data[self.pos..end]);
        self.pos = end;
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn peek_one_byte_at_a_time_and_replay_everything_read() {
    let hello = Hello {
        max_fragment: Some(100),
        ..Hello::new("trickle.example.com")
    }
    .bytes();
    let mut data = hello.clone();
    data.extend_from_slice(b"after");
    let mut s = Trickle {
        data: data.clone(),
        pos: 0,
        chunk: 1,
        eof: true,
    };
    let peeked = peek(&mut s, PeekConfig::default()).await.unwrap();
    assert_eq!(peeked.server_name.as_deref(), Some("trickle.example.com"));
    assert_eq!(&peeked.buffered[..], &hello[..]);
    // The replayed stream yields every byte, peeked or not, in order.
    let mut replay = peeked.into_stream(s);
    let mut all = Vec::new();
    replay.read_to_end(&mut all).await.unwrap();
    assert_eq!(all, data);
}

#[tokio::test(start_paused = true)]
async fn a_peek_that_never_completes_times_out() {
    let hello = Hello::new("slow.example.com").bytes();
    let mut s = Trickle {
        data: hello[..hello.len() - 1].to_vec(),
        pos: 0,
        chunk: 7,
        eof: false,
    };
    let config = PeekConfig::default().timeout(Duration::from_secs(3));
    let err = peek(&mut s, config).await.unwrap_err();
    assert!(matches!(err, PeekError::Timeout(_)), "{err:?}");
}

#[tokio::test]
async fn peek_is_bounded_and_reports_eof_and_garbage() {
    // A ClientHello larger than the bound (many ALPN ids).
    let big = Hello {
        alpn: (0..100u8).map(|i| vec![b'a' + i % 26; 200]).collect(),
        ..Hello::new("big.example.com")
    }
    .bytes();
    assert!(big.len() > 16 * 1024);
    assert_eq!(sni_of(&big), Ok(Some(Some("big.example.com".into()))));
    let err = peek(&mut &big[..], PeekConfig::default())
        .await
        .unwrap_err();
    assert!(matches!(err, PeekError::TooLarge(_)), "{err:?}");
    let ok = peek(&mut &big[..], PeekConfig::default().max_bytes(64 * 1024)).await;
    assert_eq!(ok.unwrap().server_name.as_deref(), Some("big.example.com"));

    let hello = Hello::new("eof.example.com").bytes();
    let err = peek(&mut &hello[..20], PeekConfig::default())
        .await
        .unwrap_err();
    assert!(matches!(err, PeekError::Eof), "{err:?}");
    let err = peek(&mut &b"SSH-2.0-OpenSSH_9.6\r\n"[..], PeekConfig::default())
        .await
        .unwrap_err();
    assert!(matches!(err, PeekError::Parse(_)), "{err:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    // However the ClientHello is cut into reads, and however it is cut into records, the
    // server name is the same.
    #[test]
    fn any_split_of_a_client_hello_routes_the_same(
        fragment in prop::option::of(32usize..600),
        chunks in prop::collection::vec(1usize..300, 1..40),
    ) {
        let hello = Hello { max_fragment: fragment, ..Hello::new("prop.example.com") }.bytes();
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        // Reads of the sizes given, cycling.
        let peeked = rt.block_on(async {
            let (mut client, mut server) = tokio::io::duplex(64 * 1024);
            let data = hello.clone();
            let writer = tokio::spawn(async move {
                let mut pos = 0;
                for c in chunks.iter().cycle() {
                    if pos >= data.len() { break; }
                    let end = (pos + c).min(data.len());
                    client.write_all(&data[pos..end]).await.unwrap();
                    tokio::task::yield_now().await;
                    pos = end;
                }
                client
            });
            let peeked = peek(&mut server, PeekConfig::default()).await;
            drop(writer.await);
            peeked
        }).unwrap();
        prop_assert_eq!(peeked.server_name.as_deref(), Some("prop.example.com"));
        prop_assert_eq!(&peeked.buffered[..], &hello[..]);
    }

    // Arbitrary bytes, and real hellos with arbitrary bytes changed, never panic.
    #[test]
    fn the_parser_never_panics(
        data in prop::collection::vec(any::<u8>(), 0..600),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
    ) {
        let _ = parse_client_hello(&data);
        let mut hello = Hello::new("fuzz.example.com").bytes();
        for (i, b) in edits {
            let at = i.index(hello.len());
            hello[at] = b;
        }
        let _ = parse_client_hello(&hello);
        // Prefixed with TLS record headers too, so that deeper code is reached.
        let mut framed = vec![22, 3, 1, 2, 0, 1, 0, 1, 252, 3, 3];
        framed.extend_from_slice(&data);
        let _ = parse_client_hello(&framed);
    }
}

const CLASS: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gw}
spec: {controllerName: gw.dev/gateway}
";

fn routes(yaml: &str) -> L4Routes {
    let mut resources = Resources::new();
    let loaded = load::parse("test.yaml", &format!("{CLASS}---\n{yaml}"));
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    resources.extend(loaded.objects);
    let compiled = compile(&resources, &CompileOptions::new("gw.dev/gateway"));
    L4Routes::build(&compiled.table)
}

fn service(name: &str, ip: &str) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec: {{ports: [{{name: p, port: 9000}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-1, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: p, port: 9000}}]
endpoints: [{{addresses: [{ip}]}}]
"
    )
}

fn tls_route(name: &str, created: &str, hostnames: &str, backend: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: {name}, namespace: default, creationTimestamp: '{created}'}}
spec:
  parentRefs: [{{name: edge}}]
  hostnames: {hostnames}
  rules: [{{backendRefs: [{{name: {backend}, port: 9000}}]}}]
"
    )
}

fn mixed() -> L4Routes {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["www.example.com".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    let secret = format!(
        "apiVersion: v1
kind: Secret
metadata: {{name: cert, namespace: default}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{}  tls.key: |
{}",
        indent(&cert.pem()),
        indent(&key.serialize_pem())
    );
    // HTTPS, TLS Passthrough and TLS Terminate listeners share port 443 (GEP-2643).
    routes(&format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: default}}
spec:
  gatewayClassName: gw
  listeners:
  - {{name: wild, port: 443, protocol: TLS, hostname: '*.example.com', tls: {{mode: Passthrough}}}}
  - {{name: web, port: 443, protocol: HTTPS, hostname: www.example.com, tls: {{certificateRefs: [{{name: cert}}]}}}}
  - {{name: term, port: 443, protocol: TLS, hostname: term.example.com, tls: {{certificateRefs: [{{name: cert}}]}}}}
  - {{name: deep, port: 443, protocol: TLS, hostname: '*.deep.example.com', tls: {{mode: Passthrough}}}}
  - {{name: exact, port: 443, protocol: TLS, hostname: exact.example.com, tls: {{mode: Passthrough}}}}
  - {{name: tcp, port: 5000, protocol: TCP}}
  - {{name: udp, port: 5000, protocol: UDP}}
  - {{name: any, port: 8443, protocol: TLS, tls: {{mode: Passthrough}}}}
---
{}---
{}---
{}---
{}---
{}---
{}---
{}---
{}---
{}---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{name: tcp-new, namespace: default, creationTimestamp: '2024-01-02T00:00:00Z'}}
spec:
  parentRefs: [{{name: edge, sectionName: tcp}}]
  rules: [{{backendRefs: [{{name: b, port: 9000}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{name: tcp-old, namespace: default, creationTimestamp: '2024-01-01T00:00:00Z'}}
spec:
  parentRefs: [{{name: edge, sectionName: tcp}}]
  rules: [{{backendRefs: [{{name: a, port: 9000}}, {{name: b, port: 9000, weight: 0}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: UDPRoute
metadata: {{name: udp, namespace: default}}
spec:
  parentRefs: [{{name: edge, sectionName: udp}}]
  rules: [{{backendRefs: [{{name: missing, port: 9000}}]}}]
",
        secret,
        service("a", "10.0.0.1"),
        service("b", "10.0.0.2"),
        service("c", "10.0.0.3"),
        tls_route("wild-new", "2024-01-02T00:00:00Z", "['*.example.com']", "b"),
        tls_route("wild-old", "2024-01-01T00:00:00Z", "['*.example.com']", "a"),
        tls_route("one", "2024-01-03T00:00:00Z", "[one.example.com]", "c"),
        tls_route("exact", "2024-01-03T00:00:00Z", "[exact.example.com]", "c"),
        "apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {name: catch-all, namespace: default}
spec:
  parentRefs: [{name: edge, sectionName: any}]
  rules: [{backendRefs: [{name: a, port: 9000}]}]
",
    ))
}

fn edge() -> ObjectKey {
    ObjectKey::new("default", "edge")
}

// Gateway API Listener: "Exact matches MUST be processed before wildcard matches, and wildcard
// matches MUST be processed before fallback (empty Hostname value) matches ... the higher the
// number of dots in the hostname to the right of the wildcard character, the higher the
// precedence."
#[test]
fn tls_listener_is_the_most_specific_hostname_match() {
    let r = mixed();
    let name = |sni: Option<&str>| {
        r.tls_listener(&edge(), 443, sni)
            .map(|l| l.name().to_owned())
    };
    assert_eq!(name(Some("exact.example.com")).as_deref(), Ok("exact"));
    assert_eq!(name(Some("x.deep.example.com")).as_deref(), Ok("deep"));
    assert_eq!(name(Some("deep.example.com")).as_deref(), Ok("wild"));
    assert_eq!(name(Some("one.example.com")).as_deref(), Ok("wild"));
    assert_eq!(name(Some("www.example.com")).as_deref(), Ok("web"));
    assert_eq!(name(Some("term.example.com")).as_deref(), Ok("term"));
    let action = |sni| r.tls_listener(&edge(), 443, Some(sni)).unwrap().action();
    assert_eq!(action("www.example.com"), Some(TlsAction::Https));
    assert_eq!(action("term.example.com"), Some(TlsAction::Terminate));
    assert_eq!(action("one.example.com"), Some(TlsAction::Passthrough));
    assert_eq!(
        r.select_tls(&edge(), 443, Some("www.example.com"))
            .unwrap()
            .1,
        None
    );
    assert_eq!(
        r.select_tls(&edge(), 443, Some("term.example.com"))
            .unwrap()
            .1,
        Some("10.0.0.1:9000".parse().unwrap())
    );
    // Unknown or missing SNI reaches no listener.
    assert!(matches!(
        name(Some("example.com")),
        Err(SelectError::UnknownServerName { .. })
    ));
    assert!(matches!(
        name(None),
        Err(SelectError::UnknownServerName { .. })
    ));
    // A listener without hostname takes every server name, and none.
    assert_eq!(
        r.select_tls(&edge(), 8443, None).unwrap().1,
        Some("10.0.0.1:9000".parse().unwrap())
    );
    assert!(r.select_tls(&edge(), 8443, Some("what.ever")).is_ok());
    assert!(r.has_tls_listener(&edge(), 443));
    assert!(!r.has_tls_listener(&edge(), 5000));
    assert!(matches!(
        r.tls_listener(&edge(), 5000, None),
        Err(SelectError::NoListener { .. })
    ));
}

// TLSRoute: the most specific hostname wins, then "The oldest Route based on creation
// timestamp".
#[test]
fn tls_route_is_the_most_specific_hostname_then_the_oldest() {
    let r = mixed();
    let l = r
        .tls_listener(&edge(), 443, Some("one.example.com"))
        .unwrap();
    assert_eq!(l.action(), Some(TlsAction::Passthrough));
    let route = |sni| l.route(Some(sni)).map(|r| r.key().name.clone());
    assert_eq!(route("one.example.com").as_deref(), Ok("one"));
    assert_eq!(route("two.example.com").as_deref(), Ok("wild-old"));
    // On the exact listener, every route's hostnames intersect to `exact.example.com`: the
    // tie goes to the oldest route.
    let exact = r
        .tls_listener(&edge(), 443, Some("exact.example.com"))
        .unwrap();
    assert_eq!(
        exact.route(Some("exact.example.com")).unwrap().key().name,
        "wild-old"
    );
    // The wildcard routes attach to the deeper listener with the intersection of hostnames.
    let deep = r
        .tls_listener(&edge(), 443, Some("x.deep.example.com"))
        .unwrap();
    assert_eq!(
        deep.route(Some("x.deep.example.com")).unwrap().key().name,
        "wild-old"
    );
    // A name the listener accepts but no route claims: no route.
    let wild = r
        .tls_listener(&edge(), 443, Some("two.example.com"))
        .unwrap();
    let catch_all = r.tls_listener(&edge(), 8443, Some("x")).unwrap();
    assert!(matches!(
        catch_all.route(None),
        Ok(route) if route.key().name == "catch-all"
    ));
    assert!(wild.route(None).is_err());
}

// TCPRoute: "The oldest Route based on creation timestamp" takes the listener's traffic; a
// weight of 0 is never picked.
#[test]
fn tcp_oldest_route_wins_and_weights_apply() {
    let r = mixed();
    let l = r.tcp_listener(&edge(), 5000).unwrap();
    let route = l.route(None).unwrap();
    assert_eq!(route.key().name, "tcp-old");
    for _ in 0..20 {
        assert_eq!(route.backend(), Ok("10.0.0.1:9000".parse().unwrap()));
    }
}

#[test]
fn invalid_backends_and_missing_listeners_are_errors() {
    let r = mixed();
    let udp = r.udp_listener(&edge(), 5000).unwrap();
    assert!(matches!(
        udp.route(None).unwrap().backend(),
        Err(SelectError::InvalidBackend { .. })
    ));
    assert!(matches!(
        r.udp_listener(&edge(), 443),
        Err(SelectError::NoListener { .. })
    ));
    assert!(matches!(
        r.tcp_listener(&ObjectKey::new("default", "other"), 5000),
        Err(SelectError::NoListener { .. })
    ));
}

/// A lookup that answers `delay` after it is asked: `Some(ip)`, or a failure for `None`.
#[derive(Debug)]
struct Delayed {
    delay: Duration,
    answer: Option<std::net::IpAddr>,
}

impl crate::dns::Lookup for Delayed {
    fn lookup(&self, host: &str) -> crate::dns::LookupFuture {
        let (delay, answer, host) = (self.delay, self.answer, host.to_owned());
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            answer
                .map(|ip| vec![ip])
                .ok_or_else(|| io::Error::other(format!("{host}: NXDOMAIN")))
        })
    }
}

/// A TCP listener on port 5432 whose TCPRoute goes to an XBackend named `db.internal`,
/// resolved by `lookup`.
fn external(lookup: Delayed) -> L4Routes {
    let resources = format!(
        "{CLASS}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: default}}
spec:
  gatewayClassName: gw
  listeners: [{{name: db, port: 5432, protocol: TCP}}]
---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackend
metadata: {{name: db, namespace: default}}
spec: {{type: ExternalHostname, externalHostname: {{hostname: db.internal}}, port: {{port: 5432}}, protocol: TCP}}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{name: db, namespace: default}}
spec:
  parentRefs: [{{name: edge}}]
  rules: [{{backendRefs: [{{group: gateway.networking.x-k8s.io, kind: XBackend, name: db}}]}}]
"
    );
    let loaded = load::parse("test.yaml", &resources);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let mut r = Resources::new();
    r.extend(loaded.objects);
    let compiled = compile(&r, &CompileOptions::new("gw.dev/gateway"));
    let resolver = crate::dns::Resolver::with_lookup(lookup, crate::dns::ResolverConfig::default());
    L4Routes::build_with(&compiled.table, &resolver)
}

// An L4 connection to an XBackend that arrives before the name's first DNS answer waits for
// it (up to `first_answer_wait`, 2 s by default), as an HTTP request does, instead of being
// closed at once.
#[tokio::test(start_paused = true)]
async fn a_connection_waits_for_the_first_answer_of_an_external_backend() {
    let routes = external(Delayed {
        delay: Duration::from_millis(700),
        answer: Some("127.0.0.5".parse().unwrap()),
    });
    let route = routes
        .tcp_listener(&edge(), 5432)
        .unwrap()
        .route(None)
        .unwrap();
    assert_eq!(&**route.label(), "default/db");
    let backend = route.choose().unwrap();
    assert_eq!(&**backend.label(), "default/db:5432");
    // Without waiting, the name is not answered yet.
    assert!(
        matches!(route.backend(), Err(SelectError::Unresolved { error, .. }) if matches!(*error, crate::dns::ResolveError::Pending { .. }))
    );
    let started = tokio::time::Instant::now();
    assert_eq!(
        backend.resolve().await,
        Ok("127.0.0.5:5432".parse().unwrap())
    );
    assert_eq!(started.elapsed(), Duration::from_millis(700));
    // Answered: later connections do not wait.
    assert_eq!(route.backend(), Ok("127.0.0.5:5432".parse().unwrap()));
}

#[tokio::test(start_paused = true)]
async fn a_name_that_does_not_resolve_closes_l4_connections_quickly() {
    // The lookup fails after 100 ms: the waiting connection gets the failure then, not after
    // the 2 s wait, and later connections get it at once.
    let routes = external(Delayed {
        delay: Duration::from_millis(100),
        answer: None,
    });
    let route = routes
        .tcp_listener(&edge(), 5432)
        .unwrap()
        .route(None)
        .unwrap();
    let started = tokio::time::Instant::now();
    let err = route.choose().unwrap().resolve().await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    assert!(
        matches!(&err, SelectError::Unresolved { error, .. } if matches!(&**error, crate::dns::ResolveError::Failed { reason, .. } if reason.contains("NXDOMAIN"))),
        "{err}"
    );
    let started = tokio::time::Instant::now();
    assert!(route.choose().unwrap().resolve().await.is_err());
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert!(
        matches!(route.backend(), Err(SelectError::Unresolved { error, .. }) if matches!(*error, crate::dns::ResolveError::Failed { .. }))
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_name_holds_an_l4_connection_no_longer_than_the_first_answer_wait() {
    let routes = external(Delayed {
        delay: Duration::from_secs(4),
        answer: Some("127.0.0.5".parse().unwrap()),
    });
    let route = routes
        .tcp_listener(&edge(), 5432)
        .unwrap()
        .route(None)
        .unwrap();
    let started = tokio::time::Instant::now();
    let err = route.choose().unwrap().resolve().await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert!(
        matches!(&err, SelectError::Unresolved { error, .. } if matches!(**error, crate::dns::ResolveError::Pending { .. })),
        "{err}"
    );
}
