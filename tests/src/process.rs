//! A real `fulcrum` process for tests: generated config, readiness wait, stop by PID
//! (the test bed's cluster [`Node`] on loopback, in its own temp dir). Several nodes
//! together are a [`crate::cluster::LocalCluster`].

use fulcrum_testbed::cluster::Node;
use fulcrum_testbed::process::{Launched, Poll};
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Writes `config` to `dir/check.toml` and runs `fulcrum check --config` on it.
/// Returns whether it succeeded, its stderr, and the file's path as errors print it.
pub fn check_config(config: &str, dir: &Path) -> (bool, String, String) {
    let path = dir.join("check.toml");
    std::fs::write(&path, config).expect("write config");
    let out = Command::new(fulcrum_bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run fulcrum check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        path.display().to_string(),
    )
}

/// Path of the `fulcrum` binary (the test bed's: `$FULCRUM_BIN` or the debug build).
pub fn fulcrum_bin() -> PathBuf {
    match fulcrum_testbed::process::fulcrum_bin() {
        Ok(path) => path,
        Err(e) => panic!("the fulcrum binary: {e}"),
    }
}

/// A running fulcrum node. Dropping it kills the process (SIGKILL) by its PID.
pub struct Fulcrum {
    node: Node,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub admin: String,
}

impl Fulcrum {
    /// Writes `config` to a temp dir and starts `fulcrum run`. Returns once `/status`
    /// answers (or panics after 15 s). `admin` must match `[node].admin` in `config`.
    pub async fn start(config: &str, admin: &str) -> Fulcrum {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("fulcrum.toml");
        std::fs::write(&config_path, config).expect("write config");
        let log = dir.path().join("fulcrum.log");
        let node = Node::new(&fulcrum_bin(), &config_path, &log)
            .args(&["--threads", "2"])
            // Each node in its own directory: a relative path in a config is per node.
            .current_dir(dir.path());
        let node = Fulcrum {
            node,
            dir,
            config_path,
            admin: admin.to_string(),
        };
        node.node.start().expect("start fulcrum");
        node.wait_ready().await;
        node
    }

    /// Waits until the admin API answers.
    pub async fn wait_ready(&self) {
        wait_admin(&self.admin, || self.log()).await;
    }

    pub fn pid(&self) -> Option<u32> {
        self.node.pid()
    }

    /// The node's resident set (`VmRSS`), in bytes.
    pub fn rss(&self) -> u64 {
        let pid = self.pid().expect("node running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .expect("VmRSS line");
        let kb: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .expect("VmRSS value");
        kb * 1024
    }

    pub fn signal(&self, sig: Signal) {
        let _ = self.node.signal(sig);
    }

    /// Waits for the process to exit; returns its exit code (None if killed by a signal
    /// or still running after `timeout`).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        match self.node.wait_exit_async(timeout).await {
            Poll::Exited(code) => code,
            Poll::Running | Poll::Gone => None,
        }
    }

    /// Starts the process again with the same config and data dir (after a kill).
    pub async fn restart(&mut self) {
        self.node.start().expect("start fulcrum");
        self.wait_ready().await;
    }

    /// `kill -9` and reap.
    pub fn kill9(&mut self) {
        self.node.kill();
    }

    /// Replaces the config file (for SIGHUP reload tests).
    pub fn rewrite_config(&self, config: &str) {
        self.node.write_config(config).expect("write config");
    }

    pub fn log(&self) -> String {
        self.node.log()
    }
}

/// Waits until the admin API on `admin` answers `/status`; panics after 15 s with what
/// `log` returns then (the node's log).
pub async fn wait_admin(admin: &str, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if crate::client::get_status(admin).await.is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fulcrum on {admin} did not become ready; log:\n{}", log());
}

/// Runs `fulcrum ctl --admin ADMIN args...` on a blocking thread.
pub async fn ctl(admin: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["ctl".to_string(), "--admin".to_string(), admin.to_string()];
    all.extend(args.iter().map(|s| s.to_string()));
    tokio::task::spawn_blocking(move || {
        Command::new(fulcrum_bin())
            .args(&all)
            .output()
            .expect("run fulcrum ctl")
    })
    .await
    .expect("ctl thread")
}

/// A finished command's exit code, stdout and stderr, for an assertion message.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
