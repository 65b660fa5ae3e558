//! A child process the bed started: its output appended to a log file (or dropped), in
//! its own process group when asked (so Ctrl-C reaches only the driver), signalled and
//! stopped by the PID we hold, never by name. Dropping a [`Proc`] SIGKILLs and reaps it.
//! Also where the `fulcrum` binary under test comes from.

use crate::BedError;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Where a child's stdout and stderr go.
#[derive(Debug, Clone, Copy)]
pub enum Output<'a> {
    /// Appended to this file (created when missing).
    Log(&'a Path),
    /// Dropped.
    Null,
    /// Piped to the test, which never reads it: once the pipe's buffer (64 KiB) is full,
    /// every write blocks, as with a log collector that stopped reading.
    Unread,
}

/// What a poll of a child found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    Running,
    /// It exited (now reaped) with this code; `None` when a signal ended it.
    Exited(Option<i32>),
    /// No process: never started, already reaped or killed.
    Gone,
}

/// A started child process (or none, between a stop and the next start).
#[derive(Debug, Default)]
pub struct Proc {
    child: Option<Child>,
}

impl Proc {
    /// Starts `cmd` with stdin closed and its output sent to `output`; `own_group` puts
    /// it in a process group of its own.
    pub fn spawn(mut cmd: Command, output: Output<'_>, own_group: bool) -> Result<Proc, BedError> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        let (out, err) = match output {
            Output::Log(path) => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| BedError::io(path.display(), e))?;
                let err = file
                    .try_clone()
                    .map_err(|e| BedError::io(path.display(), e))?;
                (Stdio::from(file), Stdio::from(err))
            }
            Output::Null => (Stdio::null(), Stdio::null()),
            // The read ends stay in the `Child` (never read) until it is reaped.
            Output::Unread => (Stdio::piped(), Stdio::piped()),
        };
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        if own_group {
            cmd.process_group(0);
        }
        let child = cmd
            .spawn()
            .map_err(|source| BedError::Spawn { program, source })?;
        tracing::debug!(pid = child.id(), "started a test-bed process");
        Ok(Proc { child: Some(child) })
    }

    /// The PID while the process is held (running or not yet reaped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Sends `signal` to the process we hold (never to a PID we did not start: an
    /// exited process stays held, unreaped, until [`Proc::poll`] or [`Proc::kill`]).
    /// Errors if none is held.
    pub fn signal(&self, signal: Signal) -> Result<(), BedError> {
        let child = self
            .child
            .as_ref()
            .ok_or_else(|| BedError::Refused("process is not running".into()))?;
        let raw = i32::try_from(child.id())
            .map_err(|_| BedError::Refused(format!("pid {} out of range", child.id())))?;
        let pid = Pid::from_raw(raw);
        kill(pid, signal).map_err(|source| BedError::Sys {
            what: format!("sending {signal} to {pid}"),
            source,
        })
    }

    /// Whether it still runs; an exited process is reaped (and no longer held).
    pub fn poll(&mut self) -> Poll {
        match self.child.as_mut().map(|c| c.try_wait()) {
            None => Poll::Gone,
            Some(Ok(None)) => Poll::Running,
            Some(Ok(Some(status))) => {
                self.child = None;
                Poll::Exited(status.code())
            }
            Some(Err(_)) => {
                self.child = None;
                Poll::Exited(None)
            }
        }
    }

    /// SIGKILL (which also ends a stopped process) and reap; nothing if none is held.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where and how the bed starts one kind of process besides its program and own
/// arguments: inside a network namespace, with more arguments, in a process group of its
/// own.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    ns: Option<String>,
    extra_args: Vec<String>,
    own_group: bool,
}

impl Launch {
    /// A command that runs `program`, inside the namespace when one is set (through
    /// `ip netns exec`, which execs in place: the PID we hold is the program's).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        match &self.ns {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns]).arg(program);
                cmd
            }
            None => Command::new(program),
        }
    }

    /// Appends the extra arguments to `cmd` (after the program's own) and starts it.
    pub fn spawn(&self, mut cmd: Command, output: Output<'_>) -> Result<Proc, BedError> {
        cmd.args(&self.extra_args);
        Proc::spawn(cmd, output, self.own_group)
    }
}

/// The builder methods of every kind of process the bed starts through a [`Launch`]
/// (a cluster [`crate::cluster::Node`], a [`crate::redis::RedisServer`]).
pub trait Launched: Sized {
    fn launch_mut(&mut self) -> &mut Launch;

    /// Runs inside network namespace `ns`.
    fn in_namespace(mut self, ns: &str) -> Self {
        self.launch_mut().ns = Some(ns.to_string());
        self
    }

    /// Adds `args` after the process's own.
    fn args(mut self, args: &[&str]) -> Self {
        let extra = &mut self.launch_mut().extra_args;
        extra.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Puts the process in a group of its own (Ctrl-C on the driver does not reach it).
    fn own_group(mut self) -> Self {
        self.launch_mut().own_group = true;
        self
    }
}

/// A [`Proc`] that threads share: every method takes `&self`, so a bed can stop a
/// process while another thread waits for it.
#[derive(Debug, Default)]
pub struct SharedProc(Mutex<Proc>);

impl SharedProc {
    /// Holds `proc` from now on; one held before is SIGKILLed and reaped first.
    pub fn replace(&self, proc: Proc) {
        let mut held = self.lock();
        held.kill();
        *held = proc;
    }

    /// Kills what is held, then holds what `start` spawns (so a start is also a restart).
    pub fn restart(
        &self,
        start: impl FnOnce() -> Result<Proc, BedError>,
    ) -> Result<Option<u32>, BedError> {
        let mut held = self.lock();
        held.kill();
        *held = start()?;
        Ok(held.pid())
    }

    /// The PID while a process is held.
    pub fn pid(&self) -> Option<u32> {
        self.lock().pid()
    }

    /// Sends `signal`; SIGKILL also reaps. Errors if no process is held.
    pub fn signal(&self, signal: Signal) -> Result<(), BedError> {
        let mut proc = self.lock();
        proc.signal(signal)?;
        if signal == Signal::SIGKILL {
            proc.kill();
        }
        Ok(())
    }

    /// `kill -9` and reap; nothing if none is held.
    pub fn kill(&self) {
        self.lock().kill();
    }

    /// Whether it runs; an exited process is reaped.
    pub fn poll(&self) -> Poll {
        self.lock().poll()
    }

    fn lock(&self) -> MutexGuard<'_, Proc> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Path of the `fulcrum` binary under test: `$FULCRUM_BIN`, or the workspace's debug
/// build (built once per test process, with the `cargo` that runs the tests).
pub fn fulcrum_bin() -> Result<PathBuf, BedError> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("FULCRUM_BIN") {
            return Ok(PathBuf::from(p));
        }
        // This crate is tests/bed: the workspace is two levels up.
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .nth(2)
            .ok_or("no workspace root above tests/bed")?
            .to_path_buf();
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| root.join("target"));
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "-q", "-p", "fulcrum", "--bin", "fulcrum"])
            .current_dir(&root)
            .status()
            .map_err(|e| format!("running cargo build: {e}"))?;
        if !status.success() {
            return Err("building fulcrum failed".to_string());
        }
        Ok(target.join("debug").join("fulcrum"))
    })
    .clone()
    .map_err(BedError::Refused)
}
