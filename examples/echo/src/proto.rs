//! Protobuf messages of echo-basic's gRPC mode (`grpcecho.proto`, package
//! `gateway_api_conformance.echo_basic.grpcecho`) and of the standard gRPC health check,
//! written by hand with `prost` derives (no `protoc` needed). A test harness can decode
//! the [`EchoResponse`] of a `GrpcEcho/Echo` call with them.

/// Fully-qualified name of the echo service.
pub const ECHO_SERVICE: &str = "gateway_api_conformance.echo_basic.grpcecho.GrpcEcho";

/// Fully-qualified name of the gRPC health service.
pub const HEALTH_SERVICE: &str = "grpc.health.v1.Health";

/// One request header (gRPC metadata entry) as the server saw it.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Header {
    /// Header name, lower case (`:authority` included).
    #[prost(string, tag = "1")]
    pub key: String,
    /// Header value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// Where the echo server runs.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Context {
    /// The Kubernetes namespace (`NAMESPACE`).
    #[prost(string, tag = "1")]
    pub namespace: String,
    /// The ingress controller under test (`INGRESS_NAME`).
    #[prost(string, tag = "2")]
    pub ingress: String,
    /// The service name (`SERVICE_NAME`).
    #[prost(string, tag = "3")]
    pub service_name: String,
    /// The pod name (`POD_NAME`).
    #[prost(string, tag = "4")]
    pub pod: String,
}

/// The TLS connection between client and server (only over TLS).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct TlsAssertions {
    /// `"TLSv1.2"` or `"TLSv1.3"`.
    #[prost(string, tag = "1")]
    pub version: String,
    /// ALPN protocol (`"h2"`).
    #[prost(string, tag = "2")]
    pub negotiated_protocol: String,
    /// SNI sent by the client.
    #[prost(string, tag = "3")]
    pub server_name: String,
    /// Go's name of the cipher suite, e.g. `"TLS_AES_128_GCM_SHA256"`.
    #[prost(string, tag = "4")]
    pub cipher_suite: String,
    /// PEM certificates sent by the client, in order.
    #[prost(string, repeated, tag = "5")]
    pub peer_certificates: Vec<String>,
}

/// What the server observed about the call.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Assertions {
    /// `"/gateway_api_conformance.echo_basic.grpcecho.GrpcEcho/Echo"` etc.
    #[prost(string, tag = "1")]
    pub fully_qualified_method: String,
    /// The request headers (metadata).
    #[prost(message, repeated, tag = "2")]
    pub headers: Vec<Header>,
    /// The `:authority` pseudo-header.
    #[prost(string, tag = "3")]
    pub authority: String,
    /// The server's pod context.
    #[prost(message, optional, tag = "4")]
    pub context: Option<Context>,
    /// TLS facts, on TLS connections only.
    #[prost(message, optional, tag = "5")]
    pub tls_assertions: Option<TlsAssertions>,
}

/// The (empty) request of all `GrpcEcho` methods.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct EchoRequest {}

/// The reply of `GrpcEcho/Echo` and `GrpcEcho/EchoTwo`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct EchoResponse {
    /// What the server observed.
    #[prost(message, optional, tag = "1")]
    pub assertions: Option<Assertions>,
    /// Never set by echo-basic.
    #[prost(message, optional, tag = "2")]
    pub request: Option<EchoRequest>,
}

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct HealthCheckRequest {
    /// Service to check; empty for the whole server.
    #[prost(string, tag = "1")]
    pub service: String,
}

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct HealthCheckResponse {
    /// `ServingStatus`: 0 UNKNOWN, 1 SERVING, 2 NOT_SERVING, 3 SERVICE_UNKNOWN.
    #[prost(int32, tag = "1")]
    pub status: i32,
}

/// `HealthCheckResponse.status` value for a serving service.
pub const HEALTH_SERVING: i32 = 1;
