//! Checks of the `[[vip]]` entries (several VIPs spread over the nodes, issue 18): each
//! address parses and appears once, names are unique, preferred nodes are peers.

use super::local::{check_ifname, check_lifetime, check_vip_address};
use super::Report;
use crate::span::Seg::{I, K};
use crate::Config;
use std::collections::HashSet;

pub(super) fn check(config: &Config, r: &mut Report<'_>) {
    let vips = config.spread_vips();
    if matches!(&config.vip, Some(crate::VipTable::Many(v)) if v.is_empty()) {
        r.error(
            &[K("vip")],
            "`vip` is an empty list: give at least one `[[vip]]`",
        );
    }
    let peers: Option<HashSet<u64>> = config.cluster.as_ref().map(|c| {
        c.peers
            .iter()
            .filter_map(|p| crate::parse_peer(p).map(|(id, _)| id))
            .collect()
    });
    let mut addresses = HashSet::new();
    let mut names = HashSet::new();
    for (i, v) in vips.iter().enumerate() {
        let at = |key| [K("vip"), I(i), K(key)];
        if let Some(ip) = check_vip_address(&at("address"), &v.address, r) {
            if !addresses.insert(ip) {
                r.error(&at("address"), format!("vip address {ip} is listed twice"));
            }
        }
        if let Some(name) = &v.name {
            r.name(&at("name"), "vip", name);
            if !names.insert(name.as_str()) {
                r.error(&at("name"), format!("vip name `{name}` is listed twice"));
            }
        }
        if let Some(ifname) = &v.interface {
            check_ifname(&at("interface"), ifname, r);
        }
        check_lifetime(&at("lifetime"), v.lifetime, r);
        for (j, id) in v.preferred.iter().enumerate() {
            if peers.as_ref().is_some_and(|p| !p.contains(id)) {
                r.error(
                    &[K("vip"), I(i), K("preferred"), I(j)],
                    format!("preferred node {id} is not in cluster.peers"),
                );
            }
        }
    }
}
