//! The local test bed: a bridge in its own namespace and one namespace per host.
//!
//! ```text
//!  fch-sw: bridge fch-br ── veth ── fch-n1..n3 (eth0 .11-.13, fulcrum nodes)
//!                         ├─ veth ── fch-b1..bN (eth0 .21-..., chaos backends)
//!                         ├─ veth ── fch-rd     (eth0 .5, redis-server)
//!                         └─ veth ── fch-cl     (eth0 .2, load client, admin calls)
//! ```
//! Addresses come from one /24 inside 10.77.0.0/16; no namespace gets a default route, so
//! nothing can leave the machine. The host's own links and routes are never touched: the
//! bridge lives in `fch-sw`. The network itself is the shared test bed's
//! ([`fulcrum_testbed::bridge`]): dropping a [`Testbed`] deletes every namespace it created
//! (which also removes the veth pairs); [`cleanup`] removes leftovers of a crashed run.

use crate::wire_probe::PROBE_MAC;
use anyhow::{bail, Context, Result};
use fulcrum_testbed::bridge::{self, mac_text, BridgeSpec, Bridged, Leftovers};
use fulcrum_testbed::netns;
use std::net::Ipv4Addr;

pub use fulcrum_testbed::bridge::mac_of;

/// Prefix of every namespace, bridge and host-side link this tool creates.
pub const PREFIX: &str = "fch-";
/// Namespace holding the bridge.
const SWITCH_NS: &str = "fch-sw";
const BRIDGE: &str = "fch-br";

/// Who lives where: namespace names and addresses, derived from the /24.
#[derive(Debug, Clone)]
pub struct Layout {
    net: [u8; 3],
    pub nodes: usize,
    pub backends: usize,
}

impl Layout {
    /// `subnet` is `10.77.X.0/24` (or just `10.77.X`); anything outside 10.77.0.0/16 is refused.
    pub fn new(subnet: &str, nodes: usize, backends: usize) -> Result<Layout> {
        let base = subnet.trim_end_matches("/24").trim_end_matches(".0");
        let parts: Vec<u8> = base
            .split('.')
            .map(|p| p.parse::<u8>())
            .collect::<Result<_, _>>()
            .with_context(|| format!("subnet {subnet:?} is not 10.77.X.0/24"))?;
        if parts.len() != 3 || parts[0] != 10 || parts[1] != 77 {
            bail!("subnet {subnet:?} must be a /24 inside 10.77.0.0/16, e.g. 10.77.60.0/24");
        }
        if !(1..=9).contains(&nodes) || !(1..=9).contains(&backends) {
            bail!("between 1 and 9 nodes and backends");
        }
        Ok(Layout {
            net: [parts[0], parts[1], parts[2]],
            nodes,
            backends,
        })
    }

    fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.net[0], self.net[1], self.net[2], host)
    }
    pub fn node_ip(&self, i: usize) -> Ipv4Addr {
        self.ip(11 + i as u8)
    }
    pub fn backend_ip(&self, b: usize) -> Ipv4Addr {
        self.ip(21 + b as u8)
    }
    pub fn redis_ip(&self) -> Ipv4Addr {
        self.ip(5)
    }
    pub fn client_ip(&self) -> Ipv4Addr {
        self.ip(2)
    }
    /// The wire probe's own address (no namespace has it; see `wire_probe.rs`).
    pub fn probe_ip(&self) -> Ipv4Addr {
        self.ip(3)
    }
    pub fn vip(&self) -> Ipv4Addr {
        self.ip(100)
    }
    pub fn node_ns(&self, i: usize) -> String {
        format!("fch-n{}", i + 1)
    }
    pub fn backend_ns(&self, b: usize) -> String {
        format!("fch-b{}", b + 1)
    }
    pub fn backend_name(&self, b: usize) -> String {
        format!("b{}", b + 1)
    }
    pub const REDIS_NS: &'static str = "fch-rd";
    pub const CLIENT_NS: &'static str = "fch-cl";

    /// Every host namespace with its address, nodes first (bridge port order follows it).
    fn hosts(&self) -> Vec<(String, Ipv4Addr)> {
        let mut hosts: Vec<(String, Ipv4Addr)> = (0..self.nodes)
            .map(|i| (self.node_ns(i), self.node_ip(i)))
            .collect();
        hosts.extend((0..self.backends).map(|b| (self.backend_ns(b), self.backend_ip(b))));
        hosts.push((Self::REDIS_NS.to_string(), self.redis_ip()));
        hosts.push((Self::CLIENT_NS.to_string(), self.client_ip()));
        hosts
    }
}

/// Node `i` learns the wire probe's MAC for the probe address (a permanent neighbour
/// entry), so it can answer a probe without an ARP exchange of its own (see
/// `wire_probe.rs`). Taking the link down flushes the entry: call again after link up.
pub fn teach_probe(layout: &Layout, i: usize) -> Result<()> {
    let ip = layout.probe_ip().to_string();
    let mac = mac_text(&PROBE_MAC);
    let args = [
        "neigh",
        "replace",
        &ip,
        "lladdr",
        &mac,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ];
    netns::run_in(&layout.node_ns(i), "ip", &args)?;
    Ok(())
}

/// Takes `eth0` of node `i` down or up (an interface inside the node's namespace: the
/// bridge side loses carrier, so frames to the node vanish without a reset).
pub fn set_link(layout: &Layout, i: usize, up: bool) -> Result<()> {
    let state = if up { "up" } else { "down" };
    netns::run_in_urgently(&layout.node_ns(i), "ip", &["link", "set", "eth0", state])?;
    if up {
        teach_probe(layout, i)?;
    }
    Ok(())
}

/// The built test bed; dropping it tears everything down.
pub struct Testbed {
    _net: Bridged,
}

impl Testbed {
    /// Builds the bridge and every namespace. Fails if leftovers exist (run `--cleanup`).
    pub fn build(layout: &Layout) -> Result<Testbed> {
        let spec = BridgeSpec {
            switch_ns: SWITCH_NS.to_string(),
            bridge: BRIDGE.to_string(),
            hosts: layout.hosts(),
            leftovers: Leftovers::Refuse {
                prefix: PREFIX,
                hint: "fulcrum-chaos local --cleanup",
            },
            quiet_bridge_netfilter: true,
            ipv6_prefix: None,
        };
        let bed = Testbed {
            _net: Bridged::build(&spec)?,
        };
        // Every node knows the wire probe's MAC for its address (see [`teach_probe`]).
        (0..layout.nodes).try_for_each(|i| teach_probe(layout, i))?;
        Ok(bed)
    }
}

/// Removes everything a crashed run may have left: `fch-*` namespaces (and the processes
/// in them) and any `fch-*` link in the host namespace. Returns what was removed.
pub fn cleanup() -> Vec<String> {
    bridge::cleanup(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_stays_inside_10_77() {
        let l = Layout::new("10.77.60.0/24", 3, 2).expect("valid");
        assert_eq!(l.node_ip(0), Ipv4Addr::new(10, 77, 60, 11));
        assert_eq!(l.backend_ip(1), Ipv4Addr::new(10, 77, 60, 22));
        assert_eq!(l.vip(), Ipv4Addr::new(10, 77, 60, 100));
        assert!(Layout::new("10.78.60.0/24", 3, 2).is_err());
        assert!(Layout::new("192.168.1.0/24", 3, 2).is_err());
        assert!(Layout::new("10.77.60.0/24", 0, 2).is_err());
        for ns in l.hosts().iter().map(|(ns, _)| ns) {
            assert!(ns.starts_with(PREFIX) && ns.len() < 15, "{ns}");
        }
    }
}
