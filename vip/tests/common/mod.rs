//! Test bed for the VIP tests: a few network namespaces ("hosts") joined by a bridge that lives
//! in its own namespace, so the host's interfaces are never touched. Everything is deleted by
//! `Lab`'s Drop, also when a test fails. Hosts get 10.77.50.(i+1)/24 and fd77:50::(i+1)/64 on
//! `fvt0`, in the order given. The namespaces themselves are the shared test bed's
//! (`fulcrum_testbed::netns::Namespace`); the wiring (port names, IPv6) is this file's.
#![allow(dead_code)]

use std::fs::File;
use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use fulcrum_testbed::netns::Namespace;
use fulcrum_vip::{VipController, VipOptions};
use nix::sched::CloneFlags;

pub const IFACE: &str = "fvt0";

/// True when the tests can build namespaces (root and `ip` present); says why not
/// otherwise (the shared test bed's check: under `CI=true` a missing prerequisite fails).
pub use fulcrum_testbed::netns::can_run;

/// Runs `ip ARGS`, panicking with its stderr on failure.
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

pub struct Lab {
    prefix: String,
    hosts: Vec<String>,
    /// The shared test bed's namespaces, in the order made (deleted in reverse).
    created: Vec<Namespace>,
}

impl Lab {
    /// Builds the bridge namespace and one namespace per host name.
    pub fn new(tag: &str, hosts: &[&str]) -> Lab {
        let prefix = format!("fvt-{}-{tag}", std::process::id());
        let mut lab = Lab {
            prefix,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            created: Vec::new(),
        };
        let br = lab.ns("br");
        lab.add_ns(&br);
        ip(&["-n", &br, "link", "add", "fvtbr", "type", "bridge"]);
        ip(&["-n", &br, "link", "set", "fvtbr", "up"]);
        for (i, host) in hosts.iter().enumerate() {
            lab.add_host(&br, i, host);
        }
        lab
    }

    fn add_ns(&mut self, name: &str) {
        // A leftover from a crashed run with the same pid is replaced.
        let ns = Namespace::add(name, true).unwrap_or_else(|e| panic!("namespace {name}: {e}"));
        self.created.push(ns);
    }

    fn add_host(&mut self, br: &str, i: usize, host: &str) {
        let ns = self.ns(host);
        self.add_ns(&ns);
        let port = format!("fvtp{i}");
        ip(&[
            "-n", &ns, "link", "add", IFACE, "type", "veth", "peer", "name", &port, "netns", br,
        ]);
        ip(&["-n", br, "link", "set", &port, "master", "fvtbr", "up"]);
        ip(&["-n", &ns, "link", "set", IFACE, "up"]);
        let v4 = format!("10.77.50.{}/24", i + 1);
        let v6 = format!("fd77:50::{}/64", i + 1);
        ip(&["-n", &ns, "addr", "add", &v4, "dev", IFACE]);
        ip(&["-n", &ns, "addr", "add", &v6, "dev", IFACE, "nodad"]);
    }

    /// Namespace name of a host (or "br").
    pub fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// MAC of a host's `fvt0`, as `ip` prints it.
    pub fn mac(&self, host: &str) -> String {
        let out = ip(&["-n", &self.ns(host), "link", "show", IFACE]);
        let mut words = out.split_whitespace();
        words.find(|w| *w == "link/ether");
        words
            .next()
            .expect("link/ether in ip link output")
            .to_string()
    }

    /// The lladdr host has cached for `addr`, if any.
    pub fn neigh(&self, host: &str, addr: &str) -> Option<String> {
        let out = ip(&["-n", &self.ns(host), "neigh", "show", addr, "dev", IFACE]);
        let mut words = out.split_whitespace();
        words.find(|w| *w == "lladdr")?;
        words.next().map(str::to_string)
    }

    /// `ip -o addr show` lines of a host's fvt0 that mention `addr`.
    pub fn addr_lines(&self, host: &str, addr: &str) -> Vec<String> {
        let out = ip(&["-n", &self.ns(host), "-o", "addr", "show", "dev", IFACE]);
        let needle = format!(" {addr}/");
        out.lines()
            .filter(|l| l.contains(&needle))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        while let Some(ns) = self.created.pop() {
            drop(ns);
        }
    }
}

/// Runs `f` on a fresh thread that has entered namespace `ns`: sockets it creates belong there.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        let handle = s.spawn(|| {
            let file = File::open(format!("/var/run/netns/{ns}")).expect("open netns");
            nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        });
        handle
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// A runtime whose workers run the controller; built inside the namespace.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Starts a controller inside `ns`. The returned runtime runs its task; the controller can be
/// driven from any thread.
pub fn controller_in(ns: &str, opts: VipOptions) -> (tokio::runtime::Runtime, VipController) {
    in_netns(ns, || {
        let rt = runtime();
        let ctrl = rt
            .block_on(VipController::start(opts))
            .expect("start controller");
        (rt, ctrl)
    })
}

/// Asks the kernel of `ns` through the crate's own `is_present`.
pub fn present(ns: &str, addr: IpAddr) -> bool {
    in_netns(ns, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(fulcrum_vip::is_present(addr, IFACE))
            .expect("is_present")
    })
}

/// Polls `cond` every `every` until it holds or `limit` passes; returns the time it took.
pub fn wait_for(
    limit: Duration,
    every: Duration,
    mut cond: impl FnMut() -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// Options for the test VIP with quick defaults.
pub fn opts(addr: &str, prefix: u8) -> VipOptions {
    VipOptions::new(addr.parse().expect("vip"), prefix, IFACE)
}
