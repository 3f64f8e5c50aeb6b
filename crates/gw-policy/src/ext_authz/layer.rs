use tower::Layer;

use super::{Authorizer, CompiledExtAuthz, ExtAuthz};

/// Asks an external auth service before forwarding; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct ExtAuthzLayer<C> {
    authorizer: Authorizer<C>,
}

impl<C> ExtAuthzLayer<C> {
    /// A layer checking requests with `config` through `client` (a tower `Service` that sends
    /// requests to the auth service).
    pub fn new(config: CompiledExtAuthz, client: C) -> Self {
        ExtAuthzLayer {
            authorizer: Authorizer::new(config, client),
        }
    }
}

impl<S, C: Clone> Layer<S> for ExtAuthzLayer<C> {
    type Service = ExtAuthz<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        ExtAuthz {
            inner,
            authorizer: self.authorizer.clone(),
        }
    }
}
