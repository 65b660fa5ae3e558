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
//! bridge lives in `fch-sw`. Dropping a [`Testbed`] deletes every namespace it created
//! (which also removes the veth pairs); [`cleanup`] removes leftovers of a crashed run.

use crate::netns;
use crate::wire_probe::PROBE_MAC;
use anyhow::{anyhow, bail, Context, Result};
use std::net::Ipv4Addr;

/// Prefix of every namespace, bridge and host-side link this tool creates.
pub const PREFIX: &str = "fch-";
/// Namespace holding the bridge.
const SWITCH_NS: &str = "fch-sw";
const BRIDGE: &str = "fch-br";
const BRIDGE_NF: &str = "net/bridge/bridge-nf-call-iptables";

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

fn mac_text(mac: &[u8; 6]) -> String {
    let parts: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(":")
}

/// The MAC of `eth0` in namespace `ns`.
pub fn mac_of(ns: &str) -> Result<[u8; 6]> {
    let out = netns::run("ip", &["-n", ns, "-o", "link", "show", "eth0"])?;
    let text = out
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .ok_or_else(|| anyhow!("no MAC for eth0 in {ns}"))?;
    let bytes: Vec<u8> = text
        .split(':')
        .map(|h| u8::from_str_radix(h, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("MAC {text:?} of {ns}"))?;
    bytes
        .try_into()
        .map_err(|_| anyhow!("MAC {text:?} of {ns} is not 6 bytes"))
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
    netns::run_in(&layout.node_ns(i), "ip", &args).map(|_| ())
}

/// Takes `eth0` of node `i` down or up (an interface inside the node's namespace: the
/// bridge side loses carrier, so frames to the node vanish without a reset).
pub fn set_link(layout: &Layout, i: usize, up: bool) -> Result<()> {
    let state = if up { "up" } else { "down" };
    netns::run(
        "ip",
        &["-n", &layout.node_ns(i), "link", "set", "eth0", state],
    )?;
    if up {
        teach_probe(layout, i)?;
    }
    Ok(())
}

/// The built test bed; dropping it tears everything down.
pub struct Testbed {
    created: Vec<String>,
    /// Host value of bridge-nf-call-iptables to put back if our change leaked to the host.
    restore_bridge_nf: Option<String>,
}

impl Testbed {
    /// Builds the bridge and every namespace. Fails if leftovers exist (run `--cleanup`).
    pub fn build(layout: &Layout) -> Result<Testbed> {
        let leftovers = netns::list(PREFIX);
        if !leftovers.is_empty() {
            bail!(
                "namespaces from an earlier run exist ({}): run `fulcrum-chaos local --cleanup`",
                leftovers.join(", ")
            );
        }
        let mut bed = Testbed {
            created: Vec::new(),
            restore_bridge_nf: None,
        };
        bed.add_ns(SWITCH_NS)?;
        netns::run_in(SWITCH_NS, "ip", &["link", "set", "lo", "up"])?;
        netns::run_in(
            SWITCH_NS,
            "ip",
            &["link", "add", BRIDGE, "type", "bridge", "stp_state", "0"],
        )?;
        netns::run_in(SWITCH_NS, "ip", &["link", "set", BRIDGE, "up"])?;
        bed.quiet_bridge_netfilter();
        for (ns, ip) in layout.hosts() {
            bed.add_ns(&ns)?;
            let port = format!("{ns}p");
            netns::run(
                "ip",
                &[
                    "link", "add", &port, "netns", SWITCH_NS, "type", "veth", "peer", "name",
                    "eth0", "netns", &ns,
                ],
            )?;
            netns::run_in(SWITCH_NS, "ip", &["link", "set", &port, "master", BRIDGE])?;
            netns::run_in(SWITCH_NS, "ip", &["link", "set", &port, "up"])?;
            let cidr = format!("{ip}/24");
            netns::run_in(&ns, "ip", &["link", "set", "lo", "up"])?;
            netns::run_in(&ns, "ip", &["addr", "add", &cidr, "dev", "eth0"])?;
            netns::run_in(&ns, "ip", &["link", "set", "eth0", "up"])?;
        }
        bed.teach_probe_address(layout)?;
        Ok(bed)
    }

    /// Every node knows the wire probe's MAC for its address (see [`teach_probe`]).
    fn teach_probe_address(&self, layout: &Layout) -> Result<()> {
        (0..layout.nodes).try_for_each(|i| teach_probe(layout, i))
    }

    fn add_ns(&mut self, ns: &str) -> Result<()> {
        netns::run("ip", &["netns", "add", ns])?;
        self.created.push(ns.to_string());
        Ok(())
    }

    /// Bridged frames must not go through iptables: set bridge-nf-call-iptables=0 inside
    /// the switch namespace when the sysctl exists, and restore the host if it leaked.
    fn quiet_bridge_netfilter(&mut self) {
        let host_path = format!("/proc/sys/{BRIDGE_NF}");
        let Ok(before) = std::fs::read_to_string(&host_path) else {
            return; // br_netfilter not loaded: bridged frames skip iptables anyway.
        };
        let set = format!("{}=0", BRIDGE_NF.replace('/', "."));
        if netns::run_in(SWITCH_NS, "sysctl", &["-q", "-w", &set]).is_err() {
            return;
        }
        if std::fs::read_to_string(&host_path).ok().as_deref() != Some(before.as_str()) {
            self.restore_bridge_nf = Some(before.trim().to_string());
        }
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for ns in self.created.iter().rev() {
            kill_ns_processes(ns);
            let _ = netns::run("ip", &["netns", "del", ns]);
        }
        if let Some(value) = &self.restore_bridge_nf {
            let _ = std::fs::write(format!("/proc/sys/{BRIDGE_NF}"), value);
        }
    }
}

/// SIGKILLs whatever still runs in a namespace of ours (processes this tool started).
fn kill_ns_processes(ns: &str) {
    let Ok(pids) = netns::run("ip", &["netns", "pids", ns]) else {
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

/// Removes everything a crashed run may have left: `fch-*` namespaces (and the processes
/// in them) and any `fch-*` link in the host namespace. Returns what was removed.
pub fn cleanup() -> Vec<String> {
    let mut removed = Vec::new();
    for ns in netns::list(PREFIX) {
        kill_ns_processes(&ns);
        if netns::run("ip", &["netns", "del", &ns]).is_ok() {
            removed.push(format!("netns {ns}"));
        }
    }
    if let Ok(links) = netns::run("ip", &["-o", "link", "show"]) {
        for line in links.lines() {
            let Some(name) = line.split(':').nth(1).map(str::trim) else {
                continue;
            };
            let name = name.split('@').next().unwrap_or(name);
            if name.starts_with(PREFIX) && netns::run("ip", &["link", "del", name]).is_ok() {
                removed.push(format!("link {name}"));
            }
        }
    }
    removed
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
