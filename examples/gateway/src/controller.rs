//! Turns the files into a compiled configuration: object metadata, addresses, compile.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use gw_model::load::{self, LoadError};
use gw_model::resources::{Kind, Object, ObjectKey, Resources};
use gw_model::status::GatewayStatusAddress;
use gw_model::{CompileOptions, Compiled, compile};
use ipnet::IpNet;

use crate::files::ConfigFiles;

/// One compiled configuration.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    /// The compiled table and status.
    pub compiled: Compiled,
    /// Errors of the attempt that produced (or failed to replace) this snapshot.
    pub errors: Vec<String>,
    /// Unknown-field warnings.
    pub warnings: Vec<String>,
    /// Increments on every successful reload.
    pub version: u64,
}

/// Remembers what the files do not say: when each object was first seen, its generation, and
/// the address each Gateway got from the pool.
pub(crate) struct Controller {
    controller_name: String,
    pool: Option<IpNet>,
    seen: HashMap<(Kind, ObjectKey), Seen>,
    assigned: BTreeMap<ObjectKey, IpAddr>,
    version: u64,
    last_good: Option<Resources>,
}

struct Seen {
    created: String,
    spec: serde_json::Value,
    generation: i64,
}

impl Controller {
    pub(crate) fn new(controller_name: String, pool: Option<IpNet>) -> Self {
        Controller {
            controller_name,
            pool,
            seen: HashMap::new(),
            assigned: BTreeMap::new(),
            version: 0,
            last_good: None,
        }
    }

    /// Loads the files and compiles them. With load errors, the last good resources keep
    /// serving (the errors are reported); on the very first load, what did load is used.
    pub(crate) fn reload(&mut self, files: &ConfigFiles, extra: &[Object]) -> Snapshot {
        let mut errors: Vec<String> = files.errors.clone();
        let mut warnings = Vec::new();
        let mut objects = extra.to_vec();
        for (path, text) in &files.files {
            let loaded = load::parse(&path.display().to_string(), text);
            errors.extend(loaded.errors.iter().map(LoadError::to_string));
            warnings.extend(loaded.warnings.iter().map(ToString::to_string));
            objects.extend(loaded.objects);
        }
        for e in &errors {
            tracing::error!(error = %e, "configuration error");
        }
        for w in &warnings {
            tracing::warn!(warning = %w, "configuration warning");
        }
        let resources = if errors.is_empty() || self.last_good.is_none() {
            let mut res = Resources::new();
            for mut o in objects {
                self.stamp(&mut o);
                res.insert(o);
            }
            self.last_good = Some(res.clone());
            self.version += 1;
            res
        } else {
            tracing::error!("keeping the last good configuration");
            self.last_good.clone().unwrap_or_default()
        };
        let options = self.options(&resources);
        let mut compiled = compile(&resources, &options);
        compiled
            .status
            .stamp_transition_times(None, &jiff::Timestamp::now().to_string());
        Snapshot {
            compiled,
            errors,
            warnings,
            version: self.version,
        }
    }

    /// Compiles the state a Kubernetes cluster published (gw-k8s): the same compile as for
    /// files, with the addresses of the Service in front of the replicas. Objects come with
    /// their metadata from the API server, so nothing is stamped.
    #[cfg(feature = "k8s")]
    pub(crate) fn compile_cluster(&mut self, state: &gw_k8s::ClusterState) -> Snapshot {
        for w in &state.warnings {
            tracing::warn!(warning = %w, "configuration warning");
        }
        let options = state.compile_options(&self.controller_name);
        let mut compiled = compile(&state.resources, &options);
        compiled
            .status
            .stamp_transition_times(None, &jiff::Timestamp::now().to_string());
        self.version = state.version;
        Snapshot {
            compiled,
            errors: state.errors.clone(),
            warnings: state.warnings.clone(),
            version: self.version,
        }
    }

    /// Fills `creationTimestamp` (first seen) and `generation` (bumped when the spec changes)
    /// of objects whose files do not set them.
    fn stamp(&mut self, o: &mut Object) {
        let key = (o.kind(), o.key());
        let spec = o.spec_json();
        let now = jiff::Timestamp::now().to_string();
        let seen = self.seen.entry(key).or_insert_with(|| Seen {
            created: now,
            spec: spec.clone(),
            generation: 1,
        });
        if seen.spec != spec {
            seen.spec = spec;
            seen.generation += 1;
        }
        let meta = o.metadata_mut();
        if meta.creation_timestamp.is_none() {
            meta.creation_timestamp = Some(seen.created.clone());
        }
        if meta.generation.is_none() {
            meta.generation = Some(seen.generation);
        }
    }

    fn options(&mut self, res: &Resources) -> CompileOptions {
        let mut options = CompileOptions::new(self.controller_name.clone());
        options.now = Some(jiff::Timestamp::now());
        // TrafficPolicy sections are checked by the code that will serve them.
        options.policy_validator = Some(gw_router::policy_validator());
        options.usable_networks = vec![
            IpNet::from(IpAddr::from([127, 0, 0, 0])),
            IpNet::from(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])),
        ];
        if let Ok(loopback) = "127.0.0.0/8".parse() {
            options.usable_networks[0] = loopback;
        }
        let Some(pool) = self.pool else {
            return options;
        };
        options.usable_networks.push(pool);
        // Release addresses of Gateways that are gone; keep the others stable.
        self.assigned.retain(|k, _| res.gateways.contains_key(k));
        for (key, g) in &res.gateways {
            let wants =
                g.spec.addresses.is_empty() || g.spec.addresses.iter().any(|a| a.value.is_empty());
            if !wants {
                continue;
            }
            if !self.assigned.contains_key(key) {
                let used: Vec<IpAddr> = self.assigned.values().copied().collect();
                if let Some(ip) = pool.hosts().find(|ip| !used.contains(ip)) {
                    self.assigned.insert(key.clone(), ip);
                } else {
                    tracing::error!(gateway = %key, %pool, "address pool exhausted");
                }
            }
            if let Some(ip) = self.assigned.get(key) {
                options.assigned_addresses.insert(
                    key.clone(),
                    vec![GatewayStatusAddress {
                        type_: "IPAddress".into(),
                        value: ip.to_string(),
                    }],
                );
            }
        }
        options
    }
}
