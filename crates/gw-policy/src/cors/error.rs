//! Errors compiling a CORS policy.

/// Why a [`Cors`](gw_model::resources::Cors) spec does not compile into a
/// [`CompiledCors`](super::CompiledCors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CorsError {
    /// An `allowOrigins` entry is neither `*` nor `scheme://host[:port]` (the host may start
    /// with `*.`).
    #[error("CORS origin {origin:?} is not `*` or scheme://host[:port]; check allowOrigins")]
    InvalidOrigin {
        /// The entry as written.
        origin: String,
    },
    /// A list (`allowMethods`, `allowHeaders` or `exposeHeaders`) does not make a valid HTTP
    /// header value once joined with `, `.
    #[error("CORS {field} {list:?} is not a valid header value; check for control characters")]
    InvalidList {
        /// The field: `allowMethods`, `allowHeaders` or `exposeHeaders`.
        field: &'static str,
        /// The list as written.
        list: Vec<String>,
    },
}
