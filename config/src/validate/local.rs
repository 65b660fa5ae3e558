//! Checks of the singleton sections: `[node]`, `[cluster]`, `[vip]` and `[session]`.

use super::Report;
use crate::model::{ClusterSection, Config, NodeSection, SessionSection};
use crate::net::{parse_addr_prefix, parse_peer_detailed};
use crate::span::Seg::{I, K};
use crate::vips::VipSection;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Shortest `cookie_secret` accepted: an HMAC key much shorter than this is guessable.
pub(crate) const MIN_COOKIE_SECRET_BYTES: usize = 16;

pub(super) fn check(config: &Config, r: &mut Report<'_>) {
    if let Some(node) = &config.node {
        check_node(node, r);
    }
    if let Some(cluster) = &config.cluster {
        check_cluster(cluster, config.node.as_ref(), r);
    }
    if let Some(vip) = config.leader_vip() {
        check_vip(vip, r);
    }
    super::vips::check(config, r);
    if let Some(session) = &config.session {
        check_session(session, r);
    }
}

fn check_node(node: &NodeSection, r: &mut Report<'_>) {
    if node.access_log.trim().is_empty() {
        r.error(
            &[K("node"), K("access_log")],
            "access_log must be `stdout`, `off` or a file path",
        );
    }
    r.positive(
        &[K("node"), K("shutdown_grace")],
        "shutdown_grace",
        node.shutdown_grace,
    );
}

fn check_cluster(cluster: &ClusterSection, node: Option<&NodeSection>, r: &mut Report<'_>) {
    let peers = check_peers(cluster, r);
    if cluster.peers.is_empty() {
        r.error(
            &[K("cluster"), K("peers")],
            "peers must list every node, this one included",
        );
    }
    if let Some(node) = node {
        check_own_peer(cluster, node, &peers, r);
    }
    check_timing(cluster, r);
}

/// Parses every peer, reporting bad entries and duplicate ids or addresses.
fn check_peers(cluster: &ClusterSection, r: &mut Report<'_>) -> HashMap<u64, SocketAddr> {
    let mut ids = HashMap::new();
    let mut addrs = HashMap::new();
    for (i, peer) in cluster.peers.iter().enumerate() {
        let path = [K("cluster"), K("peers"), I(i)];
        match parse_peer_detailed(peer) {
            Err(e) => r.error(&path, e),
            // Id 0 stands for "unknown node" in the lease protocol.
            Ok((0, _)) => r.error(&path, "peer ids start at 1"),
            Ok((id, addr)) => {
                // The first entry of an id or address wins; later ones are the mistake.
                match (ids.entry(id), addrs.get(&addr).copied()) {
                    (Entry::Occupied(_), _) => {
                        r.error(&path, format!("peer id {id} is listed twice"));
                    }
                    (Entry::Vacant(_), Some(other)) => {
                        let msg = format!("peer address {addr} is already used by node {other}");
                        r.error(&path, msg);
                    }
                    (Entry::Vacant(slot), None) => {
                        slot.insert(addr);
                        addrs.insert(addr, id);
                    }
                }
            }
        }
    }
    ids
}

/// This node must be one of the peers, at the address it binds for Raft.
fn check_own_peer(
    cluster: &ClusterSection,
    node: &NodeSection,
    peers: &HashMap<u64, SocketAddr>,
    r: &mut Report<'_>,
) {
    if peers.is_empty() {
        return;
    }
    let Some(own) = peers.get(&node.id) else {
        r.error(
            &[K("cluster"), K("peers")],
            format!("peers must include this node (node.id = {})", node.id),
        );
        return;
    };
    // Binding 0.0.0.0 is fine as long as the port is the one peers dial.
    let raft = cluster.raft;
    let same = if raft.ip().is_unspecified() {
        raft.port() == own.port()
    } else {
        raft == *own
    };
    if !same {
        r.error(
            &[K("cluster"), K("raft")],
            format!(
                "raft address {raft} differs from this node's peer entry {}@{own}",
                node.id
            ),
        );
    }
}

fn check_timing(c: &ClusterSection, r: &mut Report<'_>) {
    let at = |key| [K("cluster"), K(key)];
    r.positive(&at("heartbeat"), "heartbeat", c.heartbeat);
    if c.heartbeat >= c.election_timeout_min {
        r.error(
            &at("heartbeat"),
            format!(
                "heartbeat {} must be shorter than election_timeout_min {}",
                human(c.heartbeat),
                human(c.election_timeout_min)
            ),
        );
    }
    if c.election_timeout_min >= c.election_timeout_max {
        r.error(
            &at("election_timeout_max"),
            format!(
                "election_timeout_max {} must be longer than election_timeout_min {}",
                human(c.election_timeout_max),
                human(c.election_timeout_min)
            ),
        );
    }
    if c.lease >= c.election_timeout_min {
        r.error(
            &at("lease"),
            format!(
                "lease {} must be shorter than election_timeout_min {}, or two nodes could both hold the VIP",
                human(c.lease),
                human(c.election_timeout_min)
            ),
        );
    } else if c.lease <= c.heartbeat && c.heartbeat < c.election_timeout_min {
        // (When heartbeat >= election_timeout_min, that error above is the root cause.)
        r.error(
            &at("lease"),
            format!(
                "lease {} must be longer than heartbeat {}, or the leader would drop the VIP between heartbeats",
                human(c.lease),
                human(c.heartbeat)
            ),
        );
    }
}

