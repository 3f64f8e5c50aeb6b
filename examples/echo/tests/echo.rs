//! End-to-end tests of every echo protocol, on 127.0.0.1 with OS-assigned ports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt as _, StreamExt as _};
use gw_echo::proto::{EchoRequest, EchoResponse, HealthCheckRequest, HealthCheckResponse};
use gw_echo::{EchoConfig, EchoError, EchoMode, EchoServer, HttpsConfig, TlsIdentity};
use http::uri::PathAndQuery;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpStream, UdpSocket};
use tokio_tungstenite::tungstenite::Message;

async fn http_server() -> EchoServer {
    EchoServer::start(EchoConfig {
        http: loopback(),
        ..base_config()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn echo_reply_has_echo_basic_shape() {
    let server = http_server().await;
    let addr = server.http_addr().unwrap();
    let reply = get(
        addr,
        "/one/two?x=y&z=%20",
        &[
            ("User-Agent", "Go-http-client/1.1"),
            ("X-Echo-Set-Header", ""),
            ("x-multi", "a"),
            ("X-Multi", "b"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    // Go's json.MarshalIndent(v, "", " "), HTML-safe escaping included.
    assert!(
        reply
            .body
            .starts_with("{\n \"path\": \"/one/two?x=y\\u0026z=%20\",\n \"host\""),
        "{}",
        reply.body
    );

    let json = reply.json();
    let port = addr.port().to_string();
    assert_eq!(json["path"], "/one/two?x=y&z=%20");
    assert_eq!(json["host"], addr.to_string());
    assert_eq!(json["method"], "GET");
    assert_eq!(json["proto"], "HTTP/1.1");
    assert_eq!(json["httpPort"], port.as_str());
    assert_eq!(json["namespace"], NAMESPACE);
    assert_eq!(json["ingress"], "");
    assert_eq!(json["service"], SERVICE);
    assert_eq!(json["pod"], POD);
    assert!(json.get("tls").is_none(), "no tls object on plain HTTP");
    let headers = json["headers"].as_object().unwrap();
    assert_eq!(
        headers["User-Agent"],
        serde_json::json!(["Go-http-client/1.1"])
    );
    assert_eq!(headers["X-Echo-Set-Header"], serde_json::json!([""]));
    assert_eq!(headers["X-Multi"], serde_json::json!(["a", "b"]));
    assert_eq!(headers["Connection"], serde_json::json!(["close"]));
    assert!(
        !headers.contains_key("Host"),
        "Go removes Host from r.Header"
    );
    let keys: Vec<&String> = headers.keys().collect();
    let json_keys: Vec<&str> = reply
        .body
        .lines()
        .filter(|l| l.starts_with(" \""))
        .map(|l| l.trim().split('"').nth(1).unwrap())
        .collect();
    assert_eq!(
        json_keys,
        [
            "path",
            "host",
            "method",
            "proto",
            "headers",
            "httpPort",
            "namespace",
            "ingress",
            "service",
            "pod"
        ]
    );
    assert!(
        keys.windows(2).all(|w| w[0] <= w[1]),
        "headers sorted like Go's map"
    );

    // The mirror check of the suite counts these lines.
    get(addr, "/one/two?x=y&z=%20", &[]).await.unwrap();
    let log = server.log();
    assert_eq!(
        log.count_starting_with("Echoing back request made to /one/two?x=y&z=%20 to client"),
        2
    );
    assert!(log.lines()[0].ends_with(')') && log.lines()[0].contains("(127.0.0.1:"));
    let needle = "Echoing back request made to /one/two";
    assert_eq!(
        log.wait_for_containing(needle, 2, Duration::from_secs(5))
            .await,
        2
    );
    assert_eq!(
        log.wait_for_containing(needle, 3, Duration::from_millis(20))
            .await,
        2
    );
    // A request arriving while waiting wakes the waiter.
    let waiter = {
        let log = log.clone();
        tokio::spawn(async move {
            log.wait_for_containing("/late", 1, Duration::from_secs(10))
                .await
        })
    };
    get(addr, "/late", &[]).await.unwrap();
    assert_eq!(waiter.await.unwrap(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn echo_set_header_sets_response_headers() {
    let server = http_server().await;
    let addr = server.http_addr().unwrap();
    let reply = get(
        addr,
        "/",
        &[(
            "X-Echo-Set-Header",
            "X-Foo:bar, X-Baz: qux,X-Foo:again,Content-Type:text/evil",
        )],
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-foo"), Some("bar,again"));
    assert_eq!(reply.header("x-baz"), Some("qux"));
    assert_eq!(reply.header("content-type"), Some("application/json"));
    server.shutdown().await;
}

#[tokio::test]
async fn status_health_and_redirects() {
    let server = http_server().await;
    let addr = server.http_addr().unwrap();

    let teapot = get(addr, "/status/418", &[]).await.unwrap();
    assert_eq!(teapot.status, 418);
    assert_eq!(teapot.body, "");

    assert_eq!(get(addr, "/status/abc", &[]).await.unwrap().status, 400);
    assert_eq!(get(addr, "/status/200?x", &[]).await.unwrap().status, 400);

    let health = get(addr, "/health", &[]).await.unwrap();
    assert_eq!((health.status, health.body.as_str()), (200, "OK"));

    // Go's ServeMux: "/status" redirects to the registered "/status/", unclean paths to
    // the cleaned path.
    let moved = get(addr, "/status", &[]).await.unwrap();
    assert_eq!(moved.status, 301);
    assert_eq!(moved.header("location"), Some("/status/"));
    let moved = get(addr, "/a/../b?q=1", &[]).await.unwrap();
    assert_eq!(moved.status, 301);
    assert_eq!(moved.header("location"), Some("/b?q=1"));

    // Only echoes are logged.
    assert_eq!(server.log().count_containing("Echoing back"), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn delay_query_delays_then_echoes() {
    let server = http_server().await;
    let addr = server.http_addr().unwrap();
    let reply = get(addr, "/request-timeout?delay=100ms", &[])
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["path"], "/request-timeout?delay=100ms");

    let bad = get(addr, "/x?delay=soon", &[]).await.unwrap();
    assert_eq!(bad.status, 500);
    assert_eq!(bad.header("content-type"), Some("application/json"));
    assert_eq!(bad.json()["message"], "time: invalid duration \"soon\"");
    server.shutdown().await;
}

#[tokio::test]
async fn retry_simulation_with_response_code() {
    let server = http_server().await;
    let addr = server.http_addr().unwrap();
    let path = "/retry/code-500-attempts-3?responseCode=503&succeedAfter=2&uuid=u-1";
    assert_eq!(get(addr, path, &[]).await.unwrap().status, 503);
    assert_eq!(get(addr, path, &[]).await.unwrap().status, 503);
    let ok = get(addr, path, &[]).await.unwrap();
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["path"], path);
    assert_eq!(get(addr, path, &[]).await.unwrap().status, 200);
    // Another uuid has its own counter.
    let other = "/retry/x?responseCode=500&succeedAfter=1&uuid=u-2&delayRetry=10ms";
    assert_eq!(get(addr, other, &[]).await.unwrap().status, 500);
    assert_eq!(get(addr, other, &[]).await.unwrap().status, 200);
    // Missing parameters are a client error.
    assert_eq!(
        get(addr, "/retry/x?succeedAfter=1", &[])
            .await
            .unwrap()
            .status,
        400
    );
    server.shutdown().await;
}

#[tokio::test]
async fn retry_simulation_resets_connection() {
    let server = http_server().await;
    let addr = server.http_addr().unwrap();
    let path = "/retry/reset?succeedAfter=1&uuid=u-reset";
    let first = get(addr, path, &[]).await;
    // A TCP RST, not a FIN: the client sees ECONNRESET.
    assert!(
        first.as_ref().is_err_and(|e| e.contains("ConnectionReset")),
        "expected a reset, got {first:?}"
    );
    let second = get(addr, path, &[]).await.unwrap();
    assert_eq!(second.status, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn h2c_prior_knowledge_and_h2c_port() {
    let server = EchoServer::start(EchoConfig {
        http: loopback(),
        h2c: loopback(),
        ..base_config()
    })
    .await
    .unwrap();
    let http = server.http_addr().unwrap();
    let h2c = server.h2c_addr().unwrap();

    let tcp = TcpStream::connect(http).await.unwrap();
    let (status, body) = h2_get(tcp, &format!("http://{http}/h2c?a=b")).await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["proto"], "HTTP/2.0");
    assert_eq!(json["path"], "/h2c?a=b");
    assert_eq!(json["host"], http.to_string());
    assert_eq!(json["httpPort"], http.port().to_string());

    // The h2c port echoes every path over HTTP/2 (even /health) ...
    let tcp = TcpStream::connect(h2c).await.unwrap();
    let (status, body) = h2_get(tcp, &format!("http://{h2c}/health")).await;
    assert_eq!(status, 200);
    assert!(body.contains("\"proto\": \"HTTP/2.0\""));
    // ... and refuses HTTP/1.
    let refused = get(h2c, "/", &[]).await.unwrap();
    assert_eq!(
        (refused.status, refused.body.as_str()),
        (400, "Expected h2c request")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn websocket_echo_round_trip() {
    let server = http_server().await;
    let addr = server.http_addr().unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(format!("ws://{addr}/ws"), tcp)
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("Websocket Support!")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("Websocket Support!")
    );
    let binary = vec![1u8, 2, 3, 4, 5, 6, 7];
    ws.send(Message::binary(binary.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(binary));
    ws.close(None).await.unwrap();
    assert_eq!(
        server
            .log()
            .count_containing("established websocket connection"),
        1
    );

    // Not an upgrade: 400.
    assert_eq!(get(addr, "/ws", &[]).await.unwrap().status, 400);
    server.shutdown().await;
}

#[tokio::test]
async fn grpc_echo_via_tonic_client() {
    let server = EchoServer::start(EchoConfig {
        http: loopback(),
        mode: EchoMode::Grpc,
        ..base_config()
    })
    .await
    .unwrap();
    let addr = server.http_addr().unwrap();
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<tonic::body::Body>();
    let mut grpc =
        tonic::client::Grpc::with_origin(client, format!("http://{addr}").parse().unwrap());
    grpc.ready().await.unwrap();

    let mut request = tonic::Request::new(EchoRequest {});
    request
        .metadata_mut()
        .insert("x-custom", "v1".parse().unwrap());
    let method = "/gateway_api_conformance.echo_basic.grpcecho.GrpcEcho/Echo";
    let reply: tonic::Response<EchoResponse> = grpc
        .unary(
            request,
            PathAndQuery::from_static(method),
            tonic_prost::ProstCodec::<EchoRequest, EchoResponse>::default(),
        )
        .await
        .unwrap();
    let assertions = reply.into_inner().assertions.unwrap();
    assert_eq!(assertions.fully_qualified_method, method);
    assert_eq!(assertions.authority, addr.to_string());
    let context = assertions.context.unwrap();
    assert_eq!(context.pod, POD);
    assert_eq!(context.namespace, NAMESPACE);
    assert_eq!(context.service_name, SERVICE);
    assert!(assertions.tls_assertions.is_none());
    let has = |k: &str, v: &str| {
        assertions
            .headers
            .iter()
            .any(|h| h.key == k && h.value == v)
    };
    assert!(has("x-custom", "v1"), "{:?}", assertions.headers);
    assert!(has(":authority", &addr.to_string()));
    assert!(has("content-type", "application/grpc"));
    assert!(!assertions.headers.iter().any(|h| h.key == "te"));

    grpc.ready().await.unwrap();
    let two = "/gateway_api_conformance.echo_basic.grpcecho.GrpcEcho/EchoTwo";
    let reply: tonic::Response<EchoResponse> = grpc
        .unary(
            tonic::Request::new(EchoRequest {}),
            PathAndQuery::from_static(two),
            tonic_prost::ProstCodec::<EchoRequest, EchoResponse>::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        reply
            .into_inner()
            .assertions
            .unwrap()
            .fully_qualified_method,
        two
    );

    grpc.ready().await.unwrap();
    let three: Result<tonic::Response<EchoResponse>, _> = grpc
        .unary(
            tonic::Request::new(EchoRequest {}),
            PathAndQuery::from_static(
                "/gateway_api_conformance.echo_basic.grpcecho.GrpcEcho/EchoThree",
            ),
            tonic_prost::ProstCodec::<EchoRequest, EchoResponse>::default(),
        )
        .await;
    assert_eq!(three.unwrap_err().code(), tonic::Code::Unimplemented);

    grpc.ready().await.unwrap();
    let health: tonic::Response<HealthCheckResponse> = grpc
        .unary(
            tonic::Request::new(HealthCheckRequest::default()),
            PathAndQuery::from_static("/grpc.health.v1.Health/Check"),
            tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default(),
        )
        .await
        .unwrap();
    assert_eq!(health.into_inner().status, gw_echo::proto::HEALTH_SERVING);
    assert_eq!(server.log().count_containing("Received over plaintext"), 2);
    server.shutdown().await;
}

async fn read_line(reader: &mut BufReader<impl tokio::io::AsyncRead + Unpin>) -> String {
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    line
}

#[tokio::test]
async fn tcp_echo_exchange() {
    let server = EchoServer::start(EchoConfig {
        tcp: loopback(),
        ..base_config()
    })
    .await
    .unwrap();
    let addr = server.tcp_addr().unwrap();
    let mut conn = BufReader::new(TcpStream::connect(addr).await.unwrap());
    assert_eq!(read_line(&mut conn).await, gw_echo::TCP_WELCOME);
    conn.get_mut().write_all(b"IS_TLS\n").await.unwrap();
    assert_eq!(read_line(&mut conn).await, "false\n");
    conn.get_mut()
        .write_all(b"NOISE\r\nTEST\r\n")
        .await
        .unwrap();
    let line = read_line(&mut conn).await;
    let json: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(json["pod"], POD);
    assert_eq!(json["namespace"], NAMESPACE);
    assert_eq!(json["service"], SERVICE);
    assert_eq!(json["isTLS"], false);
    assert_eq!(json["tcpport"], addr.port().to_string());
    assert!(json.get("tls").is_none());
    conn.get_mut().write_all(b"PING\n").await.unwrap();
    assert_eq!(read_line(&mut conn).await, "PONG\n");
    server.shutdown().await;
}

#[tokio::test]
async fn tcp_tls_echo_reports_version_and_sni() {
    let pki = pki();
    let server = EchoServer::start(EchoConfig {
        tcp_tls: Some((
            loopback().unwrap(),
            TlsIdentity {
                cert_pem: pki.server_cert_pem.clone(),
                key_pem: pki.server_key_pem.clone(),
            },
        )),
        ..base_config()
    })
    .await
    .unwrap();
    let addr = server.tcp_tls_addr().unwrap();
    let tls = tls_connect(
        addr,
        "abc.example.com",
        &pki.ca_pem,
        None,
        &[],
        rustls::ALL_VERSIONS,
    )
    .await;
    let mut conn = BufReader::new(tls);
    assert_eq!(read_line(&mut conn).await, gw_echo::TCP_WELCOME);
    conn.get_mut().write_all(b"IS_TLS\n").await.unwrap();
    assert_eq!(read_line(&mut conn).await, "true\n");
    conn.get_mut().write_all(b"TEST\n").await.unwrap();
    let json: serde_json::Value = serde_json::from_str(&read_line(&mut conn).await).unwrap();
    assert_eq!(json["isTLS"], true);
    assert_eq!(json["pod"], POD);
    assert_eq!(json["tlsport"], addr.port().to_string());
    assert_eq!(json["tls"]["serverName"], "abc.example.com");
    assert_eq!(json["tls"]["version"], "TLS 1.3");
    assert!(
        json["tls"]["cipherSuite"]
            .as_str()
            .unwrap()
            .starts_with("TLS_")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn udp_echo_exchange() {
    let server = EchoServer::start(EchoConfig {
        udp: loopback(),
        ..base_config()
    })
    .await
    .unwrap();
    let addr = server.udp_addr().unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(b"gateway-api-conformance-udp-echo", addr)
        .await
        .unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = tokio::time::timeout(Duration::from_secs(10), socket.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from, addr);
    let json: serde_json::Value = serde_json::from_slice(&buf[..n]).unwrap();
    assert_eq!(json["request"], "gateway-api-conformance-udp-echo");
    assert_eq!(json["namespace"], NAMESPACE);
    assert_eq!(json["service"], SERVICE);
    assert_eq!(json["pod"], POD);
    server.shutdown().await;
}

#[tokio::test]
async fn https_echo_reports_tls() {
    let pki = pki();
    let server = EchoServer::start(EchoConfig {
        https: Some(HttpsConfig {
            addr: loopback().unwrap(),
            cert_pem: pki.server_cert_pem.clone(),
            key_pem: pki.server_key_pem.clone(),
            client_ca_pem: Some(pki.ca_pem.clone()),
        }),
        ..base_config()
    })
    .await
    .unwrap();
    let addr = server.https_addr().unwrap();

    // HTTP/2 over TLS 1.3 with a client certificate.
    let tls = tls_connect(
        addr,
        "abc.example.com",
        &pki.ca_pem,
        Some((&pki.client_cert_pem, &pki.client_key_pem)),
        &[b"h2", b"http/1.1"],
        rustls::ALL_VERSIONS,
    )
    .await;
    let (status, body) = h2_get(tls, "https://abc.example.com/backendtlspolicy").await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["proto"], "HTTP/2.0");
    assert_eq!(json["host"], "abc.example.com");
    let tls = &json["tls"];
    assert_eq!(tls["version"], "TLSv1.3");
    assert_eq!(tls["serverName"], "abc.example.com");
    assert_eq!(tls["negotiatedProtocol"], "h2");
    assert!(
        [
            "TLS_AES_128_GCM_SHA256",
            "TLS_AES_256_GCM_SHA384",
            "TLS_CHACHA20_POLY1305_SHA256"
        ]
        .contains(&tls["cipherSuite"].as_str().unwrap()),
        "{tls}"
    );
    let peers = tls["peerCertificates"].as_array().unwrap();
    assert_eq!(peers.len(), 1);
    let peer_pem = peers[0].as_str().unwrap();
    assert!(peer_pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert_eq!(der_of(peer_pem), der_of(&pki.client_cert_pem));

    // HTTP/1.1 over TLS 1.2 without a client certificate (verification is optional).
    let tls = tls_connect(
        addr,
        "localhost",
        &pki.ca_pem,
        None,
        &[b"http/1.1"],
        &[&rustls::version::TLS12],
    )
    .await;
    let (status, body) = h1_get(tls, "/plain", "localhost").await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["proto"], "HTTP/1.1");
    let tls = &json["tls"];
    assert_eq!(tls["version"], "TLSv1.2");
    assert_eq!(tls["serverName"], "localhost");
    assert_eq!(tls["negotiatedProtocol"], "http/1.1");
    assert!(
        tls["cipherSuite"]
            .as_str()
            .unwrap()
            .starts_with("TLS_ECDHE_ECDSA_WITH_"),
        "{tls}"
    );
    assert!(tls.get("peerCertificates").is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn start_errors_are_actionable() {
    assert!(matches!(
        EchoServer::start(EchoConfig::default()).await,
        Err(EchoError::NoListener)
    ));

    let bad_tls = EchoServer::start(EchoConfig {
        https: Some(HttpsConfig {
            addr: loopback().unwrap(),
            cert_pem: "not a pem".to_owned(),
            key_pem: String::new(),
            client_ca_pem: None,
        }),
        ..base_config()
    })
    .await;
    let err = bad_tls.unwrap_err();
    assert!(
        matches!(
            err,
            EchoError::Tls {
                listener: "https",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("CERTIFICATE"), "{err}");

    let server = http_server().await;
    let taken = server.http_addr().unwrap();
    let err = EchoServer::start(EchoConfig {
        http: Some(taken),
        ..base_config()
    })
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            EchoError::Bind {
                listener: "http",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&taken.to_string()), "{err}");
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_listeners_and_connections() {
    let server = http_server().await;
    let addr = server.http_addr().unwrap();
    // An idle keep-alive connection must not keep the server alive.
    let idle = TcpStream::connect(addr).await.unwrap();
    let log = server.log();
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("shutdown completes");
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
    drop(idle);
    assert!(log.is_empty());
}

#[tokio::test]
async fn grpc_over_tls_reports_tls_assertions() {
    use http_body_util::BodyExt as _;
    use prost::Message as _;

    let pki = pki();
    let server = EchoServer::start(EchoConfig {
        mode: EchoMode::Grpc,
        https: Some(HttpsConfig {
            addr: loopback().unwrap(),
            cert_pem: pki.server_cert_pem.clone(),
            key_pem: pki.server_key_pem.clone(),
            client_ca_pem: None,
        }),
        ..base_config()
    })
    .await
    .unwrap();
    let addr = server.https_addr().unwrap();
    let tls = tls_connect(
        addr,
        "abc.example.com",
        &pki.ca_pem,
        None,
        &[b"h2"],
        rustls::ALL_VERSIONS,
    )
    .await;
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    // A hand-made unary call: one uncompressed, empty EchoRequest frame.
    let method = "/gateway_api_conformance.echo_basic.grpcecho.GrpcEcho/Echo";
    let req = http::Request::post(format!("https://abc.example.com{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(&[
            0, 0, 0, 0, 0,
        ])))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let collected = resp.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
    let frame = collected.to_bytes();
    assert_eq!(frame[0], 0, "uncompressed");
    let len = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
    let reply = EchoResponse::decode(&frame[5..5 + len]).unwrap();
    let assertions = reply.assertions.unwrap();
    assert_eq!(assertions.fully_qualified_method, method);
    assert_eq!(assertions.authority, "abc.example.com");
    let tls = assertions.tls_assertions.unwrap();
    assert_eq!(tls.version, "TLSv1.3");
    assert_eq!(tls.server_name, "abc.example.com");
    assert_eq!(tls.negotiated_protocol, "h2");
    assert!(tls.peer_certificates.is_empty());
    assert_eq!(server.log().count_containing("Received over TLS"), 1);
    server.shutdown().await;
}
