//! fulcrum's nftables table, as one transaction that replaces whatever table of that name
//! exists. In `nft` syntax (for VIP 10.77.0.100 and fd77::100 on `eth0`):
//!
//! ```text
//! table netdev fulcrum {
//!   set lease4 { type ipv4_addr; flags timeout; }
//!   set lease6 { type ipv6_addr; flags timeout; }
//!   set probe  { type ipv4_addr; flags timeout; }   # kernel feature probes only
//!   set forwarders { type ether_addr; flags timeout; }
//!   set mine4 { type ipv4_addr . inet_service; flags dynamic,timeout; }
//!   set return4 { type ipv4_addr; flags timeout; }
//!   chain vip_fence {
//!     type filter hook ingress device "eth0" priority -500; policy accept;
//!     ip daddr 10.77.0.100 meta l4proto tcp ip saddr . tcp sport @keep4 accept
//!     ip daddr 10.77.0.100 ether saddr @forwarders accept
//!     arp ptype 0x0800 arp hlen 6 arp plen 4 arp operation request
//!         arp daddr ip 10.77.0.100 arp daddr ip != @lease4 drop
//!     ip daddr 10.77.0.100 ip daddr != @lease4 drop
//!     ip6 daddr fd77::100 ip6 daddr != @lease6 drop
//!     icmpv6 type nd-neighbor-solicit @th,64,128 fd77::100 (target) != @lease6 drop
//!   }
//!   set handoff4 { type ipv4_addr; flags timeout; }
//!   set keep4 { type ipv4_addr . inet_service; flags dynamic,timeout; }
//!   chain vip_handoff {    # a planned hand-over adds its forward here (see `handoff`)
//!     type filter hook ingress device "eth0" priority -510; policy accept;
//!     ip daddr 10.77.0.100 meta l4proto tcp ip saddr . tcp sport @keep4 accept
//!   }
//!   chain vip_keep_out {   # kernels with a netdev egress hook (5.16+); see `handoff`
//!     type filter hook egress device "eth0" priority 0; policy accept;
//!   }
//! }
//! ```
//!
//! A VIP's lease element present = the node answers for it; absent (never added, expired,
//! deleted) = the node's kernel drops ARP requests / neighbour solicitations for it and every
//! packet addressed to it as it enters the interface, before the stack sees it. The table has
//! no owner flag: it outlives the process that installed it, which is the point.

use std::net::IpAddr;

use super::abi::{
    NFPROTO_NETDEV, NFTA_CHAIN_HOOK, NFTA_CHAIN_NAME, NFTA_CHAIN_POLICY, NFTA_CHAIN_TABLE,
    NFTA_CHAIN_TYPE, NFTA_HOOK_DEV, NFTA_HOOK_HOOKNUM, NFTA_HOOK_PRIORITY, NFTA_RULE_CHAIN,
    NFTA_RULE_EXPRESSIONS, NFTA_RULE_TABLE, NFTA_SET_FLAGS, NFTA_SET_ID, NFTA_SET_KEY_LEN,
    NFTA_SET_KEY_TYPE, NFTA_SET_NAME, NFTA_SET_TABLE, NFTA_TABLE_NAME, NFT_META_L4PROTO,
    NFT_META_PROTOCOL, NFT_MSG_DELTABLE, NFT_MSG_NEWCHAIN, NFT_MSG_NEWRULE, NFT_MSG_NEWSET,
    NFT_MSG_NEWTABLE, NFT_PAYLOAD_LL_HEADER, NFT_PAYLOAD_NETWORK_HEADER,
    NFT_PAYLOAD_TRANSPORT_HEADER, NFT_REG32_00, NFT_REG32_01, NFT_SET_EVAL, NFT_SET_TIMEOUT,
    NFT_TYPE_ETHERADDR, NFT_TYPE_IP6ADDR, NFT_TYPE_IPADDR, NF_ACCEPT, NF_NETDEV_EGRESS,
    NF_NETDEV_INGRESS, NLM_F_APPEND, NLM_F_CREATE,
};
use super::expr::{
    absent_from, accept_packet, drop_packet, equals, load, load_into, present_in, present_in_from,
    Load,
};
use super::socket::Batch;

pub(crate) const TABLE: &str = "fulcrum";
const CHAIN: &str = "vip_fence";
/// Early in the ingress hook, before any ordinary filter.
const PRIORITY: i32 = -500;
/// The hand-over chain (see `handoff`): before the fence, whose drop it must pre-empt.
pub(crate) const HANDOFF_CHAIN: &str = "vip_handoff";
const HANDOFF_PRIORITY: i32 = -510;
/// Where a handed-over node notes the connections it still answers (see `handoff`).
pub(crate) const EGRESS_CHAIN: &str = "vip_keep_out";

