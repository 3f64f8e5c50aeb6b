//! Errors compiling basic auth.

/// Why an htpasswd file or a realm does not compile into
/// [`CompiledBasicAuth`](super::CompiledBasicAuth).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BasicAuthError {
    /// A line is not `user:hash`.
    #[error("htpasswd line {line} is not `user:hash`")]
    MalformedLine {
        /// 1-based line number.
        line: usize,
    },
    /// A user appears twice.
    #[error("htpasswd line {line}: user {user:?} is already defined")]
    DuplicateUser {
        /// 1-based line number.
        line: usize,
        /// The user.
        user: String,
    },
    /// A known but insecure scheme (`$apr1$` and `$1$` MD5, crypt(3) DES, plain text).
    #[error(
        "htpasswd line {line}: user {user:?} uses the insecure {scheme} scheme; \
         rehash with bcrypt (`htpasswd -B`)"
    )]
    InsecureScheme {
        /// 1-based line number.
        line: usize,
        /// The user.
        user: String,
        /// The scheme found.
        scheme: &'static str,
    },
    /// A scheme this crate does not verify (for example `$5$`/`$6$` SHA-crypt or argon2).
    #[error(
        "htpasswd line {line}: user {user:?} uses an unsupported hash scheme ({prefix:?}); \
         use bcrypt (`htpasswd -B`) or {{SHA}}"
    )]
    UnknownScheme {
        /// 1-based line number.
        line: usize,
        /// The user.
        user: String,
        /// The start of the hash, enough to name the scheme.
        prefix: String,
    },
    /// A bcrypt or `{SHA}` hash that does not decode.
    #[error("htpasswd line {line}: user {user:?} has a malformed {scheme} hash")]
    MalformedHash {
        /// 1-based line number.
        line: usize,
        /// The user.
        user: String,
        /// `bcrypt` or `{SHA}`.
        scheme: &'static str,
    },
    /// The realm cannot be sent in a quoted `WWW-Authenticate` parameter.
    #[error("basic auth realm {realm:?} contains a quote, backslash or control character")]
    InvalidRealm {
        /// The realm as given.
        realm: String,
    },
    /// The htpasswd file defines no user, so every request would be refused.
    #[error("htpasswd defines no user")]
    NoUsers,
}
