//! A real `fulcrum` process for tests: generated config, readiness wait, stop by PID.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
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

/// Path of the `fulcrum` binary, building it once if needed.
pub fn fulcrum_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("FULCRUM_BIN") {
            return PathBuf::from(p);
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root")
            .to_path_buf();
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| root.join("target"));
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "-q", "-p", "fulcrum", "--bin", "fulcrum"])
            .current_dir(&root)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building fulcrum failed");
        target.join("debug").join("fulcrum")
    })
    .clone()
}

/// A running fulcrum node. Dropping it kills the process (SIGKILL) by its PID.
pub struct Fulcrum {
    child: Option<Child>,
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
        let mut node = Fulcrum {
            child: None,
            dir,
            config_path,
            admin: admin.to_string(),
        };
        node.spawn();
        node.wait_ready().await;
        node
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("fulcrum.log"))
            .expect("log file");
        let err = log.try_clone().expect("clone log");
        let child = Command::new(fulcrum_bin())
            .args(["run", "--config"])
            .arg(&self.config_path)
            .args(["--threads", "2"])
            // Each node in its own directory: a relative path in a config is per node.
            .current_dir(self.dir.path())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("start fulcrum");
        self.child = Some(child);
    }

    /// Waits until the admin API answers.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if crate::client::get_status(&self.admin).await.is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("fulcrum did not become ready; log:\n{}", self.log());
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
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
        if let Some(pid) = self.pid() {
            let _ = kill(Pid::from_raw(pid as i32), sig);
        }
    }

    /// Waits for the process to exit; returns its exit code (None if killed by a signal
    /// or still running after `timeout`).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return status.code();
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// Starts the process again with the same config and data dir (after a kill).
    pub async fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.spawn();
        self.wait_ready().await;
    }

    /// `kill -9` and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Replaces the config file (for SIGHUP reload tests).
    pub fn rewrite_config(&self, config: &str) {
        std::fs::write(&self.config_path, config).expect("write config");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("fulcrum.log")).unwrap_or_default()
    }
}

impl Drop for Fulcrum {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