/// One of the table's sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SetRef {
    pub name: &'static str,
    pub(crate) id: u32,
    key_type: u32,
    key_len: u32,
    flags: u32,
}

pub(crate) const LEASE4: SetRef = SetRef {
    name: "lease4",
    id: 1,
    key_type: NFT_TYPE_IPADDR,
    key_len: 4,
    flags: NFT_SET_TIMEOUT,
};
pub(crate) const LEASE6: SetRef = SetRef {
    name: "lease6",
    id: 2,
    key_type: NFT_TYPE_IP6ADDR,
    key_len: 16,
    flags: NFT_SET_TIMEOUT,
};
/// Holds only probe elements (see `probe`); no rule looks at it.
pub(crate) const PROBE: SetRef = SetRef {
    name: "probe",
    id: 3,
    key_type: NFT_TYPE_IPADDR,
    key_len: 4,
    flags: NFT_SET_TIMEOUT,
};

/// While its element lives, the hand-over chain forwards the VIP's IPv4 packets.
pub(crate) const HANDOFF4: SetRef = SetRef {
    name: "handoff4",
    id: 4,
    key_type: NFT_TYPE_IPADDR,
    key_len: 4,
    flags: NFT_SET_TIMEOUT,
};

/// Connections a handed-over node finishes itself (client address . port): their packets
/// pass both chains (see `handoff`).
pub(crate) const KEEP4: SetRef = SetRef {
    name: "keep4",
    id: 5,
    // nft's type of `ipv4_addr . inet_service`: (7 << 6) | 13.
    key_type: (NFT_TYPE_IPADDR << 6) | 13,
    // The port is padded to a whole 32-bit register.
    key_len: 8,
    // A handed-over node's egress rule adds the connections it answers (see `handoff`).
    flags: NFT_SET_TIMEOUT | NFT_SET_EVAL,
};

/// The MACs of stopping holders whose forwarded VIP frames this node, their successor,
/// accepts before its own claim (see `takeover`).
pub(crate) const FORWARDERS: SetRef = SetRef {
    name: "forwarders",
    id: 6,
    key_type: NFT_TYPE_ETHERADDR,
    key_len: 6,
    flags: NFT_SET_TIMEOUT,
};

/// The connections a successor answers itself (client address . port), noted from its
/// egress hook while it takes over (see `takeover`): their packets are not sent back.
pub(crate) const MINE4: SetRef = SetRef {
    name: "mine4",
    id: 7,
    key_type: (NFT_TYPE_IPADDR << 6) | 13,
    key_len: 8,
    flags: NFT_SET_TIMEOUT | NFT_SET_EVAL,
};

/// While its element lives, a successor sends packets of connections it does not know
/// back to the old holder (see `takeover`).
pub(crate) const RETURN4: SetRef = SetRef {
    name: "return4",
    id: 8,
    key_type: NFT_TYPE_IPADDR,
    key_len: 4,
    flags: NFT_SET_TIMEOUT,
};

/// The set holding the lease element of `addr`.
pub(crate) fn lease_set(addr: IpAddr) -> SetRef {
    match addr {
        IpAddr::V4(_) => LEASE4,
        IpAddr::V6(_) => LEASE6,
    }
}

const ETH_P_IP: [u8; 2] = [0x08, 0x00];
const ETH_P_ARP: [u8; 2] = [0x08, 0x06];
const ETH_P_IPV6: [u8; 2] = [0x86, 0xdd];
const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_TCP: u8 = 6;
const ND_NEIGHBOR_SOLICIT: u8 = 135;
/// ARP for IPv4 over Ethernet, operation request: ptype, hlen, plen, oper at offset 2.
const ARP_IPV4_REQUEST: [u8; 6] = [0x08, 0x00, 6, 4, 0x00, 0x01];

const fn network(offset: u32, len: u32) -> Load {
    Load::Payload {
        base: NFT_PAYLOAD_NETWORK_HEADER,
        offset,
        len,
    }
}

const fn transport(offset: u32, len: u32) -> Load {
    Load::Payload {
        base: NFT_PAYLOAD_TRANSPORT_HEADER,
        offset,
        len,
    }
}

