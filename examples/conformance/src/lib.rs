//! Replays the Gateway API v1.6.1 conformance corpus (`../shared/conformance`, see its README)
//! against gw, without a Kubernetes cluster.
//!
//! Two harnesses share this crate:
//!
//! - gw-model's `tests/conformance_status.rs` applies the corpus manifests to an emulated
//!   cluster ([`cluster`]), compiles them with `gw_model::compile` and matches every
//!   `status_checks` entry ([`checks`]) against the status `List`: pure, no network.
//! - this crate's `tests/replay.rs` runs the `gw-gateway` binary on the same manifests, starts
//!   the echo backends in-process on loopback addresses, sends the corpus's requests and checks
//!   the answers and the live `/status` ([`live`]).
//!
//! The reusable pieces:
//! - [`corpus`]: where the corpus is and its `test.yaml` schema;
//! - [`features`]: the claimed feature sets (one place for both harnesses), `features:` and
//!   `preconditions:`;
//! - [`certs`]: the Secrets and ConfigMaps the suite creates programmatically;
//! - [`cluster`]: the emulated cluster (manifest preparation, addresses, compile);
//! - [`mutations`]: the mid-test mutations that can be replayed exactly;
//! - [`status`]: a status `List` read back as data;
//! - [`checks`]: the status check kinds and the README's matching rules;
//! - [`report`]: the suite's `ConformanceReport` (GEP-1709) built from a live replay.

pub mod certs;
pub mod checks;
pub mod claims;
pub mod cluster;
pub mod corpus;
pub mod features;
pub mod live;
pub mod mutations;
pub mod report;
pub mod status;
