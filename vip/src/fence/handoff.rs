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
//!
//! `keep4` must hold *every* connection this node still answers when the switch commits,
//! also one whose SYN arrived after the list of connections was read. So before it reads
//! that list, the node makes its kernel note each connection it sends a packet on (a SYN-ACK
//! first of all) in `keep4`, from the egress hook (Linux 5.16 and later; without it, only
//! the list counts):
//!
//! ```text
//! chain vip_keep_out {
//!   ip saddr 10.77.0.100 meta l4proto tcp update @keep4 { ip daddr . tcp dport timeout 30s }
//! }
//! ```
//!
//! A connection is then either older than that rule (in the list) or has sent through it
//! (in the set) before its client could send anything the switch would forward. The rule
//! goes when this node opens its fence again (it leads again).

use std::net::IpAddr;

use super::abi::{
    NFPROTO_NETDEV, NFTA_RULE_CHAIN, NFTA_RULE_TABLE, NFT_META_L4PROTO, NFT_MSG_DELRULE,
    NFT_PAYLOAD_NETWORK_HEADER, NFT_PAYLOAD_TRANSPORT_HEADER, NFT_REG32_00, NFT_REG32_01,
};
use super::elements::{self, Key};
use super::expr::{
    absent_from, equals, forward_to_device, immediate, load, load_into, present_in,
    update_set_from, write_link_header, Load,
};
use super::ruleset::{
    add_ipv4_rule, add_ipv4_rule_from, add_keep_rule, SetRef, EGRESS_CHAIN, HANDOFF4,
    HANDOFF_CHAIN, KEEP4, LEASE4, TABLE,
};
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

/// Adds the message that empties the hand-over chain (its keep rules go too: add them back).
pub(crate) fn flush(batch: &mut Batch<'_>) {
    batch.add(NFT_MSG_DELRULE, 0, NFPROTO_NETDEV, |w| {
        w.str_attr(NFTA_RULE_TABLE, TABLE);
        w.str_attr(NFTA_RULE_CHAIN, HANDOFF_CHAIN);
    });
}

/// Adds the messages that replace the hand-over chain's rules with one forwarding `vips`'
/// IPv4 packets as `fwd` says, out of interface `ifindex`, and start its timeout.
pub(crate) fn start(batch: &mut Batch<'_>, vips: &[IpAddr], ifindex: u32, fwd: &Forward) {
    flush(batch);
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

/// Adds the messages that replace the egress chain's rules with ones noting in `set`, for
/// `for_ms`, the client (address, port) of every TCP packet this node sends from one of
/// `vips` (IPv4): `keep4` for a handed-over node, `mine4` for a successor.
pub(crate) fn note_outgoing(batch: &mut Batch<'_>, vips: &[IpAddr], set: SetRef, for_ms: u64) {
    stop_keeping_outgoing(batch);
    for vip in vips {
        let IpAddr::V4(v4) = vip else { continue };
        add_ipv4_rule_from(batch, EGRESS_CHAIN, *v4, |w| {
            load(w, Load::Meta(NFT_META_L4PROTO));
            equals(w, &[6]);
            // The client's address and port: the key ingress rules look up.
            load_into(w, NFT_PAYLOAD_NETWORK_HEADER, 16, 4, NFT_REG32_00);
            load_into(w, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, NFT_REG32_01);
            update_set_from(w, set.name, set.id, NFT_REG32_00, for_ms);
        });
    }
}

/// Adds the message that empties the egress chain (see [`keep_outgoing`]).
pub(crate) fn stop_keeping_outgoing(batch: &mut Batch<'_>) {
    batch.add(NFT_MSG_DELRULE, 0, NFPROTO_NETDEV, |w| {
        w.str_attr(NFTA_RULE_TABLE, TABLE);
        w.str_attr(NFTA_RULE_CHAIN, EGRESS_CHAIN);
    });
}
