//! Turns the files into a compiled configuration: object metadata, addresses, compile.

use std::collections::{BTreeMap, HashMap};

/// The reload's own maps: keyed by object keys and by text hashes, looked up for every object
/// of a changed file on every reload, so hashed with foldhash rather than SipHash (which was
/// 0.8 million instructions of a one-route change at 5,000 routes). Nothing in them comes
/// from a peer, only from the configuration files.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::net::IpAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use gw_model::load::{self, LoadError};
use gw_model::resources::{Kind, Object, ObjectKey, Resources};
use gw_model::status::GatewayStatusAddress;
use gw_model::{Changes, CompileOptions, Compiled, Compiler};
use ipnet::IpNet;

use crate::files::{self, ConfigFiles};

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

impl Snapshot {
    /// Stamps every condition's `lastTransitionTime`: the time it had in `previous` when its
    /// status is the same there (metav1.Condition: "the last time the condition transitioned
    /// from one status to another"), the current time otherwise.
    pub(crate) fn stamp(&mut self, previous: Option<&Snapshot>) {
        self.compiled.status.stamp_transition_times(
            previous.map(|p| &p.compiled.status),
            &jiff::Timestamp::now().to_string(),
        );
    }
}

/// Remembers what the files do not say (the address each Gateway got from the pool; an
/// object's creation time and generation stay on the object), and which objects each file
/// defined, so that a reload parses only the files that changed.
pub(crate) struct Controller {
    controller_name: String,
    pool: Option<IpNet>,
    assigned: BTreeMap<ObjectKey, IpAddr>,
    version: u64,
    /// The objects being served: the last good configuration.
    resources: Resources,
    /// The files whose objects are in `resources`.
    applied: BTreeMap<PathBuf, Applied>,
    /// Whether `resources` has been loaded once.
    loaded: bool,
    /// Some object is defined twice (in two files, or in a file and the built-in objects):
    /// reloads then rebuild everything in path order, so the last definition wins as it would
    /// on a first load.
    overlapping: bool,
    /// Files read and parsed by the last reload.
    files_parsed: usize,
    /// Documents of those files parsed (the others had not changed).
    docs_parsed: usize,
    /// Objects the last reload inserted, changed or removed (`None`: everything was loaded
    /// again).
    objects_changed: Option<usize>,
    /// Keeps compiled routes between reloads: a reload compiles again the routes it changed.
    compiler: Compiler,
}

/// What one file contributed to [`Controller::resources`].
struct Applied {
    hash: u64,
    keys: Vec<(Kind, ObjectKey)>,
    /// Documents of the file that did not load (only a first load applies such a file).
    errors: Vec<String>,
    warnings: Vec<String>,
    /// The documents that loaded without errors or warnings, by the hash of their text, with
    /// the range of `keys` they defined: when the file changes, a document whose text did not
    /// change is not parsed again. (Ranges, not keys: no allocation per document.)
    docs: FastMap<u64, Range<usize>>,
}

/// The keys the changed files defined before (each marked once defined again), and the changes
/// found so far.
type Diff<'d> = (
    &'d mut FastMap<(Kind, ObjectKey), bool>,
    &'d mut Vec<(Kind, ObjectKey)>,
);

/// One document's objects in a file read for a reload.
enum Item {
    /// Parsed from the new text.
    Parsed(Box<Object>),
    /// The same text as before: the object already in the resources.
    Kept((Kind, ObjectKey)),
}

/// A file read and parsed for this reload.
struct Parsed {
    path: PathBuf,
    hash: u64,
    objects: Vec<Item>,
    docs: FastMap<u64, Range<usize>>,
    /// Documents parsed (the others were kept).
    docs_parsed: usize,
    errors: Vec<String>,
    warnings: Vec<String>,
}

/// How long each step of a reload took, for the log.
#[derive(Debug, Default)]
struct Timings {
    files_parsed: usize,
    parse: Duration,
    compile: Duration,
}

impl Controller {
    pub(crate) fn new(controller_name: String, pool: Option<IpNet>) -> Self {
        Controller {
            controller_name,
            pool,
            assigned: BTreeMap::new(),
            version: 0,
            resources: Resources::new(),
            applied: BTreeMap::new(),
            loaded: false,
            overlapping: false,
            files_parsed: 0,
            docs_parsed: 0,
            objects_changed: None,
            compiler: Compiler::default(),
        }
    }

