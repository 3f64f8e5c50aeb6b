//! External authorization test servers (HTTP and the Envoy `ext_authz` gRPC protocol) for the
//! ExternalAuth filter tests: a request is allowed when it carries
//! `Authorization: Bearer letmein`.
//!
//! - HTTP: allowed requests get `200` with `x-auth-user: alice`; others a `302` to
//!   `https://login.example.com/signin` with a `set-cookie` and the body `sign in first`.
//! - gRPC: allowed requests get OK with the upstream header `x-auth-user: alice` and the
//!   response header `x-auth-checked: grpc`; others `PERMISSION_DENIED` with a `401`,
//!   `www-authenticate: Bearer realm="gw"` and the body `token required`.
//!
//! Each server counts its checks and keeps the last request's path (HTTP: the request line;
//! gRPC: `attributes.request.http.path`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use gw_policy::ext_authz::proto;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The token that is allowed.
pub const TOKEN: &str = "Bearer letmein";

/// What a test auth server saw.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// Checks answered.
    pub checks: usize,
    /// The last request's path (and query).
    pub last_path: String,
    /// The last request's headers as `(name, value)` pairs.
    pub last_headers: Vec<(String, String)>,
}

/// A running test auth server; stops when dropped.
#[derive(Debug)]
pub struct AuthServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    task: JoinHandle<()>,
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AuthServer {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server: the port and every open connection are closed when this returns.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    /// What it saw so far.
    pub fn seen(&self) -> Seen {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// An HTTP auth server on `127.0.0.1:0`.
    pub async fn http() -> std::io::Result<AuthServer> {
        Self::start(false).await
    }

    /// A gRPC (`ext_authz`, h2c) auth server on `127.0.0.1:0`.
    pub async fn grpc() -> std::io::Result<AuthServer> {
        Self::start(true).await
    }

    async fn start(grpc: bool) -> std::io::Result<AuthServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        let task = tokio::spawn(async move {
            // Connections live in this set: stopping the server aborts them too (a client's
            // pooled keep-alive connection must not outlive the server).
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                while conns.try_join_next().is_some() {}
                let s = s.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let s = s.clone();
                        async move {
                            if grpc {
                                Ok::<_, Infallible>(grpc_check(req, s).await.map(boxed_grpc))
                            } else {
                                Ok(http_check(&req, &s).map(boxed_full))
                            }
                        }
                    });
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Ok(AuthServer { addr, seen, task })
    }
}

type Boxed = http_body_util::combinators::UnsyncBoxBody<Bytes, tonic::Status>;

fn boxed_full(b: Full<Bytes>) -> Boxed {
    use http_body_util::BodyExt;
    b.map_err(|never| match never {}).boxed_unsync()
}

fn boxed_grpc(b: tonic::body::Body) -> Boxed {
    use http_body_util::BodyExt;
    b.boxed_unsync()
}

fn record(seen: &Mutex<Seen>, path: String, headers: Vec<(String, String)>) {
    if let Ok(mut s) = seen.lock() {
        s.checks += 1;
        s.last_path = path;
        s.last_headers = headers;
    }
}

fn http_check(req: &Request<Incoming>, seen: &Mutex<Seen>) -> Response<Full<Bytes>> {
    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(String::new, |pq| pq.to_string());
    record(seen, path, headers);
    let allowed = req
        .headers()
        .get("authorization")
        .is_some_and(|v| v == TOKEN);
    let resp = if allowed {
        Response::builder()
            .header("x-auth-user", "alice")
            .body(Full::new(Bytes::new()))
    } else {
        Response::builder()
            .status(StatusCode::FOUND)
            .header("location", "https://login.example.com/signin")
            .header("set-cookie", "auth_state=1")
            .body(Full::new(Bytes::from_static(b"sign in first")))
    };
    resp.unwrap_or_default()
}

#[derive(Clone)]
struct Check(Arc<Mutex<Seen>>);

impl tonic::server::UnaryService<proto::CheckRequest> for Check {
    type Response = proto::CheckResponse;
    type Future = std::future::Ready<Result<tonic::Response<proto::CheckResponse>, tonic::Status>>;

    fn call(&mut self, req: tonic::Request<proto::CheckRequest>) -> Self::Future {
        let http = req
            .into_inner()
            .attributes
            .and_then(|a| a.request)
            .and_then(|r| r.http)
            .unwrap_or_default();
        let mut headers: Vec<(String, String)> = http.headers.clone().into_iter().collect();
        headers.sort();
        record(&self.0, http.path.clone(), headers);
        let allowed = http
            .headers
            .get("authorization")
            .is_some_and(|v| v == TOKEN);
        let resp = if allowed {
            proto::CheckResponse {
                status: Some(proto::RpcStatus {
                    code: 0,
                    message: String::new(),
                }),
                http_response: Some(proto::HttpResponse::OkResponse(proto::OkHttpResponse {
                    headers: vec![proto::HeaderValueOption::overwrite("x-auth-user", "alice")],
                    headers_to_remove: Vec::new(),
                    response_headers_to_add: vec![proto::HeaderValueOption::overwrite(
                        "x-auth-checked",
                        "grpc",
                    )],
                })),
            }
        } else {
            proto::CheckResponse {
                status: Some(proto::RpcStatus {
                    code: 7,
                    message: "token required".into(),
                }),
                http_response: Some(proto::HttpResponse::DeniedResponse(
                    proto::DeniedHttpResponse {
                        status: Some(proto::HttpStatus { code: 401 }),
                        headers: vec![proto::HeaderValueOption::overwrite(
                            "www-authenticate",
                            "Bearer realm=\"gw\"",
                        )],
                        body: "token required".into(),
                    },
                )),
            }
        };
        std::future::ready(Ok(tonic::Response::new(resp)))
    }
}

async fn grpc_check(req: Request<Incoming>, seen: Arc<Mutex<Seen>>) -> Response<tonic::body::Body> {
    if req.uri().path() != proto::CHECK_PATH {
        return tonic::Status::unimplemented("only Authorization/Check").into_http();
    }
    let codec = tonic_prost::ProstCodec::<proto::CheckResponse, proto::CheckRequest>::default();
    let mut grpc = tonic::server::Grpc::new(codec);
    grpc.unary(Check(seen), req).await
}
