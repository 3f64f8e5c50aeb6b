//! Gateway API routing as a tower `Service`.
//!
//! This crate will turn a compiled [`gw_model`] routing table into a tower `Service` that routes
//! `http::Request`s by listener, hostname, path, method, headers and query parameters, applies the
//! route filters and forwards to backends. It currently re-exports the model it is built on; the
//! routing service lands with the HTTP data path.

pub use gw_model;
