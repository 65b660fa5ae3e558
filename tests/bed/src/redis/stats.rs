//! A real `redis-server` without persistence: its command line (on loopback or inside a
//! namespace), a loopback instance for tests ([`TestRedis`], killed by PID), and Redis's
//! own count of the commands it ran (`INFO commandstats`).

use crate::process::{Output, Proc};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// `redis-server` bound to `bind:port`, no snapshots, no append-only file, its working
/// directory `dir`; inside namespace `ns` when given.
pub fn server_command(ns: Option<&str>, bind: &str, port: u16, dir: &Path) -> Command {
    let mut cmd = match ns {
        Some(ns) => crate::netns::command_in(ns, "redis-server"),
        None => Command::new("redis-server"),
    };
    cmd.args(["--bind", bind, "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
        .arg("--dir")
        .arg(dir);
    cmd
}

/// `INFO commandstats`: command name -> (calls, failed or rejected calls).
pub type CommandStats = std::collections::BTreeMap<String, (u64, u64)>;

/// The commands fulcrum's session store sent between two snapshots, by name: its round trips
/// to Redis. `INFO commandstats` also counts the commands a Lua script runs, so the pin
/// scripts' inner `GET` (one per script run) and `SET` are taken out; the store never sends a
/// `SET` itself. Monitoring (INFO, PING, CLUSTER ...) and connection setup are left out.
pub fn round_trips(
    before: &CommandStats,
    after: &CommandStats,
) -> std::collections::BTreeMap<String, u64> {
    let d = |name: &str| -> (u64, u64) {
        let (c1, f1) = after.get(name).copied().unwrap_or((0, 0));
        let (c0, f0) = before.get(name).copied().unwrap_or((0, 0));
        (c1.saturating_sub(c0), f1.saturating_sub(f0))
    };
    let script_runs: u64 = ["evalsha", "eval", "evalsha_ro", "eval_ro"]
        .iter()
        .map(|n| {
            let (calls, failed) = d(n);
            calls - failed.min(calls)
        })
        .sum();
    let mut out = std::collections::BTreeMap::new();
    for name in after.keys() {
        let (calls, _) = d(name);
        let sent = match name.as_str() {
            "info" | "ping" | "config|resetstat" | "client|setinfo" | "client|setname"
            | "hello" | "select" | "set" => 0,
            n if n.starts_with("cluster|") => 0,
            "get" => calls.saturating_sub(script_runs),
            _ => calls,
        };
        if sent > 0 {
            out.insert(name.clone(), sent);
        }
    }
    out
}

/// Per command since the last `CONFIG RESETSTAT`, from `INFO commandstats`: (calls,
/// failed or rejected calls), by name (`get`, `getex`, `evalsha`, ...; subcommands as
/// `config|resetstat`). Redis's own count, independent of fulcrum's metrics. Commands a
/// Lua script runs are counted too; [`round_trips`] takes them out.
pub async fn command_stats(port: u16) -> CommandStats {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut out = std::collections::BTreeMap::new();
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return out;
    };
    if s.write_all(b"*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n")
        .await
        .is_err()
    {
        return out;
    }
    // One bulk reply: `$LEN\r\n` + LEN bytes + `\r\n`; read until it is all in.
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let text = String::from_utf8_lossy(&buf);
        let complete = text.split_once("\r\n").is_some_and(|(head, rest)| {
            head.trim_start_matches('$')
                .parse::<usize>()
                .is_ok_and(|len| rest.len() >= len)
        });
        if complete || Instant::now() >= deadline {
            break;
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(Duration::from_millis(500), s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    for line in String::from_utf8_lossy(&buf).lines() {
        // cmdstat_getex:calls=3,usec=25,...
        let Some((name, fields)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let field = |key: &str| -> u64 {
            fields
                .split(',')
                .find_map(|f| f.strip_prefix(key))
                .and_then(|c| c.parse().ok())
                .unwrap_or(0)
        };
        let failed = field("failed_calls=") + field("rejected_calls=");
        out.insert(name.to_string(), (field("calls="), failed));
    }
    out
}

/// A redis-server on a free loopback port for one test; dropping it kills it.
pub struct TestRedis {
    pub port: u16,
    proc: Proc,
    dir: tempfile::TempDir,
}

impl TestRedis {
    /// Starts redis-server on a free port and waits until it answers PING.
    pub async fn start() -> TestRedis {
        let mut r = TestRedis {
            port: crate::ports::free_port(),
            proc: Proc::default(),
            dir: tempfile::tempdir().expect("tempdir"),
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
        let cmd = server_command(None, "127.0.0.1", self.port, self.dir.path());
        self.proc = match Proc::spawn(cmd, Output::Null, false) {
            Ok(p) => p,
            Err(e) => panic!("redis-server must be installed (apt-get install redis-server): {e}"),
        };
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
        self.proc.kill();
    }

    /// Starts it again on the same port (empty: no persistence).
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }
}
