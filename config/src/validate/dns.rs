//! Checks of `[dns]`: a zone and names that are valid DNS names, each name once, a TTL in
//! range, node ids that are ids, and `vips` subsets that name a `[[vip]]` of the file.

use super::Report;
use crate::dns::{normalize, DnsAnswer, DnsSection, DNS_TTL_RANGE};
use crate::span::Seg::{I, K};
use crate::Config;
use std::collections::HashSet;

pub(super) fn check(config: &Config, dns: &DnsSection, r: &mut Report<'_>) {
    if let Some(zone) = &dns.zone {
        if let Err(why) = check_name(zone) {
            r.error(&[K("dns"), K("zone")], format!("zone `{zone}`: {why}"));
        }
    } else if !dns.name.is_empty() {
        r.error(
            &[K("dns"), K("name")],
            "[[dns.name]] needs `zone` in [dns]: names are relative to it",
        );
    }
    let (lo, hi) = DNS_TTL_RANGE;
    if dns.ttl < lo || dns.ttl > hi || dns.ttl.subsec_nanos() != 0 {
        r.error(
            &[K("dns"), K("ttl")],
            "ttl must be whole seconds from 1s to 1h",
        );
    }
    for key in dns.node_addresses.keys() {
        if key.parse::<u64>().is_err() {
            r.error(
                &[K("dns"), K("node_addresses"), K(key)],
                format!("`{key}` is not a node id"),
            );
        }
    }
    let mut seen = HashSet::new();
    for (i, n) in dns.name.iter().enumerate() {
        check_entry(config, dns, i, &mut seen, r, n);
    }
}

fn check_entry(
    config: &Config,
    dns: &DnsSection,
    i: usize,
    seen: &mut HashSet<String>,
    r: &mut Report<'_>,
    n: &crate::dns::DnsName,
) {
    let at = |key| [K("dns"), K("name"), I(i), K(key)];
    if n.name != "@" {
        if let Err(why) = check_name(&n.name) {
            r.error(&at("name"), format!("name `{}`: {why}", n.name));
        }
    }
    if let Some(full) = dns.full_name(&n.name) {
        if full.len() > 253 {
            r.error(
                &at("name"),
                format!("`{full}` is longer than 253 characters"),
            );
        }
        if !seen.insert(full.clone()) {
            r.error(&at("name"), format!("`{full}` is listed twice"));
        }
    }
    if n.answer == DnsAnswer::Nodes && !n.vips.is_empty() {
        r.error(
            &at("vips"),
            "vips selects addresses of answer = \"vips\" only",
        );
    }
    let spread = config.spread_vips();
    for (j, want) in n.vips.iter().enumerate() {
        let known = spread
            .iter()
            .any(|v| v.name.as_deref() == Some(want.as_str()) || v.ip_text() == *want);
        if !spread.is_empty() && !known {
            r.error(
                &[K("dns"), K("name"), I(i), K("vips"), I(j)],
                format!("`{want}` is neither the name nor the address of a [[vip]]"),
            );
        }
    }
}

/// A host name: dot-separated labels of letters, digits and `-` (not at either end), each
/// 1 to 63 characters; a final dot is allowed.
fn check_name(name: &str) -> Result<(), String> {
    let name = normalize(name);
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    for label in name.split('.') {
        let ok = (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "label `{label}` must be 1 to 63 letters, digits or `-` (not first or last)"
            ));
        }
    }
    Ok(())
}
