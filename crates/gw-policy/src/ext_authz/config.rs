//! External authorization configuration (plain data) and its compiled form.

use std::time::Duration;

use http::{HeaderName, StatusCode};

use super::ExtAuthzError;

/// The default time the auth service has to answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// The default largest denial body read from an HTTP auth service.
pub const DEFAULT_MAX_RESPONSE_BODY: usize = 1 << 20;

/// How to talk to the auth service.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// Plain HTTP: the auth service gets a copy of the request head (200 allows).
    Http {
        /// Prefix added to the request path (`http.path`); empty: none.
        path_prefix: String,
        /// Request headers sent besides the ones always sent (`http.allowedHeaders`).
        allowed_headers: Vec<String>,
        /// Auth response headers copied onto the upstream request
        /// (`http.allowedResponseHeaders`); empty: all of them (see the module docs).
        allowed_response_headers: Vec<String>,
    },
    /// The Envoy `ext_authz` gRPC protocol (`envoy.service.auth.v3.Authorization/Check`).
    Grpc {
        /// Request headers sent (`grpc.allowedHeaders`); empty: all of them.
        allowed_headers: Vec<String>,
    },
}

/// What happens when the auth service cannot be asked (down, slow, a broken answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureMode {
    /// Refuse the request with the configured failure status (default 403). This is what
    /// Gateway API requires: "If there is any problem communicating with the external
    /// service, this filter MUST fail closed."
    Closed,
    /// Let the request through unchanged. Not allowed by Gateway API's ExternalAuth filter;
    /// for embedders who prefer availability (e.g. a best-effort audit service).
    Open,
}

/// External authorization as plain data; compile it with [`ExtAuthzConfig::compile`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExtAuthzConfig {
    /// The protocol and its settings.
    pub protocol: Protocol,
    /// Bytes of the request body sent to the auth service (`forwardBody.maxSize`); 0: none.
    pub forward_body_max: u32,
    /// How long the auth service has to answer (connect, headers and denial body).
    pub timeout: Duration,
    /// What a failure to ask the auth service does.
    pub failure_mode: FailureMode,
    /// The status of a request refused because the auth service could not be asked.
    pub failure_status: u16,
    /// The largest denial body read from an HTTP auth service; a larger one is a failure.
    pub max_response_body: usize,
}

impl ExtAuthzConfig {
    fn with(protocol: Protocol) -> Self {
        ExtAuthzConfig {
            protocol,
            forward_body_max: 0,
            timeout: DEFAULT_TIMEOUT,
            failure_mode: FailureMode::Closed,
            failure_status: StatusCode::FORBIDDEN.as_u16(),
            max_response_body: DEFAULT_MAX_RESPONSE_BODY,
        }
    }

    /// An HTTP auth service, no path prefix, only the headers always sent, every response
    /// header copied; 2 s timeout, fail closed with 403.
    pub fn http() -> Self {
        Self::with(Protocol::Http {
            path_prefix: String::new(),
            allowed_headers: Vec::new(),
            allowed_response_headers: Vec::new(),
        })
    }

    /// A gRPC (`ext_authz`) auth service, every header sent; 2 s timeout, fail closed with
    /// 403.
    pub fn grpc() -> Self {
        Self::with(Protocol::Grpc {
            allowed_headers: Vec::new(),
        })
    }

    /// The settings of an HTTPRoute `ExternalAuth` filter (GEP-1494), with the defaults
    /// above for what the filter does not say (timeout, failure status).
    pub fn from_filter(f: &gw_model::resources::ExternalAuth) -> Result<Self, ExtAuthzError> {
        let mut config = match f.protocol.as_str() {
            "HTTP" => {
                let h = f.http.clone().unwrap_or_default();
                Self::with(Protocol::Http {
                    path_prefix: h.path.unwrap_or_default(),
                    allowed_headers: h.allowed_headers,
                    allowed_response_headers: h.allowed_response_headers,
                })
            }
            "GRPC" => Self::with(Protocol::Grpc {
                allowed_headers: f.grpc.clone().unwrap_or_default().allowed_headers,
            }),
            other => return Err(ExtAuthzError::UnsupportedProtocol(other.to_owned())),
        };
        if let Some(b) = &f.forward_body {
            config.forward_body_max = u32::try_from(b.max_size)
                .map_err(|_| ExtAuthzError::NegativeMaxSize(i64::from(b.max_size)))?;
        }
        Ok(config)
    }

