//! Headless Chromium driven over the DevTools protocol, for tests that click in a page.
//!
//! Chromium's `--remote-debugging-pipe` reads commands on fd 3 and writes answers on
//! fd 4, each message JSON ended by a NUL byte. The fds are two named pipes in a temp
//! dir, opened by a shell before it execs the browser, so no websocket client and no
//! `unsafe` fd plumbing are needed. The browser is killed by its PID when dropped.

use serde_json::{json, Value};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The browser binary (Debian's `chromium`), or why there is none.
pub fn chromium() -> Result<PathBuf, String> {
    for name in ["chromium", "chromium-browser"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|p| !p.is_empty());
        if let Some(p) = found {
            return Ok(PathBuf::from(p));
        }
    }
    Err("no chromium on PATH (Debian: apt-get install chromium)".to_string())
}

/// One page of a headless browser.
pub struct Page {
    child: Child,
    to: File,
    from: BufReader<File>,
    session: String,
    next_id: u64,
    _dir: tempfile::TempDir,
}

impl Page {
    /// Starts `browser` and opens `url` in a new page.
    pub fn open(browser: &Path, url: &str) -> Result<Page, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let (cmds, answers) = (dir.path().join("cmds"), dir.path().join("answers"));
        for fifo in [&cmds, &answers] {
            let made = Command::new("mkfifo").arg(fifo).status();
            if !made.is_ok_and(|s| s.success()) {
                return Err(format!("mkfifo {} failed", fifo.display()));
            }
        }
        let profile = dir.path().join("profile");
        let child = Command::new("sh")
            .arg("-c")
            .arg(
                "exec \"$0\" --headless --no-sandbox --disable-gpu --no-first-run \
                 --window-size=1400,1000 --remote-debugging-pipe --user-data-dir=\"$1\" \
                 3<\"$2\" 4>\"$3\"",
            )
            .arg(browser)
            .arg(&profile)
            .arg(&cmds)
            .arg(&answers)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start chromium: {e}"))?;
        // The shell opens `cmds` for reading, then `answers` for writing: the same order
        // here, or both sides wait for each other.
        let to = File::options()
            .write(true)
            .open(&cmds)
            .map_err(|e| e.to_string())?;
        let from = BufReader::new(File::open(&answers).map_err(|e| e.to_string())?);
        let mut page = Page {
            child,
            to,
            from,
            session: String::new(),
            next_id: 0,
            _dir: dir,
        };
        let target = page.call(None, "Target.createTarget", json!({ "url": url }))?;
        let target = target["targetId"].as_str().unwrap_or_default().to_string();
        let attached = page.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target, "flatten": true }),
        )?;
        page.session = attached["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no session: {attached}"))?
            .to_string();
        Ok(page)
    }

    /// One command; returns its `result` (events and other answers are skipped).
    fn call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).map_err(|e| e.to_string())?;
        bytes.push(0);
        self.to
            .write_all(&bytes)
            .map_err(|e| format!("{method}: {e}"))?;
        loop {
            let mut buf = Vec::new();
            let n = self
                .from
                .read_until(0, &mut buf)
                .map_err(|e| format!("{method}: {e}"))?;
            if n == 0 {
                return Err(format!("{method}: the browser closed its pipe"));
            }
            buf.pop();
            let answer: Value = serde_json::from_slice(&buf).map_err(|e| e.to_string())?;
            if answer["id"] != id {
                continue;
            }
            if !answer["error"].is_null() {
                return Err(format!("{method}: {}", answer["error"]));
            }
            return Ok(answer["result"].clone());
        }
    }

    /// Evaluates `expression` in the page (awaiting a promise); returns its value.
    pub fn eval(&mut self, expression: &str) -> Result<Value, String> {
        let session = self.session.clone();
        let r = self.call(
            Some(&session),
            "Runtime.evaluate",
            json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
        )?;
        if !r["exceptionDetails"].is_null() {
            return Err(format!("{expression}: {}", r["exceptionDetails"]));
        }
        Ok(r["result"]["value"].clone())
    }

    /// Evaluates `condition` every 100 ms until it is true or `within` passed. A script
    /// exception counts as "not yet" (while the page loads, `document.body` can still be
    /// null: CI saw "Cannot read properties of null (reading 'dataset')"); a failed call
    /// to the browser is an error.
    pub fn wait_for(&mut self, condition: &str, within: Duration) -> Result<bool, String> {
        let deadline = Instant::now() + within;
        let session = self.session.clone();
        loop {
            let r = self.call(
                Some(&session),
                "Runtime.evaluate",
                json!({ "expression": condition, "awaitPromise": true, "returnByValue": true }),
            )?;
            if r["exceptionDetails"].is_null() && r["result"]["value"] == json!(true) {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
