//! compile (in progress)
use std::collections::BTreeMap;

use crate::resources::{ObjectKey, Resources};
use crate::status::{GatewayStatusAddress, StatusReport};

/// Options of [`compile`].
#[derive(Debug, Clone, Default)]
pub struct CompileOptions {
    /// GatewayClasses whose `spec.controllerName` equals this are ours.
    pub controller_name: String,
    /// Addresses the embedder assigned to Gateways that have no `spec.addresses`.
    pub assigned_addresses: BTreeMap<ObjectKey, Vec<GatewayStatusAddress>>,
}

/// The output of [`compile`].
#[derive(Debug, Clone, Default)]
pub struct Compiled {
    /// Status of every object gw manages.
    pub status: StatusReport,
}

/// Compiles resources into a routing table and a status report.
pub fn compile(_resources: &Resources, _options: &CompileOptions) -> Compiled {
    Compiled::default()
}