    /// Sends up to `max` bytes of the request body.
    pub fn forward_body(mut self, max: u32) -> Self {
        self.forward_body_max = max;
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the failure mode.
    pub fn failure_mode(mut self, mode: FailureMode) -> Self {
        self.failure_mode = mode;
        self
    }

    /// Sets the status of requests refused because the auth service could not be asked.
    pub fn failure_status(mut self, status: u16) -> Self {
        self.failure_status = status;
        self
    }

    /// Sets the largest denial body read from an HTTP auth service.
    pub fn max_response_body(mut self, max: usize) -> Self {
        self.max_response_body = max;
        self
    }

    /// Validates and compiles.
    pub fn compile(self) -> Result<CompiledExtAuthz, ExtAuthzError> {
        CompiledExtAuthz::try_from(self)
    }
}

/// The compiled protocol settings.
#[derive(Debug, Clone)]
pub(crate) enum CompiledProtocol {
    Http {
        path_prefix: String,
        allowed_headers: Vec<HeaderName>,
        /// Empty: all (minus the ones never copied).
        allowed_response_headers: Vec<HeaderName>,
    },
    Grpc {
        /// Empty: all.
        allowed_headers: Vec<HeaderName>,
    },
}

/// A validated [`ExtAuthzConfig`].
#[derive(Debug, Clone)]
pub struct CompiledExtAuthz {
    pub(crate) protocol: CompiledProtocol,
    pub(crate) forward_body_max: usize,
    pub(crate) timeout: Duration,
    pub(crate) failure_mode: FailureMode,
    pub(crate) failure_status: StatusCode,
    pub(crate) max_response_body: usize,
}

impl CompiledExtAuthz {
    /// Whether the gRPC protocol is used.
    pub fn is_grpc(&self) -> bool {
        matches!(self.protocol, CompiledProtocol::Grpc { .. })
    }

    /// The timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

fn names(field: &'static str, list: &[String]) -> Result<Vec<HeaderName>, ExtAuthzError> {
    list.iter()
        .map(|n| {
            HeaderName::from_bytes(n.as_bytes()).map_err(|_| ExtAuthzError::InvalidHeaderName {
                field,
                name: n.clone(),
            })
        })
        .collect()
}

impl TryFrom<ExtAuthzConfig> for CompiledExtAuthz {
    type Error = ExtAuthzError;

    fn try_from(c: ExtAuthzConfig) -> Result<Self, ExtAuthzError> {
        let protocol = match c.protocol {
            Protocol::Http {
                path_prefix,
                allowed_headers,
                allowed_response_headers,
            } => {
                // "Implementations MUST sanitize this input before using it directly."
                let bad = !path_prefix.is_empty()
                    && (!path_prefix.starts_with('/')
                        || path_prefix
                            .chars()
                            .any(|c| c == '?' || c == '#' || c.is_whitespace() || c.is_control())
                        || http::uri::PathAndQuery::try_from(path_prefix.as_str()).is_err());
                if bad {
                    return Err(ExtAuthzError::InvalidPath(path_prefix));
                }
                CompiledProtocol::Http {
                    // A trailing slash would double the request path's leading one.
                    path_prefix: path_prefix.trim_end_matches('/').to_owned(),
                    allowed_headers: names("allowedHeaders", &allowed_headers)?,
                    allowed_response_headers: names(
                        "allowedResponseHeaders",
                        &allowed_response_headers,
                    )?,
                }
            }
            Protocol::Grpc { allowed_headers } => CompiledProtocol::Grpc {
                allowed_headers: names("allowedHeaders", &allowed_headers)?,
            },
        };
        if c.timeout.is_zero() {
            return Err(ExtAuthzError::ZeroTimeout);
        }
        let failure_status = StatusCode::from_u16(c.failure_status)
            .ok()
            .filter(|s| s.is_client_error() || s.is_server_error())
            .ok_or(ExtAuthzError::FailureStatus(c.failure_status))?;
        Ok(CompiledExtAuthz {
            protocol,
            forward_body_max: c.forward_body_max as usize,
            timeout: c.timeout,
            failure_mode: c.failure_mode,
            failure_status,
            max_response_body: c.max_response_body,
        })
    }
}
