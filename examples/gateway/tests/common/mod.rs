//! Helpers shared by the gw-gateway end-to-end tests: start the binary on a temporary config
//! directory, poll its admin endpoints, send plain HTTP/1.1 requests.

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
            .stdout(Stdio::null())
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
