//! `[dns]`: the authoritative DNS listener that answers for the service with the
//! addresses that are healthy now (issue 25 item 2).
//!
//! `bind` is node-local (each node listens on its own address); the zone, the names, the
//! TTL and the node address table are cluster-wide, so every node answers the same
//! question the same way from the same replicated view.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// `[dns]`: where this node listens and what the cluster answers.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSection {
    /// Local: the address this node answers on, UDP and TCP (e.g. `127.0.0.1:5353`).
    /// A node without it runs no listener.
    pub bind: Option<SocketAddr>,
    /// The zone the cluster is authoritative for (`lb.example.com`); without it every
    /// query is refused.
    pub zone: Option<String>,
    /// TTL of every answer: short, so resolvers drop a dead address quickly.
    #[serde(default = "default_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// Node id (as a key: `"1"`) -> the addresses clients reach that node on, for names
    /// answered with `answer = "nodes"`.
    #[serde(default)]
    pub node_addresses: BTreeMap<String, Vec<IpAddr>>,
    /// The names of the zone and what each is answered with.
    #[serde(default)]
    pub name: Vec<DnsName>,
}

/// One `[[dns.name]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DnsName {
    /// The name relative to the zone (`www`), or `@` for the zone's apex.
    pub name: String,
    pub answer: DnsAnswer,
    /// For `answer = "vips"`: only these (`[[vip]]` names or addresses); all when empty.
    #[serde(default)]
    pub vips: Vec<String>,
}

/// What a name is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DnsAnswer {
    /// The VIPs held by a live node now.
    Vips,
    /// The addresses (`node_addresses`) of the nodes live and not drained now.
    Nodes,
}

/// Shortest and longest TTL accepted.
pub const DNS_TTL_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(3600));

fn default_ttl() -> Duration {
    Duration::from_secs(5)
}

impl DnsSection {
    /// The node ids of `node_addresses` with their addresses (keys that are not ids are
    /// refused by validation, and skipped here).
    pub fn node_addresses(&self) -> BTreeMap<u64, &[IpAddr]> {
        self.node_addresses
            .iter()
            .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_slice())))
            .collect()
    }

    /// `name` as a full name in the zone, lower case, without the final dot
    /// (`www` in `lb.example` -> `www.lb.example`; `@` -> `lb.example`).
    pub fn full_name(&self, name: &str) -> Option<String> {
        let zone = normalize(self.zone.as_deref()?);
        Some(if name == "@" {
            zone
        } else {
            format!("{}.{zone}", normalize(name))
        })
    }
}

/// Lower case, without a final dot: how names are compared.
pub fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}
