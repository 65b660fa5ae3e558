//! Test bed for the VIP tests: a few network namespaces ("hosts") joined by a bridge that lives
//! in its own namespace, so the host's interfaces are never touched: the shared test bed's
//! [`Bridged`] network (`fulcrum_testbed::bridge`), deleted on drop, also when a test fails.
//! Hosts get 10.77.50.(i+1)/24 and fd77:50::(i+1)/64 on the bed's `eth0`, in the order
//! given. What the VIP tests read back (neighbour entries, address lines) is this file's.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use fulcrum_testbed::bridge::{self, BridgeSpec, Bridged, Leftovers};
use fulcrum_testbed::netns;
use fulcrum_vip::{VipController, VipOptions};

/// The interface every host has on the bridge.
pub use fulcrum_testbed::bridge::IFACE;

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
    /// The shared test bed's bridged network; dropping it deletes every namespace.
    _net: Bridged,
}

impl Lab {
    /// Builds the bridge namespace and one namespace per host name.
    pub fn new(tag: &str, hosts: &[&str]) -> Lab {
        let prefix = format!("fvt-{}-{tag}", std::process::id());
        let ns = |name: &str| format!("{prefix}-{name}");
        let spec = BridgeSpec {
            switch_ns: ns("br"),
            bridge: "fvtbr".into(),
            hosts: hosts
                .iter()
                .zip(1u8..)
                .map(|(h, octet)| (ns(h), Ipv4Addr::new(10, 77, 50, octet)))
                .collect(),
            // A leftover from a crashed run with the same pid is replaced.
            leftovers: Leftovers::Replace,
            quiet_bridge_netfilter: false,
            ipv6_prefix: Some("fd77:50::".parse().expect("an IPv6 prefix")),
        };
        let net = Bridged::build(&spec).unwrap_or_else(|e| panic!("the lab {prefix}: {e}"));
        Lab { prefix, _net: net }
    }

    /// Namespace name of a host (or "br").
    pub fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// MAC of a host's interface, as `ip` prints it.
    pub fn mac(&self, host: &str) -> String {
        let mac = bridge::mac_of(&self.ns(host)).unwrap_or_else(|e| panic!("{e}"));
        bridge::mac_text(&mac)
    }

    /// The lladdr host has cached for `addr`, if any.
    pub fn neigh(&self, host: &str, addr: &str) -> Option<String> {
        let out = ip(&["-n", &self.ns(host), "neigh", "show", addr, "dev", IFACE]);
        let mut words = out.split_whitespace();
        words.find(|w| *w == "lladdr")?;
        words.next().map(str::to_string)
    }

    /// `ip -o addr show` lines of a host's interface that mention `addr`.
    pub fn addr_lines(&self, host: &str, addr: &str) -> Vec<String> {
        let out = ip(&["-n", &self.ns(host), "-o", "addr", "show", "dev", IFACE]);
        let needle = format!(" {addr}/");
        out.lines()
            .filter(|l| l.contains(&needle))
            .map(str::to_string)
            .collect()
    }
}

/// Runs `f` on a fresh thread that has entered namespace `ns`: sockets it creates belong there.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        let handle = s.spawn(|| {
            netns::enter(ns).unwrap_or_else(|e| panic!("{e}"));
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
