//! Child processes owned by the benchmark: started (optionally pinned to one CPU with
//! `taskset`), logged to files in the run's temp dir, and stopped by their own PID when
//! the guard drops, so an error or Ctrl-C never leaves a proxy or backend behind.

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which CPU a process is pinned to; `None` runs it unpinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin(pub Option<usize>);

impl Pin {
    /// Prefixes `program args` with `taskset -c CPU` when pinned.
    /// The child gets its own process group, so a Ctrl-C at the terminal reaches only
    /// the benchmark, which then stops its children itself.
    pub fn command(self, program: &Path, args: &[String]) -> Command {
        let mut cmd = self.bare_command(program, args);
        cmd.process_group(0);
        cmd
    }

    fn bare_command(self, program: &Path, args: &[String]) -> Command {
        match self.0 {
            Some(cpu) => {
                let mut cmd = Command::new("taskset");
                cmd.arg("-c").arg(cpu.to_string()).arg(program).args(args);
                cmd
            }
            None => {
                let mut cmd = Command::new(program);
                cmd.args(args);
                cmd
            }
        }
    }
}

/// A running child; SIGTERM then SIGKILL by PID on drop.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Child,
    log: PathBuf,
}

impl ChildGuard {
    /// Starts `program args`, stdout and stderr going to `log`.
    pub fn spawn(
        name: &str,
        pin: Pin,
        program: &Path,
        args: &[String],
        log: &Path,
    ) -> Result<Self> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("duplicating log handle")?;
        let child = pin
            .command(program, args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        Ok(Self {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }

    /// The PID of the program itself (`taskset` execs it, so the PID is kept).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails with the tail of the log when the process has already exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!(
                "{} exited ({status}); log {}:\n{}",
                self.name,
                self.log.display(),
                log_tail(&self.log)
            ),
            Err(e) => bail!("{}: cannot query status: {e}", self.name),
        }
    }

    /// The last lines the process wrote, for error messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    fn stop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let Ok(raw) = i32::try_from(self.child.id()) else {
            return;
        };
        let pid = Pid::from_raw(raw);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = kill(pid, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Up to the last 2 KB of a log file (empty when unreadable).
pub fn log_tail(path: &Path) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(2048)));
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    text
}

/// Whether `program` is found on `PATH` (or exists, for a path with a slash).
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return path.is_file().then_some(path);
    }
    let paths = std::env::var_os("PATH")?;
    let extra = ["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from);
    std::env::split_paths(&paths)
        .chain(extra)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}
