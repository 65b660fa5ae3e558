//! Test harness: real `redis-server` processes (plain and Sentinel) on free loopback ports,
//! each in its own temp dir, killed by PID when the guard drops. The processes are the
//! shared test bed's (`fulcrum_testbed::redis::RedisServer`); the PING wait, the store
//! options and the raw checks are this harness's.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use fulcrum_session::{Pinned, StoreOptions};
use fulcrum_testbed::process::Launched;
use fulcrum_testbed::redis::RedisServer;
use nix::sys::signal::Signal;
use tempfile::TempDir;

pub mod cluster;

/// A free loopback port (the shared test bed's: never the same twice in one process).
pub use fulcrum_testbed::ports::free_port;

/// A running redis-server (or sentinel), started by the shared test bed's one Redis
/// starter. Dropping it SIGKILLs (which also ends a frozen one) and reaps it.
pub struct RedisProc {
    server: RedisServer,
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
        let server = RedisServer::new("127.0.0.1", port, dir.path()).args(extra);
        Self::launch(server, port, dir)
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
            "sentinel monitor {name} 127.0.0.1 {master_port} {quorum}\n\
             sentinel down-after-milliseconds {name} {down_ms}\n\
             sentinel failover-timeout {name} 2000\n"
        );
        std::fs::write(&conf, text).expect("write sentinel.conf");
        let server = RedisServer::new("127.0.0.1", port, dir.path())
            .config_file(&conf)
            .args(&["--sentinel"]);
        Self::launch(server, port, dir)
    }

    /// Starts `server` and waits until it answers PING.
    fn launch(server: RedisServer, port: u16, dir: TempDir) -> Self {
        if let Err(e) = server.start() {
            panic!("redis-server must be installed (apt-get install redis-server): {e}");
        }
        let p = Self {
            server,
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
        self.server.pid().is_some()
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
        self.server.signal(Signal::SIGSTOP).expect("SIGSTOP");
    }

    pub fn thaw(&self) {
        self.server.signal(Signal::SIGCONT).expect("SIGCONT");
    }

    /// SIGKILL (which also ends a frozen process) and reap.
    pub fn kill(&mut self) {
        self.server.kill();
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
