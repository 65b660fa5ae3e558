//! Network namespaces as test hosts: a bridge in its own namespace, hosts joined to it
//! by veth pairs, addresses in 10.77.70.0/24 only, no route anywhere else. `Testbed`'s
//! Drop deletes every namespace it made (their veths and processes' sockets go with
//! them), also when a test panics.

use nix::sched::{setns, CloneFlags};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

/// The interface every host sees.
pub const IFACE: &str = "eth0";

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

/// Runs `ip ARGS`; panics with stderr on failure.
pub fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command inside a namespace; returns (success, stdout+stderr).
pub fn exec(ns: &str, cmd: &[&str]) -> (bool, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(cmd)
        .output()
        .expect("ip netns exec");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

pub struct Testbed {
    prefix: String,
    created: Vec<String>,
}

impl Testbed {
    /// A bridge namespace plus one namespace per `(name, last octet)` host.
    pub fn new(tag: &str, hosts: &[(&str, u8)]) -> Testbed {
        let prefix = format!("fnt{}{tag}", std::process::id() % 100_000);
        let mut bed = Testbed {
            prefix,
            created: Vec::new(),
        };
        let br = bed.ns("br");
        bed.add_ns(&br);
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &br, "link", "set", "br0", "up"]);
        for (i, (host, octet)) in hosts.iter().enumerate() {
            bed.add_host(&br, i, host, *octet);
        }
        bed
    }

    /// The namespace name of a host.
    pub fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    fn add_ns(&mut self, name: &str) {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        ip(&["netns", "add", name]);
        self.created.push(name.to_string());
        ip(&["-n", name, "link", "set", "lo", "up"]);
    }

    fn add_host(&mut self, br: &str, i: usize, host: &str, octet: u8) {
        let ns = self.ns(host);
        self.add_ns(&ns);
        let port = format!("p{i}");
        ip(&[
            "-n", &ns, "link", "add", IFACE, "type", "veth", "peer", "name", &port, "netns", br,
        ]);
        ip(&["-n", br, "link", "set", &port, "master", "br0"]);
        ip(&["-n", br, "link", "set", &port, "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("10.77.70.{octet}/24"),
            "dev",
            IFACE,
        ]);
        ip(&["-n", &ns, "link", "set", IFACE, "up"]);
    }

    /// Runs `f` on a new thread whose network namespace is `host`'s (sockets and child
    /// processes created there belong to that namespace).
    pub fn in_ns<T: Send + 'static>(
        &self,
        host: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/var/run/netns/{}", self.ns(host));
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open netns");
            setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
    }

    /// The MAC address of a host's interface.
    pub fn mac(&self, host: &str) -> String {
        let out = ip(&["-n", &self.ns(host), "-br", "link", "show", IFACE]);
        out.split_whitespace()
            .nth(2)
            .unwrap_or_default()
            .to_string()
    }

    /// True when `addr` is on the host's interface.
    pub fn has_addr(&self, host: &str, addr: &str) -> bool {
        let out = Command::new("ip")
            .args(["-n", &self.ns(host), "-br", "addr", "show", "dev", IFACE])
            .output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).contains(&format!(" {addr}/")))
            .unwrap_or(false)
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for ns in self.created.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}
