//! Errors compiling a transformation.

/// Why a [`TransformConfig`](super::TransformConfig) does not compile. The message names the
/// field and the expression, for a policy status condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransformError {
    /// A header name is not a valid HTTP header name.
    #[error("transformation header name {name:?} is not a valid header name")]
    InvalidHeaderName {
        /// The name as given.
        name: String,
    },
    /// A CEL expression does not parse.
    #[error("CEL expression {expression:?} for {field} does not compile: {message}")]
    Expression {
        /// Where the expression is, e.g. `requestHeaders.set[x-user]` or `path`.
        field: String,
        /// The expression as written.
        expression: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A request-side expression reads `response`, which does not exist yet.
    #[error(
        "CEL expression {expression:?} for {field} reads `response`, which only response \
         header expressions can use"
    )]
    ResponseInRequest {
        /// Where the expression is.
        field: String,
        /// The expression as written.
        expression: String,
    },
}
