//! Errors compiling JWT validation, and why a token is refused.

/// Why a JWKS or a [`JwtConfig`](super::JwtConfig) does not compile.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// The JWKS file could not be read.
    #[error("cannot read JWKS file {path}")]
    ReadJwks {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The JWKS is not a JSON object with a `keys` array.
    #[error("JWKS is not a JSON object with a `keys` array: {0}")]
    JwksSyntax(String),
    /// A key of a supported type is malformed.
    #[error("JWKS key {index} (kid {kid:?}) is malformed: {reason}")]
    BadKey {
        /// Position in `keys`.
        index: usize,
        /// Its `kid`, if any.
        kid: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// The JWKS has no key this crate can verify with (RSA of 2048 bits or more, EC P-256 or
    /// P-384, Ed25519), so every token would be refused.
    #[error("JWKS has no usable signing key (RSA >= 2048 bits, EC P-256/P-384 or Ed25519)")]
    NoUsableKeys,
    /// An algorithm name in the configuration is unknown or not allowed (`none`, `HS*`).
    #[error(
        "JWT algorithm {0:?} is not supported; use RS256/384/512, PS256/384/512, ES256, ES384 or EdDSA"
    )]
    UnsupportedAlgorithm(String),
    /// A remote JWKS URL is not a valid `https://` URL.
    #[error("JWKS URL {uri:?} is not usable: {reason}")]
    BadUri {
        /// The URL.
        uri: String,
        /// What is wrong.
        reason: String,
    },
    /// No CA certificate to verify a JWKS server with: the PEM bundles given hold none, or the
    /// platform has no trusted CAs (set `SSL_CERT_FILE`, or give the CA explicitly).
    #[error("no trusted CA certificate to verify the JWKS server with")]
    NoTrustedCa,
    /// The TLS client settings could not be built.
    #[error("TLS settings for the JWKS server: {0}")]
    Tls(String),
    /// An issuer or audience in the configuration is empty.
    #[error("JWT {field} contains an empty string")]
    EmptyValue {
        /// `issuers` or `audiences`.
        field: &'static str,
    },
}

/// Why a token is refused (answered `401` with `error="invalid_token"`). Exposed for logs and
/// for callers of [`CompiledJwt::validate`](super::CompiledJwt::validate).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not three base64url parts with JSON header and claims.
    #[error("token is malformed")]
    Malformed,
    /// The header's `alg` is not one the configuration allows.
    #[error("token algorithm {0:?} is not allowed")]
    Algorithm(String),
    /// The header carries `crit` extensions, none of which are understood.
    #[error("token has critical header extensions")]
    Critical,
    /// No key of the JWKS matches the token's `kid` and `alg`.
    #[error("no key matches the token (kid {0:?})")]
    UnknownKey(Option<String>),
    /// No matching key verifies the signature.
    #[error("token signature does not verify")]
    Signature,
    /// `exp` has passed (beyond the clock skew).
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future (beyond the clock skew).
    #[error("token is not valid yet")]
    NotYetValid,
    /// A required claim is missing or has the wrong type.
    #[error("token claim {0:?} is missing or malformed")]
    Claim(&'static str),
    /// `iss` is not an accepted issuer.
    #[error("token issuer is not accepted")]
    Issuer,
    /// No `aud` is an accepted audience.
    #[error("token audience is not accepted")]
    Audience,
}
