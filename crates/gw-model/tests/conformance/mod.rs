//! A replay harness for the `status_checks` of the Gateway API v1.6.1 conformance corpus
//! (`/work/shared/conformance`, see its README) against gw-model, without a network: the corpus
//! manifests are applied to an emulated cluster the way the Go suite applies them, compiled with
//! `gw_model::compile`, and every status check is matched against the resulting status `List`.
//!
//! - [`corpus`]: where the corpus is and its `test.yaml` schema;
//! - [`features`]: the claimed feature set, `features:` and `preconditions:`;
//! - [`certs`]: the Secrets and ConfigMaps the suite creates programmatically;
//! - [`cluster`]: the emulated cluster (manifest preparation, addresses, compile);
//! - [`mutations`]: the mid-test mutations that can be replayed exactly;
//! - [`status`]: the status `List` read back as data;
//! - [`checks`]: the check kinds and the README's matching rules;
//! - [`runner`]: per-test orchestration and the report.

pub(crate) mod certs;
pub(crate) mod checks;
pub(crate) mod cluster;
pub(crate) mod corpus;
pub(crate) mod features;
pub(crate) mod mutations;
pub(crate) mod runner;
pub(crate) mod status;
