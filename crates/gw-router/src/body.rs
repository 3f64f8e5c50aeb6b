//! The response body type of the [`Router`](crate::Router).

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// A boxed error, as carried by [`Body`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response the [`Router`](crate::Router) returns: a backend's streamed
/// body, or the gateway's own (empty or small) bodies.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// An empty body.
pub(crate) fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body of the given bytes.
pub(crate) fn full(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}
