//! Errors returned when starting an [`EchoServer`](crate::EchoServer).

use std::net::SocketAddr;

/// Why an [`EchoServer`](crate::EchoServer) could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EchoError {
    /// The configuration enables no listener at all.
    #[error(
        "the echo configuration enables no listener: set at least one of `http`, `h2c`, `https`, `tcp`, `tcp_tls` or `udp`"
    )]
    NoListener,

    /// A listener could not bind its address.
    #[error(
        "cannot bind the {listener} listener to {addr}: {source} (is the port already in use or privileged? use port 0 to let the OS pick a free one)"
    )]
    Bind {
        /// Which listener (`http`, `h2c`, `https`, `tcp`, `tcp-tls`, `udp`).
        listener: &'static str,
        /// The address it tried to bind.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The certificate, private key or client CA of a TLS listener is unusable.
    #[error("invalid TLS material for the {listener} listener: {reason}")]
    Tls {
        /// Which listener (`https`, `tcp-tls`).
        listener: &'static str,
        /// What is wrong, e.g. which PEM block is missing.
        reason: String,
    },

    /// A configuration value is invalid (used by the `gw-echo` binary for its
    /// environment variables and flags).
    #[error("invalid configuration: {0}")]
    Config(String),

    /// Another I/O error while setting up a listener.
    #[error("I/O error while starting the {listener} listener: {source}")]
    Io {
        /// Which listener.
        listener: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}
