//! The `gw-gateway` process under test: where the binary is, how it is started (the reference
//! binary contract of DESIGN.md), its admin endpoints, and writing its configuration folder.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::client;
use crate::cluster::{CONTROLLER_NAME, Cluster};

/// The environment variable naming a prebuilt `gw-gateway` (skips locating and building it).
pub const GATEWAY_BIN_ENV: &str = "GW_GATEWAY_BIN";

/// The file (inside the config folder) that holds every manifest of a test.
const CONFIG_FILE: &str = "cluster.yaml";

/// Finds the `gw-gateway` binary.
///
/// 1. `GW_GATEWAY_BIN`, when set, must name it.
/// 2. Otherwise it is `target/<profile>/gw-gateway` of the running test executable
///    (`target/<profile>/deps/replay-<hash>`). When that file is missing, or older than a source
///    file of the crates it is built from, `cargo build -p gw-gateway` is run once for the same
///    target folder and profile (`$CARGO`, from the workspace root).
pub fn locate_gateway() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(GATEWAY_BIN_ENV) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "{GATEWAY_BIN_ENV}={} is not a file",
                path.display()
            ))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("{} is not in target/<profile>/deps", exe.display()))?;
    let binary = profile_dir.join(format!("gw-gateway{}", std::env::consts::EXE_SUFFIX));
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if binary.is_file() && !stale(&binary, &workspace) {
        return Ok(binary);
    }
    let target_dir = profile_dir
        .parent()
        .ok_or_else(|| format!("{} has no parent", profile_dir.display()))?;
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_owned(),
        Some(other) => other.to_owned(),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .args(["build", "-p", "gw-gateway", "--profile", &profile])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(&workspace)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            format!(
                "running {} build -p gw-gateway: {e}",
                cargo.to_string_lossy()
            )
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "cargo build -p gw-gateway failed ({}):\n{}",
            output.status,
            tail.join("\n")
        ));
    }
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!(
            "cargo build -p gw-gateway succeeded but {} does not exist",
            binary.display()
        ))
    }
}

/// Whether a source file (`src/**/*.rs`, `Cargo.toml`) of the crates the gateway is built from,
/// or `Cargo.lock`, is newer than the binary.
fn stale(binary: &Path, workspace: &Path) -> bool {
    let Ok(built) = binary.metadata().and_then(|m| m.modified()) else {
        return true;
    };
    let crates = [
        "examples/gateway",
        "examples/echo",
        "crates/gw-model",
        "crates/gw-router",
        "crates/gw-policy",
    ];
    let newest = crates
        .iter()
        .filter_map(|c| newest_source(&workspace.join(c).join("src")))
        .chain(
            crates
                .iter()
                .filter_map(|c| newest_source_file(&workspace.join(c).join("Cargo.toml"))),
        )
        .chain(newest_source_file(&workspace.join("Cargo.lock")))
        .max();
    newest.is_some_and(|t| t > built)
}

fn newest_source_file(path: &Path) -> Option<SystemTime> {
    path.metadata().and_then(|m| m.modified()).ok()
}

fn newest_source(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if path.is_dir() {
                if !name.starts_with('.') {
                    stack.push(path);
                }
            } else if name.ends_with(".rs") {
                newest = newest.max(newest_source_file(&path));
            }
        }
    }
    newest
}

/// Writes every manifest of the cluster into `dir/cluster.yaml` (one JSON document per object,
/// which is valid YAML), atomically: a temporary file beside it is renamed over it, so the
/// gateway never reads half a file.
pub fn write_config(dir: &Path, cluster: &Cluster) -> Result<(), String> {
    let mut text = String::new();
    for (_, manifest) in cluster.objects() {
        let doc = serde_json::to_string(manifest).map_err(|e| format!("serializing: {e}"))?;
        text.push_str("---\n");
        text.push_str(&doc);
        text.push('\n');
    }
    let tmp = dir.join(format!("{CONFIG_FILE}.tmp"));
    std::fs::write(&tmp, text).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    let path = dir.join(CONFIG_FILE);
    std::fs::rename(&tmp, &path).map_err(|e| format!("renaming to {}: {e}", path.display()))
}

/// A running `gw-gateway`; killed when dropped.
#[derive(Debug)]
pub struct GatewayProcess {
    child: Child,
    /// The admin address.
    pub admin: SocketAddr,
    log: PathBuf,
}

impl GatewayProcess {
    /// Starts `gw-gateway --config <config> --controller-name gw.dev/gateway
    /// --gateway-address-pool <pool> --admin <admin>`, logging to `log`.
    pub fn spawn(
        binary: &Path,
        config: &Path,
        pool: &str,
        admin: SocketAddr,
        log: &Path,
    ) -> Result<GatewayProcess, String> {
        let out =
            std::fs::File::create(log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("cloning {}: {e}", log.display()))?;
        let child = Command::new(binary)
            .arg("--config")
            .arg(config)
            .args(["--controller-name", CONTROLLER_NAME])
            .args(["--gateway-address-pool", pool])
            .args(["--admin", &admin.to_string()])
            .env(
                "RUST_LOG",
                std::env::var("GW_CONFORMANCE_GATEWAY_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        Ok(GatewayProcess {
            child,
            admin,
            log: log.to_path_buf(),
        })
    }

    /// Waits until `/readyz` answers 200; `Err` (with the log's tail) when the process exits
    /// or the deadline passes.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "gw-gateway exited ({status}) before it was ready; log:\n{}",
                    self.log_tail(20)
                ));
            }
            match client::get(self.admin, "/readyz", Duration::from_secs(2)).await {
                Ok((200, _)) => return Ok(()),
                Ok((code, body)) => {
                    last = format!(
                        "/readyz answered {code}: {}",
                        String::from_utf8_lossy(&body)
                    );
                }
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "gw-gateway was not ready within {timeout:?} ({last}); log:\n{}",
            self.log_tail(20)
        ))
    }

    /// `/status` as JSON.
    pub async fn status(&self) -> Result<Value, String> {
        let (code, body) = client::get(self.admin, "/status", Duration::from_secs(5)).await?;
        if code != 200 {
            return Err(format!(
                "/status answered {code}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        serde_json::from_slice(&body).map_err(|e| format!("/status is not JSON: {e}"))
    }

    /// The last `lines` lines of the process's output.
    pub fn log_tail(&self, lines: usize) -> String {
        let Ok(mut file) = std::fs::File::open(&self.log) else {
            return String::from("(no log)");
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)));
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        let tail: Vec<&str> = text.lines().rev().take(lines).collect();
        tail.into_iter()
            .rev()
            .map(|l| format!("    | {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `metadata.resourceVersion` of a `/status` list (the gateway bumps it on every reload).
pub fn resource_version(status: &Value) -> Option<String> {
    status
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The top-level `errors` of a `/status` list.
pub fn status_errors(status: &Value) -> Vec<String> {
    status
        .get("errors")
        .and_then(Value::as_array)
        .map(|errors| {
            errors
                .iter()
                .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
