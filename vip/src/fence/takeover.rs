//! The successor's side of a planned hand-over. Before it asks the stopping holder for the
//! traffic, in one transaction:
//!
//! 1. it accepts the VIP's frames that holder will forward to it, matched by their source
//!    MAC (the forward rewrites it to the holder's own), for as long as its own lease lasts;
//! 2. it notes, from its egress hook, every connection it answers (`mine4`);
//! 3. it sends the TCP packets of connections it does not know back to the old holder
//!    (`return4`), except new connections (a bare SYN) and frames that came from there.
//!
//! In `nft` syntax (VIP 10.77.0.100, the old holder 02:00:00:00:00:01, this node
//! 02:00:00:00:00:02 on `eth0`):
//!
//! ```text
//! add element netdev fulcrum forwarders { 02:00:00:00:00:01 timeout 18ms }
//! # the fence chain's rule: ip daddr 10.77.0.100 ether saddr @forwarders accept
//! chain vip_keep_out {
//!   ip saddr 10.77.0.100 meta l4proto tcp update @mine4 { ip daddr . tcp dport timeout 30s }
//! }
//! chain vip_handoff {
//!   ip daddr 10.77.0.100 meta l4proto tcp ip saddr . tcp sport @keep4 accept
//!   ip daddr 10.77.0.100 meta l4proto tcp ether saddr != 02:00:00:00:00:01
//!       tcp flags & (syn | ack) != syn ip saddr . tcp sport != @mine4 ip daddr @return4
//!       ether daddr set 02:00:00:00:00:01 ether saddr set 02:00:00:00:00:02 fwd to "eth0"
//! }
//! ```
//!
//! Why 1 is safe: the old holder forwards only while its own lease element is absent, that
//! is while its kernel answers nothing new for the VIP, and the successor accepts only while
//! it leads with a lease, so no other node may open its fence meanwhile. ARP requests are
//! not accepted: the successor announces nothing before its claim. Without it, a SYN
//! forwarded between the old holder's switch and the successor's claim met a closed fence.
//!
//! Why 3: once clients take in the successor's gratuitous ARP, they send here the packets of
//! the connections the old holder still finishes (it keeps them in `keep4`). Without the
//! way back, this node's stack would answer them with a reset. The old holder's fence lets
//! them through by `keep4`; what it does not keep it forwards here again, as its own frame,
//! which this node never sends back: no loop. A new connection is never sent back (it is
//! this node's now). Everything lives for `return4`'s element, with no help from the process.

use std::net::IpAddr;

use super::abi::{
    NFT_META_L4PROTO, NFT_PAYLOAD_LL_HEADER, NFT_PAYLOAD_NETWORK_HEADER,
    NFT_PAYLOAD_TRANSPORT_HEADER, NFT_REG32_00, NFT_REG32_01,
};
use super::elements::{self, Key};
use super::expr::{
    absent_from_reg, differs, equals, forward_to_device, immediate, load, load_into, mask,
    present_in, write_link_header, Load,
};
use super::handoff::{flush, note_outgoing};
use super::ruleset::{add_ipv4_rule, add_keep_rule, FORWARDERS, HANDOFF_CHAIN, MINE4, RETURN4};
use super::socket::Batch;

/// An Ethernet address.
type Mac = [u8; 6];

const TCP_SYN: u8 = 0x02;
const TCP_SYN_ACK: u8 = 0x12;

/// What a successor sets up before it asks the old holder for the traffic.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TakeOver {
    /// The old holder's MAC on the VIP's link.
    pub old: Mac,
    /// This node's MAC on that link.
    pub me: Mac,
    /// This node's interface index on that link.
    pub ifindex: u32,
    /// How long forwarded frames are accepted: what remains of this node's lease.
    pub accept_ms: u64,
    /// How long unknown connections go back to the old holder (its connections' grace).
    pub return_ms: u64,
}

/// Adds the messages that stop accepting frames from `mac` now, whether or not its element
/// is still there (a short add makes the delete valid; both commit together). Closing the
/// fence always comes with this: a node that stops answering for the VIP stops answering
/// forwarded frames too (the lease model found the successor, deposed right after its
/// take-over, still answering them next to the next holder).
pub(crate) fn stop_accepting(batch: &mut Batch<'_>, mac: [u8; 6], tick_ms: u64) {
    elements::add_raw(batch, FORWARDERS, &mac, tick_ms);
    elements::delete_raw(batch, FORWARDERS, &mac);
}

/// Adds the messages of steps 1-3 for `vips`.
pub(crate) fn start(batch: &mut Batch<'_>, vips: &[IpAddr], t: &TakeOver) {
    elements::add_raw(batch, FORWARDERS, &t.old, t.accept_ms);
    note_outgoing(batch, vips, MINE4, t.return_ms);
    flush(batch);
    for &vip in vips {
        add_keep_rule(batch, HANDOFF_CHAIN, vip);
        let IpAddr::V4(v4) = vip else { continue };
        add_ipv4_rule(batch, HANDOFF_CHAIN, v4, |w| {
            load(w, Load::Meta(NFT_META_L4PROTO));
            equals(w, &[6]);
            load(w, link(6));
            differs(w, &t.old);
            load(w, tcp_flags());
            mask(w, &[TCP_SYN_ACK]);
            differs(w, &[TCP_SYN]);
            load_into(w, NFT_PAYLOAD_NETWORK_HEADER, 12, 4, NFT_REG32_00);
            load_into(w, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 2, NFT_REG32_01);
            absent_from_reg(w, MINE4.name, MINE4.id, NFT_REG32_00);
            load(
                w,
                Load::Payload {
                    base: NFT_PAYLOAD_NETWORK_HEADER,
                    offset: 16,
                    len: 4,
                },
            );
            present_in(w, RETURN4.name, RETURN4.id);
            immediate(w, &t.old);
            write_link_header(w, 0, 6);
            immediate(w, &t.me);
            write_link_header(w, 6, 6);
            immediate(w, &t.ifindex.to_ne_bytes());
            forward_to_device(w);
        });
        elements::add(batch, RETURN4, Key::of(vip), t.return_ms);
    }
}

/// `len` 6 bytes of the link-layer header at `offset` (0: destination, 6: source MAC).
const fn link(offset: u32) -> Load {
    Load::Payload {
        base: NFT_PAYLOAD_LL_HEADER,
        offset,
        len: 6,
    }
}

/// The TCP header's flags byte.
const fn tcp_flags() -> Load {
    Load::Payload {
        base: NFT_PAYLOAD_TRANSPORT_HEADER,
        offset: 13,
        len: 1,
    }
}
