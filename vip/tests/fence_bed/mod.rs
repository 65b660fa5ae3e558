//! The fence tests' bed: a `node` namespace that owns the VIPs (and a listener on each) and
//! a `peer` namespace that asks for them on the wire, built on the lab of `common`. Also the
//! skip policy: without root the tests say why and pass, unless `CI=true`, where they fail.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use fulcrum_vip::frames::Mac;
use fulcrum_vip::{Fence, VipError};

use crate::common::{can_run, in_netns, ip, Lab, IFACE};
use crate::wire::{parse_mac, tcp_answered, Acceptor, Resolver};

pub const VIP4: Ipv4Addr = Ipv4Addr::new(10, 77, 50, 100);
pub const VIP4_B: Ipv4Addr = Ipv4Addr::new(10, 77, 50, 101);
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0x50, 0, 0, 0, 0, 0, 0x100);
/// The peer's own addresses (`common` numbers hosts from .1 in the order given).
pub const PEER4: Ipv4Addr = Ipv4Addr::new(10, 77, 50, 2);
pub const PEER6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0x50, 0, 0, 0, 0, 0, 2);
pub const PORT: u16 = 7080;

/// The tests measure milliseconds on two shared cores: they run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Takes the serial lock if the test can run here; `None` (test skipped, reason printed)
/// otherwise. Under `CI=true` a test that cannot run fails instead.
pub fn ready(test: &str) -> Option<MutexGuard<'static, ()>> {
    if !can_run(test) {
        assert!(!ci(), "CI=true: {test} must run here (root and iproute2)");
        return None;
    }
    Some(SERIAL.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Installs the fence inside `ns`; `None` (skipped, reason printed) when this kernel or
/// process cannot have one, which fails the test under `CI=true`.
pub fn install_in(ns: &str, vips: &[IpAddr]) -> Option<Fence> {
    match in_netns(ns, || Fence::install(IFACE, vips)) {
        Ok(fence) => Some(fence),
        Err(e @ VipError::NftablesUnavailable { .. }) => {
            assert!(!ci(), "CI=true: the fence must install here: {e}");
            eprintln!("SKIPPED: {e}");
            None
        }
        Err(e) => panic!("installing the fence: {e}"),
    }
}

pub struct Bed {
    pub lab: Lab,
    pub node: String,
    pub peer: String,
    pub node_mac: Mac,
    pub peer_mac: Mac,
    _acceptors: Vec<Acceptor>,
}

impl Bed {
    /// Builds the namespaces, puts `vips` on the node with a listener on each `vip:PORT`, and
    /// pins the node's MAC for each VIP in the peer's neighbour table, so a TCP probe reaches
    /// the node whether or not address resolution is answered: it tests the IP rules alone.
    pub fn new(tag: &str, vips: &[IpAddr]) -> Bed {
        let lab = Lab::new(tag, &["node", "peer"]);
        let (node, peer) = (lab.ns("node"), lab.ns("peer"));
        let node_mac_text = lab.mac("node");
        let mut acceptors = Vec::new();
        for &vip in vips {
            add_vip(&node, vip);
            ip(&[
                "-n",
                &peer,
                "neigh",
                "replace",
                &vip.to_string(),
                "lladdr",
                &node_mac_text,
                "dev",
                IFACE,
                "nud",
                "permanent",
            ]);
            let listener = in_netns(&node, || TcpListener::bind(SocketAddr::new(vip, PORT)))
                .expect("listen on the VIP");
            acceptors.push(Acceptor::start(listener));
        }
        Bed {
            node_mac: parse_mac(&node_mac_text),
            peer_mac: parse_mac(&lab.mac("peer")),
            lab,
            node,
            peer,
            _acceptors: acceptors,
        }
    }
}

fn add_vip(ns: &str, vip: IpAddr) {
    match vip {
        IpAddr::V4(v4) => ip(&["-n", ns, "addr", "add", &format!("{v4}/32"), "dev", IFACE]),
        IpAddr::V6(v6) => ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{v6}/128"),
            "dev",
            IFACE,
            "nodad",
        ]),
    };
}

/// Puts the calling thread on SCHED_FIFO (as the node's control thread will be when it may);
/// returns whether that worked. Used for the thread that refreshes the lease.
#[allow(unsafe_code)] // test-only: the same syscall as the node's control thread
pub fn try_realtime() -> bool {
    let param = nix::libc::sched_param { sched_priority: 10 };
    // SAFETY: sched_setscheduler only reads the sched_param behind the valid pointer; pid 0
    // is the calling thread.
    unsafe { nix::libc::sched_setscheduler(0, nix::libc::SCHED_FIFO, &param) == 0 }
}

/// The peer's view of one IPv4 VIP: ARP answered? TCP answered? (Create it in the peer's ns.)
pub struct Asker {
    arp: Resolver,
}

impl Asker {
    pub fn new(bed: &Bed) -> Asker {
        Asker {
            arp: Resolver::arp(IFACE, bed.peer_mac),
        }
    }

    pub fn arp(&mut self, vip: Ipv4Addr, wait: Duration) -> bool {
        self.arp.arp_answered(PEER4, vip, wait)
    }

    /// [`Asker::arp`] from another sender address on the subnet, so that the reply to this
    /// request cannot be confused with a late reply to an earlier one.
    pub fn arp_from(&mut self, sender: Ipv4Addr, vip: Ipv4Addr, wait: Duration) -> bool {
        self.arp.arp_answered(sender, vip, wait)
    }

    pub fn tcp(&self, vip: Ipv4Addr, wait: Duration) -> bool {
        tcp_answered(SocketAddr::new(IpAddr::V4(vip), PORT), wait)
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock `Instant` reads on Linux, and the same in every
/// process, so a child can tell the test its deadlines.
pub fn monotonic_ns() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("clock_gettime(CLOCK_MONOTONIC)");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}
