//! Backend resilience settings that no Gateway API field carries: outlier detection and the
//! key that signs session persistence tokens (the `--outlier-*` and `--session-key-file`
//! flags). Documented in the README ("Backend resilience").

use std::path::PathBuf;
use std::time::Duration;

use gw_router::{OutlierConfig, RouterConfig, SessionKey};

use crate::limits::parse_nonzero_duration;

/// Outlier detection and session signing.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Resilience {
    /// Outlier detection: eject an endpoint after this many failures in a row (5xx responses,
    /// connection failures, resets, backend timeouts). 0 (the default) turns it off.
    #[arg(long, default_value_t = 0)]
    pub outlier_consecutive_failures: u32,
    /// Length of a first ejection; each further ejection of the endpoint adds as much.
    #[arg(long, default_value = "30s", value_parser = parse_nonzero_duration)]
    pub outlier_base_ejection_time: Duration,
    /// Longest ejection.
    #[arg(long, default_value = "300s", value_parser = parse_nonzero_duration)]
    pub outlier_max_ejection_time: Duration,
    /// Largest share (%) of a Service's endpoints ejected at once; one may always be.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub outlier_max_ejection_percent: u32,
    /// File holding the secret (at least 16 bytes; surrounding whitespace is ignored) that
    /// signs session persistence tokens. Give every replica the same file so that sessions
    /// survive restarts and work on any replica. Default: a random key per process.
    #[arg(long)]
    pub session_key_file: Option<PathBuf>,
}

impl Resilience {
    /// `base` with these settings.
    pub(crate) fn apply(&self, mut base: RouterConfig) -> Result<RouterConfig, String> {
        if self.outlier_consecutive_failures > 0 {
            base = base
                .with_outlier_detection(OutlierConfig {
                    consecutive_failures: self.outlier_consecutive_failures,
                    base_ejection_time: self.outlier_base_ejection_time,
                    max_ejection_time: self.outlier_max_ejection_time,
                    max_ejection_percent: self.outlier_max_ejection_percent,
                })
                .map_err(|e| e.to_string())?;
        }
        if let Some(path) = &self.session_key_file {
            let secret = std::fs::read(path)
                .map_err(|e| format!("--session-key-file {}: {e}", path.display()))?;
            let key = SessionKey::from_secret(secret.trim_ascii())
                .map_err(|e| format!("--session-key-file {}: {e}", path.display()))?;
            base = base.with_session_key(key);
        }
        Ok(base)
    }
}
