//! Kubernetes integration for gw.
//!
//! This crate will watch Gateway API resources through kube-rs, feed them to [`gw_model`] and
//! write the computed status back. It has no controller yet.

pub use gw_model;
