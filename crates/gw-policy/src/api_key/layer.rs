use std::sync::Arc;

use tower::Layer;

use super::{ApiKey, CompiledApiKeys};

/// Requires an API key; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct ApiKeyLayer {
    keys: Arc<CompiledApiKeys>,
}

impl ApiKeyLayer {
    /// A layer accepting `keys`.
    pub fn new(keys: CompiledApiKeys) -> Self {
        ApiKeyLayer {
            keys: Arc::new(keys),
        }
    }
}

impl<S> Layer<S> for ApiKeyLayer {
    type Service = ApiKey<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiKey {
            inner,
            keys: self.keys.clone(),
        }
    }
}
