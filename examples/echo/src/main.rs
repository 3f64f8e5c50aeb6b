//! `gw-echo`: a standalone echo backend answering like the Gateway API conformance
//! suite's echo-basic, configured by the same environment variables.
//!
//! Run `gw-echo --help` for the variables.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use gw_echo::{EchoConfig, EchoError, EchoMode, EchoServer, HttpsConfig, TlsIdentity};

const HELP: &str = "\
gw-echo: echo backend answering like the Gateway API conformance echo server (echo-basic)

USAGE: gw-echo [--listen IP]

  --listen IP   address to bind every listener to (env LISTEN_IP; default 127.0.0.1,
                use 0.0.0.0 to accept connections from other hosts)

Environment (as echo-basic):
  POD_NAME, NAMESPACE, SERVICE_NAME, INGRESS_NAME   reported in every reply
  HTTP_PORT (3000)       HTTP/1.1 + h2c echo (gRPC in GRPC_ECHO_SERVER mode)
  H2C_PORT (3001)        h2c-only echo (HTTP mode)
  HTTPS_PORT (8443)      TLS echo, when TLS_SERVER_CERT and TLS_SERVER_PRIVKEY
                         (or TLS_SERVER_PRIV_KEY) name PEM files
  TLS_CLIENT_CACERTS     PEM file: verify client certificates if given
  GRPC_ECHO_SERVER       non-empty: gRPC mode (GrpcEcho service)
  TCP_ECHO_SERVER        non-empty: TCP echo on TCP_PORT (3000), TLS on TLS_PORT (8443)
                         when the TLS certificate and key are set
  UDP_ECHO_SERVER        non-empty: UDP echo on UDP_PORT (8080)
  (TCP_ECHO_SERVER and UDP_ECHO_SERVER together run both.)

Runs until Ctrl-C or SIGTERM.";

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn port(name: &str, default: u16) -> Result<u16, EchoError> {
    match env(name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| EchoError::Config(format!("{name}={v:?} is not a port number (0-65535)"))),
    }
}

fn read_file(var: &str, path: &str) -> Result<String, EchoError> {
    std::fs::read_to_string(path)
        .map_err(|e| EchoError::Config(format!("cannot read {var} file {path:?}: {e}")))
}

/// Parses `--listen IP` / `--listen=IP`; `Ok(None)` means `--help` was asked for.
fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<Option<String>>, EchoError> {
    let mut listen = None;
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--listen" => {
                listen =
                    Some(args.next().ok_or_else(|| {
                        EchoError::Config("--listen needs an IP address".to_owned())
                    })?);
            }
            other => match other.strip_prefix("--listen=") {
                Some(ip) => listen = Some(ip.to_owned()),
                None => {
                    return Err(EchoError::Config(format!(
                        "unknown argument {other:?} (try --help)"
                    )));
                }
            },
        }
    }
    Ok(Some(listen))
}

fn config_from_env(listen: Option<String>) -> Result<EchoConfig, EchoError> {
    let ip: IpAddr = match listen.or_else(|| env("LISTEN_IP")) {
        None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Some(ip) => ip.parse().map_err(|_| {
            EchoError::Config(format!("listen address {ip:?} is not an IP address"))
        })?,
    };
    let at = |port: u16| SocketAddr::new(ip, port);

    let cert = env("TLS_SERVER_CERT");
    let key = env("TLS_SERVER_PRIVKEY").or_else(|| env("TLS_SERVER_PRIV_KEY"));
    let identity = match (cert, key) {
        (Some(cert), Some(key)) => Some(TlsIdentity {
            cert_pem: read_file("TLS_SERVER_CERT", &cert)?,
            key_pem: read_file("TLS_SERVER_PRIVKEY", &key)?,
        }),
        _ => None,
    };

    let mut config = EchoConfig {
        pod: env("POD_NAME").unwrap_or_default(),
        namespace: env("NAMESPACE").unwrap_or_default(),
        service: env("SERVICE_NAME").unwrap_or_default(),
        ingress: env("INGRESS_NAME").unwrap_or_default(),
        log_to_stderr: true,
        ..EchoConfig::default()
    };

    let tcp_mode = env("TCP_ECHO_SERVER").is_some();
    let udp_mode = env("UDP_ECHO_SERVER").is_some();
    if tcp_mode || udp_mode {
        if tcp_mode {
            config.tcp = Some(at(port("TCP_PORT", 3000)?));
            if let Some(identity) = identity {
                config.tcp_tls = Some((at(port("TLS_PORT", 8443)?), identity));
            }
        }
        if udp_mode {
            config.udp = Some(at(port("UDP_PORT", 8080)?));
        }
        return Ok(config);
    }

    let http_port = port("HTTP_PORT", 3000)?;
    config.http = Some(at(http_port));
    config.http_port = Some(http_port.to_string());
    if env("GRPC_ECHO_SERVER").is_some() {
        config.mode = EchoMode::Grpc;
    } else {
        config.h2c = Some(at(port("H2C_PORT", 3001)?));
    }
    if let Some(identity) = identity {
        let client_ca_pem = match env("TLS_CLIENT_CACERTS") {
            Some(path) => Some(read_file("TLS_CLIENT_CACERTS", &path)?),
            None => None,
        };
        config.https = Some(HttpsConfig {
            addr: at(port("HTTPS_PORT", 8443)?),
            cert_pem: identity.cert_pem,
            key_pem: identity.key_pem,
            client_ca_pem,
        });
    }
    Ok(config)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn run() -> Result<(), EchoError> {
    let Some(listen) = parse_args(std::env::args().skip(1))? else {
        println!("{HELP}");
        return Ok(());
    };
    let config = config_from_env(listen)?;
    let mode = config.mode;
    let server = EchoServer::start(config).await?;
    let listeners = [
        ("http", server.http_addr()),
        ("h2c", server.h2c_addr()),
        ("https", server.https_addr()),
        ("tcp", server.tcp_addr()),
        ("tls", server.tcp_tls_addr()),
        ("udp", server.udp_addr()),
    ];
    for (name, addr) in listeners {
        if let Some(addr) = addr {
            let name = match (mode, name) {
                (EchoMode::Grpc, "http") => "grpc",
                (EchoMode::Grpc, "https") => "grpc over tls",
                _ => name,
            };
            eprintln!("Starting server, listening on {addr} ({name})");
        }
    }
    wait_for_signal().await;
    eprintln!("Shutting down");
    server.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gw-echo: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> impl Iterator<Item = String> {
        v.iter()
            .map(|s| (*s).to_owned())
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn parses_listen_flag() {
        assert_eq!(parse_args(args(&[])).unwrap(), Some(None));
        assert_eq!(
            parse_args(args(&["--listen", "0.0.0.0"])).unwrap(),
            Some(Some("0.0.0.0".to_owned()))
        );
        assert_eq!(
            parse_args(args(&["--listen=::1"])).unwrap(),
            Some(Some("::1".to_owned()))
        );
        assert_eq!(parse_args(args(&["--help"])).unwrap(), None);
        assert!(parse_args(args(&["--listen"])).is_err());
        assert!(parse_args(args(&["--bogus"])).is_err());
    }
}
