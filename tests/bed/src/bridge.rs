//! A bridged test network: a bridge in its own namespace (the switch) and one namespace
//! per host, each joined to the bridge by a veth pair whose host end is `eth0`.
//!
//! ```text
//!  switch ns: bridge ── p0 ═ veth ═ eth0 (host 1, 10.77.X.a/24 [, fd77:Y::a/64])
//!                     ├─ p1 ═ veth ═ eth0 (host 2, 10.77.X.b/24 [, fd77:Y::b/64])
//!                     └─ ...
//! ```
//! Every address must lie inside 10.77.0.0/16 (IPv6, when asked for: fd77::/16) and no
//! namespace gets a default route, so nothing can leave the machine; the host's own links and routes are never touched.
//! Dropping a [`Bridged`] SIGKILLs what still runs in its namespaces and deletes them (the
//! veth pairs go with them), also when a test panics or a run fails half way; [`cleanup`]
//! removes the leftovers of a process that was killed before it could drop its bed.

use crate::netns::{self, Namespace};
use crate::BedError;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The interface every host sees.
pub const IFACE: &str = "eth0";
const BRIDGE_NF: &str = "net/bridge/bridge-nf-call-iptables";

/// What a namespace of the same name, left by an earlier run, does to a new bed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftovers {
    /// Delete it and build anew (names that hold the PID cannot belong to a live run).
    Replace,
    /// Refuse to build; the message names `hint`, the command that removes them.
    Refuse {
        prefix: &'static str,
        hint: &'static str,
    },
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BridgeSpec {
    /// The namespace holding the bridge.
    pub switch_ns: String,
    /// The bridge's name inside `switch_ns`.
    pub bridge: String,
    /// Every host: its namespace name and its address (a /24).
    pub hosts: Vec<(String, Ipv4Addr)>,
    /// When set, every host also gets an IPv6 address in this /64: the prefix with the
    /// last octet of its IPv4 address as the host part (10.77.50.2 -> fd77:50::2), without
    /// duplicate address detection (usable at once).
    pub ipv6_prefix: Option<Ipv6Addr>,
    pub leftovers: Leftovers,
    /// Set bridge-nf-call-iptables=0 in the switch namespace (and put the host's value
    /// back if the change leaked to it): bridged frames must not go through iptables.
    pub quiet_bridge_netfilter: bool,
}

/// The built network; dropping it tears everything down.
pub struct Bridged {
    /// In the order made; deleted in reverse (hosts first, the switch last).
    created: Vec<Namespace>,
    /// Host value of bridge-nf-call-iptables to put back if our change leaked to the host.
    restore_bridge_nf: Option<String>,
}

/// True for an address inside 10.77.0.0/16, the only range a bed may use.
pub fn allowed(addr: Ipv4Addr) -> bool {
    let [a, b, _, _] = addr.octets();
    a == 10 && b == 77
}

/// True for an IPv6 address inside fd77::/16, the only IPv6 range a bed may use.
pub fn allowed_v6(addr: Ipv6Addr) -> bool {
    addr.segments()[0] == 0xfd77
}

/// Host `ip`'s address in the /64 `prefix` (see [`BridgeSpec::ipv6_prefix`]).
pub fn ipv6_of(prefix: Ipv6Addr, ip: Ipv4Addr) -> Ipv6Addr {
    let mut segments = prefix.segments();
    segments[4..].fill(0);
    segments[7] = u16::from(ip.octets()[3]);
    Ipv6Addr::from(segments)
}

