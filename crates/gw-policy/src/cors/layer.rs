use std::sync::Arc;

use tower::Layer;

use super::{CompiledCors, Cors};

/// Applies a [`CompiledCors`] policy to every request: preflights are answered by the layer,
/// actual requests get the CORS response headers. See the [module docs](super).
#[derive(Debug, Clone)]
pub struct CorsLayer {
    policy: Arc<CompiledCors>,
}

impl CorsLayer {
    /// A layer applying `policy`.
    pub fn new(policy: CompiledCors) -> Self {
        CorsLayer {
            policy: Arc::new(policy),
        }
    }

    /// A layer sharing an already shared policy.
    pub fn from_shared(policy: Arc<CompiledCors>) -> Self {
        CorsLayer { policy }
    }
}

impl<S> Layer<S> for CorsLayer {
    type Service = Cors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Cors::new(inner, self.policy.clone())
    }
}
