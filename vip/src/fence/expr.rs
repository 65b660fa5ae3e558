//! The nf_tables expressions the fence's rules are made of, encoded as netlink attributes:
//! load a packet field into a register, compare it, look it up in a set, drop.

use super::abi::{
    NFTA_CMP_DATA, NFTA_CMP_OP, NFTA_CMP_SREG, NFTA_DATA_VALUE, NFTA_DATA_VERDICT, NFTA_EXPR_DATA,
    NFTA_EXPR_NAME, NFTA_IMMEDIATE_DATA, NFTA_IMMEDIATE_DREG, NFTA_LIST_ELEM, NFTA_LOOKUP_FLAGS,
    NFTA_LOOKUP_SET, NFTA_LOOKUP_SET_ID, NFTA_LOOKUP_SREG, NFTA_META_DREG, NFTA_META_KEY,
    NFTA_PAYLOAD_BASE, NFTA_PAYLOAD_DREG, NFTA_PAYLOAD_LEN, NFTA_PAYLOAD_OFFSET, NFTA_VERDICT_CODE,
    NFT_CMP_EQ, NFT_LOOKUP_F_INV, NFT_REG_1, NFT_REG_VERDICT, NF_DROP,
};
use super::message::Writer;

/// Where a rule reads a value from. Every load goes to register 1.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Load {
    /// A packet metadata key (`NFT_META_*`).
    Meta(u32),
    /// `len` bytes at `offset` from a header (`NFT_PAYLOAD_*_HEADER`).
    Payload { base: u32, offset: u32, len: u32 },
}

/// Writes one list element `{ name, data }` of a rule's expression list.
fn expression(w: &mut Writer, name: &str, data: impl FnOnce(&mut Writer)) {
    w.nest(NFTA_LIST_ELEM, |w| {
        w.str_attr(NFTA_EXPR_NAME, name);
        w.nest(NFTA_EXPR_DATA, data);
    });
}

/// Loads a field into register 1.
pub(crate) fn load(w: &mut Writer, from: Load) {
    match from {
        Load::Meta(key) => expression(w, "meta", |w| {
            w.u32_attr(NFTA_META_KEY, key);
            w.u32_attr(NFTA_META_DREG, NFT_REG_1);
        }),
        Load::Payload { base, offset, len } => expression(w, "payload", |w| {
            w.u32_attr(NFTA_PAYLOAD_DREG, NFT_REG_1);
            w.u32_attr(NFTA_PAYLOAD_BASE, base);
            w.u32_attr(NFTA_PAYLOAD_OFFSET, offset);
            w.u32_attr(NFTA_PAYLOAD_LEN, len);
        }),
    }
}

/// Stops the rule unless register 1 equals `value` (network byte order).
pub(crate) fn equals(w: &mut Writer, value: &[u8]) {
    expression(w, "cmp", |w| {
        w.u32_attr(NFTA_CMP_SREG, NFT_REG_1);
        w.u32_attr(NFTA_CMP_OP, NFT_CMP_EQ);
        w.nest(NFTA_CMP_DATA, |w| w.bytes_attr(NFTA_DATA_VALUE, value));
    });
}

/// Stops the rule if register 1 is an element of set `name` (created in the same transaction
/// with id `set_id`): the rule goes on only for values *absent* from the set.
pub(crate) fn absent_from(w: &mut Writer, name: &str, set_id: u32) {
    expression(w, "lookup", |w| {
        w.str_attr(NFTA_LOOKUP_SET, name);
        w.u32_attr(NFTA_LOOKUP_SET_ID, set_id);
        w.u32_attr(NFTA_LOOKUP_SREG, NFT_REG_1);
        w.u32_attr(NFTA_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
    });
}

/// The verdict: drop the packet.
pub(crate) fn drop_packet(w: &mut Writer) {
    expression(w, "immediate", |w| {
        w.u32_attr(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
        w.nest(NFTA_IMMEDIATE_DATA, |w| {
            w.nest(NFTA_DATA_VERDICT, |w| {
                w.u32_attr(NFTA_VERDICT_CODE, NF_DROP)
            });
        });
    });
}
