//! Reading the configuration directory.
//!
//! A reload must not cost more than what changed: [`Scanner::scan`] lists the manifests under
//! the config path and identifies each by a hash of its contents, but reads a file only when
//! its metadata (size, modification and change times, inode) differs from the last read, or
//! when that read was too close to the file's modification time to trust the metadata (a
//! write in the same timestamp tick leaves the modification time unchanged; this is git's
//! "racily clean" rule). The contents themselves are not kept: the controller reads and
//! parses only the files whose hash changed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A read is trusted to identify the contents until the metadata changes only if it happened
/// this long after the file's last modification (timestamp granularity and clock steps of
/// network filesystems stay well below it).
const RACY: Duration = Duration::from_secs(1);

/// The manifests found under a path, each with a hash of its contents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ConfigFiles {
    /// Path -> content hash, sorted by path.
    pub files: BTreeMap<PathBuf, u64>,
    /// Files that could not be read.
    pub errors: Vec<String>,
}

/// What identifies a file's contents without reading them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    inode: (u64, u64, i64, i64),
}

impl Fingerprint {
    fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt as _;
        Fingerprint {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            inode: (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec()),
        }
    }
}

struct Known {
    fingerprint: Fingerprint,
    hash: u64,
    /// Whether the fingerprint alone identifies the contents (see [`RACY`]).
    trusted: bool,
}

/// Lists manifests and hashes their contents, re-reading only files that may have changed.
#[derive(Default)]
pub(crate) struct Scanner {
    known: HashMap<PathBuf, Known>,
}

/// The hash identifying a file's contents.
pub(crate) fn content_hash(text: &str) -> u64 {
    use std::hash::BuildHasher as _;
    // foldhash's quality variant, with a fixed seed: the same text hashes the same way in every
    // scan and reload. Hashes are compared within the process only.
    foldhash::quality::FixedState::with_seed(0x6777_2d66_696c_6573).hash_one(text)
}

/// Reads a manifest as UTF-8 text.
pub(crate) fn read_text(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

impl Scanner {
    /// Lists every `*.yaml`, `*.yml` and `*.json` file under `root` (recursively, following
    /// symlinks) with the hash of its contents. Hidden files and directories are skipped:
    /// Kubernetes ConfigMap volumes keep the real files under `..data` and timestamped `..`
    /// directories and expose them through symlinks, so reading the symlinks alone sees each
    /// file once.
    pub(crate) fn scan(&mut self, root: &Path) -> ConfigFiles {
        let mut out = ConfigFiles::default();
        let mut found = Vec::new();
        if root.is_file() {
            match std::fs::metadata(root) {
                Ok(meta) => found.push((root.to_path_buf(), meta)),
                Err(e) => out.errors.push(format!("{}: {e}", root.display())),
            }
        } else {
            list(root, &mut found, &mut out.errors);
        }
        let mut known = HashMap::with_capacity(found.len());
        for (path, meta) in found {
            let fingerprint = Fingerprint::of(&meta);
            if let Some(k) = self.known.remove(&path)
                && k.trusted
                && k.fingerprint == fingerprint
            {
                out.files.insert(path.clone(), k.hash);
                known.insert(path, k);
                continue;
            }
            let read_at = SystemTime::now();
            match read_text(&path) {
                Ok(text) => {
                    let hash = content_hash(&text);
                    // Metadata taken before the read: a write during the read changes it.
                    let trusted = fingerprint
                        .modified
                        .is_some_and(|m| read_at.duration_since(m).is_ok_and(|age| age >= RACY));
                    out.files.insert(path.clone(), hash);
                    known.insert(
                        path,
                        Known {
                            fingerprint,
                            hash,
                            trusted,
                        },
                    );
                }
                Err(e) => out.errors.push(e),
            }
        }
        self.known = known;
        out.errors.sort();
        out
    }
}

fn list(root: &Path, found: &mut Vec<(PathBuf, std::fs::Metadata)>, errors: &mut Vec<String>) {
    let mut stack = vec![root.to_path_buf()];
    let mut depth_guard = 0usize;
    while let Some(dir) = stack.pop() {
        depth_guard += 1;
        if depth_guard > 100_000 {
            errors.push("too many directories under the config path".into());
            break;
        }
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                errors.push(format!("{}: {e}", dir.display()));
                continue;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if is_hidden(&path) {
                continue;
            }
            let Ok(meta) = std::fs::metadata(&path) else {
                // A dangling symlink (e.g. mid-swap): the next scan sees the new target.
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() && is_manifest(&path) {
                found.push((path, meta));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gw-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn reads_manifests_recursively_and_skips_hidden() {
        let dir = temp_dir("walk");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::create_dir_all(dir.join("..data")).unwrap();
        std::fs::write(dir.join("a.yaml"), "a").unwrap();
        std::fs::write(dir.join("sub/b.json"), "b").unwrap();
        std::fs::write(dir.join("sub/c.txt"), "c").unwrap();
        std::fs::write(dir.join("..data/d.yaml"), "d").unwrap();
        let files = Scanner::default().scan(&dir);
        let names: Vec<_> = files
            .files
            .keys()
            .map(|p| p.strip_prefix(&dir).unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.yaml", "sub/b.json"]);
        assert_eq!(files.files[&dir.join("a.yaml")], content_hash("a"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A rewrite that keeps the size and lands in the same timestamp tick leaves the metadata
    /// unchanged; a file modified less than a second before it was read is therefore read
    /// again on every scan.
    #[test]
    fn recently_modified_files_are_reread_even_with_unchanged_metadata() {
        let dir = temp_dir("racy");
        let path = dir.join("a.yaml");
        std::fs::write(&path, "one").unwrap();
        let mut scanner = Scanner::default();
        assert_eq!(scanner.scan(&dir).files[&path], content_hash("one"));
        assert!(!scanner.known[&path].trusted);
        // Pretend the last read saw other contents: the same metadata must not hide it.
        scanner.known.get_mut(&path).unwrap().hash = 42;
        assert_eq!(scanner.scan(&dir).files[&path], content_hash("one"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Files modified long before they were read are identified by their metadata alone.
    #[test]
    fn old_unchanged_files_are_not_reread() {
        let dir = temp_dir("trusted");
        let path = dir.join("a.yaml");
        std::fs::write(&path, "one").unwrap();
        let old = SystemTime::now() - Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_times(std::fs::FileTimes::new().set_modified(old))
            .unwrap();
        let mut scanner = Scanner::default();
        let first = scanner.scan(&dir);
        assert!(scanner.known[&path].trusted);
        // Unchanged metadata of an old file: the scan does not read it again.
        scanner.known.get_mut(&path).unwrap().hash = 42;
        assert_eq!(scanner.scan(&dir).files[&path], 42);
        assert_eq!(first.files[&path], content_hash("one"));
        // A new write changes the metadata (size here): read again.
        std::fs::write(&path, "three").unwrap();
        assert_eq!(scanner.scan(&dir).files[&path], content_hash("three"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