    /// Loads the files that changed since the last good configuration and compiles. With load
    /// errors, the last good resources keep serving (the errors are reported); on the very
    /// first load, what did load is used.
    pub(crate) fn reload(&mut self, files: &ConfigFiles, extra: &[Object]) -> Snapshot {
        let mut snapshot = self.reload_unstamped(files, extra);
        snapshot.stamp(None);
        snapshot
    }

    /// [`reload`](Self::reload) without the status's transition times: a caller that serves
    /// the table first stamps them after ([`Snapshot::stamp`]), off the path to the first
    /// request that sees the change.
    pub(crate) fn reload_unstamped(&mut self, files: &ConfigFiles, extra: &[Object]) -> Snapshot {
        let started = Instant::now();
        let full = !self.loaded || self.overlapping;
        let mut timings = Timings::default();
        let mut errors: Vec<String> = files.errors.clone();
        let mut warnings = Vec::new();
        let mut parsed = Vec::new();
        for (path, hash) in &files.files {
            if let Some(a) = self.applied.get(path)
                && a.hash == *hash
                && !full
            {
                errors.extend(a.errors.iter().cloned());
                warnings.extend(a.warnings.iter().cloned());
                continue;
            }
            // Read again: the scan keeps hashes, not contents. A file rewritten since the
            // scan is parsed as it is now; its new hash makes the next scan differ again.
            let text = match files::read_text(path) {
                Ok(t) => t,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let kept = if full { None } else { self.applied.get(path) };
            let file = load_file(path, &text, kept);
            errors.extend(file.errors.iter().cloned());
            warnings.extend(file.warnings.iter().cloned());
            parsed.push(file);
        }
        timings.files_parsed = parsed.len();
        self.files_parsed = parsed.len();
        self.docs_parsed = parsed.iter().map(|p| p.docs_parsed).sum();
        timings.parse = started.elapsed();
        for e in &errors {
            tracing::error!(error = %e, "configuration error");
        }
        for w in &warnings {
            tracing::warn!(warning = %w, "configuration warning");
        }
        let changes = if errors.is_empty() || !self.loaded {
            let changes = if full {
                self.rebuild(extra, parsed);
                Changes::All
            } else {
                match self.update(files, parsed) {
                    Some(changed) => Changes::Objects(changed),
                    None => {
                        // An object is now defined twice: rebuild in path order.
                        self.overlapping = true;
                        return self.reload_unstamped(files, extra);
                    }
                }
            };
            self.loaded = true;
            self.version += 1;
            changes
        } else {
            tracing::error!("keeping the last good configuration");
            Changes::Objects(Vec::new())
        };
        self.objects_changed = match &changes {
            Changes::All => None,
            Changes::Objects(o) => Some(o.len()),
        };
        let compile_started = Instant::now();
        let options = self.options();
        let compiled = self.compiler.compile(&self.resources, &options, &changes);
        timings.compile = compile_started.elapsed();
        tracing::debug!(
            files_parsed = timings.files_parsed,
            docs_parsed = self.docs_parsed,
            parse_ms = timings.parse.as_secs_f64() * 1e3,
            objects_changed = ?self.objects_changed,
            compile_ms = timings.compile.as_secs_f64() * 1e3,
            objects = self.resources.len(),
            "configuration compiled"
        );
        Snapshot {
            compiled,
            errors,
            warnings,
            version: self.version,
        }
    }

    /// Compiles the state a Kubernetes cluster published (gw-k8s): the same compile as for
    /// files, with the addresses of the Service in front of the replicas. Objects come with
    /// their metadata from the API server, so nothing is stamped but the conditions'
    /// transition times, kept from `previous` while a condition's status stays the same.
    #[cfg(feature = "k8s")]
    pub(crate) fn compile_cluster(
        &mut self,
        state: &gw_k8s::ClusterState,
        previous: Option<&Snapshot>,
    ) -> Snapshot {
        for w in &state.warnings {
            tracing::warn!(warning = %w, "configuration warning");
        }
        let options = state.compile_options(&self.controller_name);
        self.version = state.version;
        let mut snapshot = Snapshot {
            compiled: gw_model::compile(&state.resources, &options),
            errors: state.errors.clone(),
            warnings: state.warnings.clone(),
            version: self.version,
        };
        snapshot.stamp(previous);
        snapshot
    }

    /// Replaces everything: the built-in objects, then every file in path order (a later
    /// definition of an object replaces an earlier one).
    fn rebuild(&mut self, extra: &[Object], parsed: Vec<Parsed>) {
        // The last configuration: each object it has keeps its creation time and generation.
        let mut last = std::mem::take(&mut self.resources);
        let now = jiff::Timestamp::now().to_string();
        self.applied.clear();
        self.overlapping = false;
        for o in extra {
            let key = (o.kind(), o.key());
            if self.place(o.clone(), &key, Some(&mut last), &now).0 {
                self.overlapping = true;
            }
        }
        for p in parsed {
            let keys = self.insert_all(p.objects, None, Some(&mut last), &now);
            if keys.1 {
                self.overlapping = true;
            }
            self.applied.insert(
                p.path,
                Applied {
                    hash: p.hash,
                    keys: keys.0,
                    errors: p.errors,
                    warnings: p.warnings,
                    docs: p.docs,
                },
            );
        }
    }

    /// Applies the changed and removed files to the resources: the objects removed, replaced
    /// or inserted. An object a changed file defines again from the same text stays where it
    /// is, untouched (editing one route of a file moves no other object). `None` (with the
    /// resources half updated) when an object turns out to be defined twice.
    fn update(
        &mut self,
        files: &ConfigFiles,
        parsed: Vec<Parsed>,
    ) -> Option<Vec<(Kind, ObjectKey)>> {
        let gone: Vec<PathBuf> = self
            .applied
            .keys()
            .filter(|p| !files.files.contains_key(*p))
            .cloned()
            .collect();
        let changed = parsed.iter().map(|p| p.path.clone());
        // The objects the changed and removed files defined, each marked once defined again.
        let mut before: FastMap<(Kind, ObjectKey), bool> = FastMap::default();
        for path in gone.into_iter().chain(changed) {
            if let Some(old) = self.applied.remove(&path) {
                before.extend(old.keys.into_iter().map(|k| (k, false)));
            }
        }
        let mut touched = Vec::new();
        let mut unique = true;
        let now = jiff::Timestamp::now().to_string();
        for p in parsed {
            let (keys, replaced) =
                self.insert_all(p.objects, Some((&mut before, &mut touched)), None, &now);
            unique &= !replaced;
            self.applied.insert(
                p.path,
                Applied {
                    hash: p.hash,
                    keys,
                    errors: p.errors,
                    warnings: p.warnings,
                    docs: p.docs,
                },
            );
        }
        // Defined before, not any more.
        for (key, again) in before {
            if !again {
                self.resources.remove(key.0, &key.1);
                touched.push(key);
            }
        }
        unique.then_some(touched)
    }

    /// Stamps and inserts one file's objects; returns their keys and whether one replaced an
    /// object already present (or, for a kept document, was not there to keep: either way the
    /// caller loads every file again). With `diff` (the keys the changed files defined before,
    /// each marked once defined again, and the list of changes), an object defined before is
    /// replaced only when it was parsed, and is a change only when it differs from its former
    /// self; kept objects stay as they are. `last` is the last configuration, on a full
    /// reload.
    fn insert_all(
        &mut self,
        objects: Vec<Item>,
        mut diff: Option<Diff<'_>>,
        mut last: Option<&mut Resources>,
        now: &str,
    ) -> (Vec<(Kind, ObjectKey)>, bool) {
        let mut keys = Vec::with_capacity(objects.len());
        let mut replaced = false;
        for item in objects {
            // Whether the key was defined before by a changed file, and not yet again.
            let mut again = |key: &(Kind, ObjectKey)| {
                diff.as_mut()
                    .and_then(|(before, _)| before.get_mut(key))
                    .is_some_and(|defined| !std::mem::replace(defined, true))
            };
            match item {
                Item::Parsed(o) => {
                    let key = (o.kind(), o.key());
                    // A former definition in a changed file is replaced; any other one means
                    // the object is defined twice.
                    let redefined = again(&key);
                    let (earlier, changed) = self.place(*o, &key, last.as_deref_mut(), now);
                    replaced |= earlier && !redefined;
                    if let Some((_, touched)) = diff.as_mut()
                        && changed
                    {
                        touched.push(key.clone());
                    }
                    keys.push(key);
                }
                Item::Kept(key) => {
                    if !again(&key) {
                        replaced = true;
                        continue;
                    }
                    keys.push(key);
                }
            }
        }
        (keys, replaced)
    }

    /// Stamps and inserts an object, from its former self: the object it replaces in the
    /// resources (a former definition in a changed file, or an earlier definition of an object
    /// defined twice: the later definition wins and keeps the earlier one's creation time and
    /// generation), else the same object in `last` (the last configuration, on a full
    /// reload). Returns whether it replaced an object in the resources, and whether it differs
    /// from its former self (or has none).
    fn place(
        &mut self,
        mut o: Object,
        (kind, key): &(Kind, ObjectKey),
        last: Option<&mut Resources>,
        now: &str,
    ) -> (bool, bool) {
        let earlier = self.resources.remove(*kind, key);
        let replaced = earlier.is_some();
        let former = match earlier {
            Some(_) => earlier,
            None => last.and_then(|last| last.remove(*kind, key)),
        };
        stamp(&mut o, former.as_ref(), now);
        let changed = former.as_ref() != Some(&o);
        self.resources.insert(o);
        (replaced, changed)
    }

    fn options(&mut self) -> CompileOptions {
        let res = &self.resources;
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

/// Parses a file's documents; with `kept` (the clean documents of the file as last applied, by
/// the hash of their text), a document whose text is among them is not parsed again.
fn load_file(path: &std::path::Path, text: &str, kept: Option<&Applied>) -> Parsed {
    let source = path.display().to_string();
    let mut out = Parsed {
        path: path.to_path_buf(),
        hash: files::content_hash(text),
        objects: Vec::new(),
        docs: FastMap::default(),
        docs_parsed: 0,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let documents = load::documents(text);
    out.docs.reserve(documents.len());
    for (index, doc) in documents.into_iter().enumerate() {
        let hash = files::content_hash(doc);
        let start = out.objects.len();
        if let Some(keys) = kept.and_then(|a| a.keys.get(a.docs.get(&hash)?.clone())) {
            out.objects.extend(keys.iter().cloned().map(Item::Kept));
            out.docs.insert(hash, start..out.objects.len());
            continue;
        }
        let loaded = load::parse_document(&source, index, doc);
        out.docs_parsed += 1;
        if loaded.errors.is_empty() && loaded.warnings.is_empty() {
            out.docs.insert(hash, start..start + loaded.objects.len());
        }
        out.errors
            .extend(loaded.errors.iter().map(LoadError::to_string));
        out.warnings
            .extend(loaded.warnings.iter().map(ToString::to_string));
        out.objects.extend(
            loaded
                .objects
                .into_iter()
                .map(|o| Item::Parsed(Box::new(o))),
        );
    }
    out
}

/// Fills what the API server would set and a file does not: `metadata.creationTimestamp`
/// and `metadata.generation`. An object that replaces `former` (the same kind and key) keeps
/// its creation time, and its generation grows when (and only when) the spec changed; an
/// object without one is new: created `now`, generation 1 (as a deleted and created again
/// Kubernetes object is).
fn stamp(o: &mut Object, former: Option<&Object>, now: &str) {
    let meta = o.metadata();
    let generation = meta.generation.is_none().then(|| match former {
        None => 1,
        Some(f) => {
            let generation = f.metadata().generation.unwrap_or(1);
            if f.spec_json() == o.spec_json() {
                generation
            } else {
                generation + 1
            }
        }
    });
    let created = meta.creation_timestamp.is_none().then(|| {
        former
            .and_then(|f| f.metadata().creation_timestamp.clone())
            .unwrap_or_else(|| now.to_owned())
    });
    let meta = o.metadata_mut();
    if let Some(generation) = generation {
        meta.generation = Some(generation);
    }
    if let Some(created) = created {
        meta.creation_timestamp = Some(created);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::Scanner;

    const BASE: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gw}
spec: {controllerName: gw.dev/gateway}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: default}
spec:
  gatewayClassName: gw
  listeners: [{name: http, port: 8080, protocol: HTTP}]
";

    fn route(name: &str, path: &str) -> String {
        format!(
            "---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: edge}}]
  rules: [{{matches: [{{path: {{type: PathPrefix, value: {path}}}}}]}}]
"
        )
    }

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let dir = std::env::temp_dir().join(format!("gw-ctl-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Dir(dir)
        }
        fn write(&self, file: &str, text: &str) {
            std::fs::write(self.0.join(file), text).unwrap();
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A directory holding the GatewayClass and Gateway of [`BASE`], a scanner, and a
    /// controller that has loaded nothing yet.
    fn with_base(name: &str) -> (Dir, Scanner, Controller) {
        let dir = Dir::new(name);
        dir.write("0-base.yaml", BASE);
        let c = Controller::new("gw.dev/gateway".into(), None);
        (dir, Scanner::default(), c)
    }

    /// The routes of the compiled table: (name, first path) in table order.
    fn served(s: &Snapshot) -> Vec<(String, String)> {
        s.compiled.table.gateways[0].listeners[0]
            .http
            .iter()
            .map(|e| (e.route.key.name.clone(), e.matches[0].path.value.clone()))
            .collect()
    }

    /// What a controller that has seen nothing before makes of the same files.
    fn fresh(dir: &Dir) -> Vec<(String, String)> {
        let mut c = Controller::new("gw.dev/gateway".into(), None);
        served(&c.reload(&Scanner::default().scan(&dir.0), &[]))
    }

    #[test]
    fn a_reload_parses_only_changed_files_and_matches_a_full_load() {
        let (dir, mut scanner, mut c) = with_base("incremental");
        dir.write("a.yaml", &(route("a", "/a") + &route("a2", "/a2")));
        dir.write("b.yaml", &route("b", "/b"));
        let first = c.reload(&scanner.scan(&dir.0), &[]);
        assert_eq!(c.files_parsed, 3);
        assert_eq!(served(&first), fresh(&dir));

        // One file changes: an object leaves it, another changes its path.
        dir.write("a.yaml", &route("a", "/a-new"));
        let second = c.reload(&scanner.scan(&dir.0), &[]);
        assert_eq!(c.files_parsed, 1);
        assert_eq!(c.objects_changed, Some(2), "a changed, a2 is gone");
        assert!(second.errors.is_empty(), "{:?}", second.errors);
        assert_eq!(served(&second), fresh(&dir));
        assert!(!served(&second).iter().any(|(n, _)| n == "a2"));

        // A file goes away: its objects go with it.
        std::fs::remove_file(dir.0.join("b.yaml")).unwrap();
        let third = c.reload(&scanner.scan(&dir.0), &[]);
        assert_eq!(c.files_parsed, 0);
        assert_eq!(c.objects_changed, Some(1));
        assert_eq!(served(&third), fresh(&dir));
        assert!(!served(&third).iter().any(|(n, _)| n == "b"));
        assert_eq!(third.version, 3);
    }

    /// Editing one route of a file names that route alone as changed: the Compiler then
    /// compiles one route, not the file's every object.
    #[test]
    fn only_the_objects_that_differ_are_changes() {
        let service = "---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {ports: [{port: 80}]}
";
        let (dir, mut scanner, mut c) = with_base("diff");
        let file = |path_b: &str| format!("{service}{}{}", route("a", "/a"), route("b", path_b));
        dir.write("routes.yaml", &file("/b"));
        c.reload(&scanner.scan(&dir.0), &[]);
        assert_eq!(c.objects_changed, None, "a first load loads everything");
        dir.write("routes.yaml", &file("/b-new"));
        let s = c.reload(&scanner.scan(&dir.0), &[]);
        assert_eq!(c.files_parsed, 1);
        assert_eq!(
            c.docs_parsed, 1,
            "the Service and route a are not parsed again"
        );
        assert_eq!(c.objects_changed, Some(1), "only route b differs");
        assert_eq!(served(&s), fresh(&dir));
        // The same text again under another name: objects moved between files are no change.
        std::fs::remove_file(dir.0.join("routes.yaml")).unwrap();
        dir.write("moved.yaml", &file("/b-new"));
        let s = c.reload(&scanner.scan(&dir.0), &[]);
        assert_eq!(c.objects_changed, Some(0));
        assert_eq!(served(&s), fresh(&dir));
    }

    /// A route moved from one file to another in one reload (both files change) is neither a
    /// change nor an object defined twice; the objects both files keep stay as they were.
    #[test]
    fn an_object_moved_between_changed_files_is_no_change() {
        let (dir, mut scanner, mut c) = with_base("move");
        dir.write("x.yaml", &(route("a", "/a") + &route("b", "/b")));
        dir.write("y.yaml", &route("c", "/c"));
        c.reload(&scanner.scan(&dir.0), &[]);
        dir.write("x.yaml", &route("a", "/a"));
        dir.write("y.yaml", &(route("c", "/c") + &route("b", "/b")));
        let s = c.reload(&scanner.scan(&dir.0), &[]);
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        assert_eq!(c.files_parsed, 2);
        assert_eq!(c.docs_parsed, 1, "a and c are kept, b is parsed in y.yaml");
        assert_eq!(
            c.objects_changed,
            Some(0),
            "not loaded again: b is defined once"
        );
        assert_eq!(served(&s), fresh(&dir));
        // Then b leaves y.yaml too: it is gone.
        dir.write("y.yaml", &route("c", "/c"));
        let s = c.reload(&scanner.scan(&dir.0), &[]);
        assert_eq!(c.objects_changed, Some(1));
        assert_eq!(served(&s), fresh(&dir));
        assert!(!served(&s).iter().any(|(n, _)| n == "b"));
    }

    /// Every condition the gateway reports carries `lastTransitionTime` (metav1.Condition:
    /// "lastTransitionTime is the last time the condition transitioned"); gw-gateway stamps
    /// them once the table is served.
    #[test]
    fn conditions_are_stamped_after_an_unstamped_reload() {
        let dir = Dir::new("stamp");
        dir.write("0-base.yaml", BASE);
        dir.write("a.yaml", &route("a", "/a"));
        let times = |s: &Snapshot| {
            s.compiled
                .status
                .entries
                .iter()
                .flat_map(|e| serde_json::to_value(&e.status).ok())
                .map(|v| v.to_string().matches("lastTransitionTime").count())
                .sum::<usize>()
        };
        let mut c = Controller::new("gw.dev/gateway".into(), None);
        let mut s = c.reload_unstamped(&Scanner::default().scan(&dir.0), &[]);
        assert_eq!(times(&s), 0);
        s.stamp(None);
        let stamped = times(&s);
        assert!(
            stamped >= 4,
            "class, gateway, listener and route conditions: {stamped}"
        );
        let mut c = Controller::new("gw.dev/gateway".into(), None);
        assert_eq!(
            times(&c.reload(&Scanner::default().scan(&dir.0), &[])),
            stamped
        );
    }

    /// metav1.Condition: "lastTransitionTime is the last time the condition transitioned from
    /// one status to another". A reload keeps the time of every condition whose status did not
    /// change, and stamps the others.
    #[test]
    fn transition_times_change_only_with_the_status() {
        let (dir, mut scanner, mut c) = with_base("transitions");
        dir.write("a.yaml", &route("a", "/a"));
        dir.write("b.yaml", &route("b", "/b"));
        let first = c.reload(&scanner.scan(&dir.0), &[]);
        // Route b now names a listener the Gateway does not have: it is no longer accepted.
        dir.write(
            "b.yaml",
            &route("b", "/b").replace("{name: edge}", "{name: edge, sectionName: nope}"),
        );
        std::thread::sleep(Duration::from_millis(5));
        let mut second = c.reload_unstamped(&scanner.scan(&dir.0), &[]);
        second.stamp(Some(&first));
        let time = |s: &Snapshot, name: &str, type_: &str| {
            let route = s
                .compiled
                .status
                .route(Kind::HttpRoute, &ObjectKey::new("default", name))
                .expect("route status");
            let c = route.parents[0]
                .conditions
                .iter()
                .find(|c| c.type_ == type_)
                .expect("condition");
            (c.status, c.last_transition_time.clone().expect("stamped"))
        };
        let (a1, a2) = (
            time(&first, "a", "Accepted"),
            time(&second, "a", "Accepted"),
        );
        assert_eq!(
            a1, a2,
            "route a did not change: its condition keeps its time"
        );
        let (b1, b2) = (
            time(&first, "b", "Accepted"),
            time(&second, "b", "Accepted"),
        );
        assert_ne!(b1.0, b2.0, "route b's Accepted changed status");
        assert_ne!(b1.1, b2.1, "and got a new transition time");
        assert_eq!(
            time(&first, "b", "ResolvedRefs"),
            time(&second, "b", "ResolvedRefs"),
            "route b's ResolvedRefs did not change"
        );
    }

    /// A kept document repeated in the file defines its object twice: the reload loads every
    /// file again, as for any object defined twice, and serves what a first load would.
    #[test]
    fn a_kept_document_repeated_loads_everything_again() {
        let (dir, mut scanner, mut c) = with_base("repeat");
        dir.write("r.yaml", &(route("a", "/a") + &route("b", "/b")));
        c.reload(&scanner.scan(&dir.0), &[]);
        dir.write(
            "r.yaml",
            &(route("a", "/a") + &route("a", "/a") + &route("b", "/b2")),
        );
        let s = c.reload(&scanner.scan(&dir.0), &[]);
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        assert_eq!(c.objects_changed, None, "everything was loaded again");
        assert_eq!(served(&s), fresh(&dir));
    }

    /// An object defined in two files: the later path wins, as on a first load, also when the
    /// earlier file changes afterwards.
    #[test]
    fn an_object_defined_twice_keeps_the_later_files_definition() {
        let (dir, mut scanner, mut c) = with_base("overlap");
        dir.write("a.yaml", &route("r", "/from-a"));
        c.reload(&scanner.scan(&dir.0), &[]);
        dir.write("b.yaml", &route("r", "/from-b"));
        let s = c.reload(&scanner.scan(&dir.0), &[]);
        assert_eq!(served(&s), [("r".to_owned(), "/from-b".to_owned())]);
        dir.write("a.yaml", &route("r", "/from-a-again"));
        let s = c.reload(&scanner.scan(&dir.0), &[]);
        assert_eq!(served(&s), [("r".to_owned(), "/from-b".to_owned())]);
        assert_eq!(served(&s), fresh(&dir));
        std::fs::remove_file(dir.0.join("b.yaml")).unwrap();
        let s = c.reload(&scanner.scan(&dir.0), &[]);
        assert_eq!(served(&s), [("r".to_owned(), "/from-a-again".to_owned())]);
    }

    /// A broken document keeps the last good configuration serving, including the good
    /// changes made to other files at the same time; fixing it applies everything.
    #[test]
    fn load_errors_keep_the_last_good_configuration() {
        let (dir, mut scanner, mut c) = with_base("errors");
        dir.write("a.yaml", &route("a", "/a"));
        dir.write("b.yaml", &route("b", "/b"));
        let good = served(&c.reload(&scanner.scan(&dir.0), &[]));
        dir.write("a.yaml", &route("a", "/a-changed"));
        dir.write(
            "b.yaml",
            "kind: HTTPRoute\napiVersion: gateway.networking.k8s.io/v1\nspec: [",
        );
        let s = c.reload(&scanner.scan(&dir.0), &[]);
        assert!(!s.errors.is_empty());
        assert_eq!(served(&s), good);
        assert_eq!(s.version, 1);
        dir.write("b.yaml", &route("b", "/b-fixed"));
        let s = c.reload(&scanner.scan(&dir.0), &[]);
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        assert_eq!(served(&s), fresh(&dir));
        assert!(served(&s).contains(&("a".to_owned(), "/a-changed".to_owned())));
        assert_eq!(s.version, 2);
    }

    /// `metadata.generation` of objects without one grows when (and only when) the spec
    /// changes, also when only other files changed in between.
    #[test]
    fn generation_grows_only_with_spec_changes() {
        let (dir, mut scanner, mut c) = with_base("generation");
        dir.write("a.yaml", &route("a", "/a"));
        let generation = |c: &Controller| {
            c.resources.http_routes[&ObjectKey::new("default", "a")]
                .metadata
                .generation
        };
        c.reload(&scanner.scan(&dir.0), &[]);
        assert_eq!(generation(&c), Some(1));
        dir.write("b.yaml", &route("b", "/b"));
        c.reload(&scanner.scan(&dir.0), &[]);
        assert_eq!(generation(&c), Some(1));
        dir.write("a.yaml", &format!("# a comment\n{}", route("a", "/a")));
        c.reload(&scanner.scan(&dir.0), &[]);
        assert_eq!(generation(&c), Some(1));
        dir.write("a.yaml", &route("a", "/a2"));
        c.reload(&scanner.scan(&dir.0), &[]);
        assert_eq!(generation(&c), Some(2));
    }

    /// metav1.ObjectMeta: `creationTimestamp` is set when the object is created, and
    /// `generation` is "a sequence number representing a specific generation of the desired
    /// state". A file that leaves them out gets them as from the API server: an edited or moved
    /// object keeps its creation time, one deleted and defined again is a new object, and an
    /// object defined twice (a file over a built-in object) keeps its stamps over reloads.
    #[test]
    fn objects_keep_their_creation_time_until_deleted() {
        let (dir, mut scanner, mut c) = with_base("created");
        dir.write("a.yaml", &route("a", "/a"));
        dir.write("b.yaml", &route("b", "/b"));
        let builtin = gw_model::load::parse("builtin.yaml", BASE).objects;
        let stamps = |c: &Controller, name: &str| {
            c.resources
                .http_routes
                .get(&ObjectKey::new("default", name))
                .map(|r| {
                    (
                        r.metadata.creation_timestamp.clone().expect("stamped"),
                        r.metadata.generation,
                    )
                })
        };
        let class = |c: &Controller| {
            let m = &c.resources.gateway_classes[&ObjectKey::new("", "gw")].metadata;
            (m.creation_timestamp.clone(), m.generation)
        };
        let mut reload = |c: &mut Controller| {
            // Reloads a few milliseconds apart: a new object gets a later time.
            std::thread::sleep(Duration::from_millis(3));
            let s = c.reload(&scanner.scan(&dir.0), &builtin);
            assert!(s.errors.is_empty(), "{:?}", s.errors);
        };
        reload(&mut c);
        let (created, generation) = stamps(&c, "a").expect("a");
        assert_eq!(generation, Some(1));
        let class_stamps = class(&c);
        assert_eq!(class_stamps.1, Some(1));

        dir.write("a.yaml", &route("a", "/a2"));
        reload(&mut c);
        assert_eq!(stamps(&c, "a"), Some((created.clone(), Some(2))), "edited");

        dir.write("a.yaml", "");
        dir.write("b.yaml", &(route("b", "/b") + &route("a", "/a2")));
        reload(&mut c);
        assert_eq!(stamps(&c, "a"), Some((created.clone(), Some(2))), "moved");

        dir.write("b.yaml", &route("b", "/b"));
        reload(&mut c);
        assert_eq!(stamps(&c, "a"), None);
        dir.write("a.yaml", &route("a", "/a2"));
        reload(&mut c);
        let (again, generation) = stamps(&c, "a").expect("a again");
        assert_eq!(generation, Some(1), "deleted, then created again");
        assert_ne!(again, created);
        assert_eq!(
            class(&c),
            class_stamps,
            "defined twice, reloaded five times"
        );
    }

    /// gw-k8s: the admin `/status` of a cluster keeps each condition's `lastTransitionTime`
    /// while its status stays the same (metav1.Condition), as a file reload does.
    #[cfg(feature = "k8s")]
    #[test]
    fn cluster_compiles_keep_transition_times() {
        let mut resources = Resources::new();
        resources.extend(
            gw_model::load::parse("cluster.yaml", &(BASE.to_owned() + &route("a", "/a"))).objects,
        );
        let state = gw_k8s::ClusterState {
            version: 1,
            resources,
            gateway_addresses: Vec::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
        };
        let mut c = Controller::new("gw.dev/gateway".into(), None);
        let first = c.compile_cluster(&state, None);
        let times = |s: &Snapshot| {
            let route = s
                .compiled
                .status
                .route(Kind::HttpRoute, &ObjectKey::new("default", "a"))
                .expect("route status");
            route.parents[0]
                .conditions
                .iter()
                .map(|c| c.last_transition_time.clone().expect("stamped"))
                .collect::<Vec<_>>()
        };
        std::thread::sleep(Duration::from_millis(3));
        let second = c.compile_cluster(&state, Some(&first));
        assert_eq!(times(&second), times(&first));
        std::thread::sleep(Duration::from_millis(3));
        let fresh = c.compile_cluster(&state, None);
        assert_ne!(
            times(&fresh),
            times(&first),
            "without a previous snapshot: stamped now"
        );
    }
}
