//! Network-namespace plumbing: running commands and threads inside a named namespace.
//!
//! Processes go through `ip netns exec NS ...` (which execs in place, so the PID we hold is
//! the real process). Threads call `setns(2)` on `/var/run/netns/NS`; sockets created by
//! such a thread stay in that namespace whatever thread uses them later.

use crate::BedError;
use nix::sched::{setns, CloneFlags};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};

/// Runs a command to completion; an error carries its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, BedError> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| BedError::Spawn {
            program: program.to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(BedError::Command {
            command: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command inside namespace `ns`.
pub fn run_in(ns: &str, program: &str, args: &[&str]) -> Result<String, BedError> {
    let mut full = vec!["netns", "exec", ns, program];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// Runs `cmd` (program and arguments) inside namespace `ns`; returns whether it succeeded
/// and its stdout followed by its stderr (or why it could not be started).
pub fn exec(ns: &str, cmd: &[&str]) -> (bool, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(cmd)
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(out) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            (out.status.success(), text)
        }
        Err(e) => (false, format!("running ip netns exec {ns}: {e}")),
    }
}

/// Real-time priority of a fault injection's command (the nodes' control threads use 10).
const URGENT_PRIORITY: &str = "5";

/// Runs a command inside namespace `ns` in the real-time class, for a fault that must
/// take effect when the timeline says it did. Under a CPU hog (6 busy processes on 2
/// cores, other builds) an `ip netns exec NS nft -f ...` at normal priority was seen
/// taking 280 ms to apply a partition: the node kept its quorum 280 ms past the marked
/// fault and the premise "drops the VIP within its lease" failed on the harness's delay,
/// not the node's. `chrt` puts the command in `SCHED_FIFO` from its first exec on; where
/// it may not (no root, no `chrt`), the command runs as [`run_in`] would.
pub fn run_in_urgently(ns: &str, program: &str, args: &[&str]) -> Result<String, BedError> {
    let mut full = vec![
        "--fifo",
        URGENT_PRIORITY,
        "ip",
        "netns",
        "exec",
        ns,
        program,
    ];
    full.extend_from_slice(args);
    match run("chrt", &full) {
        Err(BedError::Spawn { .. }) => run_in(ns, program, args),
        Err(BedError::Command { stderr, .. }) if stderr.starts_with("chrt:") => {
            run_in(ns, program, args)
        }
        other => other,
    }
}

/// A `Command` that will run `program` inside namespace `ns`.
pub fn command_in(ns: &str, program: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, program]);
    cmd
}

/// A network namespace this process made, its loopback up. Dropping it SIGKILLs what
/// still runs in it and deletes it (its veth ends go with it). The one place a bed adds
/// a namespace: [`crate::bridge`] makes its switch and hosts with it, a bed its extra
/// hosts (the BGP bed's client behind the router).
#[derive(Debug)]
pub struct Namespace {
    name: String,
}

impl Namespace {
    /// Adds namespace `name`; with `replace`, one of that name left by an earlier run is
    /// deleted first (otherwise its existence is an error).
    pub fn add(name: &str, replace: bool) -> Result<Namespace, BedError> {
        if replace {
            let _ = run("ip", &["netns", "del", name]);
        }
        run("ip", &["netns", "add", name])?;
        let ns = Namespace {
            name: name.to_string(),
        };
        run("ip", &["-n", name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        kill_processes(&self.name);
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// Moves the calling thread into namespace `ns`.
pub fn enter(ns: &str) -> Result<(), BedError> {
    let path = format!("/var/run/netns/{ns}");
    let file = File::open(&path).map_err(|e| BedError::io(&path, e))?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| BedError::Sys {
        what: format!("setns into {ns}"),
        source,
    })
}

/// Starts `f` on a new thread inside namespace `ns` (sockets and child processes created
/// there belong to it). The thread panics if it cannot enter the namespace.
pub fn spawn_in<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        if let Err(e) = enter(&ns) {
            panic!("{e}");
        }
        f()
    })
}

/// Runs `f` on a fresh thread inside namespace `ns` and returns its result.
pub fn in_thread<T, E, F>(ns: &str, f: F) -> Result<T, E>
where
    T: Send + 'static,
    E: From<BedError> + Send + 'static,
    F: FnOnce() -> Result<T, E> + Send + 'static,
{
    let name = ns.to_string();
    let handle = std::thread::Builder::new()
        .name(format!("netns-{ns}"))
        .spawn(move || {
            enter(&name)?;
            f()
        })
        .map_err(|source| BedError::Spawn {
            program: "a namespace thread".into(),
            source,
        })?;
    handle
        .join()
        .map_err(|_| BedError::Refused(format!("the thread in namespace {ns} panicked")))?
}

/// Names of existing namespaces starting with `prefix`.
pub fn list(prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/var/run/netns") else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// SIGKILLs whatever still runs in namespace `ns` (processes a bed started), never this
/// process itself.
pub fn kill_processes(ns: &str) {
    let Ok(pids) = run("ip", &["netns", "pids", ns]) else {
        return;
    };
    let me = std::process::id() as i32;
    for pid in pids
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .filter(|p| *p != me)
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// True when the namespace tests can run here (root and iproute2); says why otherwise.
/// In CI (`CI=true`) a missing prerequisite is a failure, never a skip; elsewhere the
/// skip is also appended to `$FULCRUM_SKIP_LOG` (when set) for `.ci/run`'s summary.
pub fn can_run(test: &str) -> bool {
    let root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    let ip = Command::new("ip").arg("-V").output().is_ok();
    if !root || !ip {
        let why = format!("needs root and iproute2 (root={root}, ip={ip})");
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(!ci, "{test} cannot run in CI (CI=true): {why}");
        eprintln!("SKIPPED {test}: {why}");
        if let Some(path) = std::env::var_os("FULCRUM_SKIP_LOG") {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path);
            if let Ok(mut f) = file {
                let _ = writeln!(f, "{test}: {why}");
            }
        }
    }
    root && ip
}
