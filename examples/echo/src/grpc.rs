//! echo-basic's gRPC mode: the `GrpcEcho` service (plus `grpc.health.v1.Health/Check`),
//! served with tonic's unary machinery on hyper HTTP/2 connections.

use std::future::{Ready, ready};

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use tonic::Status;
use tonic::body::Body;
use tonic::server::{Grpc, UnaryService};
use tonic_prost::ProstCodec;

use crate::Shared;
use crate::http::{ConnInfo, request_host};
use crate::proto::{
    Assertions, Context, ECHO_SERVICE, EchoRequest, EchoResponse, HEALTH_SERVICE, HEALTH_SERVING,
    Header, HealthCheckRequest, HealthCheckResponse, TlsAssertions,
};

/// Headers grpc-go keeps out of the incoming metadata (`isReservedHeader`, minus the
/// ones it puts back: `content-type`, `user-agent`).
const RESERVED: &[&str] = &[
    "te",
    "grpc-timeout",
    "grpc-encoding",
    "grpc-message-type",
    "grpc-message",
    "grpc-status",
    "grpc-status-details-bin",
];

/// Answers a unary call with a precomputed message.
struct Reply<T>(Option<T>);

impl<T: Default> UnaryService<EchoRequest> for Reply<T> {
    type Response = T;
    type Future = Ready<Result<tonic::Response<T>, Status>>;

    fn call(&mut self, _request: tonic::Request<EchoRequest>) -> Self::Future {
        ready(Ok(tonic::Response::new(self.0.take().unwrap_or_default())))
    }
}

/// `grpc.health.v1.Health/Check`: SERVING for the server and the echo service.
struct HealthCheck;

impl UnaryService<HealthCheckRequest> for HealthCheck {
    type Response = HealthCheckResponse;
    type Future = Ready<Result<tonic::Response<HealthCheckResponse>, Status>>;

    fn call(&mut self, request: tonic::Request<HealthCheckRequest>) -> Self::Future {
        let service = &request.get_ref().service;
        ready(if service.is_empty() || service == ECHO_SERVICE {
            Ok(tonic::Response::new(HealthCheckResponse {
                status: HEALTH_SERVING,
            }))
        } else {
            Err(Status::not_found("unknown service"))
        })
    }
}

fn plain_error(status: StatusCode, message: String) -> Response<Body> {
    let mut resp = Response::new(Body::new(http_body_util::Full::new(bytes::Bytes::from(
        message,
    ))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn assertions(
    req: &Request<Incoming>,
    method: &str,
    shared: &Shared,
    conn: &ConnInfo,
) -> Assertions {
    let authority = request_host(req);
    let mut headers = Vec::with_capacity(req.headers().len() + 1);
    if !authority.is_empty() {
        headers.push(Header {
            key: ":authority".to_owned(),
            value: authority.clone(),
        });
    }
    for (name, value) in req.headers() {
        if RESERVED.contains(&name.as_str()) {
            continue;
        }
        headers.push(Header {
            key: name.as_str().to_owned(),
            value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
        });
    }
    Assertions {
        fully_qualified_method: method.to_owned(),
        headers,
        authority,
        context: Some(Context {
            namespace: shared.namespace.clone(),
            ingress: shared.ingress.clone(),
            service_name: shared.service.clone(),
            pod: shared.pod.clone(),
        }),
        tls_assertions: conn.tls.as_ref().map(|t| TlsAssertions {
            version: t.version_http().to_owned(),
            negotiated_protocol: t.negotiated_protocol.clone(),
            server_name: t.server_name.clone(),
            cipher_suite: t.cipher_suite.clone(),
            peer_certificates: t.peer_certificates.clone(),
        }),
    }
}

pub(crate) async fn handle(
    req: Request<Incoming>,
    shared: &Shared,
    conn: &ConnInfo,
) -> Response<Body> {
    if req.method() != Method::POST {
        return plain_error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("gRPC requires POST, got {}", req.method()),
        );
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    if !content_type.starts_with("application/grpc") {
        return plain_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("invalid gRPC request content-type {content_type:?}"),
        );
    }

    let path = req.uri().path().to_owned();
    let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
        return Status::unimplemented(format!("malformed method name: {path:?}")).into_http();
    };
    match (service, method) {
        (ECHO_SERVICE, "Echo" | "EchoTwo") => {
            let over = if conn.tls.is_some() {
                "TLS"
            } else {
                "plaintext"
            };
            shared.log.push(format!("Received over {over}: {path}"));
            let reply = EchoResponse {
                assertions: Some(assertions(&req, &path, shared, conn)),
                request: None,
            };
            let mut grpc = Grpc::new(ProstCodec::<EchoResponse, EchoRequest>::default());
            grpc.unary(Reply(Some(reply)), req).await
        }
        (ECHO_SERVICE, "EchoThree") => {
            Status::unimplemented("method EchoThree not implemented").into_http()
        }
        (HEALTH_SERVICE, "Check") => {
            let mut grpc =
                Grpc::new(ProstCodec::<HealthCheckResponse, HealthCheckRequest>::default());
            grpc.unary(HealthCheck, req).await
        }
        (ECHO_SERVICE | HEALTH_SERVICE, _) => {
            Status::unimplemented(format!("unknown method {method} for service {service}"))
                .into_http()
        }
        _ => Status::unimplemented(format!("unknown service {service}")).into_http(),
    }
}
