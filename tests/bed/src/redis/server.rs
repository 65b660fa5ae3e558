//! A `redis-server` process the bed started: bound to one address (on loopback or inside
//! a network namespace), no snapshots, no append-only file, its output dropped or
//! appended to a log; optionally a config file first (a Sentinel's) and more arguments
//! (replication, cluster mode). Killed by the PID we hold, started again on the same
//! address (empty: nothing persists); dropping it kills it. Every bed that needs Redis
//! (a test's [`super::TestRedis`], the BGP bed, the chaos suite, the session crate's
//! tests) starts it here.

use crate::process::{Launch, Launched, Output, SharedProc};
use crate::BedError;
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where a server listens and keeps its files; what [`RedisServer::start`] runs.
#[derive(Debug)]
pub struct RedisServer {
    bind: String,
    port: u16,
    dir: PathBuf,
    log: Option<PathBuf>,
    config_file: Option<PathBuf>,
    launch: Launch,
    proc: SharedProc,
}

/// `in_namespace`, `args` (after the bed's own, e.g. `--replicaof HOST PORT`,
/// `--sentinel`), `own_group`.
impl Launched for RedisServer {
    fn launch_mut(&mut self) -> &mut Launch {
        &mut self.launch
    }
}

impl RedisServer {
    /// A server bound to `bind:port` with its working directory `dir`, on loopback (or
    /// in the host's namespace); not started yet.
    pub fn new(bind: &str, port: u16, dir: &Path) -> RedisServer {
        RedisServer {
            bind: bind.to_string(),
            port,
            dir: dir.to_path_buf(),
            log: None,
            config_file: None,
            launch: Launch::default(),
            proc: SharedProc::default(),
        }
    }

    /// Appends its output to `log` (dropped otherwise).
    pub fn log_to(mut self, log: &Path) -> RedisServer {
        self.log = Some(log.to_path_buf());
        self
    }

    /// Reads `file` first (`redis-server FILE --bind ...`), e.g. a Sentinel's
    /// `sentinel monitor` lines; the address and persistence flags still come from here.
    pub fn config_file(mut self, file: &Path) -> RedisServer {
        self.config_file = Some(file.to_path_buf());
        self
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts the server; one still held is SIGKILLed first (so this also restarts).
    pub fn start(&self) -> Result<(), BedError> {
        let output = match &self.log {
            Some(path) => Output::Log(path),
            None => Output::Null,
        };
        let pid = self
            .proc
            .restart(|| self.launch.spawn(self.command(), output))?;
        tracing::info!(bind = %self.bind, port = self.port, pid, "started redis-server");
        Ok(())
    }

    /// The PID while a process is held (started and not yet killed).
    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    /// Sends `signal`; SIGKILL also reaps. Errors if no process is held.
    pub fn signal(&self, signal: Signal) -> Result<(), BedError> {
        self.proc.signal(signal)
    }

    /// `kill -9` and reap; nothing if none is held.
    pub fn kill(&self) {
        self.proc.kill();
    }

    fn command(&self) -> Command {
        let mut cmd = self.launch.command("redis-server");
        if let Some(file) = &self.config_file {
            cmd.arg(file);
        }
        cmd.args(["--bind", &self.bind, "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.dir);
        cmd
    }
}
