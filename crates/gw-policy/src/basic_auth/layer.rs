use std::sync::Arc;

use tower::Layer;

use super::{BasicAuth, CompiledBasicAuth};

/// Requires HTTP basic authentication against an htpasswd file; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct BasicAuthLayer {
    config: Arc<CompiledBasicAuth>,
}

impl BasicAuthLayer {
    /// A layer checking credentials against `config`.
    pub fn new(config: CompiledBasicAuth) -> Self {
        BasicAuthLayer {
            config: Arc::new(config),
        }
    }
}

impl<S> Layer<S> for BasicAuthLayer {
    type Service = BasicAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BasicAuth {
            inner,
            config: self.config.clone(),
        }
    }
}
