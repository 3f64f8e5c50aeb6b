//! Connection and request limits of the data-plane listeners, and the shutdown deadline: the
//! `--max-*`, `--*-timeout` flags. The defaults are documented in the README ("Operations").

use std::time::Duration;

/// Limits applied to every HTTP, HTTPS, TLS and TCP listener.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Limits {
    /// Most request headers a request may carry (HTTP/1 and HTTP/2); more: 431.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_request_headers: u32,
    /// Most bytes of request headers (HTTP/1: request line and headers, at least 8192;
    /// HTTP/2: the header list size as HTTP/2 counts it); more: 431.
    #[arg(long, default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(8192..=16_777_216))]
    pub max_header_bytes: u32,
    /// Longest request URI (request target) in bytes; longer: 414.
    #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_uri_bytes: u32,
    /// HTTP/1: how long a client may take to send a request's headers, from their first byte
    /// (slowloris). 0 disables it.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// HTTP/1: how long a keep-alive connection may wait for its next request (or a new
    /// connection for its first) before it is closed. 0 disables it.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub http1_idle_timeout: Duration,
    /// HTTP/2: how long a connection may stay without open streams before it is closed.
    /// 0 disables it.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub http2_idle_timeout: Duration,
    /// How long a write to the client may make no progress (the client does not read its
    /// response) before the connection is closed. 0 disables it.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub write_stall_timeout: Duration,
    /// Slowest request body a client may send, in bytes per second, counted over the time
    /// the gateway waits for the client (after `--request-body-grace`); slower: 408 and the
    /// connection closed. 0 disables it.
    #[arg(long, default_value_t = 1024)]
    pub request_body_min_rate: u64,
    /// Time a request body may take on top of what `--request-body-min-rate` allows.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub request_body_grace: Duration,
    /// How often an HTTP/2 connection is pinged to check that the client is still there.
    /// 0 disables the pings.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub http2_keep_alive_interval: Duration,
    /// How long an HTTP/2 keep-alive ping may stay unanswered before the connection is closed.
    #[arg(long, default_value = "20s", value_parser = parse_nonzero_duration)]
    pub http2_keep_alive_timeout: Duration,
    /// Most concurrent streams (requests) per HTTP/2 connection.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub http2_max_concurrent_streams: u32,
    /// HTTP/2: streams the client may open and reset before the gateway has accepted them
    /// (the "rapid reset" attack, CVE-2023-44487); more: GOAWAY and the connection closed.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub http2_max_pending_accept_reset_streams: u32,
    /// HTTP/2: streams the gateway may reset because of the client's protocol errors on one
    /// connection (CVE-2024-27316-style floods); more: GOAWAY and the connection closed.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub http2_max_local_error_reset_streams: u32,
    /// HTTP/2: most control frames (SETTINGS, PING, PRIORITY, RST_STREAM) and empty DATA or
    /// CONTINUATION frames a client may send per second; more: the connection is closed.
    /// 0: no limit.
    #[arg(long, default_value_t = 1000)]
    pub http2_max_control_frames: u32,
    /// HTTP/2: bytes buffered per stream for sending to the client.
    #[arg(long, default_value_t = 409_600, value_parser = clap::value_parser!(u32).range(16_384..))]
    pub http2_max_send_buf_size: u32,
    /// Merge repeated slashes in request paths (`//a` is `/a`) before matching and forwarding.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub path_merge_slashes: bool,
    /// What to do with an encoded slash (`%2F`) in a request path: `reject` (400),
    /// `redirect` (308 to the path with `/`) or `keep` (match and forward it encoded).
    #[arg(long, default_value = "reject")]
    pub path_encoded_slash: gw_router::normalize::SlashAction,
    /// What to do with a backslash (`\` or `%5C`) in a request path: `reject`, `redirect` or
    /// `keep`, as for `--path-encoded-slash`.
    #[arg(long, default_value = "reject")]
    pub path_backslash: gw_router::normalize::SlashAction,
    /// How long a client may take to complete a TLS handshake (and to send its ClientHello on
    /// TLS listeners).
    #[arg(long, default_value = "10s", value_parser = parse_nonzero_duration)]
    pub tls_handshake_timeout: Duration,
    /// Most open connections per listener socket; over it, a connection is accepted and closed
    /// at once.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections_per_listener: u32,
    /// Most open connections over all listener sockets; over it, a connection is accepted and
    /// closed at once.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
    /// On SIGTERM or Ctrl-C: how long in-flight requests and connections may take to finish
    /// before the process exits anyway.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
}

impl Limits {
    /// The path normalization options of the router.
    pub(crate) fn path_policy(&self) -> gw_router::normalize::PathPolicy {
        gw_router::normalize::PathPolicy::default()
            .with_merge_slashes(self.path_merge_slashes)
            .with_encoded_slash(self.path_encoded_slash)
            .with_backslash(self.path_backslash)
    }
}

/// Parses `500ms`, `10s`, `2m`, `1h`, or a bare number of seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (examples: 500ms, 10s, 2m)"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        "h" => Ok(Duration::from_secs(n.saturating_mul(3600))),
        _ => Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    }
}

/// Like [`parse_duration`], refusing 0.
pub(crate) fn parse_nonzero_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("must be more than 0".to_owned()),
        d => Ok(d),
    }
}

/// `None` for zero (disabled).
pub(crate) fn nonzero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("1.5s").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("3d").is_err());
        assert!(parse_nonzero_duration("0s").is_err());
    }
}
