//! Network-namespace plumbing: running commands and threads inside a named namespace.
//!
//! Processes go through `ip netns exec NS ...` (which execs in place, so the PID we hold is
//! the real process). Threads call `setns(2)` on `/var/run/netns/NS`; sockets created by
//! such a thread stay in that namespace whatever thread uses them later.

use anyhow::{anyhow, bail, Context, Result};
use nix::sched::{setns, CloneFlags};
use std::fs::File;
use std::process::{Command, Stdio};

/// Runs a command to completion; an error carries its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command inside namespace `ns`.
pub fn run_in(ns: &str, program: &str, args: &[&str]) -> Result<String> {
    let mut full = vec!["netns", "exec", ns, program];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// A `Command` that will run `program` inside namespace `ns`.
pub fn command_in(ns: &str, program: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, program]);
    cmd
}

/// Moves the calling thread into namespace `ns`.
pub fn enter(ns: &str) -> Result<()> {
    let path = format!("/var/run/netns/{ns}");
    let file = File::open(&path).with_context(|| format!("opening {path}"))?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| anyhow!("setns into {ns}: {e}"))
}

/// Runs `f` on a fresh thread inside namespace `ns` and returns its result.
pub fn in_thread<T, F>(ns: &str, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let ns = ns.to_string();
    std::thread::Builder::new()
        .name(format!("netns-{ns}"))
        .spawn(move || {
            enter(&ns)?;
            f()
        })
        .context("spawning a namespace thread")?
        .join()
        .map_err(|_| anyhow!("namespace thread panicked"))?
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
