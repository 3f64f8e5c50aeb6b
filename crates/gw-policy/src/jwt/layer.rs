use std::sync::Arc;

use tower::Layer;

use super::{CompiledJwt, Jwt};

/// Requires a valid JWT bearer token; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct JwtLayer {
    config: Arc<CompiledJwt>,
}

impl JwtLayer {
    /// A layer validating tokens with `config`.
    pub fn new(config: CompiledJwt) -> Self {
        JwtLayer {
            config: Arc::new(config),
        }
    }
}

impl<S> Layer<S> for JwtLayer {
    type Service = Jwt<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Jwt {
            inner,
            config: self.config.clone(),
        }
    }
}
