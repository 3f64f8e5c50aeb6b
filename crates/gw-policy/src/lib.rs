//! Gateway API policies as tower `Layer`s.
//!
//! This crate will hold the policy middleware (CORS, CEL transformations, external authorization,
//! basic auth, API keys, JWT, local rate limiting, retry budgets, session persistence, outlier
//! detection), each a tower `Layer` that takes configuration compiled by [`gw_model`]. It has no
//! layers yet.

pub use gw_model;