fn check_vip(vip: &VipSection, r: &mut Report<'_>) {
    check_vip_address(&[K("vip"), K("address")], &vip.address, r);
    if let Some(ifname) = &vip.interface {
        check_ifname(&[K("vip"), K("interface")], ifname, r);
    }
    check_lifetime(&[K("vip"), K("lifetime")], vip.lifetime, r);
}

fn check_session(s: &SessionSection, r: &mut Report<'_>) {
    let at = |key| [K("session"), K(key)];
    if let Some(url) = &s.redis {
        let schemes = [
            "redis://",
            "rediss://",
            "redis+sentinel://",
            "redis+cluster://",
            "redis+unix://",
            "unix://",
        ];
        if !schemes.iter().any(|p| url.starts_with(p)) {
            r.error(
                &at("redis"),
                format!("redis `{url}` must be a redis://, rediss://, redis+sentinel:// or redis+cluster:// URL"),
            );
        }
        if !s.sentinels.is_empty() {
            r.error(
                &at("sentinels"),
                "set either `redis` or `sentinels`, not both",
            );
        }
    }
    if !s.sentinels.is_empty() && s.master_name.as_deref().is_none_or(str::is_empty) {
        r.error(
            &at("sentinels"),
            "sentinels need `master_name` (the monitored master's name)",
        );
    }
    r.positive(&at("ttl"), "ttl", s.ttl);
    r.positive(&at("timeout"), "timeout", s.timeout);
    let name = &s.fallback_cookie;
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
    {
        r.error(
            &at("fallback_cookie"),
            format!("fallback_cookie `{name}`: a cookie name of letters, digits, `_`, `-` and `.` (or \"\" for none)"),
        );
    }
    for (i, key) in s.fallback_keys.iter().enumerate() {
        if key.as_os_str().is_empty() {
            r.error(
                &[K("session"), K("fallback_keys"), I(i)],
                "fallback_keys: an empty file path",
            );
        }
    }
    if let Some(secret) = &s.cookie_secret {
        if secret.len() < MIN_COOKIE_SECRET_BYTES {
            r.error(
                &at("cookie_secret"),
                format!(
                    "cookie_secret must be at least {MIN_COOKIE_SECRET_BYTES} bytes (it has {})",
                    secret.len()
                ),
            );
        }
    }
}

pub(super) fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Linux interface names: 1..=15 bytes, no `/`, `:` or whitespace.
pub(super) fn check_ifname(path: &[crate::span::Seg<'_>], ifname: &str, r: &mut Report<'_>) {
    let ok = !ifname.is_empty()
        && ifname.len() <= 15
        && !ifname
            .bytes()
            .any(|b| b == b'/' || b.is_ascii_whitespace() || b == b':');
    if !ok {
        r.error(
            path,
            format!("`{ifname}` is not a valid interface name (1-15 bytes, no `/`, `:` or spaces)"),
        );
    }
}

/// An address lifetime: whole seconds, at least 1 s (the kernel counts in seconds).
pub(super) fn check_lifetime(
    path: &[crate::span::Seg<'_>],
    lifetime: Duration,
    r: &mut Report<'_>,
) {
    if lifetime < Duration::from_secs(1) {
        r.error(
            path,
            "lifetime must be at least 1s (the kernel counts address lifetimes in seconds)",
        );
    } else if lifetime.subsec_nanos() != 0 {
        // The kernel would be given the lifetime rounded up, so a strict-mode wait of
        // the configured value would end before the old holder's address is gone.
        r.error(
            path,
            format!(
                "lifetime {} must be a whole number of seconds (the kernel counts address lifetimes in seconds)",
                human(lifetime)
            ),
        );
    }
}

/// A VIP's `ADDRESS/PREFIX`: parses, and is a unicast host address.
pub(super) fn check_vip_address(
    path: &[crate::span::Seg<'_>],
    address: &str,
    r: &mut Report<'_>,
) -> Option<std::net::IpAddr> {
    match parse_addr_prefix(address) {
        Err(e) => r.error(path, format!("vip address: {e}")),
        Ok((ip, _)) if ip.is_unspecified() || ip.is_multicast() => r.error(
            path,
            format!("vip address {ip} must be a unicast host address"),
        ),
        Ok((ip, _)) => return Some(ip),
    }
    None
}
