//! A replay harness for the `status_checks` of the Gateway API v1.6.1 conformance corpus
//! (`/work/shared/conformance`, see its README) against gw-model, without a network: the corpus
//! manifests are applied to an emulated cluster the way the Go suite applies them, compiled with
//! `gw_model::compile`, and every status check is matched against the resulting status `List`.
//!
//! The corpus schema, the claimed features, the programmatic certificates, the emulated cluster,
//! the mutations and the check logic live in the `gw-conformance` crate
//! (`examples/conformance`), shared with the live replay against `gw-gateway`; this module only
//! orchestrates the pure run:
//!
//! - [`runner`]: per-test orchestration and the report.

pub(crate) mod runner;
