//! Helpers shared by the gw-gateway end-to-end tests: start the binary on a temporary config
//! directory, poll its admin endpoints, send plain HTTP/1.1 and HTTPS requests, make certificates.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `gw-gateway`, killed on drop.
pub struct Gateway {
    child: Child,
    admin: SocketAddr,
    dir: PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gw-gateway-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

impl Gateway {
    pub fn start(name: &str, pool: &str) -> Gateway {
        Gateway::start_with(name, pool, &[])
    }

    /// Like [`Gateway::start`], with extra command-line arguments.
    pub fn start_with(name: &str, pool: &str, args: &[&str]) -> Gateway {
        let dir = temp_dir(name);
        let config = dir.join("config");
        std::fs::create_dir_all(&config).expect("config dir");
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let child = Command::new(env!("CARGO_BIN_EXE_gw-gateway"))
            .arg("--config")
            .arg(&config)
            .arg("--admin")
            .arg(admin.to_string())
            .arg("--gateway-address-pool")
            .arg(pool)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(
                std::fs::File::create(dir.join("access.log"))
                    .map(Stdio::from)
                    .unwrap_or(Stdio::null()),
            )
            .stderr(
                std::fs::File::create(dir.join("gw.log"))
                    .map(Stdio::from)
                    .unwrap_or(Stdio::null()),
            )
            .spawn()
            .expect("spawn gw-gateway");
        let gw = Gateway { child, admin, dir };
        gw.wait_until("ready", |_| true);
        gw
    }

    /// The process id (to send signals with `kill`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (at most `timeout`) for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The gateway's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("gw.log")).unwrap_or_default()
    }

    /// The access log (stdout) so far.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("config")
    }

    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.admin, "127.0.0.1", path)
    }

    pub fn status(&self) -> Option<Value> {
        let (code, body) = self.get("/status")?;
        (code == 200)
            .then(|| serde_json::from_str(&body).ok())
            .flatten()
    }

    /// Polls `/status` until `f` holds (10 s at most).
    pub fn wait_until(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.status()
                && f(&s)
            {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                self.status()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

/// A minimal HTTP/1.1 GET (Connection: close) over a fresh TCP connection.
pub fn http_get(addr: SocketAddr, host: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.split(' ').nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((code, body))
}

/// A self-signed certificate for `names`: (certificate PEM, key PEM, certificate DER).
pub fn self_signed(names: &[&str]) -> (String, String, rustls::pki_types::CertificateDer<'static>) {
    self_signed_valid(names, None)
}

/// A self-signed certificate for `names`, valid from January 1st of the first year to January
/// 1st of the second when given (rcgen's default window otherwise).
pub fn self_signed_valid(
    names: &[&str],
    years: Option<(i32, i32)>,
) -> (String, String, rustls::pki_types::CertificateDer<'static>) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
            .expect("params");
    if let Some((from, until)) = years {
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(until, 1, 1);
    }
    let cert = params.self_signed(&key).expect("cert");
    (cert.pem(), key.serialize_pem(), cert.der().clone())
}

/// A `kubernetes.io/tls` Secret `default/name` as a YAML document (no leading `---`).
pub fn tls_secret(name: &str, cert_pem: &str, key_pem: &str) -> String {
    let indent = |pem: &str| -> String { pem.lines().map(|l| format!("    {l}\n")).collect() };
    format!(
        "apiVersion: v1
kind: Secret
metadata: {{name: {name}, namespace: default}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{}  tls.key: |
{}",
        indent(cert_pem),
        indent(key_pem)
    )
}

/// `GET /` over TLS 1.3/1.2 with `sni` and `host`, trusting `root`, offering `client` (cert,
/// key PEMs) when given: the status and the whole response, or the error (handshake refused,
/// connection closed).
pub fn https_get(
    addr: SocketAddr,
    sni: &str,
    host: &str,
    root: &rustls::pki_types::CertificateDer<'static>,
    client: Option<&(String, String)>,
) -> Result<(u16, String), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::io::{Read, Write};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).map_err(|e| e.to_string())?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?,
                PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())?,
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name =
        rustls::pki_types::ServerName::try_from(sni.to_owned()).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name)
        .map_err(|e| e.to_string())?;
    let tcp = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    match tls.read_to_end(&mut buf) {
        Ok(_) => {}
        // Servers may close without close_notify after `Connection: close`.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => {}
        Err(e) => return Err(e.to_string()),
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line: {text:?}"))?;
    Ok((code, text))
}

/// Service `default/web` (port 80, named `http`) and its EndpointSlice pointing at
/// 127.0.0.1:`echo_port`, as YAML documents (no leading `---`).
pub fn web_backend(echo_port: u16) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-1, namespace: default, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: http, port: {echo_port}}}]
endpoints: [{{addresses: [127.0.0.1]}}]
"
    )
}

/// An echo backend and a gateway serving `config(port, echo_port)` on `<pool_prefix>.1:<port>`,
/// once `GET ready_path` for `example.com` answers 200.
pub struct Setup {
    pub gw: Gateway,
    pub addr: SocketAddr,
    pub _echo: gw_echo::EchoServer,
    pub rt: tokio::runtime::Runtime,
}

pub fn setup(
    name: &str,
    pool_prefix: &str,
    args: &[&str],
    config: impl Fn(u16, u16) -> String,
    ready_path: &str,
) -> Setup {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let echo = rt
        .block_on(gw_echo::EchoServer::start(
            gw_echo::EchoConfig::loopback_http("web-abc-def", "default"),
        ))
        .expect("echo");
    let echo_port = echo.http_addr().expect("echo addr").port();
    let gw = Gateway::start_with(name, &format!("{pool_prefix}.0/24"), args);
    let port = free_port();
    std::fs::write(gw.config().join("all.yaml"), config(port, echo_port)).expect("write");
    let addr: SocketAddr = format!("{pool_prefix}.1:{port}").parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_get(addr, "example.com", ready_path).map(|r| r.0) != Some(200) {
        assert!(
            Instant::now() < deadline,
            "the route never served:\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    Setup {
        gw,
        addr,
        _echo: echo,
        rt,
    }
}

/// A TCP backend for one connection on 127.0.0.1: reads until the client's half-close,
/// answers `pong:` and what it read, and closes. Returns its port; the thread ends after the
/// connection.
pub fn tcp_backend() -> (u16, std::thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let t = std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got);
            let _ = s.write_all(&[b"pong:".as_slice(), &got].concat());
        }
    });
    (port, t)
}