impl Bridged {
    /// Builds the switch, the bridge and every host. On an error, what was made so far is
    /// deleted again.
    pub fn build(spec: &BridgeSpec) -> Result<Bridged, BedError> {
        if let Some((ns, ip)) = spec.hosts.iter().find(|(_, ip)| !allowed(*ip)) {
            return Err(BedError::Refused(format!(
                "{ns}: address {ip} is outside 10.77.0.0/16"
            )));
        }
        if let Some(prefix) = spec.ipv6_prefix.filter(|p| !allowed_v6(*p)) {
            return Err(BedError::Refused(format!(
                "IPv6 prefix {prefix} is outside fd77::/16"
            )));
        }
        if let Leftovers::Refuse { prefix, hint } = spec.leftovers {
            let leftovers = netns::list(prefix);
            if !leftovers.is_empty() {
                return Err(BedError::Refused(format!(
                    "namespaces from an earlier run exist ({}): run `{hint}`",
                    leftovers.join(", ")
                )));
            }
        }
        let mut bed = Bridged {
            created: Vec::new(),
            restore_bridge_nf: None,
        };
        let sw = spec.switch_ns.as_str();
        bed.add_ns(sw, spec.leftovers)?;
        netns::run(
            "ip",
            &["-n", sw, "link", "add", &spec.bridge, "type", "bridge"],
        )?;
        netns::run(
            "ip",
            &[
                "-n",
                sw,
                "link",
                "set",
                &spec.bridge,
                "type",
                "bridge",
                "stp_state",
                "0",
            ],
        )?;
        netns::run("ip", &["-n", sw, "link", "set", &spec.bridge, "up"])?;
        if spec.quiet_bridge_netfilter {
            bed.quiet_bridge_netfilter(sw);
        }
        for (i, (ns, ip)) in spec.hosts.iter().enumerate() {
            bed.add_ns(ns, spec.leftovers)?;
            let port = format!("p{i}");
            netns::run(
                "ip",
                &[
                    "link", "add", &port, "netns", sw, "type", "veth", "peer", "name", IFACE,
                    "netns", ns,
                ],
            )?;
            netns::run(
                "ip",
                &["-n", sw, "link", "set", &port, "master", &spec.bridge],
            )?;
            netns::run("ip", &["-n", sw, "link", "set", &port, "up"])?;
            let cidr = format!("{ip}/24");
            netns::run("ip", &["-n", ns, "addr", "add", &cidr, "dev", IFACE])?;
            if let Some(prefix) = spec.ipv6_prefix {
                let cidr = format!("{}/64", ipv6_of(prefix, *ip));
                netns::run(
                    "ip",
                    &["-n", ns, "addr", "add", &cidr, "dev", IFACE, "nodad"],
                )?;
            }
            netns::run("ip", &["-n", ns, "link", "set", IFACE, "up"])?;
        }
        tracing::info!(switch = sw, namespaces = bed.created.len(), "test bed up");
        Ok(bed)
    }

    fn add_ns(&mut self, ns: &str, leftovers: Leftovers) -> Result<(), BedError> {
        let ns = Namespace::add(ns, leftovers == Leftovers::Replace)?;
        self.created.push(ns);
        Ok(())
    }

    fn quiet_bridge_netfilter(&mut self, sw: &str) {
        let host_path = format!("/proc/sys/{BRIDGE_NF}");
        let Ok(before) = std::fs::read_to_string(&host_path) else {
            return; // br_netfilter not loaded: bridged frames skip iptables anyway.
        };
        let set = format!("{}=0", BRIDGE_NF.replace('/', "."));
        if netns::run_in(sw, "sysctl", &["-q", "-w", &set]).is_err() {
            return;
        }
        if std::fs::read_to_string(&host_path).ok().as_deref() != Some(before.as_str()) {
            self.restore_bridge_nf = Some(before.trim().to_string());
        }
    }

    /// The namespaces this bed made, in the order it made them.
    pub fn namespaces(&self) -> Vec<String> {
        self.created
            .iter()
            .map(|ns| ns.name().to_string())
            .collect()
    }
}

impl Drop for Bridged {
    fn drop(&mut self) {
        let _span =
            tracing::info_span!("test bed teardown", namespaces = self.created.len()).entered();
        while let Some(ns) = self.created.pop() {
            drop(ns);
        }
        if let Some(value) = &self.restore_bridge_nf {
            let _ = std::fs::write(format!("/proc/sys/{BRIDGE_NF}"), value);
        }
    }
}

/// The MAC of `eth0` in namespace `ns`.
pub fn mac_of(ns: &str) -> Result<[u8; 6], BedError> {
    let out = netns::run("ip", &["-n", ns, "-o", "link", "show", IFACE])?;
    let text = out
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .ok_or_else(|| BedError::Refused(format!("no MAC for {IFACE} in {ns}")))?;
    let bytes: Vec<u8> = text
        .split(':')
        .map(|h| u8::from_str_radix(h, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| BedError::Refused(format!("MAC {text:?} of {ns}")))?;
    bytes
        .try_into()
        .map_err(|_| BedError::Refused(format!("MAC {text:?} of {ns} is not 6 bytes")))
}

/// A MAC as `ip link` prints it (`02:00:5e:00:00:01`).
pub fn mac_text(mac: &[u8; 6]) -> String {
    let parts: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(":")
}

/// True when `addr` is on `eth0` in namespace `ns`.
pub fn has_addr(ns: &str, addr: &str) -> bool {
    netns::run("ip", &["-n", ns, "-br", "addr", "show", "dev", IFACE])
        .map(|out| out.contains(&format!(" {addr}/")))
        .unwrap_or(false)
}

/// Removes everything a killed run may have left: namespaces named `prefix*` (and the
/// processes in them) and any `prefix*` link in the host namespace. Returns what went.
pub fn cleanup(prefix: &str) -> Vec<String> {
    let mut removed = Vec::new();
    for ns in netns::list(prefix) {
        netns::kill_processes(&ns);
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
            if name.starts_with(prefix) && netns::run("ip", &["link", "del", name]).is_ok() {
                removed.push(format!("link {name}"));
            }
        }
    }
    removed
}
