//! Errors setting up session persistence, and why a session token is refused.

/// Why a [`SessionKey`](super::SessionKey) cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The secret is too short to sign sessions safely.
    #[error("session secret has {len} bytes; use at least {min} random bytes")]
    SecretTooShort {
        /// Bytes given.
        len: usize,
        /// Bytes needed.
        min: usize,
    },
    /// The system's random number generator failed.
    #[error("the system random number generator failed; cannot make a session key")]
    Random,
}

/// Why a session token does not select an endpoint; the request is then load balanced and a
/// new session begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionRejected {
    /// Not a token this gateway issues (wrong length, encoding or version).
    #[error("malformed session token")]
    Malformed,
    /// Signed with another key, for another route rule, or altered.
    #[error("session token signature does not match (another key, another route rule, or altered)")]
    BadSignature,
    /// Older than `absoluteTimeout`.
    #[error("session is older than its absolute timeout")]
    Expired,
    /// Unused for longer than `idleTimeout`.
    #[error("session was idle for longer than its idle timeout")]
    Idle,
}
