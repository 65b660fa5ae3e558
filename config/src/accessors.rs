//! Typed views of string-valued fields, so the data plane never re-parses config text.
//!
//! Each accessor returns `None` (or a safe default) for input that validation refuses; a
//! `Config` that came out of `parse`/`load` always yields `Some`.

use crate::hash_key::HashKey;
use crate::model::{
    Affinity, Backend, ClusterSection, Config, HealthCheck, Listener, Pool, RateLimit, Route,
};
use crate::net::{parse_addr_prefix, parse_peer, IpNet};
use crate::vips::{VipEntry, VipSection};
use std::net::{IpAddr, SocketAddr};

/// Cookie inserted by `affinity.mode = "cookie"` when `affinity.cookie` is not set.
pub const DEFAULT_AFFINITY_COOKIE: &str = "fulcrum_affinity";

impl Route {
    /// The pools this route leads to: its `pool`, or the pools of its `split` in order.
    pub fn pools(&self) -> impl Iterator<Item = &str> {
        self.pool
            .as_deref()
            .into_iter()
            .chain(self.split.iter().map(|s| s.pool.as_str()))
    }
}

impl Backend {
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.addr.parse().ok()
    }
}

impl Listener {
    pub fn bind_addr(&self) -> Option<SocketAddr> {
        self.bind.parse().ok()
    }

    /// Where this node binds the listener: `bind`, with the IP replaced by
    /// `[node].listen_ip` when set.
    pub fn local_bind_addr(&self, listen_ip: Option<std::net::IpAddr>) -> Option<SocketAddr> {
        let addr = self.bind_addr()?;
        Some(match listen_ip {
            Some(ip) => SocketAddr::new(ip, addr.port()),
            None => addr,
        })
    }

    /// Whether `ip` is inside one of `trusted_proxies` (unparsable entries, which
    /// validation refuses, trust nobody). Parses as it goes: no allocation.
    pub fn trusts_proxy(&self, ip: std::net::IpAddr) -> bool {
        self.trusted_proxies
            .iter()
            .filter_map(|s| IpNet::parse(s).ok())
            .any(|net| net.contains(ip))
    }

    /// The networks allowed to send a PROXY header; unparsable entries are skipped.
    pub fn proxy_networks(&self) -> Vec<IpNet> {
        self.proxy_from
            .iter()
            .filter_map(|s| IpNet::parse(s).ok())
            .collect()
    }
}

impl Pool {
    pub fn hash_key(&self) -> Option<HashKey> {
        self.hash_key
            .as_deref()
            .and_then(|s| HashKey::parse(s).ok())
    }
}

impl RateLimit {
    /// The key requests are counted by; `source-ip` if unparsable.
    pub fn key(&self) -> HashKey {
        HashKey::parse(&self.key).unwrap_or(HashKey::SourceIp)
    }

    /// The fixed window a cluster-wide limit counts `burst` requests in: the time the
    /// rate takes to refill a bucket (at least 1 ms).
    pub fn window(&self) -> std::time::Duration {
        let secs = self.burst() as f64 / self.requests_per_second.max(1e-6);
        std::time::Duration::from_secs_f64(secs.clamp(0.001, 86_400.0))
    }

    /// The bucket size: `burst`, or one second's worth (at least 1).
    pub fn burst(&self) -> u32 {
        self.burst
            .unwrap_or_else(|| self.requests_per_second.ceil().clamp(1.0, u32::MAX as f64) as u32)
            .max(1)
    }
}

impl HealthCheck {
    /// The accepted status codes, inclusive; the default 200..=399 if unparsable.
    pub fn status_range(&self) -> (u16, u16) {
        parse_status_range(&self.expect_status).unwrap_or((200, 399))
    }
}

impl ClusterSection {
    /// The peers as (node id, Raft address); unparsable entries are skipped.
    pub fn peer_list(&self) -> Vec<(u64, SocketAddr)> {
        self.peers.iter().filter_map(|p| parse_peer(p)).collect()
    }
}

impl VipSection {
    pub fn addr_prefix(&self) -> Option<(IpAddr, u8)> {
        parse_addr_prefix(&self.address).ok()
    }
}

impl Affinity {
    /// The cookie this pool's affinity reads: `affinity.cookie`, or `fulcrum_affinity`.
    pub fn cookie_name(&self) -> &str {
        self.cookie.as_deref().unwrap_or(DEFAULT_AFFINITY_COOKIE)
    }
}

/// Parses `NNN` or `NNN-NNN` with codes in 100..=599 and lo <= hi.
pub(crate) fn parse_status_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("expect_status `{s}` must be NNN or NNN-NNN with codes 100..=599");
    let code = |part: &str| {
        part.trim()
            .parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c))
            .ok_or_else(bad)
    };
    let (lo, hi) = match s.split_once('-') {
        Some((lo, hi)) => (code(lo)?, code(hi)?),
        None => (code(s)?, code(s)?),
    };
    if lo > hi {
        return Err(format!("expect_status `{s}`: {lo} is above {hi}"));
    }
    Ok((lo, hi))
}

impl Config {
    /// The single `[vip]` the leader holds, if the file has one.
    pub fn leader_vip(&self) -> Option<&VipSection> {
        self.vip.as_ref().and_then(crate::VipTable::one)
    }

    /// The `[[vip]]` entries spread over the nodes (empty when there are none).
    pub fn spread_vips(&self) -> &[VipEntry] {
        self.vip.as_ref().map(crate::VipTable::many).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ranges() {
        assert_eq!(parse_status_range("200"), Ok((200, 200)));
        assert_eq!(parse_status_range("200-399"), Ok((200, 399)));
        for bad in ["99", "600", "200-", "abc", "399-200", "200-600", ""] {
            assert!(parse_status_range(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn cookie_name_defaults() {
        let mut a = Affinity::default();
        assert_eq!(a.cookie_name(), "fulcrum_affinity");
        a.cookie = Some("SID".into());
        assert_eq!(a.cookie_name(), "SID");
    }
}
