//! One test's bed: a [`Bridged`] network whose hosts have short names (`n1`, `cl`) and
//! addresses in 10.77.70.0/24, in namespaces named after the test process and a tag, so
//! tests running at the same time never share one.

use crate::bridge::{self, BridgeSpec, Bridged, Leftovers};
use std::net::Ipv4Addr;

pub use crate::bridge::IFACE;

/// A bridge namespace plus one namespace per host; dropping it deletes them all.
pub struct Testbed {
    prefix: String,
    /// Each host's short name and address.
    hosts: Vec<(String, Ipv4Addr)>,
    _net: Bridged,
}

impl Testbed {
    /// A bridge namespace plus one namespace per `(name, last octet)` host in
    /// 10.77.70.0/24. Panics (the test fails) when the bed cannot be built; what was
    /// built is deleted first.
    pub fn new(tag: &str, hosts: &[(&str, u8)]) -> Testbed {
        let prefix = format!("fnt{}{tag}", std::process::id() % 100_000);
        let spec = BridgeSpec {
            switch_ns: format!("{prefix}-br"),
            bridge: "br0".into(),
            hosts: hosts
                .iter()
                .map(|(h, octet)| (format!("{prefix}-{h}"), Ipv4Addr::new(10, 77, 70, *octet)))
                .collect(),
            leftovers: Leftovers::Replace,
            quiet_bridge_netfilter: false,
            ipv6_prefix: None,
        };
        match Bridged::build(&spec) {
            Ok(net) => Testbed {
                prefix,
                hosts: hosts
                    .iter()
                    .map(|(h, octet)| (h.to_string(), Ipv4Addr::new(10, 77, 70, *octet)))
                    .collect(),
                _net: net,
            },
            Err(e) => panic!("building the test bed {prefix}: {e}"),
        }
    }

    /// The namespace name of a host.
    pub fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// A host's address (None for a name the bed does not have).
    pub fn ip(&self, host: &str) -> Option<Ipv4Addr> {
        self.hosts
            .iter()
            .find(|(h, _)| h == host)
            .map(|(_, ip)| *ip)
    }

    /// Runs `f` on a new thread whose network namespace is `host`'s (sockets and child
    /// processes created there belong to that namespace).
    pub fn in_ns<T: Send + 'static>(
        &self,
        host: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        crate::netns::spawn_in(&self.ns(host), f)
    }

    /// The MAC address of a host's interface (empty when it cannot be read).
    pub fn mac(&self, host: &str) -> String {
        bridge::mac_of(&self.ns(host))
            .map(|m| bridge::mac_text(&m))
            .unwrap_or_default()
    }

    /// True when `addr` is on the host's interface.
    pub fn has_addr(&self, host: &str, addr: &str) -> bool {
        bridge::has_addr(&self.ns(host), addr)
    }
}
