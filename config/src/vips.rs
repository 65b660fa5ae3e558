//! The `vip` key, in one of its two shapes: `[vip]`, one address that the Raft leader holds,
//! or `[[vip]]`, several addresses that the cluster spreads over its live nodes (issue 18).
//! TOML cannot have both in one file, so the key holds one [`VipTable`]. `[vip]`'s own
//! table ([`VipSection`], [`Fencing`]) lives here too.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// What the `vip` key holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum VipTable {
    /// `[vip]`: the leader holds it under its lease.
    One(VipSection),
    /// `[[vip]]`: each entry held by one node the replicated assignment names.
    Many(Vec<VipEntry>),
}

/// `[vip]`: the floating address the Raft leader holds.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VipSection {
    /// `ADDRESS/PREFIX`, e.g. `10.0.0.100/24`.
    pub address: String,
    /// Local: the interface this node adds the VIP to.
    pub interface: Option<String>,
    #[serde(default)]
    pub fencing: Fencing,
    /// Kernel address lifetime, whole seconds (the kernel counts in seconds); the address
    /// vanishes this long after the last renewal.
    #[serde(default = "default_vip_lifetime", with = "humantime_serde")]
    pub lifetime: Duration,
}

/// How a new leader claims the VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Fencing {
    /// Claim at once.
    #[default]
    Fast,
    /// Wait until any old holder's kernel lifetime has surely run out.
    Strict,
}

/// One `[[vip]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VipEntry {
    /// A label for status pages; the address when absent.
    pub name: Option<String>,
    /// `ADDRESS/PREFIX`, e.g. `10.0.0.101/24`.
    pub address: String,
    /// Local: the interface this node adds the address to.
    pub interface: Option<String>,
    /// Node ids this address should rather live on, in order.
    #[serde(default)]
    pub preferred: Vec<u64>,
    /// Kernel address lifetime (whole seconds), the dead man's switch behind the fence.
    #[serde(default = "default_lifetime", with = "humantime_serde")]
    pub lifetime: Duration,
}

fn default_lifetime() -> Duration {
    Duration::from_secs(2)
}

impl VipEntry {
    /// The address and prefix, if `address` parses.
    pub fn addr_prefix(&self) -> Option<(IpAddr, u8)> {
        crate::net::parse_addr_prefix(&self.address).ok()
    }

    /// The address alone (`10.0.0.101` of `10.0.0.101/24`): the key of the assignment.
    pub fn ip_text(&self) -> String {
        self.address
            .split('/')
            .next()
            .unwrap_or(&self.address)
            .to_string()
    }

    /// `name`, or the address when there is none.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.address)
    }
}

impl VipTable {
    /// The `[vip]` table, if that is the shape.
    pub fn one(&self) -> Option<&VipSection> {
        match self {
            VipTable::One(v) => Some(v),
            VipTable::Many(_) => None,
        }
    }

    /// The `[[vip]]` entries (empty for `[vip]`).
    pub fn many(&self) -> &[VipEntry] {
        match self {
            VipTable::One(_) => &[],
            VipTable::Many(v) => v,
        }
    }
}

impl<'de> Deserialize<'de> for VipTable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Shape;
        impl<'de> Visitor<'de> for Shape {
            type Value = VipTable;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a `[vip]` table or `[[vip]]` entries")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<VipTable, A::Error> {
                VipSection::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(VipTable::One)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<VipTable, A::Error> {
                Vec::<VipEntry>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(VipTable::Many)
            }
        }
        d.deserialize_any(Shape)
    }
}

fn default_vip_lifetime() -> Duration {
    Duration::from_secs(2)
}
