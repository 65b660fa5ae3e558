//! A `redis-server` on a free loopback port for one test ([`TestRedis`]): started and
//! waited for, spoken to with raw RESP commands, killed and started again.

use super::server::RedisServer;
use super::stats::{command_stats, CommandStats};
use std::time::{Duration, Instant};

/// A redis-server on a free loopback port for one test; dropping it kills it.
pub struct TestRedis {
    pub port: u16,
    server: RedisServer,
    _dir: tempfile::TempDir,
}

impl TestRedis {
    /// Starts redis-server on a free port and waits until it answers PING.
    pub async fn start() -> TestRedis {
        let port = crate::ports::free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = TestRedis {
            port,
            server: RedisServer::new("127.0.0.1", port, dir.path()),
            _dir: dir,
        };
        r.spawn().await;
        r
    }

    /// Its address, for raw TCP clients.
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    async fn spawn(&mut self) {
        if let Err(e) = self.server.start() {
            panic!("redis-server must be installed (apt-get install redis-server): {e}");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// True when the server answers PING.
    pub async fn ping(&self) -> bool {
        self.command(&["PING"])
            .await
            .is_some_and(|r| r.contains("PONG"))
    }

    /// Sends one inline command; returns the raw reply.
    pub async fn command(&self, args: &[&str]) -> Option<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{}\r\n", a.len(), a));
        }
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Per command since the last `CONFIG RESETSTAT` ([`command_stats`]).
    pub async fn command_calls(&self) -> CommandStats {
        command_stats(self.port).await
    }

    /// Kills the server (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        self.server.kill();
    }

    /// Starts it again on the same port (empty: no persistence).
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }
}
