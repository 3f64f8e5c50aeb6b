use std::sync::Arc;

use tower::Layer;

use super::{CompiledJwt, Jwt};

/// Requires a valid JWT bearer token; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct JwtLayer {
    providers: Arc<[CompiledJwt]>,
}

impl JwtLayer {
    /// A layer validating tokens with `config`.
    pub fn new(config: CompiledJwt) -> Self {
        JwtLayer {
            providers: Arc::new([config]),
        }
    }

    /// A layer accepting a token when one of `providers` (tried in order) accepts it; its claim
    /// headers are set. With no provider, every request is refused.
    pub fn any_of(providers: impl IntoIterator<Item = CompiledJwt>) -> Self {
        JwtLayer {
            providers: providers.into_iter().collect(),
        }
    }
}

impl<S> Layer<S> for JwtLayer {
    type Service = Jwt<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Jwt {
            inner,
            providers: self.providers.clone(),
        }
    }
}
