//! Backends found through a service registry instead of written in the file:
//! `discover = { dns = "_http._tcp.app.internal", type = "srv", resolvers = ["10.0.0.53:53"] }`
//! or `{ dns = "app.internal", type = "a", port = 8080, resolvers = [...] }` on a `[[pool]]`.
//!
//! Only the model and its defaults live here; `validate::discover` checks it and the node's
//! `discovery` module resolves it. The table is tagged by the source's key (`dns` today),
//! so another source (a Kubernetes endpoints watcher) is one more key beside it.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Which DNS records name the pool's backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    /// SRV records: each gives a target host and a port (the target's A/AAAA records give
    /// its addresses).
    Srv,
    /// A records, with the pool's `port`.
    A,
    /// AAAA records, with the pool's `port`.
    Aaaa,
}

/// `discover = { ... }` on a pool.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Discover {
    /// The name to resolve (a service name for SRV, a host name for A/AAAA).
    pub dns: String,
    #[serde(rename = "type")]
    pub kind: RecordKind,
    /// The backends' port for A/AAAA records (SRV records carry their own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The DNS servers asked, `IP:PORT`, in order (at least one).
    pub resolvers: Vec<String>,
    /// Re-resolved after the records' smallest TTL, but never sooner than this...
    #[serde(default = "default_min_ttl", with = "humantime_serde")]
    pub min_ttl: Duration,
    /// ...and never later than this.
    #[serde(default = "default_max_ttl", with = "humantime_serde")]
    pub max_ttl: Duration,
    /// How long one lookup may take before it counts as failed.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// How long a backend whose record vanished stays drained (no new sessions, its
    /// requests finish) before it leaves the pool.
    #[serde(default = "default_drain", with = "humantime_serde")]
    pub drain: Duration,
    /// Weight of every backend found (SRV weights are for clients choosing one server, not
    /// for spreading load over all of them, so they are not used).
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_min_ttl() -> Duration {
    Duration::from_secs(1)
}
fn default_max_ttl() -> Duration {
    Duration::from_secs(300)
}
fn default_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_drain() -> Duration {
    Duration::from_secs(30)
}
fn default_weight() -> u32 {
    1
}

impl Discover {
    /// The resolvers as addresses (the ones that parse: validation refuses the others).
    pub fn resolver_addrs(&self) -> Vec<std::net::SocketAddr> {
        (self.resolvers.iter())
            .filter_map(|s| crate::net::parse_socket_addr(s).ok())
            .collect()
    }

    /// How long to wait before resolving again after records with smallest TTL `ttl`.
    pub fn next_after(&self, ttl: Duration) -> Duration {
        ttl.clamp(self.min_ttl, self.max_ttl.max(self.min_ttl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv() -> Discover {
        toml::from_str("dns = \"_http._tcp.app\"\ntype = \"srv\"\nresolvers = [\"127.0.0.1:53\"]\n")
            .expect("valid")
    }

    #[test]
    fn defaults_and_ttl_bounds() {
        let d = srv();
        assert_eq!((d.kind, d.port, d.weight), (RecordKind::Srv, None, 1));
        assert_eq!(d.next_after(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(
            d.next_after(Duration::from_secs(60)),
            Duration::from_secs(60)
        );
        assert_eq!(
            d.next_after(Duration::from_secs(86_400)),
            Duration::from_secs(300)
        );
    }
}
