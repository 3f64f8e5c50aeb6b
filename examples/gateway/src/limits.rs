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
    /// How long a client may take to send a request's headers. On HTTP/1 the clock starts
    /// when the connection waits for a request, so this is also the keep-alive idle timeout.
    /// 0 disables it.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
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