/// Adds the messages that replace fulcrum's table with a fresh one guarding `vips` on
/// `interface`, with every lease set empty. Creating the table first makes the delete valid
/// when none exists; all of it commits at once or not at all.
pub(crate) fn replace_table(batch: &mut Batch<'_>, interface: &str, vips: &[IpAddr]) {
    batch.add(NFT_MSG_NEWTABLE, NLM_F_CREATE, NFPROTO_NETDEV, table_name);
    delete_table(batch);
    batch.add(NFT_MSG_NEWTABLE, NLM_F_CREATE, NFPROTO_NETDEV, table_name);
    for set in [
        LEASE4, LEASE6, PROBE, HANDOFF4, KEEP4, FORWARDERS, MINE4, RETURN4,
    ] {
        add_set(batch, set);
    }
    add_chain(batch, interface, CHAIN, NF_NETDEV_INGRESS, PRIORITY);
    add_chain(
        batch,
        interface,
        HANDOFF_CHAIN,
        NF_NETDEV_INGRESS,
        HANDOFF_PRIORITY,
    );
    for &vip in vips {
        add_keep_rule(batch, CHAIN, vip);
        add_forwarded_rule(batch, vip);
        add_keep_rule(batch, HANDOFF_CHAIN, vip);
        add_rules(batch, vip);
    }
}

/// Adds the message that deletes fulcrum's table with everything in it.
pub(crate) fn delete_table(batch: &mut Batch<'_>) {
    batch.add(NFT_MSG_DELTABLE, 0, NFPROTO_NETDEV, table_name);
}

fn table_name(w: &mut super::message::Writer) {
    w.str_attr(NFTA_TABLE_NAME, TABLE);
}

fn add_set(batch: &mut Batch<'_>, set: SetRef) {
    batch.add(NFT_MSG_NEWSET, NLM_F_CREATE, NFPROTO_NETDEV, |w| {
        w.str_attr(NFTA_SET_TABLE, TABLE);
        w.str_attr(NFTA_SET_NAME, set.name);
        w.u32_attr(NFTA_SET_FLAGS, set.flags);
        w.u32_attr(NFTA_SET_KEY_TYPE, set.key_type);
        w.u32_attr(NFTA_SET_KEY_LEN, set.key_len);
        w.u32_attr(NFTA_SET_ID, set.id);
    });
}

/// Adds the (empty) egress chain a handed-over node puts its connection-keeping rule in
/// (see `handoff`). Separate from the table's transaction: kernels before 5.16 have no
/// netdev egress hook, and the fence works without it.
pub(crate) fn add_egress_chain(batch: &mut Batch<'_>, interface: &str) {
    add_chain(batch, interface, EGRESS_CHAIN, NF_NETDEV_EGRESS, 0);
}

fn add_chain(batch: &mut Batch<'_>, interface: &str, name: &str, hook: u32, priority: i32) {
    batch.add(NFT_MSG_NEWCHAIN, NLM_F_CREATE, NFPROTO_NETDEV, |w| {
        w.str_attr(NFTA_CHAIN_TABLE, TABLE);
        w.str_attr(NFTA_CHAIN_NAME, name);
        w.nest(NFTA_CHAIN_HOOK, |w| {
            w.u32_attr(NFTA_HOOK_HOOKNUM, hook);
            w.u32_attr(NFTA_HOOK_PRIORITY, priority as u32);
            w.str_attr(NFTA_HOOK_DEV, interface);
        });
        w.u32_attr(NFTA_CHAIN_POLICY, NF_ACCEPT);
        w.str_attr(NFTA_CHAIN_TYPE, "filter");
    });
}

/// The rules guarding one VIP: address resolution for it and packets to it.
fn add_rules(batch: &mut Batch<'_>, vip: IpAddr) {
    match vip {
        IpAddr::V4(v4) => {
            let addr = v4.octets();
            let arp = [
                (Load::Meta(NFT_META_PROTOCOL), &ETH_P_ARP[..]),
                (network(2, 6), &ARP_IPV4_REQUEST[..]),
                (network(24, 4), &addr[..]),
            ];
            add_drop_unless_leased(batch, &arp, LEASE4);
            let ip = [
                (Load::Meta(NFT_META_PROTOCOL), &ETH_P_IP[..]),
                (network(16, 4), &addr[..]),
            ];
            add_drop_unless_leased(batch, &ip, LEASE4);
        }
        IpAddr::V6(v6) => {
            let addr = v6.octets();
            let ip6 = [
                (Load::Meta(NFT_META_PROTOCOL), &ETH_P_IPV6[..]),
                (network(24, 16), &addr[..]),
            ];
            add_drop_unless_leased(batch, &ip6, LEASE6);
            let solicit = [
                (Load::Meta(NFT_META_PROTOCOL), &ETH_P_IPV6[..]),
                (Load::Meta(NFT_META_L4PROTO), &[IPPROTO_ICMPV6][..]),
                (transport(0, 1), &[ND_NEIGHBOR_SOLICIT][..]),
                (transport(8, 16), &addr[..]),
            ];
            add_drop_unless_leased(batch, &solicit, LEASE6);
        }
    }
}

