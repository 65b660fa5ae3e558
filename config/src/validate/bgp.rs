//! Checks of `[bgp]`: host prefixes only, a usable protocol name, positive durations.

use super::Report;
use crate::bgp::BgpSection;
use crate::net::IpNet;
use crate::span::Seg::{I, K};

/// Longest protocol stem: BIRD names and Linux interface names (15 bytes) both derive
/// from it, with a one-character suffix.
const MAX_STEM: usize = 14;

pub(super) fn check(bgp: &BgpSection, r: &mut Report<'_>) {
    if bgp.prefixes.is_empty() {
        r.error(
            &[K("bgp"), K("prefixes")],
            "prefixes must name at least one service address (IPv4/32 or IPv6/128)",
        );
    }
    for (i, p) in bgp.prefixes.iter().enumerate() {
        match IpNet::parse(p) {
            Ok(net) if net.prefix == if net.addr.is_ipv4() { 32 } else { 128 } => {}
            Ok(net) => r.error(
                &[K("bgp"), K("prefixes"), I(i)],
                format!("`{net}` is not a host route: announce each service address as /32 (IPv4) or /128 (IPv6)"),
            ),
            Err(e) => r.error(&[K("bgp"), K("prefixes"), I(i)], e),
        }
    }
    let stem_ok = !bgp.protocol.is_empty()
        && bgp.protocol.len() <= MAX_STEM
        && bgp.protocol.starts_with(|c: char| c.is_ascii_alphabetic())
        && bgp
            .protocol
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !stem_ok {
        r.error(
            &[K("bgp"), K("protocol")],
            format!("protocol must be a letter then letters, digits or `_`, at most {MAX_STEM} characters"),
        );
    }
    r.positive(
        &[K("bgp"), K("quorum_grace")],
        "quorum_grace",
        bgp.quorum_grace,
    );
}
