//! Reading the configuration directory.

use std::path::{Path, PathBuf};

/// The manifests found under a path, with their contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigFiles {
    /// `(path, contents)` sorted by path.
    pub files: Vec<(PathBuf, String)>,
    /// Files that could not be read.
    pub errors: Vec<String>,
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

/// Reads every `*.yaml`, `*.yml` and `*.json` file under `root` (recursively, following
/// symlinks). Hidden files and directories are skipped: Kubernetes ConfigMap volumes keep the
/// real files under `..data` and timestamped `..` directories and expose them through
/// symlinks, so reading the symlinks alone sees each file once.
pub(crate) fn read(root: &Path) -> ConfigFiles {
    let mut out = ConfigFiles {
        files: Vec::new(),
        errors: Vec::new(),
    };
    if root.is_file() {
        match std::fs::read_to_string(root) {
            Ok(text) => out.files.push((root.to_path_buf(), text)),
            Err(e) => out.errors.push(format!("{}: {e}", root.display())),
        }
        return out;
    }
    let mut stack = vec![root.to_path_buf()];
    let mut depth_guard = 0usize;
    while let Some(dir) = stack.pop() {
        depth_guard += 1;
        if depth_guard > 100_000 {
            out.errors
                .push("too many directories under the config path".into());
            break;
        }
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                out.errors.push(format!("{}: {e}", dir.display()));
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
                match std::fs::read_to_string(&path) {
                    Ok(text) => out.files.push((path, text)),
                    Err(e) => out.errors.push(format!("{}: {e}", path.display())),
                }
            }
        }
    }
    out.files.sort_by(|a, b| a.0.cmp(&b.0));
    out.errors.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_manifests_recursively_and_skips_hidden() {
        let dir = std::env::temp_dir().join(format!("gw-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::create_dir_all(dir.join("..data")).unwrap();
        std::fs::write(dir.join("a.yaml"), "a").unwrap();
        std::fs::write(dir.join("sub/b.json"), "b").unwrap();
        std::fs::write(dir.join("sub/c.txt"), "c").unwrap();
        std::fs::write(dir.join("..data/d.yaml"), "d").unwrap();
        let files = read(&dir);
        let names: Vec<_> = files
            .files
            .iter()
            .map(|(p, _)| p.strip_prefix(&dir).unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.yaml", "sub/b.json"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
