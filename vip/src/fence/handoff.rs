//! The planned hand-over's forward: for a short while after a stopping holder closes its
//! fence, its kernel sends the VIP's IPv4 packets on to the successor at layer 2 instead of
//! dropping them, so that a client still using the old holder's MAC (it has not heard the
//! successor's gratuitous ARP yet) loses no SYN. In `nft` syntax (VIP 10.77.0.100, successor
//! 02:00:00:00:00:02, this node 02:00:00:00:00:01 on `eth0`):
//!
//! ```text
//! chain vip_handoff {   # priority -510: before the fence's drop
//!   ip daddr 10.77.0.100 meta l4proto tcp ip saddr . tcp sport @keep4 accept
//!   ip daddr 10.77.0.100 ip daddr != @lease4 ip daddr @handoff4
//!       ether daddr set 02:00:00:00:00:02 ether saddr set 02:00:00:00:00:01 fwd to "eth0"
//! }
//! ```
//!
//! Connections this node accepted before the hand-over are not cut: their client address
//! and port go into `keep4` in the same transaction, and both chains let their packets
//! through to this node's stack (the address stays until they are done). Everything else
//! for the VIP, new connections first of all, goes to the successor.
//!
//! The node itself never answers a forwarded packet (it leaves the interface before the
//! stack sees it), and it forwards only while its own lease element is absent, so a node
//! that leads again answers itself. The source MAC is rewritten too: a bridge must not learn
//! the client's MAC on this node's port. The `handoff4` element's timeout bounds the whole
//! thing in the kernel, whatever becomes of the process. IPv6 VIPs are not forwarded.

use std::net::IpAddr;

use super::abi::{NFPROTO_NETDEV, NFTA_RULE_CHAIN, NFTA_RULE_TABLE, NFT_MSG_DELRULE};
use super::elements::{self, Key};
use super::expr::{absent_from, forward_to_device, immediate, present_in, write_link_header};
use super::ruleset::{add_ipv4_rule, add_keep_rule, HANDOFF4, HANDOFF_CHAIN, KEEP4, LEASE4, TABLE};
use super::socket::Batch;

/// An Ethernet address.
type Mac = [u8; 6];

/// Where a hand-over forwards to, and as whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// The successor's MAC on the VIP's link.
    pub to: Mac,
    /// This node's MAC on that link (the frames' new source).
    pub from: Mac,
    /// How long the kernel keeps forwarding, in milliseconds.
    pub for_ms: u64,
    /// This node's connections to the VIP (client address, port): finished here.
    pub keep: Vec<(std::net::Ipv4Addr, u16)>,
    /// How long the kernel lets them through, in milliseconds.
    pub keep_ms: u64,
}

/// Adds the messages that put connections (client address, port) into `keep4` for
/// `keep_ms`.
pub(crate) fn keep(batch: &mut Batch<'_>, conns: &[(std::net::Ipv4Addr, u16)], keep_ms: u64) {
    for &(addr, port) in conns {
        let mut key = [0u8; 8];
        key[..4].copy_from_slice(&addr.octets());
        key[4..6].copy_from_slice(&port.to_be_bytes());
        elements::add_raw(batch, KEEP4, &key, keep_ms);
    }
}

/// Adds the messages that replace the hand-over chain's rules with one forwarding `vips`'
/// IPv4 packets as `fwd` says, out of interface `ifindex`, and start its timeout.
pub(crate) fn start(batch: &mut Batch<'_>, vips: &[IpAddr], ifindex: u32, fwd: &Forward) {
    batch.add(NFT_MSG_DELRULE, 0, NFPROTO_NETDEV, |w| {
        w.str_attr(NFTA_RULE_TABLE, TABLE);
        w.str_attr(NFTA_RULE_CHAIN, HANDOFF_CHAIN);
    });
    keep(batch, &fwd.keep, fwd.keep_ms);
    for vip in vips {
        add_keep_rule(batch, HANDOFF_CHAIN, *vip);
        let IpAddr::V4(v4) = vip else { continue };
        add_ipv4_rule(batch, HANDOFF_CHAIN, *v4, |w| {
            absent_from(w, LEASE4.name, LEASE4.id);
            present_in(w, HANDOFF4.name, HANDOFF4.id);
            immediate(w, &fwd.to);
            write_link_header(w, 0, 6);
            immediate(w, &fwd.from);
            write_link_header(w, 6, 6);
            immediate(w, &ifindex.to_ne_bytes());
            forward_to_device(w);
        });
        elements::add(batch, HANDOFF4, Key::of(*vip), fwd.for_ms);
    }
}
