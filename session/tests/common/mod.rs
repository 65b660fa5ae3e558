//! Test harness: real `redis-server` processes (plain and Sentinel) on free loopback ports,
//! each in its own temp dir, killed by PID when the guard drops.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fulcrum_session::{Pinned, StoreOptions};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

pub mod cluster;

pub const REDIS: &str = "/usr/bin/redis-server";

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A running redis-server (or sentinel). Dropping it sends SIGCONT (in case the test froze
/// it) and SIGKILL, then reaps it.
pub struct RedisProc {
    child: Option<Child>,
    pub port: u16,
    _dir: TempDir,
}

impl RedisProc {
    pub fn start() -> Self {
        Self::start_on(free_port(), &[])
    }

    /// A plain server on `port`, no persistence; `extra` args are appended.
    pub fn start_on(port: u16, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(dir.path().display().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = Command::new(REDIS)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let p = Self {
            child: Some(child),
            port,
            _dir: dir,
        };
        p.wait_ready();
        p
    }

    /// A sentinel on a free port watching `master_port` under `name` (quorum 1, fast
    /// failure detection).
    pub fn start_sentinel(master_port: u16, name: &str) -> Self {
        Self::start_sentinel_with(master_port, name, 1, 500)
    }

    /// A sentinel with the given quorum and `down-after-milliseconds`.
    pub fn start_sentinel_with(master_port: u16, name: &str, quorum: u32, down_ms: u64) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        let text = format!(
            "port {port}\nbind 127.0.0.1\ndir {}\n\
             sentinel monitor {name} 127.0.0.1 {master_port} {quorum}\n\
             sentinel down-after-milliseconds {name} {down_ms}\n\
             sentinel failover-timeout {name} 2000\n",
            dir.path().display()
        );
        std::fs::write(&conf, text).expect("write sentinel.conf");
        let child = Command::new(REDIS)
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sentinel");
        let p = Self {
            child: Some(child),
            port,
            _dir: dir,
        };
        p.wait_ready();
        p
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// True until the process was killed by the test.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn pid(&self) -> Pid {
        let child = self.child.as_ref().expect("process already killed");
        Pid::from_raw(child.id() as i32)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ping(self.port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis on port {} did not come up", self.port);
    }

    pub fn freeze(&self) {
        kill(self.pid(), Signal::SIGSTOP).expect("SIGSTOP");
    }

    pub fn thaw(&self) {
        kill(self.pid(), Signal::SIGCONT).expect("SIGCONT");
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = Pid::from_raw(child.id() as i32);
            let _ = kill(pid, Signal::SIGCONT);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One PING over a fresh socket, short timeouts.
fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let t = Some(Duration::from_millis(200));
    let _ = s.set_read_timeout(t);
    let _ = s.set_write_timeout(t);
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

/// Options a test store uses: short timeout and cache window.
pub fn opts(url: &str) -> StoreOptions {
    StoreOptions {
        redis_url: Some(url.to_string()),
        timeout: Duration::from_millis(50),
        cache_ttl: Duration::from_millis(300),
        ..StoreOptions::default()
    }
}

/// A direct connection for checking what is really in Redis.
pub async fn raw(port: u16) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/0")).expect("client");
    client
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection")
}

pub async fn raw_get(port: u16, key: &str) -> Option<String> {
    let mut c = raw(port).await;
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut c)
        .await
        .expect("GET")
}

/// Polls `f` every 20 ms until it is true or `limit` passes; returns the time it took.
pub async fn wait_until<F, Fut>(limit: Duration, mut f: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// The backend Redis holds after a pin, or `None` if the pin was only held locally (or lost).
pub fn stored(p: Option<Pinned>) -> Option<String> {
    match p {
        Some(Pinned::Stored(b)) => Some(b),
        _ => None,
    }
}

/// Logs to the test's output when `RUST_LOG` is set (e.g. `RUST_LOG=fulcrum_session=debug,redis=debug`):
/// the store's and the redis client's trace of a failing run.
pub fn init_log() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}
