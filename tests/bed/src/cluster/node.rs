//! One real `fulcrum run` process of a cluster bed: its config file and log, optionally
//! a network namespace, a working directory and more arguments (the [`Launched`]
//! builder methods). Started, signalled,
//! killed and waited for through the PID we hold (a test-bed [`Proc`]); every method
//! takes `&self`, so a bed shared between threads can stop a node while another waits.

use crate::process::{Launch, Launched, Output, Poll, SharedProc};
use crate::BedError;
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the waits look at the process.
const POLL_EVERY: Duration = Duration::from_millis(10);

/// A node process (running or not) and how to start it again.
#[derive(Debug)]
pub struct Node {
    bin: PathBuf,
    config: PathBuf,
    log: PathBuf,
    cwd: Option<PathBuf>,
    launch: Launch,
    /// Output to a pipe nobody reads instead of the log file.
    unread_output: bool,
    proc: SharedProc,
}

/// `in_namespace`, `args` (after `run --config CONFIG`), `own_group`.
impl Launched for Node {
    fn launch_mut(&mut self) -> &mut Launch {
        &mut self.launch
    }
}

impl Node {
    /// A node that runs `bin run --config CONFIG` with its output appended to `log`;
    /// not started yet.
    pub fn new(bin: &Path, config: &Path, log: &Path) -> Node {
        Node {
            bin: bin.to_path_buf(),
            config: config.to_path_buf(),
            log: log.to_path_buf(),
            cwd: None,
            launch: Launch::default(),
            unread_output: false,
            proc: SharedProc::default(),
        }
    }

    /// Runs in `dir` (a relative path in its config is then per node).
    pub fn current_dir(mut self, dir: &Path) -> Node {
        self.cwd = Some(dir.to_path_buf());
        self
    }

    /// Sends the output to a pipe nobody reads (it fills, then every write blocks)
    /// instead of the log file, which then stays empty.
    pub fn unread_output(mut self) -> Node {
        self.unread_output = true;
        self
    }

    /// The directory it runs in, when set by [`Node::current_dir`].
    pub fn current_dir_path(&self) -> Option<&Path> {
        self.cwd.as_deref()
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Replaces the config file (read at the next start or SIGHUP).
    pub fn write_config(&self, text: &str) -> Result<(), BedError> {
        std::fs::write(&self.config, text).map_err(|e| BedError::io(self.config.display(), e))
    }

    /// Starts the process; one still held is SIGKILLed first (so this also restarts).
    pub fn start(&self) -> Result<(), BedError> {
        let mut cmd = self.launch.command(&self.bin);
        cmd.args(["run", "--config"]).arg(&self.config);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        let output = if self.unread_output {
            Output::Unread
        } else {
            Output::Log(&self.log)
        };
        let pid = self.proc.restart(|| self.launch.spawn(cmd, output))?;
        tracing::info!(config = %self.config.display(), pid, "started a fulcrum node");
        Ok(())
    }

    /// The PID while a process is held.
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

    /// Whether it runs; an exited process is reaped.
    pub fn poll(&self) -> Poll {
        self.proc.poll()
    }

    pub fn running(&self) -> bool {
        self.poll() == Poll::Running
    }

    /// Waits (blocking the thread) up to `within` for the process to end by itself;
    /// returns the last poll (`Running` when it did not end in time).
    pub fn wait_exit(&self, within: Duration) -> Poll {
        let deadline = Instant::now() + within;
        loop {
            let now = self.poll();
            if now != Poll::Running || Instant::now() >= deadline {
                return now;
            }
            std::thread::sleep(POLL_EVERY);
        }
    }

    /// [`Node::wait_exit`] for async tests (sleeps without blocking the runtime).
    pub async fn wait_exit_async(&self, within: Duration) -> Poll {
        let deadline = Instant::now() + within;
        loop {
            let now = self.poll();
            if now != Poll::Running || Instant::now() >= deadline {
                return now;
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Everything the node wrote so far (empty when there is no log yet).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
