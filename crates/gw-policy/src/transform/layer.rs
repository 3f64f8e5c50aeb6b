use std::sync::Arc;

use tower::Layer;

use super::{CompiledTransform, Transform};

/// Applies CEL transformations to requests and responses; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct TransformLayer {
    config: Arc<CompiledTransform>,
}

impl TransformLayer {
    /// A layer applying `config`.
    pub fn new(config: CompiledTransform) -> Self {
        TransformLayer {
            config: Arc::new(config),
        }
    }
}

impl<S> Layer<S> for TransformLayer {
    type Service = Transform<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Transform {
            inner,
            config: self.config.clone(),
        }
    }
}
