//! Errors compiling API keys.

/// Why an API key configuration does not compile into
/// [`CompiledApiKeys`](super::CompiledApiKeys).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiKeyError {
    /// No key is configured, so every request would be refused.
    #[error("no API key is configured")]
    NoKeys,
    /// A client's key is empty.
    #[error("the API key of client {client:?} is empty")]
    EmptyKey {
        /// The client.
        client: String,
    },
    /// Two clients share a key, so the client could not be told.
    #[error("clients {first:?} and {second:?} have the same API key; give each its own")]
    DuplicateKey {
        /// The first client with the key.
        first: String,
        /// The second.
        second: String,
    },
    /// The header to read keys from is not a valid header name.
    #[error("API key header {name:?} is not a valid header name")]
    InvalidHeaderName {
        /// The name as given.
        name: String,
    },
    /// The query parameter to read keys from is empty.
    #[error("the API key query parameter name is empty")]
    EmptyQueryParameter,
}