/// The rule in `chain` that accepts TCP packets to `vip` (IPv4) from a connection in
/// `keep4`: this chain lets it through to the stack.
pub(crate) fn add_keep_rule(batch: &mut Batch<'_>, chain: &str, vip: IpAddr) {
    let IpAddr::V4(v4) = vip else { return };
    add_ipv4_rule(batch, chain, v4, |w| {
        load(w, Load::Meta(NFT_META_L4PROTO));
        equals(w, &[IPPROTO_TCP]);
        load_into(w, NFT_PAYLOAD_NETWORK_HEADER, 12, 4, NFT_REG32_00);
        load_into(w, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 2, NFT_REG32_01);
        present_in_from(w, KEEP4.name, KEEP4.id, NFT_REG32_00);
        accept_packet(w);
    });
}

/// The rule in the fence chain that accepts IPv4 frames to `vip` whose source MAC is in
/// `forwarders`: what a stopping holder forwards to this node, its successor (see
/// `takeover`). ARP is not matched: the successor does not announce before its claim.
fn add_forwarded_rule(batch: &mut Batch<'_>, vip: IpAddr) {
    let IpAddr::V4(v4) = vip else { return };
    add_ipv4_rule(batch, CHAIN, v4, |w| {
        load(
            w,
            Load::Payload {
                base: NFT_PAYLOAD_LL_HEADER,
                offset: 6,
                len: 6,
            },
        );
        present_in(w, FORWARDERS.name, FORWARDERS.id);
        accept_packet(w);
    });
}

/// Appends to `chain` a rule for IPv4 packets to `vip`: the protocol and address checks,
/// then the expressions `rest` writes.
pub(crate) fn add_ipv4_rule(
    batch: &mut Batch<'_>,
    chain: &str,
    vip: std::net::Ipv4Addr,
    rest: impl FnOnce(&mut super::message::Writer),
) {
    add_ipv4_rule_at(batch, chain, 16, vip, rest);
}

/// [`add_ipv4_rule`] for packets *from* `vip` (its address as the source: egress rules).
pub(crate) fn add_ipv4_rule_from(
    batch: &mut Batch<'_>,
    chain: &str,
    vip: std::net::Ipv4Addr,
    rest: impl FnOnce(&mut super::message::Writer),
) {
    add_ipv4_rule_at(batch, chain, 12, vip, rest);
}

/// A rule for IPv4 packets whose address at `offset` in the IP header is `vip`.
fn add_ipv4_rule_at(
    batch: &mut Batch<'_>,
    chain: &str,
    offset: u32,
    vip: std::net::Ipv4Addr,
    rest: impl FnOnce(&mut super::message::Writer),
) {
    batch.add(
        NFT_MSG_NEWRULE,
        NLM_F_CREATE | NLM_F_APPEND,
        NFPROTO_NETDEV,
        |w| {
            w.str_attr(NFTA_RULE_TABLE, TABLE);
            w.str_attr(NFTA_RULE_CHAIN, chain);
            w.nest(NFTA_RULE_EXPRESSIONS, |w| {
                load(w, Load::Meta(NFT_META_PROTOCOL));
                equals(w, &ETH_P_IP);
                load(w, network(offset, 4));
                equals(w, &vip.octets());
                rest(w);
            });
        },
    );
}

/// A rule that drops a packet when every `(field, value)` matches and the last field (the
/// VIP) has no element in `lease`.
fn add_drop_unless_leased(batch: &mut Batch<'_>, checks: &[(Load, &[u8])], lease: SetRef) {
    batch.add(
        NFT_MSG_NEWRULE,
        NLM_F_CREATE | NLM_F_APPEND,
        NFPROTO_NETDEV,
        |w| {
            w.str_attr(NFTA_RULE_TABLE, TABLE);
            w.str_attr(NFTA_RULE_CHAIN, CHAIN);
            w.nest(NFTA_RULE_EXPRESSIONS, |w| {
                for &(field, value) in checks {
                    load(w, field);
                    equals(w, value);
                }
                absent_from(w, lease.name, lease.id);
                drop_packet(w);
            });
        },
    );
}
